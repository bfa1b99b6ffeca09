"""The ``parc`` command line. Thin: parse arguments, call one stage function, print.

Heavy modules (pydantic models, the solver, Jinja) are imported inside the commands so
``parc --help`` stays fast. ParcError subclasses carry their exit code; anything else is a
bug and prints a traceback.
"""

from __future__ import annotations

import sys
import traceback
from pathlib import Path
from typing import Any, Callable, NoReturn

import click

from parc import __version__
from parc.errors import ParcError, UsageError

_DEBUG = {"on": False}


def _fail(exc: ParcError, fmt: str = "text", command: str = "", file: str = "") -> NoReturn:
    if fmt == "text" and not file:
        for line in exc.lines():
            click.echo(line, err=True)
    else:
        from parc.diagnostics import Report, from_error
        from parc.errors import InfeasibleError

        report = Report(command, diagnostics=from_error(exc, file))
        if fmt == "json" and isinstance(exc, InfeasibleError) and exc.document:
            # an infeasible plan is still a plan document: the closest placement and why
            from parc.report import to_json

            click.echo(to_json({**exc.document, "problems": report.document()["problems"]}), nl=False)
        else:
            _emit(report, fmt if fmt in ("json", "github") else "text")
    sys.exit(exc.exit_code)


def _emit(report: Any, fmt: str) -> int:
    """Print a :class:`parc.diagnostics.Report` in ``fmt``; return its exit code."""
    out, err = report.render(fmt)
    if out:
        click.echo(out, nl=False)
    if err:
        click.echo(err, nl=False, err=True)
    return int(report.exit_code)


def _run(fn: Callable[[], int | None], fmt: str = "text", command: str = "", file: str = "") -> None:
    """Run a command body: a ParcError prints (in ``fmt``; its lines name ``file`` when given)
    and exits with its code; anything else is a bug and prints its traceback."""
    try:
        code = fn()
    except ParcError as exc:
        if _DEBUG["on"]:
            traceback.print_exc()
        _fail(exc, fmt, command, file)
    except KeyboardInterrupt:
        click.echo("interrupted", err=True)
        sys.exit(130)
    except Exception:  # a bug: say so, with the traceback
        traceback.print_exc()
        click.echo(f"parc {__version__}: internal error (a bug); please report it with the traceback above",
                   err=True)
        sys.exit(70)
    sys.exit(code or 0)


_FORMAT = click.option("--format", "fmt", type=click.Choice(["text", "json", "github"]), default="text",
                       show_default=True,
                       help="text for people; json (one document on stdout) for programs; github for GitHub "
                       "Actions annotations (::error file=...,line=...,col=...::).")
_SKIP = click.option("--skip-non-specs", is_flag=True,
                     help="Skip YAML files that are not ServingSpecs instead of reporting them (the pre-commit "
                     "hook passes every staged YAML file). Directories always skip them.")


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "--version", prog_name="parc", message="%(prog)s %(version)s")
@click.option("--debug", is_flag=True, help="Show tracebacks for errors.")
def main(debug: bool) -> None:
    """parc: compile one ServingSpec into a costed TP x PP x DP x EP placement and the
    vLLM / TensorRT-LLM / TGI, SLURM and Kubernetes artefacts that run it.

    Exit codes: 0 ok, 1 drift (--check), 2 invalid spec or usage, 3 infeasible.
    """
    _DEBUG["on"] = debug


@main.command()
@click.argument("specs", nargs=-1, required=True)
@_FORMAT
@_SKIP
def validate(specs: tuple[str, ...], fmt: str, skip_non_specs: bool) -> None:
    """Check specs (files or directories): schema and semantic checks, nothing written.
    Every spec is checked; the exit code is the highest among them."""

    def go() -> int:
        from parc import batch

        paths, skipped = batch.spec_files(specs, skip_non_specs)
        return _emit(batch.validate_all(paths, skipped), fmt)

    _run(go, fmt, "validate")


@main.command()
def schema() -> None:
    """Print the JSON Schema of the spec (same bytes as schemas/servingspec.schema.json)."""

    def go() -> None:
        from parc.schema import schema_text

        click.echo(schema_text(), nl=False)

    _run(go)


@main.command()
@click.argument("what", type=click.Choice(["gpus", "models", "checkpoints"]))
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True)
def catalog(what: str, fmt: str) -> None:
    """What parc knows about: GPUs, model architectures or checkpoints, with sources."""

    def go() -> None:
        from parc import report

        click.echo(report.catalog(what, fmt), nl=False)

    _run(go)


