"""Stage 5, plan: the solver's Result -> a typed, frozen :class:`Plan` (what the targets
render) whose serialisation is plan.json (DESIGN.md: plan.json).

The plan asks each group's engine for the processes of a replica (exact argv and
environment) and its config files, from a typed :class:`parc.engines.Job`.

Numbers are rounded here (ms to 3 decimals, GiB to 3, tokens/s to 1) so the document is
byte-identical across machines whatever the last bits of floating point arithmetic.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from parc import __version__
from parc import costmodel as cm
from parc import engines
from parc.engines import ConfigFile, Job, Process, flags
from parc.errors import InfeasibleError
from parc.resolve import Resolved, ResolvedPool
from parc.solver import Group, Rejection, Result, Settings, Solution


@dataclass(frozen=True)
class PlanGroup:
    """One pool's share of the chosen placement, with everything the targets need."""

    index: int
    stem: str  # file and object name of the group
    pool: ResolvedPool
    engine: str
    shape: cm.Shape
    replicas: int
    nodes_per_replica: int
    gpus_per_node: int  # GPUs of one replica on each of its nodes
    launcher: str  # single | ray | mpi | dp (how a replica starts)
    phase: str  # both | prefill | decode
    settings: Settings
    load: float  # concurrent requests planned per replica
    weights_gib_per_gpu: float
    links: tuple[cm.LinkCost, cm.LinkCost, cm.LinkCost]  # what the TP, EP and PP collectives run on
    job: Job
    processes: tuple[Process, ...]
    files: tuple[ConfigFile, ...]

    def process(self, role: str) -> Process:
        return next(p for p in self.processes if p.role == role)

    @property
    def main(self) -> Process:
        """The process that serves the API (server, or the head of a multi-node replica)."""
        return self.processes[0]


@dataclass(frozen=True)
class Routing:
    """How requests reach the groups on Kubernetes: ``single`` (one group), ``even`` (one
    Service: every replica planned at the same load), ``weighted`` (a Service per group and an
    HTTPRoute whose backend weights are each group's planned share of the concurrency)."""

    mode: str
    weights: tuple[int, ...]  # per plan group: replicas x planned load (0 outside the route)
    why: str


@dataclass(frozen=True)
class Plan:
    """The chosen plan, typed; :meth:`document` is plan.json."""

    name: str
    engine: str
    version: str | None
    groups: tuple[PlanGroup, ...]
    routing: Routing
    warnings: tuple[str, ...]
    document: dict[str, Any]
    router: Process | None = None  # the prefill/decode router of a disaggregated plan (listed instances)


def _r(x: float, nd: int = 3) -> float:
    v = round(float(x), nd)
    return 0.0 if v == 0 else v


def placement(sol: Solution) -> dict[str, Any]:
    """plan.json ``placement``."""
    return {
        "groups": [
            {
                "pool": g.cand.pool.name,
                "replicas": g.replicas,
                "tp": g.cand.shape.tp,
                "pp": g.cand.shape.pp,
                "ep": g.cand.shape.ep,
                "dpAttention": g.cand.shape.dpa,
                "gpusPerReplica": g.cand.shape.gpus,
                "nodesPerReplica": g.cand.nodes_per_replica,
                "phase": g.phase,
            }
            for g in sol.groups
        ],
        "gpusTotal": sol.gpus,
    }


def settings(g: Group, res: Resolved) -> dict[str, Any]:
    s = g.settings(res.max_context_length)
    return {
        "maxNumSeqs": s.max_num_seqs,
        "maxModelLen": s.max_model_len,
        "maxNumBatchedTokens": s.max_num_batched_tokens,
        "gpuMemoryUtilization": s.gpu_memory_utilization,
        "kvCacheDtype": s.kv_cache_dtype,
        "kvCacheFreeMemoryFraction": s.kv_cache_fraction,
        "maxNumSeqsPerReplica": s.seqs_per_replica,
        "perDataParallelRank": g.cand.shape.dpa > 1,
    }


