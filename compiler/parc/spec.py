"""The ServingSpec: pydantic v2 models that ARE the schema (DESIGN.md: The spec).

Field names are camelCase in YAML (``alias_generator``); unknown fields are errors
(``extra="forbid"``); values are strict (``"8"`` is not an integer). Checks that need only
one field live here as validators; checks that need the catalogs or several sections live
in :mod:`parc.validate` and :mod:`parc.resolve`, which report them with file positions.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic.alias_generators import to_camel

API_VERSION = "parc.dev/v1alpha1"

DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
# Kubernetes label keys: optional DNS-subdomain prefix "/" name; values: <=63 chars.
_LABEL_NAME = r"([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)"
LABEL_KEY = re.compile(rf"^([a-z0-9]([-a-z0-9.]{{0,251}}[a-z0-9])?/)?{_LABEL_NAME}$")
LABEL_VALUE = re.compile(rf"^({_LABEL_NAME})?$")

Precision = Literal["bf16", "fp16", "fp8", "fp4", "int8", "int4"]
KvPrecision = Literal["auto", "fp8"]
EngineName = Literal["auto", "vllm", "trtllm", "tgi", "sglang"]
Target = Literal["launch", "slurm", "kubernetes", "helm"]
Objective = Literal["latency", "throughput", "cost"]

PositiveInt = Annotated[int, Field(gt=0)]
IntOrList = Union[PositiveInt, Annotated[list[PositiveInt], Field(min_length=1)]]


class _Model(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        strict=True,
        frozen=True,
        alias_generator=to_camel,
        populate_by_name=False,
        allow_inf_nan=False,
        hide_input_in_errors=True,
    )

    @field_validator("*", mode="after")
    @classmethod
    def _printable(cls, v: object) -> object:
        """No string in a spec may carry control characters: they reach shell scripts,
        YAML and argv (where a NUL cannot even be passed)."""
        for s in _strings(v):
            bad = next((ch for ch in s if ord(ch) < 0x20 or ord(ch) == 0x7F), None)
            if bad is not None:
                raise ValueError(f"contains the control character U+{ord(bad):04X}; remove it")
        return v


def _strings(v: object) -> list[str]:
    if isinstance(v, str):
        return [v]
    if isinstance(v, (list, tuple)):
        return [s for item in v for s in _strings(item)]
    if isinstance(v, dict):
        return [s for k, item in v.items() for s in _strings(k) + _strings(item)]
    return []


RESERVED = "$(PARC_"


def _no_placeholder(value: str) -> str:
    if RESERVED in value:
        raise ValueError(f"{value!r} contains {RESERVED!r}, which parc reserves for its own placeholders")
    return value


def _dns_label(value: str, what: str) -> str:
    if len(value) > 63 or not DNS1123_LABEL.match(value):
        fixed = re.sub(r"[^a-z0-9-]+", "-", value.lower()).strip("-")[:63].strip("-") or "my-service"
        raise ValueError(
            f"{value!r} is not a valid {what}: use at most 63 lower-case letters, digits and '-', "
            f"starting and ending with a letter or digit (e.g. {fixed!r})"
        )
    return value


class Metadata(_Model):
    """Identity of the deployment."""

    name: str = Field(description="DNS-1123 label (<= 63 chars, [a-z0-9-]); used for job, object and file names.")
    labels: dict[str, str] = Field(
        default_factory=dict, description="Labels propagated to every Kubernetes object. Default: none."
    )

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        return _dns_label(v, "name")

    @field_validator("labels")
    @classmethod
    def _labels(cls, v: dict[str, str]) -> dict[str, str]:
        return check_labels(v)


def check_labels(v: dict[str, str]) -> dict[str, str]:
    """Kubernetes label syntax for keys and values."""
    for key, value in v.items():
        if len(key) > 316 or not LABEL_KEY.match(key):
            raise ValueError(f"label key {key!r} is not a valid Kubernetes label key ([prefix/]name, name <= 63 "
                             "chars of [A-Za-z0-9-_.], starting and ending alphanumeric)")
        if not LABEL_VALUE.match(value):
            raise ValueError(f"label value {value!r} (key {key!r}) is not a valid Kubernetes label value "
                             "(<= 63 chars of [A-Za-z0-9-_.], starting and ending alphanumeric, or empty)")
    return v


class ModelSpec(_Model):
    """Which model to serve and in what precision."""

    id: str = Field(min_length=1, max_length=512, description="What the engine loads: a Hugging Face repo id or a path.")
    architecture: str | None = Field(
        default=None,
        description="Model catalog key (`parc catalog models`). Default: inferred from `id` for well-known repos.",
    )
    @field_validator("id")
    @classmethod
    def _id(cls, v: str) -> str:
        if v.startswith("-"):
            raise ValueError(f"{v!r} starts with '-': the engine would read it as a flag; give a repo id or a path "
                             "(./model for a local directory)")
        return _no_placeholder(v)

    config_path: str | None = Field(
        default=None,
        min_length=1,
        description="Path to a Hugging Face config.json, relative to the spec file; overrides the catalog shapes.",
    )
    precision: Precision | None = Field(
        default=None,
        description="Weight precision. Default: what the checkpoint ships (its quantization_config: "
        "`parc catalog checkpoints`, or model.configPath), else bf16. fp8 on a 16-bit checkpoint means FP8 "
        "quantized at load (engines that can); other differences from the checkpoint are errors.")
    kv_cache_precision: KvPrecision = Field(
        default="auto", description="KV-cache precision: auto (the checkpoint's: fp8 when it ships FP8 KV "
        "scales, else 16-bit) or fp8. Default: auto."
    )
    max_context_length: PositiveInt | None = Field(
        default=None, le=1 << 27,
        description="Tokens per request, prompt + output (the engine's max model length). "
        "Default: the smaller of the model's maximum and 4x (inputTokens + outputTokens), at least 4096.",
    )


class Workload(_Model):
    """The traffic the deployment must carry (means over requests)."""

    input_tokens: PositiveInt = Field(le=1 << 24, description="Mean prompt length in tokens.")
    output_tokens: PositiveInt = Field(le=1 << 24, description="Mean output length in tokens.")
    concurrency: PositiveInt | None = Field(
        default=None, le=10_000_000,
        description="Concurrent requests the whole deployment must sustain. Required unless slo.objective is "
        "throughput, where parc then finds the load that maximises throughput within the SLO.",
    )


class Slo(_Model):
    """What the service must achieve and what to optimise."""

    objective: Objective = Field(
        default="latency",
        description="latency: minimise TPOT then TTFT at the given concurrency; throughput: maximise output "
        "tokens/s of the whole deployment within the targets; cost: meet every target with the fewest GPUs. "
        "Default: latency.",
    )
    ttft_ms: float | None = Field(default=None, gt=0, description="Time-to-first-token target in ms (optional).")
    tpot_ms: float | None = Field(default=None, gt=0, description="Time-per-output-token target in ms (optional).")
    min_throughput_tokens_per_second: float | None = Field(
        default=None, gt=0, description="Output tokens/s the whole deployment must deliver (optional)."
    )


class Pool(_Model):
    """A homogeneous group of nodes."""

    name: str = Field(description="DNS-1123 label, unique among pools.")
    gpu: str = Field(
        description="GPU catalog key, PRODUCT-FORM-MEMORY (`parc catalog gpus`), case-insensitive; aliases "
        "such as 'h100' resolve.",
        examples=["H100-SXM-80GB", "A100-PCIE-80GB", "H200-SXM-141GB", "A40-48GB"],
    )
    nodes: PositiveInt = Field(default=1, le=100000, description="Number of nodes. Default: 1.")
    gpus_per_node: PositiveInt = Field(le=72, description="GPUs in each node.")
    intra_node: Literal["nvlink", "pcie"] | None = Field(
        default=None, description="How GPUs inside a node talk. Default: the GPU catalog's typical server."
    )
    inter_node: Literal["infiniband", "roce", "ethernet", "none"] | None = Field(
        default=None,
        description="Fabric between nodes. Default: none for a single node; required when nodes > 1.",
    )
    inter_node_gbps: float | None = Field(
        default=None, gt=0, le=100000, description="Inter-node bandwidth per GPU in Gbit/s. Default: by fabric."
    )
    scheduler: Literal["kubernetes", "slurm", "none"] = Field(
        default="none", description="What schedules this pool; decides the default targets. Default: none."
    )
    nccl_socket_ifname: str | None = Field(
        default=None, pattern=r"^[=^]?[A-Za-z0-9_.:-]+(,[=^]?[A-Za-z0-9_.:-]+)*$", max_length=256,
        description="NCCL_SOCKET_IFNAME for multi-node replicas: the interface(s) NCCL bootstraps over (e.g. "
        "eth0, ^lo,docker). Default: unset (NCCL picks).")
    gloo_socket_ifname: str | None = Field(
        default=None, pattern=r"^[A-Za-z0-9_.:-]+(,[A-Za-z0-9_.:-]+)*$", max_length=256,
        description="GLOO_SOCKET_IFNAME for multi-node replicas: the interface torch.distributed's Gloo uses "
        "(vLLM's EP guide: the Ethernet interface on InfiniBand clusters). Default: unset.")
    rdma_resource: str | None = Field(
        default=None, pattern=r"^([a-z0-9]([-a-z0-9.]*[a-z0-9])?/)?[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$",
        max_length=253,
        description="Kubernetes extended resource of the RDMA devices a multi-node pod requests on InfiniBand/RoCE "
        "(e.g. rdma/rdma_shared_device_a from the RDMA shared device plugin, nvidia.com/hostdev from SR-IOV). "
        "Default: none (the cluster must inject the devices).")
    rdma_per_pod: PositiveInt = Field(default=1, le=64, description="How many of rdmaResource each pod requests. "
                                      "Default: 1.")
    networks: str | None = Field(
        default=None, pattern=r"^[a-z0-9]([-a-z0-9./@]*[a-z0-9])?(,[a-z0-9]([-a-z0-9./@]*[a-z0-9])?)*$",
        max_length=1024,
        description="Multus secondary networks of multi-node pods (the k8s.v1.cni.cncf.io/networks annotation, "
        "e.g. default/ib-sriov). Default: none.")
    nccl_ib_hca: str | None = Field(
        default=None, pattern=r"^[=^]?[A-Za-z0-9_.:-]+(,[=^]?[A-Za-z0-9_.:-]+)*$", max_length=512,
        description="NCCL_IB_HCA for multi-node replicas: the InfiniBand/RoCE HCAs NCCL uses (e.g. mlx5). "
        "Default: unset.")
    cost_per_gpu_hour: float | None = Field(
        default=None, gt=0, le=1000000,
        description="Price of one GPU of this pool per hour, in any currency (the currency is yours; use one "
        "for every pool). Gives plan.json predicted.costPerHour and costPerMillionOutputTokens when every pool "
        "the plan uses is priced; objective cost then minimises cost per hour. Default: unpriced.")

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        return _dns_label(v, "pool name")

    @field_validator("gpu")
    @classmethod
    def _gpu(cls, v: str) -> str:
        from parc import catalog

        hit = catalog.gpus().get(v)
        if hit is None:
            close = catalog.gpus().suggest(v)
            hint = f"did you mean {close[0]!r}?" if close else "see `parc catalog gpus` for the known GPUs"
            raise ValueError(f"unknown GPU {v!r}; {hint}")
        return str(hit.key)


class Cluster(_Model):
    """The inventory parc may place the model on."""

    pools: list[Pool] = Field(min_length=1, max_length=64, description="Node pools; a replica never spans pools.")


class Constraints(_Model):
    """Optional narrowing of the search: an int or a list of allowed values per axis."""

    tp: IntOrList | None = Field(default=None, description="Allowed tensor-parallel degrees.")
    pp: IntOrList | None = Field(default=None, description="Allowed pipeline-parallel degrees.")
    ep: IntOrList | None = Field(default=None, description="Allowed expert-parallel degrees (MoE).")
    dp_attention: IntOrList | None = Field(default=None, description="Allowed data-parallel attention ranks.")
    replicas: IntOrList | None = Field(default=None, description="Allowed replica counts (per pool group).")
    max_gpus: PositiveInt | None = Field(default=None, description="Use at most this many GPUs in total.")


class Engine(_Model):
    """Which serving engine and release to emit flags for."""

    name: EngineName = Field(default="auto", description="auto picks the best engine that can express the plan.")
    disaggregation: Literal["off", "auto", "on"] = Field(
        default="off",
        description="Separate prefill and decode engine instances, the KV cache moved between them over the "
                    "fabric: off (aggregated), on (always), auto (the solver decides by the cost model).",
    )
    version: str | None = Field(
        default=None,
        pattern=r"^([0-9]+(\.[0-9]+){0,3}([.-]?[A-Za-z0-9]+)*|git-[0-9a-f]{7,40})$",
        max_length=32,
        description="Engine release whose flags parc emits. Default: a pinned recent release per engine.",
    )
    image: str | None = Field(
        default=None, min_length=1, max_length=512, pattern=r"^[^\s]+$",
        description="Container image. Default: the official image of that release."
    )
    router_image: str | None = Field(
        default=None, min_length=1, max_length=512, pattern=r"^[^\s]+$",
        description="Container image of the prefill/decode router of a disaggregated plan on Kubernetes. "
                    "Default: the router's published image (parc's engine data names it).",
    )
    extra_args: list[Annotated[str, Field(max_length=4096)]] = Field(
        default_factory=list, max_length=256, description="Appended verbatim after parc's own flags."
    )

    @field_validator("extra_args")
    @classmethod
    def _extra(cls, v: list[str]) -> list[str]:
        for a in v:
            _no_placeholder(a)
        return v


class Toleration(_Model):
    """A Kubernetes toleration."""

    key: str | None = None
    operator: Literal["Exists", "Equal"] | None = None
    value: str | None = None
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] | None = None
    toleration_seconds: int | None = None


class ModelCache(_Model):
    """Where model weights are cached in a pod: exactly one of pvc, hostPath, emptyDir."""

    pvc: str | None = Field(default=None, description="Name of an existing PersistentVolumeClaim.")
    host_path: str | None = Field(default=None, description="A directory on the node.")
    empty_dir: bool | None = Field(default=None, description="Download into a pod-local emptyDir.")

    @model_validator(mode="after")
    def _one(self) -> "ModelCache":
        chosen = [n for n, v in (("pvc", self.pvc), ("hostPath", self.host_path), ("emptyDir", self.empty_dir)) if v]
        if len(chosen) != 1:
            raise ValueError(
                f"set exactly one of pvc, hostPath, emptyDir (got {', '.join(chosen) or 'none'})"
            )
        if self.host_path is not None and not self.host_path.startswith("/"):
            raise ValueError(f"hostPath {self.host_path!r} must be an absolute path")
        if self.pvc is not None:
            _dns_label(self.pvc, "PVC name")
        return self


class GatewayRef(_Model):
    """A Gateway API Gateway (gateway.networking.k8s.io/v1) an HTTPRoute attaches to."""

    name: str = Field(description="Name of the Gateway.")
    namespace: str | None = Field(default=None, description="Its namespace. Default: the deployment's.")
    section_name: str | None = Field(default=None, pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", max_length=253,
                                     description="Listener of the Gateway to attach to. Default: all.")

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        return _dns_label(v, "Gateway name")

    @field_validator("namespace")
    @classmethod
    def _ns(cls, v: str | None) -> str | None:
        return _dns_label(v, "namespace") if v is not None else v


class KubernetesDeploy(_Model):
    """Kubernetes placement details."""

    namespace: str = Field(default="default", description="Namespace of every object. Default: default.")
    service_type: Literal["ClusterIP", "NodePort", "LoadBalancer"] = Field(default="ClusterIP")
    hf_token_secret: str = Field(
        default="hf-token", pattern=r"^$|^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$",
        description="Secret holding the Hugging Face token (key HF_TOKEN), referenced with optional: true so pods "
        "of public models start without it. Default: hf-token. \"\" passes no token."
    )
    gateway: GatewayRef | None = Field(
        default=None,
        description="Gateway API Gateway that fronts the deployment. With it, a plan whose pool groups serve "
        "different loads per replica gets one Service per group and an HTTPRoute with backend weights in the "
        "planned proportion; without it the solver plans the same load on every replica, so one Service's "
        "even spreading matches the plan. Default: none.")
    model_cache: ModelCache = Field(
        default_factory=lambda: ModelCache.model_validate({"emptyDir": True}), description="Default: an emptyDir."
    )
    node_selector: dict[str, str] = Field(default_factory=dict, description="Extra node labels every pod requires.")
    tolerations: list[Toleration] = Field(default_factory=list, description="Tolerations of every pod.")
    service_monitor: bool = Field(
        default=False, description="Also write a Prometheus Operator ServiceMonitor for the engine's /metrics."
    )
    host_network: bool = Field(default=False, description="Run pods in the node's network namespace. Default: false.")

    @field_validator("namespace")
    @classmethod
    def _ns(cls, v: str) -> str:
        return _dns_label(v, "namespace")

    @field_validator("node_selector")
    @classmethod
    def _selector(cls, v: dict[str, str]) -> dict[str, str]:
        return check_labels(v)


class SlurmDeploy(_Model):
    """SLURM batch details."""

    partition: str | None = Field(
        default=None, pattern=r"^[A-Za-z0-9_.-]+(,[A-Za-z0-9_.-]+)*$", max_length=128,
        description="Partition(s) (-p), comma-separated. Default: the cluster default.")
    account: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_.-]+$", max_length=128,
                                description="Account (-A). Default: none.")
    time_limit: str = Field(
        default="04:00:00",
        pattern=r"^(\d+-)?\d+(:\d{2}){0,2}$|^(UNLIMITED|INFINITE)$",
        description="Wall time, SLURM format [days-]hours:minutes:seconds. Default: 04:00:00.",
    )
    container_image: str | None = Field(
        default=None, min_length=1, max_length=512,
        description="pyxis/enroot image for srun --container-image. Default: none (bare metal).")
    drain_seconds: int = Field(
        default=120, ge=0, le=86400,
        description="SLURM sends the batch script SIGTERM this long before the time limit (--signal=B:TERM@N), "
        "so the engines drain in-flight requests and stop cleanly; 0 disables. Default: 120.")
    requeue: bool = Field(
        default=False, description="Let SLURM requeue the job after a node failure or preemption (--requeue). "
        "Default: false (--no-requeue).")

    @field_validator("container_image")
    @classmethod
    def _image(cls, v: str | None) -> str | None:
        return _no_placeholder(v) if v is not None else v


class Deploy(_Model):
    """How the artefacts expose and place the server."""

    port: int = Field(default=8000, ge=1, le=65535, description="Port the engine listens on. Default: 8000.")
    kubernetes: KubernetesDeploy = Field(default_factory=KubernetesDeploy)
    slurm: SlurmDeploy = Field(default_factory=SlurmDeploy)


class ServingSpec(_Model):
    """One LLM deployment: model, SLO, cluster inventory and output targets."""

    api_version: Literal["parc.dev/v1alpha1"] = Field(description="Always parc.dev/v1alpha1.")
    kind: Literal["ServingSpec"] = Field(description="Always ServingSpec.")
    metadata: Metadata
    model: ModelSpec
    workload: Workload
    slo: Slo = Field(default_factory=Slo)
    cluster: Cluster
    constraints: Constraints = Field(default_factory=Constraints)
    engine: Engine = Field(default_factory=Engine)
    targets: list[Target] | None = Field(
        default=None,
        min_length=1,
        description="Artefacts to write. Default: launch, plus slurm / kubernetes + helm for the pools' schedulers.",
    )
    deploy: Deploy = Field(default_factory=Deploy)
    calibration: str | None = Field(
        default=None, min_length=1, max_length=4096,
        description="Calibration file written by `parc calibrate` (relative to the spec). Default: the built-in "
        "fit on published benchmarks.",
    )


SECTIONS: dict[str, type[_Model]] = {
    "metadata": Metadata,
    "model": ModelSpec,
    "workload": Workload,
    "slo": Slo,
    "cluster": Cluster,
    "constraints": Constraints,
    "engine": Engine,
    "deploy": Deploy,
}
