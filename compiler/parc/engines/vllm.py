"""vLLM: ``vllm serve`` argv for every documented form of a replica.

- one node: ``vllm serve MODEL --tensor-parallel-size .. [--data-parallel-size ..]``;
- TP x PP across nodes on a Ray cluster (vLLM docs serving/parallelism_scaling.md): the head
  runs ``ray start --head``, the others ``ray start --address``, then ``vllm serve ...
  --distributed-executor-backend ray`` on the head;
- data-parallel ranks across nodes (serving/data_parallel_deployment.md): one ``vllm serve`` per
  node with ``--data-parallel-size-local``, ``--data-parallel-address`` (the first node) and
  ``--data-parallel-rpc-port``; the first node serves the API, the others run ``--headless``
  with their ``--data-parallel-start-rank``.

``--max-num-seqs`` and ``--max-num-batched-tokens`` are per data-parallel rank (each rank has
its own scheduler).
"""

from __future__ import annotations

import json

from parc.engines import (DP_START_RANK, HEAD_ADDR, KV_PORT, NODE_ADDR, PORT, ConfigFile, Job, Process, RouterJob,
                          env_pairs, kernel_notes, num, release_image, router_instances)

RAY_PORT = 6379
DP_RPC_PORT = 13345
DTYPE = {"bf16": "bfloat16", "fp16": "float16"}
#: ROCm settings AMD sets for vLLM on Instinct GPUs: AITER kernels (VLLM_ROCM_USE_AITER, read in
#: vllm 0.32.0 envs.py, default off; its MoE switch VLLM_ROCM_USE_AITER_MOE defaults on), and
#: the ROCm MI300X workload-optimization guide's HIP_FORCE_DEV_KERNARG=1,
#: TORCH_BLAS_PREFER_HIPBLASLT=1 and NCCL_MIN_NCHANNELS=112 (RCCL channels for the xGMI mesh);
#: SAFETENSORS_FAST_GPU=1 as in vLLM's AMD recipes (DeepSeek-R1 on 8 x MI300X).
ROCM_ENV = {"VLLM_ROCM_USE_AITER": "1", "HIP_FORCE_DEV_KERNARG": "1", "TORCH_BLAS_PREFER_HIPBLASLT": "1",
            "NCCL_MIN_NCHANNELS": "112", "SAFETENSORS_FAST_GPU": "1"}


class Vllm:
    name = "vllm"
    health_path = "/health"

    def launcher(self, job: Job) -> str:
        if job.nodes == 1:
            return "single"
        return "dp" if job.tp * job.dpa > job.gpus_per_node else "ray"

    def _serve(self, job: Job) -> list[str]:
        argv = ["vllm", "serve", job.model_id, "--host", "0.0.0.0", "--port", f"$({PORT})",
                "--tensor-parallel-size", str(job.tp), "--pipeline-parallel-size", str(job.pp)]
        if job.dpa > 1:
            argv += ["--data-parallel-size", str(job.dpa)]
        if job.ep > 1:
            argv += ["--enable-expert-parallel"]
        argv += ["--max-model-len", str(job.max_model_len), "--max-num-seqs", str(job.max_num_seqs),
                 "--max-num-batched-tokens", str(job.max_num_batched_tokens),
                 "--gpu-memory-utilization", num(job.gpu_memory_utilization), "--kv-cache-dtype", job.kv_cache_dtype]
        ck = job.checkpoint
        if ck.format in DTYPE:
            argv += ["--dtype", DTYPE[ck.format]]
        elif ck.quant_method == "online-fp8":  # a 16-bit checkpoint served with FP8 weights quantized at load
            argv += ["--dtype", "bfloat16", "--quantization", "fp8"]
        if job.phase != "both":
            # a prefill or decode instance of a disaggregated plan: the NIXL connector moves the KV
            # cache; kv_both lets the proxy / router pick either role per request (vLLM docs
            # features/nixl_connector_usage.md)
            argv += ["--kv-transfer-config", json.dumps({"kv_connector": job.kv_transfer, "kv_role": "kv_both"},
                                                         separators=(",", ":"))]
        return argv

    def processes(self, job: Job) -> tuple[Process, ...]:
        serve = self._serve(job)
        env = env_pairs(_env(job))
        extra = list(job.extra_args)
        kind = self.launcher(job)
        if kind == "single":
            return (Process("server", tuple(serve + extra), env),)
        if kind == "ray":
            head = serve + ["--distributed-executor-backend", "ray"] + extra
            worker = ["ray", "start", "--block", f"--address=$({HEAD_ADDR}):{RAY_PORT}"]
            return (Process("head", tuple(head), env), Process("worker", tuple(worker), env))
        local = job.gpus_per_node // job.tp
        dp = serve + ["--data-parallel-size-local", str(local), "--data-parallel-address", f"$({HEAD_ADDR})",
                      "--data-parallel-rpc-port", str(DP_RPC_PORT)]
        worker = dp + ["--headless", "--data-parallel-start-rank", f"$({DP_START_RANK})"]
        return (Process("head", tuple(dp + extra), env), Process("worker", tuple(worker + extra), env))

    def config_files(self, job: Job) -> tuple[ConfigFile, ...]:
        return ()

    def image(self, version: str | None, vendor: str) -> str:
        return release_image(self.name, version, vendor)

    def notes(self, job: Job) -> tuple[str, ...]:
        out = []
        if job.dpa > 1 and job.ep == 1:
            out.append(f"vLLM: no --enable-expert-parallel, so the experts are tensor-sharded over tp x dp = "
                       f"{job.tp * job.dpa} GPUs (chosen over EP by the cost model)")
        out += kernel_notes("vLLM", job)
        return tuple(out)


    def router(self, job: RouterJob) -> Process:
        """vllm-router in prefill/decode mode (vLLM docs: the recommended proxy for disaggregated
        serving; flags of vllm-router 0.1.17): each request goes to a prefill instance, then to
        a decode instance that pulls the KV cache over NIXL."""
        argv = ["vllm-router", "--vllm-pd-disaggregation", "--kv-connector", "nixl", "--host", "0.0.0.0",
                "--port", str(job.port)]
        argv += router_instances(job, kv_ports=False)
        return Process("router", tuple(argv), ())


def _env(job: Job) -> dict[str, str]:
    out = dict(job.fabric_env)
    if job.vendor == "amd":
        out.update(ROCM_ENV)
    if job.phase != "both":
        # NIXL's side channel (the decode instance asks the prefill instance for its KV blocks
        # there): a routable address of this node, and a port no other instance on it uses
        # (vLLM adds each data-parallel rank's index to it)
        out.update({"VLLM_NIXL_SIDE_CHANNEL_HOST": f"$({NODE_ADDR})", "VLLM_NIXL_SIDE_CHANNEL_PORT": f"$({KV_PORT})"})
    return out


ENGINE = Vllm()
