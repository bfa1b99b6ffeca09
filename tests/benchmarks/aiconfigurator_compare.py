#!/usr/bin/env python3
"""parc against NVIDIA aiconfigurator 0.12, side by side (a benchmark, not a test).

For each scenario below (dense and MoE models; H100/H200/B200; latency-bound = tight TPOT,
throughput-bound = loose TPOT) this script

1. writes a parc ServingSpec (objective throughput within the TTFT/TPOT targets, no fixed
   concurrency, aggregated serving) to a temp dir and times `parc plan --format json`
   (wall clock of the whole subprocess);
2. reads parc's chosen layout from plan.json and scores it under aiconfigurator's model
   (`aiconfigurator.cli.api.cli_estimate`, mode agg) at parc's batch: `engineSettings.maxNumSeqs`
   (per data-parallel rank, as both engines' `max_batch_size` / `--max-num-seqs` are) with
   parc's chunk budget `engineSettings.maxNumBatchedTokens` as aiconfigurator's `ctx_tokens`;
   maxNumSeqs is what the engine runs once the offered load saturates it, which is the regime
   aiconfigurator's aggregated model (and trtllm-bench) describes. It also scores parc's
   planned load (`predicted.groups[0].concurrencyPerReplica` / dpAttention), for reference;
3. runs aiconfigurator's own search (`aiconfigurator.cli.api.cli_default`, what
   `aiconfigurator cli default` runs: aggregated and disaggregated) in a fresh process and
   times that process (wall clock, like parc's);
4. prints one row per scenario and the summary: mean regret, misses, time ratio;
5. for each scenario, finds the published online row nearest to parc's choice (same model,
   precision, GPU and tp/pp/attention DP; the closest batch per rank and lengths) and prints its
   measured TPOT against both tools' predictions for that row: where the tools disagree about
   parc's batch, the nearest measurement says which one to believe (and how far it is from the
   scenario).

regret = 1 - parc's tok/s/GPU under aiconfigurator / aiconfigurator's best aggregated tok/s/GPU
(both per GPU of the scenario's cluster: replicas x one replica's output tokens/s / GPUs), and
1 when parc's batch misses the TTFT or TPOT target under aiconfigurator's model or exceeds its
KV-cache capacity. The reference is aiconfigurator's best *aggregated* configuration, parc's
serving mode; its disaggregated best is shown for information. A scenario aiconfigurator cannot
score (no perf data for parc's shape) is reported with the reason and left out of the mean.

What is matched between the two tools, and what cannot be:
- engine: parc `engine.name` = aiconfigurator backend (trtllm or vllm). Versions differ: parc
  emits TensorRT-LLM 1.2.1 / vLLM 0.32.0 flags; aiconfigurator 0.12 holds silicon data for
  TensorRT-LLM 1.3.0rc20 and vLLM 0.24.0 (`aiconfigurator_core/systems/query_versions.yaml`);
- weights: the same checkpoint; aiconfigurator reads its quantization from its bundled
  config.json (FP8 block -> fp8_block GEMM/MoE, modelopt FP8 -> fp8_static, MXFP4 experts ->
  w4a16_mxfp4). It infers an FP8 KV cache for every FP8 checkpoint, so parc's specs set
  `kvCachePrecision: fp8` there (an engine does that with its KV dtype flag); the row records
  the modes aiconfigurator used;
- memory: parc's TensorRT-LLM `kvCacheFreeMemoryFraction` and `maxModelLen` are passed as
  aiconfigurator's `free_gpu_memory_fraction` and `max_seq_len` when scoring parc's choice, and its
  vLLM `gpuMemoryUtilization` as the `free_gpu_memory_fraction` aiconfigurator's vLLM backend reads
  as `--gpu-memory-utilization`;
- search spaces differ: aiconfigurator's aggregated search has no pipeline parallelism for
  these systems and batches up to 512 per rank (1024 for a few MoE); parc searches PP too.

Setup (aiconfigurator pins its own numpy/pandas/pydantic, so it lives in a venv of its own):

    python3 -m venv .venv-aic && .venv-aic/bin/pip install -r tests/benchmarks/requirements-aiconfigurator.txt

Run from the repository with parc's venv (the 14 scenarios take ~6 minutes on 2 cores, almost all
of it aiconfigurator):

    python tests/benchmarks/aiconfigurator_compare.py [--json rows.json] [--only NAME ...]

Two modes compare both tools with published measurements instead of with each other: `--measured`
(the online rows: TPOT, tokens/s and TTFT at the measured concurrency, ~2.5 minutes) and
`--offline` (the maximum-throughput MoE rows of TensorRT-LLM's tables, at larger batches: each
tool's best within the batch the row ran, `trtllm-bench`'s, where the corpus derives it, and
within its own KV cache, ~8 minutes).

aiconfigurator is called, never copied, from `_aiconfigurator_worker.py` (run by `.venv-aic/bin/python`):
`aiconfigurator.cli.api.cli_default` (search), `aiconfigurator.cli.api.cli_estimate` (mode agg, one
layout at one batch), and, so that the aggregated estimate prices cross-node EP as the search does,
`aiconfigurator.sdk.moe_comm_resolver.resolve_model_config_moe_comm` (see the worker). Every row
re-estimates aiconfigurator's own best point and prints the deviation from its search (self-check).
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
WORKER = Path(__file__).resolve().parent / "_aiconfigurator_worker.py"
Json = dict[str, Any]


@dataclass(frozen=True)
class Scenario:
    """One comparison point. `model` is the id parc loads; `aic_model` aiconfigurator's bundled config."""

    name: str
    model: str
    aic_model: str
    gpu: str            # parc GPU catalog key
    system: str         # aiconfigurator system
    nodes: int
    gpus_per_node: int
    engine: str         # parc engine = aiconfigurator backend
    isl: int
    osl: int
    ttft_ms: float
    tpot_ms: float
    bound: str          # "latency" (tight TPOT) or "throughput" (loose TPOT)
    architecture: str | None = None
    precision: str | None = None
    kv_cache_precision: str | None = None
    moe: bool = False

    @property
    def gpus(self) -> int:
        return self.nodes * self.gpus_per_node


