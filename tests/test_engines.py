"""Engines behind one interface: checkpoints, engine rules with sources, settings in each
engine's own meaning, documented multi-node forms, ROCm, and the recipe comparison."""

from __future__ import annotations

import json

import pytest

from conftest import EXAMPLES
from parc import catalog, engines
from parc import costmodel as cm
from parc.catalog import hfconfig
from parc.errors import SpecError
from parc.pipeline import compile_spec, make_plan
from parc.resolve import load_and_resolve
from parc.solver import enumerate_candidates

SPEC = """\
apiVersion: parc.dev/v1alpha1
kind: ServingSpec
metadata: {{name: t}}
model: {{id: {model}{extra}}}
workload: {{inputTokens: 1000, outputTokens: 1000{conc}}}
slo: {{objective: {objective}}}
cluster:
  pools: [{{name: p, gpu: {gpu}, gpusPerNode: {gpus}{pool}}}]
{engine}"""


def spec(write, model: str, gpu: str = "H100-SXM-80GB", gpus: int = 8, objective: str = "throughput",
         extra: str = "", engine: str = "", conc: int | None = None, pool: str = ""):
    return write(SPEC.format(model=model, gpu=gpu, gpus=gpus, objective=objective, extra=extra,
                             engine=f"engine: {{name: {engine}}}\n" if engine else "",
                             conc=f", concurrency: {conc}" if conc else "", pool=pool))


def test_every_engine_module_has_the_interface_and_sourced_rules():
    for name in engines.ENGINES:
        eng = engines.get(name)
        assert eng.name == name and eng.health_path.startswith("/")
        cap = engines.capabilities()[name]
        assert cap.rules and all(r.source and r.text for r in cap.rules.values())
        assert set(cap.rules) <= set(engines.KNOWN_RULES)
        assert cap.formats["bf16"] and cap.source
    for r in engines.recipes():
        assert r.engine in engines.ENGINES and r.source and catalog.models().get(r.architecture)


def test_checkpoint_precision_is_the_default(write):
    """DeepSeek-R1 ships FP8 blocks and gpt-oss-120b MXFP4: both fit as shipped."""
    r1 = make_plan(spec(write, "deepseek-ai/DeepSeek-R1", gpu="H200-SXM-141GB"))
    assert r1["model"]["precision"] == "fp8" and r1["model"]["checkpoint"]["weightBlockSize"] == [128, 128]
    assert r1["placement"]["gpusTotal"] == 8
    oss = make_plan(spec(write, "openai/gpt-oss-120b", gpus=1, objective="latency", conc=8))
    assert oss["model"]["checkpoint"]["format"] == "mxfp4" and oss["placement"]["gpusTotal"] == 1


def test_a_precision_the_checkpoint_cannot_be_served_in_is_a_located_error(run, write):
    p = spec(write, "deepseek-ai/DeepSeek-R1", extra=", precision: bf16")
    code, _, err = run("validate", str(p))
    assert code == 2
    assert (f"{p}:4:49: model.precision: deepseek-ai/DeepSeek-R1 ships fp8-block weights (fp8, per parc's checkpoint "
            "catalog); it cannot be served as bf16: remove model.precision, or set model.id to a bf16 checkpoint") in err


def test_online_fp8_of_a_16_bit_checkpoint(write, run):
    p = spec(write, "meta-llama/Llama-3.1-8B-Instruct", extra=", precision: fp8", engine="vllm")
    plan = make_plan(p)
    argv = plan["launch"][0]["argv"]
    assert argv[argv.index("--quantization") + 1] == "fp8" and argv[argv.index("--dtype") + 1] == "bfloat16"
    code, _, err = run("validate", str(spec(write, "meta-llama/Llama-3.1-8B-Instruct", extra=", precision: fp8",
                                            engine="trtllm")))
    assert code == 2 and "TensorRT-LLM does not quantize a 16-bit checkpoint to FP8 at load" in err


def test_config_path_reads_the_quantization_config(write, tmp_path):
    arch = catalog.models().get("qwen3-235b-a22b")
    ck = catalog.checkpoint_for("Qwen/Qwen3-235B-A22B-FP8")
    (tmp_path / "config.json").write_text(json.dumps(hfconfig.to_dict(arch, ck)))
    res = load_and_resolve(spec(write, "my-org/private-qwen", extra=", configPath: config.json"))
    assert (res.checkpoint.format, res.checkpoint.block, res.checkpoint.precision) == ("fp8-block", (128, 128), "fp8")
    cands, rejs = enumerate_candidates(res)
    tp8 = next(r for r in rejs if (r.shape.tp, r.shape.ep, r.shape.dpa, r.shape.pp) == (8, 1, 1, 1))
    assert "moe_intermediate_size 1536 / (tp 8 x dpAttention 1) = 192" in tp8.reason
    assert "[rule block-quant-divisible: vllm 0.32.0" in tp8.reason or tp8.engine != "vllm"


