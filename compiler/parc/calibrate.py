"""Cost-model fidelity: predict measured serving results, report the error, fit the
efficiency factors (``parc calibrate``).

Input rows use the benchmark-corpus CSV format (tests/benchmarks/data/published.csv; the
README documents the columns). Each row is a placement (model, GPU, tp/pp/ep, attention
DP, replicas), a workload (input/output tokens, concurrency or offline) and what was
measured (output tokens/s in total or per GPU, TTFT, TPOT). Offline rows are predicted at
the load that maximises throughput within memory; fixed-concurrency rows at their load.
"""

from __future__ import annotations

import csv
import hashlib
import math
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from parc import catalog
from parc.catalog import Checkpoint, assumed_checkpoint
from parc import costmodel as cm
from parc.engines import ENGINES, capabilities
from parc.errors import UsageError
from parc.resolve import ResolvedPool

CALIBRATION_KIND = "Calibration"
PARAMS = ("compute", "memory_bandwidth")  # per GPU family
COLLECTIVES = ("nvlink", "pcie", "pcie_cross_socket", "network")
BATCHED_TOKENS = 8192


@dataclass(frozen=True)
class Row:
    """One measured result, resolved against the catalogs."""

    id: str
    source: str
    engine: str
    arch: catalog.ModelArch
    gpu: catalog.GpuSpec
    precision: str
    kv: str
    gpus: int
    nodes: int
    shape: cm.Shape
    replicas: int
    input_tokens: int
    output_tokens: int
    concurrency: float | None
    measured: float  # output tokens/s of the whole deployment
    per_gpu: bool  # the source printed per-GPU throughput
    ttft_ms: float | None
    tpot_ms: float | None
    checkpoint: Checkpoint | None = None  # the catalog checkpoint measured (else the precision's usual one)
    max_batch: int | None = None  # the engine's batch limit per data-parallel rank and micro-batch, if known

    @property
    def family(self) -> str:
        return self.gpu.family


def _f(x: str) -> float | None:
    try:
        return float(x) if x not in ("", None) else None
    except ValueError:
        return None


_INT_COLUMNS = {"tp": 4096, "pp": 1024, "ep": 4096, "replicas": 1 << 20, "gpu_count": 1 << 20, "nodes": 1 << 17,
                "input_tokens": 1 << 24, "output_tokens": 1 << 24, "max_batch_size": 1 << 20}
_FLOAT_COLUMNS = ("concurrency", "output_tokens_per_s", "output_tokens_per_s_per_gpu", "ttft_ms", "tpot_ms")


def _typed(path: Path, header: list[str], line: int, r: dict[str, str]) -> list[str]:
    """Located problems with a row's numbers (``file:line:column: column: what``): integer
    columns hold positive integers, measurement columns positive finite numbers; empty means
    'not given'."""
    out = []
    for col, top in _INT_COLUMNS.items():
        v = (r.get(col) or "").strip()
        if not v:
            continue
        f = _f(v)
        if f is None or not math.isfinite(f) or f != int(f) or not 1 <= f <= top:
            out.append(f"{path}:{line}:{header.index(col) + 1}: {col}: {v!r} is not an integer from 1 to {top}")
    for col in _FLOAT_COLUMNS:
        v = (r.get(col) or "").strip()
        if not v or col not in header:
            continue
        f = _f(v)
        if f is None or not math.isfinite(f) or f <= 0:
            out.append(f"{path}:{line}:{header.index(col) + 1}: {col}: {v!r} is not a positive number")
    return out


