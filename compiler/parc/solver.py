"""Stage 4, solve: enumerate placements, reject the impossible with reasons, cost the rest,
and pick the best under the spec's objective (DESIGN.md: Placement semantics, Objectives).

Search space per pool and engine: shapes (tp, pp, ep, dpAttention) and replica counts.
Load model: requests are spread evenly over all replicas (a Service / load balancer), so
with ``workload.concurrency`` C and R replicas each serves ceil(C / R).

- throughput: every group runs at the load that maximises its throughput within the SLO;
  pools are independent, so each takes its best shape at full replicas (a knapsack over
  pools when ``constraints.maxGpus`` caps the total).
- latency: for each distinct per-replica load L, each pool takes the shape with the most
  replicas among those within a TPOT threshold; the smallest feasible threshold wins
  (then TTFT). More replicas never raise a replica's load, so this is exact.
- cost: for each L, fill the ceil(C / L) replicas from the cheapest shapes that meet every
  target at L: cost per hour of a replica when the pools are priced (costPerGpuHour), GPUs
  per replica otherwise.
"""

from __future__ import annotations

import bisect
import functools
import math
from dataclasses import dataclass, field
from typing import Any, Iterable, Iterator, Protocol

from parc import catalog
from parc import costmodel as cm
from parc.catalog import ModelArch, shapes
from parc.engines import Capabilities, Recipe, capabilities, recipe_for, rules
from parc.errors import InfeasibleError
from parc.resolve import Resolved, ResolvedPool

#: Prefill chunk budgets (max_num_batched_tokens per rank) the solver chooses from: the engines'
#: recipes use 2,048 (TensorRT-LLM Llama guide) to 32,768 (vLLM DeepSeek guide).
CHUNKS = (2048, 4096, 8192, 16384, 32768)


@dataclass(frozen=True)
class Settings:
    """Engine settings chosen for a group (plan.json ``engineSettings``), per engine instance as
    the engines define them: ``max_num_seqs`` and ``max_num_batched_tokens`` per data-parallel
    rank; ``kv_cache_fraction`` the share of the memory free after weights and activations that
    the KV cache takes (TensorRT-LLM's meaning)."""

    max_num_seqs: int
    max_model_len: int
    max_num_batched_tokens: int
    gpu_memory_utilization: float
    kv_cache_dtype: str
    kv_cache_fraction: float
    seqs_per_replica: int


@dataclass(frozen=True)
class Chunk:
    """One prefill chunk budget of a candidate, with the memory and load it allows."""

    tokens: int
    max_load: int  # sequences of mean length a replica holds with this budget's activations
    memory: cm.Memory


@dataclass(frozen=True, eq=False)
class Candidate:
    """A shape that fits a pool: memory, topology and engine checks passed. Compared and
    hashed by identity: the solver memoises predictions per candidate object."""

    engine: str
    pool: ResolvedPool
    shape: cm.Shape
    nodes_per_replica: int
    max_replicas: int
    max_load: int  # sequences of mean length one replica can hold (the smallest chunk budget)
    memory: cm.Memory
    utilization: float
    chunks: tuple[Chunk, ...]
    launcher: str  # single | ray | mpi | dp
    ctx: cm.Context = field(compare=False, repr=False)

    def chunk(self, tokens: int) -> Chunk:
        return next(c for c in self.chunks if c.tokens == tokens)

    @property
    def label(self) -> str:
        s = self.shape
        return f"{self.pool.name}: tp={s.tp} pp={s.pp} ep={s.ep} dpAttention={s.dpa}"


@dataclass(frozen=True)
class Rejection:
    """A placement that cannot work, and why (a sentence with the numbers)."""

    engine: str
    pool: str
    shape: cm.Shape
    kind: str
    reason: str


@dataclass(frozen=True)
class Group:
    """One pool's share of a solution."""

    cand: Candidate
    replicas: int
    load: float  # concurrent requests per replica
    timing: cm.Timing
    slo_load: int = 0  # the largest load per replica that meets the SLO targets (0: no target)
    phase: str = "both"  # both (aggregated) | prefill | decode (disaggregated instances)

    @property
    def gpus(self) -> int:
        return self.replicas * self.cand.shape.gpus

    @property
    def chunk(self) -> Chunk:
        return self.cand.chunk(self.timing.batched_tokens)

    def settings(self, max_model_len: int) -> Settings:
        ch = self.chunk
        seqs = max(1, math.ceil(self.load))
        # headroom for bursts where the cache allows: 25% over the planned load, but never past
        # the batch that still meets the SLO (an engine saturated at max-num-seqs runs that batch;
        # requests beyond it queue, which costs TTFT, not TPOT)
        ceiling = max(ch.max_load, seqs)
        if self.slo_load:
            ceiling = min(ceiling, max(self.slo_load, seqs))
        seqs = min(max(seqs, math.ceil(seqs * 1.25)), ceiling)
        dpa = self.cand.shape.dpa
        per_rank = max(1, math.ceil(seqs / dpa))  # every data-parallel rank runs its own scheduler
        m = ch.memory
        free = m.capacity - m.weights - m.activations - m.overhead
        fraction = max(0.01, math.floor(max(m.kv_cache, 0.0) / free * 100) / 100) if free > 0 else 0.01
        # the chunk budget holds one decode token of every running sequence (engine rule)
        batched = max(ch.tokens, per_rank)
        return Settings(per_rank, max_model_len, batched, self.cand.utilization, self.cand.ctx.kv_precision,
                        fraction, per_rank * dpa)


@dataclass(frozen=True)
class Solution:
    """A full placement with its predictions."""

    groups: tuple[Group, ...]
    ttft_s: float
    tpot_s: float
    throughput: float
    meets_slo: bool
    misses: tuple[str, ...]

    @property
    def gpus(self) -> int:
        return sum(g.gpus for g in self.groups)

    @property
    def engine(self) -> str:
        return self.groups[0].cand.engine

    @property
    def cost_per_hour(self) -> float | None:
        """The GPUs' price per hour (cluster.pools[].costPerGpuHour, the user's currency); None
        unless every pool the solution uses is priced."""
        prices = [g.cand.pool.cost_per_gpu_hour for g in self.groups]
        if any(p is None for p in prices):
            return None
        return sum(g.gpus * (p or 0.0) for g, p in zip(self.groups, prices))

    def key(self, objective: str) -> tuple[float, ...]:
        """Sort key, lower is better."""
        miss = 0.0 if self.meets_slo else 1.0
        if objective == "throughput":
            return (miss, -round(self.throughput, 6), self.gpus, self.tpot_s)
        if objective == "cost":
            cost = self.cost_per_hour
            return (miss, round(cost, 9) if cost is not None else float(self.gpus), self.gpus,
                    -round(self.throughput, 6), self.tpot_s)
        return (miss, round(self.tpot_s, 12), round(self.ttft_s, 12), self.gpus)

    def signature(self) -> tuple[tuple[Any, ...], ...]:
        return tuple((g.cand.engine, g.cand.pool.name, g.cand.shape, g.replicas, g.phase) for g in self.groups)

    @property
    def disaggregated(self) -> bool:
        return any(g.phase != "both" for g in self.groups)


@dataclass(frozen=True)
class RecipeCheck:
    """The chosen plan against the engine's own recipe for the model: the recipe layout's
    prediction under the same model (None when parc rejects it, ``reason`` then says why)."""

    recipe: Recipe
    matches: bool
    solution: Solution | None
    reason: str


@dataclass(frozen=True)
class Result:
    """What the solver hands to the plan stage."""

    best: Solution
    alternatives: tuple[Solution, ...]
    rejections: tuple[Rejection, ...]
    objective: str
    recipe: RecipeCheck | None = None
    disaggregation: str = ""  # engine.disaggregation auto | on: why the split won or lost, in numbers


# ----------------------------------------------------------------------------- enumeration


def _allowed(value: int | list[int] | None) -> set[int] | None:
    if value is None:
        return None
    return {value} if isinstance(value, int) else set(value)


def _powers_and_divisors(limit: int, n: int) -> list[int]:
    out = {d for d in range(1, n + 1) if n % d == 0 and d <= limit}
    p = 1
    while p <= limit:
        out.add(p)
        p *= 2
    return sorted(out)


