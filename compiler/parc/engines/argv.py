"""Engine argv builders: a plan group -> the exact argv of each engine process.

One builder per engine; each returns plain lists of strings (no shell). Values that are
only known on the running cluster (the head node's address) are environment references
in Kubernetes ``$(VAR)`` form, which both the kubelet and parc's launch scripts expand.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from parc.resolve import Resolved
    from parc.solver import Group, Solution

#: Environment variable carrying the head node's address on multi-node replicas.
HEAD_ADDR = "PARC_HEAD_ADDR"
#: Environment variable carrying a worker's node rank (1..nodes-1).
NODE_RANK = "PARC_NODE_RANK"
#: Port the head listens on for multi-node rendezvous.
RDZV_PORT = 29500

DTYPE = {"bf16": "bfloat16", "fp16": "float16"}


def _num(x: float) -> str:
    s = f"{x:.4f}".rstrip("0").rstrip(".")
    return s or "0"


def vllm(res: Resolved, g: Group, role: str) -> list[str]:
    """``vllm serve`` for one node of a replica (role server, head or worker)."""
    spec, s = res.spec, g.cand.shape
    st = g.settings(res.max_context_length)
    argv = ["vllm", "serve", spec.model.id, "--host", "0.0.0.0", "--port", str(spec.deploy.port)]
    argv += ["--tensor-parallel-size", str(s.tp), "--pipeline-parallel-size", str(s.pp)]
    if s.dpa > 1:
        argv += ["--data-parallel-size", str(s.dpa)]
    if s.ep > 1:
        argv += ["--enable-expert-parallel"]
    argv += ["--max-model-len", str(st.max_model_len), "--max-num-seqs", str(st.max_num_seqs),
             "--max-num-batched-tokens", str(st.max_num_batched_tokens),
             "--gpu-memory-utilization", _num(st.gpu_memory_utilization), "--kv-cache-dtype", st.kv_cache_dtype]
    argv += ["--dtype", DTYPE.get(spec.model.precision, "auto")]
    if g.cand.nodes_per_replica > 1:
        argv += ["--nnodes", str(g.cand.nodes_per_replica), "--node-rank",
                 "0" if role == "head" else f"$({NODE_RANK})", "--master-addr", f"$({HEAD_ADDR})",
                 "--master-port", str(RDZV_PORT)]
        if role == "worker":
            argv += ["--headless"]
    return argv + list(spec.engine.extra_args)


def trtllm(res: Resolved, g: Group, role: str) -> list[str]:
    """``trtllm-serve`` (PyTorch backend) for a replica."""
    spec, s = res.spec, g.cand.shape
    st = g.settings(res.max_context_length)
    argv = ["trtllm-serve", spec.model.id, "--host", "0.0.0.0", "--port", str(spec.deploy.port),
            "--backend", "pytorch", "--tp_size", str(s.tp * s.dpa), "--pp_size", str(s.pp), "--ep_size", str(s.ep),
            "--max_batch_size", str(st.max_num_seqs), "--max_num_tokens", str(st.max_num_batched_tokens),
            "--max_seq_len", str(st.max_model_len),
            "--kv_cache_free_gpu_memory_fraction", _num(st.gpu_memory_utilization)]
    return argv + list(spec.engine.extra_args)


def tgi(res: Resolved, g: Group, role: str) -> list[str]:
    """``text-generation-launcher`` for a single-node replica (TGI has no PP, EP or multi-node)."""
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


def launch_entries(res: Resolved, sol: Solution) -> list[dict[str, Any]]:
    """plan.json ``launch``: one entry per (group, role)."""
    out = []
    for i, g in enumerate(sol.groups):
        for role in roles(g):
            env: dict[str, str] = {}
            if role != "server":
                env = {HEAD_ADDR: "", NODE_RANK: "0" if role == "head" else ""}
            out.append({"group": i, "role": role, "argv": BUILDERS[g.cand.engine](res, g, role), "env": env})
    return out
