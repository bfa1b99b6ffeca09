#!/usr/bin/env python3
"""The batch `trtllm-bench` ran for TensorRT-LLM's performance-overview rows (the corpus's
`max_batch_size` column), derived from each row's model, GPU, layout and lengths.

The overview tables print the maximum throughput and not the batch it ran at. `trtllm-bench`
sets `max_batch_size` itself when the command line gives none, and none of the pages
(v0.15-v1.2) passes one: a heuristic estimates how many requests of the dataset's
input + output length the KV cache holds and rounds that up. parc predicts a table row at the
load that maximises throughput within the engine's limits, so without this column it took
the KV cache's maximum, which for MLA models is about 4 times the batch the benchmark ran (the
heuristic sizes every model's cache as multi-head attention).

What the heuristic does (NVIDIA/TensorRT-LLM `tensorrt_llm/bench/build/tuning.py`,
`calc_engine_setting` and `finetune_setting`, read at 04cba882084a and a7e572fb20c6; called from
`bench/build/build.py` and, for the PyTorch backend of 1.x, `bench/benchmark/utils/general.py`
`get_settings` when `--max_batch_size` and `--max_num_tokens` are not both given):

- KV bytes per token = 2 x layers x max(tp, num_key_value_heads) x head_size x KV bytes, with
  head_size the config's `head_dim`, else hidden_size / num_attention_heads (56 for
  DeepSeek-R1, whose config has neither a head_dim nor a KV-head count below 128);
- memory = the device's total (NVML) x tp x pp, less the engine: the parameter count x bytes
  per parameter;
- requests = 0.95 x (memory - engine) / (KV bytes per token x (input + output));
- batch = min(requests, 4096) / pp, rounded up to a multiple of 32 (at least 64) below 256,
  of 128 below 1024, else of 256.

Per release:
- 0.15 and 0.17 (TensorRT engines, `trtllm-bench build`): bytes per parameter and per KV
  element 1 for FP8 rows, else 2, and the engine size in 10^9 bytes taken as GiB;
- 1.0-1.2 (PyTorch backend): bytes per parameter by the checkpoint's quantization (FP8 and FP8
  block scales 1, NVFP4 0.5 of a parameter count that counts two packed FP4 values as one
  element, so 0.25 per parameter; fixed by NVIDIA/TensorRT-LLM PR #13498 after these releases),
  KV bytes 1 where the page's options (or the checkpoint) set an FP8 KV cache, else 2; an
  MXFP4 checkpoint is not a quantization the heuristic tunes, so the default batch (2048) holds;
  with attention DP the batch is per rank (ai-dynamo/dynamo PR #11982 traced it in 1.1.0rc5).
- 0.13 and 0.14 read a per-model table shipped with the release (`benchmark_config.yml`)
  that is not recoverable here: their rows keep an empty column (the KV cache's maximum).

Approximations, each stated in SOURCES.md: the device total is the catalog's CUDA-visible
memory (NVML's total differs by under 1%); the parameter count is the catalog's published one
(the safetensors count adds DeepSeek-R1's 14B multi-token-prediction module: 2% more engine).

    python tests/benchmarks/trtllm_bench_batch.py            # list the rows and batches
    python tests/benchmarks/trtllm_bench_batch.py --write    # fill published.csv's column
    python tests/benchmarks/trtllm_bench_batch.py --check    # exit 1 if the column is stale
"""

from __future__ import annotations

import argparse
import csv
import io
import math
import sys
from pathlib import Path

from parc import calibrate as c

CORPUS = Path(__file__).resolve().parent / "data" / "published.csv"
COLUMN = "max_batch_size"
#: source -> the heuristic's generation (see the module docstring)
RELEASES = {"trtllm-perf-v0.15": "engine", "trtllm-perf-v0.17": "engine", "trtllm-perf-v1.0": "pytorch",
            "trtllm-perf-v1.1dev": "pytorch", "trtllm-perf-v1.2": "pytorch"}
