"""Let SGLang's own argument handling judge a `sglang serve ...` argv, on a
CPU-only box, as if it ran on a node of GPUs of a chosen kind. Runs inside the engine's own venv
(tests/engines/setup.sh, .venv-sglang), never inside parc's: parc's tests call it as a
subprocess with a JSON list of cases on stdin (see ``main``) and read one JSON verdict per case.

What it runs is what `sglang serve` runs for a language model before it starts a process
(sglang 0.5.23; `python -m sglang.launch_server` runs the same):
  * cli/serve.py ``_run_llm``: ``prepare_server_args(argv)`` (server_args.py: the real
    ``argparse`` parser of ``ServerArgs.add_cli_args``, then ``ServerArgs.from_cli_args``);
  * launch_server.py ``run_server``: ``server_args.resolve_once()`` (arg_groups/pipeline.py
    ``run_resolution_pipeline``: every resolution and validation hook, including the model's
    config.json read through SGLang's ModelConfig);
  * ``Engine._launch_subprocesses`` (entrypoints/engine.py) before it spawns anything:
    ``server_args.check_server_args()`` (arg_groups/validation_hook.py);
  * the quantization config the model loader builds (model_loader/loader.py
    ``_get_quantization_config``: the checkpoint's quantization_config parsed by SGLang's own
    QuantizationConfig class, its minimum compute capability compared with the device's).
`--model-path` is replaced by a local directory holding a config.json (no tokenizer is needed
before the model loads).

The host (nothing of SGLang is patched): before SGLang is imported,
  * ``torch.cuda`` answers as a node of ``count`` GPUs of the case's device (is_available,
    device_count, get_device_capability, get_device_name, get_device_properties, mem_get_info;
    ``torch.version.cuda`` or, for AMD, ``torch.version.hip``), which is what every SGLang
    platform probe reads (srt/utils/common.py is_cuda/is_hip/get_device_sm/
    get_device_capability; the memory probe falls back to ``torch.cuda.mem_get_info`` when
    nvidia-smi is absent, and reads a stub ``rocminfo`` on PATH for ROCm);
  * Triton (not installable usefully on a CPU host) is SGLang's own stand-in,
    ``sglang/_platform_stubs.py`` ``install_platform_stubs`` (the one SGLang installs on Apple
    Silicon), run with its platform gate opened;
  * CUDA kernel packages (sgl_kernel, ...) and torchvision, which SGLang's modules import at
    module level but config resolution never calls, are import stubs.
A case's device differs per GPU, and SGLang caches its probes at import, so ``main`` runs one
child process per distinct device.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import importlib.util
import json
import os
import sys
import tempfile
import types

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("SGLANG_DISABLE_REQUEST_LOGGING", "1")

DEFAULT_DEVICE = {"vendor": "nvidia", "capability": [9, 0], "name": "NVIDIA H100 80GB HBM3",
                  "memory": 80 * 2**30, "count": 8}
DEVICE = json.loads(os.environ.get("PARC_SGLANG_DEVICE") or "null") or DEFAULT_DEVICE
#: top-level packages SGLang imports at module level that hold CUDA kernels (or need a GPU
#: driver) and that config resolution never calls: import stubs
#: (the CUDA build's kernels: sgl_kernel; ROCm's: aiter, which the ROCm image ships)
STUBBED = ("sgl_kernel", "torchvision") + (("aiter",) if DEVICE["vendor"] == "amd" else ())


def _fake_torch_cuda(dev: dict) -> None:
    import torch

    cap = tuple(dev["capability"])
    amd = dev["vendor"] == "amd"
    props = types.SimpleNamespace(name=dev["name"], major=cap[0], minor=cap[1], total_memory=int(dev["memory"]),
                                  multi_processor_count=304 if amd else 132,
                                  gcnArchName=dev.get("gcn_arch", "gfx942:sramecc+:xnack-") if amd else "")
    torch.version.cuda = None if amd else "12.9"
    torch.version.hip = "7.0.0" if amd else None
    torch.cuda.is_available = lambda: True
    torch.cuda.device_count = lambda: int(dev["count"])
    torch.cuda.is_initialized = lambda: False
    torch.cuda.get_device_capability = lambda device=None: cap
    torch.cuda.get_device_name = lambda device=None: dev["name"]
    torch.cuda.get_device_properties = lambda device=None: props
    torch.cuda.mem_get_info = lambda device=None: (int(dev["memory"]), int(dev["memory"]))
    if amd:
        # srt/utils/common.py get_amdgpu_memory_capacity runs `rocminfo | grep 'gfx' -A 100 |
        # grep 'Pool 1' -A 5 | grep 'Size:'` (KB per agent): a stub rocminfo prints the device's
        bindir = tempfile.mkdtemp(prefix="parc-sglang-judge-")
        kb = int(dev["memory"]) // 1024
        with open(os.path.join(bindir, "rocminfo"), "w") as fh:
            fh.write("#!/bin/sh\n" + "".join(
                f"echo '  Name: gfx942'\necho '  Pool 1'\necho '    Size: {kb}({kb:#x}) KB'\n"
                for _ in range(int(dev["count"]))))
        os.chmod(os.path.join(bindir, "rocminfo"), 0o755)
        os.environ["PATH"] = bindir + os.pathsep + os.environ.get("PATH", "")


class _StubLoader(importlib.abc.Loader):
    def create_module(self, spec):
        return _Stub(spec.name)

    def exec_module(self, module):
        pass


_LOADER = _StubLoader()


class _Stub(types.ModuleType):
    """An importable package whose every attribute exists: lower-case names are sub-stubs
    (callable, usable as decorators), capitalised ones classes that can be subclassed."""

    def __init__(self, name: str):
        super().__init__(name)
        self.__path__ = []
        self.__spec__ = importlib.machinery.ModuleSpec(name, _LOADER, is_package=True)
        self.__loader__ = _LOADER

    def __getattr__(self, name: str):
        if name.startswith("__") and name.endswith("__"):
            raise AttributeError(name)
        full = f"{self.__name__}.{name}"
        if name[:1].isupper():
            val = type(name, (), {"__module__": self.__name__})
        else:
            val = sys.modules.get(full) or _Stub(full)
            sys.modules[full] = val
        setattr(self, name, val)
        return val

    def __call__(self, *args, **kwargs):
        if len(args) == 1 and callable(args[0]) and not kwargs:
            return args[0]
        return lambda fn: fn

    def __bool__(self) -> bool:
        return False

    def __iter__(self):
        return iter(())


class _StubFinder(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname, path=None, target=None):
        if fullname.split(".")[0] in STUBBED:
            return importlib.machinery.ModuleSpec(fullname, _LOADER, is_package=True)
        return None


def _install_host() -> None:
    if "sglang.srt.server_args" in sys.modules:
        raise RuntimeError("the judge must be imported before SGLang")
    _fake_torch_cuda(DEVICE)
    import torch

    # SGLang's own Triton stand-in (loaded from its file: importing the sglang package first
    # would import Triton), with its Apple-Silicon gate opened for the call only
    root = importlib.util.find_spec("sglang").submodule_search_locations[0]
    spec = importlib.util.spec_from_file_location("_sglang_platform_stubs", os.path.join(root, "_platform_stubs.py"))
    stubs = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = stubs
    spec.loader.exec_module(stubs)
    real_sys, real_platform, real_mps = stubs.sys, stubs.platform, torch.backends.mps.is_available
    stubs.sys = types.SimpleNamespace(platform="darwin", modules=sys.modules, meta_path=sys.meta_path)
    stubs.platform = types.SimpleNamespace(machine=lambda: "arm64")
    torch.backends.mps.is_available = lambda: True
    try:
        stubs.install_platform_stubs()
    finally:
        stubs.sys, stubs.platform, torch.backends.mps.is_available = real_sys, real_platform, real_mps
    if DEVICE["vendor"] == "amd":
        # torch's Inductor (torch/_inductor/runtime/triton_compat.py), which SGLang's ROCm MoE path
        # initialises at import (@torch.compile), inspects triton.language.core.view's signature
        sys.modules["triton.language.core"] = core = types.ModuleType("triton.language.core")
        core.view = lambda input, *shape, _semantic=None: None
        sys.modules["triton.language"].core = core
    # transformers must keep seeing torchvision as absent (it is): settle its cached answer
    # before the torchvision import stub exists
    from transformers.utils import import_utils

    assert not import_utils.is_torchvision_available() and not import_utils.is_torchvision_v2_available()
    sys.meta_path.insert(0, _StubFinder())


if __name__ != "__main__" or os.environ.get("PARC_SGLANG_DEVICE"):  # the dispatching parent imports no SGLang
    _install_host()
    from sglang.srt.arg_groups.overrides import model_config_of, resolving_view
    from sglang.srt.server_args import ServerArgs, prepare_server_args

COMMAND = ["sglang", "serve"]


class ArgvError(ValueError):
    """argparse rejected the argv (argparse itself calls sys.exit; we convert)."""


def judge(argv: list[str], config_dir: str, quantization: bool = True):
    """Raise SGLang's own exception if `sglang serve` would reject ``argv``
    before it starts processes; return the resolved view of the ServerArgs otherwise."""
    import contextlib
    import io

    if argv[:2] != COMMAND:
        raise ArgvError(f"argv must start with: {' '.join(COMMAND)}")
    rest = list(argv[2:])
    if "--model-path" in rest:
        rest[rest.index("--model-path") + 1] = os.path.abspath(config_dir)
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err):
            server_args = prepare_server_args(rest)
    except SystemExit as e:  # argparse's own message (last stderr line)
        msg = err.getvalue().strip().splitlines()
        raise ArgvError(msg[-1] if msg else f"argparse exit {e.code}") from None
    server_args.resolve_once()
    server_args.check_server_args()
    cfg = resolving_view(server_args)
    quant = None
    if quantization:
        quant = _quantization(server_args)
    return cfg, quant


def _quantization(server_args):
    """The model loader's quantization config (model_loader/loader.py _get_quantization_config:
    SGLang's QuantizationConfig of the checkpoint, checked against the device's capability)."""
    from sglang.srt.configs.load_config import LoadConfig
    from sglang.srt.model_loader.loader import _get_quantization_config

    mc = model_config_of(server_args)
    if mc.quantization is None:
        return None
    qc = _get_quantization_config(mc, LoadConfig(load_format="auto"))
    return qc.get_name() if qc is not None else None


def _verdict(case: dict) -> dict:
    try:
        cfg, quant = judge(case["argv"], case["config_dir"], case.get("quantization", True))
        return {"ok": True, "error": "", "config": {
            "tp": cfg.tp_size, "pp": cfg.pp_size, "attnDp": cfg.attn_dp_size, "dp": cfg.dp_size, "ep": cfg.ep_size,
            "maxRunningRequests": cfg.max_running_requests, "chunkedPrefillSize": cfg.chunked_prefill_size,
            "memFractionStatic": cfg.mem_fraction_static, "kvCacheDtype": cfg.kv_cache_dtype,
            "contextLength": cfg.context_length, "quantization": quant, "nnodes": cfg.nnodes,
            "nodeRank": cfg.node_rank, "distInitAddr": cfg.dist_init_addr,
            "disaggregationMode": cfg.disaggregation_mode,
            "transferBackend": cfg.disaggregation_transfer_backend}}
    except BaseException as exc:  # SGLang's verdict: any exception is a rejection
        return {"ok": False, "error": " ".join(f"{type(exc).__name__}: {exc}".split())[:2000], "config": {}}


def _device_of(case: dict) -> dict:
    return {k: case.get("device", {}).get(k, v) for k, v in DEFAULT_DEVICE.items()}


def main() -> int:
    """stdin: JSON list of {"argv", "config_dir", "device": {"vendor", "capability", "name",
    "memory", "count"}, "quantization"}; stdout: one JSON line per case {"ok", "error", "config"}
    where "config" holds what SGLang resolved. Cases on another device than this process's run
    in a child process per device (SGLang caches its platform probes at import)."""
    import subprocess

    cases = json.load(sys.stdin)
    if os.environ.get("PARC_SGLANG_DEVICE"):
        for c in cases:
            print(json.dumps(_verdict(c)), flush=True)
        return 0
    groups: dict[str, list[int]] = {}
    for i, c in enumerate(cases):
        groups.setdefault(json.dumps(_device_of(c), sort_keys=True), []).append(i)
    out: list[str] = [""] * len(cases)
    for dev, idx in groups.items():
        r = subprocess.run([sys.executable, os.path.abspath(__file__)], input=json.dumps([cases[i] for i in idx]),
                           capture_output=True, text=True, env={**os.environ, "PARC_SGLANG_DEVICE": dev})
        lines = [ln for ln in r.stdout.splitlines() if ln.startswith("{")]
        if len(lines) != len(idx):
            sys.stderr.write(r.stderr[-4000:])
            lines += [json.dumps({"ok": False, "error": f"judge child failed (exit {r.returncode})", "config": {}})] \
                * (len(idx) - len(lines))
        for i, line in zip(idx, lines):
            out[i] = line
    for line in out:
        print(line, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
