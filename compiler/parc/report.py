"""Human-readable and JSON renderings for the CLI (plan tables, catalogs)."""

from __future__ import annotations

import json
from dataclasses import asdict
from typing import Any, Sequence

from parc.errors import printable


def to_json(doc: Any) -> str:
    """Deterministic JSON text: 2-space indent, insertion order, trailing newline."""
    return json.dumps(doc, indent=2, ensure_ascii=False, allow_nan=False) + "\n"  # strict JSON: NaN is a bug


plan_json = to_json


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]], right: set[int] | None = None) -> str:
    """A plain-text table with aligned columns."""
    right = right or set()
    cells = [[str(h) for h in headers]] + [[str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = []
    for r in cells:
        parts = [c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths))]
        lines.append("  ".join(parts).rstrip())
    return "\n".join(lines) + "\n"


def _money(x: Any) -> str:
    if x is None:
        return "-"
    return f"{x:.2f}" if x >= 1 else f"{x:.4f}"


def _row(mark: str, engine: str, placement: dict[str, Any], predicted: dict[str, Any],
         priced: bool, phased: bool = False) -> list[list[Any]]:
    rows = []
    for i, (g, p) in enumerate(zip(placement["groups"], predicted["groups"])):
        first = i == 0
        prefill = g.get("phase") == "prefill"  # a prefill instance emits no decode tokens
        rows.append([
            mark if first else "", engine if first else "", printable(g["pool"])]
            + ([g.get("phase", "both")] if phased else []) + [g["replicas"], g["dpAttention"],
            g["tp"], g["pp"], g["ep"], g["gpusPerReplica"] * g["replicas"], f"{p['concurrencyPerReplica']:g}",
            f"{p['ttftMs']:.0f}", "-" if prefill else f"{p['tpotMs']:.1f}",
            "-" if prefill else f"{p['throughputTokensPerSecond']:.0f}",
            f"{p['memoryPerGpuGiB']['total']:.1f}/{p['memoryPerGpuGiB']['capacity']:.0f}",
        ] + ([_money(predicted.get("costPerHour")) if first else "",
              _money(predicted.get("costPerMillionOutputTokens")) if first else ""] if priced else []))
    return rows


def band_sentence(cal: dict[str, Any]) -> str:
    """The error band of a plan in words ('' when none is known): the held-out error of its
    configuration class, or a widened band and "few measurements"."""
    band = cal.get("errorBand") or {}
    if not band or band.get("throughputMedianApe") is None:
        return ""
    n = band.get("heldOutRows", 0)
    on = band.get("scoredOn", "held-out")  # "fitted": the bands are the calibration's in-sample error
    where = (f"{band['scope']}: few measurements, {n} {on} row{'s' if n != 1 else ''}, band widened"
             if band.get("fewMeasurements") else f"{band['scope']}, {n} {on} rows")
    worst = band.get("throughputMaxApe")
    # what the percentile leaves out, then the TPOT band
    more = (f", worst {on} row ±{worst * 100:.0f}%" if worst is not None and worst > band["throughputP90Ape"]
            else "")
    more += (f"; TPOT ±{band['tpotMedianApe'] * 100:.0f}% median, ±{band['tpotP90Ape'] * 100:.0f}% p90"
             if band.get("tpotMedianApe") is not None else "")
    if band.get("fewMeasurements"):  # no median of its own to state: only the widened bound
        return (f"{cal['source']} calibration; expected throughput error up to ±{band['throughputP90Ape'] * 100:.0f}% "
                f"(90th percentile){more} ({where})")
    return (f"{cal['source']} calibration; expected throughput error ±{band['throughputMedianApe'] * 100:.0f}% "
            f"median, ±{band['throughputP90Ape'] * 100:.0f}% at the 90th percentile{more} ({where})")


