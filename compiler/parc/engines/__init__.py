"""Serving engines behind one small interface.

Each engine is one module here (``vllm``, ``trtllm``, ``tgi``, ``sglang``) exporting ``ENGINE``, an object
with the :class:`Engine` protocol, plus a data file ``data/<engine>.toml`` with what the
engine's releases can run (layouts, checkpoint formats per GPU architecture, shape rules),
each fact with its source, and a flag table ``flags/<engine>.toml`` per release.

The solver asks :func:`capabilities` and :mod:`parc.engines.rules` what an engine can express;
the plan stage asks the engine for the processes of a plan group (:meth:`Engine.processes`)
and its config files; the targets ask for the image, the health path and the launcher kind.
Nothing outside this package names an engine, so adding one is a module, a data file, a flag
table and (where it needs new layout) a template folder.
"""

from __future__ import annotations

import functools
import importlib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from parc._toml import tomllib

if TYPE_CHECKING:
    from parc.catalog import Checkpoint

DATA = Path(__file__).resolve().parent

#: Every engine parc emits for, in the order ``engine: auto`` breaks ties.
ENGINES = ("vllm", "trtllm", "tgi", "sglang")

#: Placeholders an argv may hold for values only known on the running cluster, in the
#: Kubernetes ``$(VAR)`` form (the kubelet expands them in container args; parc's shell
#: scripts turn them into ``"${VAR}"``).
HEAD_ADDR = "PARC_HEAD_ADDR"  # address of the replica's first node
CONFIG_DIR = "PARC_CONFIG_DIR"  # directory of parc's generated engine config files
NODE_RANK = "PARC_NODE_RANK"  # index of this node within the replica (0 = head)
DP_START_RANK = "PARC_DP_START_RANK"  # first data-parallel rank of this node (NODE_RANK x local ranks)
PORT = "PARC_PORT"  # the port the server listens on: deploy.port (+ the slot of a replica sharing a SLURM node)
KV_PORT = "PARC_KV_PORT"  # the instance's KV-transfer side channel (SGLang bootstrap, vLLM NIXL): PARC_PORT + 1000
NODE_ADDR = "PARC_NODE_ADDR"  # the address of the node the process runs on (what peers connect back to)
PLACEHOLDERS = (HEAD_ADDR, CONFIG_DIR, NODE_RANK, DP_START_RANK, PORT, KV_PORT, NODE_ADDR)
#: PARC_KV_PORT is PARC_PORT plus this, in every target.
KV_PORT_OFFSET = 1000


def router_url(phase: str, i: int) -> str:
    """The placeholder of the i-th prefill or decode instance's URL in a router's argv."""
    return f"PARC_{phase.upper()}_URL_{i}"


def router_kv_port(i: int) -> str:
    """The placeholder of the i-th prefill instance's KV side-channel port in a router's argv."""
    return f"PARC_PREFILL_KV_PORT_{i}"


@dataclass(frozen=True)
class Rule:
    """One engine rule with its source: what the release refuses or requires."""

    id: str
    text: str
    source: str


