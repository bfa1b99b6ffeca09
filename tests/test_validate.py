"""Stage 2/3: every mistake in a spec is reported at once, located, with a fix."""

from __future__ import annotations

import pytest

from conftest import MINIMAL, ROOT

TEN = [
    "tests/data/ten-mistakes.yaml:4:9: metadata.name: 'Llama_70B' is not a valid name: use at most 63 lower-case "
    "letters, digits and '-', starting and ending with a letter or digit (e.g. 'llama-70b')",
    "tests/data/ten-mistakes.yaml:7:3: model.precison: unknown field 'precison'; did you mean 'precision'?",
    "tests/data/ten-mistakes.yaml:8:21: model.maxContextLength: 262144 is above the maximum of llama-3.1-70b "
    "(131072 tokens); use at most 131072",
    "tests/data/ten-mistakes.yaml:10:16: workload.inputTokens: expected an integer, got the string '2000'",
    "tests/data/ten-mistakes.yaml:11:17: workload.outputTokens: must be > 0, got the number -5",
    "tests/data/ten-mistakes.yaml:13:14: slo.objective: must be one of latency | throughput | cost, got the string "
    "'latncy'; did you mean 'latency'?",
    "tests/data/ten-mistakes.yaml:17:12: cluster.pools[0].gpu: unknown GPU 'H1OO'; did you mean 'H100-SXM-80GB'?",
    "tests/data/ten-mistakes.yaml:20:13: cluster.pools[1].name: pool name 'dgx' is already used by "
    "cluster.pools[0]; pool names must be unique",
    "tests/data/ten-mistakes.yaml:23:18: cluster.pools[1].intraNode: must be one of nvlink | pcie, got the string "
    "'nvlnk'; did you mean 'nvlink'?",
    "tests/data/ten-mistakes.yaml:26:19: targets[1]: target 'slurm' needs a pool with scheduler: slurm; set it on a "
    "pool or remove the target",
    "tests/data/ten-mistakes.yaml:28:9: deploy.port: must be <= 65535, got the number 70000",
    "11 problems in 1 spec",
]


def test_ten_mistakes_all_reported_in_file_order(run, monkeypatch):
    monkeypatch.chdir(ROOT)
    code, out, err = run("validate", "tests/data/ten-mistakes.yaml")
    assert code == 2
    assert out == ""
    assert err.splitlines() == TEN
    assert "Traceback" not in err


def test_minimal_spec_is_valid(run, write):
    p = write(MINIMAL)
    code, out, err = run("validate", str(p))
    assert (code, err) == (0, "")
    assert out == f"{p}: ok (llama-3.1-8b, 8 GPUs)\n"


@pytest.mark.parametrize(
    "change, expected",
    [
        (("kind: ServingSpec", "kind: Servingspec"),
         "2:7: kind: must be one of ServingSpec, got the string 'Servingspec'; did you mean 'ServingSpec'?"),
        (("apiVersion: parc.dev/v1alpha1\n", ""),
         "1:1: apiVersion: required field is missing (e.g. apiVersion: parc.dev/v1alpha1)"),
        (("  gpusPerNode: 8", "  gpusPerNode: 8\n      gpus: 8"),
         "16:7: cluster.pools[0].gpus: unknown field 'gpus'; did you mean 'gpu'?"),
        (("  concurrency: 8\n", ""),
         "8:3: workload.concurrency: required when slo.objective is latency: set the concurrent requests to plan "
         "for, or use objective: throughput"),
        (("id: meta-llama/Llama-3.1-8B-Instruct", "id: acme/secret-model"),
         "6:7: model.id: cannot infer the architecture of 'acme/secret-model'; set model.architecture to a catalog "
         "key or model.configPath to its config.json"),
        (("id: meta-llama/Llama-3.1-8B-Instruct", "id: x\n  architecture: lama-3.1-8b"),
         "7:17: model.architecture: unknown architecture 'lama-3.1-8b'; did you mean 'llama-3.1-8b'?"),
        (("gpusPerNode: 8", "gpusPerNode: 8\n      intraNode: nvlink\n      gpu: L40S"),
         "17:7: cluster.pools[0].gpu: invalid YAML: found duplicate key \"gpu\" with value \"L40S\" (original value: "
         "\"H100-SXM-80GB\") (each key may appear once in a mapping)"),
        (("inputTokens: 1000", "inputTokens: 1000.5"),
         "8:16: workload.inputTokens: expected an integer, got the number 1000.5"),
        (("gpusPerNode: 8", "gpusPerNode: [8]"), "15:20: cluster.pools[0].gpusPerNode: expected an integer, got a list"),
        (("name: demo", "name: demo\n  labels: {'bad key!': x}"),
         "5:11: metadata.labels: label key 'bad key!' is not a valid Kubernetes label key ([prefix/]name, name <= 63 "
         "chars of [A-Za-z0-9-_.], starting and ending alphanumeric)"),
    ],
)
def test_single_mistakes(run, write, change, expected):
    old, new = change
    assert old in MINIMAL
    p = write(MINIMAL.replace(old, new, 1))
    code, out, err = run("validate", str(p))
    assert code == 2, err
    lines = err.splitlines()
    # duplicate keys are a YAML error: reported without a field path
    assert lines[0] == f"{p}:{expected}".replace(": cluster.pools[0].gpu: invalid YAML", ": invalid YAML")
    assert lines[-1] == "1 problem in 1 spec"