@pytest.mark.parametrize("quant, fmt", [
    ({"quant_method": "awq", "bits": 4, "group_size": 64}, ("awq", 64)),
    ({"quant_method": "mxfp4"}, ("mxfp4", 32)),
    ({"quant_method": "modelopt", "quant_algo": "NVFP4", "group_size": 16}, ("nvfp4", 16)),
    ({"quant_method": "compressed-tensors", "config_groups": {"g": {"weights": {"num_bits": 8, "type": "float"}}}},
     ("fp8", 0)),
])
def test_quantization_configs_parc_reads(quant, fmt):
    q = hfconfig.quantization({"quantization_config": quant}, "c.json")
    assert q is not None and (q[0], q[4]) == fmt


def test_unknown_quantization_is_an_error():
    with pytest.raises(hfconfig.ConfigError, match="quant_method 'bitsandbytes' is not one parc reads"):
        hfconfig.quantization({"quantization_config": {"quant_method": "bitsandbytes"}}, "c.json")


def test_trtllm_runs_gpt_oss_on_hopper_with_the_triton_moe_backend(tmp_path):
    _, arts = compile_spec(EXAMPLES / "gpt-oss-120b-1xh100-trtllm.yaml", ("launch",))
    files = {a.path: a.content for a in arts}
    opts = files["launch/trtllm-extra-llm-api-options.yaml"]
    assert 'backend: "TRITON"' in opts and "cuda_graph_config:" in opts and 'dtype: "auto"' in opts
    plan = json.loads(files["plan.json"])
    s = plan["engineSettings"]
    # TensorRT-LLM's fraction is of the memory left after weights and activations
    mem = plan["predicted"]["memoryPerGpuGiB"]
    free = mem["capacity"] - mem["weights"] - mem["activations"] - mem["overhead"]
    assert s["kvCacheFreeMemoryFraction"] == pytest.approx(mem["kvCache"] / free, abs=0.011)
    assert f"free_gpu_memory_fraction: {s['kvCacheFreeMemoryFraction']}" in opts


@pytest.mark.parametrize("engine, says", [
    ("vllm", "quantized layers with 16-bit activations on blackwell"),
    ("trtllm", "quantized layers against 8-bit activations on blackwell"),
    ("sglang", "quantized layers against 8-bit activations on blackwell"),
])
def test_mxfp4_on_blackwell_is_planned_at_the_rate_of_the_engines_kernel(write, engine, says):
    """gpt-oss's MXFP4 experts on B200: vLLM's default kernel keeps BF16 activations, TensorRT-LLM
    and SGLang quantize them to MXFP8. The plan says which, and the faster kernel predicts more."""
    doc = make_plan(spec(write, "openai/gpt-oss-120b", gpu="B200-SXM-180GB", gpus=1, engine=engine))
    assert any(says in n for n in doc["notes"]), doc["notes"]


def test_an_mxfp8_activation_kernel_predicts_faster_than_a_bf16_one(write):
    rates = {e: make_plan(spec(write, "openai/gpt-oss-120b", gpu="B200-SXM-180GB", gpus=1, engine=e,
                               conc=256))["predicted"]["groups"][0]["tpotMs"] for e in ("vllm", "trtllm")}
    assert rates["trtllm"] < rates["vllm"]


def test_trtllm_attention_dp_balances_contexts_as_its_performance_overview_runs_deepseek(write):
    path = spec(write, "deepseek-ai/DeepSeek-R1", gpu="H200-SXM-141GB", engine="trtllm")
    with open(path, "a", encoding="utf-8") as fh:
        fh.write("constraints: {tp: 1, dpAttention: 8}\n")
    _, arts = compile_spec(path, ("launch",))
    files = {a.path: a.content for a in arts}
    opts = files["launch/trtllm-extra-llm-api-options.yaml"]
    assert "enable_attention_dp: true" in opts and "attention_dp_config:" in opts
    assert "enable_balance: true" in opts and "timeout_iters: 60" in opts and "batching_wait_iters: 0" in opts
    plan = json.loads(files["plan.json"])
    assert any("attention_dp_config.enable_balance" in n and "8 attention-DP ranks" in n for n in plan["notes"])
    # without attention DP there is nothing to balance
    plain = spec(write, "deepseek-ai/DeepSeek-R1", gpu="H200-SXM-141GB", engine="trtllm")
    with open(plain, "a", encoding="utf-8") as fh:
        fh.write("constraints: {tp: 8}\n")
    _, arts = compile_spec(plain, ("launch",))
    assert "attention_dp_config" not in {a.path: a.content for a in arts}["launch/trtllm-extra-llm-api-options.yaml"]


