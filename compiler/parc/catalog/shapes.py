"""Arithmetic on model shapes: parameter counts, KV-cache bytes, FLOPs.

Pure functions of a :class:`ModelArch`; the cost model builds on them and the catalog
test checks the parameter counts against the published sizes.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

from parc.catalog import ModelArch

#: Bytes per weight for each spec precision. 4-bit formats carry one 16-bit scale per
#: group of 128 weights (AWQ/GPTQ w4a16 default group size), 8-bit formats per-channel scales.
WEIGHT_BYTES = {"bf16": 2.0, "fp16": 2.0, "fp8": 1.0, "int8": 1.0, "int4": 0.5 + 2 / 128, "fp4": 0.5 + 1 / 16}
#: NVFP4 uses one FP8 scale per 16 weights (NVIDIA NVFP4 format) -> 0.5 + 1/16 bytes.
KV_BYTES = {"auto": 2.0, "fp8": 1.0}


@dataclass(frozen=True)
class ParamBreakdown:
    """Parameter counts (not bytes) by where they live."""

    embedding: int  # input embedding table
    lm_head: int  # output projection (0 when tied to the embedding)
    attention_per_layer: int
    dense_mlp_per_layer: int  # MLP of a dense layer
    expert: int  # one routed expert
    shared_experts_per_layer: int
    router_per_layer: int
    norms_per_layer: int
    final_norm: int

    def total(self, arch: ModelArch) -> int:
        moe_layers = arch.moe_layers
        dense_layers = arch.num_hidden_layers - moe_layers
        per_moe = arch.num_experts * self.expert + self.shared_experts_per_layer + self.router_per_layer
        return (
            self.embedding
            + self.lm_head
            + arch.num_hidden_layers * (self.attention_per_layer + self.norms_per_layer)
            + dense_layers * self.dense_mlp_per_layer
            + moe_layers * per_moe
            + self.final_norm
        )

    def active(self, arch: ModelArch) -> int:
        """Parameters a token passes through (MoE: top-k routed experts only)."""
        idle = (arch.num_experts - arch.experts_per_token) * self.expert * arch.moe_layers
        return self.total(arch) - idle

    def moe_weights(self, arch: ModelArch) -> int:
        """Routed-expert parameters (what expert parallelism splits)."""
        return arch.num_experts * self.expert * arch.moe_layers


@functools.lru_cache(maxsize=256)
def breakdown(arch: ModelArch) -> ParamBreakdown:
    """Count parameters from the shapes (the same tensors as the HF checkpoint)."""
    h = arch.hidden_size
    heads = arch.num_attention_heads
    if arch.is_mla:
        qk = arch.qk_nope_head_dim + arch.qk_rope_head_dim
        if arch.q_lora_rank:
            q = h * arch.q_lora_rank + arch.q_lora_rank + arch.q_lora_rank * heads * qk
        else:
            q = h * heads * qk
        kv = h * (arch.kv_lora_rank + arch.qk_rope_head_dim) + arch.kv_lora_rank
        kv += arch.kv_lora_rank * heads * (arch.qk_nope_head_dim + arch.v_head_dim)
        attn = q + kv + heads * arch.v_head_dim * h
    else:
        qd = heads * arch.head_dim
        kvd = arch.num_key_value_heads * arch.head_dim
        attn = h * qd + 2 * h * kvd + qd * h
        if arch.attention_bias:
            attn += qd + 2 * kvd
    expert = 3 * h * arch.moe_intermediate_size
    if arch.model_type == "gpt_oss":  # gate_up and down projections carry biases; attention sinks per head
        expert += 2 * arch.moe_intermediate_size + h
        attn += h + heads
    return ParamBreakdown(
        embedding=arch.vocab_size * h,
        lm_head=0 if arch.tie_word_embeddings else arch.vocab_size * h,
        attention_per_layer=attn,
        dense_mlp_per_layer=3 * h * arch.intermediate_size,
        expert=expert,
        shared_experts_per_layer=arch.num_shared_experts * 3 * h * arch.shared_expert_intermediate_size,
        router_per_layer=h * arch.num_experts + (arch.num_experts if arch.model_type == "gpt_oss" else 0),
        norms_per_layer=2 * h,
        final_norm=h,
    )


def total_params(arch: ModelArch) -> int:
    return breakdown(arch).total(arch)


def active_params(arch: ModelArch) -> int:
    return breakdown(arch).active(arch)


def kv_bytes_per_token_per_layer(arch: ModelArch, kv_precision: str, tp: int) -> float:
    """KV-cache bytes one token occupies in one layer on one GPU of a TP group.

    GQA/MHA: K and V, kvHeads/tp heads each (KV heads are replicated when tp > kvHeads).
    MLA: the compressed latent (kv_lora_rank) plus the shared rope key, replicated on
    every TP rank (as vLLM and SGLang store it).
    """
    b = KV_BYTES[kv_precision]
    if arch.is_mla:
        return (arch.kv_lora_rank + arch.qk_rope_head_dim) * b
    heads_per_gpu = max(1.0, arch.num_key_value_heads / tp)
    return 2 * heads_per_gpu * arch.head_dim * b


def kv_bytes_per_sequence(arch: ModelArch, kv_precision: str, tp: int, pp: int, tokens: float) -> float:
    """KV bytes one sequence of ``tokens`` holds on one GPU (layers split over pp stages;
    sliding-window layers hold at most the window)."""
    per = kv_bytes_per_token_per_layer(arch, kv_precision, tp)
    full = arch.num_hidden_layers - arch.sliding_window_layers
    window = min(tokens, arch.sliding_window) if arch.sliding_window else tokens
    return per * (full * tokens + arch.sliding_window_layers * window) / pp


def attention_flops(arch: ModelArch, query_tokens: float, context_tokens: float, prefill: bool = False) -> float:
    """FLOPs of the score and value products (QK^T and AV) for ``query_tokens`` attending to
    ``context_tokens`` each, over all layers (2 FLOPs per multiply-add). MLA runs in two
    forms: a decode token attends in the latent space (absorbed: the 512-wide latent plus the
    rotary part per head), a prompt token attends as ordinary multi-head attention over keys and
    values up-projected from the latent (expanded: qk_nope + qk_rope and v_head_dim per head),
    as the engines' MLA prefill paths do (vLLM 0.32.0 ``vllm/v1/attention/backend.py``: the MLA
    implementation's ``forward_mha`` "MHA-style prefill" and ``forward_mqa`` "MQA-style decode";
    SGLang 0.5.23 ``models/deepseek_common/attention_backend_handler.py``: an extend batch runs
    ``AttnForwardMethod.MHA`` on the aiter, FA3 and Triton backends); ``prefill`` picks the
    latter."""
    if arch.is_mla and prefill:
        qk, v = arch.qk_nope_head_dim + arch.qk_rope_head_dim, arch.v_head_dim
    elif arch.is_mla:
        qk = arch.kv_lora_rank + arch.qk_rope_head_dim  # absorbed MLA attends in latent space
        v = arch.kv_lora_rank
    else:
        qk = v = arch.head_dim
    full = arch.num_hidden_layers - arch.sliding_window_layers
    window = min(context_tokens, arch.sliding_window) if arch.sliding_window else context_tokens
    eff_layers_ctx = full * context_tokens + arch.sliding_window_layers * window
    return 2 * query_tokens * arch.num_attention_heads * (qk + v) * eff_layers_ctx


@functools.lru_cache(maxsize=256)
def linear_flops_by_kind(arch: ModelArch) -> dict[str, float]:
    """FLOPs of the weight matmuls for one token by the layer kind a checkpoint quantizes
    (``Checkpoint.layer_bytes``): ``attention`` projections, ``mlp`` (dense MLPs and shared
    experts), ``experts`` (the top-k routed experts a token passes through) and ``other``
    (LM head, routers, norms), which stays 16-bit. They sum to
    :func:`linear_flops_per_token`."""
    bd = breakdown(arch)
    layers, moe_layers = arch.num_hidden_layers, arch.moe_layers
    attention = layers * bd.attention_per_layer
    mlp = (layers - moe_layers) * bd.dense_mlp_per_layer + moe_layers * bd.shared_experts_per_layer
    experts = moe_layers * arch.experts_per_token * bd.expert
    other = bd.active(arch) - bd.embedding - attention - mlp - experts
    return {"attention": 2.0 * attention, "mlp": 2.0 * mlp, "experts": 2.0 * experts, "other": 2.0 * other}


def linear_flops_per_token(arch: ModelArch) -> float:
    """FLOPs of the weight matmuls for one token: 2 x active parameters without the
    input embedding (a lookup, not a matmul)."""
    bd = breakdown(arch)
    return 2.0 * (bd.active(arch) - bd.embedding)
