"""The cost model reproduces the seeds' arithmetic and behaves physically."""

from __future__ import annotations

import pytest

from parc import catalog
from parc import costmodel as cm
from parc.catalog import shapes

LLAMA3_70B = catalog.models().entries["llama-3-70b"]
LLAMA2_70B = catalog.models().entries["llama-2-70b"]
L405 = catalog.models().entries["llama-3.1-405b"]


def test_seed_all_reduce_arithmetic_llama3_70b_tp4_one_token():
    msg = cm.activation_bytes_per_message(LLAMA3_70B, 1)
    assert msg == 16 * 1024  # 8192 x 1 x 2 bytes = 16 KB
    assert cm.ring_all_reduce_bytes(msg, 4) == 24 * 1024  # 2 x 3/4 x 16 KB = 24 KB
    assert cm.all_reduces_per_forward(LLAMA3_70B) == 160  # 80 layers x 2
    # seed table: 24 KB over NVLink A100 at 600 GB/s is 0.04 us; over PCIe 4.0 x16 at 64 GB/s 0.37 us
    assert cm.ring_all_reduce_bytes(msg, 4) / 600e9 * 1e6 == pytest.approx(0.04, abs=0.005)
    assert cm.ring_all_reduce_bytes(msg, 4) / 64e9 * 1e6 == pytest.approx(0.38, abs=0.01)
    # batch 32: each tensor 512 KB
    assert cm.activation_bytes_per_message(LLAMA3_70B, 32) == 512 * 1024


def test_seed_bubble_fractions():
    assert cm.bubble_fraction(4, 1) == 0.75
    assert cm.bubble_fraction(4, 16) == pytest.approx(3 / 19)
    assert round(cm.bubble_fraction(4, 16), 2) == 0.16


def test_seed_weights_llama2_70b_tp4():
    # seed: 140 GB in FP16, 35 GB per GPU at TP=4
    total = shapes.total_params(LLAMA2_70B) * 2
    assert total / 1e9 == pytest.approx(138, rel=0.02)
    per_gpu = cm.weight_bytes_per_gpu(LLAMA2_70B, cm.Shape(4, 1, 1, 1), "bf16")
    assert per_gpu / 1e9 == pytest.approx(35, rel=0.03)
    assert cm.weight_bytes_per_gpu(LLAMA2_70B, cm.Shape(1, 4, 1, 1), "bf16") / 1e9 == pytest.approx(35, rel=0.05)


def test_seed_405b_sizes():
    assert shapes.total_params(L405) * 2 / 1e9 == pytest.approx(810, rel=0.01)  # 810 GB in bf16
    int4 = shapes.total_params(L405) * shapes.WEIGHT_BYTES["int4"] / 1e9
    assert int4 == pytest.approx(203, rel=0.05)  # ~203 GB in int4 (group scales included)
    assert int4 > catalog.gpus().get("H200-SXM-141GB").memory_gb


def test_kv_cache_gqa_and_replication():
    # Llama-3-70B: 80 layers, 8 KV heads x 128, bf16 -> 2 x 80 x 8 x 128 x 2 = 320 KiB per token
    assert shapes.kv_bytes_per_sequence(LLAMA3_70B, "auto", 1, 1, 1) == 327680
    assert shapes.kv_bytes_per_sequence(LLAMA3_70B, "auto", 4, 1, 1) == 327680 / 4
    # tp=16 > 8 KV heads: each GPU keeps one replicated head
    assert shapes.kv_bytes_per_sequence(LLAMA3_70B, "auto", 16, 1, 1) == 327680 / 8
    assert shapes.kv_bytes_per_sequence(LLAMA3_70B, "fp8", 4, 2, 1) == 327680 / 16


def test_kv_cache_mla_is_latent_and_replicated():
    ds = catalog.models().entries["deepseek-v3"]
    per = (ds.kv_lora_rank + ds.qk_rope_head_dim) * 2 * ds.num_hidden_layers
    assert shapes.kv_bytes_per_sequence(ds, "auto", 8, 1, 1) == per


