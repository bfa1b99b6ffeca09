"""Read a Hugging Face ``config.json`` into a :class:`ModelArch`.

Supported ``model_type`` values: llama, mistral, mixtral, qwen2, qwen3, qwen3_moe,
deepseek_v3, gpt_oss. The field names are those of the ``transformers`` configuration
classes of the same names.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from parc.catalog import ModelArch

SUPPORTED = ("llama", "mistral", "mixtral", "qwen2", "qwen3", "qwen3_moe", "deepseek_v3", "gpt_oss")


class ConfigError(ValueError):
    """A config.json parc cannot use; the message says why and what to do."""


#: (format, precision, quant_method, block, group_size, quantized, kv_cache, source) of a
#: checkpoint's quantization_config, the fields of :class:`parc.catalog.Checkpoint` after the
#: repo id and architecture.
Quant = tuple[str, str, str, tuple[int, ...], int, str, str, str]


def read_config(path: Path) -> ModelArch:
    """Parse ``path`` (a config.json) into a ModelArch keyed by the file name."""
    return load(path)[0]


def load(path: Path) -> tuple[ModelArch, Quant | None]:
    """Parse ``path`` (a config.json) into a ModelArch keyed by the file name, and the
    checkpoint format its ``quantization_config`` describes (None: unquantized)."""
    from parc.files import InputError, read_bounded

    if not path.exists():
        raise ConfigError(f"no such file: {path}")
    if path.is_dir():
        raise ConfigError(f"{path} is a directory; point configPath at the config.json file")
    try:
        raw = json.loads(read_bounded(path, 4 << 20).decode("utf-8"))
    except InputError as exc:
        raise ConfigError(str(exc)) from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"cannot read {path}: {exc}") from None
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{path}:{exc.lineno}:{exc.colno}: not valid JSON: {exc.msg}") from None
    except ValueError:  # an integer of thousands of digits (Python's int-from-string limit)
        raise ConfigError(f"{path}: a number with too many digits; no config.json field needs more than 10") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: a config.json is a JSON object")
    return from_dict(raw, key=f"config:{path.name}"), quantization(raw, str(path))


def _exempt(names: Any, part: str) -> bool:
    return isinstance(names, list) and any(isinstance(n, str) and part in n for n in names)


def quantization(raw: dict[str, Any], where: str) -> Quant | None:
    """The checkpoint format of a config.json's ``quantization_config`` (as the engines read
    it: quant_method and its fields), or None when the weights are not quantized."""
    qc = raw.get("quantization_config")
    if qc is None:
        text = raw.get("text_config")
        qc = text.get("quantization_config") if isinstance(text, dict) else None
    if qc is None:
        return None
    if not isinstance(qc, dict):
        raise ConfigError("config.json field 'quantization_config' must be an object")
    method = qc.get("quant_method")
    src = f"{where} (quantization_config.quant_method {method!r})"
    skip = qc.get("modules_to_not_convert") or qc.get("ignore") or qc.get("ignored_layers") or []
    scope = "mlp" if _exempt(skip, "self_attn") else "all"
    if method == "fp8":
        block = qc.get("weight_block_size")
        if block is None:
            return ("fp8", "fp8", "fp8", (), 0, scope, "auto", src)
        if (not isinstance(block, list) or len(block) != 2
                or not all(isinstance(b, int) and not isinstance(b, bool) and 0 < b <= 4096 for b in block)):
            raise ConfigError(f"quantization_config.weight_block_size must be two positive integers, got {block!r}")
        return ("fp8-block", "fp8", "fp8", (block[0], block[1]), 0, scope, "auto", src)
    if method == "mxfp4":
        return ("mxfp4", "fp4", "mxfp4", (), 32, "experts" if _exempt(skip, "self_attn") else "all", "auto", src)
    if method in ("modelopt", "modelopt_fp4"):
        algo = str(qc.get("quant_algo", "NVFP4" if method == "modelopt_fp4" else "FP8")).upper()
        kv = "fp8" if str(qc.get("kv_cache_quant_algo") or "").upper() == "FP8" else "auto"
        if algo == "FP8":
            return ("fp8", "fp8", "modelopt", (), 0, scope, kv, src)
        if algo == "NVFP4":
            return ("nvfp4", "fp4", "modelopt_fp4", (), int(qc.get("group_size", 16)), scope, kv, src)
        raise ConfigError(f"quantization_config.quant_algo {algo!r} is not one parc reads (FP8, NVFP4)")
    if method in ("fbgemm_fp8", "quark"):
        kv = "fp8" if method == "quark" and qc.get("kv_cache_group") else "auto"
        return ("fp8", "fp8", method, (), 0, scope, kv, src)
    if method in ("awq", "gptq"):
        bits = qc.get("bits", qc.get("w_bit", 4))
        group = qc.get("group_size", qc.get("q_group_size", 128))
        if bits != 4 or not isinstance(group, int) or isinstance(group, bool) or group == 0 or group > 1 << 20:
            raise ConfigError(f"quantization_config: parc reads 4-bit {method} with a positive group_size "
                              f"(got bits {bits!r}, group_size {group!r})")
        return (method, "int4", method, (), group if group > 0 else 0, scope, "auto", src)
    if method == "compressed-tensors":
        groups = qc.get("config_groups") or {}
        w = next((g.get("weights") for g in groups.values() if isinstance(g, dict)), None) \
            if isinstance(groups, dict) else None
        if isinstance(w, dict) and w.get("num_bits") == 8 and w.get("type") == "float":
            kv = "fp8" if qc.get("kv_cache_scheme") else "auto"
            return ("fp8", "fp8", method, (), 0, scope, kv, src)
        if isinstance(w, dict) and w.get("num_bits") == 4 and w.get("type") == "int":
            group = w.get("group_size") or 128
            return ("gptq", "int4", method, (), int(group), scope, "auto", src)
        raise ConfigError("quantization_config: parc reads compressed-tensors FP8 (8-bit float) and W4A16 "
                          "(4-bit int) weights only")
    raise ConfigError(f"quantization_config.quant_method {method!r} is not one parc reads (fp8, mxfp4, modelopt, "
                      "modelopt_fp4, fbgemm_fp8, quark, awq, gptq, compressed-tensors)")


#: Physical bounds of config.json fields: (smallest, largest) a real transformer has, with room.
#: A value outside is a broken or hostile file, reported before any arithmetic runs on it.
BOUNDS = {"num_hidden_layers": (1, 1024), "hidden_size": (1, 1 << 17), "num_attention_heads": (1, 4096),
          "num_key_value_heads": (1, 4096), "vocab_size": (1, 1 << 24), "max_position_embeddings": (1, 1 << 27),
          "intermediate_size": (0, 1 << 20), "moe_intermediate_size": (1, 1 << 20), "num_local_experts": (1, 4096),
          "num_experts": (1, 4096), "n_routed_experts": (1, 4096), "num_experts_per_tok": (1, 4096),
          "n_shared_experts": (0, 64), "first_k_dense_replace": (0, 1024), "kv_lora_rank": (1, 1 << 16),
          "q_lora_rank": (0, 1 << 16), "qk_nope_head_dim": (1, 4096), "qk_rope_head_dim": (0, 4096),
          "v_head_dim": (1, 4096), "sliding_window": (0, 1 << 27), "decoder_sparse_step": (1, 1024)}


def _int(raw: dict[str, Any], name: str, default: int | None = None) -> int:
    value = raw.get(name, default)
    if value is None:
        raise ConfigError(f"config.json has no {name!r}")
    lo, hi = BOUNDS.get(name, (0, 1 << 31))
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise ConfigError(f"config.json field {name!r} must be an integer from {lo} to {hi}, got {value!r}"
                          if isinstance(value, int) and not isinstance(value, bool) and abs(value) < 1 << 64 else
                          f"config.json field {name!r} must be an integer from {lo} to {hi}")
    return value


def from_dict(raw: dict[str, Any], key: str = "config") -> ModelArch:
    """Build a ModelArch from a parsed config.json dict."""
    text = raw.get("text_config")
    if isinstance(text, dict) and "num_hidden_layers" not in raw:
        raw = {**text, "model_type": raw.get("model_type")}
    mtype = raw.get("model_type")
    if mtype not in SUPPORTED:
        raise ConfigError(
            f"model_type {mtype!r} is not one parc reads ({', '.join(SUPPORTED)}); "
            "set model.architecture to a catalog entry with the same shapes instead"
        )
    layers = _int(raw, "num_hidden_layers")
    hidden = _int(raw, "hidden_size")
    heads = _int(raw, "num_attention_heads")
    kv_heads = _int(raw, "num_key_value_heads", heads)
    head_dim = _int(raw, "head_dim") if raw.get("head_dim") is not None else hidden // heads
    if not 1 <= head_dim <= 4096:
        raise ConfigError(f"config.json field 'head_dim' must be an integer from 1 to 4096, got {head_dim!r}")
    if heads % kv_heads:
        raise ConfigError(f"config.json: num_attention_heads {heads} is not a multiple of num_key_value_heads {kv_heads}")
    inter = _int(raw, "intermediate_size", 0)
    moe: dict[str, Any] = dict(
        num_experts=0, experts_per_token=0, moe_intermediate_size=0, num_shared_experts=0,
        shared_expert_intermediate_size=0, first_dense_layers=0,
    )
    mla: dict[str, Any] = dict(q_lora_rank=0, kv_lora_rank=0, qk_nope_head_dim=0, qk_rope_head_dim=0, v_head_dim=0)
    sliding = 0
    sliding_layers = 0
    bias = bool(raw.get("attention_bias", False))
    if mtype == "qwen2":
        bias = True  # Qwen2 always has q/k/v biases (no config switch)
    if mtype in ("mistral", "mixtral", "qwen2", "qwen3", "qwen3_moe") and raw.get("sliding_window"):
        if raw.get("use_sliding_window", mtype in ("mistral", "mixtral")):
            sliding = int(raw["sliding_window"])
            sliding_layers = layers
    if mtype == "mixtral":
        moe.update(num_experts=_int(raw, "num_local_experts"), experts_per_token=_int(raw, "num_experts_per_tok"),
                   moe_intermediate_size=inter)
        inter = 0
    elif mtype == "qwen3_moe":
        dense_layers = raw.get("mlp_only_layers") or []
        moe.update(num_experts=_int(raw, "num_experts"), experts_per_token=_int(raw, "num_experts_per_tok"),
                   moe_intermediate_size=_int(raw, "moe_intermediate_size"), first_dense_layers=len(dense_layers))
        if _int(raw, "decoder_sparse_step", 1) != 1:
            raise ConfigError("qwen3_moe with decoder_sparse_step != 1 is not supported")
    elif mtype == "deepseek_v3":
        moe.update(num_experts=_int(raw, "n_routed_experts"), experts_per_token=_int(raw, "num_experts_per_tok"),
                   moe_intermediate_size=_int(raw, "moe_intermediate_size"),
                   num_shared_experts=_int(raw, "n_shared_experts", 0),
                   shared_expert_intermediate_size=_int(raw, "moe_intermediate_size"),
                   first_dense_layers=_int(raw, "first_k_dense_replace", 0))
        mla.update(q_lora_rank=_int(raw, "q_lora_rank", 0) if raw.get("q_lora_rank") is not None else 0,
                   kv_lora_rank=_int(raw, "kv_lora_rank"), qk_nope_head_dim=_int(raw, "qk_nope_head_dim"),
                   qk_rope_head_dim=_int(raw, "qk_rope_head_dim"), v_head_dim=_int(raw, "v_head_dim"))
        head_dim = mla["qk_nope_head_dim"] + mla["qk_rope_head_dim"]
    elif mtype == "gpt_oss":
        moe.update(num_experts=_int(raw, "num_local_experts"),
                   experts_per_token=_int(raw, "num_experts_per_tok", raw.get("experts_per_token")),
                   moe_intermediate_size=inter)
        inter = 0
        bias = True
        types = raw.get("layer_types") or []
        sliding = _int(raw, "sliding_window", 0)
        sliding_layers = sum(1 for t in types if t == "sliding_attention") if types else layers // 2
    dtype = str(raw.get("torch_dtype") or raw.get("dtype") or "bfloat16")
    return ModelArch(
        key=key,
        name=str(raw.get("_name_or_path") or key),
        model_type=str(mtype),
        hf_ids=(),
        num_hidden_layers=layers,
        hidden_size=hidden,
        num_attention_heads=heads,
        num_key_value_heads=kv_heads,
        head_dim=int(head_dim),
        intermediate_size=inter,
        vocab_size=_int(raw, "vocab_size"),
        max_position_embeddings=_int(raw, "max_position_embeddings"),
        tie_word_embeddings=bool(raw.get("tie_word_embeddings", False)),
        attention_bias=bias,
        torch_dtype=dtype,
        sliding_window=sliding,
        sliding_window_layers=sliding_layers,
        published_params_b=0.0,
        published_active_params_b=0.0,
        config_source=key,
        params_source="",
        **moe,
        **mla,
    )


#: The transformers class name a config.json of each model_type names in ``architectures``.
ARCHITECTURES = {"llama": "LlamaForCausalLM", "mistral": "MistralForCausalLM", "mixtral": "MixtralForCausalLM",
                 "qwen2": "Qwen2ForCausalLM", "qwen3": "Qwen3ForCausalLM", "qwen3_moe": "Qwen3MoeForCausalLM",
                 "deepseek_v3": "DeepseekV3ForCausalLM", "gpt_oss": "GptOssForCausalLM"}


def quantization_config(ckpt: Any) -> dict[str, Any] | None:
    """A checkpoint's format written back as the ``quantization_config`` an engine reads
    (the inverse of :func:`quantization`), None for 16-bit weights."""
    fmt, method = ckpt.format, ckpt.quant_method
    attn = ["model.layers.*.self_attn"] if ckpt.quantized in ("mlp", "experts") else []
    if fmt == "fp8-block":
        return {"quant_method": "fp8", "fmt": "e4m3", "activation_scheme": "dynamic",
                "weight_block_size": list(ckpt.block)}
    if method in ("fp8", "online-fp8") and fmt == "fp8":
        return {"quant_method": "fp8", "fmt": "e4m3", "activation_scheme": "dynamic"} if method == "fp8" else None
    if method == "modelopt":
        out: dict[str, Any] = {"quant_method": "modelopt", "quant_algo": "FP8"}
        if ckpt.kv_cache == "fp8":
            out["kv_cache_quant_algo"] = "FP8"
        return out
    if method == "modelopt_fp4":
        return {"quant_method": "modelopt_fp4", "quant_algo": "NVFP4", "group_size": ckpt.group_size or 16,
                "kv_cache_quant_algo": "FP8" if ckpt.kv_cache == "fp8" else None,
                "exclude_modules": ["lm_head"] + (["model.layers.*.self_attn*"] if attn else [])}
    if method == "fbgemm_fp8":
        return {"quant_method": "fbgemm_fp8", "activation_scale_ub": 1200.0, "modules_to_not_convert": attn + ["lm_head"]}
    if method == "quark":
        fp8 = {"dtype": "fp8_e4m3", "qscheme": "per_tensor", "is_dynamic": False, "symmetric": True,
               "ch_axis": None, "group_size": None, "round_method": None, "scale_type": None, "observer_cls": None}
        return {"quant_method": "quark", "export": {"kv_cache_group": ["*k_proj", "*v_proj"] if ckpt.kv_cache == "fp8"
                                                    else [], "pack_method": "reorder"},
                "global_quant_config": {"input_tensors": fp8, "weight": fp8, "output_tensors": None, "bias": None},
                "layer_quant_config": ({"*k_proj": {"input_tensors": fp8, "weight": fp8, "output_tensors": fp8,
                                                    "bias": None},
                                        "*v_proj": {"input_tensors": fp8, "weight": fp8, "output_tensors": fp8,
                                                    "bias": None}} if ckpt.kv_cache == "fp8" else {}),
                "layer_type_quant_config": {}, "exclude": ["lm_head"]}
    if fmt == "mxfp4":
        return {"quant_method": "mxfp4", "modules_to_not_convert": attn + ["model.layers.*.mlp.router",
                                                                          "model.embed_tokens", "lm_head"]}
    if method == "awq":
        return {"quant_method": "awq", "bits": 4, "group_size": ckpt.group_size, "zero_point": True, "version": "gemm"}
    if method == "gptq":
        return {"quant_method": "gptq", "bits": 4, "group_size": ckpt.group_size, "desc_act": False, "sym": True}
    if method == "compressed-tensors" and fmt == "fp8":
        return {"quant_method": "compressed-tensors", "format": "float-quantized", "ignore": ["lm_head"],
                "config_groups": {"group_0": {"targets": ["Linear"],
                                              "weights": {"num_bits": 8, "type": "float", "strategy": "channel",
                                                          "symmetric": True, "dynamic": False},
                                              "input_activations": {"num_bits": 8, "type": "float", "strategy": "token",
                                                                    "symmetric": True, "dynamic": True}}}}
    return None


def to_dict(arch: ModelArch, ckpt: Any = None) -> dict[str, Any]:
    """``arch`` written back as the Hugging Face config.json of its model_type (the inverse of
    :func:`from_dict`), with the checkpoint's ``quantization_config`` when it has one."""
    cfg: dict[str, Any] = {
        "architectures": [ARCHITECTURES.get(arch.model_type, "")], "model_type": arch.model_type,
        "num_hidden_layers": arch.num_hidden_layers, "hidden_size": arch.hidden_size,
        "num_attention_heads": arch.num_attention_heads, "num_key_value_heads": arch.num_key_value_heads,
        "head_dim": arch.head_dim, "intermediate_size": arch.intermediate_size, "vocab_size": arch.vocab_size,
        "max_position_embeddings": arch.max_position_embeddings, "tie_word_embeddings": arch.tie_word_embeddings,
        "torch_dtype": arch.torch_dtype, "rms_norm_eps": 1e-5, "hidden_act": "silu"}
    t = arch.model_type
    if t == "mixtral":
        cfg.update(num_local_experts=arch.num_experts, num_experts_per_tok=arch.experts_per_token,
                   intermediate_size=arch.moe_intermediate_size, sliding_window=None)
    elif t == "qwen3_moe":
        cfg.update(num_experts=arch.num_experts, num_experts_per_tok=arch.experts_per_token,
                   moe_intermediate_size=arch.moe_intermediate_size, decoder_sparse_step=1, mlp_only_layers=[])
    elif t == "deepseek_v3":
        del cfg["head_dim"]
        cfg.update(n_routed_experts=arch.num_experts, num_experts_per_tok=arch.experts_per_token,
                   moe_intermediate_size=arch.moe_intermediate_size, n_shared_experts=arch.num_shared_experts,
                   first_k_dense_replace=arch.first_dense_layers, q_lora_rank=arch.q_lora_rank,
                   kv_lora_rank=arch.kv_lora_rank, qk_nope_head_dim=arch.qk_nope_head_dim,
                   qk_rope_head_dim=arch.qk_rope_head_dim, v_head_dim=arch.v_head_dim, n_group=8, topk_group=4,
                   moe_layer_freq=1, topk_method="noaux_tc", scoring_func="sigmoid", norm_topk_prob=True,
                   routed_scaling_factor=2.5, rope_theta=10000)
    elif t == "gpt_oss":
        cfg.update(num_local_experts=arch.num_experts, num_experts_per_tok=arch.experts_per_token,
                   intermediate_size=arch.moe_intermediate_size, sliding_window=arch.sliding_window,
                   layer_types=["sliding_attention", "full_attention"] * (arch.num_hidden_layers // 2),
                   attention_bias=True)
    elif t == "mistral":
        cfg.update(sliding_window=arch.sliding_window or None)
    elif t == "llama":
        cfg.update(attention_bias=arch.attention_bias)
    quant = quantization_config(ckpt) if ckpt is not None else None
    if quant is not None:
        cfg["quantization_config"] = quant
    return cfg
