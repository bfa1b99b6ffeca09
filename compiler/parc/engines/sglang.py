"""SGLang: ``sglang serve`` argv (release 0.5.23, flags/sglang.toml).

``sglang serve`` is 0.5.23's recommended entrypoint (launch_server.py warns that ``python -m
sglang.launch_server`` is "still supported, but 'sglang serve' is the recommended entrypoint");
for a language model it runs the same ``prepare_server_args`` + ``run_server``
(cli/serve.py ``_run_llm``).

- SGLang's ``--tp-size`` is the whole tensor-parallel group of a pipeline stage; attention data
  parallelism runs inside it (``--attn-dp-size N``: N attention groups of tp_size / N ranks
  each, one scheduler each; 0.5.23's spelling of the deprecated ``--dp-size N
  --enable-dp-attention``, arg_groups/parallel_hook.py handle_deprecated_dp_attention), so parc's
  tp x dpAttention is SGLang's tp-size and parc's tp its attention TP size;
- ``--ep-size`` spreads the routed experts over that many ranks of the TP group (moe_tp_size =
  tp_size / ep_size, runtime_context.py derive_parallel_widths);
- ``--max-running-requests`` and ``--chunked-prefill-size`` are the server's: each attention-DP
  scheduler takes 1/attn_dp_size of them (model_executor/pool_configurator.py,
  arg_groups/parallel_hook.py handle_data_parallelism), so parc writes its per-rank settings
  times dpAttention;
- ``--mem-fraction-static`` is the share of a GPU's memory for weights and the KV pool
  (activations, CUDA graphs and NCCL buffers live outside it): parc's memory model's
  (weights + KV cache) / physical memory;
- a replica across nodes is one ``sglang serve`` per node with ``--nnodes``, ``--node-rank`` and
  ``--dist-init-addr`` (the first node's address; docs references/multi_node_deployment);
  the first node serves the API.
"""

from __future__ import annotations

from parc.engines import (HEAD_ADDR, KV_PORT, NODE_RANK, PORT, ConfigFile, Job, Process, RouterJob, env_pairs,
                          kernel_notes, num, release_image, router_instances)

#: port of the first node's torch.distributed rendezvous (--dist-init-addr HEAD:PORT), as SGLang's
#: multi-node docs use it; with attention DP SGLang also takes the ports just above it
#: (server_args.py PortArgs.init_new: port_base = dist_init_port + 1 ...)
DIST_INIT_PORT = 20000
DTYPE = {"bf16": "bfloat16", "fp16": "float16"}
#: KV-cache dtype spelling of --kv-cache-dtype (flags/sglang.toml choices)
KV_DTYPE = {"auto": "auto", "fp8": "fp8_e4m3"}
#: ROCm settings of SGLang's ROCm image and AMD's MI300X workload-optimization guide:
#: HIP_FORCE_DEV_KERNARG=1, TORCH_BLAS_PREFER_HIPBLASLT=1, NCCL_MIN_NCHANNELS=112 (RCCL channels
#: for the xGMI mesh); SGLANG_USE_AITER=1 turns on AITER kernels (srt/environ.py, default off).
ROCM_ENV = {"SGLANG_USE_AITER": "1", "HIP_FORCE_DEV_KERNARG": "1", "TORCH_BLAS_PREFER_HIPBLASLT": "1",
            "NCCL_MIN_NCHANNELS": "112"}


