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


def read_config(path: Path) -> ModelArch:
    """Parse ``path`` (a config.json) into a ModelArch keyed by the file name."""
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"no such file: {path}") from None
    except IsADirectoryError:
        raise ConfigError(f"{path} is a directory; point configPath at the config.json file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read {path}: {exc}") from None
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{path}:{exc.lineno}:{exc.colno}: not valid JSON: {exc.msg}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: a config.json is a JSON object")
    return from_dict(raw, key=f"config:{path.name}")


def _int(raw: dict[str, Any], name: str, default: int | None = None) -> int:
    value = raw.get(name, default)
    if value is None:
        raise ConfigError(f"config.json has no {name!r}")
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ConfigError(f"config.json field {name!r} must be a non-negative integer, got {value!r}")
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
    head_dim = raw.get("head_dim") or (hidden // heads if heads else 0)
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
