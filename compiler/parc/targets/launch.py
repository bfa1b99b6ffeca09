"""Target ``launch``: one bash script per (group, role) that exec's exactly plan.json's argv.

    out/launch/<engine>-<role>.sh            (single-group plans)
    out/launch/<engine>-<role>-<pool>.sh     (plans with several pool groups)
    out/launch/<engine>-<role>-<phase>.sh    (disaggregated plans: prefill and decode groups)
    out/launch/<engine>-router.sh            (disaggregated plans: the prefill/decode router)
    out/launch/<config file>                 (engine config files the argv refers to)
"""

from __future__ import annotations

import re
from typing import Any

from parc import engines
from parc.engines import Process
from parc.plan import PlanGroup
from parc.render import _VAR, render
from parc.targets import Artifact, Inputs
from parc.yamlout import dump

RAY_PORT = 6379
#: What the caller must set for each placeholder a launch script needs.
NEEDS = {engines.HEAD_ADDR: "the address of the first node of the replica",
         engines.NODE_RANK: "the index of this node within the replica (1 for the second node)",
         engines.NODE_ADDR: "an address of this node that the other instances reach"}
_URL = re.compile(r"^PARC_(PREFILL|DECODE)_URL_([0-9]+)$")
_KV = re.compile(r"^PARC_PREFILL_KV_PORT_([0-9]+)$")


def _what(var: str) -> str:
    m = _URL.match(var)
    if m:
        return f"the URL of {m.group(1).lower()} instance {m.group(2)} (http://host:port)"
    m = _KV.match(var)
    if m:
        return f"the KV side-channel port of prefill instance {m.group(1)} (its port + {engines.KV_PORT_OFFSET})"
    return NEEDS[var]


def header(inputs: Inputs) -> dict[str, Any]:
    """Provenance shared by every generated file (no timestamps: output is deterministic)."""
    md = inputs.plan.document["metadata"]
    return {"parc_version": md["parcVersion"], "name": md["name"], "sha": md["specSha256"]}


def needs(argv: tuple[str, ...]) -> list[str]:
    """parc placeholders an argv (or environment) holds, which the caller must provide (or
    parc computes), in a stable order: parc's fixed ones, then a router's instance URLs."""
    found = {m.group(1) for a in argv for m in _VAR.finditer(a)}
    fixed = [v for v in engines.PLACEHOLDERS if v in found]
    return fixed + sorted(found - set(fixed), key=lambda v: (v.rsplit("_", 1)[0], int(v.rsplit("_", 1)[1])))


def _late(env: tuple[tuple[str, str], ...]) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """Environment split into literal values and values holding placeholders (exported once
    the placeholders are set)."""
    lit = [(k, v) for k, v in env if not _VAR.search(v)]
    return lit, [(k, v) for k, v in env if _VAR.search(v)]


def process(engine: str, p: Process, port: int, g: PlanGroup | None = None) -> dict[str, Any]:
    """Template variables for one process: argv, environment, the placeholders it needs from
    the caller, the Ray bootstrap of a Ray head, the data-parallel start rank of a DP worker."""
    lit, late = _late(p.env)
    wanted = needs(p.argv + tuple(v for _, v in late))
    dp_start = engines.DP_START_RANK in wanted
    computed = (engines.CONFIG_DIR, engines.DP_START_RANK, engines.PORT, engines.KV_PORT)
    caller = [v for v in wanted if v not in computed]
    if dp_start and engines.NODE_RANK not in caller:
        caller.append(engines.NODE_RANK)
    return {
        "role": p.role,
        "engine": engine,
        "argv": list(p.argv),
        "env": lit,
        "late_env": late,
        "needs": [(v, _what(v)) for v in caller],
        "config_dir": engines.CONFIG_DIR in wanted,
        "ray_head_gpus": g.shape.gpus if (g is not None and g.launcher == "ray" and p.role == "head") else 0,
        "ray_port": RAY_PORT,
        "dp_local": g.gpus_per_node // g.shape.tp if (dp_start and g is not None) else 0,
        "port": port if {engines.PORT, engines.KV_PORT} & set(wanted) else 0,
        "kv_port": engines.KV_PORT_OFFSET if engines.KV_PORT in wanted else 0,
    }


def script_name(inputs: Inputs, g: PlanGroup, p: Process) -> str:
    # the group's stem after the spec's name: its pool (several pools) and phase (disaggregated)
    name = inputs.res.spec.metadata.name
    suffix = "" if len(inputs.plan.groups) == 1 else f"-{g.stem[len(name) + 1:]}"
    return f"{g.engine}-{p.role}{suffix}.sh"


def config_files(inputs: Inputs) -> list[Artifact]:
    """Engine config files (the first group's copy of each name: every group of one engine
    refers to the same path)."""
    out: dict[str, Artifact] = {}
    for g in inputs.plan.groups:
        for f in g.files:
            if f.name not in out:
                body = render("launch/config.yaml.j2", h=header(inputs), body=dump(f.data))
                out[f.name] = Artifact(f"launch/{f.name}", body)
    return list(out.values())


def build(inputs: Inputs) -> list[Artifact]:
    arts = []
    port = inputs.res.spec.deploy.port
    for g in inputs.plan.groups:
        for p in g.processes:
            body = render("launch/process.sh.j2", h=header(inputs), p=process(g.engine, p, port, g))
            arts.append(Artifact(f"launch/{script_name(inputs, g, p)}", body, 0o755))
    rt = inputs.plan.router
    if rt is not None:
        body = render("launch/process.sh.j2", h=header(inputs), p=process(inputs.plan.engine, rt, port))
        arts.append(Artifact(f"launch/{inputs.plan.engine}-router.sh", body, 0o755))
    return arts + config_files(inputs)
