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
    scaleup_link_gbs: float = 0.0  # per link and direction of a point-to-point mesh (xGMI); 0: switched (NVSwitch)
    # whether the NVLink domain joins several nodes (rack-scale NVLink switches: GB200 NVL72's
    # 18 compute trays); an HGX/DGX board's domain ends at its node
    nvlink_spans_nodes: bool = False
    # GiB the CUDA (HIP) runtime reports as the device's total (cudaMemGetInfo / torch
    # mem_get_info, what vLLM prints as total_gpu_memory and multiplies by
    # gpu_memory_utilization): the printed capacity less the driver's reservation and, on GDDR
    # parts, in-band ECC. 0 where no source prints it: then the printed capacity, in GiB.
    memory_visible_gib: float = 0.0

    @property
    def memory_bytes(self) -> float:
        """Capacity in bytes an engine can allocate from: the CUDA-visible total where a source
        prints it (H100 SXM 80GB: 79.22 GiB), else the printed capacity read as binary (80 GB as
        80 GiB), which overstates it by the driver's reservation (about 1%; on GDDR parts with
        ECC on, 7%)."""
        return (self.memory_visible_gib or self.memory_gb) * 1024**3

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

    return load_calibration(path, shipped=True)


# ----------------------------------------------------------------------------- checkpoints

#: Checkpoint formats and the spec precision each one is.
FORMATS = {"bf16": "bf16", "fp16": "fp16", "fp8": "fp8", "fp8-block": "fp8", "mxfp4": "fp4", "nvfp4": "fp4",
           "awq": "int4", "gptq": "int4", "int8": "int8"}
#: The format a precision means when nothing says more (a repo parc does not know, no configPath).
DEFAULT_FORMAT = {"bf16": "bf16", "fp16": "fp16", "fp8": "fp8", "fp4": "nvfp4", "int4": "awq", "int8": "int8"}
#: Bits per stored weight, and bits of one scale (divided by the weights it covers).
_WEIGHT_BITS = {"bf16": 16, "fp16": 16, "fp8": 8, "fp8-block": 8, "mxfp4": 4, "nvfp4": 4, "awq": 4, "gptq": 4,
                "int8": 8}
_SCALE_BITS = {"fp8-block": 32, "mxfp4": 8, "nvfp4": 8, "awq": 16, "gptq": 16}
_DEFAULT_GROUP = {"mxfp4": 32, "nvfp4": 16, "awq": 128, "gptq": 128}


@dataclass(frozen=True)
class Checkpoint:
    """How a checkpoint stores its weights (``quantization_config`` of its config.json).

    ``block`` is the weight_block_size (n, k) of block-quantized formats; ``group_size`` the
    weights per scale of group formats; ``quantized`` which linear layers carry the format
    (all | experts | mlp), the rest staying 16-bit."""

    repo_id: str
    architecture: str
    format: str
    precision: str
    quant_method: str
    block: tuple[int, ...]
    group_size: int
    quantized: str
    kv_cache: str
    source: str

    @property
    def bytes_per_weight(self) -> float:
        """Bytes one quantized weight takes, its share of the scales included."""
        bits = float(_WEIGHT_BITS[self.format])
        if self.format == "fp8-block" and len(self.block) == 2:
            bits += _SCALE_BITS[self.format] / (self.block[0] * self.block[1])
        elif self.format in _SCALE_BITS:
            bits += _SCALE_BITS[self.format] / (self.group_size or _DEFAULT_GROUP[self.format])
        return bits / 8

    def layer_bytes(self, kind: str) -> float:
        """Bytes per weight of a linear layer of ``kind`` (attention | mlp | experts)."""
        if self.quantized == "all" or (self.quantized == "mlp" and kind != "attention") or kind == "experts":
            return self.bytes_per_weight
        return 2.0


def assumed_checkpoint(repo_id: str, architecture: str, precision: str, source: str) -> Checkpoint:
    """A checkpoint parc knows nothing about beyond the spec's precision: the usual format of
    that precision, every linear layer quantized (what quantization toolkits do by default)."""
    fmt = DEFAULT_FORMAT[precision]
    return Checkpoint(repo_id, architecture, fmt, precision, fmt if fmt not in ("bf16", "fp16") else "", (),
                      _DEFAULT_GROUP.get(fmt, 0), "all", "auto", source)


@functools.lru_cache(maxsize=None)
def checkpoints() -> dict[str, Checkpoint]:
    """The checkpoint catalog (``data/checkpoints.toml``), keyed by lower-case repo id."""
    raw = _load_toml("checkpoints.toml")["checkpoints"]
    out = {}
    for repo, v in sorted(raw.items()):
        if v["format"] not in FORMATS or FORMATS[v["format"]] != v["precision"]:
            raise ValueError(f"checkpoint {repo!r}: format {v['format']!r} is not precision {v['precision']!r}")
        out[repo.lower()] = Checkpoint(repo, v["architecture"], v["format"], v["precision"], v["quant_method"],
                                       tuple(v["block"]), int(v["group_size"]), v["quantized"], v["kv_cache"],
                                       v["source"])
    return out


def checkpoint_for(repo_id: str) -> Checkpoint | None:
    """The catalog entry of a Hugging Face repo id (exact, case-insensitive), if any."""
    return checkpoints().get(repo_id.strip().rstrip("/").lower())
