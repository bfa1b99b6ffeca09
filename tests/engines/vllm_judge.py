"""Let vLLM's own config validation judge a `vllm serve MODEL ...` argv, on a CPU-only box,
as if it ran on a CUDA GPU of a chosen compute capability. Runs inside the engine's own venv
(tests/engines/setup.sh), never inside parc's: parc's tests call it as a subprocess with a
JSON list of cases on stdin (see ``main``) and read one JSON verdict per case.

    from judge import judge
    judge(["vllm", "serve", "meta-llama/Llama-3.1-8B", "--tensor-parallel-size", "4"],
          config_dir="configs/llama-3.1-8b", device_capability=(9, 0))

`judge` returns the VllmConfig on success and raises (vLLM's own exception) on rejection.
It runs exactly what `vllm serve` runs before it starts engines:
  * top-level FlexibleArgumentParser + subparsers, `serve` registered through
    ServeSubcommand.subparser_init (= make_arg_parser: model_tag, --headless,
    --api-server-count, --config, --grpc, FrontendArgs + AsyncEngineArgs.add_cli_args),
  * ServeSubcommand.validate -> validate_parsed_serve_args,
  * ServeSubcommand.cmd's pre-launch arg handling (model_tag -> model, headless ->
    api_server_count, LB-mode exclusivity),
  * AsyncEngineArgs.from_cli_args(args).create_engine_config(
        usage_context=OPENAI_API_SERVER, headless=args.headless).
MODEL (argv[2]) is replaced by `config_dir` (a local dir with config.json; tokenizer files
are not needed for VllmConfig creation).

Platform: vLLM resolves `vllm.platforms.current_platform` lazily on first access and every
module binds it with `from vllm.platforms import current_platform`. Importing this module
first sets `vllm.platforms._current_platform` to a `FakeCudaPlatform` (subclass of vLLM's
own NonNvmlCudaPlatform) BEFORE anything else is imported, so every module-level binding
gets the fake. See REPORT.md for the exact list of what is overridden and why.
"""

from __future__ import annotations

import os
import sys
import types

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("VLLM_NO_USAGE_STATS", "1")
os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("VLLM_TARGET_DEVICE", "cuda")
# model-registry inspection cache (vllm/model_executor/models/registry.py, modelinfos/)
# the env default; "cpu" would force CpuPlatform. The model-registry cache goes to a temp dir.
os.environ.setdefault("VLLM_CACHE_ROOT", os.path.join(os.environ.get("TMPDIR", "/tmp"), "parc-vllm-judge-cache"))

if "vllm.platforms" in sys.modules and sys.modules["vllm.platforms"]._current_platform is not None:
    raise RuntimeError("judge must be imported before vLLM resolves current_platform")

# vllm/platforms/cuda.py does `import vllm._C_stable_libtorch` (CUDA kernels, absent from the
# CPU wheel) at module level; it only registers torch ops, which config creation never calls.
sys.modules.setdefault("vllm._C_stable_libtorch", types.ModuleType("vllm._C_stable_libtorch"))

import torch  # noqa: E402

import vllm.platforms  # noqa: E402
from vllm.platforms.cuda import NonNvmlCudaPlatform  # noqa: E402
from vllm.platforms.interface import DeviceCapability  # noqa: E402


class FakeCudaPlatform(NonNvmlCudaPlatform):
    """vLLM's CUDA platform with the device queries answered from class attributes
    instead of torch.cuda / NVML (torch here is a CPU build)."""

    capability: tuple[int, int] = (9, 0)
    name: str = "NVIDIA H100 80GB HBM3"
    total_memory: int = 80 * 2**30
    count: int = 8  # GPUs per node; ParallelConfig rejects TP*PP*PCP > this without --nnodes/ray

    @classmethod
    def get_device_capability(cls, device_id: int = 0) -> DeviceCapability:
        return DeviceCapability(*cls.capability)

    @classmethod
    def get_device_name(cls, device_id: int = 0) -> str:
        return cls.name

    @classmethod
    def get_device_total_memory(cls, device_id: int = 0) -> int:
        return cls.total_memory

    @classmethod
    def is_fully_connected(cls, physical_device_ids: list[int]) -> bool:
        return True

    @classmethod
    def device_count(cls) -> int:
        return cls.count


