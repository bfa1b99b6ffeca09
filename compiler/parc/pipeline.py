"""The stages joined: spec file -> plan document (and, for compile, rendered files)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from parc import plan as plan_stage
from parc.resolve import load_and_resolve
from parc.solver import solve


def make_plan(path: str | Path, top: int = 5) -> dict[str, Any]:
    """Load, validate, resolve and solve the spec at ``path``; return plan.json as a dict."""
    res = load_and_resolve(path)
    result = solve(res, top=top)
    return plan_stage.build(res, result)


def compile_spec(path: str | Path, targets: tuple[str, ...] | None = None, top: int = 5) -> tuple[str, list[Any]]:
    """Load .. render one spec: (metadata.name, artifacts). ``targets`` overrides the spec's."""
    from parc.engines import flags
    from parc.targets import Inputs, build

    res = load_and_resolve(path)
    result = solve(res, top=top)
    doc = plan_stage.build(res, result)
    # the argv parc emits must be valid for the pinned engine release (a bug otherwise)
    extra = len(res.spec.engine.extra_args)
    for entry in doc["launch"]:
        if entry["argv"][0] == "ray":
            continue
        argv = entry["argv"][1:] if entry["argv"][0] == "trtllm-llmapi-launch" else entry["argv"]
        bad = flags.check_argv(doc["engine"], res.spec.engine.version, argv, extra)
        if bad:
            raise AssertionError(f"parc emitted an argv its {doc['engine']} flag table rejects: {bad}")
    chosen = targets or res.targets
    return res.spec.metadata.name, build(Inputs(res, result, doc), tuple(chosen))


def compile_many(paths: list[Path], targets: tuple[str, ...] | None = None) -> list[Any]:
    """Several specs: each into ``<metadata.name>/``; duplicate names are an error."""
    from parc.errors import UsageError
    from parc.targets import Artifact

    seen: dict[str, Path] = {}
    out: list[Artifact] = []
    for p in paths:
        name, arts = compile_spec(p, targets)
        if name in seen:
            raise UsageError(f"{p}: metadata.name {name!r} is also used by {seen[name]}; names must be unique "
                             "when compiling several specs")
        seen[name] = p
        out += [Artifact(f"{name}/{a.path}", a.content, a.mode) for a in arts]
    return out