@dataclass(frozen=True)
class Capabilities:
    """What an engine release can express (``data/<engine>.toml``).

    ``formats`` maps a checkpoint format to the GPU architectures that run it, each with the
    kernel the release uses there by default (:data:`KERNELS`): ``native`` (tensor cores of
    the format's precision), ``a8`` (4-bit weights against 8-bit activations: FP8 tensor
    cores), ``a16`` (the GPU has tensor cores for the format but the release's default kernel
    keeps 16-bit activations) or ``weight-only`` (no tensor cores for the format: weights
    dequantized to 16 bit in the kernel, e.g. Marlin). ``multi_node`` lists the documented forms of a
    replica that spans nodes: ``ray`` (one engine over a Ray cluster), ``mpi`` (one MPI rank
    per GPU), ``dp`` (one engine process per node, data-parallel ranks, headless workers),
    ``nnodes`` (one engine process per node of one distributed world: SGLang --nnodes).
    """

    name: str
    display: str
    vendors: tuple[str, ...]
    kv_cache: tuple[str, ...]
    pipeline_parallel: bool
    expert_parallel: bool
    dp_attention: bool
    dp_with_pp: bool
    multi_node: tuple[str, ...]
    online_fp8: bool  # serves a 16-bit checkpoint with FP8 weights quantized at load
    formats: dict[str, dict[str, str]]
    rules: dict[str, Rule]
    source: str
    owned: dict[str, str]  # flags parc sets itself -> the spec field that decides them
    kv_admission: str = "current"  # full-request: reserves prompt + output at admission; current: as they grow
    kv_admission_source: str = ""
    # how a prompt chunk is batched: "mixed" into the running decodes' iteration, or "separate",
    # a forward of its own while they wait; with its source
    prefill_batching: str = "mixed"
    prefill_batching_source: str = ""
    # what the engine's memory setting is a share of: "share-of-total" (the whole GPU) or
    # "share-of-free" (what weights, activations and the runtime leave), with its source
    memory_budget: str = "share-of-total"
    memory_budget_source: str = ""
    # disaggregated prefill/decode: the KV transfer backend parc configures ("" = parc emits no
    # disaggregated form for this engine), with its source
    kv_transfer: str = ""
    kv_transfer_source: str = ""
    router: dict[str, str] | None = None  # [router] of the data file: package, image, source

    @property
    def prefills_apart(self) -> bool:
        """Whether a prompt chunk runs as a forward of its own while the decodes wait."""
        return self.prefill_batching == "separate"

    def support(self, fmt: str, architecture: str) -> str | None:
        """The kernel (one of :data:`KERNELS`) this engine runs ``fmt`` with on ``architecture``,
        None where it does not run it."""
        return self.formats.get(fmt, {}).get(architecture)

    def rule(self, rule_id: str) -> Rule:
        return self.rules[rule_id]


#: How a release runs a checkpoint format's quantized layers (``formats`` of the data files).
KERNELS = ("native", "a8", "a16", "weight-only")

#: What an engine's memory setting is a share of (``memory_budget``; costmodel.memory reads both).
MEMORY_READINGS = ("share-of-total", "share-of-free")
#: How an engine batches a prompt chunk with the running decodes (Capabilities.prefill_batching).
PREFILL_BATCHING = ("mixed", "separate")

#: Rule ids the solver and plan stage know how to check (data files may only use these).
KNOWN_RULES = (
    "tp-divides-heads", "tp-kv-heads", "ep-divides-experts", "ep-spans-stage", "block-quant-divisible",
    "group-quant-divisible", "format-architecture", "dp-with-pp", "multi-node-form", "batched-tokens-min",
    "dp-per-rank-seqs", "max-model-len", "moe-dp-uses-ep", "pp-micro-batch-seqs",
)


@functools.lru_cache(maxsize=None)
def capabilities() -> dict[str, Capabilities]:
    """Capabilities of every engine, read from ``data/<engine>.toml``."""
    out = {}
    for name in ENGINES:
        with open(DATA / "data" / f"{name}.toml", "rb") as fh:
            raw = tomllib.load(fh)
        e = raw["engine"]
        rules = {}
        for r in raw.get("rules", []):
            if r["id"] not in KNOWN_RULES:
                raise ValueError(f"engines/data/{name}.toml: unknown rule id {r['id']!r}")
            rules[r["id"]] = Rule(r["id"], r["text"], r["source"])
        formats = {f["format"]: dict(sorted(f["architectures"].items())) for f in raw.get("formats", [])}
        if e["prefill_batching"] not in PREFILL_BATCHING:
            raise ValueError(f"engines/data/{name}.toml: prefill_batching {e['prefill_batching']!r} is not one of "
                             f"{', '.join(PREFILL_BATCHING)}")
        if e["memory_budget"] not in MEMORY_READINGS:
            raise ValueError(f"engines/data/{name}.toml: memory_budget {e['memory_budget']!r} is not one of "
                             f"{', '.join(MEMORY_READINGS)}")
        for fmt, archs in formats.items():
            for arch_name, kernel in archs.items():
                if kernel not in KERNELS:
                    raise ValueError(f"engines/data/{name}.toml: format {fmt!r} on {arch_name}: unknown kernel "
                                     f"{kernel!r} (one of {', '.join(KERNELS)})")
        out[name] = Capabilities(
            name=name, display=e["display"], vendors=tuple(e["vendors"]), kv_cache=tuple(e["kv_cache"]),
            pipeline_parallel=e["pipeline_parallel"], expert_parallel=e["expert_parallel"],
            dp_attention=e["dp_attention"], dp_with_pp=e["dp_with_pp"], multi_node=tuple(e["multi_node"]),
            online_fp8=e["online_fp8"], formats=formats, rules=rules, source=e["source"],
            owned=dict(raw.get("owned", {})), kv_admission=e["kv_admission"],
            kv_admission_source=e["kv_admission_source"], prefill_batching=e["prefill_batching"],
            prefill_batching_source=e["prefill_batching_source"], memory_budget=e["memory_budget"],
            memory_budget_source=e["memory_budget_source"], kv_transfer=e.get("kv_transfer", ""),
            kv_transfer_source=e.get("kv_transfer_source", ""),
            router=dict(raw["router"]) if "router" in raw else None)
    return out