vllm.platforms._current_platform = FakeCudaPlatform()

# vllm/vllm_flash_attn/__init__.py raises ImportError when neither CUDA extension
# (_vllm_fa2_C / _vllm_fa3_C) is present, and vllm/v1/attention/backends/fa_utils.py imports it
# at module level whenever current_platform.is_cuda(). Model-layer modules (pulled in by the
# model registry's cache writer and by quantization config checks) import fa_utils. Register
# the package without running its __init__ and expose flash_attn_interface's names (which
# report FA2/FA3 unavailable: nothing here runs attention).
def _stub_flash_attn() -> None:
    import importlib
    import importlib.util

    spec = importlib.util.find_spec("vllm.vllm_flash_attn")
    pkg = types.ModuleType("vllm.vllm_flash_attn")
    pkg.__path__ = list(spec.submodule_search_locations)
    pkg.__spec__ = spec
    sys.modules["vllm.vllm_flash_attn"] = pkg
    iface = importlib.import_module("vllm.vllm_flash_attn.flash_attn_interface")
    for k, v in vars(iface).items():
        if not k.startswith("__"):
            setattr(pkg, k, v)


_stub_flash_attn()


# CUDA-only capability queries some modules evaluate at import time (e.g.
# w8a8_utils.CUTLASS_BLOCK_FP8_SUPPORTED). The CPU _C library lacks them; answer as the
# CUDA build does (csrc/quantization/w8a8/cutlass/scaled_mm_entry.cu). They pick kernels,
# they do not validate configs.
_CUDA_QUERIES = {
    "cutlass_scaled_mm_supports_fp8": lambda cap: cap >= 89,
    "cutlass_scaled_mm_supports_block_fp8": lambda cap: 90 <= cap < 110 or cap >= 120,
    "cutlass_scaled_mm_supports_fp4": lambda cap: cap >= 100,
}


def _stub_cuda_queries() -> None:
    for name, fn in _CUDA_QUERIES.items():
        if not hasattr(torch.ops._C, name):
            setattr(torch.ops._C, name, fn)


_stub_cuda_queries()


# vLLM's CPU build runs without Triton: vllm/triton_utils/importing.py's TritonPlaceholder makes
# `triton.Config(...)` a no-op decorator factory. Kernel modules that filter their autotune
# configs at import on a Hopper platform (mamba ops/ssd_chunk_scan.py _drop_racy_wgmma_configs,
# reached when VllmConfig imports the NIXL connector for --kv-transfer-config) read each
# Config's num_stages / num_warps / kwargs. Give the placeholder a Config that keeps its
# arguments; nothing here compiles a kernel.
class _TritonConfig:
    def __init__(self, kwargs=None, num_warps=4, num_stages=2, **rest):
        self.kwargs, self.num_warps, self.num_stages = dict(kwargs or {}), num_warps, num_stages
        self.__dict__.update(rest)


def _stub_triton_config() -> None:
    from vllm.triton_utils import HAS_TRITON, triton

    if not HAS_TRITON:
        triton.Config = _TritonConfig


_stub_triton_config()

import vllm.config.vllm  # noqa: E402
from vllm.engine.arg_utils import AsyncEngineArgs  # noqa: E402

# vllm/triton_utils/importing.py sets HAS_TRITON=False here (the CPU wheel disables Triton
# when it has no CPU backend / no active GPU driver). On a CUDA host it is True, and
# VllmConfig uses it to pick/validate Model Runner V2 (use_v2_model_runner,
# _validate_v2_model_runner). Patch only the config module's binding, so no Triton kernel
# is ever built.
vllm.config.vllm.HAS_TRITON = True
from vllm.entrypoints.cli.serve import ServeSubcommand  # noqa: E402
from vllm.usage.usage_lib import UsageContext  # noqa: E402
from vllm.utils.argparse_utils import FlexibleArgumentParser  # noqa: E402

