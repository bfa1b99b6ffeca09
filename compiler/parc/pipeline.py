"""The stages joined: spec file -> plan (and, for compile, rendered files)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from parc import plan as plan_stage
from parc.resolve import load_and_resolve
from parc.solver import solve


def make_plan(path: str | Path, top: int = 5) -> dict[str, Any]:
    """Load, validate, resolve and solve the spec at ``path``; return plan.json as a dict."""
    res = load_and_resolve(path)
    return plan_stage.build(res, solve(res, top=top)).document


def check_launch(plan: plan_stage.Plan) -> None:
    """Every engine argv parc emits must be valid for the pinned release's flag table (a bug
    otherwise). The user's extraArgs at the end are checked too, at validation."""
    from parc.engines import flags

    for pg in plan.groups:
        rel = flags.release(pg.engine, plan.version)
        for p in pg.processes:
            argv = list(p.argv)
            while argv and tuple(argv[: len(rel.command)]) != rel.command and argv[0] != "ray":
                argv = argv[1:]  # launcher wrappers (trtllm-llmapi-launch)
            if not argv or argv[0] == "ray":
                continue
            bad = flags.check_argv(pg.engine, plan.version, argv, len(pg.job.extra_args))
            if bad:
                raise AssertionError(f"parc emitted an argv its {pg.engine} flag table rejects: {bad}")


def compile_spec(path: str | Path, targets: tuple[str, ...] | None = None, top: int = 5,
                 warnings: list[str] | None = None) -> tuple[str, list[Any]]:
    """Load .. render one spec: (metadata.name, artifacts). ``targets`` overrides the spec's;
    what the deployment will lack is appended to ``warnings`` (as ``file: message``)."""
    from parc.targets import Inputs, build

    res = load_and_resolve(path)
    plan = plan_stage.build(res, solve(res, top=top))
    check_launch(plan)
    if warnings is not None:
        warnings += [f"{res.file}: warning: {w}" for w in plan.warnings]
    chosen = targets or res.targets
    return res.spec.metadata.name, build(Inputs(res, plan), tuple(chosen))


def compile_many(paths: list[Path], targets: tuple[str, ...] | None = None,
                 warnings: list[str] | None = None) -> list[Any]:
    """Several specs: each into ``<metadata.name>/``; duplicate names are an error."""
    from parc.errors import UsageError
    from parc.targets import Artifact

    seen: dict[str, Path] = {}
    out: list[Artifact] = []
    for p in paths:
        name, arts = compile_spec(p, targets, warnings=warnings)
        if name in seen:
            raise UsageError(f"{p}: metadata.name {name!r} is also used by {seen[name]}; names must be unique "
                             "when compiling several specs")
        seen[name] = p
        out += [Artifact(f"{name}/{a.path}", a.content, a.mode) for a in arts]
    return out
