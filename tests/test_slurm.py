"""The generated SLURM batch scripts against a real SLURM (slurmctld + two slurmd on
loopback, fake GPU gres): every script passes `sbatch --test-only`; the scripts are run
for real with stub engines on PATH, and the engine receives exactly plan.json's argv."""

from __future__ import annotations

import json
import os
import socket
import sys
from pathlib import Path

import pytest

from conftest import EXAMPLES, ROOT, amd_only, example_specs, with_engine
from parc.errors import InfeasibleError, SpecError
from parc.pipeline import compile_spec
from slurm_harness import slurm_cluster  # noqa: F401

STUB = ROOT / "tests" / "stubs" / "engine"
NAMES = ("vllm", "trtllm-serve", "text-generation-launcher", "ray", "trtllm-llmapi-launch", "sglang")
COMPILABLE = [p for p in example_specs() if "int4-1xh200" not in p.name]
pytestmark = pytest.mark.slow


def free_port(offsets: tuple[int, ...] = (0,)) -> int:
    """A free port (with ``base + offset`` free for every offset) below the kernel's ephemeral
    range: srun and slurmd take ephemeral ports for their own connections while a job starts, and
    one landing on a port the job's engine is about to serve on fails it (seen once in CI)."""
    import random

    try:
        low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        low = 32768
    rng = random.Random()
    top = max(offsets)
    for _ in range(500):
        base = rng.randrange(10000, max(10001, low - top - 1))
        if all(_free(base + d) for d in offsets):
            return base
    raise RuntimeError("no free ports below the ephemeral range")


def variant(spec: Path, tmp: Path, engine: str = "auto", port: int | None = None) -> Path:
    text = spec.read_text()
    if engine != "auto":
        text = with_engine(text, engine, **({"kvCachePrecision": "fp8"} if engine == "trtllm" else {}))
    if port:
        text = text.replace("\ncluster:", f"\ndeploy:\n  port: {port}\ncluster:", 1) if "\ndeploy:" not in text \
            else text.replace("\ndeploy:", f"\ndeploy:\n  port: {port}", 1)
    p = tmp / f"{spec.stem}-{engine}.yaml"
    p.write_text(text)
    return p


def sbatches(spec: Path, out: Path) -> tuple[dict, list[Path]]:
    _, arts = compile_spec(spec, ("launch", "slurm"))
    paths = []
    for a in arts:
        p = out / a.path
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(a.content)
        p.chmod(a.mode)
        if a.path.endswith(".sbatch"):
            paths.append(p)
    return json.loads((out / "plan.json").read_text()), paths


CASES = [(s, e) for s in COMPILABLE for e in ("auto", "trtllm", "tgi", "sglang")]


@pytest.mark.parametrize("spec, engine", CASES, ids=lambda x: getattr(x, "stem", x))
def test_every_script_passes_sbatch_test_only(slurm_cluster, spec, engine, tmp_path):  # noqa: F811
    try:
        plan, scripts = sbatches(variant(spec, tmp_path, engine), tmp_path / "out")
    except (InfeasibleError, SpecError) as exc:  # the engine cannot serve this checkpoint or these GPUs
        assert engine == "tgi" or amd_only(spec.read_text()), exc
        return
    assert scripts
    for script in scripts:
        # the test cluster has two 8-GPU nodes: a request that cannot fit them is not SLURM's fault
        text = script.read_text()
        nodes = int(text.split("#SBATCH --nodes=")[1].split("\n")[0])
        gpus = int(text.split("#SBATCH --gres=gpu:")[1].split("\n")[0])
        if nodes > 2 or gpus > 8:
            continue
        r = slurm_cluster.sbatch_test_only(script)
        assert r.returncode == 0, f"{script.name}: {r.stderr}"
        assert "to start at" in r.stderr


def test_a_request_beyond_the_cluster_is_refused(slurm_cluster, tmp_path):  # noqa: F811
    plan, (script,) = sbatches(EXAMPLES / "llama3.1-405b-2x8xa100.yaml", tmp_path / "out")
    big = tmp_path / "big.sbatch"
    big.write_text(script.read_text().replace("#SBATCH --nodes=2", "#SBATCH --nodes=3"))
    assert slurm_cluster.sbatch_test_only(big).returncode != 0