def test_mla_decodes_in_latent_space_and_prefills_as_multi_head_attention():
    """A DeepSeek decode token attends over the 512-wide latent plus the 64-wide rotary key in
    each of 128 heads (absorbed form); a prompt token attends over up-projected 192-wide keys and
    128-wide values (expanded form), as the engines' MLA prefill runs: 3.4x fewer FLOPs, and
    a dense model's attention is the same in both."""
    ds = catalog.models().entries["deepseek-r1"]
    decode = shapes.attention_flops(ds, 1, 1000)
    prompt = shapes.attention_flops(ds, 1, 1000, prefill=True)
    assert decode == 2 * 128 * (512 + 64 + 512) * 61 * 1000
    assert prompt == 2 * 128 * (128 + 64 + 128) * 61 * 1000
    assert shapes.attention_flops(LLAMA3_70B, 1, 1000, prefill=True) == shapes.attention_flops(LLAMA3_70B, 1, 1000)


def test_sliding_window_caps_kv():
    oss = catalog.models().entries["gpt-oss-120b"]
    short = shapes.kv_bytes_per_sequence(oss, "auto", 1, 1, oss.sliding_window)
    long = shapes.kv_bytes_per_sequence(oss, "auto", 1, 1, 100 * oss.sliding_window)
    full_layers = oss.num_hidden_layers - oss.sliding_window_layers
    assert long < 100 * short
    assert long == pytest.approx(short / oss.num_hidden_layers * (full_layers * 100 + oss.sliding_window_layers))


def test_moe_experts_split_by_tp_x_dpa():
    mx = catalog.models().entries["mixtral-8x7b"]
    one = cm.weight_bytes_per_gpu(mx, cm.Shape(1, 1, 1, 1), "bf16")
    eight = cm.weight_bytes_per_gpu(mx, cm.Shape(1, 1, 8, 8), "bf16")
    experts = shapes.breakdown(mx).moe_weights(mx) * 2
    assert one - eight == pytest.approx(experts * 7 / 8, rel=1e-6)


def test_link_selection_nvlink_pcie_network():
    from parc.resolve import ResolvedPool

    gpu = catalog.gpus().get("A100-SXM-80GB")
    f = cm.factors(gpu, "vllm")
    pool = ResolvedPool(0, "p", gpu, 2, 8, "nvlink", 8, "infiniband", 200, "none")
    assert cm.link(pool, 8, f).kind == "nvlink"
    assert cm.link(pool, 16, f).kind == "network"
    pcie = ResolvedPool(0, "p", catalog.gpus().get("A100-PCIE-80GB"), 1, 8, "pcie", 0, "none", 0, "none")
    assert cm.link(pcie, 4, f).kind == "pcie"
    assert cm.link(pcie, 8, f).kind == "pcie-sys"
    assert cm.link(pcie, 4, f).gbs < cm.link(pool, 4, f).gbs / 5


def test_tp_over_pcie_costs_more_than_over_nvlink():
    from parc.resolve import ResolvedPool

    gpu = catalog.gpus().get("A100-SXM-80GB")
    f = cm.factors(gpu, "vllm")
    nv = ResolvedPool(0, "p", gpu, 1, 4, "nvlink", 8, "none", 0, "none")
    pc = ResolvedPool(0, "p", gpu, 1, 4, "pcie", 0, "none", 0, "none")
    msg = cm.activation_bytes_per_message(LLAMA3_70B, 32)
    assert cm.all_reduce_s(msg, 4, cm.link(pc, 4, f)) > 3 * cm.all_reduce_s(msg, 4, cm.link(nv, 4, f))


