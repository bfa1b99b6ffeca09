"""Stage 3, resolve: a validated spec -> the model shapes and hardware facts the solver needs.

Also the semantic checks that need the catalogs or more than one section (model known,
context within the model's maximum, unique pools, targets vs schedulers, engine vs
precision). Problems are located in the spec and reported all together.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from parc import catalog
from parc.catalog import Checkpoint, GpuSpec, ModelArch
from parc.engines import capabilities
from parc.errors import Problem, SpecError
from parc.loader import Document, load_file
from parc.spec import ServingSpec
from parc.validate import validate_sections


@dataclass(frozen=True)
class ResolvedPool:
    """A pool with its GPU facts and link defaults filled in."""

    index: int
    name: str
    gpu: GpuSpec
    nodes: int
    gpus_per_node: int
    intra_node: str  # nvlink | pcie
    nvlink_domain: int  # GPUs that share one NVLink domain (within or across nodes)
    inter_node: str  # infiniband | roce | ethernet | none
    inter_node_gbps: float  # per GPU, Gbit/s
    scheduler: str
    fabric_env: tuple[tuple[str, str], ...] = ()  # NCCL/Gloo interface settings for multi-node replicas
    rdma_resource: str = ""  # Kubernetes extended resource of the RDMA devices ("" = none requested)
    rdma_per_pod: int = 1
    networks: str = ""  # Multus networks annotation of multi-node pods
    cost_per_gpu_hour: float | None = None  # the user's price per GPU-hour (any currency); None: unpriced

    @property
    def gpus(self) -> int:
        return self.nodes * self.gpus_per_node

    @property
    def tp_domain(self) -> int:
        """Largest set of GPUs a TP group may span: a node, or a larger NVLink domain."""
        if self.intra_node == "nvlink" and self.nvlink_domain > self.gpus_per_node:
            return min(self.nvlink_domain, self.gpus)
        return self.gpus_per_node


@dataclass(frozen=True)
class Resolved:
    """Everything later stages need, immutable."""

    spec: ServingSpec
    file: str
    spec_sha256: str
    model: ModelArch
    pools: tuple[ResolvedPool, ...]
    max_context_length: int
    targets: tuple[str, ...]
    checkpoint: Checkpoint  # the weights as served (online FP8: quant_method "online-fp8")
    kv_precision: str  # auto | fp8, the checkpoint's default applied
    calibration: dict[str, Any] | None = None  # None: the built-in fit
    calibration_source: str = "built-in"


def load_and_resolve(path: str | Path) -> Resolved:
    """Load, validate and resolve a spec file; every problem at once or a Resolved."""
    return resolve(load_file(path))


def resolve(doc: Document) -> Resolved:
    """Validate ``doc`` and resolve it. Raises SpecError with every problem found."""
    spec, sec, problems = validate_sections(doc)
    arch: ModelArch | None = None
    ckpt: Checkpoint | None = None
    if "model" in sec:
        arch, shipped = _resolve_model(sec["model"], doc, problems)
        if arch is not None:
            ckpt = _resolve_checkpoint(sec["model"], arch, shipped, doc, problems)
    if arch is not None and "model" in sec:
        _check_context(sec["model"], sec.get("workload"), arch, doc, problems)
    pools: tuple[ResolvedPool, ...] = ()
    if "cluster" in sec:
        pools = _resolve_pools(sec["cluster"], doc, problems)
        if "slo" in sec and sec["slo"].objective == "cost":
            _check_prices(pools, doc, problems)
    raw_workload = doc.data.get("workload") if isinstance(doc.data, dict) else None
    given = isinstance(raw_workload, dict) and "concurrency" in raw_workload
    if "workload" in sec and "slo" in sec and not given:
        if sec["workload"].concurrency is None and sec["slo"].objective != "throughput":
            problems.append(Problem(doc.locate(("workload",)), "workload.concurrency",
                                    f"required when slo.objective is {sec['slo'].objective}: "
                                    "set the concurrent requests to plan for, or use objective: throughput"))
    if "engine" in sec and "model" in sec:
        _check_engine(sec["engine"], sec["model"], ckpt, pools, doc, problems)
    _check_pool_names(doc, problems)
    targets: tuple[str, ...] = ()
    whole = spec if spec is not None else sec.get("_spec")
    if whole is not None:
        targets = _targets(whole, doc, problems)
    else:
        _check_raw_targets(doc, problems)
    cal, cal_source = None, "built-in"
    whole_cal = whole.calibration if whole is not None else None
    if whole_cal is not None:
        cal, cal_source = _load_calibration(whole_cal, doc, problems)
    if problems or spec is None or arch is None or ckpt is None:
        raise SpecError(problems)
    ctx = spec.model.max_context_length or _default_context(spec, arch)
    kv = spec.model.kv_cache_precision
    if kv == "auto" and ckpt.kv_cache == "fp8":
        kv = "fp8"
    return Resolved(spec, doc.file, spec_digest(spec), arch, pools, ctx, targets, ckpt, kv, cal, cal_source)


def _load_calibration(ref: str, doc: Document, problems: list[Problem]) -> tuple[dict[str, Any] | None, str]:
    from parc.calibrate import load_calibration

    path = Path(ref)
    if not path.is_absolute():
        path = doc.base_dir / path
    try:
        return load_calibration(path), ref
    except ValueError as exc:
        problems.append(Problem(doc.locate(("calibration",)), "calibration", str(exc)))
        return None, ref


def spec_digest(spec: ServingSpec) -> str:
    """SHA-256 of the spec's canonical JSON (key order and formatting of the YAML do not matter).
    Fields at their defaults are left out, so writing a default makes no difference and a parc
    release that adds a field with a default keeps every existing spec's digest."""
    canon = json.dumps(spec.model_dump(mode="json", by_alias=True, exclude_defaults=True), sort_keys=True,
                       separators=(",", ":"))
    return hashlib.sha256(canon.encode()).hexdigest()


