"""The one exception root of parc and its exit codes (DESIGN.md: Exit codes).

0 success, 1 ``--check`` found drift, 2 invalid spec or usage, 3 infeasible placement,
anything else is a bug. Library code raises these; only the CLI turns them into exits.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence


@dataclass(frozen=True, order=True)
class Location:
    """A place in a source file: 1-based line and column."""

    file: str
    line: int = 0
    column: int = 0

    def __str__(self) -> str:
        if self.line <= 0:
            return self.file
        return f"{self.file}:{self.line}:{self.column}"


def printable(text: str) -> str:
    """``text`` with control characters (line breaks, terminal escapes) shown as escapes,
    so a hostile value in a spec cannot forge or hide lines of parc's output."""
    return "".join(ch if 0x20 <= ord(ch) != 0x7F and not 0x80 <= ord(ch) <= 0x9F else f"\\x{ord(ch):02x}"
                   for ch in text)


@dataclass(frozen=True)
class Problem:
    """One located user error: where, which field, what is wrong and how to fix it."""

    location: Location
    path: str
    message: str

    def __str__(self) -> str:
        where = printable(str(self.location))
        if self.path:
            return f"{where}: {printable(self.path)}: {printable(self.message)}"
        return f"{where}: {printable(self.message)}"


class ParcError(Exception):
    """Root of every error parc reports to a user. ``exit_code`` is what the CLI exits with."""

    exit_code = 70

    def lines(self) -> list[str]:
        """The lines the CLI prints on stderr."""
        return [str(self)]


class UsageError(ParcError):
    """Bad command-line usage or unreadable input (exit 2)."""

    exit_code = 2


class SpecError(ParcError):
    """One or more located problems in a spec (exit 2). Problems are kept in file order."""

    exit_code = 2

    def __init__(self, problems: list[Problem]):
        self.problems = sorted(problems, key=lambda p: (p.location, p.path))
        super().__init__("\n".join(str(p) for p in self.problems))

    def lines(self) -> list[str]:
        n = len(self.problems)
        return [str(p) for p in self.problems] + [f"{n} problem{'s' if n != 1 else ''} found"]


class InfeasibleError(ParcError):
    """No placement satisfies memory, topology, engine or SLO constraints (exit 3)."""

    exit_code = 3

    def __init__(self, message: str, closest: list[str] | None = None):
        self.closest = closest or []
        #: plan.json-shaped document of the closest placement and why (set by the pipeline,
        #: which knows the spec); printed by ``parc plan --format json``.
        self.document: dict[str, object] | None = None
        #: the solver's closest miss (a Solution that misses the SLO, or a Rejection) and all
        #: rejections; typed in parc.solver, kept opaque here so errors import nothing.
        self.closest_solution: object | None = None
        self.closest_rejection: object | None = None
        self.rejections: Sequence[object] = ()
        super().__init__(message)

    def lines(self) -> list[str]:
        return [str(self)] + self.closest


@dataclass(frozen=True)
class Drift:
    """One path of the output directory that is not what ``parc compile`` would write."""

    file: str
    message: str


class DriftError(ParcError):
    """``compile --check`` found that the output directory differs (exit 1)."""

    exit_code = 1

    def __init__(self, message: str, diff: str, entries: list[Drift] | None = None):
        self.diff = diff
        self.entries = entries or []
        super().__init__(message)

    def lines(self) -> list[str]:
        return [self.diff.rstrip("\n"), str(self)] if self.diff else [str(self)]