@dataclass(frozen=True)
class Job:
    """Everything an engine needs to launch one replica of a plan group (typed, frozen).

    Settings are per engine instance as the engine defines them: ``max_num_seqs`` per
    data-parallel rank, ``max_num_batched_tokens`` per iteration of one rank."""

    model_id: str
    port: int
    version: str | None
    extra_args: tuple[str, ...]
    checkpoint: Checkpoint
    kv_cache_dtype: str  # auto | fp8
    tp: int
    pp: int
    ep: int
    dpa: int
    nodes: int  # nodes per replica
    gpus_per_node: int  # GPUs of the replica on each node
    vendor: str  # nvidia | amd
    gpu_architecture: str
    inter_node: str
    fabric_env: tuple[tuple[str, str], ...]
    max_num_seqs: int
    max_model_len: int
    max_num_batched_tokens: int
    gpu_memory_utilization: float
    kv_cache_fraction: float  # share of the memory free after weights and activations that the KV cache takes
    cuda_graph_max_batch: int
    kernel: str  # how the quantized layers run (KERNELS): native | a8 | a16 | weight-only
    phase: str = "both"  # both (aggregated) | prefill | decode (an instance of a disaggregated plan)
    kv_transfer: str = ""  # the KV-cache transfer backend between prefill and decode instances
    # (weights + KV cache) / physical memory of a GPU: the static pool SGLang's --mem-fraction-static
    # sizes (activations, CUDA graphs and NCCL buffers live outside it)
    static_memory_fraction: float = 0.0

    @property
    def gpus(self) -> int:
        return self.tp * self.pp * self.dpa


@dataclass(frozen=True)
class Process:
    """One process of a replica: its role (server | head | worker), exact argv and environment."""

    role: str
    argv: tuple[str, ...]
    env: tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class ConfigFile:
    """An engine config file parc writes beside the launch scripts (YAML mapping)."""

    name: str
    data: dict[str, Any]


@dataclass(frozen=True)
class Discovery:
    """Kubernetes pod discovery for a router: the pods of each phase by label, in a namespace,
    serving on ``port``."""

    namespace: str
    prefill: tuple[tuple[str, str], ...]  # label selector of the prefill pods
    decode: tuple[tuple[str, str], ...]
    port: int


@dataclass(frozen=True)
class RouterJob:
    """The prefill/decode router of a disaggregated plan: where it listens and how it finds the
    instances, either listed (``prefill``/``decode`` replica counts, their URLs the
    :func:`router_url` placeholders) or discovered (Kubernetes)."""

    version: str | None
    port: int
    prefill: int
    decode: int
    discovery: Discovery | None = None


def router_instances(job: RouterJob, kv_ports: bool) -> list[str]:
    """How a router (vllm-router, sglang-router: the same command line) finds the instances:
    ``--prefill URL [KV_PORT]`` and ``--decode URL`` per listed instance (the :func:`router_url`
    placeholders; the prefill's KV side-channel port where the router passes it on), or
    Kubernetes pod discovery by label in a namespace."""
    d = job.discovery
    if d is None:
        out: list[str] = []
        for i in range(job.prefill):
            out += ["--prefill", f"$({router_url('prefill', i)})"] + ([f"$({router_kv_port(i)})"] if kv_ports else [])
        for i in range(job.decode):
            out += ["--decode", f"$({router_url('decode', i)})"]
        return out
    return ["--service-discovery", "--prefill-selector", *(f"{k}={v}" for k, v in d.prefill),
            "--decode-selector", *(f"{k}={v}" for k, v in d.decode),
            "--service-discovery-namespace", d.namespace, "--service-discovery-port", str(d.port)]