def _resolve_model(model: Any, doc: Document, problems: list[Problem]) -> tuple[ModelArch | None, Checkpoint | None]:
    """The architecture, and the checkpoint format when the config.json or the checkpoint
    catalog says what the weights ship as."""
    from parc.catalog.hfconfig import ConfigError, load

    if model.config_path is not None:
        path = Path(model.config_path)
        if not path.is_absolute():
            path = doc.base_dir / path
        try:
            read, quant = load(path)
        except ConfigError as exc:
            problems.append(Problem(doc.locate(("model", "configPath")), "model.configPath", str(exc)))
            return None, None
        return read, (catalog.Checkpoint(model.id, read.key, *quant) if quant else None)
    models = catalog.models()
    shipped = catalog.checkpoint_for(model.id)
    arch: ModelArch | None
    if model.architecture is not None:
        arch = models.get(model.architecture)
        if arch is None:
            close = models.suggest(model.architecture)
            hint = f"did you mean {close[0]!r}?" if close else "see `parc catalog models`"
            problems.append(Problem(doc.locate(("model", "architecture")), "model.architecture",
                                    f"unknown architecture {model.architecture!r}; {hint}"))
        return arch, shipped
    if shipped is not None:
        return models.get(shipped.architecture), shipped
    arch = catalog.model_for_id(model.id)
    if arch is None:
        close = models.suggest(model.id.split("/")[-1])
        hint = f" (closest: {close[0]!r})" if close else ""
        problems.append(Problem(doc.locate(("model", "id")), "model.id",
                                f"cannot infer the architecture of {model.id!r}; set model.architecture to a "
                                f"catalog key{hint} or model.configPath to its config.json"))
    return arch, None


