"""TGI: ``text-generation-launcher`` for a single-node replica (TGI has no PP, EP or multi-node).
Long option names only: ``-p`` is claimed by both --port and --prometheus-port."""

from __future__ import annotations

from parc.engines import PORT, ConfigFile, Job, Process, env_pairs, num, release_image

DTYPE = {"bf16": "bfloat16", "fp16": "float16"}
QUANTIZE = {"fp8": "fp8", "awq": "awq", "gptq": "gptq"}


class Tgi:
    name = "tgi"
    health_path = "/health"

    def launcher(self, job: Job) -> str:
        return "single"

    def processes(self, job: Job) -> tuple[Process, ...]:
        argv = ["text-generation-launcher", "--model-id", job.model_id, "--hostname", "0.0.0.0",
                "--port", f"$({PORT})", "--num-shard", str(job.tp),
                "--max-input-tokens", str(job.max_model_len - 1), "--max-total-tokens", str(job.max_model_len),
                "--max-batch-prefill-tokens", str(max(job.max_num_batched_tokens, job.max_model_len - 1)),
                "--max-concurrent-requests", str(job.max_num_seqs),
                "--cuda-memory-fraction", num(job.gpu_memory_utilization)]
        ck = job.checkpoint
        if ck.format in DTYPE:
            argv += ["--dtype", DTYPE[ck.format]]
        elif ck.quant_method == "online-fp8" or ck.format in QUANTIZE:
            argv += ["--quantize", QUANTIZE.get(ck.format, "fp8")]
        if job.kv_cache_dtype == "fp8":
            argv += ["--kv-cache-dtype", "fp8_e4m3fn"]
        return (Process("server", tuple(argv + list(job.extra_args)), env_pairs(dict(job.fabric_env))),)

    def config_files(self, job: Job) -> tuple[ConfigFile, ...]:
        return ()

    def image(self, version: str | None, vendor: str) -> str:
        return release_image(self.name, version, vendor)

    def notes(self, job: Job) -> tuple[str, ...]:
        return ()


ENGINE = Tgi()
