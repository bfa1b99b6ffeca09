"""Stage 5, plan: the solver's Result -> the plan.json document (DESIGN.md: plan.json).

Numbers are rounded here (ms to 3 decimals, GiB to 3, tokens/s to 1) so the document is
byte-identical across machines whatever the last bits of floating point arithmetic.
"""

from __future__ import annotations

from typing import Any

from parc import __version__
from parc import costmodel as cm
from parc.engines.argv import launch_entries
from parc.resolve import Resolved
from parc.solver import Group, Rejection, Result, Solution


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
    }


def _memory(g: Group) -> dict[str, float]:
    m = g.cand.memory
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
    communication of the first group (every group has its own under ``groups``)."""
    g0 = sol.groups[0]
    return {
        "ttftMs": _r(sol.ttft_s * 1e3),
        "tpotMs": _r(sol.tpot_s * 1e3),
        "throughputTokensPerSecond": _r(sol.throughput, 1),
        "maxConcurrencyPerReplica": min(g.cand.max_load for g in sol.groups),
        "memoryPerGpuGiB": _memory(g0),
        "communication": _comm(g0),
        "groups": [
            {
                "pool": g.cand.pool.name,
                "concurrencyPerReplica": _r(g.load, 2),
                "ttftMs": _r(g.timing.ttft_s * 1e3),
                "tpotMs": _r(g.timing.tpot_s * 1e3),
                "throughputTokensPerSecond": _r(g.replicas * g.timing.throughput, 1),
                "maxConcurrencyPerReplica": g.cand.max_load,
                "pipelineBubble": _r(g.timing.bubble),
                "memoryPerGpuGiB": _memory(g),
                "communication": _comm(g),
            }
            for g in sol.groups
        ],
    }


def _comm(g: Group) -> dict[str, float]:
    c = g.timing.comm
    return {
        "tpAllReduceMsPerToken": _r(c.tp_all_reduce_ms, 4),
        "ppP2pMsPerToken": _r(c.pp_p2p_ms, 4),
        "epAllToAllMsPerToken": _r(c.ep_all_to_all_ms, 4),
    }


def score(sol: Solution, objective: str) -> float:
    """The objective's number: TPOT ms (latency), output tokens/s (throughput), GPUs (cost)."""
    if objective == "throughput":
        return _r(sol.throughput, 1)
    if objective == "cost":
        return float(sol.gpus)
    return _r(sol.tpot_s * 1e3)


def _rejected(r: Rejection) -> dict[str, Any]:
    return {
        "placement": {"engine": r.engine, "pool": r.pool, "tp": r.shape.tp, "pp": r.shape.pp, "ep": r.shape.ep,
                      "dpAttention": r.shape.dpa},
        "kind": r.kind,
        "reason": r.reason,
    }


def notes(sol: Solution, res: Resolved) -> list[str]:
    """Sentences that explain choices a reader would question (TP over PCIe, PP, EP)."""
    out = []
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


def build(res: Resolved, result: Result) -> dict[str, Any]:
    """The plan.json document."""
    best = result.best
    engine = best.engine
    return {
        "apiVersion": "parc.dev/v1alpha1",
        "kind": "Plan",
        "metadata": {"name": res.spec.metadata.name, "specSha256": res.spec_sha256, "parcVersion": __version__},
        "engine": engine,
        "model": {"id": res.spec.model.id, "architecture": res.model.key, "precision": res.spec.model.precision},
        "placement": placement(best),
        "engineSettings": settings(best.groups[0], res),
        "groupEngineSettings": [settings(g, res) for g in best.groups],
        "predicted": predicted(best),
        "meetsSlo": best.meets_slo,
        "objective": result.objective,
        "calibration": calibration(res, best),
        "notes": notes(best, res),
        "alternatives": [
            {"engine": a.engine, "placement": placement(a), "predicted": predicted(a), "score": score(a, result.objective),
             "meetsSlo": a.meets_slo}
            for a in result.alternatives
        ],
        "rejected": [_rejected(r) for r in sorted(result.rejections, key=_rej_key)],
        "launch": launch_entries(res, best),
    }


def calibration(res: Resolved, sol: Solution) -> dict[str, Any]:
    """Which efficiency factors the predictions used, and their expected error band
    (median and 90th-percentile absolute error of held-out throughput predictions)."""
    from parc import catalog

    cal = res.calibration if res.calibration is not None else catalog.builtin_calibration()
    prov = cal.get("provenance", {}) if cal else {}
    bands = cal.get("bands", {}) if cal else {}
    g = sol.groups[0]
    key = next((k for k in (f"{g.cand.engine}/{g.cand.pool.gpu.family}", f"*/{g.cand.pool.gpu.family}", "all")
                if k in bands), "all")
    band = bands.get(key) or {}
    return {
        "source": res.calibration_source if res.calibration is not None else
        ("built-in" if cal else "priors (uncalibrated)"),
        "fittedOn": f"{prov.get('rows', 0)} rows from {len(prov.get('sources', []))} sources" if prov else "",
        "errorBand": {"scope": key, "throughputMedianApe": band.get("medianApe"),
                      "throughputP90Ape": band.get("p90Ape")} if band else {},
    }


def _rej_key(r: Rejection) -> tuple[Any, ...]:
    return (r.kind, r.engine, r.pool, r.shape)


__all__ = ["build", "placement", "predicted", "score", "notes", "calibration"]