def _resolve_checkpoint(model: Any, arch: ModelArch, shipped: Checkpoint | None, doc: Document,
                        problems: list[Problem]) -> Checkpoint | None:
    """The weights as served. model.precision defaults to the checkpoint's; fp8 on a 16-bit
    checkpoint is FP8 quantized at load; any other mismatch is an error (parc does not quantize)."""
    want = model.precision
    if shipped is None and model.id.lower() in {h.lower() for h in arch.hf_ids}:
        # the architecture's own repos ship the model's 16-bit weights (quantized releases of
        # official repos are in the checkpoint catalog)
        dtype = "fp16" if arch.torch_dtype == "float16" else "bf16"
        shipped = Checkpoint(model.id, arch.key, dtype, dtype, "", (), 0, "all", "auto",
                             f"{arch.config_source} (torch_dtype {arch.torch_dtype}, no quantization_config)")
    if shipped is None:
        prec = want or ("fp16" if arch.torch_dtype == "float16" else "bf16")
        return catalog.assumed_checkpoint(model.id, arch.key, prec, "model.precision (the checkpoint is not in "
                                          "parc's catalog and no configPath gives its quantization_config)")
    if want is None or want == shipped.precision:
        return shipped
    if shipped.format in ("bf16", "fp16") and want in ("bf16", "fp16"):  # a 16-bit cast at load
        return Checkpoint(shipped.repo_id, shipped.architecture, want, want, "", (), 0, "all", shipped.kv_cache,
                          shipped.source)
    if shipped.format in ("bf16", "fp16") and want == "fp8":
        return Checkpoint(shipped.repo_id, shipped.architecture, "fp8", "fp8", "online-fp8", (), 0, "all",
                          shipped.kv_cache, shipped.source)
    where = "its config.json" if model.config_path is not None or not shipped.quant_method and \
        catalog.checkpoint_for(model.id) is None else "parc's checkpoint catalog"
    problems.append(Problem(doc.locate(("model", "precision")), "model.precision",
                            f"{model.id} ships {shipped.format} weights ({shipped.precision}, per {where}); it "
                            f"cannot be served as {want}: remove model.precision, or set model.id to a {want} "
                            "checkpoint"))
    return None