def _memory(g: Group) -> dict[str, float]:
    m = g.chunk.memory
    kv = max(m.kv_cache, 0.0)
    used = m.weights + kv + m.activations + m.overhead
    return {
        "weights": _r(m.weights / cm.GIB),
        "kvCache": _r(kv / cm.GIB),
        "activations": _r(m.activations / cm.GIB),
        "overhead": _r(m.overhead / cm.GIB),
        "total": _r(used / cm.GIB),
        "capacity": _r(m.capacity / cm.GIB),
    }


def predicted(sol: Solution) -> dict[str, Any]:
    """plan.json ``predicted`` for a solution: deployment-wide numbers; memory and
    communication of the first group, the decode group of a disaggregated plan (every group has
    its own under ``groups``)."""
    g0 = next((g for g in sol.groups if g.phase == "decode"), sol.groups[0])
    return {
        "ttftMs": _r(sol.ttft_s * 1e3),
        "tpotMs": _r(sol.tpot_s * 1e3),
        "throughputTokensPerSecond": _r(sol.throughput, 1),
        "maxConcurrencyPerReplica": min(g.chunk.max_load for g in sol.groups),
        "memoryPerGpuGiB": _memory(g0),
        "communication": _comm(g0),
        **_cost(sol),
        "groups": [
            {
                "pool": g.cand.pool.name,
                "phase": g.phase,
                "concurrencyPerReplica": _r(g.load, 2),
                "ttftMs": _r(g.timing.ttft_s * 1e3),
                "tpotMs": _r(g.timing.tpot_s * 1e3),
                "throughputTokensPerSecond": _r(g.replicas * g.timing.throughput, 1),
                "maxConcurrencyPerReplica": g.chunk.max_load,
                "pipelineBubble": _r(g.timing.bubble),
                "memoryPerGpuGiB": _memory(g),
                "communication": _comm(g),
            }
            for g in sol.groups
        ],
    }


def _cost(sol: Solution) -> dict[str, float]:
    """``costPerHour`` and ``costPerMillionOutputTokens`` (the user's currency) when every pool
    the solution uses has costPerGpuHour; nothing otherwise."""
    per_hour = sol.cost_per_hour
    if per_hour is None:
        return {}
    out = {"costPerHour": _r(per_hour, 4)}
    if sol.throughput > 0:
        out["costPerMillionOutputTokens"] = _r(per_hour / (sol.throughput * 3600) * 1e6, 4)
    return out


def _comm(g: Group) -> dict[str, float]:
    c = g.timing.comm
    return {
        "tpAllReduceMsPerToken": _r(c.tp_all_reduce_ms, 4),
        "ppP2pMsPerToken": _r(c.pp_p2p_ms, 4),
        "epAllToAllMsPerToken": _r(c.ep_all_to_all_ms, 4),
    }


def score(sol: Solution, objective: str) -> float:
    """The objective's number: TPOT ms (latency), output tokens/s (throughput), cost per hour
    (cost, priced pools) or GPUs (cost, unpriced)."""
    if objective == "throughput":
        return _r(sol.throughput, 1)
    if objective == "cost":
        return _r(sol.cost_per_hour, 4) if sol.cost_per_hour is not None else float(sol.gpus)
    return _r(sol.tpot_s * 1e3)


def _rejected(r: Rejection) -> dict[str, Any]:
    return {
        "placement": {"engine": r.engine, "pool": r.pool, "tp": r.shape.tp, "pp": r.shape.pp, "ep": r.shape.ep,
                      "dpAttention": r.shape.dpa},
        "kind": r.kind,
        "reason": r.reason,
    }