def test_engine_precision_combination(run, write):
    p = write(MINIMAL + "engine:\n  name: tgi\n").read_text()
    q = write(p.replace("id: meta-llama/Llama-3.1-8B-Instruct", "id: my-org/llama-8b-nvfp4\n  architecture: llama-3.1-8b"
                                                              "\n  precision: fp4"))
    code, _, err = run("validate", str(q))
    assert code == 2
    assert f"{q}:8:14: model.precision: TGI does not run nvfp4 (fp4) checkpoints on any GPU (it runs bf16, fp16, " \
           "fp8, awq, gptq, int8); change the precision, the checkpoint or engine.name" in err
    # the official repo ships BF16: fp4 is not a precision it can be served in, whatever the engine
    r = write(p.replace("id: meta-llama/Llama-3.1-8B-Instruct", "id: meta-llama/Llama-3.1-8B-Instruct\n  precision: fp4"))
    code, _, err = run("validate", str(r))
    assert code == 2
    assert f"{r}:7:14: model.precision: meta-llama/Llama-3.1-8B-Instruct ships bf16 weights (bf16, per its config.json); " \
           "it cannot be served as fp4: remove model.precision, or set model.id to a fp4 checkpoint" in err


def test_nvlink_on_pcie_only_gpu(run, write):
    p = write(MINIMAL.replace("gpu: H100-SXM-80GB", "gpu: L40S-48GB\n      intraNode: nvlink"))
    code, _, err = run("validate", str(p))
    assert code == 2
    assert "cluster.pools[0].intraNode: L40S-48GB has no NVLink; remove intraNode or set it to pcie" in err


def test_missing_file_empty_file_directory(run, tmp_path, write):
    code, _, err = run("validate", str(tmp_path / "nope.yaml"))
    assert (code, err) == (2, f"{tmp_path / 'nope.yaml'}: no such file\n1 problem in 1 spec\n")
    empty = write("", "empty.yaml")
    code, _, err = run("validate", str(empty))
    assert code == 2
    assert err.splitlines()[0] == f"{empty}:1:1: spec is empty; start from an example in examples/"
    d = tmp_path / "specs"
    d.mkdir()
    code, _, err = run("validate", str(d))
    assert (code, err) == (2, f"{d}: directory has no ServingSpec .yaml or .yml files\n")


def test_directory_of_specs(run, tmp_path):
    d = tmp_path / "specs"
    d.mkdir()
    (d / "a.yaml").write_text(MINIMAL)
    (d / "b.yml").write_text(MINIMAL.replace("name: demo", "name: other"))
    code, out, _ = run("validate", str(d))
    assert code == 0
    assert out.splitlines() == [f"{d / 'a.yaml'}: ok (llama-3.1-8b, 8 GPUs)", f"{d / 'b.yml'}: ok (llama-3.1-8b, 8 GPUs)"]


def test_config_path(run, write, tmp_path):
    cfg = tmp_path / "hf" / "config.json"
    cfg.parent.mkdir()
    cfg.write_text('{"model_type": "falcon", "num_hidden_layers": 2}')
    p = write(MINIMAL.replace("id: meta-llama/Llama-3.1-8B-Instruct", "id: x/y\n  configPath: hf/config.json"))
    code, _, err = run("validate", str(p))
    assert code == 2
    assert err.splitlines()[0] == (
        f"{p}:7:15: model.configPath: model_type 'falcon' is not one parc reads (llama, mistral, mixtral, qwen2, qwen3, "
        "qwen3_moe, deepseek_v3, gpt_oss); set model.architecture to a catalog entry with the same shapes instead")
