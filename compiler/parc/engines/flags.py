"""Engine flags as a versioned contract: the tables in ``flags/<engine>.toml`` list every
CLI flag a release accepts (extracted from the engine's own parser at a recorded commit),
and :func:`check_argv` checks an argv against them."""

from __future__ import annotations

import functools
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
    flags: dict[str, dict[str, Any]]  # canonical name -> spec; aliases resolved via ``lookup``

    def lookup(self, name: str) -> dict[str, Any] | None:
        hit = self.flags.get(name)
        if hit is not None:
            return hit
        for spec in self.flags.values():
            if name in spec.get("aliases", ()) or (spec.get("negation") and name == spec["negation"]):
                return spec
        return None


@functools.lru_cache(maxsize=None)
def table(engine: str) -> dict[str, Any]:
    with open(DATA / "flags" / f"{engine}.toml", "rb") as fh:
        return tomllib.load(fh)


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
                   dict(raw.get("images", {})), tuple(raw["command"]), bool(raw["positional_model"]),
                   dict(raw["flags"]))


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