def notes(sol: Solution, res: Resolved, groups: tuple[PlanGroup, ...] = ()) -> list[str]:
    """Sentences that explain choices a reader would question (TP over PCIe, PP, EP, the
    chunk budget, engine-specific settings)."""
    from parc.calibrate import MIN_BAND_ROWS, coverage_rows
    from parc.solver import kind_band, tpot_headroom

    out = []
    # the headroom at the plan's largest forward batch (it never shrinks with the load)
    busiest = max((g.cand.shape.forward_batch(g.load) for g in sol.groups if g.phase != "prefill"), default=1.0)
    (margin, why), target = tpot_headroom(res, busiest), res.spec.slo.tpot_ms
    if margin and target:
        out.append(f"TPOT planned at <= {target * (1 - margin):.1f} ms: the {target:g} ms target less {margin * 100:.0f}% "
                   f"headroom, {why}, so a plan at the edge still meets the target when the model errs by that much")
    elif why and target:
        out.append(f"TPOT planned at the {target:g} ms target without headroom: {why}")
    kind, band, _, scored = kind_band(res)
    late = band.get("ttftP75Excess")
    if res.spec.slo.ttft_ms and isinstance(late, (int, float)) and late > TTFT_WARN_EXCESS \
            and band.get("ttftRows", 0) >= MIN_BAND_ROWS:
        worst = max((g.timing.ttft_s * 1e3 for g in sol.groups), default=0.0)
        out.append(f"TTFT is checked against the cost model's prediction, which is optimistic on {kind} models: in "
                   f"{coverage_rows(scored)} measured TTFT is at most {1 + late:.1f}x the "
                   f"prediction ({band['ttftRows']} rows), and it is larger in the rest (the model leaves out the serving "
                   f"path before the first token: HTTP, scheduling, prefill kernels launched one by one; and bursts of "
                   f"arrivals); if the plan's TTFT errs as those rows do, its {worst:.0f} ms is {worst * (1 + late):.0f} ms "
                   f"against the {res.spec.slo.ttft_ms:g} ms target, so confirm slo.ttftMs with a measurement")
    conc = res.spec.workload.concurrency
    if conc is not None and res.spec.slo.objective == "throughput":
        loads = ", ".join(f"{g.cand.pool.name} {g.replicas} x {g.load:g}" for g in sol.groups)
        out.append(f"workload.concurrency {conc} is a floor under objective throughput: the plan sustains at least "
                   f"{conc} concurrent requests within the SLO, each replica at the load that maximises its "
                   f"throughput (replicas x requests: {loads}; "
                   f"{sum(g.replicas * g.load for g in sol.groups):g} in all)")
    for pg in groups:
        out += [f"{pg.pool.name}: {n}" for n in engines.get(pg.engine).notes(pg.job)]
        st = pg.settings
        out.append(f"{pg.pool.name}: prefill chunk budget max-num-batched-tokens {st.max_num_batched_tokens} per "
                   f"rank, chosen by the cost model (larger chunks cut TTFT, smaller ones keep decode steps "
                   f"memory-bound); max-num-seqs {st.max_num_seqs} "
                   + (f"per data-parallel rank ({st.seqs_per_replica} per replica)" if pg.shape.dpa > 1
                      else "per replica"))
    for g in sol.groups:
        c, s = g.cand, g.cand.shape
        lk = cm.link(c.pool, s.tp, c.ctx.factors)
        if s.tp > 1 and lk.kind.startswith("pcie"):
            out.append(
                f"{c.pool.name}: this plan uses a TP group of {s.tp} over PCIe ({cm.pcie_gbs(c.pool.gpu):.1f} GB/s per "
                f"direction, no NVLink): its all-reduces cost {g.timing.comm.tp_all_reduce_ms:.2f} ms per token, "
                "included in the predictions; it won because no smaller group fits or meets the objective better.")
        elif s.tp == 1 and c.pool.intra_node == "pcie" and c.pool.gpus_per_node > 1:
            out.append(f"{c.pool.name}: GPUs talk over PCIe only, so the plan avoids tensor parallelism and "
                       "serves with independent replicas.")
        if s.pp > 1:
            out.append(f"{c.pool.name}: pipeline parallelism pp={s.pp} splits the {res.model.num_hidden_layers} "
                       f"layers; at {g.load:.0f} requests per replica the pipeline idles "
                       f"{g.timing.bubble * 100:.0f}% of the time.")
        if s.ep > 1:
            out.append(f"{c.pool.name}: expert parallelism ep={s.ep} spreads the {res.model.num_experts} experts; "
                       f"its all-to-alls cost {g.timing.comm.ep_all_to_all_ms:.2f} ms per token.")
    return out


def fabric_env(pool: ResolvedPool, multi_node: bool, gpus: int) -> dict[str, str]:
    """NCCL / Gloo settings by topology and the pool's fabric fields."""
    out: dict[str, str] = {}
    if multi_node:
        out["NCCL_IB_DISABLE"] = "1" if pool.inter_node == "ethernet" else "0"
        out.update(dict(pool.fabric_env))
    if pool.intra_node == "pcie" and gpus > 1:
        out["NCCL_P2P_LEVEL"] = "SYS"  # allow P2P across the CPU sockets of PCIe-only boxes
    return out