def enumerate_candidates(res: Resolved) -> tuple[list[Candidate], list[Rejection]]:
    """Every shape on every pool for every allowed engine, split into candidates that fit
    and rejections with reasons."""
    spec = res.spec
    arch = res.model
    cons = spec.constraints
    allow = {k: _allowed(getattr(cons, k)) for k in ("tp", "pp", "ep", "dp_attention", "replicas")}
    caps = capabilities()
    engines = [spec.engine.name] if spec.engine.name != "auto" else list(caps)
    cands: list[Candidate] = []
    rejs: list[Rejection] = []
    for engine in engines:
        cap = caps[engine]
        if res.kv_precision not in cap.kv_cache:
            continue  # validation reports this when the engine is forced; auto skips it
        for pool in res.pools:
            if pool.gpu.vendor not in cap.vendors:
                rejs.append(Rejection(engine, pool.name, cm.Shape(1, 1, 1, 1), "engine",
                                      f"{cap.display} does not run on {pool.gpu.vendor.upper()} GPUs ({pool.gpu.key})"))
                continue
            f = cm.factors(pool.gpu, engine, res.calibration)
            kernel = cap.support(res.checkpoint.format, pool.gpu.architecture) or "native"
            ctx = cm.Context(arch, pool, res.checkpoint, res.kv_precision, engine, kernel, f,
                             spec.workload.input_tokens, spec.workload.output_tokens,
                             separate_prefill=cap.prefills_apart)
            for shape in _shapes(arch, pool, allow, cons.max_gpus):
                c = _check(res, ctx, cap, shape, allow["replicas"], cons.max_gpus)
                if isinstance(c, Candidate):
                    cands.append(c)
                else:
                    rejs.append(c)
    return cands, rejs


def _shapes(arch: ModelArch, pool: ResolvedPool, allow: dict[str, set[int] | None],
            max_gpus: int | None) -> Iterable[cm.Shape]:
    limit = min(pool.gpus, max_gpus or pool.gpus)
    # TP degrees up to the NVLink domain; one power of two past it when the pool has the GPUs,
    # so the plan shows why a TP group over the node boundary was not taken
    beyond = pool.tp_domain * 2 if pool.tp_domain * 2 <= pool.gpus else pool.tp_domain
    tps = _powers_and_divisors(max(beyond, max(allow["tp"] or {1})), pool.gpus_per_node)
    if allow["tp"] is not None:
        tps = sorted(set(tps) | allow["tp"])
    dpas = [1]
    if arch.is_moe:
        # attention-DP ranks within a node, or whole nodes of them (multi-node data parallelism)
        dpas = _powers_and_divisors(pool.tp_domain, pool.gpus_per_node)
        dpas += [n * pool.gpus_per_node for n in (2, 4, 8) if n <= pool.nodes]
    if allow["dp_attention"] is not None:
        dpas = sorted(allow["dp_attention"])
    for tp in tps:
        if allow["tp"] is not None and tp not in allow["tp"]:
            continue
        for dpa in dpas:
            if tp * dpa > limit:
                continue
            eps = [1] if not arch.is_moe else sorted({1, tp * dpa})
            if allow["ep"] is not None:
                eps = sorted(allow["ep"])
            max_pp = _max_pp(arch, pool, tp, dpa)
            pps = sorted(allow["pp"]) if allow["pp"] is not None else range(1, max_pp + 1)
            for ep in eps:
                for pp in pps:
                    g = tp * dpa * pp
                    if g > limit and pp > 1 and allow["pp"] is None:
                        break
                    if pp > 1 and allow["pp"] is None and g > pool.gpus_per_node and g % pool.gpus_per_node:
                        continue  # a multi-node replica takes whole nodes
                    yield cm.Shape(tp, pp, ep, dpa)


_INT4 = catalog.assumed_checkpoint("", "", "int4", "")


def _max_pp(arch: ModelArch, pool: ResolvedPool, tp: int, dpa: int) -> int:
    """Deepest pipeline worth trying: twice the stages the weights need to fit (at least
    4), at most 32 and the layer count. Deeper pipelines only add bubbles and sends; the
    bound keeps a 4,096-GPU search to thousands of shapes, not tens of thousands."""
    usable = pool.gpu.memory_bytes * cm.UTILIZATIONS[-1]
    need = 1
    while need < arch.num_hidden_layers and cm.weight_bytes_per_gpu(arch, cm.Shape(tp, need, 1, dpa), _INT4) > usable:
        need += 1
    return min(arch.num_hidden_layers, 32, max(4, 2 * need))


def _check(res: Resolved, ctx: cm.Context, cap: Capabilities, shape: cm.Shape,
           replicas_allowed: set[int] | None, max_gpus: int | None) -> Candidate | Rejection:
    arch, pool, engine = res.model, ctx.pool, ctx.engine
    tp, pp, ep, dpa = shape.tp, shape.pp, shape.ep, shape.dpa

    def rej(kind: str, reason: str) -> Rejection:
        return Rejection(engine, pool.name, shape, kind, reason)

    if pp > arch.num_hidden_layers:
        return rej("divisibility", f"pp={pp} is more than the {arch.num_hidden_layers} layers of {arch.key}")
    if arch.is_moe:
        guide = cap.rules.get("moe-dp-uses-ep")
        if guide is not None and dpa > 1 and ep == 1 and (res.spec.constraints.ep is None or 1 not in (
                [res.spec.constraints.ep] if isinstance(res.spec.constraints.ep, int) else res.spec.constraints.ep)):
            return rej("guide", f"dpAttention={dpa} without expert parallelism: {cap.display}'s guides run data-parallel "
                                f"attention on MoE models with ep = tp x dpAttention = {tp * dpa} (allow it with "
                                f"constraints.ep: 1) [rule moe-dp-uses-ep: {guide.source}]")
        if ep > tp * dpa or (tp * dpa) % ep:
            return rej("divisibility", f"ep={ep} does not fit the tp x dpAttention = {tp * dpa} GPUs of a stage")
        if ep not in (1, tp * dpa):
            return rej("engine", f"{cap.display} spreads experts over all tp x dpAttention = {tp * dpa} GPUs "
                                 f"of a stage (ep={tp * dpa}) or none (ep=1), not ep={ep} "
                                 f"[rule ep-spans-stage: {cap.rules['ep-spans-stage'].source}]")
    elif ep != 1 or dpa != 1:
        return rej("divisibility", f"{arch.key} is dense: ep and dpAttention must be 1")
    if pp > 1 and not cap.pipeline_parallel:
        return rej("engine", f"{cap.display} has no pipeline parallelism (pp={pp})")
    if ep > 1 and not cap.expert_parallel:
        return rej("engine", f"{cap.display} has no expert parallelism (ep={ep})")
    if dpa > 1 and not cap.dp_attention:
        return rej("engine", f"{cap.display} has no data-parallel attention (dpAttention={dpa})")
    broken = rules.check(cap, arch, ctx.checkpoint, shape, pool)
    if broken is not None:
        return rej(broken.kind, broken.sentence())
    if tp > pool.tp_domain:
        where = "NVLink domain" if pool.tp_domain > pool.gpus_per_node else "node"
        return rej("topology", f"a TP group of {tp} would cross the {where} boundary: {pool.name} has "
                               f"{pool.tp_domain} GPUs per {where}")
    g = shape.gpus
    if g > pool.gpus:
        return rej("capacity", f"needs {g} GPUs per replica; {pool.name} has {pool.gpus}")
    if max_gpus is not None and g > max_gpus:
        return rej("constraints", f"needs {g} GPUs per replica; constraints.maxGpus is {max_gpus}")
    launcher = "single"
    if g > pool.gpus_per_node:
        if g % pool.gpus_per_node:
            return rej("topology", f"{g} GPUs per replica is not a whole number of {pool.gpus_per_node}-GPU nodes")
        if pool.inter_node == "none":
            return rej("topology", f"a replica of {g} GPUs spans {g // pool.gpus_per_node} nodes but {pool.name} "
                                   "has no inter-node fabric (set cluster.pools[].interNode)")
        form, why = rules.multi_node_form(cap, shape, pool)
        if why is not None:
            return rej(why.kind, why.sentence())
        launcher = form or "single"
    elif dpa * tp > pool.tp_domain:
        return rej("topology", f"tp x dpAttention = {tp * dpa} GPUs would cross the node boundary of {pool.name} "
                               f"({pool.gpus_per_node} GPUs per node)")
    nodes_per_replica = max(1, math.ceil(g / pool.gpus_per_node))
    per_replica_max = pool.gpus // g
    if replicas_allowed is not None and not any(r <= per_replica_max for r in replicas_allowed):
        return rej("constraints", f"constraints.replicas {sorted(replicas_allowed)} leaves no room: {pool.name} "
                                  f"holds at most {per_replica_max} replica{'s' if per_replica_max != 1 else ''} of {g} GPUs")
    # memory: weights and a full-context sequence must fit at the highest utilization, for
    # at least the smallest prefill chunk budget; larger budgets take more activation memory
    # sequences a replica holds: at the mean context where the engine allocates KV as sequences
    # grow, at the whole request where it reserves prompt + output at admission
    mean = cm.resident_tokens(ctx.input_tokens, ctx.output_tokens, cap.kv_admission)
    fit = _memory_fit(arch, pool.gpu, shape, ctx.checkpoint, ctx.factors, ctx.kv_precision, res.max_context_length,
                      mean)
    if isinstance(fit, str):
        return rej("memory", fit)
    util, chunks = fit
    return Candidate(engine, pool, shape, nodes_per_replica, per_replica_max, max(c.max_load for c in chunks),
                     chunks[0].memory, util, chunks, launcher, ctx)


