"""What parc knows about hardware and models: the GPU, model, link and efficiency catalogs.

All facts live in TOML files under ``catalog/data/`` with their sources beside them; this
module only reads them into frozen dataclasses and looks entries up (case-insensitively,
with aliases and "did you mean" suggestions).
"""

from __future__ import annotations

import difflib
import functools
import re
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from parc._toml import tomllib

DATA_DIR = Path(__file__).resolve().parent / "data"


@dataclass(frozen=True)
class Source:
    """Where a catalog fact comes from."""

    url: str
    title: str = ""
    covers: str = ""


@dataclass(frozen=True)
class GpuSpec:
    """One GPU model. Units: GB (vendor-printed capacity), GB/s, dense TFLOPS, W."""

    key: str
    name: str
    vendor: str
    architecture: str
    form_factor: str
    aliases: tuple[str, ...]
    memory_gb: float
    memory_type: str
    hbm_bandwidth_gbs: float
    tflops_fp16: float
    tflops_bf16: float
    tflops_fp8: float
    tflops_fp4: float
    tops_int8: float
    nvlink_gbs: float
    nvlink_domain: int
    pcie_gen: int
    pcie_lanes: int
    intra_node_default: str
    tdp_w: float
    sources: tuple[Source, ...]
    note: str = ""
    k8s_resource: str = "nvidia.com/gpu"  # extended resource a pod requests
    k8s_product_label: str = ""  # node label key set by GPU feature discovery
    k8s_product_value: str = ""  # its value for this GPU ("" = do not select on it)

    @property
    def memory_bytes(self) -> float:
        """Capacity in bytes. HBM/GDDR capacities printed as "80 GB" are binary (80 GiB):
        H100 80GB shows 81559 MiB to CUDA, i.e. the stack size less firmware reservations."""
        return self.memory_gb * 1024**3

    @property
    def family(self) -> str:
        """Grouping used for calibration and error bands: the vendor architecture."""
        return self.architecture


@dataclass(frozen=True)
class ModelArch:
    """Shapes of one transformer architecture, as in its Hugging Face config.json."""

    key: str
    name: str
    model_type: str
    hf_ids: tuple[str, ...]
    num_hidden_layers: int
    hidden_size: int
    num_attention_heads: int
    num_key_value_heads: int
    head_dim: int
    intermediate_size: int
    vocab_size: int
    max_position_embeddings: int
    tie_word_embeddings: bool
    attention_bias: bool
    torch_dtype: str
    sliding_window: int
    sliding_window_layers: int
    num_experts: int
    experts_per_token: int
    moe_intermediate_size: int
    num_shared_experts: int
    shared_expert_intermediate_size: int
    first_dense_layers: int
    q_lora_rank: int
    kv_lora_rank: int
    qk_nope_head_dim: int
    qk_rope_head_dim: int
    v_head_dim: int
    published_params_b: float
    published_active_params_b: float
    config_source: str
    params_source: str
    note: str = ""

    @property
    def is_moe(self) -> bool:
        return self.num_experts > 0

    @property
    def is_mla(self) -> bool:
        return self.kv_lora_rank > 0

    @property
    def moe_layers(self) -> int:
        """Number of layers whose MLP is a mixture of experts."""
        return self.num_hidden_layers - self.first_dense_layers if self.is_moe else 0

    @property
    def dense_layers(self) -> int:
        return self.num_hidden_layers - self.moe_layers


def _load_toml(name: str) -> dict[str, Any]:
    with open(DATA_DIR / name, "rb") as fh:
        return tomllib.load(fh)


def _build(cls: type, key: str, raw: dict[str, Any]) -> Any:
    names = {f.name for f in fields(cls)}
    kwargs: dict[str, Any] = {"key": key}
    for k, v in raw.items():
        if k not in names:
            raise ValueError(f"catalog entry {key!r}: unknown field {k!r}")
        if k == "sources":
            v = tuple(Source(**s) for s in v)
        elif isinstance(v, list):
            v = tuple(v)
        kwargs[k] = v
    return cls(**kwargs)


def _norm(name: str) -> str:
    return re.sub(r"[\s_]+", "-", name.strip().lower())


