"""What a command found, in the three forms a user or a pipeline reads: ``text`` (people),
``json`` (programs) and ``github`` (GitHub Actions workflow-command annotations).

Every error parc reports becomes :class:`Diagnostic` records (file, line, column, field path,
message, fix, exit class); a command's run over one or many specs is a :class:`Report`. The
CLI renders a report; nothing here decides what is wrong.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from parc.errors import DriftError, InfeasibleError, ParcError, SpecError, printable

#: Exit code -> exit class (DESIGN.md: Exit codes). A run over several specs exits with the
#: highest code among them.
EXIT_CLASSES = {0: "ok", 1: "drift", 2: "invalid", 3: "infeasible"}

FORMATS = ("text", "json", "github")

Severity = Literal["error", "warning"]


def split_fix(message: str) -> tuple[str, str]:
    """``(message, fix)``: parc's messages end with the remedy after the last ``'; '``
    ("unknown GPU 'H1OO'; did you mean 'H100-SXM-80GB'?"). A message without one has an
    empty fix."""
    head, sep, tail = message.rpartition("; ")
    return (head, tail) if sep and head else (message, "")


@dataclass(frozen=True)
class Diagnostic:
    """One located finding. ``line``/``column`` are 1-based, 0 when the finding is about the
    whole file; ``detail`` holds further lines (the closest placement, reasons)."""

    file: str
    message: str
    exit_code: int = 2
    line: int = 0
    column: int = 0
    field: str = ""
    fix: str = ""
    severity: Severity = "error"
    detail: tuple[str, ...] = ()

    @property
    def exit_class(self) -> str:
        return EXIT_CLASSES.get(self.exit_code, "bug") if self.severity == "error" else "warning"

    def where(self) -> str:
        if not self.file:
            return ""
        return f"{self.file}:{self.line}:{self.column}" if self.line > 0 else self.file

    def text_lines(self) -> list[str]:
        """The lines of the text form: ``file:line:col: field: message; fix`` then the detail."""
        body = f"{self.message}; {self.fix}" if self.fix and not self.fix.startswith("fix: ") else self.message
        if self.severity == "warning":
            body = f"warning: {body}"
        head = ": ".join(x for x in (self.where(), self.field, body) if x)
        lines = [head] + [f"{self.file}: {d}" if self.file else d for d in self.detail]
        if self.fix.startswith("fix: "):
            lines.append(f"{self.file}: {self.fix}" if self.file else self.fix)
        return [printable(x) for x in lines]

    def document(self) -> dict[str, Any]:
        fix = self.fix.removeprefix("fix: ")
        return {"file": self.file, "line": self.line, "column": self.column, "field": self.field,
                "message": self.message, "fix": fix, "severity": self.severity,
                "exitClass": self.exit_class, "exitCode": self.exit_code if self.severity == "error" else 0,
                "detail": list(self.detail)}

    def github(self) -> str:
        """A GitHub Actions annotation (``::error file=...,line=...,col=...,title=...::message``),
        escaped as the runner's workflow-command parser expects."""
        props = []
        if self.file:
            props.append(f"file={_gh_prop(self.file)}")
        if self.line > 0:
            props.append(f"line={self.line}")
            if self.column > 0:
                props.append(f"col={self.column}")
        props.append(f"title={_gh_prop('parc ' + (self.field or self.exit_class))}")
        fix = self.fix.removeprefix("fix: ")
        text = "\n".join([self.message + (f"; {fix}" if fix else "")] + list(self.detail))
        return f"::{self.severity} {','.join(props)}::{_gh_data(text)}"


def _gh_data(s: str) -> str:
    return s.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def _gh_prop(s: str) -> str:
    return _gh_data(s).replace(":", "%3A").replace(",", "%2C")


def from_error(exc: ParcError, file: str = "") -> list[Diagnostic]:
    """The diagnostics of one error raised while processing ``file`` (the spec, or '')."""
    code = exc.exit_code
    if isinstance(exc, SpecError):
        out = []
        for p in exc.problems:
            msg, fix = split_fix(p.message)
            out.append(Diagnostic(p.location.file, msg, code, p.location.line, p.location.column, p.path, fix))
        return out
    if isinstance(exc, InfeasibleError):
        fixes = [c for c in exc.closest if c.startswith("fix: ")]
        detail = tuple(c for c in exc.closest if not c.startswith("fix: "))
        return [Diagnostic(file, str(exc), code, fix=fixes[0] if fixes else "", detail=detail)]
    if isinstance(exc, DriftError):
        return [Diagnostic(d.file, d.message, code, fix="run `parc compile` to regenerate it")
                for d in exc.entries] or [Diagnostic(file, str(exc), code)]
    text = str(exc)
    if file and text.startswith(f"{file}: "):
        text = text[len(file) + 2:]
    msg, fix = split_fix(text)
    return [Diagnostic(file, msg, code, fix=fix)]


def warning(file: str, message: str) -> Diagnostic:
    msg, fix = split_fix(message)
    return Diagnostic(file, msg, 0, fix=fix, severity="warning")


@dataclass
class SpecResult:
    """One spec's outcome in a run: its exit code, what it produced, what was found."""

    file: str
    exit_code: int = 0
    name: str = ""
    summary: str = ""
    diagnostics: list[Diagnostic] = field(default_factory=list)
    skipped: bool = False

    def document(self) -> dict[str, Any]:
        status = "skipped" if self.skipped else EXIT_CLASSES.get(self.exit_code, "bug")
        return {"file": self.file, "name": self.name, "status": status,
                "exitCode": self.exit_code, "summary": self.summary}


@dataclass
class Report:
    """A command's run: per-spec results, findings not tied to one spec, the closing line."""

    command: str
    specs: list[SpecResult] = field(default_factory=list)
    diagnostics: list[Diagnostic] = field(default_factory=list)
    outcome: str = ""
    diff: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def exit_code(self) -> int:
        codes = [s.exit_code for s in self.specs] + [d.exit_code for d in self.all_diagnostics()
                                                     if d.severity == "error"]
        return max(codes, default=0)

    def all_diagnostics(self) -> list[Diagnostic]:
        return [d for s in self.specs for d in s.diagnostics] + self.diagnostics

    def document(self) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "apiVersion": "parc.dev/v1alpha1", "kind": "Report", "command": self.command,
            "exitCode": self.exit_code, "exitClass": EXIT_CLASSES.get(self.exit_code, "bug"),
            "outcome": self.outcome, "specs": [s.document() for s in self.specs],
            "problems": [d.document() for d in self.all_diagnostics()],
        }
        if self.diff:
            doc["diff"] = self.diff
        doc.update(self.extra)
        return doc

    def render(self, fmt: str) -> tuple[str, str]:
        """``(stdout, stderr)`` of this report in ``fmt``. Diffs always go to stdout."""
        from parc.report import to_json

        if fmt == "json":
            return to_json(self.document()), ""
        out = [printable(s.summary) + "\n" for s in self.specs if s.summary]
        if self.diff:
            out.append(self.diff if self.diff.endswith("\n") else self.diff + "\n")
        closing = [printable(self.outcome) + "\n"] if self.outcome else []
        if fmt == "github":
            return "".join(out + [d.github() + "\n" for d in self.all_diagnostics()] + closing), ""
        err = [line + "\n" for d in self.all_diagnostics() for line in d.text_lines()]
        # the closing line goes with the findings when there are errors, with the results otherwise
        if self.exit_code:
            return "".join(out), "".join(err + closing)
        return "".join(out + closing), "".join(err)


def plural(n: int, word: str) -> str:
    return f"{n} {word}{'s' if n != 1 else ''}"