@main.command()
@click.argument("spec")
@click.argument("variants", nargs=-1, metavar="[VARIANT]...")
@click.option("--format", "fmt", type=click.Choice(["table", "text", "json", "markdown", "csv", "github"]),
              default="table", show_default=True,
              help="table (= text) for people; json: plan.json (a plan document with feasible: false when none "
              "fits); markdown: the PLAN.md `compile` writes; csv: one row per placement; github: the table, "
              "problems as GitHub Actions annotations.")
@click.option("--top", type=click.IntRange(0, 100), default=5, show_default=True, help="Alternatives to show.")
@click.option("--set", "sets", multiple=True, metavar="PATH=VALUE",
              help="Override a spec field before validation, e.g. constraints.tp=8 or slo.objective=cost "
              "(VALUE is YAML; repeatable).")
@click.option("--compare", "comparing", is_flag=True,
              help="Solve the spec pinned to each VARIANT (KEY=VALUE[,KEY=VALUE...] with keys tp, pp, ep, "
              "dpAttention, replicas, pool, engine) and show their cost terms side by side: "
              "parc plan spec.yaml --compare tp=4 tp=8.")
def plan(spec: str, variants: tuple[str, ...], fmt: str, top: int, sets: tuple[str, ...], comparing: bool) -> None:
    """Solve the placement: the chosen plan, ranked alternatives, rejections by reason."""

    def go() -> None:
        from parc import report
        from parc.pipeline import compare, plan_for

        path = Path(spec)
        if path.is_dir():
            raise UsageError(f"{spec}: is a directory; parc plan takes one spec file")
        if variants and not comparing:
            raise UsageError(f"unexpected argument {variants[0]!r}: parc plan takes one spec file (variants "
                             "follow --compare)")
        if comparing:
            from parc.review import compare_text

            if "=" in spec and not path.exists():
                raise UsageError(f"{spec}: no such spec file; the spec comes first: parc plan SPEC --compare "
                                 "tp=4 tp=8")
            if len(variants) < 2:
                raise UsageError("--compare needs two or more variants, e.g. parc plan SPEC --compare tp=4 tp=8")
            click.echo(compare_text(compare(path, variants, sets)), nl=False)
            return
        planned = plan_for(path, top=top, sets=sets)
        doc: dict[str, Any] = planned.document
        if fmt in ("markdown", "csv"):
            from parc import review

            click.echo(review.markdown(planned) if fmt == "markdown" else review.csv_text(doc), nl=False)
            return
        click.echo(report.plan_json(doc) if fmt == "json" else report.plan_table(doc), nl=False)

    _run(go, fmt if fmt in ("json", "github") else "text", "plan", spec)


@main.command(name="compile")
@click.argument("specs", nargs=-1, required=True)
@click.option("-o", "--output", "output", required=True, type=click.Path(file_okay=False),
              help="Output directory (created if missing; files parc did not write are kept).")
@click.option("--check", is_flag=True, help="Write nothing; exit 1 with a diff (on stdout) if OUTPUT is not what "
              "would be written.")
@click.option("--target", "targets", multiple=True, type=click.Choice(["launch", "slurm", "kubernetes", "helm"]),
              help="Write only these targets (repeatable). Default: the spec's targets.")
@_FORMAT
@_SKIP
def compile_(specs: tuple[str, ...], output: str, check: bool, targets: tuple[str, ...], fmt: str,
             skip_non_specs: bool) -> None:
    """Plan and write plan.json, PLAN.md, launch scripts, SLURM, Kubernetes and Helm files.

    One spec file compiles into OUTPUT; a directory or several files compile each spec
    into OUTPUT/<metadata.name>/. Every spec is planned; if any fails, nothing is written
    and the exit code is the highest among them.
    """

    def go() -> int:
        from parc import batch, write
        from parc.diagnostics import from_error
        from parc.errors import DriftError

        paths, skipped = batch.spec_files(specs, skip_non_specs)
        many = len(specs) > 1 or Path(specs[0]).is_dir()
        report, arts = batch.compile_all(paths, targets or None, many, skipped)
        if report.exit_code:
            return _emit(report, fmt)
        out = write.check_output_dir(output, paths)
        report.extra["output"] = output
        if check:
            try:
                write.check(out, arts, output)
            except DriftError as exc:
                report.diff = exc.diff
                report.diagnostics += from_error(exc)
                report.outcome = str(exc)
                return _emit(report, fmt)
            report.outcome = f"{output}: up to date ({len(arts)} files)"
            return _emit(report, fmt)
        write.write(out, arts)
        report.outcome = f"{output}: wrote {len(arts)} files"
        return _emit(report, fmt)

    _run(go, fmt, "compile")


