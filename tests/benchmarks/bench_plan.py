#!/usr/bin/env python3
"""Solver speed: `parc plan` end to end (fresh interpreter each run) on generated specs.

Targets: a single-pool spec under 0.3 s including interpreter start-up; 64 pools, and 8 pools
x 4,096 GPUs, under 2 s end to end for every objective (and with engine.disaggregation: auto,
which costs prefill/decode splits beside the aggregated placements). Also prints how solve time grows with
GPU and pool count. Usage: python tests/benchmarks/bench_plan.py [--runs N]

Every `parc` process runs as an installed parc does: with its bytecode written (pip compiles
it at install). An environment that sets PYTHONDONTWRITEBYTECODE (this one's shell does) would
otherwise make every run compile parc's sources again, about 0.1 s of each plan; the script
compiles them once and runs its processes without that variable.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

#: the environment of every timed process: bytecode as an installed parc has it (see above)
ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}

GPUS = ["H100-SXM-80GB", "H200-SXM-141GB", "A100-SXM-80GB", "B200-SXM-180GB", "MI300X-OAM-192GB",
        "L40S-48GB", "A100-PCIE-80GB", "H100-PCIE-80GB"]


def spec(model: str, pools: int, gpus: int, objective: str, concurrency: int | None,
         disaggregation: str = "off") -> dict:
    per_pool_nodes = max(1, gpus // pools // 8)
    workload = {"inputTokens": 2000, "outputTokens": 500}
    if concurrency:
        workload["concurrency"] = concurrency
    extra = {"engine": {"name": "vllm", "disaggregation": disaggregation}} if disaggregation != "off" else {}
    return {
        **extra,
        "apiVersion": "parc.dev/v1alpha1", "kind": "ServingSpec", "metadata": {"name": "bench"},
        "model": {"id": model, "maxContextLength": 8192}, "workload": workload,
        "slo": {"objective": objective, "tpotMs": 100},
        "cluster": {"pools": [{"name": f"p{i}", "gpu": GPUS[i % len(GPUS)], "nodes": per_pool_nodes, "gpusPerNode": 8,
                               "interNode": "infiniband"} for i in range(pools)]},
    }


def time_plan(doc: dict, runs: int) -> tuple[float, float]:
    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / "spec.yaml"
        p.write_text(json.dumps(doc))
        times = []
        for _ in range(runs):
            t = time.perf_counter()
            r = subprocess.run([sys.executable, "-m", "parc", "plan", str(p), "--format", "json"], capture_output=True,
                               env=ENV)
            times.append(time.perf_counter() - t)
            if r.returncode not in (0, 3):
                raise SystemExit(r.stderr.decode())
        # in-process solve time (no interpreter start-up, no imports)
        from parc.resolve import load_and_resolve
        from parc.solver import solve

        res = load_and_resolve(p)
        t = time.perf_counter()
        try:
            solve(res)
        except Exception:
            pass
        solve_s = time.perf_counter() - t
    return statistics.median(times), solve_s


def import_time_ms() -> float:
    """Cumulative import time of parc.cli (what `parc --help` pays), from -X importtime."""
    r = subprocess.run([sys.executable, "-X", "importtime", "-c", "import parc.cli"], capture_output=True, text=True,
                       env=ENV)
    for line in r.stderr.splitlines():
        if line.rstrip().endswith("| parc.cli"):
            return int(line.split("|")[1]) / 1000
    raise SystemExit("parc.cli not in the import-time report")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args()
    import parc

    subprocess.run([sys.executable, "-m", "compileall", "-q", str(Path(parc.__file__).parent)], check=True, env=ENV)
    base = []
    for _ in range(args.runs):
        t = time.perf_counter()
        subprocess.run([sys.executable, "-c", "pass"], check=True, env=ENV)
        base.append(time.perf_counter() - t)
    print(f"interpreter start-up alone: {statistics.median(base) * 1e3:.0f} ms ({sys.executable}); "
          f"`parc --help` import time: {import_time_ms():.0f} ms (target < 150 ms)")
    print("(run from a fresh venv with only parc installed for user-like numbers: a crowded site-packages "
          "adds its .pth imports to every start)\n")
    rows = [
        ("single pool, 8B dense, 8 GPUs (target < 0.3 s)", spec("meta-llama/Llama-3.1-8B-Instruct", 1, 8, "latency", 64)),
        ("single pool, 70B dense, 16 GPUs", spec("meta-llama/Llama-3.1-70B-Instruct", 1, 16, "latency", 64)),
    ]
    for pools, gpus in ((64, 512), (8, 4096)):
        for objective, conc in (("throughput", None), ("latency", 1024), ("cost", 1024)):
            rows.append((f"{pools} pools, {gpus} GPUs, Qwen3-235B MoE, {objective}"
                         + (f" @ {conc}" if conc else "") + " (target < 2 s)",
                         spec("Qwen/Qwen3-235B-A22B", pools, gpus, objective, conc)))
        for objective, conc in (("throughput", None), ("latency", 1024)):
            rows.append((f"{pools} pools, {gpus} GPUs, Qwen3-235B MoE, vLLM, disaggregation auto, {objective}"
                         + (f" @ {conc}" if conc else "") + " (target < 2 s)",
                         spec("Qwen/Qwen3-235B-A22B", pools, gpus, objective, conc, "auto")))
    print(f"{'case':90} {'plan end-to-end':>16} {'solve':>9}")
    for name, doc in rows:
        e2e, solve_s = time_plan(doc, args.runs)
        print(f"{name:90} {e2e * 1e3:13.0f} ms {solve_s * 1e3:6.0f} ms")
    print("\nscaling (Qwen3-235B MoE, latency @ 1024): solve time by pools x GPUs")
    for pools in (1, 8, 64):
        line = []
        for gpus in (64, 512, 4096):
            _, s = time_plan(spec("Qwen/Qwen3-235B-A22B", pools, gpus, "latency", 1024), 1)
            line.append(f"{gpus:5d} GPUs {s * 1e3:7.0f} ms")
        print(f"  {pools} pools: " + " | ".join(line))


if __name__ == "__main__":
    main()
