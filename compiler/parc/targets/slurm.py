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

from parc import engines
from parc.errors import UsageError
from parc.plan import PlanGroup
from parc.render import render
from parc.targets import CPU_PER_GPU, Artifact, Inputs
from parc.targets.launch import RAY_PORT, _late, header
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
    out = [f"--job-name={g.stem}", f"--nodes={nodes}", *shape, *(["--exclusive"] if whole else [])]
    out += _job_directives(s, tasks)
    if tasks > 1:
        out.append(f"--array=0-{tasks - 1}")
    return out


def _job_directives(s: Any, tasks: int = 1) -> list[str]:
    """The directives every job takes from deploy.slurm: time limit, drain signal, requeue,
    partition, account, and the output files (per array task when there are several)."""
    out = [f"--time={s.time_limit}"]
    if s.drain_seconds:
        out.append(f"--signal=B:TERM@{s.drain_seconds}")
    out.append("--requeue" if s.requeue else "--no-requeue")
    if s.partition:
        out.append(f"--partition={s.partition}")
    if s.account:
        out.append(f"--account={s.account}")
    pattern = "%x-%A_%a" if tasks > 1 else "%x-%j"
    return out + [f"--output={pattern}.out", f"--error={pattern}.err"]


def job(inputs: Inputs, g: PlanGroup) -> dict[str, Any]:
    """Template variables for one group's batch script."""
    res = inputs.res
    main = g.main
    image = res.spec.deploy.slurm.container_image
    # the mount source is the submitting user's cache: $(PARC_HOME) becomes "${PARC_HOME}", set from $HOME
    container = [f"--container-image={image}", "--container-mounts=$(PARC_HOME)/.cache/huggingface:/root/.cache/huggingface"] \
        if image else []
    worker = [p for p in g.processes if p.role == "worker"]
    env, late = _late(main.env)
    return {
        "directives": directives(inputs, g),
        "name": g.stem,
        "kind": g.launcher,
        "port": res.spec.deploy.port,
        "replicas": per_job(g),
        "step_gpus": g.shape.gpus,
        "step_cpus": CPU_PER_GPU * g.shape.gpus,
        "env": env,
        "late_env": late,
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


#: Where a disaggregated plan's instances listen on their node (deploy.port is the router's):
#: prefill from deploy.port + 100, decode from deploy.port + 200, one port per instance sharing a node.
PHASE_PORT = {"prefill": 100, "decode": 200}


def layout(gpus_per_node: int, groups: list[PlanGroup]) -> tuple[int, dict[int, list[tuple[int, int]]]]:
    """Nodes of one job holding every replica of ``groups`` and, per group, each replica's
    (first node index, slot among the group's replicas on that node): replicas spanning nodes
    take whole nodes; the others are packed first-fit by size (largest first)."""
    place: dict[int, list[tuple[int, int]]] = {g.index: [] for g in groups}
    node = 0
    for g in groups:
        if g.nodes_per_replica > 1:
            for _ in range(g.replicas):
                place[g.index].append((node, 0))
                node += g.nodes_per_replica
    free: list[int] = []  # GPUs left on each node of the packed part
    slots: dict[tuple[int, int], int] = {}
    for g in sorted((g for g in groups if g.nodes_per_replica == 1), key=lambda g: (-g.shape.gpus, g.index)):
        for _ in range(g.replicas):
            i = next((k for k, f in enumerate(free) if f >= g.shape.gpus), None)
            if i is None:
                free.append(gpus_per_node)
                i = len(free) - 1
            free[i] -= g.shape.gpus
            slot = slots.get((i, g.index), 0)
            slots[(i, g.index)] = slot + 1
            place[g.index].append((node + i, slot))
    return node + len(free), place


def disaggregated(inputs: Inputs) -> Artifact:
    """One job for a disaggregated plan: every prefill and decode instance on its nodes, then,
    once all answer /health, the prefill/decode router on the first node at deploy.port."""
    res = inputs.res
    plan = inputs.plan
    groups = list(plan.groups)
    pool = groups[0].pool
    if any(g.pool.name != pool.name for g in groups):
        raise UsageError("target slurm: one job runs a disaggregated plan's prefill and decode groups, so they must "
                         "be on one pool; the plan puts them on " + " and ".join(sorted({g.pool.name for g in groups})))
    s = res.spec.deploy.slurm
    nodes, place = layout(pool.gpus_per_node, groups)
    out = [f"--job-name={res.spec.metadata.name}", f"--nodes={nodes}", "--ntasks-per-node=1",
           f"--gres=gpu:{pool.gpus_per_node}", "--exclusive", *_job_directives(s)]
    port = res.spec.deploy.port
    phases = []
    for g in groups:
        j = job(inputs, g)
        base = port + PHASE_PORT[g.phase]
        j.update(phase=g.phase, replica_nodes=[n for n, _ in place[g.index]],
                 replica_ports=[base + slot for _, slot in place[g.index]])
        phases.append(j)
    router = plan.router
    assert router is not None
    files: dict[str, str] = {}
    for j in phases:
        files.update(dict(j["files"]))
    cap = engines.capabilities()[plan.engine]
    body = render("slurm/disaggregated.sbatch.j2", h=header(inputs), directives=out, groups=phases,
                  name=res.spec.metadata.name, port=port, kv_offset=engines.KV_PORT_OFFSET,
                  container=phases[0]["container"], files=sorted(files.items()), router=list(router.argv),
                  router_env=list(router.env), router_health=(cap.router or {}).get("health_path", "/health"))
    return Artifact(f"slurm/{res.spec.metadata.name}.sbatch", body, 0o755)


def build(inputs: Inputs) -> list[Artifact]:
    if inputs.plan.router is not None:
        return [disaggregated(inputs)]
    return [
        Artifact(f"slurm/{g.stem}.sbatch", render("slurm/job.sbatch.j2", h=header(inputs), j=job(inputs, g)), 0o755)
        for g in inputs.groups_for("slurm")
    ]
