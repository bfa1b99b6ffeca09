"""The cost model: memory per GPU and time per request for one placement (DESIGN.md: Cost model).

Everything here is a pure function of (model shapes, GPU and link facts, placement, load,
efficiency factors). The solver calls it; it knows nothing of the solver or the outputs.

Units: bytes and seconds inside; GiB and ms at the edges (``Prediction``).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, fields
from typing import Any, Callable, NamedTuple

from parc import catalog
from parc.catalog import Checkpoint, GpuSpec, ModelArch, shapes
from parc.resolve import ResolvedPool

GIB = 1024**3
#: Activations travel between GPUs in 16 bits (BF16/FP16) in every engine parc emits for.
ACT_BYTES = 2.0


@dataclass(frozen=True, order=True)
class Shape:
    """One engine instance's parallel layout."""

    tp: int
    pp: int
    ep: int
    dpa: int  # data-parallel attention ranks

    @property
    def gpus(self) -> int:
        return self.tp * self.pp * self.dpa

    def forward_batch(self, load: float) -> float:
        """Sequences one forward pass of an engine rank carries at ``load`` requests per
        replica: the load over the attention-DP ranks and pipeline micro-batches (what
        TensorRT-LLM's ``max_batch_size`` counts)."""
        return load / (self.dpa * self.pp)


@dataclass(frozen=True)
class LinkCost:
    """A link class as the cost model uses it."""

    kind: str  # nvlink | pcie | network | none
    gbs: float  # achievable bandwidth per direction, GB/s (1e9 B/s), efficiency applied
    hop_us: float  # per ring-step latency (NCCL hwLat)
    base_us: float  # per collective latency (NCCL baseLat)


@dataclass(frozen=True)
class Factors:
    """Efficiency factors (calibrated or priors) for one GPU family and engine."""

    compute: float
    dequant: float  # share of the 16-bit rate that dequantizing kernels (a16, weight-only) reach
    memory_bandwidth: float
    collective: tuple[tuple[str, float], ...]  # link kind -> achieved fraction (hashable)
    step_overhead_ms: float
    per_seq_overhead_ms: float
    layer_overhead_us: float  # fixed time per layer per iteration (kernel launches, synchronisation)
    cuda_context_gib: float
    cuda_graphs_gib: float
    nccl_per_group_gib: float
    nccl_per_group_pcie_gib: float  # the same on GPUs without NVLink
    provenance: str

    def coll(self, kind: str) -> float:
        return dict(self.collective)[kind]


def factors(gpu: GpuSpec, engine: str, calibration: dict[str, Any] | None = None) -> Factors:
    """Efficiency factors for ``gpu`` and ``engine``: a calibration's value for that family,
    else its default, else the shipped priors. ``calibration`` None means the built-in fit
    (catalog/data/calibration.yaml); pass {} for the uncalibrated priors."""
    eff = catalog.efficiency()
    builtin = catalog.builtin_calibration()
    cal = builtin if calibration is None else calibration
    # a user calibration covers the families it saw; the built-in fit and then the priors fill the rest
    chain = (cal, eff) if calibration is None or calibration == {} else (cal, builtin, eff)

    def pick(section: str, key: str) -> Any:
        for src in chain:
            sec = src.get(section, {})
            for k in (f"{gpu.family}.{engine}", gpu.family, engine, key):
                if isinstance(sec, dict) and k in sec:
                    return sec[k]
        raise KeyError(f"efficiency factor {section}.{key} missing")  # pragma: no cover

    eng = {**eff["engine"][engine], **cal.get("engine", {}).get(engine, {})}
    mem = {**eff["memory"], **cal.get("memory", {})}
    coll = {**eff["collective"], **cal.get("collective", {})}
    return Factors(
        compute=float(pick("compute", "default")),
        dequant=float(pick("dequant", "default")),
        memory_bandwidth=float(pick("memory_bandwidth", "default")),
        collective=tuple(sorted((k, float(v)) for k, v in coll.items())),
        step_overhead_ms=float(eng["step_overhead_ms"]),
        per_seq_overhead_ms=float(eng["per_seq_overhead_ms"]),
        layer_overhead_us=float(eng.get("layer_overhead_us", 0.0)),
        cuda_context_gib=float(mem["cuda_context_gib"]),
        cuda_graphs_gib=float(mem["cuda_graphs_gib"]),
        nccl_per_group_gib=float(mem["nccl_per_group_gib"]),
        nccl_per_group_pcie_gib=float(mem["nccl_per_group_pcie_gib"]),
        provenance=str(cal.get("provenance", eff.get("provenance", "prior"))),
    )


# ----------------------------------------------------------------------------- links


def _nccl() -> tuple[float, dict[str, float]]:
    data = catalog.links()["nccl"]
    return float(data["ring_base_latency_us"]), {k: float(v) for k, v in data["hw_latency_us"].items()}


def pcie_gbs(gpu: GpuSpec) -> float:
    """Peak PCIe bandwidth per direction of ``gpu`` (GB/s)."""
    table = catalog.links()["pcie"]["gbs_per_direction_x16"]
    gen = str(gpu.pcie_gen) if str(gpu.pcie_gen) in table else "4"
    return float(table[gen]) * (gpu.pcie_lanes or 16) / 16


