"""Runs NVIDIA aiconfigurator for aiconfigurator_compare.py, inside the `.venv-aic` venv.

Not part of parc and not imported by it: `aiconfigurator_compare.py` starts this file with
`.venv-aic/bin/python` (aiconfigurator pins numpy, pandas and pydantic versions of its own) and
exchanges JSON files with it:

    python _aiconfigurator_worker.py search REQUEST.json RESULT.json
    python _aiconfigurator_worker.py score  REQUEST.json RESULT.json
    python _aiconfigurator_worker.py score_disagg REQUEST.json RESULT.json

`search` is aiconfigurator's own search, the programmatic form of `aiconfigurator cli default`
(`aiconfigurator.cli.api.cli_default`): aggregated and disaggregated serving, every layout and
batch it enumerates, filtered by the TTFT/TPOT targets, ranked by output tokens/s per GPU.
`score` evaluates given layouts (`aiconfigurator.cli.api.cli_estimate`, mode "agg": one
in-flight-batching engine at a fixed batch and context-token budget).

Nothing is printed on stdout; aiconfigurator's log goes to stderr. Errors of one evaluation
(no perf data for that shape, out of memory) are returned as that item's `error`, because the
caller reports them per scenario; an error of the whole request exits non-zero.
"""

from __future__ import annotations

import json
import math
import sys
import time
from typing import Any

Json = dict[str, Any]

# Columns of an aggregated result row (aiconfigurator.sdk.common.ColumnsAgg) that the caller reads.
_ROW_KEYS = ("tp", "pp", "dp", "moe_tp", "moe_ep", "bs", "global_bs", "ctx_tokens", "ttft", "tpot",
             "tokens/s", "tokens/s/gpu", "tokens/s/gpu_cluster", "num_total_gpus", "concurrency",
             "memory", "gemm", "kvcache", "fmha", "moe", "comm", "backend", "version", "system")


def _plain(value: Any) -> Any:
    """numpy / pandas scalars -> JSON values (NaN -> None)."""
    if value is None or isinstance(value, (str, bool)):
        return value
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _row(row: Any) -> Json:
    return {k: _plain(row[k]) for k in _ROW_KEYS if k in row}


def search(req: Json) -> Json:
    """aiconfigurator's best aggregated (and disaggregated) configuration for one scenario."""
    from aiconfigurator.cli.api import cli_default

    t0 = time.perf_counter()
    result = cli_default(req["model"], req["gpus"], req["system"], backend=req["backend"],
                         isl=req["isl"], osl=req["osl"], ttft=req["ttft"], tpot=req["tpot"],
                         top_n=req.get("top_n", 5))
    seconds = time.perf_counter() - t0
    out: Json = {"searchSeconds": seconds, "chosen": result.chosen_exp,
                 "bestThroughputs": {k: _plain(v) for k, v in result.best_throughputs.items()}}
    for mode in ("agg", "disagg"):
        frame = result.best_configs.get(mode)
        if frame is None or len(frame) == 0:
            out[mode] = None
            continue
        frame = frame.sort_values("tokens/s/gpu_cluster", ascending=False)
        first = frame.iloc[0]
        out[mode] = _row(first) if mode == "agg" else {
            "tokens/s/gpu_cluster": _plain(first["tokens/s/gpu_cluster"]),
            "ttft": _plain(first["ttft"]), "tpot": _plain(first["tpot"]),
            "num_total_gpus": _plain(first["num_total_gpus"]),
            "prefill": f"{_plain(first['(p)parallel'])} x{_plain(first['(p)workers'])} bs{_plain(first['(p)bs'])}",
            "decode": f"{_plain(first['(d)parallel'])} x{_plain(first['(d)workers'])} bs{_plain(first['(d)bs'])}"}
        if mode == "agg":
            out["aggTop"] = [_row(r) for _, r in frame.head(5).iterrows()]
    return out


