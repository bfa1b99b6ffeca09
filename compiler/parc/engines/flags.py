"""Engine flags as a versioned contract: the tables in ``flags/<engine>.toml`` list every
CLI flag a release accepts (extracted from the engine's own parser at a recorded commit),
and :func:`check_argv` checks an argv against them.

A table holds hundreds of flags per release (vLLM's file is 150 kB, about 0.1 s to parse), and
most commands need only a release's metadata (version, image, command): the file is read as
its generators write it, one part per ``[versions."V"]`` header, and a release's flags are
parsed when something asks for them (tests/test_compile.py checks the parts read as the whole
file does)."""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from typing import Any

from parc._toml import tomllib
from parc.engines import DATA


@dataclass(frozen=True)
class Release:
    """One engine release's CLI surface."""

    engine: str
    version: str
    repo: str
    tag: str
    commit: str
    image: str
    images: dict[str, str]  # vendor -> image where it differs from ``image`` (e.g. amd: the ROCm build)
    command: tuple[str, ...]
    positional_model: bool

    @property
    def flags(self) -> dict[str, dict[str, Any]]:
        """Canonical name -> spec (aliases resolved via ``lookup``); parsed on first use."""
        return _flags(self.engine, self.version)

    def lookup(self, name: str) -> dict[str, Any] | None:
        hit = self.flags.get(name)
        if hit is not None:
            return hit
        for spec in self.flags.values():
            if name in spec.get("aliases", ()) or (spec.get("negation") and name == spec["negation"]):
                return spec
        return None


_VERSION = re.compile(r'^\[versions\."([^"]+)"\]$', re.MULTILINE)
_FLAG = re.compile(r'^\[versions\."[^"]+"\.flags\.', re.MULTILINE)


@functools.lru_cache(maxsize=None)
def _parts(engine: str) -> tuple[str, dict[str, str]]:
    """The table's text before its first release, and each release's part: its
    ``[versions."V"]`` header and metadata, then its ``[versions."V".flags."--x"]`` tables."""
    text = (DATA / "flags" / f"{engine}.toml").read_text(encoding="utf-8")
    marks = list(_VERSION.finditer(text))
    ends = [m.start() for m in marks[1:]] + [len(text)]
    return (text[: marks[0].start()] if marks else text,
            {m.group(1): text[m.start(): end] for m, end in zip(marks, ends)})


@functools.lru_cache(maxsize=None)
def table(engine: str) -> dict[str, Any]:
    """The table without its flags: ``engine``, ``default_version`` and each release's metadata."""
    head, parts = _parts(engine)
    out = tomllib.loads(head)
    out["versions"] = {}
    for v, part in parts.items():
        flag = _FLAG.search(part)
        out["versions"][v] = tomllib.loads(part[: flag.start()] if flag else part)["versions"][v]
    return out


@functools.lru_cache(maxsize=None)
def _flags(engine: str, version: str) -> dict[str, dict[str, Any]]:
    return dict(tomllib.loads(_parts(engine)[1][version])["versions"][version].get("flags", {}))


def versions(engine: str) -> list[str]:
    return sorted(table(engine)["versions"])


def default_version(engine: str) -> str:
    return str(table(engine)["default_version"])


@functools.lru_cache(maxsize=None)
def release(engine: str, version: str | None = None) -> Release:
    t = table(engine)
    v = version or str(t["default_version"])
    raw = t["versions"][v]
    return Release(engine, v, raw["repo"], raw.get("tag", ""), raw["commit"], raw.get("image", ""),
                   dict(raw.get("images", {})), tuple(raw["command"]), bool(raw["positional_model"]))


def _ok_value(spec: dict[str, Any], value: str) -> str | None:
    """None when ``value`` fits the flag's type, else why not. ``$(VAR)`` references are
    checked for their literal parts only."""
    if "$(" in value:
        return None
    kind = spec["type"]
    try:
        if kind == "int":
            int(value)
        elif kind == "float":
            float(value)
    except ValueError:
        return f"expects {kind}, got {value!r}"
    if kind == "choice" and spec["choices"] and value not in spec["choices"]:
        return f"expects one of {', '.join(spec['choices'])}, got {value!r}"
    return None


def check_argv(engine: str, version: str | None, argv: list[str], extra: int = 0) -> list[str]:
    """Problems with ``argv`` against the release's table (empty when it is valid).
    The last ``extra`` elements are the user's ``engine.extraArgs`` and are not checked."""
    rel = release(engine, version)
    problems: list[str] = []
    if tuple(argv[: len(rel.command)]) != rel.command:
        return [f"argv does not start with {' '.join(rel.command)}"]
    rest = argv[len(rel.command): len(argv) - extra if extra else None]
    if rel.positional_model:
        if not rest or rest[0].startswith("-"):
            return ["the model must come first"]
        rest = rest[1:]
    seen: set[str] = set()
    i = 0
    while i < len(rest):
        name = rest[i]
        spec = rel.lookup(name)
        if spec is None:
            problems.append(f"{name}: not a flag of {engine} {rel.version}")
            i += 2 if i + 1 < len(rest) and not rest[i + 1].startswith("-") else 1
            continue
        if name in seen:
            problems.append(f"{name}: given twice")
        seen.add(name)
        if spec["type"] == "bool":
            i += 1
            continue
        if i + 1 >= len(rest):
            problems.append(f"{name}: missing value")
            break
        why = _ok_value(spec, rest[i + 1])
        if why:
            problems.append(f"{name}: {why}")
        i += 2
    return problems