@dataclass(frozen=True)
class Catalog:
    """A keyed catalog with case-insensitive keys and aliases."""

    kind: str
    entries: dict[str, Any]
    index: dict[str, str]

    def get(self, name: str) -> Any | None:
        key = self.index.get(_norm(name))
        return self.entries[key] if key else None

    def suggest(self, name: str, n: int = 1) -> list[str]:
        """Closest canonical keys to ``name`` (via keys and aliases)."""
        names = list(self.index)
        norm = _norm(name)
        # try the name as typed and with the letter O read as zero (H1OO -> H100)
        hits = difflib.get_close_matches(norm, names, n=n * 3, cutoff=0.6)
        hits = difflib.get_close_matches(norm.replace("o", "0"), names, n=n * 3, cutoff=0.6) + hits
        out: list[str] = []
        for h in hits:
            key = self.index[h]
            if key not in out:
                out.append(key)
        return out[:n]

    def keys(self) -> list[str]:
        return sorted(self.entries)


def _index(entries: dict[str, Any], extra: dict[str, list[str]]) -> dict[str, str]:
    index: dict[str, str] = {}
    for key in entries:
        for name in [key, *extra.get(key, [])]:
            n = _norm(name)
            if n in index and index[n] != key:
                raise ValueError(f"catalog name {name!r} is used by both {index[n]!r} and {key!r}")
            index[n] = key
    return index


@functools.lru_cache(maxsize=None)
def gpus() -> Catalog:
    """The GPU catalog (``data/gpus.toml``)."""
    raw = _load_toml("gpus.toml")["gpus"]
    entries = {k: _build(GpuSpec, k, v) for k, v in sorted(raw.items())}
    return Catalog("GPU", entries, _index(entries, {k: list(e.aliases) for k, e in entries.items()}))


@functools.lru_cache(maxsize=None)
def models() -> Catalog:
    """The model architecture catalog (``data/models.toml``); also indexed by HF repo ids."""
    raw = _load_toml("models.toml")["models"]
    entries = {k: _build(ModelArch, k, v) for k, v in sorted(raw.items())}
    return Catalog("model", entries, _index(entries, {k: list(e.hf_ids) for k, e in entries.items()}))


_ID_SUFFIXES = re.compile(
    r"(-(instruct|chat|hf|it|base|fp8|fp8-dynamic|awq|gptq|int4|int8|w4a16|w8a8|nvfp4|fp4|bf16|"
    r"dynamic|quantized|v\d+(\.\d+)*|\d{4}))+$"
)


def model_for_id(model_id: str) -> ModelArch | None:
    """The catalog architecture for a model id: an exact known HF repo id, else the repo
    name with the usual fine-tune/quantisation suffixes stripped (``...-Instruct-AWQ``)."""
    cat = models()
    hit = cat.get(model_id)
    if hit is not None:
        return hit  # type: ignore[no-any-return]
    base = _norm(model_id.rstrip("/").split("/")[-1])
    base = base.replace("meta-llama-", "llama-")
    candidates = {base, _ID_SUFFIXES.sub("", base)}
    for key, arch in cat.entries.items():
        names = {key} | {_norm(h.split("/")[-1]) for h in arch.hf_ids}
        stripped = {_ID_SUFFIXES.sub("", n) for n in names}
        if candidates & (names | stripped):
            return arch  # type: ignore[no-any-return]
    return None


@dataclass(frozen=True)
class Link:
    """A communication link class: bandwidth per GPU per direction and NCCL-style latency."""

    key: str
    gbs_per_direction: float
    latency_us: float
    sources: tuple[Source, ...]
    note: str = ""


@functools.lru_cache(maxsize=None)
def links() -> dict[str, Any]:
    """Link and fabric data (``data/links.toml``)."""
    return _load_toml("links.toml")


@functools.lru_cache(maxsize=None)
def efficiency() -> dict[str, Any]:
    """Efficiency factors of the cost model (``data/efficiency.toml``)."""
    return _load_toml("efficiency.toml")


@functools.lru_cache(maxsize=None)
def builtin_calibration() -> dict[str, Any]:
    """The efficiency factors fitted on the published benchmark corpus
    (``data/calibration.yaml``, written by tests/benchmarks/accuracy.py --fit)."""
    path = DATA_DIR / "calibration.yaml"
    if not path.exists():
        return {}
    from parc.calibrate import load_calibration

    return load_calibration(path)
