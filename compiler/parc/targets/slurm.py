"""Target ``slurm``: one batch script per plan group, ``out/slurm/<name>.sbatch``.

Replicas become a job array (one array task per replica, each on its own exclusive
nodes), so `scancel <job>` stops them all and `squeue` shows one line per replica.
Inside a task: single-node replicas run the engine under ``srun``; multi-node vLLM
replicas bootstrap Ray (head on the first node, workers with ``srun --nodes=1
--ntasks=1 -w``, wait until all GPUs joined) then start the server on the head;
TensorRT-LLM replicas run one MPI rank per GPU with ``srun --mpi=pmix`` through
``trtllm-llmapi-launch``. The script then waits for the server's /health and stops every
step when it exits or is cancelled.
"""

from __future__ import annotations

from typing import Any

from parc.engines import argv as eargv
from parc.render import render
from parc.targets import Artifact, Inputs
from parc.targets.launch import header
from parc.yamlout import dump


def directives(inputs: Inputs, group: int) -> list[str]:
    """The #SBATCH lines of a group (values validated by the spec grammar or computed)."""
    res = inputs.res
    g = inputs.result.best.groups[group]
    s = res.spec.deploy.slurm
    stem = inputs.stem(group)
    nodes = g.cand.nodes_per_replica
    gpus_node = min(g.cand.pool.gpus_per_node, g.cand.shape.gpus)
    mpi = g.cand.engine == "trtllm" and nodes > 1
    out = [f"--job-name={stem}", f"--nodes={nodes}", f"--ntasks-per-node={gpus_node if mpi else 1}",
           f"--gres=gpu:{gpus_node}", "--exclusive", f"--time={s.time_limit}"]
    if s.partition:
        out.append(f"--partition={s.partition}")
    if s.account:
        out.append(f"--account={s.account}")
    pattern = "%x-%A_%a" if g.replicas > 1 else "%x-%j"
    out += [f"--output={pattern}.out", f"--error={pattern}.err"]
    if g.replicas > 1:
        out.append(f"--array=0-{g.replicas - 1}")
    return out


def job(inputs: Inputs, group: int) -> dict[str, Any]:
    """Template variables for one group's batch script."""
    res = inputs.res
    g = inputs.result.best.groups[group]
    entries = [e for e in inputs.plan["launch"] if e["group"] == group]
    by_role = {e["role"]: e for e in entries}
    nodes = g.cand.nodes_per_replica
    engine = g.cand.engine
    if nodes == 1:
        kind = "single"
    elif engine == "vllm":
        kind = "ray"
    else:
        kind = "mpi"
    main = by_role.get("server") or by_role["head"]
    env = dict(main["env"])
    image = res.spec.deploy.slurm.container_image
    container = [f"--container-image={image}", "--container-mounts=${HOME}/.cache/huggingface:/root/.cache/huggingface"] \
        if image else []
    opts = eargv.trtllm_options(res, g) if engine == "trtllm" else None
    return {
        "directives": directives(inputs, group),
        "name": inputs.stem(group),
        "kind": kind,
        "port": res.spec.deploy.port,
        "env": sorted(env.items()),
        "argv": main["argv"],
        "worker_argv": by_role["worker"]["argv"] if "worker" in by_role else [],
        "nodes": nodes,
        "gpus": g.cand.shape.gpus,
        "gpus_per_node": min(g.cand.pool.gpus_per_node, g.cand.shape.gpus),
        "ray_port": eargv.RAY_PORT,
        "container": container,
        "options_file": eargv.TRTLLM_OPTIONS if opts else "",
        "options_yaml": dump(opts) if opts else "",
    }


def build(inputs: Inputs) -> list[Artifact]:
    return [
        Artifact(f"slurm/{inputs.stem(i)}.sbatch",
                 render("slurm/job.sbatch.j2", h=header(inputs), j=job(inputs, i)), 0o755)
        for i in inputs.groups_for("slurm")
    ]