@functools.lru_cache(maxsize=65536)
def _memory_fit(arch: ModelArch, gpu: catalog.GpuSpec, shape: cm.Shape, ckpt: catalog.Checkpoint, f: cm.Factors,
                kv: str, max_context: int, mean: float) -> tuple[float, tuple[Chunk, ...]] | str:
    """The lowest gpuMemoryUtilization at which one ``max_context`` sequence fits, with the
    prefill chunk budgets that fit there and the sequences each holds; when none fits, why (a
    sentence with the numbers). Depends on the hardware, not the pool, so a fleet of pools of
    one GPU type computes it once."""
    for util in cm.UTILIZATIONS:
        chunks = []
        for tokens in CHUNKS:
            mem = cm.memory(arch, gpu, shape, ckpt, f, utilization=util, batched_tokens=tokens, max_seqs=256)
            if cm.max_sequences(arch, shape, kv, mem, max_context) >= 1:
                chunks.append(Chunk(tokens, cm.max_sequences(arch, shape, kv, mem, mean), mem))
        if chunks:
            return util, tuple(chunks)
    mem = cm.memory(arch, gpu, shape, ckpt, f, utilization=cm.UTILIZATIONS[-1], batched_tokens=CHUNKS[0], max_seqs=256)
    per_seq = shapes.kv_bytes_per_sequence(arch, kv, shape.tp, shape.pp, max_context)
    need = mem.weights + mem.activations + mem.overhead + per_seq
    return (f"needs {need / cm.GIB:.1f} GiB per GPU ({mem.weights / cm.GIB:.1f} weights + "
            f"{per_seq / cm.GIB:.2f} KV for one {max_context}-token sequence + "
            f"{(mem.activations + mem.overhead) / cm.GIB:.1f} activations and runtime); "
            f"{gpu.key} offers {mem.budget / cm.GIB:.1f} GiB at gpuMemoryUtilization {cm.UTILIZATIONS[-1]}")


# ----------------------------------------------------------------------------- evaluation


#: The most TPOT headroom parc plans with (a poorly calibrated model must not halve batches).
MAX_TPOT_MARGIN = 0.25


def kind_band(res: Resolved) -> tuple[str, dict[str, Any], bool, str]:
    """``(kind, band, measured, scored)``: the calibration's band of the model's kind
    (``bands["model/dense"|"model/moe"]``, what the timing statements read), whether the
    calibration measured TPOT at all (an overall TPOT error exists), and what its bands were
    scored on (calibrate.scored_rows: ``held-out`` or ``fitted``)."""
    from parc.calibrate import model_kind, scored_rows

    cal = res.calibration if res.calibration is not None else catalog.builtin_calibration()
    bands = (cal or {}).get("bands", {}) if isinstance(cal, dict) else {}
    overall = bands.get("all", {}) if isinstance(bands, dict) else {}
    kind = model_kind(res.model)
    own = bands.get(f"model/{kind}", {}) if isinstance(bands, dict) else {}
    return (kind, own if isinstance(own, dict) else {}, isinstance(overall, dict) and bool(overall.get("tpotMedianApe")),
            scored_rows(cal))


def tpot_headroom(res: Resolved, batch: float = 1.0) -> tuple[float, str]:
    """The TPOT headroom of a plan whose forward passes run ``batch`` sequences, and why (see
    :func:`headroom_from_band`)."""
    return headroom_from_band(*kind_band(res), batch)


def headroom_from_band(kind: str, own: dict[str, Any], measured: bool, scored: str,
                       batch: float) -> tuple[float, str]:
    """h such that a prediction of (1 - h) x target is met by measured TPOT in 3 of 4 held-out
    online rows of the model's kind at the plan's load, i.e. the 75th percentile excess q of
    measured over predicted TPOT as h = q / (1 + q), none when the model is pessimistic there,
    at most MAX_TPOT_MARGIN. q is read at the load (``bands["model/dense"|"model/moe"]``): over
    every row (``tpotP75Excess``), or over the rows that ran at least n sequences per forward
    pass for each n up to ``batch`` that has MIN_BAND_ROWS of them
    (``tpotP75ExcessFrom<n>``), whichever is largest, so the headroom never shrinks as the load
    grows. MAX_TPOT_MARGIN beyond the most sequences per forward pass any row ran (``tpotMaxBatch``: the
    error there is unmeasured) and where the calibration measured TPOT but not on that kind of
    model (fewer than MIN_BAND_ROWS online rows); a calibration written before the excess was
    recorded gives its median absolute TPOT error; 0 without TPOT measurements."""
    from parc.calibrate import LOAD_FLOORS, MIN_BAND_ROWS, coverage_rows

    if not measured:
        return 0.0, ""
    rows = int(own.get("tpotRows", 0))
    if rows < MIN_BAND_ROWS:
        return MAX_TPOT_MARGIN, (f"the most parc plans with: its calibration has {rows} online "
                                 f"TPOT measurements of {kind} models, too few to know its TPOT error there")
    top = own.get("tpotMaxBatch")
    if isinstance(top, (int, float)) and batch > top:
        return MAX_TPOT_MARGIN, (f"the most parc plans with: no {scored} online row of {kind} models ran more than "
                                 f"{top:g} sequences per forward pass, so its TPOT error at {batch:.0f} is unknown")
    excess = own.get("tpotP75Excess")
    if isinstance(excess, (int, float)):
        where = f"{kind} models ({rows} rows)"
        for floor in LOAD_FLOORS:
            q = own.get(f"tpotP75ExcessFrom{floor}")
            if floor > batch or not isinstance(q, (int, float)):
                break
            if q > excess:
                excess, where = q, f"{kind} models at {floor} or more sequences per forward pass ({own.get(f'tpotRowsFrom{floor}')} rows)"
        if excess <= 0:
            return 0.0, f"measured TPOT is at most the cost model's prediction in {coverage_rows(scored)} of {where}"
        return (min(MAX_TPOT_MARGIN, excess / (1 + excess)),
                f"as measured TPOT exceeds the cost model's prediction by at most {excess * 100:.0f}% in "
                f"{coverage_rows(scored)} of {where}")
    value = own.get("tpotMedianApe")
    if isinstance(value, (int, float)) and value > 0:
        return (min(MAX_TPOT_MARGIN, float(value)),
                f"the cost model's median TPOT error on {scored} online rows of {kind} models ({rows} rows)")
    return 0.0, ""


class Latencies(Protocol):
    """What an SLO check reads of a prediction (a Timing, or a disaggregated Outcome)."""

    @property
    def ttft_s(self) -> float: ...

    @property
    def tpot_s(self) -> float: ...