_SERVE = ServeSubcommand()


def _parser() -> FlexibleArgumentParser:
    parser = FlexibleArgumentParser(description="vLLM CLI")
    subparsers = parser.add_subparsers(required=False, dest="subparser")
    _SERVE.subparser_init(subparsers)
    return parser


class ArgvError(ValueError):
    """argparse rejected the argv (argparse itself calls sys.exit; we convert)."""


def parse(argv: list[str], config_dir: str):
    if argv[:2] != ["vllm", "serve"] or len(argv) < 3 or argv[2].startswith("-"):
        raise ArgvError("argv must start with: vllm serve MODEL")
    parser = _parser()
    rest = ["serve", os.path.abspath(config_dir), *argv[3:]]
    import contextlib
    import io

    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err):
            args = parser.parse_args(rest)
    except SystemExit as e:  # argparse's own message (last stderr line)
        msg = err.getvalue().strip().splitlines()
        raise ArgvError(msg[-1] if msg else f"argparse exit {e.code}") from None
    return args


def _serve_cmd_prelude(args) -> None:
    """The argument handling ServeSubcommand.cmd does before launching (no launching)."""
    if getattr(args, "model_tag", None) is not None:
        args.model = args.model_tag
    if args.headless:
        if args.api_server_count is not None and args.api_server_count > 0:
            raise ValueError(
                f"--api-server-count={args.api_server_count} cannot be "
                "used with --headless (no API servers are started in "
                "headless mode).")
        args.api_server_count = 0
    is_external_lb = args.data_parallel_external_lb or args.data_parallel_rank is not None
    if not args.data_parallel_hybrid_lb and not args.data_parallel_multi_port_external_lb:
        is_hybrid_lb, is_multi_port = args.data_parallel_start_rank is not None, False
    else:
        is_hybrid_lb = args.data_parallel_hybrid_lb
        is_multi_port = args.data_parallel_multi_port_external_lb
    if sum([is_multi_port, is_external_lb, is_hybrid_lb]) > 1:
        raise ValueError(
            "Cannot use more than one data parallel load balancing mode. "
            "Choose one of: --data-parallel-multi-port-external-lb, "
            "--data-parallel-external-lb (or --data-parallel-rank), "
            "--data-parallel-hybrid-lb (or --data-parallel-start-rank).")


def judge(argv: list[str], config_dir: str, device_capability: tuple[int, int] = (9, 0),
          device_name: str = "NVIDIA H100 80GB HBM3", total_memory: int | None = None,
          gpus_per_node: int = 8):
    """Raise vLLM's own exception if `vllm serve` would reject ``argv`` at config time;
    return the VllmConfig otherwise."""
    FakeCudaPlatform.capability = tuple(device_capability)
    FakeCudaPlatform.name = device_name
    FakeCudaPlatform.count = gpus_per_node
    if total_memory is not None:
        FakeCudaPlatform.total_memory = total_memory
    args = parse(argv, config_dir)
    _SERVE.validate(args)
    _serve_cmd_prelude(args)
    engine_args = AsyncEngineArgs.from_cli_args(args)
    return engine_args.create_engine_config(
        usage_context=UsageContext.OPENAI_API_SERVER, headless=bool(args.headless))


