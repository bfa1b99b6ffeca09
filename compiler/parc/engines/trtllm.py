"""TensorRT-LLM: ``trtllm-serve`` (PyTorch backend) and its extra LLM-API options file.

Multi-node replicas run one MPI rank per GPU (``srun --mpi=pmix`` / ``mpirun``) through
``trtllm-llmapi-launch``. Settings without a flag go to the options file
(``--extra_llm_api_options``): CUDA graph batch sizes, the KV-cache dtype, attention DP and the
MoE backend the format needs on the GPU architecture.

``--max_batch_size`` is TensorRT-LLM's per micro-batch: with pipeline parallelism the executor keeps
``pp_size`` micro-batches in flight and admits ``pp_size x max_batch_size`` requests
(``PyTorchModelEngine.get_max_num_sequences``), so parc writes ``ceil(maxNumSeqs / pp)`` to keep
the requests in flight at the planned ``maxNumSeqs``.

``--kv_cache_free_gpu_memory_fraction`` is TensorRT-LLM's own quantity: the share of the GPU
memory still free after the weights and the activation profile are allocated that becomes
KV cache (``KvCacheConfig.free_gpu_memory_fraction``), not a share of the whole GPU.
"""

from __future__ import annotations

from typing import Any

from parc.engines import CONFIG_DIR, PORT, ConfigFile, Job, Process, env_pairs, kernel_notes, num

OPTIONS = "trtllm-extra-llm-api-options.yaml"
#: MoE backend by (checkpoint format, GPU architecture) where the default (CUTLASS) does not run
#: it: MXFP4 experts (gpt-oss) run on the Triton backend on Hopper and on TRTLLM-Gen kernels on
#: Blackwell (deployment-guide-for-gpt-oss-on-trtllm.md); DeepSeek FP8 block-scale experts on
#: Blackwell use DEEPGEMM (deployment-guide-for-deepseek-r1-on-trtllm.md).
MOE_BACKEND = {("mxfp4", "hopper"): "TRITON", ("mxfp4", "blackwell"): "TRTLLM",
               ("fp8-block", "blackwell"): "DEEPGEMM"}


#: Attention-DP context balancing as TensorRT-LLM's performance overview (release 1.2,
#: "Reproducing Benchmarked Results", DeepSeek R1 llm_options) runs DEP: a rank's prompts wait
#: until every attention-DP rank has one, so the ranks prefill in the same iterations instead
#: of stalling one another at every MoE layer, for at most ``timeout_iters`` iterations
#: (llmapi/llm_args.py AttentionDpConfig; its default is balancing off). The corpus's DEP rows
#: were measured this way.
ATTENTION_DP_BALANCE = {"enable_balance": True, "batching_wait_iters": 0, "timeout_iters": 60}


def micro_batch(job: Job) -> int:
    """``max_batch_size``: the sequences of one micro-batch (``maxNumSeqs`` over the stages)."""
    return -(-job.max_num_seqs // job.pp)


class Trtllm:
    name = "trtllm"
    health_path = "/health"

    def launcher(self, job: Job) -> str:
        return "single" if job.nodes == 1 else "mpi"

    def options(self, job: Job) -> dict[str, Any]:
        opts: dict[str, Any] = {
            "cuda_graph_config": {"enable_padding": True, "max_batch_size":
                                  min(job.cuda_graph_max_batch, micro_batch(job))},
            "kv_cache_config": {"dtype": job.kv_cache_dtype, "free_gpu_memory_fraction":
                                float(num(job.kv_cache_fraction))},
        }
        if job.dpa > 1:
            opts["enable_attention_dp"] = True
            opts["attention_dp_config"] = dict(ATTENTION_DP_BALANCE)
        backend = MOE_BACKEND.get((job.checkpoint.format, job.gpu_architecture))
        if backend and job.ep >= 1 and job.checkpoint.quantized in ("experts", "all"):
            opts["moe_config"] = {"backend": backend}
        return opts

    def processes(self, job: Job) -> tuple[Process, ...]:
        argv = ["trtllm-serve", job.model_id, "--host", "0.0.0.0", "--port", f"$({PORT})",
                "--backend", "pytorch", "--tp_size", str(job.tp * job.dpa), "--pp_size", str(job.pp),
                "--ep_size", str(job.ep), "--max_batch_size", str(micro_batch(job)),
                "--max_num_tokens", str(job.max_num_batched_tokens), "--max_seq_len", str(job.max_model_len),
                "--kv_cache_free_gpu_memory_fraction", num(job.kv_cache_fraction),
                "--extra_llm_api_options", f"$({CONFIG_DIR})/{OPTIONS}"] + list(job.extra_args)
        env = env_pairs(dict(job.fabric_env))
        if job.nodes == 1:
            return (Process("server", tuple(argv), env),)
        ranks = ["trtllm-llmapi-launch"] + argv
        return (Process("head", tuple(ranks), env), Process("worker", tuple(ranks), env))

    def config_files(self, job: Job) -> tuple[ConfigFile, ...]:
        return (ConfigFile(OPTIONS, self.options(job)),)

    def image(self, version: str | None, vendor: str) -> str:
        from parc.engines import flags

        return flags.release(self.name, version).image if vendor == "nvidia" else ""

    def notes(self, job: Job) -> tuple[str, ...]:
        out = []
        if job.pp > 1:
            out.append(f"TensorRT-LLM: --max_batch_size {micro_batch(job)} is per micro-batch; its {job.pp} "
                       f"pipeline micro-batches admit {micro_batch(job) * job.pp} requests per rank "
                       f"(maxNumSeqs {job.max_num_seqs})")
        backend = MOE_BACKEND.get((job.checkpoint.format, job.gpu_architecture))
        if backend:
            out.append(f"TensorRT-LLM: moe_config.backend {backend} for {job.checkpoint.format} experts on "
                       f"{job.gpu_architecture} (the default CUTLASS backend does not run them)")
        if job.dpa > 1:
            out.append(f"TensorRT-LLM: attention_dp_config.enable_balance, as its performance overview runs DeepSeek-R1: "
                       f"a prompt waits until each of the {job.dpa} attention-DP ranks has one to prefill, at most "
                       f"{ATTENTION_DP_BALANCE['timeout_iters']} iterations, so at low load TTFT can exceed the "
                       "prediction by up to that many decode steps")
        out += kernel_notes("TensorRT-LLM", job)
        return tuple(out)


ENGINE = Trtllm()