def test_trtllm_max_batch_size_is_per_pipeline_micro_batch(write):
    # TensorRT-LLM admits pp x max_batch_size requests (PyTorchModelEngine.get_max_num_sequences):
    # parc writes maxNumSeqs / pp so the requests in flight are the planned maxNumSeqs
    path = spec(write, "meta-llama/Llama-3.1-70B-Instruct", gpus=4, engine="trtllm",
                extra=", maxContextLength: 4096")
    plan = make_plan(path, sets=["constraints.tp=2", "constraints.pp=2"])
    (g,) = plan["placement"]["groups"]
    assert (g["tp"], g["pp"]) == (2, 2)
    seqs = plan["engineSettings"]["maxNumSeqs"]
    argv = plan["launch"][0]["argv"]
    assert int(argv[argv.index("--max_batch_size") + 1]) == -(-seqs // 2)
    assert any("--max_batch_size" in n and "per micro-batch" in n for n in plan["notes"])
    assert engines.capabilities()["trtllm"].rule("pp-micro-batch-seqs").source
    unpiped = make_plan(path, sets=["constraints.tp=4", "constraints.pp=1"])
    argv = unpiped["launch"][0]["argv"]
    assert int(argv[argv.index("--max_batch_size") + 1]) == unpiped["engineSettings"]["maxNumSeqs"]
    assert not any("per micro-batch" in n for n in unpiped["notes"])


def test_trtllm_rejects_nvfp4_before_blackwell(write):
    res = load_and_resolve(spec(write, "nvidia/DeepSeek-R1-FP4", gpu="H200-SXM-141GB", engine="trtllm"))
    _, rejs = enumerate_candidates(res)
    assert rejs and all("does not run nvfp4 checkpoints on hopper" in r.reason for r in rejs if r.kind == "precision")


def test_vllm_settings_are_per_data_parallel_rank(tmp_path):
    # the recipe's DEP8 (vLLM's DeepSeek guide), pinned: the cost model may prefer another layout
    plan = make_plan(EXAMPLES / "deepseek-r1-fp8-8xh200.yaml",
                     sets=["constraints.dpAttention=8", "constraints.tp=1", "constraints.pp=1"])
    (g,) = plan["placement"]["groups"]
    s = plan["engineSettings"]
    assert g["dpAttention"] == 8 and s["perDataParallelRank"]
    assert s["maxNumSeqs"] * 8 == s["maxNumSeqsPerReplica"]
    argv = plan["launch"][0]["argv"]
    assert int(argv[argv.index("--max-num-seqs") + 1]) == s["maxNumSeqs"]
    assert int(argv[argv.index("--max-num-batched-tokens") + 1]) >= s["maxNumSeqs"]


def test_mixtral_throughput_batched_tokens_hold_every_sequence():
    plan = make_plan(EXAMPLES / "mixtral-8x7b-8xh100.yaml")
    for s in plan["groupEngineSettings"]:
        assert s["maxNumBatchedTokens"] >= s["maxNumSeqs"]


def test_moe_data_parallel_attention_uses_expert_parallelism(write):
    res = load_and_resolve(spec(write, "deepseek-ai/DeepSeek-R1", gpu="H200-SXM-141GB", engine="vllm"))
    cands, rejs = enumerate_candidates(res)
    assert all(c.shape.ep > 1 for c in cands if c.shape.dpa > 1)
    assert any(r.kind == "guide" and "rule moe-dp-uses-ep" in r.reason for r in rejs)


def test_multi_node_deepseek_is_the_documented_dp_form():
    # the recipe's DEP16 over two nodes, pinned (the cost model may prefer another layout)
    plan = make_plan(EXAMPLES / "deepseek-r1-fp8-2x8xh100-ib.yaml",
                     sets=["constraints.dpAttention=16", "constraints.tp=1", "constraints.pp=1"])
    (g,) = plan["placement"]["groups"]
    assert (g["tp"], g["pp"], g["dpAttention"], g["ep"], g["nodesPerReplica"]) == (1, 1, 16, 16, 2)
    head, worker = plan["launch"]
    assert "--headless" not in head["argv"] and "--headless" in worker["argv"]
    for a in (head["argv"], worker["argv"]):
        assert a[a.index("--data-parallel-size-local") + 1] == "8"
        assert a[a.index("--data-parallel-address") + 1] == "$(PARC_HEAD_ADDR)"
    assert worker["argv"][worker["argv"].index("--data-parallel-start-rank") + 1] == "$(PARC_DP_START_RANK)"
    assert head["env"]["GLOO_SOCKET_IFNAME"] == "eth0" and head["env"]["NCCL_IB_HCA"] == "mlx5"
    assert plan["recipe"]["matches"] is True


def test_rocm_image_environment_and_xgmi_links():
    _, arts = compile_spec(EXAMPLES / "llama3.1-405b-fp8-8xmi300x.yaml", ("launch", "kubernetes"))
    files = {a.path: a.content for a in arts}
    k8s = next(c for p, c in files.items() if p.startswith("kubernetes/"))
    assert 'image: "vllm/vllm-openai-rocm:v0.32.0"' in k8s and 'amd.com/gpu: "8"' in k8s
    assert "export VLLM_ROCM_USE_AITER=1" in files["launch/vllm-server.sh"]
    gpu = catalog.gpus().get("MI300X-OAM-192GB")
    from parc.resolve import ResolvedPool

    pool = ResolvedPool(0, "p", gpu, 1, 8, "nvlink", 8, "none", 0, "none")
    f = cm.factors(gpu, "vllm")
    pair, eight = cm.link(pool, 2, f), cm.link(pool, 8, f)
    assert eight.gbs == pytest.approx(7 * pair.gbs)  # a pair uses one of the seven xGMI links


def test_recipe_comparison_in_the_plan():
    plan = make_plan(EXAMPLES / "qwen3-235b-fp8-8xh100.yaml")
    rc = plan["recipe"]
    assert rc["layout"] == {"tp": 4, "pp": 1, "ep": 1, "dpAttention": 1} and not rc["matches"]
    assert rc["predicted"]["throughputTokensPerSecond"] > 0
    assert any(n.startswith("differs from the vllm recipe's tp=4") for n in plan["notes"])


def test_a_gap_to_the_recipe_from_an_unmeasured_class_is_not_called_measured():
    """DeepSeek-R1 on 8 x H200: where parc prefers a layout of a class no published row runs
    (attention DP over pipeline stages), the plan's band is the widened one and the recipe line
    says the gap is the cost model's alone, not that it beats the error band."""
    plan = make_plan(EXAMPLES / "deepseek-r1-fp8-8xh200.yaml")
    g = plan["placement"]["groups"][0]
    band = plan["calibration"]["errorBand"]
    line = next(n for n in plan["notes"] if n.startswith("differs from the vllm recipe's"))
    if g["pp"] > 1:
        assert band["fewMeasurements"] and band["throughputP90Ape"] >= 1.0
        assert "few measurements (pp/" in line and "the cost model's alone" in line, line
    else:
        assert "few measurements" not in line


def test_forced_engine_that_cannot_run_the_checkpoint_is_located(run, write):
    p = spec(write, "openai/gpt-oss-120b", engine="tgi")
    code, _, err = run("validate", str(p))
    assert code == 2 and "model.id: TGI does not run mxfp4 (fp4) checkpoints on any GPU" in err
    with pytest.raises(SpecError):
        load_and_resolve(p)


def test_int8_w8a8_is_not_planned_on_blackwell_where_its_gemm_has_no_kernel(tmp_path):
    """vLLM 0.32.0 and SGLang 0.5.23 load an INT8 W8A8 checkpoint on a B200 and then fail at
    start-up (no SM100 int8 GEMM; vllm #20337/#54311, sglang PR #28137): parc rejects the
    placement with the rule instead of writing a launch that would not start; on H100 it plans."""
    from parc.errors import InfeasibleError
    from parc.resolve import load_and_resolve
    from parc.solver import solve

    text = ("apiVersion: parc.dev/v1alpha1\nkind: ServingSpec\nmetadata: {{name: w8a8}}\n"
            "model: {{id: RedHatAI/Meta-Llama-3.1-8B-Instruct-quantized.w8a8, architecture: llama-3.1-8b, "
            "precision: int8}}\nworkload: {{inputTokens: 1024, outputTokens: 256}}\n"
            "slo: {{objective: throughput, tpotMs: 50}}\n"
            "cluster: {{pools: [{{name: p, gpu: {gpu}, gpusPerNode: 8, scheduler: kubernetes}}]}}\n"
            "engine: {{name: {engine}}}\n")
    for engine in ("vllm", "sglang"):
        p = tmp_path / f"{engine}.yaml"
        p.write_text(text.format(gpu="B200-SXM-180GB", engine=engine))
        with pytest.raises(InfeasibleError) as exc:
            solve(load_and_resolve(p))
        reasons = exc.value.closest
        assert reasons and all("does not run int8 checkpoints on blackwell GPUs" in r for r in reasons), reasons
        p.write_text(text.format(gpu="H100-SXM-80GB", engine=engine))
        assert solve(load_and_resolve(p)).best.groups[0].cand.engine == engine


def test_sglang_argv_is_the_servers_own_quantities(write):
    """SGLang's --tp-size is tp x dpAttention (attention DP runs inside the TP group) and its
    --max-running-requests / --chunked-prefill-size are the server's totals (each attention-DP
    scheduler takes 1/attn_dp_size): parc writes its per-rank settings times dpAttention."""
    plan = make_plan(EXAMPLES / "deepseek-r1-fp8-8xh200-sglang.yaml",
                     sets=["constraints.dpAttention=8", "constraints.tp=1", "constraints.pp=1", "constraints.ep=1"])
    (g,) = plan["placement"]["groups"]
    s = plan["engineSettings"]
    argv = plan["launch"][0]["argv"]
    assert argv[:2] == ["sglang", "serve"] and argv[argv.index("--model-path") + 1] == "deepseek-ai/DeepSeek-R1"
    val = {a: argv[i + 1] for i, a in enumerate(argv[:-1]) if a.startswith("--")}
    assert (val["--tp-size"], val["--attn-dp-size"], val["--pp-size"]) == ("8", "8", "1") and "--ep-size" not in val
    assert int(val["--max-running-requests"]) == s["maxNumSeqs"] * 8 == s["maxNumSeqsPerReplica"]
    assert int(val["--chunked-prefill-size"]) == s["maxNumBatchedTokens"] * 8
    mem = plan["predicted"]["memoryPerGpuGiB"]
    assert float(val["--mem-fraction-static"]) == pytest.approx((mem["weights"] + mem["kvCache"]) / mem["capacity"],
                                                                abs=0.002)
    assert "--quantization" not in val and "--trust-remote-code" not in argv  # FP8 as shipped, in transformers
    assert plan["recipe"]["engine"] == "sglang" and plan["recipe"]["layout"]["dpAttention"] == 8
    assert plan["recipe"]["matches"] is True
    assert any("SGLang: --tp-size 8 --attn-dp-size 8" in n for n in plan["notes"])


def test_sglang_needs_no_ep_with_attention_dp(write):
    """SGLang's guides run DP attention with tensor-sharded experts: no moe-dp-uses-ep rule."""
    res = load_and_resolve(spec(write, "deepseek-ai/DeepSeek-R1", gpu="H200-SXM-141GB", engine="sglang"))
    cands, rejs = enumerate_candidates(res)
    assert any(c.shape.dpa > 1 and c.shape.ep == 1 for c in cands)
    assert not any("moe-dp-uses-ep" in r.reason for r in rejs)


def test_sglang_multi_node_is_one_process_per_node_of_one_world(write):
    plan = make_plan(EXAMPLES / "deepseek-r1-fp8-2x8xh100-ib.yaml",
                     sets=["engine.name=sglang", "constraints.dpAttention=16", "constraints.tp=1", "constraints.pp=1"])
    (g,) = plan["placement"]["groups"]
    assert g["nodesPerReplica"] == 2
    head, worker = plan["launch"]
    for p, rank in ((head, "0"), (worker, "$(PARC_NODE_RANK)")):
        a = p["argv"]
        assert a[a.index("--nnodes") + 1] == "2" and a[a.index("--node-rank") + 1] == rank
        assert a[a.index("--dist-init-addr") + 1] == "$(PARC_HEAD_ADDR):20000"
        assert a[a.index("--tp-size") + 1] == "16" and a[a.index("--attn-dp-size") + 1] == "16"
    assert head["env"]["NCCL_IB_HCA"] == "mlx5"


def test_sglang_rocm_image_and_settings():
    plan = make_plan(EXAMPLES / "llama3.1-405b-fp8-8xmi300x.yaml", sets=["engine.name=sglang"])
    assert plan["launch"][0]["env"]["SGLANG_USE_AITER"] == "1"
    assert engines.get("sglang").image(None, "amd") == "lmsysorg/sglang:v0.5.23-rocm10-mi30x"
    assert engines.get("sglang").image(None, "nvidia") == "lmsysorg/sglang:v0.5.23"
