"""parc's disaggregated load model against published prefill-only and decode-only measurements
(tests/benchmarks/data/disaggregated.csv: each row one phase's instance measured alone, with
its layout, lengths and batch, and the source).

    python tests/benchmarks/disaggregated_evidence.py            # the table and the errors
    python tests/benchmarks/disaggregated_evidence.py --json     # the same as JSON

For a prefill row parc predicts the input tokens/s of a saturated prefill instance
(:func:`parc.costmodel.prefill_service`, the chunk budget the row gives per GPU); for a decode row
the output tokens/s of a decode-only instance at the row's batch and KV length
(:func:`parc.costmodel.decode_only`). Nothing here is fitted: these rows are held out, and the
plan's error band for disaggregated plans ("disaggregated" class, few measurements) must cover
what this prints (tests/test_disaggregation.py checks it).
"""

from __future__ import annotations

import csv
import json
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

from parc import catalog
from parc import costmodel as cm
from parc.catalog import assumed_checkpoint
from parc.engines import ENGINES
from parc.resolve import ResolvedPool

DATA = Path(__file__).resolve().parent / "data" / "disaggregated.csv"


@dataclass(frozen=True)
class Scored:
    id: str
    phase: str
    layout: str
    measured: float  # tokens/s per node (input for prefill, output for decode)
    predicted: float

    @property
    def error(self) -> float:
        return self.predicted / self.measured - 1


def rows() -> list[dict[str, str]]:
    with open(DATA, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def predict(r: dict[str, str]) -> Scored:
    gpu = catalog.gpus().get(r["gpu"])
    arch = catalog.models().get(r["model"])
    nodes, per_node = int(r["nodes"]), int(r["gpus_per_node"])
    engine = r["engine"] if r["engine"] in ENGINES else "vllm"
    pool = ResolvedPool(0, "bench", gpu, nodes, per_node, gpu.intra_node_default,
                        min(gpu.nvlink_domain, per_node) if gpu.intra_node_default == "nvlink" else 0,
                        "infiniband" if nodes > 1 else "none", 400.0 if nodes > 1 else 0.0, "none", ())
    f = cm.factors(gpu, engine)
    ckpt = assumed_checkpoint("", arch.key, r["precision"], "published row")
    shape = cm.Shape(int(r["tp"]), 1, int(r["ep"]), int(r["dp_attention"]))
    if r["phase"] == "prefill":
        inp = int(r["input_tokens"])
        ctx = cm.Context(arch, pool, ckpt, r["precision"] if r["precision"] == "fp8" else "auto", engine, "native", f,
                         inp, 1)
        sv = cm.prefill_service(cm.prepare(ctx, shape, int(r["prefill_tokens_per_gpu"])))
        value = sv.rate * inp / nodes
    else:
        context = int(r["context_tokens"])
        ctx = cm.Context(arch, pool, ckpt, r["precision"] if r["precision"] == "fp8" else "auto", engine, "native", f,
                         context, 1)
        load = int(r["batch_per_gpu"]) * shape.gpus
        tpot, _, _ = cm.decode_only(cm.prepare(ctx, shape, 2048), load)
        value = load / tpot / nodes
    layout = f"{nodes} x {per_node} {gpu.key}, tp={shape.tp} ep={shape.ep} dpAttention={shape.dpa}"
    return Scored(r["id"], r["phase"], layout, float(r["measured_tokens_per_s_per_node"]), value)


def evidence() -> list[Scored]:
    return [predict(r) for r in rows()]


def main(argv: list[str]) -> int:
    scored = evidence()
    if "--json" in argv:
        print(json.dumps([{**asdict(s), "error": round(s.error, 4)} for s in scored], indent=2))
        return 0
    print(f"{'row':28} {'phase':8} {'layout':44} {'measured':>10} {'parc':>10} {'error':>7}")
    for s in scored:
        print(f"{s.id:28} {s.phase:8} {s.layout:44} {s.measured:10.0f} {s.predicted:10.0f} {s.error * 100:+6.0f}%")
    worst = max(abs(s.error) for s in scored)
    print(f"\n{len(scored)} published rows (tokens/s per node); largest error {worst * 100:.0f}%")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