def test_decode_is_memory_bound_and_tpot_grows_with_load():
    from parc.resolve import ResolvedPool

    gpu = catalog.gpus().get("H100-SXM-80GB")
    pool = ResolvedPool(0, "p", gpu, 1, 8, "nvlink", 8, "none", 0, "none")
    ckpt = catalog.assumed_checkpoint("", LLAMA3_70B.key, "bf16", "")
    ctx = cm.Context(LLAMA3_70B, pool, ckpt, "auto", "vllm", "native", cm.factors(gpu, "vllm"), 1000, 200)
    t1 = cm.predict(ctx, cm.Shape(4, 1, 1, 1), 1, 4096)
    t32 = cm.predict(ctx, cm.Shape(4, 1, 1, 1), 32, 4096)
    assert t32.tpot_s > t1.tpot_s
    assert t32.throughput > 10 * t1.throughput
    # one token: ~35 GB of weights per GPU read at ~3.35 TB/s x 0.8 -> about 13 ms
    assert 0.008 < t1.tpot_s < 0.03
    t8 = cm.predict(ctx, cm.Shape(8, 1, 1, 1), 1, 4096)
    assert t8.tpot_s < t1.tpot_s


def test_an_engine_that_prefills_apart_pays_a_forward_per_chunk():
    """SGLang (without --enable-mixed-chunk) and TGI run a prompt chunk as a forward of its own
    while the running decodes wait; vLLM and TensorRT-LLM put the chunk into the decodes'
    iteration. At a load where prompts arrive, the separate forward reads the weights again and
    pays its own overhead: TPOT is higher, by at most the share of iterations that carry a chunk
    times a prefill forward plus its overhead; the cost terms still add up to TPOT."""
    from dataclasses import replace

    from parc.resolve import ResolvedPool

    gpu = catalog.gpus().get("H100-SXM-80GB")
    pool = ResolvedPool(0, "p", gpu, 1, 8, "nvlink", 8, "none", 0, "none")
    ckpt = catalog.assumed_checkpoint("", LLAMA3_70B.key, "bf16", "")
    mixed = cm.Context(LLAMA3_70B, pool, ckpt, "auto", "vllm", "native", cm.factors(gpu, "vllm"), 1000, 200)
    apart = replace(mixed, separate_prefill=True)
    shape = cm.Shape(4, 1, 1, 1)
    for load in (1, 16, 64):
        a, b = cm.predict(mixed, shape, load, 2048), cm.predict(apart, shape, load, 2048)
        assert b.tpot_s > a.tpot_s
        terms = cm.step_terms(cm.prepare(apart, shape, 2048), load)
        assert terms.tpot_ms == pytest.approx(b.tpot_s * 1e3, rel=1e-9)
    from parc.engines import capabilities

    assert {n: c.prefill_batching for n, c in capabilities().items()} == {
        "vllm": "mixed", "trtllm": "mixed", "sglang": "separate", "tgi": "separate"}


def test_layer_kinds_sum_to_the_matmul_flops():
    for key in ("llama-3-70b", "gpt-oss-120b", "deepseek-r1", "qwen3-235b-a22b"):
        arch = catalog.models().entries[key]
        kinds = shapes.linear_flops_by_kind(arch)
        assert sum(kinds.values()) == pytest.approx(shapes.linear_flops_per_token(arch))
        assert all(v >= 0 for v in kinds.values())
    oss = shapes.linear_flops_by_kind(catalog.models().entries["gpt-oss-120b"])
    assert oss["experts"] > oss["attention"] > 0 and oss["mlp"] == 0


