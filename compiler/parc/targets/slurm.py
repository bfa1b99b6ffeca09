"""Target ``slurm``: one batch script per plan group, ``out/slurm/<name>.sbatch``.

Replicas become a job array (one array task per replica, each on its own exclusive
nodes), so `scancel <job>` stops them all and `squeue` shows one line per replica.
Inside a task, by the group's launcher kind (from the engine module):

- ``single``: the engine under ``srun``;
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
from parc.targets import Artifact, Inputs
from parc.targets.launch import RAY_PORT, header
from parc.yamlout import dump


def directives(inputs: Inputs, g: PlanGroup) -> list[str]:
    """The #SBATCH lines of a group (values validated by the spec grammar or computed)."""
    s = inputs.res.spec.deploy.slurm
    nodes = g.nodes_per_replica
    mpi = g.launcher == "mpi"
    out = [f"--job-name={g.stem}", f"--nodes={nodes}", f"--ntasks-per-node={g.gpus_per_node if mpi else 1}",
           f"--gres=gpu:{g.gpus_per_node}", "--exclusive", f"--time={s.time_limit}"]
    if s.partition:
        out.append(f"--partition={s.partition}")
    if s.account:
        out.append(f"--account={s.account}")
    pattern = "%x-%A_%a" if g.replicas > 1 else "%x-%j"
    out += [f"--output={pattern}.out", f"--error={pattern}.err"]
    if g.replicas > 1:
        out.append(f"--array=0-{g.replicas - 1}")
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
