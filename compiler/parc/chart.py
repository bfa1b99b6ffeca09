"""``parc chart export``: the Helm chart ``parc-serving`` shipped in the installed package,
written to a directory of the user's.

The chart is read from :func:`parc.resources.resource_dir` (the wheel's copy, or the
repository's ``charts/`` in a source checkout), so the exported chart always matches the
values this parc writes. It is written with :func:`parc.write.write`, the writer of
``parc compile``: atomically, with a ``.parc-manifest`` (listed in the chart's
``.helmignore``), replacing only files parc wrote before, and refusing (exit 2) to overwrite
a file it did not write or one edited since.
"""

from __future__ import annotations

import shlex
from pathlib import Path

from parc.errors import UsageError
from parc.targets import Artifact

CHART = "parc-serving"


def chart_files() -> list[Artifact]:
    """Every file of the shipped chart, paths relative to the chart directory, sorted."""
    from parc.resources import resource_dir

    root = resource_dir("charts") / CHART
    if not (root / "Chart.yaml").is_file():
        raise FileNotFoundError(f"parc resource {root}/Chart.yaml not found; reinstall parc")
    files = sorted(p for p in root.rglob("*") if p.is_file() and "__pycache__" not in p.parts)
    return [Artifact(p.relative_to(root).as_posix(), p.read_text(encoding="utf-8")) for p in files]


def target(directory: str) -> Path:
    """``DIRECTORY/parc-serving``, or UsageError (exit 2) for a directory parc must not use."""
    from parc.write import check_output_dir

    if directory.strip() == "":
        raise UsageError("DIRECTORY is empty (an unset variable?); give the directory to hold the chart, e.g. charts/")
    if Path(directory).exists() and not Path(directory).is_dir():
        raise UsageError(f"{directory}: exists and is not a directory")
    return check_output_dir(str(Path(directory) / CHART), [])


def export(directory: str, check: bool = False) -> Path:
    """Write the chart to ``DIRECTORY/parc-serving`` (created if missing) and return that path;
    with ``check``, write nothing and raise DriftError (exit 1) when it is not exactly the
    shipped chart."""
    from parc import write
    from parc.errors import DriftError

    out = target(directory)
    files = chart_files()
    if not check:
        write.write(out, files)
        return out
    diff, entries = write.drift(out, files)
    if entries:
        n = len(entries)
        raise DriftError(f"{out}: {n} file{'s differ' if n != 1 else ' differs'} from the chart this parc ships; "
                         f"run `parc chart export {shlex.quote(directory)}`", diff, entries)
    return out