def link(pool: ResolvedPool, group: int, f: Factors) -> LinkCost:
    """The link a collective over ``group`` consecutive GPUs of ``pool`` runs on."""
    base, hop = _nccl()
    if group <= 1:
        return LinkCost("none", math.inf, 0.0, 0.0)
    if pool.intra_node == "nvlink" and group <= max(pool.nvlink_domain, 1) and pool.gpu.nvlink_gbs > 0:
        gbs = pool.gpu.nvlink_gbs / 2
        if pool.gpu.scaleup_link_gbs > 0:
            # a point-to-point mesh (AMD xGMI): a GPU reaches the other p-1 GPUs of its group
            # over p-1 of its links, so a pair gets one link and 8 GPUs all seven
            gbs = min(gbs, (group - 1) * pool.gpu.scaleup_link_gbs)
        return LinkCost("nvlink", gbs * f.coll("nvlink"), hop["nvlink"], base)
    if group <= pool.gpus_per_node:
        # A PCIe ring over more than half of a node of 4+ GPUs crosses the CPU sockets
        # (NCCL's SYS path): a two-socket server hangs half its GPUs off each CPU.
        if pool.gpus_per_node >= 4 and group > pool.gpus_per_node // 2:
            return LinkCost("pcie-sys", pcie_gbs(pool.gpu) * f.coll("pcie_cross_socket"), hop["pcie"], base)
        return LinkCost("pcie", pcie_gbs(pool.gpu) * f.coll("pcie"), hop["pcie"], base)
    return LinkCost("network", pool.inter_node_gbps / 8 * f.coll("network"), hop["network"], base)


def activation_bytes_per_message(arch: ModelArch, tokens: float) -> float:
    """Bytes of one hidden-state tensor for ``tokens`` tokens (what TP all-reduces and PP
    sends move): tokens x hidden x 2 bytes. Llama-3-70B, one token: 8192 x 2 = 16 KiB."""
    return tokens * arch.hidden_size * ACT_BYTES


def ring_all_reduce_bytes(nbytes: float, p: int) -> float:
    """Bytes each rank sends in a ring all-reduce of ``nbytes``: 2(p-1)/p x nbytes
    (16 KiB at p=4: 24 KiB)."""
    return 2 * (p - 1) / p * nbytes if p > 1 else 0.0


def all_reduces_per_forward(arch: ModelArch, pp: int = 1) -> float:
    """TP all-reduces per forward pass of one pipeline stage: two per layer (after the
    attention output projection and after the MLP down projection)."""
    return 2 * arch.num_hidden_layers / pp


def all_reduce_s(nbytes: float, p: int, lk: LinkCost) -> float:
    """Ring all-reduce of ``nbytes`` over ``p`` ranks: 2(p-1)/p x bytes / bandwidth plus
    NCCL's latency model (baseLat + 2(p-1) x hwLat)."""
    if p <= 1:
        return 0.0
    steps = 2 * (p - 1)
    return (lk.base_us + steps * lk.hop_us) * 1e-6 + ring_all_reduce_bytes(nbytes, p) / (lk.gbs * 1e9)


def all_to_all_s(nbytes_per_rank: float, p: int, lk: LinkCost, local: int = 0, near: LinkCost | None = None) -> float:
    """All-to-all where each rank sends ``nbytes_per_rank`` in total, (p-1)/p of it leaving
    the rank, plus one latency term per peer. Over several nodes (``local`` ranks per node
    reached over ``near``, the rest over ``lk``), the two parts move at once and the slower
    one sets the time."""
    if p <= 1:
        return 0.0
    lat = (lk.base_us + (p - 1) * lk.hop_us) * 1e-6
    if near is None or local <= 1 or local >= p:
        return lat + (p - 1) / p * nbytes_per_rank / (lk.gbs * 1e9)
    inside = (local - 1) / p * nbytes_per_rank / (near.gbs * 1e9)
    outside = (p - local) / p * nbytes_per_rank / (lk.gbs * 1e9)
    return lat + max(inside, outside)


def p2p_s(nbytes: float, lk: LinkCost) -> float:
    """Point-to-point send between pipeline stages."""
    if lk.kind == "none":
        return 0.0
    return (lk.base_us + lk.hop_us) * 1e-6 + nbytes / (lk.gbs * 1e9)


def bubble_fraction(p: int, m: int) -> float:
    """Idle share of a pipeline of ``p`` stages fed ``m`` micro-batches: (p-1)/(m+p-1)."""
    return (p - 1) / (m + p - 1)


# ----------------------------------------------------------------------------- memory


#: The engine memory settings parc writes (gpuMemoryUtilization, or the share of free memory for
#: engines that read it so), lowest first: a plan takes the lowest at which its placement fits.
UTILIZATIONS = (0.90, 0.92, 0.95)


class Memory(NamedTuple):
    """Per-GPU memory of the most loaded GPU of a replica (bytes; a NamedTuple, as Timing: the
    candidate search builds one per shape, utilization and chunk budget)."""

    weights: float
    activations: float
    overhead: float
    capacity: float  # physical
    budget: float  # gpuMemoryUtilization x capacity
    kv_cache: float  # budget - weights - activations - overhead (may be negative)