# Model ids: parc's catalog (`parc catalog models|checkpoints`) and aiconfigurator_core/model_configs.
# nvidia/Llama-3.1-70B-Instruct-FP8 is not in parc's checkpoint catalog: parc takes the spec's
# word (architecture, fp8 weights, fp8 KV as its hf_quant_config says). Every pair has data in
# aiconfigurator's support matrix (systems/support_matrix/<system>.csv, status PASS, agg).
SCENARIOS: tuple[Scenario, ...] = (
    Scenario("llama8b-h100x1-trt-1k1k-thr", "meta-llama/Llama-3.1-8B", "meta-llama/Meta-Llama-3.1-8B",
             "H100-SXM-80GB", "h100_sxm", 1, 1, "trtllm", 1024, 1024, 2000, 50, "throughput"),
    Scenario("llama8b-h100x8-trt-1k1k-lat", "meta-llama/Llama-3.1-8B", "meta-llama/Meta-Llama-3.1-8B",
             "H100-SXM-80GB", "h100_sxm", 1, 8, "trtllm", 1024, 1024, 500, 8, "latency"),
    Scenario("llama8b-b200x4-vllm-4k512-thr", "meta-llama/Llama-3.1-8B", "meta-llama/Meta-Llama-3.1-8B",
             "B200-SXM-180GB", "b200_sxm", 1, 4, "vllm", 4096, 512, 2000, 40, "throughput"),
    Scenario("llama70b-fp8-h100x8-trt-1k1k-lat", "nvidia/Llama-3.1-70B-Instruct-FP8",
             "nvidia/Llama-3.1-70B-Instruct-FP8", "H100-SXM-80GB", "h100_sxm", 1, 8, "trtllm",
             1024, 1024, 1000, 15, "latency", architecture="llama-3.1-70b", precision="fp8",
             kv_cache_precision="fp8"),
    Scenario("llama70b-h200x4-vllm-4k512-thr", "meta-llama/Llama-3.1-70B", "meta-llama/Meta-Llama-3.1-70B",
             "H200-SXM-141GB", "h200_sxm", 1, 4, "vllm", 4096, 512, 3000, 60, "throughput"),
    Scenario("qwen3-32b-h200x8-trt-1k1k-lat", "Qwen/Qwen3-32B", "Qwen/Qwen3-32B",
             "H200-SXM-141GB", "h200_sxm", 1, 8, "trtllm", 1024, 1024, 800, 12, "latency"),
    Scenario("qwen3-30b-a3b-fp8-h100x4-vllm-1k1k-thr", "Qwen/Qwen3-30B-A3B-FP8", "Qwen/Qwen3-30B-A3B-FP8",
             "H100-SXM-80GB", "h100_sxm", 1, 4, "vllm", 1024, 1024, 2000, 50, "throughput",
             kv_cache_precision="fp8", moe=True),
    Scenario("qwen3-235b-fp8-h200x8-trt-4k512-thr", "Qwen/Qwen3-235B-A22B-FP8", "Qwen/Qwen3-235B-A22B-FP8",
             "H200-SXM-141GB", "h200_sxm", 1, 8, "trtllm", 4096, 512, 4000, 60, "throughput",
             kv_cache_precision="fp8", moe=True),
    Scenario("qwen3-235b-fp8-b200x8-vllm-1k1k-lat", "Qwen/Qwen3-235B-A22B-FP8", "Qwen/Qwen3-235B-A22B-FP8",
             "B200-SXM-180GB", "b200_sxm", 1, 8, "vllm", 1024, 1024, 1000, 15, "latency",
             kv_cache_precision="fp8", moe=True),
    Scenario("dsr1-h200x8-trt-1k1k-thr", "deepseek-ai/DeepSeek-R1", "deepseek-ai/DeepSeek-R1",
             "H200-SXM-141GB", "h200_sxm", 1, 8, "trtllm", 1024, 1024, 3000, 50, "throughput",
             kv_cache_precision="fp8", moe=True),
    Scenario("dsr1-b200x8-trt-4k512-lat", "deepseek-ai/DeepSeek-R1", "deepseek-ai/DeepSeek-R1",
             "B200-SXM-180GB", "b200_sxm", 1, 8, "trtllm", 4096, 512, 2000, 20, "latency",
             kv_cache_precision="fp8", moe=True),
    Scenario("dsr1-h100x16-trt-1k1k-thr", "deepseek-ai/DeepSeek-R1", "deepseek-ai/DeepSeek-R1",
             "H100-SXM-80GB", "h100_sxm", 2, 8, "trtllm", 1024, 1024, 5000, 80, "throughput",
             kv_cache_precision="fp8", moe=True),
    Scenario("qwen3-235b-fp8-h200x16-vllm-4k512-thr", "Qwen/Qwen3-235B-A22B-FP8", "Qwen/Qwen3-235B-A22B-FP8",
             "H200-SXM-141GB", "h200_sxm", 2, 8, "vllm", 4096, 512, 4000, 60, "throughput",
             kv_cache_precision="fp8", moe=True),
    Scenario("gptoss120b-h200x1-trt-1k1k-lat", "openai/gpt-oss-120b", "openai/gpt-oss-120b",
             "H200-SXM-141GB", "h200_sxm", 1, 1, "trtllm", 1024, 1024, 1000, 10, "latency", moe=True),
    Scenario("gptoss120b-b200x4-vllm-1k1k-thr", "openai/gpt-oss-120b", "openai/gpt-oss-120b",
             "B200-SXM-180GB", "b200_sxm", 1, 4, "vllm", 1024, 1024, 2000, 40, "throughput", moe=True),
)


#: Engines parc deploys disaggregated (engine.disaggregation), among the backends compared here.
DISAGG_ENGINES = ("vllm", "sglang")