RUNS = [
    ("llama2-70b-4xa100-nvlink.yaml", "auto"),
    ("llama2-70b-4xa100-nvlink.yaml", "tgi"),
    ("mixtral-8x7b-8xh100.yaml", "trtllm"),
    ("llama3.1-405b-2x8xa100.yaml", "auto"),
    ("deepseek-r1-fp8-2x8xh100-ib.yaml", "auto"),  # multi-node data parallelism: a headless second node
    ("deepseek-r1-fp8-2x8xh100-ib.yaml", "sglang"),  # one sglang serve per node, --node-rank 1 on the second
]


def _api_less(argv: list[str]) -> bool:
    """A process of a multi-node replica that serves no API: a headless vLLM data-parallel node,
    an SGLang node of rank > 0."""
    return "--headless" in argv or ("--node-rank" in argv and argv[argv.index("--node-rank") + 1] != "0")


@pytest.mark.parametrize("name, engine", RUNS, ids=lambda x: x.replace(".yaml", ""))
def test_scripts_run_and_the_engine_gets_the_plan_argv(slurm_cluster, name, engine, tmp_path):  # noqa: F811
    port = free_port()
    spec = variant(EXAMPLES / name, tmp_path, engine, port)
    text = spec.read_text()
    if "replicas" not in text:  # one replica, so the array does not bind the port twice on this one host
        spec.write_text(text.replace("cluster:", "constraints:\n  replicas: 1\ncluster:", 1) if "constraints:" not in text
                        else text)
    plan, (script,) = sbatches(spec, tmp_path / "out")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for n in NAMES:
        (bin_dir / n).symlink_to(STUB)
    log = tmp_path / "engine.log"
    g = plan["placement"]["groups"][0]
    env = {"PATH": f"{bin_dir}:{os.environ['PATH']}", "PARC_STUB_LOG": str(log), "PARC_STUB_SERVE_SECONDS": "4",
           "PARC_HEALTH_INTERVAL": "1", "PARC_STUB_GPUS": str(g["gpusPerReplica"]), "HF_TOKEN": "hf_from_env"}
    job = slurm_cluster.submit(script, env=env, cwd=tmp_path)
    state = slurm_cluster.wait(job, timeout=120)
    outputs = "".join(p.read_text() for p in sorted(tmp_path.glob("*.out")) + sorted(tmp_path.glob("*.err")))
    assert state == "COMPLETED", outputs + slurm_cluster.logs()
    assert f"is serving on http://127.0.0.1:{port}" in outputs
    calls = [json.loads(line) for line in log.read_text().splitlines()]
    entry = next(e for e in plan["launch"] if e["role"] in ("server", "head"))
    served = [c for c in calls if c["argv"][0] == entry["argv"][0] and c["argv"][:2] != ["ray", "start"]]
    (last,) = [c for c in served if ("--port" in c["argv"] or "--model-id" in c["argv"]) and not _api_less(c["argv"])]
    workers = [e for e in plan["launch"] if e["role"] == "worker" and "--headless" in e["argv"]]
    if workers:  # every other node ran its headless ranks with its own start rank
        headless = [c for c in served if "--headless" in c["argv"]]
        assert len(headless) == g["nodesPerReplica"] - 1, calls
        local = g["gpusPerReplica"] // g["nodesPerReplica"] // g["tp"]
        assert [c["argv"][c["argv"].index("--data-parallel-start-rank") + 1] for c in headless] == \
            [str(local * i) for i in range(1, g["nodesPerReplica"])]
    if any("--node-rank" in e["argv"] for e in plan["launch"]):  # every other node ran with its own rank
        ranks = [c["argv"][c["argv"].index("--node-rank") + 1] for c in served if _api_less(c["argv"])]
        assert ranks == [str(i) for i in range(1, g["nodesPerReplica"])], calls
    want = [a.replace("$(PARC_HEAD_ADDR)", "127.0.0.1").replace("$(PARC_PORT)", str(port)) for a in entry["argv"]]
    config_dir = last["env"].get("PARC_CONFIG_DIR", "")
    want = [a.replace("$(PARC_CONFIG_DIR)", config_dir) for a in want]
    assert last["argv"] == want
    for k, v in entry["env"].items():
        assert last["env"][k] == v
    # the token reaches the engine from the submitting environment; no file carries it
    assert last["env"]["HF_TOKEN"] == "hf_from_env"
    assert "hf_from_env" not in script.read_text()