def read_rows(path: Path) -> tuple[list[Row], dict[str, int]]:
    """Rows parc can predict, and counts of the rows skipped by reason. A malformed number is a
    UsageError listing every such cell with its file:line:column."""
    skipped: dict[str, int] = {}

    def skip(why: str) -> None:
        skipped[why] = skipped.get(why, 0) + 1

    import io

    from parc.files import InputError, read_bounded

    rows: list[Row] = []
    try:
        fh = io.StringIO(read_bounded(path, 64 << 20).decode("utf-8"), newline="")
    except InputError as exc:
        raise UsageError(str(exc)) from None
    except UnicodeDecodeError as exc:
        raise UsageError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    with fh:
        reader = csv.DictReader(fh)
        need = {"model", "gpu", "tp", "precision", "input_tokens", "output_tokens"}
        if not need <= set(reader.fieldnames or ()):
            raise UsageError(f"{path}: not a results CSV: needs the columns {', '.join(sorted(need))} "
                             "(see the README, section Calibration)")
        header = list(reader.fieldnames or ())
        problems: list[str] = []
        for r in reader:
            bad = _typed(path, header, reader.line_num, r)
            if bad:
                problems += bad
                continue
            arch = catalog.models().get(r["model"] or "")
            gpu = catalog.gpus().get(r["gpu"] or "")
            if arch is None:
                skip("model not in the catalog")
                continue
            if gpu is None:
                skip("GPU not in the catalog")
                continue
            ckpt = None
            if (r.get("checkpoint") or "").strip():
                ckpt = catalog.checkpoint_for(r["checkpoint"])
                if ckpt is None or ckpt.architecture != arch.key:
                    skip("checkpoint not in the catalog for the model")
                    continue
            prec = r["precision"] or "bf16"
            if prec not in ("bf16", "fp16", "fp8", "fp4", "int8", "int4"):
                skip("precision unknown")
                continue
            inp, out = _f(r["input_tokens"]), _f(r["output_tokens"])
            if not inp or not out:
                skip("no input/output lengths")
                continue
            tp = int(_f(r["tp"]) or 1)
            pp = int(_f(r.get("pp", "")) or 1)
            ep = int(_f(r.get("ep", "")) or 1)
            dpa = 1
            if (r.get("dp_attention") or "").lower() in ("true", "1", "yes"):
                dpa, tp = tp, 1  # "DEPn": attention data-parallel over n GPUs, experts over the same n
            if not arch.is_moe:
                ep = 1
            replicas = int(_f(r.get("replicas", "")) or 1)
            gpus = int(_f(r.get("gpu_count", "")) or tp * pp * dpa * replicas)
            nodes = int(_f(r.get("nodes", "")) or 1)
            total = _f(r.get("output_tokens_per_s", ""))
            per_gpu = _f(r.get("output_tokens_per_s_per_gpu", ""))
            if total is None and per_gpu is None:
                skip("no output throughput")
                continue
            measured = total if total is not None else float(per_gpu or 0) * gpus
            conc = _f(r.get("concurrency", ""))
            ttft, tpot = _f(r.get("ttft_ms", "")), _f(r.get("tpot_ms", ""))
            tpot = tpot if tpot is not None else _f(r.get("itl_ms", ""))  # mean inter-token latency = TPOT
            rate = _f(r.get("request_rate", ""))
            if conc is None and rate and ttft is not None and tpot is not None:
                # a request-rate (online) run: Little's law gives the mean concurrency it ran at,
                # requests/s x seconds each request is in the system (TTFT + output x TPOT)
                conc = rate * (ttft + out * tpot) / 1e3
            rows.append(Row(r.get("id", ""), r.get("source_id", ""), r.get("engine", "") or "other", arch, gpu, prec,
                            "fp8" if (r.get("kv_cache_precision") or "") == "fp8" else "auto", gpus, nodes,
                            cm.Shape(tp, pp, ep, dpa), replicas, int(inp), int(out), conc, float(measured),
                            total is None, ttft, tpot, ckpt, int(_f(r.get("max_batch_size", "")) or 0) or None))
    if problems:
        more = f"\n... and {len(problems) - 20} more" if len(problems) > 20 else ""
        raise UsageError("\n".join(problems[:20]) + more)
    return rows, skipped


def _checkpoint(row: Row) -> Checkpoint:
    """The checkpoint a row measured: the one it names, else the usual one of its precision."""
    return row.checkpoint or assumed_checkpoint("", row.arch.key, row.precision, "benchmark row")


def _kernel(row: Row) -> str:
    """How the row's engine runs its checkpoint's quantized layers on its GPU (engines.KERNELS)."""
    return capabilities()[_engine(row)].support(_checkpoint(row).format, row.gpu.architecture) or "native"