def spec_yaml(s: Scenario, disaggregation: str = "off") -> str:
    """The parc ServingSpec of a scenario (JSON is YAML 1.2, so json.dumps writes it)."""
    model: Json = {"id": s.model, "maxContextLength": s.isl + s.osl}
    for key, value in (("architecture", s.architecture), ("precision", s.precision),
                       ("kvCachePrecision", s.kv_cache_precision)):
        if value is not None:
            model[key] = value
    pool: Json = {"name": "pool", "gpu": s.gpu, "nodes": s.nodes, "gpusPerNode": s.gpus_per_node,
                  "scheduler": "none"}
    if s.nodes > 1:
        pool["interNode"] = "infiniband"
    spec = {"apiVersion": "parc.dev/v1alpha1", "kind": "ServingSpec",
            "metadata": {"name": s.name.replace(".", "-")[:63]},
            "model": model,
            "workload": {"inputTokens": s.isl, "outputTokens": s.osl},
            "slo": {"objective": "throughput", "ttftMs": s.ttft_ms, "tpotMs": s.tpot_ms},
            "cluster": {"pools": [pool]},
            "engine": {"name": s.engine}}
    if disaggregation != "off" and s.engine in DISAGG_ENGINES:
        spec["engine"]["disaggregation"] = disaggregation
    return json.dumps(spec, indent=1) + "\n"


def parc_executable() -> list[str]:
    local = Path(sys.executable).with_name("parc")
    for cand in (local, REPO / ".venv" / "bin" / "parc"):
        if cand.exists():
            return [str(cand)]
    found = shutil.which("parc")
    if found is None:
        raise SystemExit("parc not found: run with parc's venv (pip install -e .)")
    return [found]


