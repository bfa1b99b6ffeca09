"""The stages joined: spec file -> plan (and, for compile, rendered files)."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

from parc import plan as plan_stage
from parc.errors import InfeasibleError
from parc.resolve import Resolved, load_and_resolve
from parc.solver import solve

if TYPE_CHECKING:
    from parc.loader import Document, PathT
    from parc.review import Variant


def make_plan(path: str | Path, top: int = 5, sets: Sequence[str] = ()) -> dict[str, Any]:
    """Load, validate, resolve and solve the spec at ``path``; return plan.json as a dict.
    ``sets`` are ``--set PATH=VALUE`` overrides applied before validation."""
    return plan_for(path, top, sets).document


def plan_for(path: str | Path, top: int = 5, sets: Sequence[str] = ()) -> plan_stage.Plan:
    """The typed plan of the spec at ``path`` with ``sets`` applied (what PLAN.md renders)."""
    res = resolve_with(path, [parse_set(s) for s in sets])
    try:
        result = solve(res, top=top)
    except InfeasibleError as exc:
        exc.document = plan_stage.infeasible_document(res, exc)
        raise
    return plan_stage.build(res, result)


# ----------------------------------------------------------------------------- --set


@dataclasses.dataclass(frozen=True)
class Override:
    """One ``--set PATH=VALUE``: the field path in the spec and the value parsed as YAML."""

    arg: str  # as the user wrote it, e.g. "--set constraints.tp=8", for error messages
    path: PathT
    value: Any


def parse_set(text: str, option: str = "--set") -> Override:
    """``constraints.tp=8`` -> Override; PATH is dotted camelCase field names with ``[i]`` (or
    ``.i``) list indices, VALUE a YAML 1.2 scalar or flow value (``8``, ``[4, 8]``, ``cost``)."""
    import re

    from parc.errors import SpecError, UsageError
    from parc.loader import load_text

    arg = f"{option} {text}"
    key, eq, raw = text.partition("=")
    key = key.strip()
    if not eq or not key:
        raise UsageError(f"{arg}: expected PATH=VALUE, e.g. {option} constraints.tp=8")
    if "\n" in raw or "\r" in raw:
        raise UsageError(f"{arg}: the value must be one line")
    path: list[str | int] = []
    for part in re.split(r"\.|(?=\[)", key):
        m = re.fullmatch(r"\[(\d+)\]|(\d+)|([A-Za-z][A-Za-z0-9]*)", part)
        if m is None:
            raise UsageError(f"{arg}: {part!r} in {key!r} is not a field name or [index]; write the path as in "
                             "the spec, e.g. cluster.pools[0].costPerGpuHour")
        path.append(m.group(3) if m.group(3) is not None else int(m.group(1) or m.group(2)))
    if not isinstance(path[0], str):
        raise UsageError(f"{arg}: a path starts with a field name")
    try:
        doc = load_text(f"v: {raw}", arg)
    except SpecError as exc:
        why = exc.problems[0].message if exc.problems else "invalid YAML"
        raise UsageError(f"{arg}: the value is not a YAML value ({why}); quote it, e.g. {key}='\"...\"'") from None
    return Override(arg, tuple(path), doc.data["v"])


def apply_overrides(doc: Document, overrides: Sequence[Override]) -> Document:
    """``doc`` with each override's value set at its path (missing mappings are created). The
    overridden nodes lose their file positions: errors about them name the ``--set`` instead."""
    import copy

    from parc.errors import UsageError
    from parc.loader import Document, dotted

    data = copy.deepcopy(doc.data)
    for ov in overrides:
        node = data
        for i, part in enumerate(ov.path):
            here = dotted(ov.path[:i]) or "the spec"
            if isinstance(part, int):
                if not isinstance(node, list):
                    raise UsageError(f"{ov.arg}: {here} is not a list, so [{part}] does not apply")
                if part >= len(node):
                    raise UsageError(f"{ov.arg}: {here} has {len(node)} items; [{part}] is out of range")
            elif not isinstance(node, dict):
                raise UsageError(f"{ov.arg}: {here} is not a mapping, so .{part} does not apply")
            if i == len(ov.path) - 1:
                node[part] = ov.value
                break
            if isinstance(node, dict) and part not in node:
                node[part] = {}
            node = node[part]

    def kept(p: PathT) -> bool:
        return not any(p[:len(ov.path)] == ov.path for ov in overrides)

    return Document(doc.file, data, {p: v for p, v in doc.values.items() if kept(p)},
                    {p: v for p, v in doc.keys.items() if kept(p)})


def resolve_with(path: str | Path, overrides: Sequence[Override] = ()) -> Resolved:
    """Load, apply ``overrides``, validate and resolve. A problem in an overridden field is
    located at its ``--set`` argument instead of a file position."""
    from parc.errors import Location, Problem, SpecError
    from parc.loader import dotted, load_file
    from parc.resolve import resolve

    if not overrides:
        return load_and_resolve(path)
    doc = apply_overrides(load_file(path), overrides)

    def where(p: Problem) -> Problem:
        for ov in reversed(overrides):
            d = dotted(ov.path)
            if p.path == d or p.path.startswith((d + ".", d + "[")):
                return Problem(Location(ov.arg), p.path, p.message)
        return p

    try:
        return resolve(doc)
    except SpecError as exc:
        raise SpecError([where(p) for p in exc.problems]) from None


# ----------------------------------------------------------------------------- --compare

#: ``--compare`` keys other than ``pool``: the spec field each one sets.
COMPARE_KEYS = {"tp": "constraints.tp", "pp": "constraints.pp", "ep": "constraints.ep",
                "dpAttention": "constraints.dpAttention", "replicas": "constraints.replicas",
                "engine": "engine.name"}


def compare(path: str | Path, variants: Sequence[str], sets: Sequence[str] = ()) -> list[Variant]:
    """Solve each ``--compare`` variant (``tp=4`` or ``tp=4,pp=1,pool=a``) of the spec, with
    ``sets`` applied to all: its best placement and the cost terms of its first group, or the
    reason it has none."""
    from parc import costmodel as cm
    from parc.errors import UsageError
    from parc.review import Variant

    base = [parse_set(s) for s in sets]
    out: list[Variant] = []
    for text in variants:
        arg = f"--compare {text}"
        ovs: list[Override] = []
        pool = None
        for item in (x.strip() for x in text.split(",")):
            key, eq, value = item.partition("=")
            if not eq or not value.strip():
                raise UsageError(f"{arg}: expected key=value items, e.g. --compare tp=4,pp=1")
            if key == "pool":
                pool = value.strip()
            elif key in COMPARE_KEYS:
                ov = parse_set(f"{COMPARE_KEYS[key]}={value}", "--compare")
                ovs.append(Override(arg, ov.path, ov.value))
            else:
                raise UsageError(f"{arg}: unknown key {key!r}; use {', '.join(COMPARE_KEYS)} or pool")
        res = resolve_with(path, base + ovs)
        if pool is not None:
            if pool not in {p.name for p in res.pools}:
                raise UsageError(f"{arg}: no pool {pool!r}; the spec's pools are {', '.join(p.name for p in res.pools)}")
            res = dataclasses.replace(res, pools=tuple(p for p in res.pools if p.name == pool))
        try:
            result = solve(res, top=0)
        except InfeasibleError as exc:
            first, *rest = exc.lines()
            out.append(Variant(text, res.spec.slo.objective, None, None, " ".join([first] + ["; ".join(rest)])))
            continue
        g = result.best.groups[0]
        terms = cm.step_terms(cm.prepare(g.cand.ctx, g.cand.shape, g.timing.batched_tokens), g.load)
        out.append(Variant(text, res.spec.slo.objective, result.best, terms))
    return out


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