@functools.lru_cache(maxsize=4096)
def weight_bytes_per_gpu(arch: ModelArch, shape: Shape, ckpt: Checkpoint | str) -> float:
    """Weight bytes on the most loaded GPU: layers of one stage split over tp (attention,
    dense MLP, shared experts) and over tp x dpAttention (routed experts), plus the
    embedding (first stage) or LM head (last stage), vocab-parallel over tp. Each layer
    kind at the checkpoint's bytes per weight (scales included; layers a checkpoint leaves
    unquantized, embeddings, routers and norms at 16 bit). A precision name stands for the
    usual checkpoint of that precision."""
    if isinstance(ckpt, str):
        ckpt = catalog.assumed_checkpoint("", arch.key, ckpt, "")
    bd = shapes.breakdown(arch)
    layers = math.ceil(arch.num_hidden_layers / shape.pp)
    moe_share = arch.moe_layers / arch.num_hidden_layers if arch.num_hidden_layers else 0.0
    mlp: float = bd.shared_experts_per_layer
    mlp += (1 - moe_share) * bd.dense_mlp_per_layer if arch.is_moe else bd.dense_mlp_per_layer
    experts = arch.num_experts * bd.expert * moe_share
    linear = layers * ((bd.attention_per_layer * ckpt.layer_bytes("attention") + mlp * ckpt.layer_bytes("mlp"))
                       / shape.tp + experts * ckpt.layer_bytes("experts") / (shape.tp * shape.dpa))
    router_norms = layers * (bd.router_per_layer + bd.norms_per_layer)
    if shape.pp == 1:
        vocab = (bd.embedding + bd.lm_head) / shape.tp
    else:
        vocab = max(bd.embedding, bd.lm_head or bd.embedding) / shape.tp
    return linear + (vocab + router_norms) * 2.0


def activation_bytes(arch: ModelArch, shape: Shape, batched_tokens: int, max_seqs: int) -> float:
    """Peak activation workspace of one forward pass over ``batched_tokens`` tokens (the
    engine's profile run): residual and normed hidden states, QKV and MLP intermediates of
    one layer (TP-split), plus FP32 logits of the sampled rows."""
    h = arch.hidden_size
    qkv = (arch.num_attention_heads + 2 * arch.num_key_value_heads) * arch.head_dim
    inter = max(arch.intermediate_size, arch.moe_intermediate_size * max(arch.experts_per_token, 1))
    per_token = (4 * h + qkv / shape.tp + 2 * inter / shape.tp) * ACT_BYTES
    logits = min(max_seqs, batched_tokens) * arch.vocab_size / shape.tp * 4.0
    return batched_tokens * per_token + logits


def memory(arch: ModelArch, gpu: GpuSpec, shape: Shape, ckpt: Checkpoint | str, f: Factors, *,
           utilization: float, batched_tokens: int, max_seqs: int, reading: str = "share-of-total") -> Memory:
    """Memory of the most loaded GPU for a placement and engine settings. ``utilization`` is a
    memory setting read as ``reading`` says (an engine's ``memory_budget``): a share of the whole
    GPU ("share-of-total", vLLM's gpuMemoryUtilization), or of the memory left free after
    weights, activations and the runtime ("share-of-free", TensorRT-LLM's
    free_gpu_memory_fraction). Plans keep the same margin on every engine (share-of-total, the
    default), so that engine: auto never picks an engine for what its setting means; a measured
    row is read with its engine's meaning (calibrate.predict)."""
    weights = weight_bytes_per_gpu(arch, shape, ckpt)
    acts = activation_bytes(arch, shape, batched_tokens, max_seqs)
    groups = sum(1 for d in (shape.tp, shape.pp, shape.dpa) if d > 1)
    per_group = f.nccl_per_group_gib if gpu.nvlink_gbs > 0 else f.nccl_per_group_pcie_gib
    overhead = (f.cuda_context_gib + f.cuda_graphs_gib + per_group * groups) * GIB
    cap = gpu.memory_bytes
    if reading == "share-of-free":
        kv = utilization * (cap - weights - acts - overhead)
        return Memory(weights, acts, overhead, cap, weights + acts + overhead + kv, kv)
    budget = utilization * cap
    return Memory(weights, acts, overhead, cap, budget, budget - weights - acts - overhead)


def resident_tokens(input_tokens: int, output_tokens: int, kv_admission: str) -> float:
    """KV tokens one running sequence holds on average for capacity: the whole request when the
    engine reserves prompt + output at admission (``full-request``), the mean context when it
    allocates as sequences grow (``current``)."""
    return input_tokens + output_tokens / (1 if kv_admission == "full-request" else 2)