def run_parc(s: Scenario, tmp: Path, disaggregation: str = "off") -> tuple[Json | None, float, str]:
    """(plan.json or None, wall seconds, error text)."""
    spec = tmp / f"{s.name}.yaml"
    spec.write_text(spec_yaml(s, disaggregation), encoding="utf-8")
    t0 = time.perf_counter()
    proc = subprocess.run([*parc_executable(), "plan", str(spec), "--format", "json"],
                          capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - t0
    if proc.returncode != 0:
        why = proc.stderr.strip().splitlines()[-1:] or [""]
        if proc.returncode == 3:  # infeasible: plan.json with feasible false and the problem
            try:
                why = [p["message"] for p in json.loads(proc.stdout).get("problems", [])][:1] or why
            except ValueError:
                pass
        return None, seconds, f"parc exit {proc.returncode}: {why[0]}"
    plan: Json = json.loads(proc.stdout)
    return plan, seconds, ""


def run_worker(aic_python: str, command: str, request: Json, tmp: Path, tag: str) -> tuple[Json, float]:
    """Run the aiconfigurator worker in a fresh process; (result, wall seconds of that process)."""
    req, out = tmp / f"{tag}.{command}.in.json", tmp / f"{tag}.{command}.out.json"
    req.write_text(json.dumps(request), encoding="utf-8")
    t0 = time.perf_counter()
    proc = subprocess.run([aic_python, str(WORKER), command, str(req), str(out)],
                          capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - t0
    if proc.returncode != 0:
        tail = "\n".join(proc.stderr.strip().splitlines()[-3:])
        return {"error": f"aiconfigurator {command} exit {proc.returncode}: {tail}"}, seconds
    result: Json = json.loads(out.read_text(encoding="utf-8"))
    return result, seconds


def parc_layout(plan: Json) -> Json:
    """parc's chosen layout and batch, read defensively (plan.json may gain keys)."""
    group = plan["placement"]["groups"][0]
    settings = plan.get("engineSettings", {})
    # groupEngineSettings (per pool group) wins over the plan-wide settings when present.
    per_group = plan.get("groupEngineSettings")
    if isinstance(per_group, list) and per_group and isinstance(per_group[0], dict):
        settings = {**settings, **per_group[0].get("engineSettings", per_group[0])}
    predicted = plan.get("predicted", {})
    groups_pred = predicted.get("groups") or [{}]
    dp = int(group.get("dpAttention", 1))
    planned = groups_pred[0].get("concurrencyPerReplica")
    return {"tp": int(group["tp"]), "pp": int(group.get("pp", 1)), "ep": int(group.get("ep", 1)), "dp": dp,
            "replicas": int(group.get("replicas", 1)),
            "gpusPerReplica": int(group.get("gpusPerReplica", group["tp"] * group.get("pp", 1) * dp)),
            "maxNumSeqs": int(settings["maxNumSeqs"]),
            "maxNumBatchedTokens": settings.get("maxNumBatchedTokens"),
            "kvCacheFreeMemoryFraction": settings.get("kvCacheFreeMemoryFraction"),
            "gpuMemoryUtilization": settings.get("gpuMemoryUtilization"),
            "maxModelLen": settings.get("maxModelLen"),
            "plannedPerRank": None if planned is None else max(1, round(float(planned) / dp)),
            "predictedTokS": float(predicted.get("throughputTokensPerSecond", 0.0)),
            "predictedTtftMs": predicted.get("ttftMs"), "predictedTpotMs": predicted.get("tpotMs"),
            "groups": len(plan["placement"]["groups"])}


def score_item(s: Scenario, lay: Json, batch: int, is_moe: bool) -> Json:
    # aiconfigurator's batch is one pipeline micro-batch (its concurrency is batch x pp); parc's
    # maxNumSeqs counts every sequence a rank holds, over its pp micro-batches
    item: Json = {"model": s.aic_model, "system": s.system, "backend": s.engine, "isl": s.isl, "osl": s.osl,
                  "tp": lay["tp"], "pp": lay["pp"], "dp": lay["dp"], "batch": -(-batch // lay["pp"]),
                  "ctxTokens": lay["maxNumBatchedTokens"]}
    if is_moe:
        width = lay["tp"] * lay["dp"]
        # parc's ep is tp x dpAttention (experts spread) or 1 (experts tensor-sharded over the stage).
        item["moeEp"], item["moeTp"] = (lay["ep"], width // lay["ep"]) if lay["ep"] > 1 else (1, width)
    if s.engine == "trtllm":
        item["freeGpuMemoryFraction"] = lay["kvCacheFreeMemoryFraction"]
        item["maxSeqLen"] = lay["maxModelLen"]
    elif s.engine == "vllm" and lay["gpuMemoryUtilization"] is not None:
        # aiconfigurator's vLLM backend reads free_gpu_memory_fraction as --gpu-memory-utilization
        # (a share of the whole GPU; its default is vLLM 0.24's 0.92)
        item["freeGpuMemoryFraction"] = lay["gpuMemoryUtilization"]
    return item


def judge(s: Scenario, lay: Json, res: Json) -> Json:
    """Score of one parc point: tok/s per cluster GPU, SLO verdict."""
    if "error" in res:
        if res["error"].startswith("RuntimeError: OOM"):
            # Weights + activations + KV of `batch` sequences at max_seq_len exceed the GPU in
            # aiconfigurator's memory model (TensorRT-LLM's default GUARANTEED_NO_EVICT scheduler
            # reserves each request's whole sequence, so the engine could not run this batch).
            return {"scored": True, "ttftMs": None, "tpotMs": None, "tokSPerGpu": 0.0, "meetsSlo": False,
                    "misses": ["out of memory at this batch under aiconfigurator's memory model"],
                    "modes": {}}
        return {"scored": False, "reason": res["error"]}
    tok_gpu = float(res["tokens/s"]) * lay["replicas"] / s.gpus
    misses = []
    if res["ttft"] > s.ttft_ms:
        misses.append(f"TTFT {res['ttft']:.0f} > {s.ttft_ms:.0f} ms")
    if res["tpot"] > s.tpot_ms:
        misses.append(f"TPOT {res['tpot']:.1f} > {s.tpot_ms:.1f} ms")
    if res.get("kvCacheWarning"):
        misses.append("batch exceeds aiconfigurator's KV-cache capacity")
    return {"scored": True, "ttftMs": res["ttft"], "tpotMs": res["tpot"], "tokSPerGpu": tok_gpu,
            "meetsSlo": not misses, "misses": misses,
            "modes": {k: res.get(k) for k in ("gemm", "kvcache", "fmha", "moe", "version")}}


def phase_item(s: Scenario, plan: Json, i: int) -> Json:
    """One phase group of a disaggregated parc plan as aiconfigurator's prefill_* / decode_* values:
    per-rank batch (a prefill worker's: the prompts its chunk budget holds; a decode worker's:
    maxNumSeqs) and the replicas as workers."""
    g = plan["placement"]["groups"][i]
    st = plan["groupEngineSettings"][i]
    dp = int(g["dpAttention"])
    if g["phase"] == "prefill":
        batch = max(1, int(st["maxNumBatchedTokens"]) // s.isl)
    else:
        batch = int(st["maxNumSeqs"])
    out: Json = {"tp": int(g["tp"]), "pp": int(g["pp"]), "dp": dp, "batch": batch, "workers": int(g["replicas"])}
    if s.moe:
        width = int(g["tp"]) * dp
        out["moeEp"], out["moeTp"] = (int(g["ep"]), width // int(g["ep"])) if int(g["ep"]) > 1 else (1, width)
    return out


def compare_disaggregated(s: Scenario, plan: Json, row: Json, aic_python: str, tmp: Path) -> None:
    """parc chose a disaggregated plan: score it under aiconfigurator's disaggregated model and set
    the regret against aiconfigurator's best of either mode (parc could choose both)."""
    phases = [g["phase"] for g in plan["placement"]["groups"]]
    item = {"model": s.aic_model, "system": s.system, "backend": s.engine, "isl": s.isl, "osl": s.osl,
            "prefill": phase_item(s, plan, phases.index("prefill")),
            "decode": phase_item(s, plan, phases.index("decode"))}
    scored, _ = run_worker(aic_python, "score_disagg", {"items": [item]}, tmp, s.name)
    res = (scored.get("items") or [{"error": scored.get("error", "no result")}])[0]
    row["parcDisagg"] = {"prefill": item["prefill"], "decode": item["decode"],
                         "predictedTokSPerGpu": plan["predicted"]["throughputTokensPerSecond"] / s.gpus}
    if "error" in res:
        row["atMaxNumSeqs"] = {"scored": False, "reason": res["error"]}
        row["regret"] = None
        return
    misses = []
    if res["ttft"] > s.ttft_ms:
        misses.append(f"TTFT {res['ttft']:.0f} > {s.ttft_ms:.0f} ms")
    if res["tpot"] > s.tpot_ms:
        misses.append(f"TPOT {res['tpot']:.1f} > {s.tpot_ms:.1f} ms")
    # aiconfigurator rate-matches prefill and decode over its own GPU count; per GPU of the cluster
    tok_gpu = float(res["tokens/s/gpu"]) * float(res.get("num_total_gpus") or s.gpus) / s.gpus
    row["atMaxNumSeqs"] = {"scored": True, "ttftMs": res["ttft"], "tpotMs": res["tpot"], "tokSPerGpu": tok_gpu,
                           "meetsSlo": not misses, "misses": misses, "modes": {}}
    refs = [float(x["tokens/s/gpu_cluster"]) for x in (row.get("aicBest"), row.get("aicDisaggBest"))
            if x and x.get("tokens/s/gpu_cluster")]
    row["regret"] = (1.0 if misses else 1.0 - tok_gpu / max(refs)) if refs else None


@functools.lru_cache(maxsize=1)
def corpus_rows() -> tuple[Any, ...]:
    """The published corpus, read once for every scenario."""
    from parc import calibrate as c

    return tuple(c.read_rows(Path(__file__).resolve().parent / "data" / "published.csv")[0])


def nearest_measurement(s: Scenario, plan: Json, lay: Json) -> Any:
    """The published online row (TTFT/TPOT measured at a fixed concurrency) nearest to parc's
    choice: same model architecture, precision, GPU and layout (tp, pp, attention DP), the
    closest in batch per rank and lengths (log distance); None when the corpus has no row of that
    layout. It is where a measurement can say which tool's TPOT to believe at parc's batch."""
    arch, prec = plan["model"]["architecture"], plan["model"]["precision"]
    same = [r for r in corpus_rows() if r.concurrency and r.tpot_ms and r.arch.key == arch and r.precision == prec
            and r.gpu.key == s.gpu and (r.shape.tp, r.shape.pp, r.shape.dpa) == (lay["tp"], lay["pp"], lay["dp"])]

    def distance(r: Any) -> float:
        per_rank = max(1.0, r.concurrency / r.replicas / r.shape.dpa)
        return (abs(math.log(per_rank / lay["maxNumSeqs"])) + abs(math.log(r.input_tokens / s.isl))
                + abs(math.log(r.output_tokens / s.osl)))

    return min(same, key=lambda r: (distance(r), r.id), default=None)


def measured_item(r: Any) -> Json:
    """aiconfigurator's request for a corpus row: its layout at its batch per rank."""
    from parc import calibrate as c

    item: Json = {"model": AIC_MODELS[(r.arch.key, r.precision)], "system": AIC_SYSTEMS[r.gpu.key],
                  "backend": r.engine if r.engine in ("trtllm", "vllm", "sglang") else "trtllm", "isl": r.input_tokens,
                  "osl": r.output_tokens, "tp": r.shape.tp, "pp": 1, "dp": r.shape.dpa,
                  "batch": max(1, math.ceil(r.concurrency / r.replicas / r.shape.dpa)), "ctxTokens": c.BATCHED_TOKENS}
    if r.arch.is_moe:
        width = r.shape.tp * r.shape.dpa
        item["moeEp"], item["moeTp"] = (r.shape.ep, width // r.shape.ep) if r.shape.ep > 1 else (1, width)
    return item


def compare(s: Scenario, aic_python: str, tmp: Path, disaggregation: str = "off") -> Json:
    row: Json = {"scenario": asdict(s)}
    plan, row["parcSeconds"], err = run_parc(s, tmp, disaggregation)
    search, row["aicSeconds"] = run_worker(aic_python, "search", {
        "model": s.aic_model, "gpus": s.gpus, "system": s.system, "backend": s.engine,
        "isl": s.isl, "osl": s.osl, "ttft": s.ttft_ms, "tpot": s.tpot_ms}, tmp, s.name)
    row["aicSearchSeconds"] = search.get("searchSeconds")
    # cli_default's picking falls back to the closest configurations when none meets the TPOT
    # target (sdk/pareto_analysis.py); only a configuration that meets both targets is a reference.
    top = search.get("aggTop") or []
    meeting = [r for r in top if r["ttft"] <= s.ttft_ms and r["tpot"] <= s.tpot_ms]
    best = max(meeting, key=lambda r: r["tokens/s/gpu_cluster"]) if meeting else None
    row["aicBest"] = best
    row["aicAggTop"] = top
    if top and not meeting:
        row["aicNote"] = (f"no aggregated configuration meets the SLO under aiconfigurator (closest: TTFT "
                          f"{top[0]['ttft']:.0f} ms, TPOT {top[0]['tpot']:.1f} ms)")
    row["aicDisaggBest"] = search.get("disagg")
    if "error" in search:
        row["aicError"] = search["error"]
    if plan is None:
        row["parcError"] = err
        row["regret"] = 1.0
        return row
    if any(g.get("phase", "both") != "both" for g in plan["placement"]["groups"]):
        compare_disaggregated(s, plan, row, aic_python, tmp)
        return row
    lay = parc_layout(plan)
    row["parc"] = lay
    row["parcTokSPerGpu"] = lay["predictedTokS"] / s.gpus
    is_moe = s.moe
    # Score with the quantization modes aiconfigurator's own search used for this model.
    modes_row = best or (top[0] if top else {})
    quant = {k: modes_row[k] for k in ("gemm", "kvcache", "fmha", "moe") if modes_row.get(k)}
    items = [{**score_item(s, lay, lay["maxNumSeqs"], is_moe), **quant}]
    if lay["plannedPerRank"] is not None:
        items.append({**score_item(s, lay, lay["plannedPerRank"], is_moe), **quant})
    near = nearest_measurement(s, plan, lay)
    near_at = None
    if near is not None and (near.arch.key, near.precision) in AIC_MODELS and near.gpu.key in AIC_SYSTEMS \
            and near.shape.pp == 1:
        near_at = len(items)
        items.append(measured_item(near))
    if best:  # consistency: aiconfigurator's estimate of its own best must reproduce the search
        again: Json = {"model": s.aic_model, "system": s.system, "backend": s.engine, "isl": s.isl,
                       "osl": s.osl, "tp": best["tp"], "pp": best["pp"], "dp": best["dp"], "batch": best["bs"],
                       "ctxTokens": best["ctx_tokens"]}
        if s.moe:
            again.update(moeTp=best.get("moe_tp"), moeEp=best.get("moe_ep"))
        items.append({**again, **quant})
    scored, _ = run_worker(aic_python, "score", {"items": items}, tmp, s.name)
    results = scored.get("items") or [{"error": scored.get("error", "no result")}] * len(items)
    row["atMaxNumSeqs"] = judge(s, lay, results[0])
    if lay["plannedPerRank"] is not None:
        row["atPlannedLoad"] = judge(s, lay, results[1])
    if near is not None:
        from parc import calibrate as c

        p = c.predict(near, None)
        res_n = results[near_at] if near_at is not None else {"error": "no aiconfigurator data"}
        row["nearestMeasurement"] = {
            "id": near.id, "concurrency": near.concurrency, "inputTokens": near.input_tokens,
            "outputTokens": near.output_tokens, "engine": near.engine, "tpotMs": near.tpot_ms,
            "parcTpotMs": None if p is None else p.tpot_ms,
            "aicTpotMs": None if "error" in res_n else float(res_n["tpot"])}
    if best:
        again = results[-1]
        row["aicSelfCheck"] = (None if "error" in again
                               else float(again["tokens/s/gpu"]) / float(best["tokens/s/gpu"]) - 1.0)
    at = row["atMaxNumSeqs"]
    if best and at["scored"]:
        ref = float(best["tokens/s/gpu_cluster"])
        row["regret"] = 1.0 if not at["meetsSlo"] else 1.0 - at["tokSPerGpu"] / ref
    elif not best and at["scored"]:
        row["regret"] = None  # aiconfigurator found nothing to compare with
    else:
        row["regret"] = None
    return row


def fmt_parc(lay: Json) -> str:
    ep = f" ep{lay['ep']}" if lay["ep"] > 1 else ""
    dp = f" dpa{lay['dp']}" if lay["dp"] > 1 else ""
    pp = f" pp{lay['pp']}" if lay["pp"] > 1 else ""
    return f"tp{lay['tp']}{pp}{ep}{dp} x{lay['replicas']} bs{lay['maxNumSeqs']}"


def fmt_split(split: Json) -> str:
    def one(p: Json) -> str:
        ep = f"ep{p['moeEp']}" if p.get("moeEp", 1) > 1 else ""
        return f"tp{p['tp']}{'dpa' + str(p['dp']) if p['dp'] > 1 else ''}{ep}x{p['workers']}"
    return f"P {one(split['prefill'])} D {one(split['decode'])}"


def fmt_aic(best: Json | None, gpus: int) -> str:
    if not best:
        return "none"
    per = int(best["tp"]) * int(best["pp"]) * int(best["dp"])
    ep = f" ep{best['moe_ep']}" if best.get("moe_ep") not in (None, 1) else ""
    etp = f" etp{best['moe_tp']}" if best.get("moe_tp") not in (None, 1) and ep else ""
    dp = f" dpa{best['dp']}" if int(best["dp"]) > 1 else ""
    pp = f" pp{best['pp']}" if int(best["pp"]) > 1 else ""
    return f"tp{best['tp']}{pp}{ep}{etp}{dp} x{gpus // per} bs{best['bs']}"


def fmt_point(p: Json | None) -> str:
    if not p:
        return "-"
    if not p["scored"]:
        return "n/a"
    if p["ttftMs"] is None:
        return "OOM MISS"
    return (f"{p['ttftMs']:.0f}/{p['tpotMs']:.1f} {p['tokSPerGpu']:.0f}"
            f" {'ok' if p['meetsSlo'] else 'MISS'}")


def report(rows: list[Json]) -> str:
    head = (f"{'scenario':38} {'SLO ms':>9} {'parc layout':24} {'parc':>6} {'aic(parc@bs) TTFT/TPOT tok/s/GPU':>33} "
            f"{'aic(parc@load)':>22} {'aic best agg':26} {'aic':>6} {'disagg':>6} {'regret':>6} {'parc s':>6} {'aic s':>6}")
    out = [head, "-" * len(head)]
    for r in rows:
        s = r["scenario"]
        gpus = s["nodes"] * s["gpus_per_node"]
        lay = r.get("parc")
        split = r.get("parcDisagg")
        best = r.get("aicBest")
        dis = r.get("aicDisaggBest")
        regret = r.get("regret")
        out.append(
            f"{s['name']:38} {s['ttft_ms']:>4.0f}/{s['tpot_ms']:<4.0f} "
            f"{(fmt_parc(lay) if lay else fmt_split(split) if split else 'infeasible'):24} "
            f"{r.get('parcTokSPerGpu', (split or {}).get('predictedTokSPerGpu', 0)):>6.0f} "
            f"{fmt_point(r.get('atMaxNumSeqs')):>33} {fmt_point(r.get('atPlannedLoad')):>22} "
            f"{fmt_aic(best, gpus):26} {(best or {}).get('tokens/s/gpu_cluster', 0) or 0:>6.0f} "
            f"{(dis or {}).get('tokens/s/gpu_cluster', 0) or 0:>6.0f} "
            f"{('n/a' if regret is None else f'{regret * 100:.0f}%'):>6} {r['parcSeconds']:>6.2f} {r['aicSeconds']:>6.1f}")
    scored = [r for r in rows if r.get("regret") is not None]
    misses = [r for r in scored if not r.get("atMaxNumSeqs", {}).get("meetsSlo", False)]
    planned = [r for r in rows if r.get("atPlannedLoad", {}).get("scored")]
    planned_miss = [r for r in planned if not r["atPlannedLoad"]["meetsSlo"]]
    parc_t = sum(r["parcSeconds"] for r in rows)
    aic_t = sum(r["aicSeconds"] for r in rows)
    checks = [abs(r["aicSelfCheck"]) for r in rows if r.get("aicSelfCheck") is not None]
    out += ["",
            f"mean regret at parc's maxNumSeqs: {statistics.mean(r['regret'] for r in scored) * 100:.1f}% "
            f"over {len(scored)} scored scenarios (target <= 10%)" if scored else "no scenario scored",
            f"parc batches missing the SLO (or KV capacity) under aiconfigurator: {len(misses)} of {len(scored)}"
            + (f" ({', '.join(r['scenario']['name'] for r in misses)})" if misses else ""),
            f"at parc's planned load instead: {len(planned_miss)} of {len(planned)} miss",
            f"not scored: {', '.join(r['scenario']['name'] for r in rows if r.get('regret') is None) or 'none'}",
            f"wall time: parc {parc_t:.1f} s, aiconfigurator {aic_t:.1f} s; parc/aic = {parc_t / aic_t:.3f} "
            f"(target <= 0.1)" if aic_t else "",
            f"aiconfigurator self-check (cli_estimate of its own best vs the search): max |dev| "
            f"{max(checks) * 100:.2f}%" if checks else ""]
    near = [r for r in rows if r.get("nearestMeasurement")]
    if near:
        out += ["", "nearest published measurement of parc's layout (same model, precision, GPU, tp/pp/attention DP; "
                    "closest batch and lengths): measured TPOT against each tool's prediction for that row"]
        closer = 0
        for r in near:
            n = r["nearestMeasurement"]
            pe = None if n["parcTpotMs"] is None else n["parcTpotMs"] / n["tpotMs"] - 1
            ae = None if n["aicTpotMs"] is None else n["aicTpotMs"] / n["tpotMs"] - 1
            if pe is not None and ae is not None and abs(pe) < abs(ae):
                closer += 1
            fmt = (lambda e: "n/a" if e is None else f"{e * 100:+.0f}%")
            out.append(f"  {r['scenario']['name']:38} {n['id'][:44]:44} {n['engine']:7} {n['inputTokens']}/{n['outputTokens']}"
                       f" at {n['concurrency']:.0f} (parc batch {r['parc']['maxNumSeqs']}): measured {n['tpotMs']:.1f} ms, "
                       f"parc {fmt(pe)}, aiconfigurator {fmt(ae)}")
        out.append(f"  parc closer to the measurement in {closer} of {len(near)}")
    out.append("columns: parc = parc's own predicted tok/s/GPU at its planned load; aic(...) = TTFT ms/TPOT ms "
               "tok/s/GPU under aiconfigurator (at maxNumSeqs per rank / at the planned load); "
               "aic = its best aggregated tok/s/GPU, disagg = its best disaggregated; times are wall clock")
    return "\n".join(out)


#: Corpus keys -> aiconfigurator's names, for scoring the published online rows (``--measured``).
AIC_SYSTEMS = {"H100-SXM-80GB": "h100_sxm", "H200-SXM-141GB": "h200_sxm", "B200-SXM-180GB": "b200_sxm"}
AIC_MODELS = {("deepseek-r1", "fp8"): "deepseek-ai/DeepSeek-R1", ("qwen3-235b-a22b", "bf16"): "Qwen/Qwen3-235B-A22B",
              ("qwen3-235b-a22b", "fp8"): "Qwen/Qwen3-235B-A22B-FP8", ("gpt-oss-120b", "fp4"): "openai/gpt-oss-120b",
              ("llama-3.1-70b", "bf16"): "meta-llama/Meta-Llama-3.1-70B",
              ("llama-3.1-8b", "bf16"): "meta-llama/Meta-Llama-3.1-8B"}


def _med(v: list[float]) -> str:
    """Median absolute relative error and the bias (median signed error) of ``v``, as a percent."""
    return f"{statistics.median(abs(x) for x in v) * 100:.0f}% (bias {statistics.median(v) * 100:+.0f}%)" if v else "-"


def measured(aic_python: str, tmp: Path) -> str:
    """The published online rows (TTFT/TPOT measured at a fixed concurrency) that aiconfigurator
    has data for, each predicted by aiconfigurator (its estimate of the row's layout at the row's
    batch per rank) and by parc (the built-in calibration, as accuracy.py does): where the two
    tools disagree, the measurement decides. Prints one line per row and the median errors."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from accuracy import HELD_OUT, split

    from parc import calibrate as c

    cal_rows, held, _ = split()
    rows = [r for r in cal_rows + held if r.concurrency and r.tpot_ms and r.engine in ("trtllm", "vllm", "sglang")
            and r.gpu.key in AIC_SYSTEMS and (r.arch.key, r.precision) in AIC_MODELS and r.shape.pp == 1]
    items = [measured_item(r) for r in rows]
    scored, seconds = run_worker(aic_python, "score", {"items": items}, tmp, "measured")
    results = scored.get("items") or [{"error": scored.get("error", "no result")}] * len(items)
    lines = [f"{'row':48} {'split':9} {'conc':>5}  TPOT ms: measured   aic  parc   tok/s: measured     aic    parc"
             f"   TTFT ms: measured    aic   parc"]
    # (model kind, split) -> errors (predicted / measured - 1) of TPOT, tokens/s and TTFT for both tools
    err: dict[tuple[str, str], dict[str, list[float]]] = {}
    for r, res in zip(rows, results):
        p = c.predict(r, None)
        split_name = "held-out" if r.source in HELD_OUT else "calibr."
        if "error" in res or p is None:
            lines.append(f"{r.id[:48]:48} {split_name:9} {r.concurrency:5.0f}  not scored: "
                         f"{res.get('error', 'parc: does not fit')[:80]}")
            continue
        aic_tok = float(res["tokens/s"]) * r.replicas
        for key in ((c.model_kind(r.arch), split_name), ("all", split_name), ("all", "all")):
            e = err.setdefault(key, {k: [] for k in ("aic tpot", "parc tpot", "aic tok/s", "parc tok/s",
                                                     "aic ttft", "parc ttft")})
            e["aic tpot"].append(float(res["tpot"]) / r.tpot_ms - 1)
            e["parc tpot"].append(p.tpot_ms / r.tpot_ms - 1)
            e["aic tok/s"].append(aic_tok / r.measured - 1)
            e["parc tok/s"].append(p.throughput / r.measured - 1)
            if r.ttft_ms:
                e["aic ttft"].append(float(res["ttft"]) / r.ttft_ms - 1)
                e["parc ttft"].append(p.ttft_ms / r.ttft_ms - 1)
        ttft = f"   {r.ttft_ms:15.0f} {float(res['ttft']):6.0f} {p.ttft_ms:6.0f}" if r.ttft_ms else ""
        lines.append(f"{r.id[:48]:48} {split_name:9} {r.concurrency:5.0f}  {r.tpot_ms:14.1f} {float(res['tpot']):5.1f} "
                     f"{p.tpot_ms:5.1f}   {r.measured:14.0f} {aic_tok:7.0f} {p.throughput:7.0f}{ttft}")

    lines.append(f"\nmedian |error| against the measurements (aiconfigurator {seconds:.0f} s; parc's 'calibr.' rows "
                 "were fitted on, its 'held-out' ones not):")
    for (kind, split_name), e in sorted(err.items()):
        lines.append(f"  {kind:5} {split_name:9} {len(e['aic tpot']):4d} rows  TPOT: aiconfigurator {_med(e['aic tpot'])}, "
                     f"parc {_med(e['parc tpot'])}   tokens/s: aiconfigurator {_med(e['aic tok/s'])}, "
                     f"parc {_med(e['parc tok/s'])}   TTFT ({len(e['aic ttft'])} rows): aiconfigurator "
                     f"{_med(e['aic ttft'])}, parc {_med(e['parc ttft'])}")
    return "\n".join(lines)


#: aiconfigurator's name for the MoE checkpoints of the offline rows (``--offline``): the measured
#: precision must be the one aiconfigurator's bundled config quantizes to.
AIC_OFFLINE_MODELS = {**{k: v for k, v in AIC_MODELS.items() if k[0] in ("deepseek-r1", "qwen3-235b-a22b", "gpt-oss-120b")},
                      ("qwen3-235b-a22b", "fp4"): "nvidia/Qwen3-235B-A22B-NVFP4"}
#: Batches per rank at which aiconfigurator is asked for an offline row's throughput: its best over
#: them (within its KV capacity) is its prediction of the row's maximum.
OFFLINE_BATCHES = (32, 64, 128, 256, 512, 1024, 2048)


def moe_splits(r: Any) -> list[tuple[int, int]]:
    """(moe_ep, moe_tp) for a measured MoE row: its EP when printed, else both EP and expert TP
    over the whole group (a performance table that does not print EP leaves it open; the best of
    the two is aiconfigurator's most generous reading)."""
    width = r.shape.tp * r.shape.dpa
    if r.shape.ep > 1:
        return [(r.shape.ep, width // r.shape.ep)]
    return [(width, 1), (1, width)] if width > 1 else [(1, 1)]


def offline(aic_python: str, tmp: Path) -> str:
    """The published offline (maximum-throughput) rows of MoE models that aiconfigurator has
    data for (TensorRT-LLM's performance overview), each predicted by both tools as their best
    output tokens/s within the batch the row ran and their own KV capacity: aiconfigurator over
    OFFLINE_BATCHES per rank up to the row's batch and the batch itself, and the row's possible
    expert layouts; parc as accuracy.py does. The tables print no batch; the corpus's
    `max_batch_size` is `trtllm-bench`'s own choice, derived from its heuristic
    (trtllm_bench_batch.py), and a row without one is scored over all of OFFLINE_BATCHES."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from accuracy import HELD_OUT, split

    from parc import calibrate as c

    cal_rows, held, _ = split()
    rows = [r for r in cal_rows + held if not r.concurrency and r.engine == "trtllm" and r.gpu.key in AIC_SYSTEMS
            and (r.arch.key, r.precision) in AIC_OFFLINE_MODELS and r.shape.pp == 1]
    items, owner = [], []
    for i, r in enumerate(rows):
        batches = sorted({b for b in OFFLINE_BATCHES if not r.max_batch or b < r.max_batch}
                         | ({r.max_batch} if r.max_batch else set()))
        for ep, mtp in moe_splits(r):
            for b in batches:
                items.append({"model": AIC_OFFLINE_MODELS[(r.arch.key, r.precision)], "system": AIC_SYSTEMS[r.gpu.key],
                              "backend": "trtllm", "isl": r.input_tokens, "osl": r.output_tokens, "tp": r.shape.tp,
                              "pp": 1, "dp": r.shape.dpa, "batch": b, "ctxTokens": c.BATCHED_TOKENS,
                              "moeEp": ep, "moeTp": mtp})
                owner.append(i)
    scored, seconds = run_worker(aic_python, "score", {"items": items}, tmp, "offline")
    results = scored.get("items") or [{"error": scored.get("error", "no result")}] * len(items)
    best: dict[int, Json] = {}
    for i, item, res in zip(owner, items, results):
        if "error" in res or res.get("kvCacheWarning") or res.get("tokens/s") is None:
            continue
        if i not in best or float(res["tokens/s"]) > float(best[i]["tokens/s"]):
            best[i] = {**res, "moeEp": item["moeEp"], "batch": item["batch"]}
    lines = [f"{'row':26} {'model':15} {'GPU':5} {'split':9} {'layout':16} {'ISL/OSL':>11}  tok/s: measured   "
             "aiconfigurator (at bs, ep)      parc"]
    err: dict[tuple[str, str], dict[str, list[float]]] = {}
    for i, r in enumerate(rows):
        p = c.predict(r, None)
        split_name = "held-out" if r.source in HELD_OUT else "calibr."
        lay = f"tp{r.shape.tp} ep{r.shape.ep or '?'} dpa{r.shape.dpa}"
        name = f"{r.id[-26:]:26} {r.arch.key[:15]:15} {r.gpu.key[:5]:5}"
        if i not in best or p is None:
            lines.append(f"{name} {split_name:9} {lay:16} {r.input_tokens:>5}/{r.output_tokens:<5}  not scored: "
                         + ("aiconfigurator: no batch fits or no data" if i not in best else "parc: does not fit"))
            continue
        b = best[i]
        aic_tok = float(b["tokens/s"]) * r.replicas
        for key in ((r.arch.key, split_name), ("all MoE", split_name), ("all MoE", "all")):
            e = err.setdefault(key, {"aic": [], "parc": []})
            e["aic"].append(aic_tok / r.measured - 1)
            e["parc"].append(p.throughput / r.measured - 1)
        lines.append(f"{name} {split_name:9} {lay:16} {r.input_tokens:>5}/{r.output_tokens:<5}  "
                     f"{r.measured:14.0f} {aic_tok:16.0f} (bs{b['batch']:>4}, ep{b['moeEp']}) {p.throughput:9.0f}")

    lines.append(f"\nmedian |error| of the maximum output tokens/s against the measurements (aiconfigurator {seconds:.0f} s, "
                 f"{len(items)} estimates; parc's 'calibr.' rows were fitted on, its 'held-out' ones not):")
    for (model, split_name), e in sorted(err.items()):
        below = sum(x < 0 for x in e["aic"])
        lines.append(f"  {model:16} {split_name:9} {len(e['aic']):4d} rows  aiconfigurator {_med(e['aic'])}, "
                     f"parc {_med(e['parc'])}; aiconfigurator's best below the measurement in {below}")
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--json", type=Path, help="write the rows to this file")
    ap.add_argument("--only", nargs="*", default=None, help="scenario names (substring match)")
    ap.add_argument("--disaggregation", choices=("off", "auto"), default="off",
                    help="auto: parc may choose a disaggregated plan (engines that deploy one); a disaggregated "
                         "choice is scored with aiconfigurator's disaggregated model against its best of either mode")
    ap.add_argument("--measured", action="store_true",
                    help="instead of the scenarios: both tools against the published online rows aiconfigurator "
                         "has data for (measured TPOT, tokens/s and TTFT at a fixed concurrency)")
    ap.add_argument("--offline", action="store_true",
                    help="instead of the scenarios: both tools against the published offline (maximum-throughput) "
                         "MoE rows aiconfigurator has data for (TensorRT-LLM's tables, larger batches than the online "
                         "rows)")
    ap.add_argument("--aic-python", default=str(REPO / ".venv-aic" / "bin" / "python"),
                    help="python of the venv with aiconfigurator (default .venv-aic/bin/python)")
    args = ap.parse_args()
    if not Path(args.aic_python).exists():
        print(f"{args.aic_python} not found; set it up with:\n  python3 -m venv .venv-aic && .venv-aic/bin/pip "
              "install -r tests/benchmarks/requirements-aiconfigurator.txt", file=sys.stderr)
        return 2
    if args.measured or args.offline:
        with tempfile.TemporaryDirectory(prefix="parc-aic-") as tmpdir:
            print((measured if args.measured else offline)(args.aic_python, Path(tmpdir)))
        return 0
    chosen = [s for s in SCENARIOS if not args.only or any(o in s.name for o in args.only)]
    rows = []
    with tempfile.TemporaryDirectory(prefix="parc-aic-") as tmpdir:
        for s in chosen:
            print(f"... {s.name}", file=sys.stderr, flush=True)
            rows.append(compare(s, args.aic_python, Path(tmpdir), args.disaggregation))
    print(report(rows))
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