@pytest.mark.parametrize("engine, kernel, experts_at", [
    ("vllm", "a16", "bf16"),  # FlashInfer TRT-LLM MXFP4 x BF16 MoE, vLLM's default on Blackwell
    ("trtllm", "a8", "fp8"),  # W4A8_MXFP4_MXFP8 on SM100
    ("sglang", "a8", "fp8"),  # MXFP8 activations on the SM100 path
])
def test_mxfp4_experts_run_at_the_rate_of_the_engines_kernel(engine, kernel, experts_at):
    from parc.engines import capabilities

    gpu = catalog.gpus().get("B200-SXM-180GB")
    ckpt = catalog.checkpoint_for("openai/gpt-oss-120b")
    assert capabilities()[engine].support(ckpt.format, gpu.architecture) == kernel
    assert cm.compute_precision(ckpt, "experts", kernel) == experts_at
    # attention, the LM head and routers stay 16-bit: the checkpoint does not quantize them
    assert cm.compute_precision(ckpt, "attention", kernel) == "bf16"
    assert cm.compute_precision(ckpt, "other", kernel) == "bf16"
    arch = catalog.models().entries["gpt-oss-120b"]
    seconds = {k: cm.matmul_seconds_per_token(arch, gpu, ckpt, k) for k in ("native", "a8", "a16")}
    assert seconds["native"] < seconds["a8"] < seconds["a16"]
    assert seconds[kernel] > 1.3 * seconds["native"]
    # a fully FP8 checkpoint on Hopper runs every quantized kind at FP8
    fp8 = catalog.assumed_checkpoint("", "llama-3-70b", "fp8", "")
    assert cm.compute_precision(fp8, "mlp", "native") == "fp8"
    assert cm.compute_precision(fp8, "mlp", "weight-only") == "bf16"


def test_layer_overhead_is_a_floor_per_layer_of_each_stage():
    from dataclasses import replace

    from parc.resolve import ResolvedPool

    gpu = catalog.gpus().get("H100-SXM-80GB")
    pool = ResolvedPool(0, "p", gpu, 1, 8, "nvlink", 8, "none", 0, "none")
    ckpt = catalog.assumed_checkpoint("", LLAMA3_70B.key, "bf16", "")
    f = cm.factors(gpu, "vllm")
    slow = replace(f, layer_overhead_us=f.layer_overhead_us + 100.0)
    base = cm.Context(LLAMA3_70B, pool, ckpt, "auto", "vllm", "native", f, 1000, 200)
    more = replace(base, factors=slow)
    for shape in (cm.Shape(4, 1, 1, 1), cm.Shape(2, 2, 1, 1)):
        t0, t1 = cm.predict(base, shape, 1, 4096), cm.predict(more, shape, 1, 4096)
        # 80 layers x 100 us more per decode step, whether the layers sit in one stage or two
        assert t1.tpot_s - t0.tpot_s == pytest.approx(80 * 100e-6, rel=0.02)


def test_closed_loop_clients_beyond_the_kv_capacity_queue():
    from parc.resolve import ResolvedPool

    gpu = catalog.gpus().get("H100-SXM-80GB")
    pool = ResolvedPool(0, "p", gpu, 1, 8, "nvlink", 8, "none", 0, "none")
    ckpt = catalog.assumed_checkpoint("", LLAMA3_70B.key, "bf16", "")
    ctx = cm.Context(LLAMA3_70B, pool, ckpt, "auto", "vllm", "native", cm.factors(gpu, "vllm"), 5000, 500)
    p = cm.prepare(ctx, cm.Shape(4, 1, 1, 1), 8192)
    assert cm.predict_closed_loop(p, 30, 80) == cm.predict_prepared(p, 30)  # within capacity: no queue
    at_cap = cm.predict_prepared(p, 80)
    prev = at_cap.ttft_s
    for clients in (120, 160, 240):
        t = cm.predict_closed_loop(p, clients, 80)
        # 80 run (TPOT and throughput stay at the capacity's); the rest wait for a slot, which frees
        # at 80 requests per service time (Little's law)
        assert (t.tpot_s, t.throughput) == (at_cap.tpot_s, at_cap.throughput)
        service = at_cap.ttft_s + 500 * at_cap.tpot_s
        assert t.ttft_s == pytest.approx(at_cap.ttft_s + (clients - 80) / 80 * service)
        assert t.ttft_s > prev
        prev = t.ttft_s