def max_sequences(arch: ModelArch, shape: Shape, kv_precision: str, mem: Memory, tokens: float) -> int:
    """Sequences of ``tokens`` tokens whose KV cache fits a replica (each dpAttention rank
    holds its own sequences)."""
    per_seq = shapes.kv_bytes_per_sequence(arch, kv_precision, shape.tp, shape.pp, tokens)
    if mem.kv_cache <= 0 or per_seq <= 0:
        return 0
    return int(mem.kv_cache // per_seq) * shape.dpa


# ----------------------------------------------------------------------------- time


def peak_flops(gpu: GpuSpec, precision: str) -> float:
    """Dense tensor FLOP/s of GEMMs at ``precision`` (FLOP/s); 16-bit where the GPU has no
    tensor cores of that precision (int4 always dequantizes)."""
    half = gpu.tflops_bf16 or gpu.tflops_fp16
    table = {"bf16": half, "fp16": gpu.tflops_fp16 or half, "fp8": gpu.tflops_fp8, "int8": gpu.tops_int8,
             "fp4": gpu.tflops_fp4}
    return float(table.get(precision) or half) * 1e12


#: Kernels that dequantize the weights to 16 bit in their main loop (engines.KERNELS)
DEQUANT_KERNELS = ("a16", "weight-only")


def _quantized(ckpt: Checkpoint, kind: str) -> bool:
    """The checkpoint stores the layer kind below 16 bit (``other`` never is)."""
    return kind != "other" and ckpt.layer_bytes(kind) < 2.0


def compute_precision(ckpt: Checkpoint, kind: str, kernel: str) -> str:
    """The precision the GEMMs of one layer kind (``shapes.linear_flops_by_kind``) run at:
    16-bit where the checkpoint leaves the kind unquantized or the engine's kernel keeps 16-bit
    activations (``a16``, ``weight-only``), FP8 for 4-bit weights against 8-bit activations
    (``a8``), else the checkpoint's precision."""
    if not _quantized(ckpt, kind) or kernel in DEQUANT_KERNELS:
        return "bf16"
    return "fp8" if kernel == "a8" else ckpt.precision


def matmul_seconds_per_token(arch: ModelArch, gpu: GpuSpec, ckpt: Checkpoint, kernel: str,
                             dequant: float = 1.0) -> float:
    """Seconds of weight matmuls for one token on one GPU holding the whole model at peak:
    each layer kind's FLOPs at the rate of the precision it runs at; quantized kinds that a16
    or weight-only kernels dequantize to 16 bit at ``dequant`` of that rate."""
    out = 0.0
    for kind, fl in shapes.linear_flops_by_kind(arch).items():
        rate = peak_flops(gpu, compute_precision(ckpt, kind, kernel))
        if kernel in DEQUANT_KERNELS and _quantized(ckpt, kind):
            rate *= dequant
        out += fl / rate
    return out


def attention_peak(gpu: GpuSpec, kv_precision: str) -> float:
    """FLOP/s of the attention core (QK^T, PV): FP8 where the KV cache is FP8 and the GPU has
    FP8 tensor cores (the engines' FP8 attention kernels), else 16-bit."""
    return peak_flops(gpu, "fp8" if kv_precision == "fp8" else "bf16")


class Comm(NamedTuple):
    """Communication time per decode step of one sequence's token (ms). A NamedTuple, as
    Timing: the solver builds one per prediction."""

    tp_all_reduce_ms: float
    pp_p2p_ms: float
    ep_all_to_all_ms: float


class Timing(NamedTuple):
    """Predicted behaviour of one replica at a load (seconds, tokens/s). A NamedTuple, not a
    frozen dataclass: the solver builds tens of thousands per plan, and a frozen dataclass
    takes four times as long to build."""

    ttft_s: float
    tpot_s: float
    step_s: float  # one decode iteration (all stages) at the load
    prefill_s: float  # one prompt alone on an idle replica
    throughput: float  # output tokens/s of the replica
    comm: Comm
    bubble: float  # share of time pipeline stages idle at this load (decode)
    batched_tokens: int = 0  # the chunk budget (max_num_batched_tokens per rank) these numbers are for


@dataclass(frozen=True)
class Context:
    """Everything fixed for one pool and spec while the solver varies shape and load."""

    arch: ModelArch
    pool: ResolvedPool
    checkpoint: Checkpoint  # as served (an online-FP8 16-bit checkpoint is an fp8 one here)
    kv_precision: str
    engine: str
    kernel: str  # how the engine runs the checkpoint's quantized layers (engines.KERNELS)
    factors: Factors
    input_tokens: int
    output_tokens: int
    # the engine runs a prompt chunk as a forward of its own while the running decodes wait
    # (Capabilities.prefill_batching "separate"), instead of inside their iteration
    separate_prefill: bool = False

    def __hash__(self) -> int:
        # the hash of every field, as a frozen dataclass's, computed once: the cost model's
        # caches look a context up on every placement the solver prepares
        return self._hash

    @functools.cached_property
    def _hash(self) -> int:
        return hash(tuple(getattr(self, f.name) for f in fields(self)))


def links(ctx: Context, shape: Shape) -> tuple[LinkCost, LinkCost, LinkCost]:
    """(TP link, EP link, PP link) for a shape placed on consecutive GPUs of the pool."""
    f = ctx.factors
    tp_link = link(ctx.pool, shape.tp, f)
    ep_link = link(ctx.pool, shape.tp * shape.dpa, f)
    stage = shape.tp * shape.dpa
    if shape.pp <= 1:
        pp_link = LinkCost("none", math.inf, 0.0, 0.0)
    elif stage * shape.pp <= ctx.pool.gpus_per_node or (
            ctx.pool.intra_node == "nvlink" and stage * shape.pp <= ctx.pool.tp_domain):
        pp_link = link(ctx.pool, min(stage * 2, ctx.pool.tp_domain), f)
    else:
        pp_link = link(ctx.pool, ctx.pool.gpus_per_node + 1, f)  # crosses nodes
    return tp_link, ep_link, pp_link


@dataclass(frozen=True)
class _Stage:
    """Per (context, shape) constants of one pipeline stage, so an iteration's time is a
    few multiply-adds (the solver evaluates thousands of loads)."""

    w_total: float  # weight bytes on the GPU
    experts: float  # routed-expert bytes on the GPU (read only where tokens land)
    idle_share: float  # 1 - k/E: probability one token skips a given expert
    dpa: int
    kv: dict[float, float]  # context tokens -> KV bytes of one sequence on the GPU
    attn: dict[float, float]  # context tokens -> attention FLOPs per decode token on the GPU
    attn_prompt: float  # attention FLOPs of a prompt token on the GPU (it attends to half its prompt)
    hbm: float  # achievable bytes/s
    lin_tok: float  # weight-matmul seconds per token on the GPU (each layer kind at its precision)
    attn_peak: float  # achievable FLOP/s of the attention core
    floor: float  # fixed seconds per iteration of the stage's layers
    act_tok: float  # bytes of one token's hidden state
    tp: tuple[float, float]  # (seconds per iteration, seconds per activation byte) of the TP all-reduces
    ep: tuple[float, float]  # same for the EP all-to-alls (or the expert-TP all-reduces)
    pp: tuple[float, float]  # same for the stage-to-stage send


def _affine(fn: Callable[[float], float]) -> tuple[float, float]:
    """(a, b) with fn(x) = a + b x for the collectives' affine cost models."""
    a = fn(0.0)
    return a, fn(1.0) - a


@functools.lru_cache(maxsize=8192)
def _stage(ctx: Context, shape: Shape) -> _Stage:
    arch, gpu, f = ctx.arch, ctx.pool.gpu, ctx.factors
    tp_link, ep_link, pp_link = links(ctx, shape)
    bd = shapes.breakdown(arch)
    split = shape.tp * shape.pp
    contexts = (ctx.input_tokens + ctx.output_tokens / 2, ctx.input_tokens / 2)
    experts = idle = 0.0
    if arch.is_moe:
        experts = (arch.num_experts * bd.expert * arch.moe_layers / shape.pp / (shape.tp * shape.dpa)
                   * ctx.checkpoint.layer_bytes("experts"))
        idle = 1 - arch.experts_per_token / arch.num_experts
    n_ar = all_reduces_per_forward(arch, shape.pp)
    tp = _affine(lambda b: n_ar * all_reduce_s(b, shape.tp, tp_link)) if shape.tp > 1 else (0.0, 0.0)
    ep = (0.0, 0.0)
    moe_layers = arch.moe_layers / shape.pp
    if arch.is_moe and shape.ep > 1 and shape.dpa > 1:
        # attention-DP ranks hold different tokens: dispatch to the experts' GPUs and combine
        local = min(shape.ep, ctx.pool.gpus_per_node)
        near = link(ctx.pool, local, f) if shape.ep > ctx.pool.gpus_per_node else None
        ep = _affine(lambda b: 2 * moe_layers * all_to_all_s(b * arch.experts_per_token, shape.ep, ep_link,
                                                             local, near))
    elif arch.is_moe and shape.dpa > 1:
        # experts tensor-sharded over tp x dpa: the attention ranks' tokens are gathered and
        # the partial sums reduced across the whole group
        ep = _affine(lambda b: moe_layers * all_reduce_s(b * shape.dpa, shape.tp * shape.dpa, ep_link))
    # EP inside one TP group (dpAttention 1): every rank holds every token after the attention
    # all-reduce, computes its own experts' share and the layer's MLP all-reduce sums the
    # experts' outputs (counted in tp): no dispatch
    pp = _affine(lambda b: p2p_s(b, pp_link)) if shape.pp > 1 else (0.0, 0.0)
    return _Stage(
        w_total=weight_bytes_per_gpu(arch, shape, ctx.checkpoint),
        experts=experts,
        idle_share=idle,
        dpa=shape.dpa,
        kv={c: shapes.kv_bytes_per_sequence(arch, ctx.kv_precision, shape.tp, shape.pp, c) for c in contexts},
        attn={c: shapes.attention_flops(arch, 1, c) / split for c in contexts},
        attn_prompt=shapes.attention_flops(arch, 1, ctx.input_tokens / 2, prefill=True) / split,
        hbm=gpu.hbm_bandwidth_gbs * 1e9 * f.memory_bandwidth,
        lin_tok=matmul_seconds_per_token(arch, gpu, ctx.checkpoint, ctx.kernel, f.dequant) / split / f.compute,
        attn_peak=attention_peak(gpu, ctx.kv_precision) * f.compute,
        floor=math.ceil(arch.num_hidden_layers / shape.pp) * f.layer_overhead_us * 1e-6,
        act_tok=activation_bytes_per_message(arch, 1),
        tp=tp, ep=ep, pp=pp,
    )


def _stage_parts(st: _Stage, seqs: float, new_tokens: float, context: float) -> tuple[float, float, float, float]:
    """Seconds for one pipeline stage to run one iteration over ``seqs`` sequences of one
    dpAttention rank, processing ``new_tokens`` tokens in total (decode tokens plus any
    prefill chunk) against a mean context of ``context`` tokens: a roofline per operator class,
    since the two run one after the other in every layer: the weight matmuls (weight bytes /
    bandwidth or their FLOPs / FLOP/s, whichever is slower) plus attention (KV bytes /
    bandwidth or its FLOPs / FLOP/s), then TP all-reduces, EP all-to-alls and the PP send.
    Returns (seconds, TP all-reduce s, PP send s, EP all-to-all s) as plain floats: the solver
    calls this hundreds of thousands of times."""
    w_read, kv_read, lin_s, attn_s = _parts(st, seqs, new_tokens, context)
    w_s, kv_s = w_read / st.hbm, kv_read / st.hbm
    # max() spelled out: this is the solver's innermost arithmetic
    bound = (w_s if w_s >= lin_s else lin_s) + (kv_s if kv_s >= attn_s else attn_s) + st.floor
    act = new_tokens * st.act_tok
    (tp0, tp1), (ep0, ep1), (pp0, pp1) = st.tp, st.ep, st.pp
    tp_s = tp0 + tp1 * act if tp0 else 0.0
    ep_s = ep0 + ep1 * act if ep0 else 0.0
    pp_s = pp0 + pp1 * act if pp0 else 0.0
    return bound + tp_s + ep_s + pp_s, tp_s, pp_s, ep_s


@dataclass(frozen=True, eq=False)
class Prepared:
    """A placement ready for fast predictions at many loads."""

    ctx: Context
    shape: Shape
    batched_tokens: int
    stage: _Stage
    prefill_alone_s: float  # one prompt on an idle replica (its chunks pipeline through the stages)
    # what _mix reads on every prediction, copied out of ctx and shape
    lengths: tuple[int, int]  # (input, output) tokens of a request
    ranks: tuple[int, int]  # (dpAttention, pp)
    overheads_ms: tuple[float, float]  # the engine's overhead per iteration and per sequence


def prepare(ctx: Context, shape: Shape, batched_tokens: int) -> Prepared:
    st = _stage(ctx, shape)
    inp = ctx.input_tokens
    chunk = max(1, min(inp, batched_tokens))
    stage_s = _stage_parts(st, 1, chunk, inp / 2)[0]
    f = ctx.factors
    alone = (math.ceil(inp / chunk) + shape.pp - 1) * stage_s + f.step_overhead_ms * 1e-3
    return Prepared(ctx, shape, batched_tokens, st, alone, (inp, ctx.output_tokens), (shape.dpa, shape.pp),
                    (f.step_overhead_ms, f.per_seq_overhead_ms))


def predict(ctx: Context, shape: Shape, load: float, batched_tokens: int) -> Timing:
    """Predict one replica of ``shape`` serving ``load`` concurrent requests."""
    return predict_prepared(prepare(ctx, shape, batched_tokens), load)


class _Mix(NamedTuple):
    """How one data-parallel rank's iterations are made up at a load (see predict_prepared; a
    NamedTuple, as the solver builds one per prediction)."""

    load: float
    per_rank: float  # sequences of the rank
    m: float  # micro-batches in flight
    ctx_mean: float  # mean context of a running sequence (tokens)
    overhead: float  # engine overhead per iteration (s)
    budget: float  # prefill tokens an iteration has room for
    demand: float  # prefill tokens arriving per iteration
    chunk: float  # prefill chunk of one prompt (tokens)
    k: int  # chunk iterations per prompt
    f: float  # share of a rank's iterations that carry a chunk
    mixed: float  # prefill tokens of an iteration that carries chunks
    f_step: float  # share of iterations that take a chunk iteration's time (see _mix)


def _mix(p: Prepared, load: float) -> _Mix:
    (inp, out), (dpa, pp), (step_ms, seq_ms) = p.lengths, p.ranks, p.overheads_ms
    # min() and max() spelled out, as in _stage_parts: every prediction runs this
    load = load if load > 1.0 else 1.0
    per_rank = load / dpa
    # pipeline: the rank's sequences split into m = min(seqs, pp) micro-batches (real-valued,
    # so a micro-batch never shrinks as the load grows: TPOT is monotone in the load)
    m = per_rank if per_rank < pp else float(pp)
    m = m if m > 1.0 else 1.0
    overhead = (step_ms + seq_ms * per_rank) * 1e-3
    budget = p.batched_tokens - per_rank
    lam = per_rank / out
    demand = lam * inp
    chunk = budget if budget < inp else float(inp)
    chunk = chunk if chunk > 1.0 else 1.0
    k = math.ceil(inp / chunk)
    # a prompt is k - 1 full chunks and what remains: the iterations that carry prompt tokens
    # carry a full chunk's worth of them, inp / chunk per prompt (a remainder of a few tokens
    # costs what a decode does, not a chunk iteration)
    f = lam * inp / chunk
    f = f if f < 1.0 else 1.0
    mixed = demand / f if f > 0 else 0.0
    # attention-DP ranks step together (the MoE all-to-all of every layer is a barrier): an
    # iteration takes a chunk iteration's time whenever any of the dpa ranks carries a chunk
    f_step = 1 - (1 - f) ** dpa
    return _Mix(load, per_rank, m, inp + out / 2, overhead, budget, demand, chunk, k, f, mixed, f_step)


def _utilisation(demand: float, budget: float) -> float:
    """The prefill budget's utilisation rho (prompt tokens arriving per iteration over the
    tokens an iteration has room for): at 1 or more the prompts never drain."""
    return demand / budget if budget > 0 else math.inf


def drain_limit(p: Prepared) -> int:
    """The largest whole load at which the prefill budget drains (rho < 1, so TTFT is
    finite; 0 if not even one request): rho = (d / output) x input / (budget - d) grows with
    the d sequences of a rank, so this is d < budget x output / (input + output), settled by
    _mix's own arithmetic at the boundary."""
    (inp, out), (dpa, _) = p.lengths, p.ranks

    def drains(load: int) -> bool:
        x = _mix(p, load)
        return _utilisation(x.demand, x.budget) < 1.0

    load = int(dpa * p.batched_tokens * out / (inp + out))
    while load > 0 and not drains(load):
        load -= 1
    while drains(load + 1):
        load += 1
    return load


@dataclass(frozen=True)
class StepTerms:
    """Where one decode iteration's time goes (ms per output token of every running sequence,
    i.e. the parts of TPOT), averaged over plain and prefill-carrying iterations and summed
    over the pipeline stages. An iteration of a stage costs max(weight + KV reads, compute)
    plus the collectives, so ``bound_ms`` (that max) + the communication terms + the engine
    overhead (per iteration, and the fixed time per layer) = TPOT."""

    compute_ms: float  # FLOPs / achievable FLOP/s
    weight_read_ms: float  # weight bytes read / achievable HBM bandwidth
    kv_read_ms: float  # KV cache bytes read / achievable HBM bandwidth
    bound_ms: float  # per stage, max(weight reads, matmul FLOPs) + max(KV reads, attention FLOPs)
    tp_all_reduce_ms: float
    pp_p2p_ms: float
    ep_all_to_all_ms: float
    overhead_ms: float  # the engine's per-iteration scheduling overhead and the fixed time per layer
    bubble: float  # share of time a pipeline stage idles (decode)

    @property
    def tpot_ms(self) -> float:
        return self.bound_ms + self.tp_all_reduce_ms + self.pp_p2p_ms + self.ep_all_to_all_ms + self.overhead_ms


def _parts(st: _Stage, seqs: float, new_tokens: float, context: float) -> tuple[float, float, float, float]:
    """(weight bytes read, KV bytes read, weight-matmul seconds, attention seconds) of one stage
    iteration."""
    w_read = st.w_total
    if st.experts:
        routed = new_tokens * st.dpa  # the EP group sees the tokens of every attention rank
        w_read -= st.experts * st.idle_share ** (routed if routed > 1e-9 else 1e-9)
    # the iteration's decode tokens (one per sequence) attend to the running context, its prompt
    # tokens (the rest) to the part of their prompt before them: half of it on average
    prompt = new_tokens - seqs
    attn = seqs * st.attn[context] + (prompt if prompt > 0.0 else 0.0) * st.attn_prompt
    return w_read, seqs * st.kv[context], new_tokens * st.lin_tok, attn / st.attn_peak


def step_terms(p: Prepared, load: float) -> StepTerms:
    """The cost terms of TPOT at ``load`` (what ``parc plan --compare`` shows side by side)."""
    x = _mix(p, load)
    st, pp = p.stage, p.shape.pp
    seqs = x.per_rank / x.m

    def terms(seqs: float, new_tokens: float) -> tuple[float, float, float, float]:
        w, kv, lin, attn = _parts(st, seqs, new_tokens, x.ctx_mean)
        return w / st.hbm, kv / st.hbm, lin + attn, max(w / st.hbm, lin) + max(kv / st.hbm, attn)

    dec = terms(seqs, seqs)
    mix: tuple[float, ...]
    if p.ctx.separate_prefill:  # the decode iteration, then a forward of the prompt chunk alone
        mix = tuple(d + c for d, c in zip(dec, terms(0.0, x.mixed / x.m)))
    else:
        mix = terms(seqs, (x.per_rank + x.mixed) / x.m)
    timing = predict_prepared(p, load)

    def avg(i: int) -> float:
        return pp * (x.f_step * mix[i] + (1 - x.f_step) * dec[i]) * 1e3

    bound = avg(3)
    c = timing.comm
    return StepTerms(avg(2), avg(0), avg(1), bound, c.tp_all_reduce_ms, c.pp_p2p_ms, c.ep_all_to_all_ms,
                     (x.overhead + pp * st.floor) * (1 + (x.f_step if p.ctx.separate_prefill else 0.0)) * 1e3,
                     timing.bubble)


def predict_prepared(p: Prepared, load: float) -> Timing:
    """Predict one replica serving ``load`` concurrent requests (continuous batching with
    chunked prefill, ``batched_tokens`` tokens per iteration of one data-parallel rank).

    Every iteration carries the rank's running decodes (d tokens). New prompts arrive at
    lambda = d / outputTokens per iteration and are prefilled in chunks of what the budget
    leaves (C = batched_tokens - d), k = ceil(input / C) chunk iterations each, the last one
    partial; a share f = min(1, lambda x input / C) of the iterations carries a full chunk's
    worth, lambda x input / f tokens (the partial one's few tokens ride as a decode does).
    TPOT (mean inter-token time) = f x t(d + chunk) + (1 - f) x t(d): small chunks hide
    prefill under the memory-bound decode step, large ones make the chunk iterations
    compute-bound. An engine that prefills apart (``ctx.separate_prefill``: SGLang, TGI) runs
    the chunk as a forward of its own while the decodes wait: f x (t(d) + t(chunk alone) + its
    overhead) + (1 - f) x t(d). TTFT = the prompt's k chunk iterations through the pipeline, plus
    waiting: half an iteration, and M/D/1 queueing for the prefill budget at utilisation
    rho = lambda x input / C. A load whose prefill demand exceeds the budget never drains:
    TTFT is infinite.
    """
    ctx, shape, st, batched_tokens = p.ctx, p.shape, p.stage, p.batched_tokens
    out = p.lengths[1]
    load, per_rank, m, ctx_mean, overhead, budget, demand, chunk, k, f, mixed, fs = _mix(p, load)
    dec_stage, d_tp, d_pp, d_ep = _stage_parts(st, per_rank / m, per_rank / m, ctx_mean)
    if ctx.separate_prefill:
        # the chunk is a forward of its own (weights read again, its own overhead) while the
        # decodes wait: an iteration that carries one costs both
        pre_stage, p_tp, p_pp, p_ep = _stage_parts(st, 0.0, mixed / m, ctx_mean)
        mix_stage, m_tp, m_pp, m_ep = dec_stage + pre_stage, d_tp + p_tp, d_pp + p_pp, d_ep + p_ep
        step = shape.pp * (fs * mix_stage + (1 - fs) * dec_stage) + (1 + fs) * overhead
        own_stage = _stage_parts(st, 0.0, chunk, ctx_mean)[0]
    else:
        mix_stage, m_tp, m_pp, m_ep = _stage_parts(st, per_rank / m, (per_rank + mixed) / m, ctx_mean)
        step = shape.pp * (fs * mix_stage + (1 - fs) * dec_stage) + overhead
        # the prompt's own chunks ride in one micro-batch with that micro-batch's decodes
        own_stage = _stage_parts(st, per_rank / m, per_rank / m + chunk, ctx_mean)[0]
    tpot = step
    prefill_load = (k + shape.pp - 1) * own_stage + k * overhead
    rho = _utilisation(demand, budget)
    if rho >= 1.0:
        ttft = math.inf
    else:
        ttft = max(p.prefill_alone_s, prefill_load) + 0.5 * step + rho / (2 * (1 - rho)) * k * own_stage
    latency = ttft + out * tpot
    throughput = load * out / latency if math.isfinite(latency) else 0.0
    bubble = (shape.pp - m) / shape.pp  # decode: stages idle while fewer micro-batches than stages cycle
    c = Comm((fs * (m_tp * 1e3) + (1 - fs) * (d_tp * 1e3)) * shape.pp,
             (fs * (m_pp * 1e3) + (1 - fs) * (d_pp * 1e3)) * shape.pp,
             (fs * (m_ep * 1e3) + (1 - fs) * (d_ep * 1e3)) * shape.pp)
    return Timing(ttft, tpot, step, p.prefill_alone_s, throughput, c, bubble, batched_tokens)


def predict_closed_loop(p: Prepared, clients: float, capacity: int) -> Timing:
    """One replica serving ``clients`` closed-loop clients (each sends its next request when the
    last one ends) when at most ``capacity`` sequences run at once (the KV cache's sequences):
    beyond it the engine queues the surplus. The ``capacity`` running sequences behave as
    predict_prepared says; a queued request waits W = (clients - capacity) x S / capacity
    (Little's law: the queue's length over the rate at which slots free, capacity requests per
    service time S = TTFT + output x TPOT), so TTFT grows with the surplus while TPOT and
    throughput stay at the capacity's."""
    running = min(clients, float(capacity))
    t = predict_prepared(p, running)
    if clients <= running or not math.isfinite(t.ttft_s):
        return t
    service = t.ttft_s + p.ctx.output_tokens * t.tpot_s
    wait = (clients - running) * service / running
    return Timing(t.ttft_s + wait, t.tpot_s, t.step_s, t.prefill_s, t.throughput, t.comm, t.bubble,
                  t.batched_tokens)


# ----------------------------------------------------------------------------- disaggregated serving


@dataclass(frozen=True)
class PrefillService:
    """An instance that only prefills (the prefill side of a disaggregated plan): one prompt on
    an idle replica, and the prompts per second a saturated replica completes (every
    data-parallel rank fills iterations of ``batched_tokens`` prompt tokens; pipeline stages
    overlap, so an iteration leaves every stage time)."""

    alone_s: float
    rate: float  # prompts per second of one replica at saturation
    iteration_s: float  # one full prefill iteration of one rank (all stages)


def prefill_service(p: Prepared) -> PrefillService:
    ctx, shape, st = p.ctx, p.shape, p.stage
    inp = ctx.input_tokens
    tokens = float(max(p.batched_tokens, 1))
    prompts = tokens / inp  # prompts (or parts of one) an iteration carries
    stage_s = _stage_parts(st, max(1.0, prompts), tokens, inp / 2)[0]
    overhead = ctx.factors.step_overhead_ms * 1e-3
    rate = shape.dpa * prompts / (stage_s + overhead)
    return PrefillService(p.prefill_alone_s, rate, shape.pp * stage_s + overhead)


def decode_only(p: Prepared, load: float) -> tuple[float, Comm, float]:
    """(TPOT seconds, communication per token, pipeline bubble) of an instance that only
    decodes (the decode side of a disaggregated plan): every iteration carries the running
    sequences' next tokens and no prefill chunk."""
    ctx, shape, st = p.ctx, p.shape, p.stage
    load = max(load, 1.0)
    per_rank = load / shape.dpa
    m = max(1.0, min(per_rank, float(shape.pp)))
    overhead = (ctx.factors.step_overhead_ms + ctx.factors.per_seq_overhead_ms * per_rank) * 1e-3
    stage_s, tp_s, pp_s, ep_s = _stage_parts(st, per_rank / m, per_rank / m, ctx.input_tokens + ctx.output_tokens / 2)
    tpot = shape.pp * stage_s + overhead
    c = Comm(tp_s * 1e3 * shape.pp, pp_s * 1e3 * shape.pp, ep_s * 1e3 * shape.pp)
    return tpot, c, (shape.pp - m) / shape.pp


def kv_transfer_s(arch: ModelArch, kv_precision: str, tokens: int, lk: LinkCost, streams: int) -> float:
    """Moving one prompt's KV cache (``tokens`` tokens, every layer) from a prefill instance to
    a decode instance over ``lk``, split over ``streams`` GPU pairs sending at once (each GPU
    sends its own shard)."""
    nbytes = shapes.kv_bytes_per_sequence(arch, kv_precision, 1, 1, tokens)
    return p2p_s(nbytes / max(1, streams), lk)