def _engine(row: Row) -> str:
    """The engine a row is costed as: its own when parc emits for it (every engine shares the one
    fitted per-iteration overhead, see :func:`fit`), else vLLM's."""
    return row.engine if row.engine in ENGINES else "vllm"


@dataclass
class Prediction:
    throughput: float
    ttft_ms: float
    tpot_ms: float
    load: float


def predict(row: Row, cal: dict[str, Any] | None) -> Prediction | None:
    """parc's prediction for one measured row (None when the placement does not fit)."""
    per_node = max(1, row.gpus // max(row.nodes, 1))
    domain = row.gpu.nvlink_domain if row.gpu.nvlink_spans_nodes else min(row.gpu.nvlink_domain, per_node)
    pool = ResolvedPool(0, "bench", row.gpu, max(row.nodes, 1), per_node, row.gpu.intra_node_default,
                        domain if row.gpu.intra_node_default == "nvlink" else 0,
                        "infiniband" if row.nodes > 1 else "none", 400.0 if row.nodes > 1 else 0.0, "none", ())
    engine = _engine(row)
    f = cm.factors(row.gpu, engine, cal)
    ckpt = _checkpoint(row)
    cap = capabilities()[engine]
    ctx = cm.Context(row.arch, pool, ckpt, row.kv, engine, _kernel(row), f, row.input_tokens, row.output_tokens,
                     separate_prefill=cap.prefills_apart)
    resident = cm.resident_tokens(row.input_tokens, row.output_tokens, cap.kv_admission)
    # the engine's memory setting, read as the engine reads it: the lowest setting parc writes at
    # which the measured placement holds a request (it ran, so its engine was set so that it fits)
    for util in cm.UTILIZATIONS:
        mem = cm.memory(row.arch, row.gpu, row.shape, ckpt, f, utilization=util,
                        batched_tokens=BATCHED_TOKENS, max_seqs=256, reading=cap.memory_budget)
        max_load = cm.max_sequences(row.arch, row.shape, row.kv, mem, resident)
        if max_load >= 1:
            break
    else:
        return None
    if row.max_batch:  # the engine admits at most this many sequences per rank and micro-batch
        max_load = min(max_load, row.max_batch * row.shape.dpa * row.shape.pp)
    prep = cm.prepare(ctx, row.shape, BATCHED_TOKENS)
    if row.concurrency:
        load = max(1.0, row.concurrency / row.replicas)
        t = cm.predict_closed_loop(prep, load, max_load)  # beyond the KV cache's sequences, requests queue
        load = min(load, float(max_load))
    elif row.tpot_ms:
        # offline, but the run measured its TPOT: the engine's running batch is what its
        # throughput and TPOT imply (Little's law: sequences decoding = tokens/s x s per token),
        # not the KV cache's maximum (the engine's batch limit is not printed)
        load = min(float(max_load), max(1.0, row.measured / row.replicas * row.tpot_ms * 1e-3))
        t = cm.predict_prepared(prep, load)
    else:  # offline: the load that maximises throughput within memory
        best = None
        load = float(max_load)
        while load >= 1:
            cand = cm.predict_prepared(prep, load)
            if best is None or cand.throughput > best[1].throughput:
                best = (load, cand)
            load = math.floor(load / 1.5)
        assert best is not None
        load, t = best
    return Prediction(t.throughput * row.replicas, t.ttft_s * 1e3, t.tpot_s * 1e3, load)


@dataclass
class Scored:
    row: Row
    pred: Prediction

    @property
    def ape(self) -> float:
        return abs(self.pred.throughput - self.row.measured) / self.row.measured

    @property
    def log_err(self) -> float:
        return math.log(self.pred.throughput / self.row.measured)


def score(rows: Iterable[Row], cal: dict[str, Any] | None) -> list[Scored]:
    out = []
    for r in rows:
        p = predict(r, cal)
        if p is not None and p.throughput > 0:
            out.append(Scored(r, p))
    return out


def _pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    k = (len(s) - 1) * q
    lo, hi = math.floor(k), math.ceil(k)
    return s[lo] + (s[hi] - s[lo]) * (k - lo)


def _cover(values: list[float], q: float) -> float:
    """The smallest value that at least a share ``q`` of ``values`` do not exceed (the
    nearest-rank percentile): what an error band or a headroom promises ("within ±x in 9 rows
    of 10") then holds on the rows it was computed from, also for a class of a dozen rows,
    where interpolating between the two largest errors would not."""
    if not values:
        return float("nan")
    s = sorted(values)
    return s[max(0, math.ceil(q * len(s) - 1e-9) - 1)]


def ranking_agreement(scored: list[Scored]) -> tuple[float, int]:
    """Share of pairs of placements of the same model, GPU, precision and workload (same
    source) that parc orders like the measurements, by output tokens/s per GPU."""
    groups: dict[tuple[Any, ...], list[Scored]] = {}
    for s in scored:
        r = s.row
        key = (r.source, r.engine, r.arch.key, r.gpu.key, r.precision, r.input_tokens, r.output_tokens, r.concurrency)
        groups.setdefault(key, []).append(s)
    agree = total = 0
    for items in groups.values():
        for i in range(len(items)):
            for j in range(i + 1, len(items)):
                a, b = items[i], items[j]
                ma, mb = a.row.measured / a.row.gpus, b.row.measured / b.row.gpus
                if a.row.shape == b.row.shape and a.row.gpus == b.row.gpus:
                    continue
                if abs(ma - mb) / max(ma, mb) < 0.02:
                    continue  # a tie in the measurements orders nothing
                pa, pb = a.pred.throughput / a.row.gpus, b.pred.throughput / b.row.gpus
                total += 1
                agree += (ma > mb) == (pa > pb)
    return (agree / total if total else float("nan")), total


@dataclass
class Report:
    rows: int
    median_ape: float
    p90_ape: float
    bias: float  # median of predicted/measured - 1
    ranking: float
    pairs: int
    ttft_median_ape: float = float("nan")
    tpot_median_ape: float = float("nan")
    groups: dict[str, tuple[int, float, float, float]] = field(default_factory=dict)


def report(scored: list[Scored], by: Any = None) -> Report:
    apes = [s.ape for s in scored]
    ratio = [s.pred.throughput / s.row.measured for s in scored]
    rk, pairs = ranking_agreement(scored)
    ttft = [abs(s.pred.ttft_ms - s.row.ttft_ms) / s.row.ttft_ms for s in scored if s.row.ttft_ms]
    tpot = [abs(s.pred.tpot_ms - s.row.tpot_ms) / s.row.tpot_ms for s in scored if s.row.tpot_ms]
    rep = Report(len(scored), _pct(apes, 0.5), _cover(apes, 0.9), _pct(ratio, 0.5) - 1, rk, pairs,
                 _pct(ttft, 0.5), _pct(tpot, 0.5))
    if by is not None:
        buckets: dict[str, list[Scored]] = {}
        for s in scored:
            buckets.setdefault(str(by(s)), []).append(s)
        for k in sorted(buckets):
            b = buckets[k]
            a = [x.ape for x in b]
            rep.groups[k] = (len(b), _pct(a, 0.5), _cover(a, 0.9), _pct([x.pred.throughput / x.row.measured for x in b], .5) - 1)
    return rep


# ----------------------------------------------------------------------------- fitting


def _loss(scored: list[Scored]) -> float:
    """Robust loss: mean absolute log error (a 2x miss costs the same either way) of every row's
    throughput and, where a row measured them (online runs at a given concurrency), of its TPOT
    and TTFT: the online rows pin the load model at the SLO, the offline ones at saturation."""
    terms = [abs(s.log_err) for s in scored]
    for s in scored:
        for pred, meas in ((s.pred.tpot_ms, s.row.tpot_ms), (s.pred.ttft_ms, s.row.ttft_ms)):
            if meas and pred > 0 and math.isfinite(pred):
                terms.append(abs(math.log(pred / meas)))
    return statistics.fmean(terms) if terms else math.inf


def fit(rows: list[Row], base: dict[str, Any] | None = None, rounds: int = 3) -> dict[str, Any]:
    """Coordinate descent over the efficiency factors on log-spaced multipliers; returns a
    calibration dict (``factors`` reads it)."""
    eff = catalog.efficiency()
    cal: dict[str, Any] = {
        "compute": dict((base or {}).get("compute", {})),
        "dequant": {"default": float(eff["dequant"]["default"])} | dict((base or {}).get("dequant", {})),
        "memory_bandwidth": dict((base or {}).get("memory_bandwidth", {})),
        "collective": {k: float(v) for k, v in eff["collective"].items()} | dict((base or {}).get("collective", {})),
        "engine": {e: dict(v) for e, v in eff["engine"].items()} | dict((base or {}).get("engine", {})),
    }
    for e in cal["engine"].values():  # multiplicative steps need a start away from zero
        e["layer_overhead_us"] = float(e.get("layer_overhead_us") or 20.0)
    families = sorted({r.family for r in rows})
    for fam in families:
        cal["compute"].setdefault(fam, float(eff["compute"]["default"]))
        cal["memory_bandwidth"].setdefault(fam, float(eff["memory_bandwidth"]["default"]))
    knobs: list[tuple[str, str, str | None, float, float]] = []
    for fam in families:
        knobs += [("compute", fam, None, 0.05, 1.0), ("memory_bandwidth", fam, None, 0.2, 1.0)]
    knobs += [("collective", k, None, 0.02, 1.0) for k in COLLECTIVES]
    knobs += [("dequant", "default", None, 0.1, 1.0)]  # one for every family: few rows run such kernels
    # one per-iteration overhead for every engine: the corpus is mostly TensorRT-LLM, and a
    # per-engine fit would make `engine: auto` prefer whichever engine has the fewest rows
    knobs += [("engine", "*", "step_overhead_ms", 0.1, 50.0), ("engine", "*", "layer_overhead_us", 0.5, 500.0)]
    # evaluate on a deterministic subsample for speed; the loss is a mean, so it scales
    sample = rows if len(rows) <= 800 else [r for i, r in enumerate(rows) if i % math.ceil(len(rows) / 800) == 0]
    best = _loss(score(sample, cal))
    steps = [0.5, 0.7, 0.85, 1.18, 1.43, 2.0]
    for _ in range(rounds):
        improved = False
        for section, key, sub, lo, hi in knobs:
            holder = next(iter(cal[section].values())) if key == "*" else cal[section][key]
            cur = float(holder[sub] if sub else holder)
            for m in steps:
                val = min(hi, max(lo, cur * m))
                if val == cur:
                    continue
                trial = _set(cal, section, key, sub, val)
                loss = _loss(score(sample, trial))
                if loss < best - 1e-9:
                    best, cal, cur, improved = loss, trial, val, True
        steps = [math.sqrt(s) for s in steps]
        if not improved:
            break
    if not any(_kernel(r) in cm.DEQUANT_KERNELS for r in rows):
        del cal["dequant"]  # nothing measured it: the built-in value stands
    return _rounded(cal)


def _set(cal: dict[str, Any], section: str, key: str, sub: str | None, value: float) -> dict[str, Any]:
    new = {k: (dict(v) if isinstance(v, dict) else v) for k, v in cal.items()}
    new[section] = {k: (dict(v) if isinstance(v, dict) else v) for k, v in cal[section].items()}
    if key == "*":
        for k in new[section]:
            new[section][k] = {**new[section][k], sub: value}
    elif sub:
        new[section][key] = {**new[section][key], sub: value}
    else:
        new[section][key] = value
    return new


def _rounded(cal: dict[str, Any]) -> dict[str, Any]:
    def r(v: Any) -> Any:
        if isinstance(v, dict):
            return {k: r(x) for k, x in sorted(v.items())}
        return round(v, 4) if isinstance(v, float) else v

    return {k: r(v) for k, v in sorted(cal.items())}


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


#: Configuration classes of the error bands, most specific first: a placement belongs to the
#: first that applies (attention-DP implies EP in practice; multi-node before PP and TP).
CLASSES = ("attention-dp", "ep", "multi-node", "pp", "tp", "single-gpu")
#: A band needs this many held-out measurements; with fewer the plan says "few measurements"
#: and widens it (see :func:`band_for`).
MIN_BAND_ROWS = 10
#: The share of held-out online rows whose measured TPOT the TPOT headroom covers
HEADROOM_COVERAGE = 0.75
#: Loads (sequences per forward pass) from which the TPOT excess is also read apart: the rows
#: that ran at least that many, while MIN_BAND_ROWS of them remain (see :func:`_load_excess`)
LOAD_FLOORS = (2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)


def coverage_rows(scored: str) -> str:
    """How the headroom and the TTFT note name the rows they cover: '3 of 4 held-out online rows'."""
    return f"{HEADROOM_COVERAGE * 4:.0f} of 4 {scored} online rows"


def config_classes(shape: cm.Shape, nodes_per_replica: int) -> tuple[str, ...]:
    """Every configuration class a placement belongs to, most specific first: attention DP
    (with or without EP), EP without attention DP, several nodes per replica, pipeline stages;
    else TP or a single GPU. A placement that combines them (attention DP over pipeline
    stages, TP x PP across nodes) is as uncertain as the least measured of its classes."""
    parts = (("attention-dp", shape.dpa > 1), ("ep", shape.ep > 1 and shape.dpa <= 1),
             ("multi-node", nodes_per_replica > 1), ("pp", shape.pp > 1))
    return tuple(c for c, on in parts if on) or (("tp",) if shape.tp > 1 else ("single-gpu",))


def config_class(shape: cm.Shape, nodes_per_replica: int) -> str:
    """The configuration class a measured row is scored in (the first of :func:`config_classes`)."""
    return config_classes(shape, nodes_per_replica)[0]


def model_kind(arch: catalog.ModelArch) -> str:
    """``moe`` or ``dense``: the model kind the TPOT headroom is measured for."""
    return "moe" if arch.is_moe else "dense"


def row_class(row: Row) -> str:
    return config_class(row.shape, max(1, math.ceil(max(row.nodes, 1) / max(row.replicas, 1))))


def _load_excess(pairs: list[tuple[float, float]]) -> dict[str, float]:
    """How far measured TPOT exceeds the prediction at load, from (sequences per forward pass,
    excess) of the online rows: for each of LOAD_FLOORS, the 75th percentile excess of the rows
    that ran at least that many (``tpotP75ExcessFrom<n>``, over ``tpotRowsFrom<n>`` rows) while
    MIN_BAND_ROWS of them remain, and the most any row ran (``tpotMaxBatch``): the TPOT headroom
    of a plan reads the excess at its own load, and beyond the most measured load the error is
    unknown (solver.headroom_from_band)."""
    out: dict[str, float] = {"tpotMaxBatch": round(max(load for load, _ in pairs), 1)}
    for floor in LOAD_FLOORS:
        excess = [e for load, e in pairs if load >= floor]
        if len(excess) < MIN_BAND_ROWS:
            break
        out[f"tpotRowsFrom{floor}"] = len(excess)
        out[f"tpotP75ExcessFrom{floor}"] = round(_cover(excess, HEADROOM_COVERAGE), 3)
    return out


def _band(group: list[Scored], by_load: bool = False) -> dict[str, float]:
    a = [s.ape for s in group]
    out: dict[str, float] = {"rows": len(a), "medianApe": round(_pct(a, 0.5), 3), "p90Ape": round(_cover(a, 0.9), 3),
                             "maxApe": math.ceil(max(a) * 1000) / 1000,  # a bound: rounded up
                             "bias": round(_pct([s.pred.throughput / s.row.measured for s in group], .5) - 1, 3)}
    # (predicted, measured, sequences per forward pass) of each timing; measured is None on rows
    # that did not measure it
    timings = {"tpot": [(s.pred.tpot_ms, s.row.tpot_ms, s.row.shape.forward_batch(s.pred.load)) for s in group],
               "ttft": [(s.pred.ttft_ms, s.row.ttft_ms, s.row.shape.forward_batch(s.pred.load)) for s in group]}
    for name, rows in timings.items():
        err = [abs(pred - meas) / meas for pred, meas, _ in rows if meas]
        if err:
            out[f"{name}Rows"] = len(err)
            out[f"{name}MedianApe"] = round(_pct(err, 0.5), 3)
            out[f"{name}P90Ape"] = round(_cover(err, 0.9), 3)
    # how far measured TPOT (TTFT) exceeds the prediction in 3 rows of 4: the TPOT headroom reads
    # it, and plans with a TTFT target say it
    for name, rows in timings.items():
        excess = [(batch, meas / pred - 1) for pred, meas, batch in rows if meas and 0 < pred < math.inf]
        if excess:
            out[f"{name}P75Excess"] = round(_cover([e for _, e in excess], HEADROOM_COVERAGE), 3)
            if by_load and name == "tpot":
                out.update(_load_excess(excess))
    return out


def bands(scored: list[Scored]) -> dict[str, dict[str, float]]:
    """Error of the scored (held-out) predictions per configuration class and GPU family
    (``attention-dp/hopper``), per class over every family (``attention-dp/*``), per model kind
    (``model/dense``, ``model/moe``: what the TPOT headroom reads) and overall (``all``): rows, median and 90th-percentile absolute error of throughput, the bias, and
    TPOT/TTFT errors where the measurements include them (online rows)."""
    groups: dict[str, list[Scored]] = {}
    for s in scored:
        cls = row_class(s.row)
        for k in (f"{cls}/{s.row.family}", f"{cls}/*", f"model/{model_kind(s.row.arch)}"):
            groups.setdefault(k, []).append(s)
    out = {k: _band(v, by_load=k.startswith("model/")) for k, v in sorted(groups.items())}
    out["all"] = _band(scored)
    return out


def scored_rows(cal: dict[str, Any] | None) -> str:
    """What a calibration's bands were scored on: ``held-out`` rows when it kept sources out of
    its fit (the built-in one; ``parc calibrate --hold-out``), else the ``fitted`` rows themselves,
    whose error is in-sample and so smaller than a new measurement's."""
    prov = (cal or {}).get("provenance", {}) if isinstance(cal, dict) else {}
    return "held-out" if isinstance(prov, dict) and prov.get("heldOut") else "fitted"


def band_for(bands_: dict[str, Any], cls: str, family: str) -> tuple[str, dict[str, Any], bool]:
    """``(scope, band, few)`` for a placement of class ``cls`` on ``family``: the class and
    family's band when it has MIN_BAND_ROWS held-out rows, else the class's over all families,
    else — few measurements — a wide band: the larger of the class's own p90 (if any) and 1.5x
    the overall p90, at least 100% (with the worst of its own rows, if any)."""
    for key in (f"{cls}/{family}", f"{cls}/*"):
        b = bands_.get(key)
        if isinstance(b, dict) and b.get("rows", 0) >= MIN_BAND_ROWS:
            return key, b, False
    own = bands_.get(f"{cls}/{family}") or bands_.get(f"{cls}/*") or {}
    overall = bands_.get("all") or {}
    wide = max(1.0, 1.5 * float(overall.get("p90Ape") or 0.0), float(own.get("p90Ape") or 0.0))
    median = max(float(own.get("medianApe") or 0.0), float(overall.get("medianApe") or 0.0))
    key = f"{cls}/{family}" if bands_.get(f"{cls}/{family}") else f"{cls}/*"
    band = {"rows": int(own.get("rows", 0)), "medianApe": round(median, 3), "p90Ape": round(wide, 3)}
    if own.get("maxApe") is not None:
        band["maxApe"] = own["maxApe"]
    return key, band, True


def calibration_document(cal: dict[str, Any], source: str, rows: list[Row], scored: list[Scored],
                         heldout: str = "") -> dict[str, Any]:
    return {
        "apiVersion": "parc.dev/v1alpha1",
        "kind": CALIBRATION_KIND,
        "provenance": {
            "fittedBy": "parc calibrate",
            "results": source,
            "rows": len(rows),
            "sources": sorted({r.source for r in rows if r.source}),
            "heldOut": heldout,
        },
        **cal,
        "bands": bands(scored),
    }


def load_calibration(path: Path, shipped: bool = False) -> dict[str, Any]:
    """Read a calibration file written by ``parc calibrate`` (YAML). ``shipped``: parc's own
    built-in file, read with the plain YAML loader (a third faster than the spec loader's
    round trip, which every plan would pay); its numbers are checked all the same."""
    from parc.errors import ParcError
    from parc.files import InputError, read_bounded
    from parc.loader import load_text

    try:
        text = read_bounded(path, 4 << 20).decode("utf-8")
        if shipped:
            from ruamel.yaml import YAML

            data = YAML(typ="safe", pure=True).load(text)
        else:
            # the spec loader's limits (alias bombs, depth, tags, duplicate keys) for this YAML too
            data = load_text(text, str(path)).data
    except InputError as exc:
        raise ValueError(str(exc)) from None
    except UnicodeDecodeError as exc:
        raise ValueError(f"cannot read {path}: {exc}") from None
    except ParcError as exc:
        raise ValueError("; ".join(exc.lines()[:3])) from None
    if not isinstance(data, dict) or data.get("kind") != CALIBRATION_KIND:
        raise ValueError(f"{path} is not a parc calibration (kind: {CALIBRATION_KIND}); write one with "
                         "`parc calibrate results.csv -o calibration.yaml`")
    _check_shape(path, data)
    _check_numbers(path, data, ())
    return dict(data)


def _number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _check_shape(path: Path, data: dict[str, Any]) -> None:
    """The sections of a calibration file hold what the cost model reads (a ValueError naming
    the first misfit): factors and memory are numbers by key; engine entries and bands are
    mappings of numbers."""
    for section in ("compute", "dequant", "memory_bandwidth", "collective", "memory"):
        sec = data.get(section, {})
        if not isinstance(sec, dict) or not all(isinstance(k, str) and _number(v) for k, v in sec.items()):
            raise ValueError(f"{path}: {section} must be a mapping of names to numbers")
    for section in ("engine", "bands"):
        sec = data.get(section, {})
        if not isinstance(sec, dict) or not all(
                isinstance(k, str) and isinstance(v, dict) and all(_number(x) or x is None for x in v.values())
                for k, v in sec.items()):
            raise ValueError(f"{path}: {section} must map names to mappings of numbers")
    for k, v in data.get("engine", {}).items():
        missing = {"step_overhead_ms", "per_seq_overhead_ms"} - set(v)
        if missing:
            raise ValueError(f"{path}: engine.{k} needs {', '.join(sorted(missing))}")
    if not isinstance(data.get("provenance", {}), dict):
        raise ValueError(f"{path}: provenance must be a mapping")


#: Bounds of calibration numbers: efficiency factors are fractions of a peak (0, 1.5]; times,
#: memory sizes and error bands are non-negative and finite.
_FACTOR_SECTIONS = ("compute", "dequant", "memory_bandwidth", "collective")
#: The sections :func:`fit` writes: the factors and the engines' overheads
FIT_SECTIONS = (*_FACTOR_SECTIONS, "engine")


def _check_numbers(path: Path, node: Any, where: tuple[str, ...]) -> None:
    """Every number in a calibration file is finite and in range (a located ValueError)."""
    if isinstance(node, dict):
        for k, v in node.items():
            _check_numbers(path, v, where + (str(k),))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            _check_numbers(path, v, where + (str(i),))
    elif isinstance(node, (int, float)) and not isinstance(node, bool):
        name = ".".join(where)
        if not math.isfinite(node):
            raise ValueError(f"{path}: {name} is {node}; every number must be finite")
        if where and where[0] in _FACTOR_SECTIONS and not 0 < node <= 1.5:
            raise ValueError(f"{path}: {name} is {node}; an efficiency factor is a fraction of the peak in (0, 1.5]")
        if node < 0 and where[-1] != "bias" and "P75Excess" not in where[-1]:  # x/y - 1 may be negative
            raise ValueError(f"{path}: {name} is {node}; it must not be negative")