class Sglang:
    name = "sglang"
    health_path = "/health"

    def launcher(self, job: Job) -> str:
        # one process per node of one distributed world, started like data-parallel ranks
        return "single" if job.nodes == 1 else "dp"

    def _serve(self, job: Job) -> list[str]:
        argv = ["sglang", "serve", "--model-path", job.model_id, "--host", "0.0.0.0",
                "--port", f"$({PORT})", "--tp-size", str(job.tp * job.dpa), "--pp-size", str(job.pp)]
        if job.dpa > 1:
            argv += ["--attn-dp-size", str(job.dpa)]
        if job.ep > 1:
            argv += ["--ep-size", str(job.ep)]
        argv += ["--context-length", str(job.max_model_len),
                 "--max-running-requests", str(job.max_num_seqs * job.dpa),
                 "--chunked-prefill-size", str(job.max_num_batched_tokens * job.dpa),
                 "--mem-fraction-static", num(job.static_memory_fraction or job.gpu_memory_utilization),
                 "--kv-cache-dtype", KV_DTYPE[job.kv_cache_dtype]]
        ck = job.checkpoint
        if ck.format in DTYPE:
            argv += ["--dtype", DTYPE[ck.format]]
        elif ck.quant_method == "online-fp8":  # a 16-bit checkpoint served with FP8 weights quantized at load
            argv += ["--dtype", "bfloat16", "--quantization", "fp8"]
        if job.phase != "both":
            # a prefill or decode instance of a disaggregated plan (docs advanced_features/
            # pd_disaggregation.md; arg_groups/fields/disagg.py): the prefill instance serves the
            # KV cache from its bootstrap server, the decode instance pulls it
            argv += ["--disaggregation-mode", job.phase, "--disaggregation-transfer-backend", job.kv_transfer]
            if job.phase == "prefill":
                argv += ["--disaggregation-bootstrap-port", f"$({KV_PORT})"]
        if job.nodes > 1:
            argv += ["--nnodes", str(job.nodes), "--dist-init-addr", f"$({HEAD_ADDR}):{DIST_INIT_PORT}"]
        return argv

    def processes(self, job: Job) -> tuple[Process, ...]:
        serve = self._serve(job)
        env = env_pairs(_env(job))
        extra = list(job.extra_args)
        if job.nodes == 1:
            return (Process("server", tuple(serve + extra), env),)
        head = serve + ["--node-rank", "0"] + extra
        worker = serve + ["--node-rank", f"$({NODE_RANK})"] + extra
        return (Process("head", tuple(head), env), Process("worker", tuple(worker), env))

    def config_files(self, job: Job) -> tuple[ConfigFile, ...]:
        return ()

    def image(self, version: str | None, vendor: str) -> str:
        return release_image(self.name, version, vendor)

    def notes(self, job: Job) -> tuple[str, ...]:
        out = []
        if job.dpa > 1:
            out.append(f"SGLang: --tp-size {job.tp * job.dpa} --attn-dp-size {job.dpa}: {job.dpa} attention groups "
                       f"of {job.tp} GPU{'s' if job.tp > 1 else ''}, one scheduler each; --max-running-requests and "
                       f"--chunked-prefill-size are the server's totals ({job.max_num_seqs} and "
                       f"{job.max_num_batched_tokens} per rank)")
            if job.ep == 1:
                out.append(f"SGLang: no --ep-size, so the experts are tensor-sharded over the {job.tp * job.dpa} GPUs "
                           "(SGLang's DeepSeek guide runs DP attention this way; chosen over EP by the cost model)")
        out += kernel_notes("SGLang", job)
        if job.vendor == "amd" and job.gpu_architecture == "cdna4":
            out.append("SGLang on MI350X/MI355X: use the release's -rocm10-mi35x image (engine.image); the default is "
                       "the -mi30x build for MI300X/MI325X")
        if job.phase != "both":
            out.append(f"SGLang {job.phase} instance: KV cache over {job.kv_transfer} "
                       "(--disaggregation-transfer-backend)")
        return tuple(out)

    def router(self, job: RouterJob) -> Process:
        """SGLang's router in prefill/decode mode (sglang-router 0.3.2, router_args.py): each
        request goes to a prefill and a decode instance at once, the decode instance pulling
        the KV cache from the prefill instance's bootstrap port; on Kubernetes it finds the
        instances by pod labels and reads that port from the ``sglang.ai/bootstrap-port``
        annotation."""
        argv = ["python3", "-m", "sglang_router.launch_router", "--pd-disaggregation", "--host", "0.0.0.0",
                "--port", str(job.port)]
        argv += router_instances(job, kv_ports=True)
        return Process("router", tuple(argv), ())


def _env(job: Job) -> dict[str, str]:
    out = dict(job.fabric_env)
    if job.vendor == "amd":
        out.update(ROCM_ENV)
    return out


ENGINE = Sglang()
