"""Engine rules as checks: a placement an engine release cannot run is rejected here, with
the rule, its numbers and its source (the rule texts and sources are data in
``data/<engine>.toml``; this module only knows how to test each rule id).

Every check is a pure function of the model shapes, the checkpoint, the shape and the pool.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Iterator

from parc.engines import Capabilities

if TYPE_CHECKING:
    from parc.catalog import Checkpoint, ModelArch
    from parc.costmodel import Shape
    from parc.resolve import ResolvedPool


@dataclass(frozen=True)
class Violation:
    """A broken rule: the solver's rejection kind, a sentence with the numbers, the rule."""

    kind: str  # engine | precision | divisibility | topology
    reason: str
    rule_id: str
    source: str

    def sentence(self) -> str:
        return f"{self.reason} [rule {self.rule_id}: {self.source}]"


def moe_tp(shape: Shape) -> int:
    """Ranks one routed expert is tensor-sharded over: tp x dpAttention / ep."""
    return (shape.tp * shape.dpa) // max(shape.ep, 1)


def sharded_dims(arch: ModelArch, shape: Shape) -> Iterator[tuple[str, str, int, str]]:
    """(layer group, 'out'|'in', size per rank, description) of every tensor-sharded linear
    dimension of one rank that block-scaled kernels check: outputs of single column-parallel
    layers (merged QKV and gate/up layers are exempt: the engines split their scales per
    sub-layer), inputs of row-parallel layers, and the routed experts' intermediate size."""
    tp = shape.tp
    heads = arch.num_attention_heads
    if arch.is_mla:
        qk = arch.qk_nope_head_dim + arch.qk_rope_head_dim
        yield "attention", "out", heads // tp * qk, f"q_b_proj {heads} heads x {qk} / tp {tp}"
        yield "attention", "out", heads // tp * (arch.qk_nope_head_dim + arch.v_head_dim), \
            f"kv_b_proj {heads} heads x {arch.qk_nope_head_dim + arch.v_head_dim} / tp {tp}"
        yield "attention", "in", heads // tp * arch.v_head_dim, f"o_proj {heads} heads x {arch.v_head_dim} / tp {tp}"
    else:
        yield "attention", "in", heads // tp * arch.head_dim, f"o_proj {heads} heads x {arch.head_dim} / tp {tp}"
    if arch.intermediate_size and arch.dense_layers:
        yield "mlp", "in", arch.intermediate_size // tp, f"down_proj intermediate_size {arch.intermediate_size} / tp {tp}"
    if arch.num_shared_experts:
        inter = arch.shared_expert_intermediate_size * arch.num_shared_experts
        yield "mlp", "in", inter // tp, f"shared experts' down_proj {inter} / tp {tp}"
    if arch.is_moe:
        m = moe_tp(shape)
        where = f"tp {shape.tp} x dpAttention {shape.dpa}" + (f" / ep {shape.ep}" if shape.ep > 1 else "")
        yield "experts", "out", arch.moe_intermediate_size // m, \
            f"moe_intermediate_size {arch.moe_intermediate_size} / ({where}) = {arch.moe_intermediate_size // m}"
        yield "experts", "in", arch.moe_intermediate_size // m, \
            f"experts' down_proj input {arch.moe_intermediate_size} / ({where})"


def _quantized(ckpt: Checkpoint, layer: str) -> bool:
    return ckpt.quantized == "all" or (ckpt.quantized == "mlp" and layer != "attention") or layer == "experts"


