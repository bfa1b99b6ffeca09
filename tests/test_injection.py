"""Injection: hostile strings in every string field that reaches an output. Each is either
rejected with a located reason, or every generated file parses, the string arrives
byte-for-byte as one value / one argv element, and nothing else runs."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from ruamel.yaml import YAML

from conftest import ROOT
from parc.cli import main

STUBS = ROOT / "tests" / "stubs"
ENGINE_NAMES = ("vllm", "trtllm-serve", "text-generation-launcher", "ray", "trtllm-llmapi-launch", "sglang")

HOSTILE = [
    "$(touch {canary})", "`touch {canary}`", "; touch {canary}", "' ; touch {canary}; '", '" ; touch {canary} ; "',
    "$$(touch {canary})", "${{IFS}}touch${{IFS}}{canary}", "&& touch {canary}", "| touch {canary}", "> {canary}",
    "line\nbreak", "tab\there", "nul\x00byte", "esc\x1b[31m", "# not a comment", "{{{{ 7*7 }}}}", "{{% raw %}}",
    "key: value", "- item", "&anchor", "*alias", "!!python/object:os.system", "? complex", "'", '"', "\\", "--port=1",
    "-", " leading and trailing ", "ü🙂\u202e", "x" * 4000, "$(PARC_HEAD_ADDR)", "PARC_EOF", "'PARC_EOF'",
    "m$$(HF_TOKEN)", "$(HF_TOKEN)", "$$$(HF_TOKEN)", "a$b$$c",
]
FIELDS = {
    "model.id": ("model", "id"),
    "engine.image": ("engine", "image"),
    "engine.extraArgs": ("engine", "extraArgs", 1),  # the value of a string flag
    "metadata.name": ("metadata", "name"),
    "metadata.labels.value": ("metadata", "labels", "team"),
    "deploy.kubernetes.namespace": ("deploy", "kubernetes", "namespace"),
    "deploy.kubernetes.hfTokenSecret": ("deploy", "kubernetes", "hfTokenSecret"),
    "deploy.kubernetes.modelCache.hostPath": ("deploy", "kubernetes", "modelCache", "hostPath"),
    "deploy.kubernetes.nodeSelector.value": ("deploy", "kubernetes", "nodeSelector", "pool"),
    "deploy.slurm.partition": ("deploy", "slurm", "partition"),
    "deploy.slurm.account": ("deploy", "slurm", "account"),
    "deploy.slurm.containerImage": ("deploy", "slurm", "containerImage"),
    "deploy.slurm.timeLimit": ("deploy", "slurm", "timeLimit"),
}
BASE: dict[str, Any] = {
    "apiVersion": "parc.dev/v1alpha1", "kind": "ServingSpec",
    "metadata": {"name": "inj", "labels": {"team": "t"}},
    "model": {"id": "meta-llama/Llama-3.1-8B-Instruct", "maxContextLength": 8192},
    "workload": {"inputTokens": 1000, "outputTokens": 200, "concurrency": 4},
    "cluster": {"pools": [{"name": "k8s", "gpu": "A100-SXM-80GB", "gpusPerNode": 1, "scheduler": "kubernetes"},
                          {"name": "hpc", "gpu": "A100-SXM-80GB", "gpusPerNode": 1, "scheduler": "slurm"}]},
    "engine": {"name": "vllm", "extraArgs": ["--served-model-name", "x"]},
    "deploy": {"kubernetes": {"hfTokenSecret": "hf", "modelCache": {"hostPath": "/models"},
                              "nodeSelector": {"pool": "gpu"}},
               "slurm": {"partition": "gpu", "account": "acct", "containerImage": "nvcr.io#vllm:1"}},
}


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def set_path(doc: dict, path: tuple, value: str) -> None:
    node: Any = doc
    for part in path[:-1]:
        node = node[part]
    if path[-1] == "hostPath":
        value = "/" + value
    node[path[-1]] = value


def kubelet_expand(arg: str, env: dict[str, str]) -> str:
    """The kubelet's expansion of a container arg (k8s.io/kubernetes third_party/forked/golang/
    expansion, ported): ``$$`` is a literal ``$``; ``$(NAME)`` becomes the value of a defined
    variable and stays as written otherwise; any other ``$`` is literal."""
    out, i = [], 0
    while i < len(arg):
        if arg[i] == "$" and i + 1 < len(arg):
            nxt = arg[i + 1]
            if nxt == "$":
                out.append("$")
                i += 2
                continue
            if nxt == "(":
                end = arg.find(")", i + 2)
                if end != -1:
                    name = arg[i + 2:end]
                    out.append(env[name] if name in env else arg[i:end + 1])
                    i = end + 1
                    continue
        out.append(arg[i])
        i += 1
    return "".join(out)


def strings_in(obj: Any) -> list[str]:
    if isinstance(obj, str):
        return [obj]
    if isinstance(obj, dict):
        return [s for k, v in obj.items() for s in strings_in(k) + strings_in(v)]
    if isinstance(obj, list):
        return [s for v in obj for s in strings_in(v)]
    return []


def run_script(script: Path, tmp: Path, log: Path) -> None:
    bin_dir = tmp / "bin"
    if not bin_dir.exists():
        bin_dir.mkdir()
        for n in ENGINE_NAMES:
            (bin_dir / n).symlink_to(STUBS / "engine")
        for n in ("srun", "scontrol", "curl"):
            (bin_dir / n).symlink_to(STUBS / "slurm" / n)
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "PARC_STUB_LOG": str(log),
           "PARC_STUB_SERVE_SECONDS": "0", "PARC_HEAD_ADDR": "127.0.0.1", "SLURM_JOB_NODELIST": "localhost",
           "SLURM_JOB_ID": "1", "SLURM_SUBMIT_DIR": str(tmp), "PARC_HEALTH_INTERVAL": "0"}
    r = subprocess.run(["bash", str(script)], env=env, cwd=tmp, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr


CASES = [(f, h) for f in FIELDS for h in HOSTILE]
#: fields whose value reaches a command line: their scripts are run with stub programs
RUN_FIELDS = ("model.id", "engine.extraArgs", "deploy.slurm.containerImage")


@pytest.mark.parametrize("field, hostile", CASES, ids=[f"{f}-{i}" for f in FIELDS for i in range(len(HOSTILE))])
def test_hostile_string(field, hostile, tmp_path):
    canary = tmp_path / "PWNED"
    value = hostile.format(canary=canary)
    doc = json.loads(json.dumps(BASE))
    doc["deploy"]["port"] = free_port()  # the stub engines bind it: never a fixed port
    set_path(doc, FIELDS[field], value)
    spec = tmp_path / "spec.yaml"
    spec.write_text(json.dumps(doc, ensure_ascii=False) if "\x00" not in value else json.dumps(doc))
    out = tmp_path / "out"
    result = CliRunner().invoke(main, ["compile", str(spec), "-o", str(out)], catch_exceptions=False)
    if result.exit_code != 0:
        # rejected: with a located reason naming the field, never a traceback
        assert result.exit_code in (2, 3), result.stderr
        assert "Traceback" not in result.stderr
        if result.exit_code == 2:
            first = result.stderr.splitlines()[0]
            assert first.startswith(f"{spec}:"), first
            assert ".".join(str(p) for p in FIELDS[field][:2]) in first.replace("[", ".").replace("]", ""), first
        assert not out.exists()
        return
    files = {p.relative_to(out).as_posix(): p for p in out.rglob("*") if p.is_file()}
    yaml = YAML(typ="safe")
    parsed_strings: list[str] = []
    for rel, p in files.items():
        text = p.read_text()
        if rel.endswith((".yaml", ".yml")):
            for d in yaml.load_all(text):
                parsed_strings += strings_in(d)
        elif rel.endswith(".json") or rel == ".parc-manifest":
            parsed_strings += strings_in(json.loads(text))
        elif rel.endswith((".sh", ".sbatch")):
            r = subprocess.run(["bash", "-n", str(p)], capture_output=True, text=True)
            assert r.returncode == 0, f"{rel}: {r.stderr}"
    # Kubernetes: after the kubelet's $(VAR) expansion, every container gets exactly plan.json's argv
    plan_doc = json.loads((out / "plan.json").read_text())
    for rel, p in files.items():
        if not rel.startswith("kubernetes/"):
            continue
        for d in yaml.load_all(p.read_text()):
            if not d or d.get("kind") != "Deployment":
                continue
            c = d["spec"]["template"]["spec"]["containers"][0]
            env = {e["name"]: e.get("value", "<secret>") for e in c["env"]}
            got = [kubelet_expand(a, env) for a in c["command"]]
            want = [[a.replace("$(PARC_PORT)", env["PARC_PORT"]) for a in e["argv"]] for e in plan_doc["launch"]]
            assert got in want, (got, want)
    # the string arrives whole: as one YAML/JSON value, or as the #SBATCH option it sets
    sbatch_opt = {"deploy.slurm.partition": "partition", "deploy.slurm.account": "account",
                  "deploy.slurm.timeLimit": "time"}
    if field in sbatch_opt:
        (sbatch,) = [p for rel, p in files.items() if rel.endswith(".sbatch")]
        lines = sbatch.read_text().splitlines()
        assert f"#SBATCH --{sbatch_opt[field]}={value}" in lines
    elif field == "deploy.slurm.containerImage":
        (sbatch,) = [p for rel, p in files.items() if rel.endswith(".sbatch")]
        assert value in sbatch.read_text() or repr(value) in sbatch.read_text() or "'\\''" in sbatch.read_text()
    else:
        expect = ("/" + value) if field.endswith("hostPath") else value
        assert any(expect == s or expect in s for s in parsed_strings), field
    if field not in RUN_FIELDS:
        assert not canary.exists()
        return
    # run every script with stub engines: the value reaches the engine as one argv element
    log = tmp_path / "calls.log"
    for rel, p in sorted(files.items()):
        if rel.endswith((".sh", ".sbatch")) and "worker" not in rel:
            run_script(p, tmp_path, log)
    calls = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
    if field in ("model.id", "engine.extraArgs"):
        engine_calls = [c for c in calls if c["argv"][0] == "vllm"]
        assert engine_calls
        for c in engine_calls:
            assert value in c["argv"], c["argv"]
            plan = json.loads((out / "plan.json").read_text())
            port = str(doc["deploy"]["port"])
            assert c["argv"] in [[a.replace("$(PARC_PORT)", port) for a in e["argv"]] for e in plan["launch"]]
    assert not canary.exists(), "a hostile string executed a command"


def test_summary_counts():
    """Keeps the corpus honest: every field gets every hostile string."""
    assert len(CASES) == len(FIELDS) * len(HOSTILE) >= 400