class _Evaluator:
    """Memoised predictions and SLO checks for (candidate, load)."""

    def __init__(self, res: Resolved):
        self.res = res
        slo = res.spec.slo
        self.ttft = slo.ttft_ms / 1e3 if slo.ttft_ms else None
        # TPOT is planned with headroom: the target less what covers measured TPOT in 3 of 4
        # held-out online rows of the model's kind at the load (calibration bands
        # "model/dense|moe"), so a plan at the edge still meets the target where the model errs
        # as it usually does in the optimistic direction (README "How parc decides")
        self.tpot_target = slo.tpot_ms / 1e3 if slo.tpot_ms else None
        from parc.calibrate import LOAD_FLOORS

        self._band = kind_band(res)
        top = self._band[1].get("tpotMaxBatch")
        self._top = float(top) if isinstance(top, (int, float)) else math.inf
        self._floors = LOAD_FLOORS
        self._headroom: dict[tuple[int, bool], float] = {}
        self.objective = slo.objective
        # one Service spreads requests evenly: without a Gateway for weighted routing, every
        # replica is planned at the same load
        self.even = res.spec.deploy.kubernetes.gateway is None
        # keyed by what a prediction depends on (see _phys): pools of the same hardware share them
        self.cache: dict[tuple[int, float], cm.Timing] = {}
        self.max_ok: dict[int, int] = {}
        self.best: dict[int, float | None] = {}
        self.prepared: dict[tuple[int, int], cm.Prepared] = {}
        self._ids: dict[Candidate, int] = {}
        self._keys: dict[tuple[object, ...], int] = {}
        # see _search_cost: (price, TPOT, candidate, replicas) offers by candidate list and load
        self.cheapest: dict[tuple[int, int], tuple[float, float, Candidate, int] | None] = {}
        self.lists: dict[tuple[int, ...], int] = {}  # a candidate list (by object ids) -> its number

    def headroom(self, c: Candidate, load: float) -> float:
        """The TPOT headroom of ``c`` at ``load`` requests per replica (see headroom_from_band)."""
        batch = c.shape.forward_batch(load)
        # it changes only at the load floors and past the most measured batch
        key = (bisect.bisect_right(self._floors, batch), batch > self._top)
        h = self._headroom.get(key)
        if h is None:
            h = self._headroom[key] = headroom_from_band(*self._band, batch)[0]
        return h

    def tpot_limit(self, c: Candidate, load: float) -> float:
        """The TPOT ``c`` must meet at ``load``: the target less the headroom there (inf
        without a target)."""
        return math.inf if self.tpot_target is None else self.tpot_target * (1 - self.headroom(c, load))

    def tpot_miss(self, c: Candidate, load: float, tpot_s: float) -> str:
        """Why ``tpot_s`` misses the TPOT limit at ``load`` ("" when it meets it)."""
        if self.tpot_target is None or tpot_s <= self.tpot_limit(c, load):
            return ""
        h = self.headroom(c, load)
        return (f"TPOT {tpot_s * 1e3:.1f} ms > target {self.tpot_target * 1e3:.1f} ms"
                + (f" less {h * 100:.0f}% headroom" if h else ""))

    def _phys(self, c: Candidate) -> int:
        """An id for everything ``c``'s predictions depend on: the shape, chunk budgets, the
        pool's hardware and the engine's efficiency factors, not the pool's name, scheduler or
        price, nor the engine's name (engines with the same factors and KV admission predict the
        same). A fleet of many pools of a few GPU types is costed once per type (the solver's cost
        grows with distinct pools), and engines that cost alike once."""
        i = self._ids.get(c)
        if i is None:
            p = c.pool
            hw = (p.gpu.key, p.nodes, p.gpus_per_node, p.intra_node, p.nvlink_domain, p.inter_node, p.inter_node_gbps)
            ctx = c.ctx
            key = (c.shape, c.max_load, tuple((ch.tokens, ch.max_load) for ch in c.chunks), hw,
                   ctx.arch.key, ctx.checkpoint, ctx.kv_precision, ctx.kernel, ctx.factors,
                   ctx.input_tokens, ctx.output_tokens)
            i = self._ids[c] = self._keys.setdefault(key, len(self._keys))
        return i

    def timing(self, c: Candidate, load: float) -> cm.Timing:
        """Predictions at ``load`` with the prefill chunk budget that serves the objective
        best there (among the budgets whose activations leave room for the load)."""
        k = (self._phys(c), load)
        t = self.cache.get(k)
        if t is None:
            need = math.ceil(load)
            opts = [ch for ch in c.chunks if ch.max_load >= need] or [c.chunks[0]]
            t = self._pick(c, load, [self._at(c, ch.tokens, load) for ch in opts])
            self.cache[k] = t
        return t

    def _pick(self, c: Candidate, load: float, options: list[cm.Timing]) -> cm.Timing:
        """The chunk budget that serves the objective best at one load; a larger budget only
        where it gains more than 1% (it costs activation memory)."""
        key = functools.partial(self._chunk_key, c, load)
        best = min(options, key=key)
        miss = key(best)[0]
        for t in sorted(options, key=lambda t: t.batched_tokens):
            if key(t)[0] != miss:
                continue
            if self.objective == "latency":
                near = t.tpot_s <= best.tpot_s * 1.01 and t.ttft_s <= best.ttft_s * 1.01
            else:
                near = t.throughput >= best.throughput * 0.99
            if near:
                return t
        return best  # pragma: no cover - best is near itself

    def prepare(self, c: Candidate, tokens: int) -> cm.Prepared:
        """``c`` prepared for predictions with a chunk budget of ``tokens`` (memoised)."""
        pk = (self._phys(c), tokens)
        prep = self.prepared.get(pk)
        if prep is None:
            prep = self.prepared[pk] = cm.prepare(c.ctx, c.shape, tokens)
        return prep

    def _at(self, c: Candidate, tokens: int, load: float) -> cm.Timing:
        return cm.predict_prepared(self.prepare(c, tokens), load)

    def _chunk_key(self, c: Candidate, load: float, t: cm.Timing) -> tuple[float, ...]:
        """Order of chunk budgets at one load: those meeting the SLO first; then the
        objective's number (TPOT then TTFT for latency, throughput otherwise); smaller budgets
        (less activation memory) break ties."""
        miss = (self.ttft is not None and t.ttft_s > self.ttft) or t.tpot_s > self.tpot_limit(c, load)
        if self.objective == "latency":
            return (miss, round(t.tpot_s, 9), round(t.ttft_s, 9), t.batched_tokens)
        return (miss, -round(t.throughput, 6), round(t.tpot_s, 9), t.batched_tokens)

    def fits(self, c: Candidate, load: float) -> bool:
        return math.ceil(load) <= c.max_load and math.isfinite(self.timing(c, load).ttft_s)

    def slo_ok(self, c: Candidate, load: float, t: Latencies) -> bool:
        return math.isfinite(t.ttft_s) and (self.ttft is None or t.ttft_s <= self.ttft) and \
            t.tpot_s <= self.tpot_limit(c, load)

    def _meets(self, c: Candidate, load: float) -> bool:
        """Memory holds ``load`` and the SLO is met at it with some chunk budget: the same as
        checking the budget timing() would pick, since _chunk_key puts budgets meeting the SLO
        first, but it stops at the first budget that meets it."""
        need = math.ceil(load)
        return any(self.slo_ok(c, load, self._at(c, ch.tokens, load)) for ch in c.chunks if ch.max_load >= need)

    def max_ok_load(self, c: Candidate) -> int:
        """Largest whole load at which memory holds and the SLO is met (0 if none): the most
        any chunk budget meets within the load its activations leave room for. TTFT and TPOT
        grow with load for a budget, so a budget that misses one past the best so far cannot
        beat it (one prediction), and one that meets it is searched from there (binary)."""
        pk = self._phys(c)
        hit = self.max_ok.get(pk)
        if hit is not None:
            return hit
        best = 0
        for ch in c.chunks:
            # beyond the drain limit TTFT is infinite: no load there meets the SLO
            hi = min(ch.max_load, c.max_load, cm.drain_limit(self.prepare(c, ch.tokens)))
            if hi <= best:
                continue
            t = self._at(c, ch.tokens, best + 1)
            if self.slo_ok(c, best + 1, t):
                best = self._edge(c, ch.tokens, best + 1, t, hi)
        self.max_ok[pk] = best
        return best

    def _margin(self, c: Candidate, load: float, t: cm.Timing) -> float:
        """How far ``t`` is inside the SLO at ``load``: the smaller share of a target left
        (negative outside it, -inf where prefill never drains)."""
        if not math.isfinite(t.ttft_s):
            return -math.inf
        limit = self.tpot_limit(c, load)
        m = 1 - t.tpot_s / limit if math.isfinite(limit) else math.inf
        return min(m, 1 - t.ttft_s / self.ttft) if self.ttft is not None else m

    def _edge(self, c: Candidate, tokens: int, lo: int, t_lo: cm.Timing, hi: int) -> int:
        """The largest load in [lo, hi] meeting the SLO with chunk budget ``tokens``, given that
        ``lo`` (timing ``t_lo``) meets it: ``hi`` first (memory is often the limit), else the
        bracket narrows where the margin to the targets is interpolated to cross zero (regula
        falsi, Anderson-Bjorck: the end that stays twice has its margin scaled by how much the
        other end's shrank, halved where that does not shrink it), bisecting where a margin is
        infinite. The SLO holds up to a load and not beyond it (TTFT and TPOT grow with the
        load for a budget; tests/test_solver_shortcuts.py), so this is the load a bisection
        finds, in fewer predictions (the margin is concave in the load: TPOT saturates, and the
        headroom steps at the load floors, so plain regula falsi would creep from one end)."""
        t = self._at(c, tokens, hi)
        if self.slo_ok(c, hi, t):
            return hi
        m_lo, m_bad, bad, side = self._margin(c, lo, t_lo), self._margin(c, hi, t), hi, 0
        while bad - lo > 1:
            if math.isfinite(m_lo) and math.isfinite(m_bad) and m_lo > m_bad:
                g = min(max(lo + round((bad - lo) * m_lo / (m_lo - m_bad)), lo + 1), bad - 1)
            else:
                g = (lo + bad) // 2
            t = self._at(c, tokens, g)
            m = self._margin(c, g, t)
            if self.slo_ok(c, g, t):
                if side > 0:
                    m_bad *= _shrink(m, m_lo)
                lo, m_lo, side = g, m, 1
            else:
                if side < 0:
                    m_lo *= _shrink(m, m_bad)
                bad, m_bad, side = g, m, -1
        return lo

    def ok(self, c: Candidate, load: float) -> bool:
        """Memory holds the load and the SLO targets are met at it: a whole load up to
        max_ok_load (a load of 1, while that is unknown, checked directly: max_ok_load is 0
        exactly when it fails)."""
        if load == math.ceil(load) and (load != 1 or self._phys(c) in self.max_ok):
            return load <= self.max_ok_load(c)
        return self._meets(c, load)

    def best_load(self, c: Candidate) -> float | None:
        """Load that maximises throughput within memory and SLO (None if even 1 fails)."""
        pk = self._phys(c)
        if pk not in self.best:
            self.best[pk] = self._best_load(c)
        return self.best[pk]

    def _best_load(self, c: Candidate) -> float | None:
        lo = self.max_ok_load(c)
        if lo == 0:
            return None
        best, best_thr = lo, self.timing(c, lo).throughput
        # a load L yields at most L / TPOT(L) <= L / TPOT(1) output tokens/s (TPOT grows with
        # load for every chunk budget): smaller loads that cannot beat the best are not costed
        tpot_1 = min(self._at(c, ch.tokens, 1).tpot_s for ch in c.chunks) if lo > 1 else 0.0
        probe = lo
        while probe > 1:  # throughput can peak below the SLO edge
            probe //= 2
            if probe / tpot_1 <= best_thr:
                break
            thr = self.timing(c, probe).throughput
            if thr > best_thr:
                best, best_thr = probe, thr
        return float(best)

    def solution(self, groups: list[tuple[Candidate, int, float]]) -> Solution:
        slo = self.ttft is not None or self.tpot_target is not None
        gs = tuple(Group(c, r, load, self.timing(c, load), self.max_ok_load(c) if slo else 0)
                   for c, r, load in groups if r > 0)
        ttft = max(g.timing.ttft_s for g in gs)
        tpot = max(g.timing.tpot_s for g in gs)
        thr = sum(g.replicas * g.timing.throughput for g in gs)
        misses = []
        if self.ttft is not None and ttft > self.ttft:
            misses.append(f"TTFT {ttft * 1e3:.0f} ms > target {self.ttft * 1e3:.0f} ms")
        misses.extend(dict.fromkeys(m for g in gs if (m := self.tpot_miss(g.cand, g.load, g.timing.tpot_s))))
        min_thr = self.res.spec.slo.min_throughput_tokens_per_second
        if min_thr is not None and thr < min_thr:
            misses.append(f"throughput {thr:.0f} tokens/s < target {min_thr:.0f}")
        for g in gs:
            if not self.fits(g.cand, g.load):
                misses.append(f"{g.cand.label} holds {g.cand.max_load} sequences, load is {math.ceil(g.load)}")
        return Solution(gs, ttft, tpot, thr, not misses, tuple(misses))