def job(res: Resolved, g: Group) -> Job:
    """The engine's view of one plan group (per-replica, per-rank settings)."""
    c, s = g.cand, g.cand.shape
    st = g.settings(res.max_context_length)
    spec = res.spec
    return Job(
        model_id=spec.model.id, port=spec.deploy.port, version=spec.engine.version,
        extra_args=tuple(spec.engine.extra_args), checkpoint=res.checkpoint, kv_cache_dtype=res.kv_precision,
        tp=s.tp, pp=s.pp, ep=s.ep, dpa=s.dpa, nodes=c.nodes_per_replica,
        gpus_per_node=min(c.pool.gpus_per_node, s.gpus), vendor=c.pool.gpu.vendor,
        gpu_architecture=c.pool.gpu.architecture, inter_node=c.pool.inter_node,
        fabric_env=tuple(sorted(fabric_env(c.pool, c.nodes_per_replica > 1, s.gpus).items())),
        max_num_seqs=st.max_num_seqs, max_model_len=st.max_model_len,
        max_num_batched_tokens=st.max_num_batched_tokens, gpu_memory_utilization=st.gpu_memory_utilization,
        kv_cache_fraction=st.kv_cache_fraction, cuda_graph_max_batch=min(st.max_num_seqs, 1024),
        kernel=c.ctx.kernel, phase=g.phase,
        kv_transfer=engines.capabilities()[c.engine].kv_transfer if g.phase != "both" else "",
        static_memory_fraction=_static_fraction(g))


def _static_fraction(g: Group) -> float:
    """(weights + KV cache) / physical memory of the most loaded GPU (SGLang's --mem-fraction-static)."""
    m = g.chunk.memory
    return math.floor((m.weights + max(m.kv_cache, 0.0)) / m.capacity * 1000) / 1000


def _stem(name: str, sol: Solution, g: Group) -> str:
    """File and object name of a group: the spec's name, then the pool (several groups) and the
    phase (a disaggregated plan)."""
    pools = len({x.cand.pool.name for x in sol.groups}) > 1
    parts = [name] + ([g.cand.pool.name] if pools else []) + ([g.phase] if g.phase != "both" else [])
    return "-".join(parts)


def plan_groups(res: Resolved, sol: Solution) -> tuple[PlanGroup, ...]:
    name = res.spec.metadata.name
    out = []
    for i, g in enumerate(sol.groups):
        j = job(res, g)
        eng = engines.get(g.cand.engine)
        out.append(PlanGroup(
            index=i, stem=_stem(name, sol, g), pool=g.cand.pool, phase=g.phase,
            engine=g.cand.engine, shape=g.cand.shape, replicas=g.replicas, nodes_per_replica=g.cand.nodes_per_replica,
            gpus_per_node=j.gpus_per_node, launcher=eng.launcher(j), settings=g.settings(res.max_context_length),
            load=g.load,
            weights_gib_per_gpu=g.chunk.memory.weights / cm.GIB, links=cm.links(g.cand.ctx, g.cand.shape), job=j,
            processes=eng.processes(j),
            files=eng.config_files(j)))
    return tuple(out)


def routing(res: Resolved, groups: tuple[PlanGroup, ...]) -> Routing:
    """How a Kubernetes deployment spreads requests so each group gets its planned load."""
    k8s = [g for g in groups if g.pool.scheduler == "kubernetes"] or list(groups)
    zero = tuple(0 for _ in groups)
    if any(g.phase != "both" for g in groups):
        return Routing("pd-router", zero, "a disaggregated plan: the prefill/decode router sends each request to a "
                                          "prefill instance, then its KV cache and the decoding to a decode instance")
    if len(k8s) <= 1:
        return Routing("single", zero, "one pool group: its Service spreads requests evenly over its replicas")
    loads = [g.load for g in k8s]
    if max(loads) <= min(loads) * 1.01:
        why = (f"every replica of the {len(k8s)} pool groups is planned at {loads[0]:.0f} concurrent requests, so "
               "one Service's even spreading serves the planned load")
        if res.spec.deploy.kubernetes.gateway is None:
            why += " (without deploy.kubernetes.gateway the solver plans the same load everywhere)"
        return Routing("even", zero, why)
    weights = tuple(max(1, round(g.replicas * g.load)) if g in k8s else 0 for g in groups)
    total = sum(weights)
    shares = ", ".join(f"{g.pool.name} {w / total * 100:.0f}% ({g.replicas} x {g.load:.0f} requests)"
                       for g, w in zip(groups, weights) if w)
    return Routing("weighted", weights, f"groups serve different loads per replica: an HTTPRoute on Gateway "
                                        f"{res.spec.deploy.kubernetes.gateway.name if res.spec.deploy.kubernetes.gateway else ''} "
                                        f"sends {shares}")