KV_FRACTION = 0.95
DEFAULT_BATCH = 2048  # BuildConfig.max_batch_size: the batch of a quantization the heuristic does not tune
GIB = 1024**3


def _round_up(raw: float) -> int:
    if raw < 256:
        return max(64, 32 * math.ceil(raw / 32))
    if raw < 1024:
        return 128 * math.ceil(raw / 128)
    return 256 * math.ceil(raw / 256)


def bench_batch(row: c.Row) -> int | None:
    """The `max_batch_size` trtllm-bench set for a row of the sources in RELEASES (per
    attention-DP rank and pipeline micro-batch), or None where it is not derived."""
    gen = RELEASES.get(row.source)
    if gen is None or row.concurrency is not None or row.engine != "trtllm":
        return None
    arch, shape = row.arch, row.shape
    tp, pp = shape.tp * shape.dpa, shape.pp
    params = arch.published_params_b * 1e9
    if gen == "engine":
        wbytes = kvbytes = 1.0 if row.precision == "fp8" else 2.0
        engine_gib = params / 1e9 * wbytes
    else:
        if row.checkpoint is not None and row.checkpoint.format == "mxfp4":
            return DEFAULT_BATCH
        wbytes = {"fp8": 1.0, "fp4": 0.25}.get(row.precision, 2.0)
        kvbytes = 1.0 if row.kv == "fp8" else 2.0
        engine_gib = params * wbytes / GIB
    total_gib = row.gpu.memory_bytes / GIB * tp * pp
    per_token_gib = 2 * arch.num_hidden_layers * max(tp, arch.num_key_value_heads) * arch.head_dim * kvbytes / GIB
    requests = KV_FRACTION * (total_gib - engine_gib) / (per_token_gib * (row.input_tokens + row.output_tokens))
    if requests < 1:
        return None
    return _round_up(min(requests, 4096) / pp)


def derived(rows: list[c.Row] | None = None) -> dict[str, int]:
    """Row id -> batch for the corpus's rows (``rows``, read from it when not given)."""
    rows = c.read_rows(CORPUS)[0] if rows is None else rows
    return {r.id: b for r in rows if (b := bench_batch(r)) is not None}


def rewritten(batches: dict[str, int]) -> str:
    """published.csv with the column filled from ``batches`` (added after `concurrency` if new)."""
    src = CORPUS.read_text(encoding="utf-8")
    table = list(csv.reader(io.StringIO(src, newline="")))
    header = table[0]
    if COLUMN not in header:
        at = header.index("concurrency") + 1
        table = [r[:at] + [COLUMN if i == 0 else ""] + r[at:] for i, r in enumerate(table)]
        header = table[0]
    col, ident = header.index(COLUMN), header.index("id")
    for r in table[1:]:
        r[col] = str(batches[r[ident]]) if r[ident] in batches else ""
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerows(table)
    return out.getvalue()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--write", action="store_true", help="fill published.csv's max_batch_size column")
    ap.add_argument("--check", action="store_true", help="exit 1 if the column differs from the derivation")
    args = ap.parse_args()
    rows, _ = c.read_rows(CORPUS)
    batches = derived(rows)
    text = rewritten(batches)
    if args.check:
        stale = text != CORPUS.read_text(encoding="utf-8")
        print(f"{CORPUS.name}: {COLUMN} {'is stale: run with --write' if stale else 'is current'} "
              f"({len(batches)} rows derived)")
        return 1 if stale else 0
    if args.write:
        CORPUS.write_text(text, encoding="utf-8")
        print(f"wrote {COLUMN} for {len(batches)} rows of {CORPUS}")
        return 0
    for r in rows:
        if r.id in batches:
            print(f"{r.id:28s} {r.arch.key:22s} {r.gpu.key:16s} tp{r.shape.tp} pp{r.shape.pp} dpa{r.shape.dpa} "
                  f"{r.precision}/{r.kv} {r.input_tokens}/{r.output_tokens}: {batches[r.id]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