def test_gpu_memory_is_what_the_cuda_runtime_reports_where_a_source_prints_it():
    """H100 SXM 80GB: vLLM's memory profile prints total_gpu_memory 79.22 GiB (the driver keeps
    the rest); a GPU without such a source keeps its printed capacity, and says which."""
    gpus = catalog.gpus()
    h100 = gpus.get("H100-SXM-80GB")
    assert h100.memory_bytes == pytest.approx(79.22 * cm.GIB)
    assert any("memory_visible_gib" in s.covers for s in h100.sources)
    for g in gpus.entries.values():
        if g.memory_visible_gib:
            assert 0.9 * g.memory_gb <= g.memory_visible_gib <= g.memory_gb, g.key
            assert any("memory_visible_gib" in s.covers for s in g.sources), g.key
        else:
            assert g.memory_bytes == g.memory_gb * cm.GIB


def test_the_memory_setting_is_read_as_each_engine_reads_it():
    """vLLM's gpuMemoryUtilization is a share of the whole GPU; TensorRT-LLM's
    free_gpu_memory_fraction a share of what weights, activations and the runtime leave free
    (how a measured row's engine was set; plans keep one margin on every engine).
    A model that fills most of the GPU leaves TensorRT-LLM a KV cache for several requests where
    vLLM's reading of the same number holds none (Llama-3-70B FP8 on one H100: measured by
    TensorRT-LLM's tables)."""
    h100 = catalog.gpus().get("H100-SXM-80GB")
    shape = cm.Shape(1, 1, 1, 1)
    args = dict(utilization=0.9, batched_tokens=8192, max_seqs=256)  # TensorRT-LLM's default max_num_tokens
    from parc.engines import capabilities

    assert capabilities()["vllm"].memory_budget == "share-of-total"
    assert capabilities()["trtllm"].memory_budget == "share-of-free"
    vllm = cm.memory(LLAMA3_70B, h100, shape, "fp8", cm.factors(h100, "vllm"), **args, reading="share-of-total")
    trt = cm.memory(LLAMA3_70B, h100, shape, "fp8", cm.factors(h100, "trtllm"), **args, reading="share-of-free")
    assert vllm.kv_cache == pytest.approx(0.9 * vllm.capacity - vllm.weights - vllm.activations - vllm.overhead)
    free = trt.capacity - trt.weights - trt.activations - trt.overhead
    assert trt.kv_cache == pytest.approx(0.9 * free)
    one_request = 2048 + 128  # tokens of one request of the tables' 2048/128 rows
    assert cm.max_sequences(LLAMA3_70B, shape, "auto", vllm, one_request) == 0
    assert cm.max_sequences(LLAMA3_70B, shape, "auto", trt, one_request) >= 4


@pytest.mark.parametrize("gpu, per_group", [("H100-SXM-80GB", 1.79), ("L40S-48GB", 0.36)])
def test_a_communicator_costs_what_vllm_measures(gpu, per_group):
    """vLLM's profile of one model at TP1 and TP2 on H100 (non-torch memory 1.79 -> 3.58 GiB):
    each communicator a GPU joins takes 1.79 GiB of it. Without NVLink there is no custom
    all-reduce beyond two GPUs and no NVLS: vLLM's profiles on PCIe cards print 0.20-0.36 GiB of
    non-torch memory per worker at TP > 1, so an L40S group reserves 0.36 GiB."""
    g = catalog.gpus().get(gpu)
    f = cm.factors(g, "vllm")
    one, two = (cm.memory(LLAMA3_70B, g, shape, "fp8", f, utilization=0.9, batched_tokens=2048, max_seqs=256)
                for shape in (cm.Shape(2, 1, 1, 1), cm.Shape(2, 2, 1, 1)))
    assert (two.overhead - one.overhead) / cm.GIB == pytest.approx(per_group)
    assert one.overhead / cm.GIB == pytest.approx(f.cuda_context_gib + f.cuda_graphs_gib + per_group)