def warnings(res: Resolved, groups: tuple[PlanGroup, ...]) -> tuple[str, ...]:
    """What the deployment will lack, said on stderr at compile (the output is unchanged)."""
    out = []
    for g in groups:
        p = g.pool
        if g.nodes_per_replica > 1 and p.inter_node in ("infiniband", "roce") and p.scheduler == "kubernetes":
            if not p.rdma_resource:
                out.append(f"cluster.pools[{p.index}] ({p.name}): multi-node pods over {p.inter_node} request no RDMA "
                           "device; set rdmaResource (e.g. rdma/rdma_shared_device_a or nvidia.com/hostdev) unless the "
                           "cluster injects it, or NCCL falls back to TCP sockets")
            if not p.networks:
                out.append(f"cluster.pools[{p.index}] ({p.name}): no Multus network for the {p.inter_node} fabric; set "
                           "networks if the RDMA interfaces are a secondary network")
        if g.nodes_per_replica > 1 and not dict(p.fabric_env).get("NCCL_SOCKET_IFNAME"):
            out.append(f"cluster.pools[{p.index}] ({p.name}): NCCL and Gloo pick their bootstrap interface themselves; "
                       "set ncclSocketIfname / glooSocketIfname if the nodes have several")
    return tuple(dict.fromkeys(out))  # groups on one pool (prefill and decode) warn once


def launch_entries(groups: tuple[PlanGroup, ...]) -> list[dict[str, Any]]:
    """plan.json ``launch``: one entry per (group, role)."""
    return [{"group": pg.index, "role": p.role, "argv": list(p.argv), "env": dict(p.env)}
            for pg in groups for p in pg.processes]


def build(res: Resolved, result: Result) -> Plan:
    """The typed plan; its ``document`` is plan.json."""
    best = result.best
    engine = best.engine
    groups = plan_groups(res, best)
    route = routing(res, groups)
    cal_doc = calibration(res, best)
    doc = {
        "apiVersion": "parc.dev/v1alpha1",
        "kind": "Plan",
        "metadata": {"name": res.spec.metadata.name, "specSha256": res.spec_sha256, "parcVersion": __version__},
        "engine": engine,
        "engineVersion": flags.release(engine, res.spec.engine.version).version,
        "model": {"id": res.spec.model.id, "architecture": res.model.key, "precision": res.checkpoint.precision,
                  "checkpoint": {"format": res.checkpoint.format, "quantMethod": res.checkpoint.quant_method,
                                 "weightBlockSize": list(res.checkpoint.block),
                                 "groupSize": res.checkpoint.group_size, "source": res.checkpoint.source},
                  "kvCachePrecision": res.kv_precision},
        "placement": placement(best),
        "engineSettings": settings(best.groups[0], res),
        "groupEngineSettings": [settings(g, res) for g in best.groups],
        "predicted": predicted(best),
        "meetsSlo": best.meets_slo,
        "objective": result.objective,
        "calibration": cal_doc,
        "notes": ([result.disaggregation] if result.disaggregation else []) + notes(best, res, groups)
        + recipe_notes(result, cal_doc["errorBand"]),
        "recipe": recipe_doc(result),
        "routing": {"mode": route.mode, "why": route.why,
                    "weights": [{"group": g.index, "pool": g.pool.name, "weight": w}
                                for g, w in zip(groups, route.weights) if w]},
        "alternatives": [
            {"engine": a.engine, "placement": placement(a), "predicted": predicted(a), "score": score(a, result.objective),
             "meetsSlo": a.meets_slo}
            for a in result.alternatives
        ],
        "rejected": [_rejected(r) for r in sorted(result.rejections, key=_rej_key)],
        "launch": launch_entries(groups),
    }
    rt = router(res, groups)
    if rt is not None:
        cap = engines.capabilities()[engine]
        doc["router"] = {"package": (cap.router or {}).get("package", ""), "argv": list(rt.argv),
                         "env": dict(rt.env),
                         "instances": {phase: [{"group": g.index, "replica": i,
                                                "url": engines.router_url(phase, i)}
                                               for g in groups if g.phase == phase for i in range(g.replicas)]
                                       for phase in ("prefill", "decode")}}
    return Plan(res.spec.metadata.name, engine, res.spec.engine.version, groups, route, warnings(res, groups), doc,
                rt)