@main.command()
@click.argument("results", type=click.Path(dir_okay=False))
@click.option("-o", "--output", "output", required=True, type=click.Path(dir_okay=False),
              help="Calibration file to write (YAML); reference it from a spec as `calibration: <path>`.")
@click.option("--hold-out", "held_out", multiple=True, metavar="SOURCE_ID",
              help="Keep the rows of this source_id out of the fit and report the error on them (repeatable).")
def calibrate(results: str, output: str, held_out: tuple[str, ...]) -> None:
    """Fit the cost model's efficiency factors to your own measured results.

    RESULTS is a CSV in the benchmark-corpus format (columns: model, gpu, tp, pp, ep,
    dp_attention, replicas, gpu_count, nodes, precision, kv_cache_precision, engine,
    input_tokens, output_tokens, concurrency, output_tokens_per_s or
    output_tokens_per_s_per_gpu, ttft_ms, tpot_ms, source_id); see the README.
    """

    def go() -> None:
        from parc import calibrate as cal
        from parc.yamlout import dump

        rows, skipped = cal.read_rows(Path(results))
        sources = {r.source for r in rows}
        unknown = sorted(set(held_out) - sources)
        if unknown:
            raise UsageError(f"--hold-out {', '.join(unknown)}: no usable row of {results} has that source_id "
                             f"(its sources: {', '.join(sorted(sources)) or 'none'})")
        fit_rows = [r for r in rows if r.source not in held_out]
        test_rows = [r for r in rows if r.source in held_out] or fit_rows
        if len(fit_rows) < 3:
            raise UsageError(f"{results}: {len(fit_rows)} usable rows; parc calibrate needs at least 3 "
                             f"(skipped: {', '.join(f'{k} ({v})' for k, v in sorted(skipped.items())) or 'none'})")
        click.echo(f"parc calibrate: {len(rows)} rows ({len(fit_rows)} to fit, {len(test_rows)} to score); "
                   "fitting...", err=True)
        before = cal.report(cal.score(test_rows, {}))
        factors = cal.fit(fit_rows, base={})
        scored = cal.score(test_rows, factors)
        after = cal.report(scored)
        doc = cal.calibration_document(factors, f"{Path(results).name} (sha256 {cal.digest(Path(results))})",
                                       fit_rows, scored, heldout=", ".join(held_out))
        from parc.targets import Artifact
        from parc.write import write_file

        write_file(Path(output), Artifact(Path(output).name, "# Written by `parc calibrate`.\n" + dump(doc)))
        scope = "held-out rows" if held_out else "the fitted rows"
        click.echo(f"{output}: fitted on {len(fit_rows)} rows; on {scope}: median throughput error "
                   f"{before.median_ape * 100:.1f}% -> {after.median_ape * 100:.1f}%, ranking agreement "
                   f"{after.ranking * 100:.1f}%")

    _run(go)



@main.group()
def chart() -> None:
    """The Helm chart parc-serving, as shipped in this parc."""


@chart.command(name="export")
@click.argument("directory")
@click.option("--check", is_flag=True, help="Write nothing; exit 1 with a diff (on stdout) if DIRECTORY/parc-serving "
              "is not exactly the shipped chart.")
def chart_export(directory: str, check: bool) -> None:
    """Write the shipped chart into DIRECTORY/parc-serving.

    The chart is the one that installs the values this parc writes (out/helm/values.yaml).
    The directory is replaced atomically. Files parc exported before are replaced; a file it
    did not write, or one edited since, stops the export (exit 2) instead of being overwritten;
    other files in the directory are kept.
    """

    def go() -> int:
        from parc.chart import export
        from parc.errors import DriftError

        try:
            out = export(directory, check=check)
        except DriftError as exc:
            click.echo(exc.diff, nl=False)
            click.echo(str(exc), err=True)
            return exc.exit_code
        click.echo(f"{out}: {'up to date' if check else 'written'}", err=True)
        return 0

    _run(go)


if __name__ == "__main__":  # pragma: no cover
    main()