def block_checks(cfg, block: list[int]) -> None:
    """vLLM's own FP8 block-shape checks (model_executor/layers/quantization/utils/fp8_utils.py)
    on every block-quantized, tensor-sharded layer of one rank of ``cfg`` (a VllmConfig): the
    same functions the FP8 loader calls when it creates the weights, fed the per-rank sizes
    vLLM's layers compute (merged QKV / gate-up layers are exempt there, as in vLLM)."""
    import contextlib
    import types as _types

    import vllm.distributed as dist
    from vllm.model_executor.layers.quantization.utils.fp8_utils import (
        validate_fp8_block_shape, validate_fp8_block_shape_moe)

    pc, hf = cfg.parallel_config, cfg.model_config.hf_text_config
    tp, dp = pc.tensor_parallel_size, pc.data_parallel_size
    moe_tp = 1 if pc.enable_expert_parallel else tp * dp

    @contextlib.contextmanager
    def world(n: int):
        orig = dist.get_tensor_model_parallel_world_size
        dist.get_tensor_model_parallel_world_size = lambda: n
        try:
            yield
        finally:
            dist.get_tensor_model_parallel_world_size = orig

    layer = _types.SimpleNamespace()
    h = hf.hidden_size
    heads = hf.num_attention_heads
    rows = []  # (input size, output size, input per rank) of row-parallel layers
    if getattr(hf, "kv_lora_rank", None):
        qk = hf.qk_nope_head_dim + hf.qk_rope_head_dim
        cols = [(hf.q_lora_rank or h, heads * qk), (hf.kv_lora_rank, heads * (hf.qk_nope_head_dim + hf.v_head_dim))]
        with world(tp):
            for inp, out in cols:
                validate_fp8_block_shape(layer, inp, out, inp, [out // tp], block)
        rows.append((heads * hf.v_head_dim, h))
    else:
        hd = getattr(hf, "head_dim", None) or h // heads
        rows.append((heads * hd, h))
    inter = getattr(hf, "intermediate_size", 0) or 0
    if inter and getattr(hf, "first_k_dense_replace", 0) or not getattr(hf, "num_experts", None) \
            and not getattr(hf, "n_routed_experts", None) and not getattr(hf, "num_local_experts", None):
        rows.append((inter, h))
    shared = (getattr(hf, "n_shared_experts", 0) or 0) * (getattr(hf, "moe_intermediate_size", 0) or 0)
    if shared:
        rows.append((shared, h))
    with world(tp):
        for inp, out in rows:
            validate_fp8_block_shape(layer, inp, out, inp // tp, [out], block)
    moe = getattr(hf, "moe_intermediate_size", 0) or 0
    if moe and (getattr(hf, "num_experts", 0) or getattr(hf, "n_routed_experts", 0)):
        with world(moe_tp):
            validate_fp8_block_shape_moe(moe // moe_tp, block)


def main() -> int:
    """stdin: JSON list of {"argv", "config_dir", "capability", "gpus_per_node", "device_name",
    "total_memory", "block"}; stdout: one JSON line per case {"ok", "error", "config"} where
    "config" holds what vLLM resolved (tp, pp, dp, dp local, ep, max_num_seqs,
    max_num_batched_tokens, quantization, kv dtype, async scheduling, KV connector)."""
    import json

    cases = json.load(sys.stdin)
    for c in cases:
        out: dict = {"ok": True, "error": "", "config": {}}
        try:
            cfg = judge(c["argv"], c["config_dir"], tuple(c.get("capability", (9, 0))),
                        c.get("device_name", "NVIDIA H100 80GB HBM3"), c.get("total_memory"),
                        c.get("gpus_per_node", 8))
            if c.get("block"):
                block_checks(cfg, list(c["block"]))
            pc, sc = cfg.parallel_config, cfg.scheduler_config
            out["config"] = {
                "tp": pc.tensor_parallel_size, "pp": pc.pipeline_parallel_size, "dp": pc.data_parallel_size,
                "dpLocal": pc.data_parallel_size_local, "ep": bool(pc.enable_expert_parallel),
                "maxNumSeqs": sc.max_num_seqs, "maxNumBatchedTokens": sc.max_num_batched_tokens,
                "quantization": cfg.model_config.quantization, "kvCacheDtype": str(cfg.cache_config.cache_dtype),
                "asyncScheduling": bool(sc.async_scheduling),
                "kvConnector": cfg.kv_transfer_config.kv_connector if cfg.kv_transfer_config else None,
            }
        except BaseException as exc:  # vLLM's verdict: any exception is a rejection
            out = {"ok": False, "error": " ".join(f"{type(exc).__name__}: {exc}".split())[:2000], "config": {}}
        print(json.dumps(out), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