def router(res: Resolved, groups: tuple[PlanGroup, ...],
           discovery: engines.Discovery | None = None) -> Process | None:
    """The router of a disaggregated plan: listing every instance (the :func:`engines.router_url`
    placeholders, which the SLURM script or the caller fills in), or finding them (Kubernetes)."""
    if not any(g.phase != "both" for g in groups):
        return None
    count = {ph: sum(g.replicas for g in groups if g.phase == ph) for ph in ("prefill", "decode")}
    job = engines.RouterJob(res.spec.engine.version, res.spec.deploy.port, count["prefill"], count["decode"],
                            discovery)
    return engines.get(groups[0].engine).router(job)


def recipe_doc(result: Result) -> dict[str, Any] | None:
    """plan.json ``recipe``: the engine's recipe for the model and how the plan compares."""
    rc = result.recipe
    if rc is None:
        return None
    r = rc.recipe
    return {"engine": r.engine, "layout": {"tp": r.tp, "pp": r.pp, "ep": r.ep, "dpAttention": r.dpa},
            "settings": r.settings, "source": r.source, "matches": rc.matches,
            "predicted": predicted(rc.solution) if rc.solution is not None and not rc.matches else None,
            "rejectedBecause": rc.reason or None}


def recipe_notes(result: Result, band: dict[str, Any] | None = None) -> list[str]:
    """A sentence on the engine recipe: matched, rejected (the rule), or beaten under the cost
    model by how much, set against the prediction error band (``band``: the chosen placement's
    ``errorBand``; a class with few measurements has no measured band to set the gap against)."""
    rc = result.recipe
    if rc is None:
        return []
    r = rc.recipe
    if rc.matches:
        return [f"layout {r.layout} is the {r.engine} recipe's ({r.source})"]
    mine = result.best
    if rc.solution is None or rc.reason:
        return [f"differs from the {r.engine} recipe's {r.layout} ({r.source}): {rc.reason}"]
    theirs = rc.solution
    if result.objective == "latency":
        gain = theirs.tpot_s / mine.tpot_s - 1 if mine.tpot_s > 0 else 0.0
        cmp = (f"the recipe layout predicts TPOT {theirs.tpot_s * 1e3:.1f} ms and TTFT {theirs.ttft_s * 1e3:.0f} ms "
               f"against {mine.tpot_s * 1e3:.1f} ms and {mine.ttft_s * 1e3:.0f} ms here")
    else:
        gain = mine.throughput / theirs.throughput - 1 if theirs.throughput > 0 else 0.0
        cmp = (f"the recipe layout predicts {theirs.throughput:.0f} output tokens/s on {theirs.gpus} GPUs against "
               f"{mine.throughput:.0f} on {mine.gpus} here ({gain * 100:+.0f}%)")
    b = band or {}
    p90 = b.get("throughputP90Ape")
    if b.get("fewMeasurements"):
        verdict = (f"parc's layout is in a configuration class with few measurements ({b['scope']}: "
                   f"{b['heldOutRows']} held-out rows), so the gap is the cost model's alone: benchmark both "
                   "before relying on it")
    elif p90 is not None and gain <= p90:
        verdict = (f"the gap is inside the {p90 * 100:.0f}% error band (90th percentile), so benchmark both "
                   "before relying on it")
    else:
        verdict = "the gap is larger than the prediction error band, so parc keeps its choice"
    return [f"differs from the {r.engine} recipe's {r.layout} ({r.source}): {cmp}, under the same cost model; {verdict}"]