def release_image(engine: str, version: str | None, vendor: str) -> str:
    """The official image of an engine release for GPUs of ``vendor`` (flags/<engine>.toml: its
    image, or ``images.amd`` for AMD; "" when the release has none)."""
    from parc.engines import flags

    rel = flags.release(engine, version)
    return rel.images.get("amd", "") if vendor == "amd" else rel.image


class Engine(Protocol):
    """What every engine module provides."""

    name: str
    health_path: str

    def launcher(self, job: Job) -> str:
        """How a replica starts: ``single`` (one process on one node), ``ray``, ``mpi`` or ``dp``."""

    def processes(self, job: Job) -> tuple[Process, ...]:
        """The processes of one replica (one per role), argv exactly as the engine gets it."""

    def config_files(self, job: Job) -> tuple[ConfigFile, ...]:
        """Config files the argv refers to through ``$(PARC_CONFIG_DIR)``."""

    def image(self, version: str | None, vendor: str) -> str:
        """The official container image of the release for GPUs of ``vendor`` ("" if none)."""

    def notes(self, job: Job) -> tuple[str, ...]:
        """Sentences for the plan about engine-specific choices (recipe differences, backends)."""

    def router(self, job: RouterJob) -> Process:
        """The prefill/decode router of a disaggregated plan (engines with ``kv_transfer``)."""


@functools.lru_cache(maxsize=None)
def get(name: str) -> Engine:
    """The engine module ``parc.engines.<name>``'s ENGINE object."""
    if name not in ENGINES:
        raise KeyError(name)
    return importlib.import_module(f"parc.engines.{name}").ENGINE  # type: ignore[no-any-return]


def kernel_notes(display: str, job: Job) -> list[str]:
    """What the plan says when the engine's kernel runs the checkpoint's quantized layers below
    the format's own tensor-core rate (the cost model prices them the same way)."""
    fmt, arch = job.checkpoint.format, job.gpu_architecture
    if job.kernel == "weight-only":
        return [f"{display} runs this {fmt} checkpoint with weight-only kernels on {arch} GPUs "
                f"(no {job.checkpoint.precision} tensor cores): GEMMs at 16-bit rate"]
    if job.kernel == "a16":
        return [f"{display} runs this {fmt} checkpoint's quantized layers with 16-bit activations on {arch} GPUs "
                f"(its default kernel): GEMMs at 16-bit rate"]
    if job.kernel == "a8":
        return [f"{display} runs this {fmt} checkpoint's quantized layers against 8-bit activations on {arch} "
                f"GPUs: GEMMs at FP8 rate"]
    return []


def env_pairs(*maps: dict[str, str]) -> tuple[tuple[str, str], ...]:
    """Merged environment variables in a stable (sorted) order."""
    merged: dict[str, str] = {}
    for m in maps:
        merged.update(m)
    return tuple(sorted(merged.items()))


def num(x: float) -> str:
    """A float as the shortest decimal with at most 4 places (0.9, 0.925)."""
    s = f"{x:.4f}".rstrip("0").rstrip(".")
    return s or "0"


@dataclass(frozen=True)
class Recipe:
    """How an engine's own recipe deploys a model on one GPU architecture (data/recipes.toml)."""

    engine: str
    architecture: str
    gpu_architecture: str
    objective: str
    nodes: int
    tp: int
    pp: int
    ep: int
    dpa: int
    settings: str
    source: str

    @property
    def layout(self) -> str:
        return f"tp={self.tp} pp={self.pp} ep={self.ep} dpAttention={self.dpa}"


@functools.lru_cache(maxsize=None)
def recipes() -> tuple[Recipe, ...]:
    with open(DATA / "data" / "recipes.toml", "rb") as fh:
        raw = tomllib.load(fh)
    return tuple(Recipe(**r) for r in raw["recipes"])


def recipe_for(engine: str, architecture: str, gpu_architecture: str, objective: str,
               nodes: int) -> Recipe | None:
    """The recipe for this engine, model and GPU architecture at this objective (cost plans are
    compared with the throughput recipe) on at most ``nodes`` nodes, largest first."""
    want = "latency" if objective == "latency" else "throughput"
    hits = [r for r in recipes() if (r.engine, r.architecture, r.gpu_architecture, r.objective)
            == (engine, architecture, gpu_architecture, want) and r.nodes <= nodes]
    return max(hits, key=lambda r: r.nodes) if hits else None
