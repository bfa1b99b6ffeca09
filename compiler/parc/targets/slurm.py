"""Target ``slurm``: one batch script per plan group, ``out/slurm/<name>.sbatch``.

Replicas that fit in one node run together: the script is a job (or a job array, one task
per node) of ``k`` replicas on one node, each replica its own ``srun --exact`` step with its own
GPUs (``--gres=gpu:N``) and port (deploy.port + its slot on the node); ``--exclusive`` only where
the job takes whole nodes. Replicas that span nodes are one array task each on exclusive
nodes. `scancel <job>` stops them all. Inside a task, by the group's launcher kind (from the
engine module):

- ``single``: ``k`` engines, one step each;
- ``ray``: Ray head on the first node, workers with ``srun --nodes=1 --ntasks=1 -w``, wait
  until all GPUs joined, then the server on the head;
- ``dp``: one engine process per node, the first serving the API, the others headless with
  their data-parallel start rank (node index x local ranks);
- ``mpi``: one MPI rank per GPU with ``srun --mpi=pmix`` through the engine's launcher.

The script then waits for the server's /health and stops every step when it exits or is
cancelled.
"""

from __future__ import annotations

from typing import Any

from parc.plan import PlanGroup
from parc.render import render
from parc.targets import CPU_PER_GPU, Artifact, Inputs
from parc.targets.launch import RAY_PORT, header
from parc.yamlout import dump


def per_job(g: PlanGroup) -> int:
    """Replicas one job (or array task) runs together on one node: the largest count that
    fits the node and divides the group's replicas (so every task is alike); 1 for replicas
    that span nodes."""
    if g.nodes_per_replica > 1:
        return 1
    fit = max(1, g.pool.gpus_per_node // g.shape.gpus)
    return max(k for k in range(1, min(fit, g.replicas) + 1) if g.replicas % k == 0)


def directives(inputs: Inputs, g: PlanGroup) -> list[str]:
    """The #SBATCH lines of a group (values validated by the spec grammar or computed)."""
    s = inputs.res.spec.deploy.slurm
    nodes = g.nodes_per_replica
    k = per_job(g)
    tasks = g.replicas // k
    if g.launcher == "mpi":
        shape = [f"--ntasks-per-node={g.gpus_per_node}", f"--gres=gpu:{g.gpus_per_node}"]
    elif g.launcher == "single":
        shape = [f"--ntasks-per-node={k}", f"--cpus-per-task={CPU_PER_GPU * g.shape.gpus}",
                 f"--gres=gpu:{k * g.shape.gpus}"]
    else:
        shape = ["--ntasks-per-node=1", f"--gres=gpu:{g.gpus_per_node}"]
    whole = nodes > 1 or k * g.gpus_per_node >= g.pool.gpus_per_node
    out = [f"--job-name={g.stem}", f"--nodes={nodes}", *shape, *(["--exclusive"] if whole else []),
           f"--time={s.time_limit}"]
    if s.drain_seconds:
        out.append(f"--signal=B:TERM@{s.drain_seconds}")
    out.append("--requeue" if s.requeue else "--no-requeue")
    if s.partition:
        out.append(f"--partition={s.partition}")
    if s.account:
        out.append(f"--account={s.account}")
    pattern = "%x-%A_%a" if tasks > 1 else "%x-%j"
    out += [f"--output={pattern}.out", f"--error={pattern}.err"]
    if tasks > 1:
        out.append(f"--array=0-{tasks - 1}")
    return out


def job(inputs: Inputs, g: PlanGroup) -> dict[str, Any]:
    """Template variables for one group's batch script."""
    res = inputs.res
    main = g.main
    image = res.spec.deploy.slurm.container_image
    # the mount source is the submitting user's cache: $(PARC_HOME) becomes "${PARC_HOME}", set from $HOME
    container = [f"--container-image={image}", "--container-mounts=$(PARC_HOME)/.cache/huggingface:/root/.cache/huggingface"] \
        if image else []
    worker = [p for p in g.processes if p.role == "worker"]
    return {
        "directives": directives(inputs, g),
        "name": g.stem,
        "kind": g.launcher,
        "port": res.spec.deploy.port,
        "replicas": per_job(g),
        "step_gpus": g.shape.gpus,
        "step_cpus": CPU_PER_GPU * g.shape.gpus,
        "env": list(main.env),
        "argv": list(main.argv),
        "worker_argv": list(worker[0].argv) if worker else [],
        "nodes": g.nodes_per_replica,
        "gpus": g.shape.gpus,
        "gpus_per_node": g.gpus_per_node,
        "dp_local": g.gpus_per_node // g.shape.tp,
        "ray_port": RAY_PORT,
        "container": container,
        "files": [(f.name, dump(f.data)) for f in g.files],
    }


def build(inputs: Inputs) -> list[Artifact]:
    return [
        Artifact(f"slurm/{g.stem}.sbatch", render("slurm/job.sbatch.j2", h=header(inputs), j=job(inputs, g)), 0o755)
        for g in inputs.groups_for("slurm")
    ]
