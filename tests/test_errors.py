"""The error catalogue: every user-facing message, asserted to the letter (with its exit
code). Other modules assert the rest: test_loader (YAML), test_validate (the ten-mistakes
spec and single mistakes), test_solver (infeasible plans), test_compile (drift, foreign
files, duplicate names), test_fuzz (no tracebacks anywhere)."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from conftest import MINIMAL
from parc.cli import main


def rep(a: str, b: str):
    return lambda s: s.replace(a, b, 1)


CASES = {
 "dns-name": ("validate", rep("name: demo", "name: Demo_1")),
 "label-value": ("validate", rep("name: demo", "name: demo\n  labels: {team: 'a b'}")),
 "model-id-empty": ("validate", rep("id: meta-llama/Llama-3.1-8B-Instruct", "id: ''")),
 "reserved": ("validate", rep("id: meta-llama/Llama-3.1-8B-Instruct", "id: 'x$(PARC_HEAD_ADDR)'")),
 "control": ("validate", rep("id: meta-llama/Llama-3.1-8B-Instruct", 'id: "a\\tb"')),
 "bool-type": ("validate", rep("gpusPerNode: 8", "gpusPerNode: true")),
 "float-type": ("validate", rep("concurrency: 8", "concurrency: 8\nslo: {tpotMs: fast}")),
 "string-type": ("validate", rep("id: meta-llama/Llama-3.1-8B-Instruct", "id: 42")),
 "dict-type": ("validate", rep("workload:\n", "workload: 5\nx:\n")),
 "list-type": ("validate", rep("  pools:\n", "  pools: {a: 1}\n  x:\n")),
 "too-short": ("validate", rep("  pools:\n", "  pools: []\n  x:\n")),
 "too-long": ("validate", rep("gpusPerNode: 8", "gpusPerNode: 73")),
 "finite": ("validate", rep("concurrency: 8", "concurrency: 8\nslo: {tpotMs: .inf}")),
 "pattern-time": ("validate", lambda s: s + "deploy:\n  slurm: {timeLimit: soon}\n"),
 "pattern-version": ("validate", lambda s: s + "engine:\n  name: vllm\n  version: 'v one'\n"),
 "gt-zero": ("validate", rep("concurrency: 8", "concurrency: 0")),
 "modelcache-two": ("validate", lambda s: s + "deploy:\n  kubernetes:\n    modelCache: {pvc: a, emptyDir: true}\n"),
 "modelcache-rel": ("validate", lambda s: s + "deploy:\n  kubernetes:\n    modelCache: {hostPath: models}\n"),
 "unknown-gpu-no-hint": ("validate", rep("gpu: H100-SXM-80GB", "gpu: potato")),
 "version-no-engine": ("validate", lambda s: s + "engine:\n  version: 0.33.0\n"),
 "version-unknown": ("validate", lambda s: s + "engine:\n  name: tgi\n  version: 9.9.9\n"),
 "trtllm-amd": ("validate", lambda s: s.replace("H100-SXM-80GB", "MI300X-OAM-192GB") + "engine:\n  name: trtllm\n"),
 "gbps-no-inter": ("validate", rep("gpusPerNode: 8", "gpusPerNode: 8\n      interNodeGbps: 100")),
 "workload-gt-ctx": ("validate", rep("id: meta-llama/Llama-3.1-8B-Instruct", "id: meta-llama/Llama-3.1-8B-Instruct\n  maxContextLength: 1000")),
 "dup-targets": ("validate", lambda s: s + "targets: [launch, launch]\n"),
 "target-k8s": ("validate", lambda s: s + "targets: [helm]\n"),
 "arch-config-missing": ("validate", rep("id: meta-llama/Llama-3.1-8B-Instruct", "id: x\n  configPath: nope/config.json")),
 "arch-config-dir": ("validate", rep("id: meta-llama/Llama-3.1-8B-Instruct", "id: x\n  configPath: .")),
 "keys-not-strings": ("validate", lambda s: s + "1: x\n"),
 "trtllm-no-image-k8s": ("compile", lambda s: s.replace("gpusPerNode: 8", "gpusPerNode: 8\n      scheduler: kubernetes") + "engine:\n  name: trtllm\n  version: git-00209af1\n"),
 "slo-infeasible": ("plan", rep("concurrency: 8", "concurrency: 8\nslo: {tpotMs: 0.5}")),
 "pool-too-small-replicas": ("plan", lambda s: s + "constraints:\n  replicas: 100\n  tp: 8\n"),
}

EXPECTED = {
    'dns-name': (2, "spec.yaml:4:9: metadata.name: 'Demo_1' is not a valid name: use at most 63 lower-case letters, digits and '-', starting and ending with a letter or digit (e.g. 'demo-1')\n1 problem in 1 spec\n"),
    'label-value': (2, "spec.yaml:5:11: metadata.labels: label value 'a b' (key 'team') is not a valid Kubernetes label value (<= 63 chars of [A-Za-z0-9-_.], starting and ending alphanumeric, or empty)\n1 problem in 1 spec\n"),
    'model-id-empty': (2, 'spec.yaml:6:7: model.id: must not be empty\n1 problem in 1 spec\n'),
    'reserved': (2, "spec.yaml:6:7: model.id: 'x$(PARC_HEAD_ADDR)' contains '$(PARC_', which parc reserves for its own placeholders\n1 problem in 1 spec\n"),
    'control': (2, 'spec.yaml:6:7: model.id: contains the control character U+0009; remove it\n1 problem in 1 spec\n'),
    'bool-type': (2, 'spec.yaml:15:20: cluster.pools[0].gpusPerNode: expected an integer, got the boolean true\n1 problem in 1 spec\n'),
    'float-type': (2, "spec.yaml:11:15: slo.tpotMs: expected a number, got the string 'fast'\n1 problem in 1 spec\n"),
    'string-type': (2, 'spec.yaml:6:7: model.id: expected a string (quote it), got the number 42\n1 problem in 1 spec\n'),
    'dict-type': (2, "spec.yaml:7:11: workload: expected a mapping, got the number 5\nspec.yaml:8:1: x: unknown field 'x'; allowed here: apiVersion, calibration, cluster, constraints, deploy, engine, kind, metadata, model, slo, targets, workload\n2 problems in 1 spec\n"),
    'list-type': (2, "spec.yaml:12:10: cluster.pools: expected a list, got a mapping\nspec.yaml:13:3: cluster.x: unknown field 'x'; allowed here: pools\n2 problems in 1 spec\n"),
    'too-short': (2, "spec.yaml:12:10: cluster.pools: must not be empty\nspec.yaml:13:3: cluster.x: unknown field 'x'; allowed here: pools\n2 problems in 1 spec\n"),
    'too-long': (2, 'spec.yaml:15:20: cluster.pools[0].gpusPerNode: must be <= 72, got the number 73\n1 problem in 1 spec\n'),
    'finite': (2, 'spec.yaml:11:15: slo.tpotMs: must be a finite number, got the number inf\n1 problem in 1 spec\n'),
    'pattern-time': (2, "spec.yaml:17:22: deploy.slurm.timeLimit: the string 'soon' has the wrong form (must match ^(\\d+-)?\\d+(:\\d{2}){0,2}$|^(UNLIMITED|INFINITE)$)\n1 problem in 1 spec\n"),
    'pattern-version': (2, "spec.yaml:18:12: engine.version: the string 'v one' has the wrong form (must match ^([0-9]+(\\.[0-9]+){0,3}([.-]?[A-Za-z0-9]+)*|git-[0-9a-f]{7,40})$)\n1 problem in 1 spec\n"),
    'gt-zero': (2, 'spec.yaml:10:16: workload.concurrency: must be > 0, got the number 0\n1 problem in 1 spec\n'),
    'modelcache-two': (2, 'spec.yaml:18:17: deploy.kubernetes.modelCache: set exactly one of pvc, hostPath, emptyDir (got pvc, emptyDir)\n1 problem in 1 spec\n'),
    'modelcache-rel': (2, "spec.yaml:18:17: deploy.kubernetes.modelCache: hostPath 'models' must be an absolute path\n1 problem in 1 spec\n"),
    'unknown-gpu-no-hint': (2, "spec.yaml:14:12: cluster.pools[0].gpu: unknown GPU 'potato'; see `parc catalog gpus` for the known GPUs\n1 problem in 1 spec\n"),
    'version-no-engine': (2, 'spec.yaml:17:12: engine.version: a version needs an engine: set engine.name to vllm, trtllm or tgi\n1 problem in 1 spec\n'),
    'version-unknown': (2, 'spec.yaml:18:12: engine.version: parc has no flag table for tgi 9.9.9; known: 3.3.4, 3.3.7 (default 3.3.7)\n1 problem in 1 spec\n'),
    'trtllm-amd': (2, 'spec.yaml:17:9: engine.name: TensorRT-LLM runs on NVIDIA GPUs only and no pool has one; use engine: auto or vllm\n1 problem in 1 spec\n'),
    'gbps-no-inter': (2, 'spec.yaml:16:22: cluster.pools[0].interNodeGbps: set interNode (infiniband, roce or ethernet) when giving interNodeGbps\n1 problem in 1 spec\n'),
    'workload-gt-ctx': (2, 'spec.yaml:9:16: workload: inputTokens + outputTokens = 1200 is above the context length of 1000 tokens; shorten the workload or raise model.maxContextLength\n1 problem in 1 spec\n'),
    'dup-targets': (2, 'spec.yaml:16:10: targets: launch listed more than once\n1 problem in 1 spec\n'),
    'target-k8s': (2, "spec.yaml:16:11: targets[0]: target 'helm' needs a pool with scheduler: kubernetes; set it on a pool or remove the target\n1 problem in 1 spec\n"),
    'arch-config-missing': (2, 'spec.yaml:7:15: model.configPath: no such file: /tmp/cat/nope/config.json\n1 problem in 1 spec\n'),
    'arch-config-dir': (2, 'spec.yaml:7:15: model.configPath: /tmp/cat is a directory; point configPath at the config.json file\n1 problem in 1 spec\n'),
    'keys-not-strings': (2, 'spec.yaml:16:1: keys must be strings, got a number (1); quote it\n1 problem in 1 spec\n'),
    'trtllm-no-image-k8s': (2, 'spec.yaml: target kubernetes: parc has no official trtllm image for NVIDIA GPUs at this release; set engine.image\n'),
    'slo-infeasible': (3, 'spec.yaml: no placement meets the SLO at objective latency; the fastest, p: tp=8 pp=1 ep=1 dpAttention=1, gives TPOT 5.2 ms and TTFT 14 ms with one request\nspec.yaml: fix: relax slo.tpotMs / slo.ttftMs, lower workload.concurrency, or add faster GPUs\n'),
    'pool-too-small-replicas': (3, 'spec.yaml: no placement is possible (constraints); the first reasons:\nspec.yaml: vllm p tp=8 pp=1 ep=1 dpAttention=1: constraints.replicas [100] leaves no room: p holds at most 1 replica of 8 GPUs\nspec.yaml: trtllm p tp=8 pp=1 ep=1 dpAttention=1: constraints.replicas [100] leaves no room: p holds at most 1 replica of 8 GPUs\nspec.yaml: tgi p tp=8 pp=1 ep=1 dpAttention=1: constraints.replicas [100] leaves no room: p holds at most 1 replica of 8 GPUs\nspec.yaml: sglang p tp=8 pp=1 ep=1 dpAttention=1: constraints.replicas [100] leaves no room: p holds at most 1 replica of 8 GPUs\n'),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_message(case, tmp_path, monkeypatch):
    command, transform = CASES[case]
    monkeypatch.chdir(tmp_path)
    (tmp_path / "spec.yaml").write_text(transform(MINIMAL))
    args = [command, "spec.yaml"] + (["-o", "out"] if command == "compile" else [])
    result = CliRunner().invoke(main, args)
    code, text = EXPECTED[case]
    assert (result.exit_code, result.stderr.replace(str(tmp_path), "/tmp/cat")) == (code, text)


def test_every_case_has_an_expectation():
    assert sorted(CASES) == sorted(EXPECTED)


def test_usage_errors(run, tmp_path):
    assert run("plan", str(tmp_path)) == (2, "", f"{tmp_path}: is a directory; parc plan takes one spec file\n")
    assert run("plan", str(tmp_path / "x.yaml")) == (2, "", f"{tmp_path / 'x.yaml'}: no such file\n")
    (tmp_path / "f").write_text("")
    (tmp_path / "spec.yaml").write_text(MINIMAL)
    code, _, err = run("compile", str(tmp_path / "spec.yaml"), "-o", str(tmp_path / "f"))
    assert code == 2 and f"Invalid value for '-o' / '--output': Directory '{tmp_path / 'f'}' is a file." in err
    out = tmp_path / "out"
    (out / "launch").mkdir(parents=True)
    (out / "launch" / "vllm-server.sh").write_text("mine\n")
    code, _, err = run("compile", str(tmp_path / "spec.yaml"), "-o", str(out))
    assert (code, err) == (2, f"{out / 'launch' / 'vllm-server.sh'}: exists and was not written by parc; move it away "
                              "or delete it, parc will not overwrite it\n")
    code, _, err = run("frobnicate")
    assert code == 2 and "No such command 'frobnicate'" in err