def one_node(spec: Path, tmp: Path, port: int) -> Path | None:
    """The example on one node of the test cluster (8 GPUs of its own kind), scheduled by SLURM,
    listening from ``port`` up; None when its replicas span nodes (the multi-node runs above
    cover those)."""
    from ruamel.yaml import YAML

    yaml = YAML()
    doc = yaml.load(spec.read_text())
    for pool in doc["cluster"]["pools"]:
        pool["nodes"] = 1
        pool["gpusPerNode"] = min(int(pool["gpusPerNode"]), 8)
        pool["scheduler"] = "slurm"
        pool.pop("interNode", None)
        pool.pop("interNodeGbps", None)
    doc["cluster"]["pools"] = doc["cluster"]["pools"][:1]
    doc.setdefault("deploy", {})["port"] = port
    doc["targets"] = ["launch", "slurm"]
    p = tmp / f"{spec.stem}-one-node.yaml"
    with open(p, "w") as fh:
        yaml.dump(doc, fh)
    return p


def free_ports(n: int) -> int:
    """A base port with ``n`` free ports from it up (below the ephemeral range, see free_port)."""
    return free_port(tuple(range(n)))


def _free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


ONE_NODE = [s for s in COMPILABLE if "2x8" not in s.name and "4x8" not in s.name]  # the others' replicas span nodes (RUNS above)


@pytest.mark.parametrize("spec", ONE_NODE, ids=lambda p: p.stem)
def test_every_replica_a_node_holds_runs_at_once_and_scancel_stops_them(slurm_cluster, spec, tmp_path):  # noqa: F811
    """Replicas that share a node are one job of several steps: on the real slurmctld every
    planned replica of the example (on one 8-GPU node) serves at the same time, each on its own
    GPUs and port, and `scancel` stops every one."""
    import time

    base = free_ports(8)
    variant_spec = one_node(spec, tmp_path, base)
    plan, scripts = sbatches(variant_spec, tmp_path / "out")
    (g,) = plan["placement"]["groups"]
    assert g["nodesPerReplica"] == 1
    (script,) = scripts
    text = script.read_text()
    assert "--array" not in text  # one node holds every replica: one job
    per_node = int(variant_spec.read_text().split("gpusPerNode: ")[1].split()[0])
    assert ("#SBATCH --exclusive" in text) == (g["replicas"] * g["gpusPerReplica"] == per_node)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for n in NAMES:
        (bin_dir / n).symlink_to(STUB)
    log = tmp_path / "engine.log"
    env = {"PATH": f"{bin_dir}:{os.environ['PATH']}", "PARC_STUB_LOG": str(log), "PARC_STUB_SERVE_SECONDS": "300",
           "PARC_HEALTH_INTERVAL": "1"}
    job = slurm_cluster.submit(script, env=env, cwd=tmp_path)
    deadline = time.monotonic() + 120
    out = ""
    while time.monotonic() < deadline:
        out = "".join(p.read_text() for p in tmp_path.glob("*.out"))
        if out.count("is serving on") >= g["replicas"]:
            break
        assert slurm_cluster.state(job) in ("PENDING", "RUNNING", "CONFIGURING"), out + slurm_cluster.logs()
        time.sleep(0.5)
    started = [ln.split() for ln in out.splitlines() if ln.startswith("parc: replica ") and " GPUs " in ln]
    assert out.count("is serving on") == len(started) == g["replicas"], out + slurm_cluster.logs()
    ports = [ln[ln.index("port") + 1] for ln in started]
    gpus = [ln[ln.index("GPUs") + 1] for ln in started]
    assert sorted(ports) == [str(base + i) for i in range(g["replicas"])]
    ids = [d for gs in gpus for d in gs.split(",")]
    assert len(ids) == len(set(ids)) == g["replicas"] * g["gpusPerReplica"], gpus  # distinct GPUs per step
    serving = [json.loads(line) for line in log.read_text().splitlines() if '"argv"' in line]
    assert len(serving) == g["replicas"]
    slurm_cluster.cancel(job)
    assert slurm_cluster.wait(job, timeout=60) == "CANCELLED"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        stopped = [json.loads(line) for line in log.read_text().splitlines() if '"stopped"' in line]
        if len(stopped) == g["replicas"]:
            break
        time.sleep(0.5)
    assert sorted(str(s["stopped"]) for s in stopped) == sorted(ports)


DISAGG = """\
apiVersion: parc.dev/v1alpha1
kind: ServingSpec
metadata:
  name: pd
model:
  id: meta-llama/Llama-3.1-70B-Instruct
  precision: bf16
  maxContextLength: 8192
workload:
  inputTokens: 2000
  outputTokens: 200
  concurrency: 32
slo:
  objective: latency
  ttftMs: 5000
  tpotMs: 200
constraints:
  tp: {tp}
  replicas: 1
cluster:
  pools:
    - name: h100
      gpu: H100-SXM-80GB
      nodes: {nodes}
      gpusPerNode: 8
{fabric}      scheduler: slurm
engine:
  name: {engine}
  disaggregation: "on"
deploy:
  port: {port}
"""