def _default_context(spec: ServingSpec, arch: ModelArch) -> int:
    need = spec.workload.input_tokens + spec.workload.output_tokens
    want = max(4096, 4 * need)
    want = -(-want // 1024) * 1024
    return min(arch.max_position_embeddings, want)


def _check_context(model: Any, workload: Any, arch: ModelArch, doc: Document, problems: list[Problem]) -> None:
    ctx = model.max_context_length
    if ctx is not None and ctx > arch.max_position_embeddings:
        problems.append(Problem(doc.locate(("model", "maxContextLength")), "model.maxContextLength",
                                f"{ctx} is above the maximum of {arch.key} ({arch.max_position_embeddings} tokens); "
                                f"use at most {arch.max_position_embeddings}"))
    if workload is not None:
        need = workload.input_tokens + workload.output_tokens
        limit = ctx if ctx is not None else arch.max_position_embeddings
        if need > limit:
            problems.append(Problem(doc.locate(("workload", "inputTokens")), "workload",
                                    f"inputTokens + outputTokens = {need} is above the context length of {limit} "
                                    "tokens; shorten the workload or raise model.maxContextLength"))


def _resolve_pools(cluster: Any, doc: Document, problems: list[Problem]) -> tuple[ResolvedPool, ...]:
    fabric = catalog.links()["fabric"]["default_gbps_per_gpu"]
    out = []
    for i, pool in enumerate(cluster.pools):
        where = ("cluster", "pools", i)
        gpu: GpuSpec = catalog.gpus().entries[pool.gpu]  # validation made it a catalog key
        intra = pool.intra_node or gpu.intra_node_default
        if intra == "nvlink" and gpu.nvlink_gbs <= 0:
            problems.append(Problem(doc.locate(where + ("intraNode",)), f"cluster.pools[{i}].intraNode",
                                    f"{gpu.key} has no NVLink; remove intraNode or set it to pcie"))
        domain = gpu.nvlink_domain if intra == "nvlink" else 0
        if not gpu.nvlink_spans_nodes:
            domain = min(domain, pool.gpus_per_node)  # a board's NVLink ends at its node
        inter = pool.inter_node or "none"
        if pool.inter_node_gbps is not None and inter == "none":
            problems.append(Problem(doc.locate(where + ("interNodeGbps",)), f"cluster.pools[{i}].interNodeGbps",
                                    "set interNode (infiniband, roce or ethernet) when giving interNodeGbps"))
        gbps = pool.inter_node_gbps or (fabric.get(inter, 0.0) if inter != "none" else 0.0)
        env = tuple((k, v) for k, v in (("GLOO_SOCKET_IFNAME", pool.gloo_socket_ifname),
                                        ("NCCL_IB_HCA", pool.nccl_ib_hca),
                                        ("NCCL_SOCKET_IFNAME", pool.nccl_socket_ifname)) if v)
        out.append(ResolvedPool(i, pool.name, gpu, pool.nodes, pool.gpus_per_node, intra, domain, inter,
                                float(gbps), pool.scheduler, env, pool.rdma_resource or "", pool.rdma_per_pod,
                                pool.networks or "", pool.cost_per_gpu_hour))
    return tuple(out)


def _check_prices(pools: tuple[ResolvedPool, ...], doc: Document, problems: list[Problem]) -> None:
    """Objective cost compares placements by cost per hour when pools are priced: then every
    pool needs a price (an unpriced pool would look free)."""
    priced = [p for p in pools if p.cost_per_gpu_hour is not None]
    if not priced:
        return
    for p in pools:
        if p.cost_per_gpu_hour is None:
            problems.append(Problem(doc.locate(("cluster", "pools", p.index)), f"cluster.pools[{p.index}].costPerGpuHour",
                                    f"required with slo.objective cost because pool {priced[0].name!r} is priced "
                                    "(an unpriced pool would look free); price every pool or none"))


def _raw_pools(doc: Document) -> list[Any]:
    cluster = doc.data.get("cluster") if isinstance(doc.data, dict) else None
    pools = cluster.get("pools") if isinstance(cluster, dict) else None
    return pools if isinstance(pools, list) else []


def _check_pool_names(doc: Document, problems: list[Problem]) -> None:
    """Pool names are unique (checked on the raw data, so it runs even when a pool has
    other errors)."""
    seen: dict[str, int] = {}
    for i, pool in enumerate(_raw_pools(doc)):
        name = pool.get("name") if isinstance(pool, dict) else None
        if not isinstance(name, str):
            continue
        if name in seen:
            problems.append(Problem(doc.locate(("cluster", "pools", i, "name")), f"cluster.pools[{i}].name",
                                    f"pool name {name!r} is already used by cluster.pools[{seen[name]}]; "
                                    "pool names must be unique"))
        seen.setdefault(name, i)


def _check_raw_targets(doc: Document, problems: list[Problem]) -> None:
    """Targets vs schedulers on the raw data, for specs that did not validate."""
    targets = doc.data.get("targets") if isinstance(doc.data, dict) else None
    if not isinstance(targets, list):
        return
    schedulers = {p.get("scheduler", "none") for p in _raw_pools(doc) if isinstance(p, dict)}
    _need_schedulers([t for t in targets], schedulers, doc, problems)


def _need_schedulers(targets: list[Any], schedulers: set[Any], doc: Document, problems: list[Problem]) -> None:
    need = {"slurm": "slurm", "kubernetes": "kubernetes", "helm": "kubernetes"}
    for i, t in enumerate(targets):
        if isinstance(t, str) and t in need and need[t] not in schedulers:
            problems.append(Problem(doc.locate(("targets", i)), f"targets[{i}]",
                                    f"target {t!r} needs a pool with scheduler: {need[t]}; set it on a pool "
                                    "or remove the target"))


def _check_engine(engine: Any, model: Any, ckpt: Checkpoint | None, pools: tuple[ResolvedPool, ...], doc: Document,
                  problems: list[Problem]) -> None:
    if engine.name == "auto":
        if engine.version is not None:
            problems.append(Problem(doc.locate(("engine", "version")), "engine.version",
                                    "a version needs an engine: set engine.name to vllm, trtllm or tgi"))
        if engine.extra_args:
            problems.append(Problem(doc.locate(("engine", "extraArgs")), "engine.extraArgs",
                                    "extraArgs are one engine's flags: set engine.name to the engine they are for"))
        return
    from parc.engines import flags

    known = flags.versions(engine.name)
    if engine.version is not None and engine.version not in known:
        problems.append(Problem(doc.locate(("engine", "version")), "engine.version",
                                f"parc has no flag table for {engine.name} {engine.version}; known: "
                                f"{', '.join(known)} (default {flags.default_version(engine.name)})"))
    cap = capabilities()[engine.name]
    if engine.version is None or engine.version in known:
        _check_extra_args(engine, cap, doc, problems)
    if ckpt is not None and not cap.formats.get(ckpt.format):
        runs = ", ".join(f for f, archs in cap.formats.items() if archs)
        problems.append(Problem(doc.locate(("model", "precision") if model.precision else ("model", "id")),
                                "model.precision" if model.precision else "model.id",
                                f"{cap.display} does not run {ckpt.format} ({ckpt.precision}) checkpoints on any GPU "
                                f"(it runs {runs}); change the precision, the checkpoint or engine.name"))
    elif ckpt is not None and ckpt.quant_method == "online-fp8" and not cap.online_fp8:
        problems.append(Problem(doc.locate(("model", "precision")), "model.precision",
                                f"{cap.display} does not quantize a 16-bit checkpoint to FP8 at load; set model.id "
                                "to an FP8 checkpoint, remove model.precision, or change engine.name"))
    if model.kv_cache_precision not in cap.kv_cache:
        problems.append(Problem(doc.locate(("model", "kvCachePrecision")), "model.kvCachePrecision",
                                f"{cap.display} has no {model.kv_cache_precision} KV cache"))
    if engine.disaggregation != "off" and not cap.kv_transfer:
        able = ", ".join(n for n, c in capabilities().items() if c.kv_transfer)
        problems.append(Problem(doc.locate(("engine", "disaggregation")), "engine.disaggregation",
                                f"parc deploys disaggregated prefill/decode with {able}, not {cap.display}; set "
                                f"engine.name to one of them (or auto), or engine.disaggregation: off"))
    if pools and not any(p.gpu.vendor in cap.vendors for p in pools):
        problems.append(Problem(doc.locate(("engine", "name")), "engine.name",
                                f"{cap.display} runs on {' and '.join(v.upper() for v in cap.vendors)} GPUs only "
                                "and no pool has one; "
                                "use engine: auto or vllm"))


def _check_extra_args(engine: Any, cap: Any, doc: Document, problems: list[Problem]) -> None:
    """engine.extraArgs against the release's flag table: every flag exists, takes the value
    given, and is not one parc sets itself (the field to use instead is named)."""
    from parc.engines import flags

    rel = flags.release(engine.name, engine.version)
    args = list(engine.extra_args)
    i = 0
    while i < len(args):
        a = args[i]
        where = doc.locate(("engine", "extraArgs", i))
        name, _, inline = a.partition("=") if a.startswith("--") else (a, "", "")
        if not name.startswith("-"):
            problems.append(Problem(where, f"engine.extraArgs[{i}]", f"{a!r} is not a flag of {cap.display} "
                                    f"{rel.version}; extraArgs are flags with their values (e.g. --seed, 0)"))
            i += 1
            continue
        flag = rel.lookup(name) or rel.lookup(name.replace("_", "-"))
        if flag is None:
            problems.append(Problem(where, f"engine.extraArgs[{i}]",
                                    f"{name} is not a flag of {cap.display} {rel.version} (see its flag table, "
                                    f"compiler/parc/engines/flags/{engine.name}.toml)"))
            i += 1
            continue
        names = [k for k, v in rel.flags.items() if v is flag] + list(flag.get("aliases", ()))
        owner = next((cap.owned[n] for n in names if n in cap.owned), None)
        if owner is not None:
            fix = f"set {owner} instead" if not owner.startswith("(") else f"parc sets it {owner[1:-1]}"
            problems.append(Problem(where, f"engine.extraArgs[{i}]", f"{name} is a flag parc sets from the plan; {fix}"))
        takes_value = flag["type"] != "bool"
        i += 1 if not takes_value or inline else 2


def _targets(spec: ServingSpec, doc: Document, problems: list[Problem]) -> tuple[str, ...]:
    schedulers = {p.scheduler for p in spec.cluster.pools}
    if spec.targets is None:
        out = ["launch"]
        if "slurm" in schedulers:
            out.append("slurm")
        if "kubernetes" in schedulers:
            out += ["kubernetes", "helm"]
        return tuple(out)
    _need_schedulers(list(spec.targets), schedulers, doc, problems)
    dup = sorted({t for t in spec.targets if spec.targets.count(t) > 1})
    if dup:
        problems.append(Problem(doc.locate(("targets",)), "targets", f"{', '.join(dup)} listed more than once"))
    order = ["launch", "slurm", "kubernetes", "helm"]
    return tuple(sorted(set(spec.targets), key=order.index))