def _shrink(new: float, old: float) -> float:
    """Anderson-Bjorck's scale for the end of a bracket that stays: 1 - new / old of the end
    that moved (0.5 where that is not in (0, 1) or not finite)."""
    k = 1 - new / old if math.isfinite(new) and math.isfinite(old) and old else 0.5
    return k if 0 < k < 1 else 0.5


def _replica_options(c: Candidate, allowed: set[int] | None, max_gpus: int | None,
                     every: bool = False) -> list[int]:
    """Replica counts worth trying for ``c``: the most that fit (more replicas never hurt
    latency or throughput in the model), every count when a GPU cap makes it a knapsack,
    or the counts the spec allows."""
    top = c.max_replicas
    if max_gpus is not None:
        top = min(top, max_gpus // c.shape.gpus)
    if allowed is not None:
        return sorted(r for r in allowed if 1 <= r <= top)
    if every:
        return list(range(1, top + 1))
    return [top] if top >= 1 else []


def search(res: Resolved, cands: list[Candidate], pinned: Candidate | None = None,
           ev: _Evaluator | None = None) -> list[Solution]:
    """Best solutions under the objective (best first); ``pinned`` forces its pool's shape."""
    ev = ev or _Evaluator(res)
    objective = res.spec.slo.objective
    conc = res.spec.workload.concurrency
    cons = res.spec.constraints
    allowed_r = _allowed(cons.replicas)
    by_engine: dict[str, dict[str, list[Candidate]]] = {}
    for c in cands:
        if pinned is not None and c.pool.name == pinned.pool.name and c != pinned:
            continue
        if pinned is not None and c.engine != pinned.engine:
            continue
        by_engine.setdefault(c.engine, {}).setdefault(c.pool.name, []).append(c)
    out: list[Solution] = []
    for pools in by_engine.values():
        if objective == "throughput" or conc is None:
            out += _search_throughput(ev, pools, allowed_r, cons.max_gpus, conc)
        elif objective == "latency":
            out += _search_latency(ev, pools, allowed_r, cons.max_gpus, conc)
        else:
            out += _search_cost(ev, pools, allowed_r, cons.max_gpus, conc)
    return rank(out, objective)


#: The latency objective's rule (README "How parc decides"): placements whose TPOT is within
#: TPOT_WINDOW of the best TPOT are equally fast; among them, those whose TTFT is within
#: TTFT_WINDOW of the best TTFT there; among those, the fewest GPUs, then TPOT, then TTFT.
TPOT_WINDOW = 0.05
TTFT_WINDOW = 0.05


def rank(sols: list[Solution], objective: str) -> list[Solution]:
    """``sols`` best first under ``objective``; for latency with the windows above, computed
    over the solutions that meet the SLO."""
    if objective != "latency":
        return sorted(sols, key=lambda s: s.key(objective))
    ok = [s for s in sols if s.meets_slo]
    t_cap = min((s.tpot_s for s in ok), default=math.inf) * (1 + TPOT_WINDOW) * (1 + 1e-12)
    f_cap = min((s.ttft_s for s in ok if s.tpot_s <= t_cap), default=math.inf) * (1 + TTFT_WINDOW) * (1 + 1e-12)

    def key(s: Solution) -> tuple[float, ...]:
        inside = s.meets_slo and s.tpot_s <= t_cap and s.ttft_s <= f_cap
        return (0.0 if s.meets_slo else 1.0, 0.0 if inside else 1.0, float(s.gpus) if inside else 0.0,
                round(s.tpot_s, 12), round(s.ttft_s, 12), float(s.gpus))

    return sorted(sols, key=key)


def _search_throughput(ev: _Evaluator, pools: dict[str, list[Candidate]], allowed_r: set[int] | None,
                       max_gpus: int | None, conc: int | None) -> list[Solution]:
    # per pool: (gpus, throughput, choice) options; choice = (cand, replicas, load)
    options: list[list[tuple[int, float, tuple[Candidate, int, float]]]] = []
    for cs in pools.values():
        opts = []
        for c in cs:
            load = ev.best_load(c)
            if load is None:
                continue
            thr = ev.timing(c, load).throughput
            for r in _replica_options(c, allowed_r, max_gpus, every=max_gpus is not None):
                opts.append((r * c.shape.gpus, r * thr, (c, r, load)))
        options.append(opts)
    budget = max_gpus if max_gpus is not None else sum(max((o[0] for o in opts), default=0) for opts in options)
    best = _knapsack(options, budget, 0, 1)
    most = sum(max((c[1] * math.floor(c[2]) for _, _, c in opts), default=0) for opts in options)
    if conc is not None and most >= conc and not any(held >= conc for held, _, _ in best[:8]):
        # the most throughput holds too few requests, though the pools can hold them: search
        # again, keeping per GPU count the best choice for each number of requests held (in
        # units, so at most 16 levels)
        best = _knapsack(options, budget, conc, max(1, math.ceil(conc / 16)))
    sols = []
    for _, thr, chosen in best[:8]:
        if not chosen:
            continue
        if ev.even and sum(1 for c, _, _ in chosen if c.pool.scheduler == "kubernetes") > 1:
            chosen = _even(ev, chosen)
        sol = ev.solution(list(chosen))
        if conc is not None:
            capacity = sum(r * load for _, r, load in chosen)
            if capacity < conc:
                sol = Solution(sol.groups, sol.ttft_s, sol.tpot_s, sol.throughput, False,
                               sol.misses + (f"sustains {capacity:.0f} concurrent requests within the SLO, "
                                             f"workload.concurrency is {conc}",))
        sols.append(sol)
    return sols


def _knapsack(options: list[list[tuple[int, float, tuple[Candidate, int, float]]]], budget: int, floor: int,
              unit: int) -> list[tuple[int, float, tuple[tuple[Candidate, int, float], ...]]]:
    """The throughput objective's knapsack over pools: one option (GPUs, throughput, choice)
    or none per pool within ``budget`` GPUs. Without a floor, the best throughput per GPU
    count; with one, per GPU count and number of requests held (in ``unit``s, up to the floor),
    so that a lower-throughput choice holding more requests survives. Returns (requests held,
    throughput, choices), those holding the floor first, each by throughput."""
    cap = -(-floor // unit)
    # keyed by GPUs used, or (GPUs used, level of requests held) with a floor
    best: dict[Any, tuple[float, int, tuple[tuple[Candidate, int, float], ...]]] = {(0, 0) if floor else 0: (0.0, 0, ())}
    for opts in options:
        # of a pool's options with the same GPUs only the most throughput can win, or with a
        # floor those that hold more requests than every faster one
        front: dict[int, list[tuple[int, float, tuple[Candidate, int, float]]]] = {}
        for o in sorted(opts, key=lambda o: -o[1]):
            kept = front.setdefault(o[0], [])
            if not kept or (floor and o[2][1] * math.floor(o[2][2]) > max(k[2][1] * math.floor(k[2][2]) for k in kept)):
                kept.append(o)
        opts = [o for kept in front.values() for o in kept]
        nxt = dict(best)
        for key, (thr, held, chosen) in best.items():
            used = key[0] if floor else key
            for g, t, choice in opts:
                b = used + g
                if b > budget:
                    continue
                more = held + choice[1] * math.floor(choice[2])
                k = (b, min(cap, more // unit)) if floor else b
                cur = nxt.get(k)
                if cur is None or thr + t > cur[0] + 1e-9:
                    nxt[k] = (thr + t, more, chosen + (choice,))
        best = nxt
    found = [(held, thr, chosen) for thr, held, chosen in best.values() if chosen]
    return sorted(found, key=lambda v: (v[0] < floor, -v[1]))


def _even(ev: _Evaluator, chosen: tuple[tuple[Candidate, int, float], ...]) -> tuple[tuple[Candidate, int, float], ...]:
    """The same load on every replica (what one Service's even spreading gives): the common
    load, at most what every group holds within the SLO, that maximises the total throughput."""
    top = min(ev.max_ok_load(c) for c, _, _ in chosen)
    loads = {float(top)} | {load for _, _, load in chosen if load <= top}
    probe = top
    while probe > 1:
        probe //= 2
        loads.add(float(probe))

    def total(load: float) -> float:
        return sum(r * ev.timing(c, load).throughput for c, r, _ in chosen)

    best = max(sorted(loads), key=total)
    return tuple((c, r, best) for c, r, _ in chosen)


def _loads(conc: int, max_replicas: int) -> list[int]:
    """Distinct per-replica loads ceil(C / R) for R = 1 .. max_replicas."""
    out = set()
    r = 1
    while r <= max_replicas:
        load = -(-conc // r)
        out.add(load)
        # jump to the last R with the same ceil
        r = max(r + 1, (conc - 1) // max(load - 1, 1) + 1 if load > 1 else max_replicas + 1)
    return sorted(out)


def _supply(ev: _Evaluator, pools: dict[str, list[Candidate]], allowed_r: set[int] | None,
            max_gpus: int | None, load: int) -> int:
    """Most replicas the pools can run with each pool on one shape, counting only shapes
    that hold ``load`` within memory and the SLO (0: any shape)."""
    return sum(max((max(_replica_options(c, allowed_r, max_gpus) or [0]) for c in cs
                    if load == 0 or ev.max_ok_load(c) >= load), default=0) for cs in pools.values())


class _SupplyTable:
    """:func:`_supply` for many loads: per pool its shapes sorted by the load they hold within
    the SLO, with the most replicas among those holding at least that much (a suffix
    maximum), so each load is a binary search per pool."""

    def __init__(self, ev: _Evaluator, pools: dict[str, list[Candidate]], allowed_r: set[int] | None,
                 max_gpus: int | None):
        self.tables: list[tuple[list[int], list[int]]] = []
        for cs in pools.values():
            rows = sorted((ev.max_ok_load(c), max(_replica_options(c, allowed_r, max_gpus) or [0])) for c in cs)
            oks = [ok for ok, _ in rows]
            best = [0] * (len(rows) + 1)
            for i in range(len(rows) - 1, -1, -1):
                best[i] = max(best[i + 1], rows[i][1])
            self.tables.append((oks, best))

    def __call__(self, load: int) -> int:
        return sum(best[bisect.bisect_left(oks, load)] for oks, best in self.tables)


def _search_latency(ev: _Evaluator, pools: dict[str, list[Candidate]], allowed_r: set[int] | None,
                    max_gpus: int | None, conc: int) -> list[Solution]:
    """The latency objective's placements (see :func:`rank` for the rule), in three passes
    over the distinct per-replica loads L (ceil(C / R) for R replicas):

    1. the best TPOT: at each L the smallest TPOT threshold at which the pools supply
       ceil(C / L) replicas (a sweep); the minimum over L is exact, since every placement
       with R replicas runs each at L = ceil(C / R);
    2. the best TTFT among placements within the TPOT window, by the same sweep on TTFT;
    3. at each L, the fewest GPUs that supply ceil(C / L) replicas from shapes inside both
       windows (greedy by GPUs per replica, optimal as every replica counts the same), plus
       the fastest placement of that L for the alternatives."""
    levels: list[tuple[int, int, list[list[tuple[float, float, Candidate, int]]], float]] = []
    best_tpot = math.inf
    last_tpot: dict[Candidate, float] = {}  # TPOT at the last load evaluated (TPOT grows with load)
    supply = _SupplyTable(ev, pools, allowed_r, max_gpus)
    edge = {c: ev.max_ok_load(c) for cs in pools.values() for c in cs}
    reps = {c: _replica_options(c, allowed_r, max_gpus) for c in edge}
    # per pool, the shapes that hold the load within the SLO and may still come within the
    # TPOT window: the loads ascend and the window only narrows, so the list only shrinks
    holding = list(pools.values())
    for load in _loads(conc, max(_supply(ev, pools, allowed_r, max_gpus, 0), 1)):
        need = -(-conc // load)
        # cheap pre-check (no predictions): can the pools supply `need` replicas at all?
        if supply(load) < need:
            continue
        # a shape whose TPOT at a smaller load was outside the window is outside it here and at
        # every larger load (TPOT grows with the load)
        cap = best_tpot * (1 + TPOT_WINDOW)
        had = any(holding)
        holding = [[c for c in cs if edge[c] >= load and last_tpot.get(c, 0.0) <= cap] for cs in holding]
        if had and not any(holding):
            break  # bound: no shape can come within the window at this or any larger load
        rows: list[list[tuple[float, float, Candidate, int]]] = []
        for cs in holding:
            row = []
            for c in cs:
                t = ev.timing(c, load)
                last_tpot[c] = t.tpot_s
                row += [(t.tpot_s, t.ttft_s, c, r) for r in reps[c]]
            rows.append(row)
        t1 = _sweep(rows, need, 0, math.inf)
        if t1 is None:
            continue
        levels.append((load, need, rows, t1))
        best_tpot = min(best_tpot, t1)
    if not levels:
        return []
    tpot_cap = best_tpot * (1 + TPOT_WINDOW)
    ttfts = [_sweep(rows, need, 1, tpot_cap) for _, need, rows, _ in levels]
    best_ttft = min((x for x in ttfts if x is not None), default=math.inf)
    ttft_cap = best_ttft * (1 + TTFT_WINDOW)
    sols: list[Solution] = []
    for _, need, rows, t1 in levels:
        picks = [_threshold_pick(rows, need, max_gpus, t1)]
        if best_ttft < math.inf:
            picks.append(_fewest_gpus(rows, need, tpot_cap, ttft_cap, max_gpus, allowed_r))
        for chosen in picks:
            if chosen is None:
                continue
            real = float(-(-conc // sum(r for _, r in chosen)))
            sols.append(ev.solution([(c, r, real) for c, r in chosen]))
    return sols


def _sweep(rows: list[list[tuple[float, float, Candidate, int]]], need: int, axis: int,
           tpot_cap: float) -> float | None:
    """Smallest threshold on option field ``axis`` (0 TPOT, 1 TTFT), among options with TPOT
    <= ``tpot_cap``, at which the pools, each taking its option with the most replicas under
    the threshold, supply ``need`` replicas. O(n log n): the options sorted once, keeping per
    pool the most replicas seen so far and their sum."""
    best = [0] * len(rows)
    total = 0
    options = sorted((o[1] if axis else o[0], i, o[3]) for i, row in enumerate(rows) for o in row if o[0] <= tpot_cap)
    for value, i, r in options:
        if r > best[i]:
            total += r - best[i]
            best[i] = r
        if total >= need:
            return value
    return None


def _threshold_pick(rows: list[list[tuple[float, float, Candidate, int]]], need: int,
                    max_gpus: int | None, t1: float | None = None) -> list[tuple[Candidate, int]] | None:
    """The fastest placement supplying ``need`` replicas: the smallest TPOT threshold (``t1``
    when the caller has it), then the smallest TTFT threshold under it; each pool takes its
    option with the most replicas under both."""
    t1 = _sweep(rows, need, 0, math.inf) if t1 is None else t1
    t2 = _sweep(rows, need, 1, t1) if t1 is not None else None
    if t1 is None or t2 is None:
        return None
    chosen, gpus = [], 0
    for row in rows:
        fit = [x for x in row if x[0] <= t1 and x[1] <= t2]
        if fit:
            _, _, c, r = max(fit, key=lambda x: (x[3], -x[2].shape.gpus * x[3], -x[0], -x[1]))
            chosen.append((c, r))
            gpus += r * c.shape.gpus
    if max_gpus is not None and gpus > max_gpus:
        return None
    return chosen


def _fewest_gpus(rows: list[list[tuple[float, float, Candidate, int]]], need: int, tpot_cap: float,
                 ttft_cap: float, max_gpus: int | None,
                 allowed_r: set[int] | None) -> list[tuple[Candidate, int]] | None:
    """``need`` replicas from shapes within both windows on the fewest GPUs: each pool's
    shape with the fewest GPUs per replica (then TPOT, TTFT), pools filled cheapest first.
    With ``constraints.replicas`` (not every count allowed), the windowed threshold pick."""
    inside = [[o for o in row if o[0] <= tpot_cap and o[1] <= ttft_cap] for row in rows]
    if allowed_r is not None:
        return _threshold_pick(inside, need, max_gpus)
    per_pool: list[tuple[int, float, float, Candidate, int]] = []
    for row in inside:
        if row:
            tpot, ttft, c, _ = min(row, key=lambda o: (o[2].shape.gpus, o[0], o[1]))
            rmax = max(o[3] for o in row if o[2] == c)
            per_pool.append((c.shape.gpus, tpot, ttft, c, rmax))
    chosen: list[tuple[Candidate, int]] = []
    left, gpus = need, 0
    for g, _, _, c, rmax in sorted(per_pool, key=lambda x: x[:3]):
        if left <= 0:
            break
        r = min(rmax, left)
        chosen.append((c, r))
        left -= r
        gpus += r * g
    if left > 0 or (max_gpus is not None and gpus > max_gpus):
        return None
    return chosen


def _cheapest(ev: _Evaluator, shapes_: list[tuple[int, int, Candidate]], load: int,
              max_gpus: int | None) -> tuple[float, float, Candidate, int] | None:
    """A pool's offer at ``load`` (price of a replica, TPOT, candidate, most replicas): of its
    shapes (by GPUs per replica) holding the load within the SLO, those with the fewest GPUs,
    and of these the first with the best TPOT (predictions only for the ties on GPUs)."""
    pick: Candidate | None = None
    fewest, tpot = 0, math.inf
    for g, _, c in shapes_:
        if pick is not None and g > fewest:
            break
        if ev.max_ok_load(c) >= load:
            t = ev.timing(c, load).tpot_s
            if pick is None or t < tpot:
                pick, fewest, tpot = c, g, t
    if pick is None:
        return None
    return _replica_price(pick), tpot, pick, max(_replica_options(pick, None, max_gpus) or [0])


def _search_cost(ev: _Evaluator, pools: dict[str, list[Candidate]], allowed_r: set[int] | None,
                 max_gpus: int | None, conc: int) -> list[Solution]:
    sols: list[Solution] = []
    # per pool, its shapes by GPUs per replica; the load each holds within the SLO is found
    # only for the shapes a level reaches (the fewest GPUs that still hold it)
    by_gpus = [sorted(((c.shape.gpus, i, c) for i, c in enumerate(cs)), key=lambda x: x[:2]) for cs in pools.values()]
    # a pool's cheapest shape at a load is the same in every search that does not pin that pool
    # (the alternatives run one search per pinned shape): memoised per candidate list and load
    keys = [ev.lists.setdefault(tuple(map(id, cs)), len(ev.lists)) for cs in pools.values()]
    for load in _loads(conc, max(_supply(ev, pools, allowed_r, max_gpus, 0), 1)):
        need = -(-conc // load)
        offers: list[tuple[float, float, Candidate, int]] = []
        for key, shapes_ in zip(keys, by_gpus):
            k = (key, load)
            offer = ev.cheapest[k] if k in ev.cheapest else ev.cheapest.setdefault(k, _cheapest(ev, shapes_, load,
                                                                                                max_gpus))
            if offer is not None:
                offers.append(offer)
        offers.sort(key=lambda o: (o[0], o[2].shape.gpus, o[1]))
        chosen: list[tuple[Candidate, int, float]] = []
        left = need
        for _, _, c, top in offers:
            if left <= 0:
                break
            take = min(top, left)
            if allowed_r is not None:
                fits = sorted(r for r in allowed_r if r >= take and r <= top)
                if not fits:
                    continue
                take = fits[0]
            chosen.append((c, take, 0.0))
            left -= take
        if left > 0 or not chosen:
            continue
        reps = sum(r for _, r, _ in chosen)
        sol = ev.solution([(c, r, float(-(-conc // reps))) for c, r, _ in chosen])
        if max_gpus is not None and sol.gpus > max_gpus:
            continue
        sols.append(sol)
    return sols


def solve(res: Resolved, top: int = 5) -> Result:
    """Find the best placement and up to ``top`` alternatives, or raise InfeasibleError."""
    cands, rejs = enumerate_candidates(res)
    objective = res.spec.slo.objective
    if not cands:
        exc = InfeasibleError(*_why_nothing_fits(res, rejs))
        mem = [r for r in rejs if r.kind == "memory"]
        exc.closest_rejection = max(mem, key=lambda r: r.shape.gpus) if mem else (rejs[0] if rejs else None)
        exc.rejections = rejs
        raise exc
    ev = _Evaluator(res)
    sols = search(res, cands, ev=ev)
    mode = res.spec.engine.disaggregation
    split: list[Solution] = []
    if mode != "off":
        from parc import disaggregate

        split = disaggregate.search(ev, cands)
        if mode == "on" and not any(s.meets_slo for s in split):
            exc = InfeasibleError(*disaggregate.why_none(res, cands, split))
            exc.closest_solution = split[0] if split else None
            exc.rejections = rejs
            raise exc
    aggregated = next((s for s in sols if s.meets_slo), None)
    if split:
        sols = rank((sols if mode == "auto" else []) + split, objective)
    feasible = [s for s in sols if s.meets_slo]
    if not feasible:
        exc = InfeasibleError(*_why_slo(res, cands, sols))
        # the closest: the best miss, else the fastest shape with one request
        exc.closest_solution = sols[0] if sols else ev.solution(
            [(min(cands, key=lambda c: ev.timing(c, 1).tpot_s), 1, 1.0)])
        exc.rejections = rejs
        raise exc
    best = feasible[0]
    # alternatives: the best solution with each other candidate pinned on its pool
    seen: set[tuple[object, ...]] = {best.signature(), tuple(x[1:] for x in best.signature())}
    alts: list[Solution] = []
    ranked = _ranked(ev, cands, objective)
    tried: set[tuple[object, ...]] = {(g.cand.pool.name, g.cand.shape) for g in best.groups}
    searches = 0
    for c in ranked:
        if len(alts) >= top or searches >= 3 * top + 3:
            break
        if (c.pool.name, c.shape) in tried:
            continue  # the same placement on another engine predicts the same
        tried.add((c.pool.name, c.shape))
        searches += 1
        for s in search(res, cands, pinned=c, ev=ev)[:1]:
            shape_only = tuple(x[1:] for x in s.signature())
            if s.signature() not in seen and shape_only not in seen:
                seen.add(s.signature())
                seen.add(shape_only)
                alts.append(s)
    if mode != "off":
        # the best plan of the other kind, and the next disaggregated splits
        other = aggregated if best.disaggregated else next((s for s in split if s.meets_slo), None)
        for s in ([other] if other is not None else []) + [s for s in split if s.meets_slo]:
            if s.signature() not in seen and len(alts) < top + 2:
                seen.add(s.signature())
                alts.append(s)
    alts = rank(alts, objective)
    # memory/SLO rejections of candidates that fit but never meet the SLO
    extra = []
    for c in cands:
        if not ev.ok(c, 1):
            t = ev.timing(c, 1)
            extra.append(Rejection(c.engine, c.pool.name, c.shape, "slo", _slo_reason(ev, c, t)))
    why = ""
    if mode != "off":
        from parc import disaggregate

        why = disaggregate.explain(best, aggregated, next((s for s in split if s.meets_slo), None), objective, mode)
    return Result(best, tuple(alts[:top]), tuple(rejs + extra), objective,
                  None if best.disaggregated else check_recipe(res, cands, rejs + extra, best, ev), why)


def check_recipe(res: Resolved, cands: list[Candidate], rejs: list[Rejection], best: Solution,
                 ev: _Evaluator) -> RecipeCheck | None:
    """Compare the chosen placement with the engine's recipe for the model and GPU, if any."""
    g = best.groups[0]
    pool = g.cand.pool
    recipe = recipe_for(g.cand.engine, res.model.key, pool.gpu.architecture, res.spec.slo.objective, pool.nodes)
    if recipe is None:
        return None
    shape = cm.Shape(recipe.tp, recipe.pp, recipe.ep, recipe.dpa)
    if g.cand.shape == shape:
        return RecipeCheck(recipe, True, best, "")
    hit = next((c for c in cands if c.engine == g.cand.engine and c.pool == pool and c.shape == shape), None)
    if hit is None:
        why = next((r.reason for r in rejs if r.engine == g.cand.engine and r.pool == pool.name and r.shape == shape),
                   "the layout does not fit this pool")
        return RecipeCheck(recipe, False, None, why)
    sols = search(res, cands, pinned=hit, ev=ev)
    if not sols or not sols[0].meets_slo:
        return RecipeCheck(recipe, False, sols[0] if sols else None,
                           "it misses the SLO here: " + "; ".join(sols[0].misses) if sols else "no solution")
    return RecipeCheck(recipe, False, sols[0], "")


def _ranked(ev: _Evaluator, cands: list[Candidate], objective: str) -> Iterator[Candidate]:
    """The candidates by how well each does alone, best first: throughput at its best load on
    the whole pool; TPOT then TTFT with one request; for cost, the price (or GPUs) of a replica,
    then TPOT with one request, predicted only for the ties the caller reaches."""
    if objective == "throughput":
        yield from sorted(cands, key=lambda c: -ev.timing(c, ev.best_load(c) or 1).throughput * c.max_replicas)
    elif objective == "cost":
        ties: dict[tuple[float, int], list[Candidate]] = {}
        for c in cands:
            ties.setdefault((_replica_price(c), c.shape.gpus), []).append(c)
        for k in sorted(ties):
            yield from sorted(ties[k], key=lambda c: ev.timing(c, 1).tpot_s)
    else:
        def alone(c: Candidate) -> tuple[float, float]:
            t = ev.timing(c, 1)
            return (t.tpot_s, t.ttft_s)

        yield from sorted(cands, key=alone)


def _replica_price(c: Candidate) -> float:
    """What one replica of ``c`` costs per hour (costPerGpuHour x GPUs), or its GPUs when the
    pool is unpriced (validation makes every pool priced or none under objective cost)."""
    price = c.pool.cost_per_gpu_hour
    return c.shape.gpus * price if price is not None else float(c.shape.gpus)


def _slo_reason(ev: _Evaluator, c: Candidate, t: cm.Timing) -> str:
    parts = []
    if miss := ev.tpot_miss(c, 1, t.tpot_s):
        parts.append(miss)
    if ev.ttft is not None and t.ttft_s > ev.ttft:
        parts.append(f"TTFT {t.ttft_s * 1e3:.0f} ms > {ev.ttft * 1e3:.0f} ms")
    if not parts:
        parts.append(f"holds {c.max_load} sequences")
    return "misses the SLO even with one request per replica: " + ", ".join(parts)


def _why_nothing_fits(res: Resolved, rejs: list[Rejection]) -> tuple[str, list[str]]:
    mem = [r for r in rejs if r.kind == "memory"]
    arch = res.model
    prec = res.checkpoint.precision
    total = shapes.total_params(arch)
    wbytes = cm.weight_bytes_per_gpu(arch, cm.Shape(1, 1, 1, 1), res.checkpoint)
    if mem:
        biggest = max(mem, key=lambda r: r.shape.gpus)
        pool = next(p for p in res.pools if p.name == biggest.pool)
        cap = pool.gpu.memory_bytes * cm.UTILIZATIONS[-1]
        need_gpus = math.ceil(wbytes / cap)
        msg = (f"no placement fits: {arch.key} in {prec} needs ~{wbytes / 1e9:.0f} GB of weights "
               f"({total / 1e9:.0f}B parameters at {wbytes / total:.3g} bytes each as {res.checkpoint.format}); "
               "the largest replica tried, "
               f"{biggest.shape.gpus} x {pool.gpu.key} ({pool.gpu.memory_gb:g} GB each), "
               f"{biggest.reason.split(';')[0].replace('needs', 'needs')}")
        hint = (f"fix: use at least {need_gpus} GPUs of {pool.gpu.key} for one replica (more pools/nodes, "
                f"interNode for multi-node), a smaller precision, or a smaller maxContextLength")
        return msg, [f"closest: {biggest.pool} tp={biggest.shape.tp} pp={biggest.shape.pp}: {biggest.reason}", hint]
    kinds = sorted({r.kind for r in rejs})
    lines: list[str] = []
    for r in rejs:
        line = f"{r.engine} {r.pool} tp={r.shape.tp} pp={r.shape.pp} ep={r.shape.ep} dpAttention={r.shape.dpa}: {r.reason}"
        if line not in lines:
            lines.append(line)
    return f"no placement is possible ({', '.join(kinds)}); the first reasons:", lines[:5]


def _why_slo(res: Resolved, cands: list[Candidate], sols: list[Solution]) -> tuple[str, list[str]]:
    objective = res.spec.slo.objective
    if sols:
        best = sols[0]
        shape = ", ".join(f"{g.replicas} x {g.cand.label}" for g in best.groups)
        return ("no placement meets the SLO; closest: " + shape,
                ["misses: " + "; ".join(best.misses),
                 "fix: relax slo targets, lower workload.concurrency, or add GPUs"])
    ev = _Evaluator(res)
    best_c = min(cands, key=lambda c: ev.timing(c, 1).tpot_s)
    t = ev.timing(best_c, 1)
    return (f"no placement meets the SLO at objective {objective}; the fastest, {best_c.label}, gives "
            f"TPOT {t.tpot_s * 1e3:.1f} ms and TTFT {t.ttft_s * 1e3:.0f} ms with one request",
            ["fix: relax slo.tpotMs / slo.ttftMs, lower workload.concurrency, or add faster GPUs"])