def pd_port() -> int:
    """A router port whose instance ports (+100 prefill, +200 decode) are free too."""
    return free_port((0, 100, 200, 1200))


@pytest.mark.parametrize("engine", ["vllm", "sglang"])
@pytest.mark.parametrize("nodes", [1, 2], ids=["one-node", "two-nodes"])
def test_a_disaggregated_job_starts_both_phases_then_the_router(slurm_cluster, nodes, engine, tmp_path):  # noqa: F811
    """A disaggregated plan is one job: its prefill and decode instances start on their GPUs and
    ports (deploy.port + 100, + 200), and once both answer /health the router starts on
    deploy.port with both instances' URLs (SGLang's also the prefill bootstrap port); every
    process gets plan.json's argv."""
    port = pd_port()
    spec = tmp_path / "pd.yaml"
    fabric = "      interNode: infiniband\n" if nodes > 1 else ""
    spec.write_text(DISAGG.format(nodes=nodes, fabric=fabric, engine=engine, port=port, tp=4 * nodes))
    plan, (script,) = sbatches(spec, tmp_path / "out")
    assert [g["phase"] for g in plan["placement"]["groups"]] == ["prefill", "decode"]
    assert all(g["replicas"] == 1 for g in plan["placement"]["groups"])
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for n in set(NAMES) | {"vllm-router", "sglang"}:
        (bin_dir / n).symlink_to(STUB)
    wrapper = bin_dir / "python3"  # SGLang's router runs as `python3 -m sglang_router.launch_router`
    wrapper.write_text(f"#!/bin/sh\nif [ \"$1\" = -m ]; then PARC_STUB_AS=python3 exec {sys.executable} {STUB} \"$@\"; fi\nexec {sys.executable} \"$@\"\n")
    wrapper.chmod(0o755)
    log = tmp_path / "engine.log"
    env = {"PATH": f"{bin_dir}:{os.environ['PATH']}", "PARC_STUB_LOG": str(log), "PARC_STUB_SERVE_SECONDS": "6",
           "PARC_HEALTH_INTERVAL": "1"}
    job = slurm_cluster.submit(script, env=env, cwd=tmp_path)
    state = slurm_cluster.wait(job, timeout=120)
    outputs = "".join(p.read_text() for p in sorted(tmp_path.glob("*.out")) + sorted(tmp_path.glob("*.err")))
    assert state == "COMPLETED", outputs + slurm_cluster.logs()
    assert f"pd is serving on http://127.0.0.1:{port}" in outputs
    calls = [json.loads(line) for line in log.read_text().splitlines() if '"argv"' in line]
    first = {"vllm": "vllm", "sglang": "sglang"}[engine]
    engines_ = [c for c in calls if c["argv"][0] == first]
    routers = [c for c in calls if c["argv"][0] == plan["router"]["argv"][0]]
    assert len(engines_) == 2 and len(routers) == 1, calls
    by_port = {c["argv"][c["argv"].index("--port") + 1]: c for c in engines_}
    for group, offset in ((0, 100), (1, 200)):  # prefill, decode
        c = by_port[str(port + offset)]
        (entry,) = [e for e in plan["launch"] if e["group"] == group]
        want = [a.replace("$(PARC_PORT)", str(port + offset)).replace("$(PARC_KV_PORT)", str(port + offset + 1000))
                for a in entry["argv"]]
        assert c["argv"] == want
        if engine == "vllm":
            assert c["env"]["VLLM_NIXL_SIDE_CHANNEL_PORT"] == str(port + offset + 1000)
            assert c["env"]["VLLM_NIXL_SIDE_CHANNEL_HOST"] == "127.0.0.1"
    fill = {"PARC_PREFILL_URL_0": f"http://127.0.0.1:{port + 100}", "PARC_DECODE_URL_0": f"http://127.0.0.1:{port + 200}",
            "PARC_PREFILL_KV_PORT_0": str(port + 1100)}
    want = plan["router"]["argv"]
    for k, v in fill.items():
        want = [a.replace(f"$({k})", v) for a in want]
    assert routers[0]["argv"] == want
    # the router started after both instances answered /health
    assert calls.index(routers[0]) > max(calls.index(c) for c in engines_)