def check(cap: Capabilities, arch: ModelArch, ckpt: Checkpoint, shape: Shape, pool: ResolvedPool) -> Violation | None:
    """The first rule of ``cap`` that the placement breaks, or None. ``ckpt`` is the checkpoint
    as served (quant_method ``online-fp8``: a 16-bit checkpoint quantized to FP8 at load)."""

    def broken(rule_id: str, kind: str, reason: str) -> Violation:
        rule = cap.rules.get(rule_id)
        return Violation(kind, reason, rule_id, rule.source if rule else cap.source)

    tp, pp, ep, dpa = shape.tp, shape.pp, shape.ep, shape.dpa
    gpu = pool.gpu
    fmt = ckpt.format
    if ckpt.quant_method == "online-fp8" and not cap.online_fp8:
        return broken("format-architecture", "precision",
                      f"{cap.display} does not quantize a 16-bit checkpoint to FP8 at load; use an FP8 checkpoint")
    if cap.support(fmt, gpu.architecture) is None:
        runs = [a for a in sorted(cap.formats.get(fmt, {}))]
        return broken("format-architecture", "precision",
                      f"{cap.display} does not run {fmt} checkpoints on {gpu.architecture} GPUs ({gpu.key})"
                      + (f"; it runs them on {', '.join(runs)}" if runs else ""))
    heads, kvh = arch.num_attention_heads, arch.num_key_value_heads
    if heads % tp:
        return broken("tp-divides-heads", "divisibility", f"tp={tp} does not divide the {heads} attention heads")
    if not arch.is_mla and kvh % tp and tp % kvh:
        return broken("tp-kv-heads", "divisibility", f"tp={tp} neither divides nor is a multiple of the {kvh} KV heads")
    if arch.is_moe and ep > 1:
        if arch.num_experts % ep:
            return broken("ep-divides-experts", "divisibility",
                          f"ep={ep} does not divide the {arch.num_experts} routed experts")
    if dpa > 1 and pp > 1 and not cap.dp_with_pp:
        return broken("dp-with-pp", "engine",
                      f"{cap.display} does not combine attention data parallelism (dpAttention={dpa}) with "
                      f"pipeline parallelism (pp={pp})")
    if len(ckpt.block) == 2:
        bn, bk = ckpt.block
        for layer, side, size, what in sharded_dims(arch, shape):
            block = bn if side == "out" else bk
            if _quantized(ckpt, layer) and size % block:
                return broken("block-quant-divisible", "divisibility",
                              f"{what}: {size} per rank is not a multiple of the checkpoint's weight_block_size "
                              f"{block} ({ckpt.repo_id or 'the checkpoint'} ships {list(ckpt.block)} FP8 blocks)")
    if ckpt.format in ("awq", "gptq") and ckpt.group_size > 0:
        for layer, side, size, what in sharded_dims(arch, shape):
            if side == "in" and _quantized(ckpt, layer) and size % ckpt.group_size:
                return broken("group-quant-divisible", "divisibility",
                              f"{what}: {size} input columns per rank is not a multiple of the group size "
                              f"{ckpt.group_size}")
    return None


def multi_node_form(cap: Capabilities, shape: Shape, pool: ResolvedPool) -> tuple[str | None, Violation | None]:
    """How a replica of ``shape`` spanning nodes of ``pool`` starts (``ray``, ``mpi``, ``dp``;
    None on one node), or the rule it breaks. An engine whose form is ``nnodes`` (one process
    per node of one distributed world) starts like ``dp``."""
    gpus = shape.gpus
    if gpus <= pool.gpus_per_node:
        return None, None
    rule = cap.rules.get("multi-node-form")
    src = rule.source if rule else cap.source
    stage = shape.tp * shape.dpa
    if "mpi" in cap.multi_node:
        return "mpi", None
    if "nnodes" in cap.multi_node:
        # one engine process per node over the whole tp x dpAttention x pp world (SGLang
        # --nnodes/--node-rank/--dist-init-addr), started like data-parallel ranks (kind dp):
        # a pipeline stage fills whole nodes or a node holds whole stages
        if stage % pool.gpus_per_node == 0 or pool.gpus_per_node % stage == 0:
            return "dp", None
        return None, Violation("engine", f"{cap.display} places tp x dpAttention = {stage} GPUs per pipeline stage on "
                                         f"nodes of {pool.gpus_per_node}: a stage must fill whole nodes or a node "
                                         "whole stages", "multi-node-form", src)
    if stage > pool.gpus_per_node:
        # data-parallel ranks across nodes: each node runs whole DP ranks of one stage
        if "dp" in cap.multi_node and shape.pp == 1 and pool.gpus_per_node % shape.tp == 0 \
                and stage % pool.gpus_per_node == 0:
            return "dp", None
        return None, Violation("engine", f"{cap.display} has no documented way to run tp={shape.tp} x "
                                         f"dpAttention={shape.dpa} x pp={shape.pp} across nodes of "
                                         f"{pool.gpus_per_node} GPUs", "multi-node-form", src)
    if "ray" in cap.multi_node:
        if shape.dpa > 1:
            return None, Violation("engine", f"{cap.display} runs data-parallel ranks across nodes as one engine "
                                             "process per node (multi-node data parallelism), not pipelined over a "
                                             f"Ray cluster (dpAttention={shape.dpa} x pp={shape.pp})",
                                   "multi-node-form", src)
        return "ray", None
    return None, Violation("engine", f"{cap.display} cannot run one replica across nodes ({gpus} GPUs > "
                                     f"{pool.gpus_per_node} per node)", "multi-node-form", src)
