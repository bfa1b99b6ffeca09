"""Runs over many specs (a GitOps repository): every spec is processed, every failure is
reported with its file, and the run's exit code is the highest among them. Compile writes
nothing unless every spec compiled."""

from __future__ import annotations

import re
from pathlib import Path

from parc.diagnostics import Diagnostic, Report, SpecResult, from_error, plural, warning
from parc.errors import ParcError, UsageError
from parc.targets import Artifact

#: A top-level ``kind:`` or ``apiVersion:`` line that makes a YAML file a parc spec. Read
#: without parsing, so a spec with broken YAML is still recognised (and then reported), and
#: leniently (a misspelt ``kind: Servingspec`` under parc's apiVersion is a spec with an error).
_SPEC_LINE = re.compile(r"^(kind:\s*[\"']?servingspec[\"']?|apiVersion:\s*[\"']?parc\.dev/)\s*(#.*)?$",
                        re.IGNORECASE | re.MULTILINE)
_SNIFF_BYTES = 1 << 20


def is_spec(path: Path) -> bool:
    """Whether ``path`` looks like a ServingSpec (unreadable files count as specs, so the
    loader reports why)."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(_SNIFF_BYTES)
    except OSError:
        return True
    return bool(_SPEC_LINE.search(head.decode("utf-8", "replace")))


def spec_files(paths: tuple[str, ...], skip_non_specs: bool = False) -> tuple[list[Path], list[Path]]:
    """``(specs, skipped)``. Directories are expanded to the ``*.yaml``/``*.yml`` files directly
    inside, sorted, keeping only ServingSpecs; files named explicitly are specs unless
    ``skip_non_specs`` (the pre-commit hook, which is handed every YAML file of a commit)."""
    out: list[Path] = []
    skipped: list[Path] = []
    for p in paths:
        path = Path(p)
        if path.is_dir():
            found = sorted(q for q in path.iterdir() if q.suffix in (".yaml", ".yml") and q.is_file())
            specs = [q for q in found if is_spec(q)]
            if not specs:
                raise UsageError(f"{p}: directory has no ServingSpec .yaml or .yml files"
                                 + (f" ({plural(len(found), 'other YAML file')})" if found else ""))
            out += specs
            skipped += [q for q in found if q not in specs]
        elif skip_non_specs and path.is_file() and not is_spec(path):
            skipped.append(path)
        else:
            out.append(path)
    return out, skipped


def _skipped(report: Report, skipped: list[Path]) -> None:
    report.specs += [SpecResult(str(p), summary=f"{p}: skipped (not a ServingSpec)", skipped=True)
                     for p in skipped]


def validate_all(paths: list[Path], skipped: list[Path]) -> Report:
    """``parc validate``: schema and semantic checks of every spec."""
    from parc.resolve import load_and_resolve

    report = Report("validate")
    for path in paths:
        r = SpecResult(str(path))
        try:
            res = load_and_resolve(path)
        except ParcError as exc:
            r.exit_code, r.diagnostics = exc.exit_code, from_error(exc, str(path))
        else:
            r.name = res.spec.metadata.name
            r.summary = f"{path}: ok ({res.model.key}, {plural(sum(p.gpus for p in res.pools), 'GPU')})"
        report.specs.append(r)
    _skipped(report, skipped)
    bad = [s for s in report.specs if s.exit_code]
    if bad:
        n = sum(len(s.diagnostics) for s in bad)
        report.outcome = f"{plural(n, 'problem')} in {plural(len(bad), 'spec')}"
    return report


def compile_all(paths: list[Path], targets: tuple[str, ...] | None, many: bool,
                skipped: list[Path]) -> tuple[Report, list[Artifact]]:
    """Plan and render every spec: ``(report, artifacts)``; the artifacts are empty when any
    spec failed. With ``many`` each spec's files go under ``<metadata.name>/``, and two specs
    with one name are an error of the second."""
    from parc.pipeline import compile_spec

    report = Report("compile")
    arts: list[Artifact] = []
    seen: dict[str, str] = {}
    for path in paths:
        r = SpecResult(str(path))
        report.specs.append(r)
        warned: list[str] = []
        try:
            name, mine = compile_spec(path, targets, warnings=warned)
        except ParcError as exc:
            r.exit_code, r.diagnostics = exc.exit_code, from_error(exc, str(path))
            continue
        r.name = name
        r.diagnostics = [warning(str(path), w.partition(": warning: ")[2] or w) for w in warned]
        if many and name in seen:
            r.exit_code = 2
            r.diagnostics.append(Diagnostic(str(path), f"metadata.name {name!r} is also used by {seen[name]}", 2,
                                            field="metadata.name",
                                            fix="names must be unique when compiling several specs"))
            continue
        seen[name] = str(path)
        arts += [Artifact(f"{name}/{a.path}", a.content, a.mode) for a in mine] if many else mine
        r.summary = f"{path}: ok ({name}, {plural(len(mine), 'file')})" if many else ""
    _skipped(report, skipped)
    bad = [s for s in report.specs if s.exit_code]
    if bad:
        if len(paths) > 1:
            report.outcome = f"nothing written: {len(bad)} of {plural(len(paths), 'spec')} failed"
        return report, []
    return report, arts