def calibration(res: Resolved, sol: Solution) -> dict[str, Any]:
    """Which efficiency factors the predictions used, and their expected error band: the
    held-out error of the placement's configuration classes on its GPU family (the widest among
    the solution's groups and the classes each combines), widened and flagged when a class has
    few measurements."""
    from parc import catalog
    from parc.calibrate import band_for, config_classes, scored_rows

    cal = res.calibration if res.calibration is not None else catalog.builtin_calibration()
    prov = cal.get("provenance", {}) if cal else {}
    bands = cal.get("bands", {}) if cal else {}
    # a disaggregated plan is a class of its own (its prefill/decode load model is not the aggregated one)
    picked = [band_for(bands, cls, g.cand.pool.gpu.family) for g in sol.groups
              for cls in (("disaggregated",) if sol.disaggregated else
                          config_classes(g.cand.shape, g.cand.nodes_per_replica))] if bands else []
    # the widest band; on a tie, the class with few measurements (its band is a bound, not a measurement)
    scope, band, few = (max(picked, key=lambda p: (float(p[1].get("p90Ape") or 0.0), p[2])) if picked
                        else ("", {}, True))
    error: dict[str, Any] = {}
    if band:
        error = {"scope": scope, "configurationClass": scope.split("/")[0], "heldOutRows": int(band.get("rows", 0)),
                 "scoredOn": scored_rows(cal), "fewMeasurements": few, "throughputMedianApe": band.get("medianApe"),
                 "throughputP90Ape": band.get("p90Ape")}
        if band.get("maxApe") is not None:  # the worst held-out row: what the 90th percentile leaves out
            error["throughputMaxApe"] = band["maxApe"]
        if not few and band.get("tpotRows", 0) >= MIN_TIMING_ROWS:
            error.update(tpotMedianApe=band.get("tpotMedianApe"), tpotP90Ape=band.get("tpotP90Ape"))
    return {
        "source": res.calibration_source if res.calibration is not None else
        ("built-in" if cal else "priors (uncalibrated)"),
        "fittedOn": f"{prov.get('rows', 0)} rows from {len(prov.get('sources', []))} sources" if prov else "",
        "errorBand": error,
    }


#: Plans with a TTFT target say how optimistic TTFT predictions are when measured TTFT exceeds
#: them by more than this in a quarter of the held-out online rows of the model's kind.
TTFT_WARN_EXCESS = 0.25

#: TPOT bands are printed when the class has this many held-out TPOT measurements.
MIN_TIMING_ROWS = 5


def _rej_key(r: Rejection) -> tuple[Any, ...]:
    return (r.kind, r.engine, r.pool, r.shape)


__all__ = ["Plan", "PlanGroup", "Routing", "build", "placement", "predicted", "score", "notes", "calibration"]


def infeasible_document(res: Resolved, exc: InfeasibleError) -> dict[str, Any]:
    """What ``parc plan --format json`` prints when no placement works: plan.json's header,
    ``feasible: false``, the reason and fix, the closest placement (with its predictions when
    it only misses the SLO) and every rejection."""
    fix = next((c.removeprefix("fix: ") for c in exc.closest if c.startswith("fix: ")), "")
    closest: dict[str, Any] | None = None
    sol, rej = exc.closest_solution, exc.closest_rejection
    if isinstance(sol, Solution):
        closest = {"engine": sol.engine, "placement": placement(sol), "predicted": predicted(sol),
                   "misses": list(sol.misses)}
    elif isinstance(rej, Rejection):
        closest = _rejected(rej)
    rejs = [r for r in exc.rejections if isinstance(r, Rejection)]
    return {
        "apiVersion": "parc.dev/v1alpha1",
        "kind": "Plan",
        "metadata": {"name": res.spec.metadata.name, "specSha256": res.spec_sha256, "parcVersion": __version__},
        "feasible": False,
        "meetsSlo": False,
        "objective": res.spec.slo.objective,
        "reason": str(exc),
        "detail": [c for c in exc.closest if not c.startswith("fix: ")],
        "fix": fix,
        "closest": closest,
        "rejected": [_rejected(r) for r in sorted(rejs, key=_rej_key)],
    }
