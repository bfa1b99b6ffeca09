"""Engine argv builders: a plan group -> the exact argv of each process of a replica.

One builder per engine returns plain lists of strings (no shell). Values only known on
the running cluster are environment references in Kubernetes ``$(VAR)`` form, which the
kubelet expands in container args and parc's shell scripts turn into ``"${VAR}"``:

- ``$(PARC_HEAD_ADDR)``: address of the replica's first node (multi-node replicas);
- ``$(PARC_CONFIG_DIR)``: directory holding parc's generated engine config files.

Multi-node replicas follow the engines' documented recipes: vLLM on a Ray cluster
(``ray start --head`` on the first node, ``ray start --address`` on the others, then
``vllm serve ... --distributed-executor-backend ray`` on the head; vLLM docs
serving/parallelism_scaling.md and the LeaderWorkerSet vLLM example), TensorRT-LLM as MPI
ranks started by ``srun --mpi=pmix`` / ``mpirun`` through ``trtllm-llmapi-launch``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from parc.resolve import Resolved
    from parc.solver import Group, Solution

HEAD_ADDR = "PARC_HEAD_ADDR"
CONFIG_DIR = "PARC_CONFIG_DIR"
RAY_PORT = 6379
TRTLLM_OPTIONS = "trtllm-extra-llm-api-options.yaml"

DTYPE = {"bf16": "bfloat16", "fp16": "float16"}


def _num(x: float) -> str:
    s = f"{x:.4f}".rstrip("0").rstrip(".")
    return s or "0"


def vllm(res: Resolved, g: Group, role: str) -> list[str]:
    """``vllm serve`` on a single node or on the head of a Ray cluster; ``ray start`` on workers."""
    if role == "worker":
        return ["ray", "start", "--block", f"--address=$({HEAD_ADDR}):{RAY_PORT}"]
    spec, s = res.spec, g.cand.shape
    st = g.settings(res.max_context_length)
    argv = ["vllm", "serve", spec.model.id, "--host", "0.0.0.0", "--port", str(spec.deploy.port),
            "--tensor-parallel-size", str(s.tp), "--pipeline-parallel-size", str(s.pp)]
    if s.dpa > 1:
        argv += ["--data-parallel-size", str(s.dpa)]
    if s.ep > 1:
        argv += ["--enable-expert-parallel"]
    argv += ["--max-model-len", str(st.max_model_len), "--max-num-seqs", str(st.max_num_seqs),
             "--max-num-batched-tokens", str(st.max_num_batched_tokens),
             "--gpu-memory-utilization", _num(st.gpu_memory_utilization), "--kv-cache-dtype", st.kv_cache_dtype,
             "--dtype", DTYPE.get(spec.model.precision, "auto")]
    if role == "head":
        argv += ["--distributed-executor-backend", "ray"]
    return argv + list(spec.engine.extra_args)


def trtllm_options(res: Resolved, g: Group) -> dict[str, Any] | None:
    """Settings without a trtllm-serve flag, for ``--extra_llm_api_options`` (None if none)."""
    opts: dict[str, Any] = {}
    if res.spec.model.kv_cache_precision == "fp8":
        opts["kv_cache_config"] = {"dtype": "fp8"}
    if g.cand.shape.dpa > 1:
        opts["enable_attention_dp"] = True
    return opts or None


def trtllm(res: Resolved, g: Group, role: str) -> list[str]:
    """``trtllm-serve`` (PyTorch backend); multi-node ranks run it under ``trtllm-llmapi-launch``."""
    spec, s = res.spec, g.cand.shape
    st = g.settings(res.max_context_length)
    argv = ["trtllm-llmapi-launch"] if role != "server" else []
    argv += ["trtllm-serve", spec.model.id, "--host", "0.0.0.0", "--port", str(spec.deploy.port),
             "--backend", "pytorch", "--tp_size", str(s.tp * s.dpa), "--pp_size", str(s.pp), "--ep_size", str(s.ep),
             "--max_batch_size", str(st.max_num_seqs), "--max_num_tokens", str(st.max_num_batched_tokens),
             "--max_seq_len", str(st.max_model_len),
             "--kv_cache_free_gpu_memory_fraction", _num(st.gpu_memory_utilization)]
    if trtllm_options(res, g) is not None:
        argv += ["--extra_llm_api_options", f"$({CONFIG_DIR})/{TRTLLM_OPTIONS}"]
    return argv + list(spec.engine.extra_args)


def tgi(res: Resolved, g: Group, role: str) -> list[str]:
    """``text-generation-launcher`` for a single-node replica (TGI has no PP, EP or multi-node).
    Long option names only: ``-p`` is claimed by both --port and --prometheus-port."""
    spec, s = res.spec, g.cand.shape
    st = g.settings(res.max_context_length)
    argv = ["text-generation-launcher", "--model-id", spec.model.id, "--hostname", "0.0.0.0",
            "--port", str(spec.deploy.port), "--num-shard", str(s.tp),
            "--max-input-tokens", str(st.max_model_len - 1), "--max-total-tokens", str(st.max_model_len),
            "--max-batch-prefill-tokens", str(max(st.max_num_batched_tokens, st.max_model_len - 1)),
            "--max-concurrent-requests", str(st.max_num_seqs),
            "--cuda-memory-fraction", _num(st.gpu_memory_utilization)]
    if spec.model.precision in DTYPE:
        argv += ["--dtype", DTYPE[spec.model.precision]]
    elif spec.model.precision == "fp8":
        argv += ["--quantize", "fp8"]
    if spec.model.kv_cache_precision == "fp8":
        argv += ["--kv-cache-dtype", "fp8_e4m3fn"]
    return argv + list(spec.engine.extra_args)


BUILDERS = {"vllm": vllm, "trtllm": trtllm, "tgi": tgi}


def roles(g: Group) -> list[str]:
    """Processes per replica: one server, or a head and workers for multi-node replicas."""
    return ["server"] if g.cand.nodes_per_replica == 1 else ["head", "worker"]


def env(res: Resolved, g: Group, role: str) -> dict[str, str]:
    """Environment a process needs beyond the inherited one (NCCL settings by topology).
    Secrets never appear here: HF_TOKEN is inherited from the caller's environment."""
    out: dict[str, str] = {}
    pool = g.cand.pool
    if g.cand.nodes_per_replica > 1:
        out["NCCL_IB_DISABLE"] = "1" if pool.inter_node == "ethernet" else "0"
    if pool.intra_node == "pcie" and g.cand.shape.gpus > 1:
        out["NCCL_P2P_LEVEL"] = "SYS"  # allow P2P across the CPU sockets of PCIe-only boxes
    return out


def launch_entries(res: Resolved, sol: Solution) -> list[dict[str, Any]]:
    """plan.json ``launch``: one entry per (group, role)."""
    return [
        {"group": i, "role": role, "argv": BUILDERS[g.cand.engine](res, g, role), "env": env(res, g, role)}
        for i, g in enumerate(sol.groups)
        for role in roles(g)
    ]