def _agg_estimates_resolve_large_ep() -> None:
    """Make `cli_estimate(mode="agg")` price cross-node EP the way `cli_default`'s search does.

    In aiconfigurator 0.12 the search (`sdk.task_v2.Task._resolve_moe_comm_backend`) and the
    static estimate (`cli.api._run_static_estimate`) resolve the MoE all-to-all backend of a
    cross-node expert-parallel layout with `sdk.moe_comm_resolver.resolve_model_config_moe_comm`;
    the aggregated estimate does not, and prices EP16 on two H100 nodes on the fused intra-node
    path (69% below the search's own number for the same point). This wraps the one call the
    aggregated estimate makes after building its ModelConfig (the context-FMHA resolution) so
    that it first resolves the backend as the static estimate does; the compare script's
    self-check (re-estimating the search's best point) shows whether scores and search agree.
    """
    import aiconfigurator.cli.api as api
    from aiconfigurator.sdk.models import check_is_moe
    from aiconfigurator.sdk.moe_comm_resolver import resolve_model_config_moe_comm

    original = api.resolve_context_fmha_by_data

    def resolve(model_config: Any, model_path: str, database: Any, backend_name: str, **kwargs: Any) -> Any:
        if check_is_moe(model_path):
            resolve_model_config_moe_comm(model_config, model_path=model_path, backend_name=backend_name,
                                          database=database, required_phases=("context", "generation"))
        return original(model_config, model_path, database, backend_name, **kwargs)

    api.resolve_context_fmha_by_data = resolve


def score_one(item: Json) -> Json:
    """One aggregated engine under aiconfigurator's model: TTFT, TPOT (ms), output tokens/s."""
    from aiconfigurator.cli.api import cli_estimate

    kwargs: Json = {"backend_name": item["backend"], "mode": "agg", "isl": item["isl"], "osl": item["osl"],
                    "batch_size": item["batch"], "ctx_tokens": item.get("ctxTokens"),
                    "tp_size": item["tp"], "pp_size": item["pp"], "attention_dp_size": item["dp"]}
    for key, arg in (("moeTp", "moe_tp_size"), ("moeEp", "moe_ep_size"),
                     ("freeGpuMemoryFraction", "free_gpu_memory_fraction"), ("maxSeqLen", "max_seq_len"),
                     ("gemm", "gemm_quant_mode"), ("kvcache", "kvcache_quant_mode"),
                     ("fmha", "fmha_quant_mode"), ("moe", "moe_quant_mode")):
        if item.get(key) is not None:
            kwargs[arg] = item[key]
    try:
        est = cli_estimate(item["model"], item["system"], **kwargs)
    # cli_estimate raises ValueError/RuntimeError/its PerfDataNotAvailableError for a shape
    # it has no data for or that does not fit; the caller reports the message for that row.
    except Exception as exc:  # noqa: BLE001
        return {"error": f"{type(exc).__name__}: {str(exc).splitlines()[0][:300]}"}
    out = _row(est.raw)
    out["kvCacheWarning"] = est.kv_cache_warning
    return out


def score_disagg(item: Json) -> Json:
    """One disaggregated deployment under aiconfigurator's model (cli_estimate, mode "disagg":
    prefill and decode workers with their layouts, per-rank batches and worker counts; its
    tokens/s/gpu matches the prefill and decode rates over all the GPUs)."""
    from aiconfigurator.cli.api import cli_estimate

    kwargs: Json = {"backend_name": item["backend"], "mode": "disagg", "isl": item["isl"], "osl": item["osl"]}
    for phase in ("prefill", "decode"):
        p = item[phase]
        kwargs.update({f"{phase}_tp_size": p["tp"], f"{phase}_pp_size": p["pp"],
                       f"{phase}_attention_dp_size": p["dp"], f"{phase}_batch_size": p["batch"],
                       f"{phase}_num_workers": p["workers"]})
        for key, arg in (("moeTp", "moe_tp_size"), ("moeEp", "moe_ep_size")):
            if p.get(key) is not None:
                kwargs[f"{phase}_{arg}"] = p[key]
    try:
        est = cli_estimate(item["model"], item["system"], **kwargs)
    except Exception as exc:  # noqa: BLE001 - reported for that row, as in score_one
        return {"error": f"{type(exc).__name__}: {str(exc).splitlines()[0][:300]}"}
    raw = est.raw
    return {k: _plain(raw[k]) for k in ("ttft", "tpot", "tokens/s", "tokens/s/gpu", "num_total_gpus", "(p)parallel",
                                        "(d)parallel", "(p)workers", "(d)workers", "(p)bs", "(d)bs")
            if k in raw}


def main(argv: list[str]) -> int:
    if len(argv) != 4 or argv[1] not in ("search", "score", "score_disagg"):
        print(__doc__, file=sys.stderr)
        return 2
    with open(argv[2], encoding="utf-8") as fh:
        req = json.load(fh)
    if argv[1] == "search":
        out = search(req)
    elif argv[1] == "score_disagg":
        out = {"items": [score_disagg(i) for i in req["items"]]}
    else:
        _agg_estimates_resolve_large_ep()
        out = {"items": [score_one(i) for i in req["items"]]}
    with open(argv[3], "w", encoding="utf-8") as fh:
        json.dump(out, fh, indent=1, sort_keys=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
