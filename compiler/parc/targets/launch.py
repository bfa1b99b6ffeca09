"""Target ``launch``: one bash script per (group, role) that exec's exactly plan.json's argv.

    out/launch/<engine>-<role>.sh            (single-group plans)
    out/launch/<engine>-<role>-<pool>.sh     (plans with several pool groups)
    out/launch/trtllm-extra-llm-api-options.yaml   (TensorRT-LLM settings without a flag)
"""

from __future__ import annotations

from typing import Any

from parc.engines import argv as eargv
from parc.render import render
from parc.targets import Artifact, Inputs


def header(inputs: Inputs) -> dict[str, Any]:
    """Provenance shared by every generated file (no timestamps: output is deterministic)."""
    md = inputs.plan["metadata"]
    return {"parc_version": md["parcVersion"], "name": md["name"], "sha": md["specSha256"]}


def process(inputs: Inputs, entry: dict[str, Any]) -> dict[str, Any]:
    """Template variables for one process of plan.json ``launch``: argv, environment, the
    variables it needs from the caller, and the Ray bootstrap for a vLLM multi-node head."""
    g = inputs.result.best.groups[entry["group"]]
    text = " ".join(entry["argv"])
    needs = [v for v in (eargv.HEAD_ADDR,) if f"$({v})" in text]
    ray_head_gpus = g.cand.shape.gpus if (g.cand.engine == "vllm" and entry["role"] == "head") else 0
    return {
        "role": entry["role"],
        "engine": g.cand.engine,
        "argv": entry["argv"],
        "env": sorted(entry["env"].items()),
        "needs": needs,
        "config_dir": f"$({eargv.CONFIG_DIR})" in text,
        "ray_head_gpus": ray_head_gpus,
        "ray_port": eargv.RAY_PORT,
        "gpus_per_node": min(g.cand.pool.gpus_per_node, g.cand.shape.gpus),
    }


def script_name(inputs: Inputs, entry: dict[str, Any]) -> str:
    g = inputs.result.best.groups[entry["group"]]
    suffix = "" if len(inputs.result.best.groups) == 1 else f"-{g.cand.pool.name}"
    return f"{g.cand.engine}-{entry['role']}{suffix}.sh"


def trtllm_options(inputs: Inputs) -> list[Artifact]:
    """The TensorRT-LLM extra LLM-API options file, when any group needs one."""
    for g in inputs.result.best.groups:
        opts = eargv.trtllm_options(inputs.res, g) if g.cand.engine == "trtllm" else None
        if opts is not None:
            body = render("trtllm/extra-llm-api-options.yaml.j2", h=header(inputs), options=opts)
            return [Artifact(f"launch/{eargv.TRTLLM_OPTIONS}", body)]
    return []


def build(inputs: Inputs) -> list[Artifact]:
    arts = []
    for entry in inputs.plan["launch"]:
        body = render("launch/process.sh.j2", h=header(inputs), p=process(inputs, entry))
        arts.append(Artifact(f"launch/{script_name(inputs, entry)}", body, 0o755))
    return arts + trtllm_options(inputs)
