"""Target ``launch``: one bash script per (group, role) that exec's exactly plan.json's argv.

    out/launch/<engine>-<role>.sh            (single-group plans)
    out/launch/<engine>-<role>-<pool>.sh     (plans with several pool groups)
    out/launch/<config file>                 (engine config files the argv refers to)
"""

from __future__ import annotations

from typing import Any

from parc import engines
from parc.engines import Process
from parc.plan import PlanGroup
from parc.render import render
from parc.targets import Artifact, Inputs
from parc.yamlout import dump

RAY_PORT = 6379
#: What the caller must set for each placeholder a launch script needs.
NEEDS = {engines.HEAD_ADDR: "the address of the first node of the replica",
         engines.NODE_RANK: "the index of this node within the replica (1 for the second node)"}


def header(inputs: Inputs) -> dict[str, Any]:
    """Provenance shared by every generated file (no timestamps: output is deterministic)."""
    md = inputs.plan.document["metadata"]
    return {"parc_version": md["parcVersion"], "name": md["name"], "sha": md["specSha256"]}


def needs(argv: tuple[str, ...]) -> list[str]:
    """parc placeholders an argv holds, which the caller must provide (or parc computes)."""
    text = " ".join(argv)
    return [v for v in engines.PLACEHOLDERS if f"$({v})" in text]


def process(g: PlanGroup, p: Process, port: int) -> dict[str, Any]:
    """Template variables for one process: argv, environment, the placeholders it needs from
    the caller, the Ray bootstrap of a Ray head, the data-parallel start rank of a DP worker."""
    wanted = needs(p.argv)
    dp_start = engines.DP_START_RANK in wanted
    caller = [v for v in wanted if v not in (engines.CONFIG_DIR, engines.DP_START_RANK, engines.PORT)]
    if dp_start:
        caller.append(engines.NODE_RANK)
    return {
        "role": p.role,
        "engine": g.engine,
        "argv": list(p.argv),
        "env": list(p.env),
        "needs": [(v, NEEDS[v]) for v in caller],
        "config_dir": engines.CONFIG_DIR in wanted,
        "ray_head_gpus": g.shape.gpus if (g.launcher == "ray" and p.role == "head") else 0,
        "ray_port": RAY_PORT,
        "dp_local": g.gpus_per_node // g.shape.tp if dp_start else 0,
        "port": port if engines.PORT in wanted else 0,
    }


def script_name(inputs: Inputs, g: PlanGroup, p: Process) -> str:
    suffix = "" if len(inputs.plan.groups) == 1 else f"-{g.pool.name}"
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
    for g in inputs.plan.groups:
        for p in g.processes:
            body = render("launch/process.sh.j2", h=header(inputs), p=process(g, p, inputs.res.spec.deploy.port))
            arts.append(Artifact(f"launch/{script_name(inputs, g, p)}", body, 0o755))
    return arts + config_files(inputs)