def plan_table(doc: dict[str, Any]) -> str:
    """The chosen plan and alternatives as a table, then notes and rejections by reason."""
    m = doc["model"]
    out = [f"plan {doc['metadata']['name']}: {m['architecture']} ({m['precision']}), objective "
           f"{doc['objective']}, engine {doc['engine']}, {doc['placement']['gpusTotal']} GPUs\n\n"]
    priced = "costPerHour" in doc["predicted"]
    phased = any(g.get("phase", "both") != "both" for d in [doc] + doc["alternatives"]
                 for g in d["placement"]["groups"])
    headers = ["", "engine", "pool"] + (["phase"] if phased else []) + [
        "replicas", "dpAttn", "tp", "pp", "ep", "GPUs", "load", "TTFT ms", "TPOT ms",
        "tok/s", "GiB/GPU"] + (["cost/h", "cost/Mtok"] if priced else [])
    rows = _row("*", doc["engine"], doc["placement"], doc["predicted"], priced, phased)
    for alt in doc["alternatives"]:
        rows += _row(" ", alt["engine"], alt["placement"], alt["predicted"], priced, phased)
    out.append(table(headers, rows, right=set(range(4 if phased else 3, len(headers)))))
    out.append("(* chosen; GPUs = replicas x tp x pp x dpAttn; load = concurrent requests planned per replica; "
               "TTFT/TPOT at that load, tok/s = output tokens/s"
               + ("; phase: prefill and decode instances of a disaggregated plan (both: aggregated), a prefill "
                  "group's load = prompts in prefill, its TTFT = the deployment's (prefill wait + prefill + KV "
                  "transfer)" if phased else "")
               + ("; cost in the pools' costPerGpuHour currency, Mtok = a million output tokens" if priced else "")
               + ")\n")
    sentence = band_sentence(doc.get("calibration", {}))
    if sentence:
        out.append(f"predictions: {sentence}\n")
    c = doc["predicted"]["communication"]
    out.append(f"\ncommunication per token: TP all-reduce {c['tpAllReduceMsPerToken']:.3f} ms, PP p2p "
               f"{c['ppP2pMsPerToken']:.3f} ms, EP all-to-all {c['epAllToAllMsPerToken']:.3f} ms\n")
    if doc["notes"]:
        out.append("\nwhy:\n" + "".join(f"  - {n}\n" for n in doc["notes"]))
    rej = doc["rejected"]
    if rej:
        by: dict[str, list[dict[str, Any]]] = {}
        for r in rej:
            by.setdefault(r["kind"], []).append(r)
        out.append(f"\nrejected ({len(rej)}):\n")
        for kind in sorted(by, key=lambda k: (-len(by[k]), k)):
            ex = next((r for r in by[kind] if r["placement"]["engine"] == doc["engine"]), by[kind][0])
            p = ex["placement"]
            out.append(f"  {kind} ({len(by[kind])}): e.g. {p['engine']} {p['pool']} tp={p['tp']} pp={p['pp']} "
                       f"ep={p['ep']} dpAttention={p['dpAttention']}: {ex['reason']}\n")
    return "".join(out)


def catalog(what: str, fmt: str) -> str:
    """``parc catalog gpus|models``."""
    from parc import catalog as cat
    from parc.catalog import shapes

    if what == "gpus":
        entries = [cat.gpus().entries[k] for k in cat.gpus().keys()]
        if fmt == "json":
            return to_json({e.key: {k: v for k, v in asdict(e).items() if k != "key"} for e in entries})
        rows = [[e.key, e.memory_gb, e.hbm_bandwidth_gbs, e.tflops_bf16, e.tflops_fp8 or "-", e.tflops_fp4 or "-",
                 e.nvlink_gbs or "-", e.intra_node_default, ", ".join(e.aliases[:3])] for e in entries]
        return table(["gpu", "GB", "HBM GB/s", "BF16 TF", "FP8 TF", "FP4 TF", "NVLink GB/s", "intra", "aliases"],
                     rows, right={1, 2, 3, 4, 5, 6})
    if what == "checkpoints":
        cks = [cat.checkpoints()[k] for k in sorted(cat.checkpoints())]
        if fmt == "json":
            return to_json({c.repo_id: {k: v for k, v in asdict(c).items() if k != "repo_id"} for c in cks})
        return table(["checkpoint", "architecture", "format", "precision", "quant_method", "block/group",
                      "quantized", "kv"],
                     [[c.repo_id, c.architecture, c.format, c.precision, c.quant_method,
                       "x".join(map(str, c.block)) if c.block else (str(c.group_size) if c.group_size else "-"),
                       c.quantized, c.kv_cache] for c in cks])
    models = [cat.models().entries[k] for k in cat.models().keys()]
    if fmt == "json":
        return to_json({m.key: {**{k: v for k, v in asdict(m).items() if k != "key"},
                                "computedParams": shapes.total_params(m),
                                "computedActiveParams": shapes.active_params(m)} for m in models})
    rows = [[m.key, f"{shapes.total_params(m) / 1e9:.1f}B",
             f"{shapes.active_params(m) / 1e9:.1f}B" if m.is_moe else "", m.num_hidden_layers, m.hidden_size,
             f"{m.num_attention_heads}/{m.num_key_value_heads}", f"{m.num_experts}x{m.experts_per_token}" if m.is_moe
             else "", m.max_position_embeddings, m.hf_ids[0] if m.hf_ids else ""] for m in models]
    return table(["model", "params", "active", "layers", "hidden", "heads/kv", "experts", "max ctx", "hf id"],
                 rows, right={1, 2, 3, 4, 7})
