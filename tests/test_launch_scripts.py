"""The launch scripts, run for real with stub engines on PATH: the engine receives exactly
plan.json's argv (placeholders filled from the environment) and the plan's environment."""

from __future__ import annotations

import json
import os
import socket
import subprocess
from pathlib import Path

import pytest

from conftest import ROOT, amd_only, example_specs, with_engine
from parc.pipeline import compile_spec

STUB = ROOT / "tests" / "stubs" / "engine"
NAMES = ("vllm", "trtllm-serve", "text-generation-launcher", "ray", "trtllm-llmapi-launch", "sglang")
COMPILABLE = [p for p in example_specs() if "int4-1xh200" not in p.name]


def stub_path(tmp: Path) -> str:
    bin_dir = tmp / "bin"
    bin_dir.mkdir(exist_ok=True)
    for n in NAMES:
        link = bin_dir / n
        if not link.exists():
            link.symlink_to(STUB)
    return f"{bin_dir}:{os.environ['PATH']}"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def write(arts, out: Path) -> None:
    for a in arts:
        p = out / a.path
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(a.content)
        p.chmod(a.mode)


def expected(argv: list[str], env: dict[str, str]) -> list[str]:
    out = []
    for a in argv:
        for k, v in env.items():
            a = a.replace(f"$({k})", v)
        out.append(a)
    return out


def run_script(script: Path, tmp: Path, extra_env: dict[str, str]) -> list[dict]:
    log = tmp / f"{script.name}.log"
    env = {**os.environ, "PATH": stub_path(tmp), "PARC_STUB_LOG": str(log), "PARC_STUB_SERVE_SECONDS": "0",
           "HF_TOKEN": "hf_secret_from_the_environment", **extra_env}
    r = subprocess.run(["bash", str(script)], env=env, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    return [json.loads(line) for line in log.read_text().splitlines()]


CASES = [(s, e) for s in COMPILABLE for e in ("auto", "trtllm", "tgi", "sglang")]


@pytest.mark.parametrize("spec, engine", CASES, ids=lambda x: getattr(x, "stem", x))
def test_engine_receives_exactly_the_plan_argv(spec, engine, tmp_path):
    from parc.errors import InfeasibleError, SpecError

    p = tmp_path / "s.yaml"
    text = spec.read_text()
    if engine != "auto":
        text = with_engine(text, engine, **({"kvCachePrecision": "fp8"} if engine == "trtllm" else {}))
    p.write_text(text)
    try:
        _, arts = compile_spec(p, ("launch",))
    except (InfeasibleError, SpecError) as exc:  # the engine cannot serve this checkpoint or these GPUs
        assert engine == "tgi" or amd_only(spec.read_text()), exc
        return
    out = tmp_path / "out"
    write(arts, out)
    plan = json.loads((out / "plan.json").read_text())
    groups = plan["placement"]["groups"]
    pools = len({g["pool"] for g in groups}) > 1
    for entry in plan["launch"]:
        g = groups[entry["group"]]
        # launch/<engine>-<role>[-<pool>][-<phase>].sh (README "What parc compile writes")
        suffix = "".join(([f"-{g['pool']}"] if pools else []) + ([f"-{g['phase']}"] if g["phase"] != "both" else []))
        script = out / "launch" / f"{plan['engine']}-{entry['role']}{suffix}.sh"
        gpus = g["gpusPerReplica"]
        port = str(free_port())
        fill = {"PARC_HEAD_ADDR": "10.1.2.3", "PARC_NODE_RANK": "1", "PARC_STUB_GPUS": str(gpus),
                "PARC_STUB_PORT": port, "PARC_PORT": port, "PARC_NODE_ADDR": "10.1.2.4"}
        calls = run_script(script, tmp_path, fill)
        last = calls[-1]
        local = plan["placement"]["groups"][entry["group"]]["gpusPerReplica"] // max(
            1, plan["placement"]["groups"][entry["group"]]["nodesPerReplica"]) // plan["placement"]["groups"][entry["group"]]["tp"]
        placeholders = {"PARC_HEAD_ADDR": "10.1.2.3", "PARC_CONFIG_DIR": str(out / "launch"),
                        "PARC_DP_START_RANK": str(local), "PARC_PORT": port, "PARC_NODE_RANK": "1",
                        "PARC_KV_PORT": str(int(port) + 1000), "PARC_NODE_ADDR": "10.1.2.4"}
        want = expected(entry["argv"], placeholders)
        assert last["argv"] == want
        for k, v in entry["env"].items():
            assert last["env"][k] == expected([v], placeholders)[0]
        if entry["role"] == "head" and "--distributed-executor-backend" in entry["argv"]:
            assert calls[0]["argv"][:3] == ["ray", "start", "--head"]
        if "--extra_llm_api_options" in want:
            opts = Path(want[want.index("--extra_llm_api_options") + 1])
            assert f"dtype: \"{plan['engineSettings']['kvCacheDtype']}\"" in opts.read_text()
        assert "hf_secret_from_the_environment" not in "".join(a.content for a in arts)


def test_worker_refuses_to_start_without_the_head_address(tmp_path):
    spec = next(p for p in COMPILABLE if "405b-2x8" in p.name)
    _, arts = compile_spec(spec, ("launch",))
    out = tmp_path / "out"
    write(arts, out)
    env = {k: v for k, v in os.environ.items() if k != "PARC_HEAD_ADDR"}
    env.update(PATH=stub_path(tmp_path), PARC_STUB_LOG=str(tmp_path / "log"))
    r = subprocess.run(["bash", str(out / "launch" / "vllm-worker.sh")], env=env, capture_output=True, text=True)
    assert r.returncode != 0
    assert "PARC_HEAD_ADDR: set PARC_HEAD_ADDR to the address of the first node of the replica" in r.stderr
    assert not (tmp_path / "log").exists()
