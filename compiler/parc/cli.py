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


def _fail(exc: ParcError) -> NoReturn:
    for line in exc.lines():
        click.echo(line, err=True)
    sys.exit(exc.exit_code)


def _run(fn: Callable[[], int | None]) -> None:
    try:
        code = fn()
    except ParcError as exc:
        if _DEBUG["on"]:
            traceback.print_exc()
        _fail(exc)
    except KeyboardInterrupt:
        click.echo("interrupted", err=True)
        sys.exit(130)
    except Exception:  # a bug: say so, with the traceback
        traceback.print_exc()
        click.echo(f"parc {__version__}: internal error (a bug); please report it with the traceback above",
                   err=True)
        sys.exit(70)
    sys.exit(code or 0)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "--version", prog_name="parc", message="%(prog)s %(version)s")
@click.option("--debug", is_flag=True, help="Show tracebacks for errors.")
def main(debug: bool) -> None:
    """parc: compile one ServingSpec into a costed TP x PP x DP x EP placement and the
    vLLM / TensorRT-LLM / TGI, SLURM and Kubernetes artefacts that run it.

    Exit codes: 0 ok, 1 drift (--check), 2 invalid spec or usage, 3 infeasible.
    """
    _DEBUG["on"] = debug


def spec_files(paths: tuple[str, ...]) -> list[Path]:
    """Expand files and directories (``*.yaml``/``*.yml`` directly inside) in sorted order."""
    out: list[Path] = []
    for p in paths:
        path = Path(p)
        if path.is_dir():
            found = sorted(q for q in path.iterdir() if q.suffix in (".yaml", ".yml") and q.is_file())
            if not found:
                raise UsageError(f"{p}: directory has no .yaml or .yml spec files")
            out += found
        else:
            out.append(path)
    return out


@main.command()
@click.argument("specs", nargs=-1, required=True)
def validate(specs: tuple[str, ...]) -> None:
    """Check specs (files or directories): schema and semantic checks, nothing written."""

    def go() -> int:
        from parc.errors import SpecError
        from parc.resolve import load_and_resolve

        problems: list[str] = []
        bad = 0
        for path in spec_files(specs):
            try:
                res = load_and_resolve(path)
            except SpecError as exc:
                bad += 1
                problems += exc.lines()[:-1]
                continue
            except UsageError as exc:
                bad += 1
                problems.append(str(exc))
                continue
            click.echo(f"{path}: ok ({res.model.key}, {sum(p.gpus for p in res.pools)} GPUs)")
        for line in problems:
            click.echo(line, err=True)
        if bad:
            n = len(problems)
            click.echo(f"{n} problem{'s' if n != 1 else ''} in {bad} spec{'s' if bad != 1 else ''}", err=True)
            return 2
        return 0

    _run(go)


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
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True)
@click.option("--top", type=click.IntRange(0, 100), default=5, show_default=True, help="Alternatives to show.")
def plan(spec: str, fmt: str, top: int) -> None:
    """Solve the placement: the chosen plan, ranked alternatives, rejections by reason."""

    def go() -> None:
        from parc import report
        from parc.pipeline import make_plan

        path = Path(spec)
        if path.is_dir():
            raise UsageError(f"{spec}: is a directory; parc plan takes one spec file")
        doc: dict[str, Any] = make_plan(path, top=top)
        click.echo(report.plan_json(doc) if fmt == "json" else report.plan_table(doc), nl=False)

    _run(go)


@main.command(name="compile")
@click.argument("specs", nargs=-1, required=True)
@click.option("-o", "--output", "output", required=True, type=click.Path(file_okay=False),
              help="Output directory (created if missing; files parc did not write are kept).")
@click.option("--check", is_flag=True, help="Write nothing; exit 1 with a diff if OUTPUT is not what would be written.")
@click.option("--target", "targets", multiple=True, type=click.Choice(["launch", "slurm", "kubernetes", "helm"]),
              help="Write only these targets (repeatable). Default: the spec's targets.")
def compile_(specs: tuple[str, ...], output: str, check: bool, targets: tuple[str, ...]) -> None:
    """Plan and write plan.json, launch scripts, SLURM, Kubernetes and Helm files.

    One spec file compiles into OUTPUT; a directory or several files compile each spec
    into OUTPUT/<metadata.name>/.
    """

    def go() -> None:
        from parc import write
        from parc.pipeline import compile_many, compile_spec

        paths = spec_files(specs)
        many = len(specs) > 1 or Path(specs[0]).is_dir()
        warned: list[str] = []
        arts = compile_many(paths, targets or None, warned) if many else \
            compile_spec(paths[0], targets or None, warnings=warned)[1]
        for w in warned:
            from parc.errors import printable

            click.echo(printable(w), err=True)
        out = write.check_output_dir(output, paths)
        if check:
            write.check(out, arts)
            click.echo(f"{output}: up to date ({len(arts)} files)")
            return
        write.write(out, arts)
        click.echo(f"{output}: wrote {len(arts)} files")

    _run(go)


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


if __name__ == "__main__":  # pragma: no cover
    main()
