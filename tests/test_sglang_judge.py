"""The engine is the judge, for SGLang: SGLang 0.5.23's own argument handling (what
``sglang serve`` runs before it starts a process: ``prepare_server_args`` ->
``resolve_once`` -> ``check_server_args``, then the model loader's quantization config) judges
every SGLang argv parc emits, for every example under every objective with ``engine: sglang``,
from a config.json written from the catalog shapes with the checkpoint's quantization_config,
on a host that answers SGLang's device queries as the plan's GPU (tests/engines/sglang_judge.py).

SGLang runs in its own venv (``bash tests/engines/setup.sh``), as one subprocess fed every case
at once; the harness runs a child per distinct GPU (SGLang caches its device probes at import).
Negative controls prove the judge rejects what it should.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import ROOT, objective_variants, run_harness, substitute, venv_python
from parc import engines
from parc import plan as plan_stage
from parc.catalog import hfconfig
from parc.errors import InfeasibleError, SpecError
from parc.resolve import load_and_resolve
from parc.solver import solve

HARNESS = ROOT / "tests" / "engines" / "sglang_judge.py"
#: compute capability the judge's host reports for a GPU architecture (torch reports gfx942 as
#: 9.4 and gfx950 as 9.5 on ROCm)
CAPABILITY = {"volta": (7, 0), "ampere": (8, 0), "ada": (8, 9), "hopper": (9, 0), "blackwell": (10, 0),
              "cdna2": (9, 0), "cdna3": (9, 4), "cdna4": (9, 5)}
GCN = {"cdna2": "gfx90a", "cdna3": "gfx942", "cdna4": "gfx950"}
VALUES = {engines.HEAD_ADDR: "10.0.0.1", engines.NODE_RANK: "1", engines.PORT: "8000", engines.KV_PORT: "9000",
          engines.NODE_ADDR: "10.0.0.2"}


def judge_python() -> Path:
    return venv_python("PARC_SGLANG_PYTHON", ".venv-sglang", "SGLang")


def run_judge(cases: list[dict]) -> list[dict]:
    return run_harness(judge_python(), HARNESS, cases, 900)


def _substitute(argv: tuple[str, ...]) -> list[str]:
    return substitute(argv, VALUES)


def device(gpu, gpus_per_node: int) -> dict:
    d = {"vendor": gpu.vendor, "capability": list(CAPABILITY[gpu.architecture]), "name": gpu.name,
         "memory": int(gpu.memory_bytes), "count": gpus_per_node}
    if gpu.vendor == "amd":
        d["gcn_arch"] = GCN.get(gpu.architecture, "gfx942")
    return d


def variants(tmp: Path) -> list[Path]:
    """Every example under every objective with engine sglang (a concurrency of 64 where the
    example has none); examples of another engine's own features keep their other settings."""
    return objective_variants(tmp, "sglang", drop=("extraArgs", "version"))  # another engine's flags, release


def cases_for(spec: Path, tmp: Path, skipped: list[str]) -> list[dict]:
    try:
        res = load_and_resolve(spec)
        plan = plan_stage.build(res, solve(res))
    except (InfeasibleError, SpecError) as exc:  # what sglang cannot express, with parc's reason
        skipped.append(f"{spec.stem}: {str(exc).splitlines()[0][:200]}")
        return []
    cfg_dir = tmp / f"config-{res.model.key}-{res.checkpoint.format}"
    cfg_dir.mkdir(exist_ok=True)
    (cfg_dir / "config.json").write_text(json.dumps(hfconfig.to_dict(res.model, res.checkpoint)))
    out = []
    for g in plan.groups:
        for p in g.processes:
            if p.argv[:2] != ("sglang", "serve"):
                continue
            s = g.settings
            out.append({"argv": _substitute(p.argv), "config_dir": str(cfg_dir),
                        "device": device(g.pool.gpu, g.pool.gpus_per_node),
                        "expect": {"tp": g.shape.tp * g.shape.dpa, "pp": g.shape.pp, "attnDp": g.shape.dpa,
                                   "ep": g.shape.ep, "maxRunningRequests": s.max_num_seqs * g.shape.dpa,
                                   "chunkedPrefillSize": s.max_num_batched_tokens, "contextLength": s.max_model_len,
                                   "nnodes": g.nodes_per_replica,
                                   "quantized": res.checkpoint.format not in ("bf16", "fp16"),
                                   "disaggregationMode": g.phase if g.phase != "both" else "null"},
                        "name": f"{spec.stem} {g.pool.name} {g.phase} {p.role}"})
    return out


@pytest.fixture(scope="module")
def verdicts(tmp_path_factory):
    judge_python()
    tmp = tmp_path_factory.mktemp("sglang-judge")
    skipped: list[str] = []
    cases = [c for spec in variants(tmp) for c in cases_for(spec, tmp, skipped)]
    results = run_judge([{k: v for k, v in c.items() if k not in ("expect", "name")} for c in cases])
    return cases, results, skipped


def test_every_sglang_argv_parc_emits_is_accepted_by_sglang(verdicts):
    cases, results, skipped = verdicts
    assert len(cases) >= 30, skipped
    bad = [f"{c['name']}: {r['error']}\n  {' '.join(c['argv'])}" for c, r in zip(cases, results) if not r["ok"]]
    assert not bad, "\n".join(bad)


def test_sglang_resolves_the_planned_layout_and_settings(verdicts):
    """SGLang's own resolution gives back parc's layout and per-rank settings: tp-size is
    tp x dpAttention, attn-dp-size dpAttention; SGLang divides --chunked-prefill-size by the
    attention-DP ranks itself, so the resolved chunk is parc's per-rank budget."""
    cases, results, _ = verdicts
    for c, r in zip(cases, results):
        got, want = r["config"], c["expect"]
        assert (got["tp"], got["pp"], got["attnDp"], got["ep"]) == \
            (want["tp"], want["pp"], want["attnDp"], want["ep"]), c["name"]
        assert got["dp"] == 1, c["name"]
        assert got["maxRunningRequests"] == want["maxRunningRequests"], c["name"]
        assert got["chunkedPrefillSize"] == want["chunkedPrefillSize"], c["name"]
        assert got["contextLength"] == want["contextLength"], c["name"]
        assert got["nnodes"] == want["nnodes"], c["name"]
        assert (got["quantization"] is not None) == want["quantized"], c["name"]
        # a prefill or decode instance of a disaggregated plan: SGLang resolved its role and backend
        assert got["disaggregationMode"] == want["disaggregationMode"], c["name"]
        if want["disaggregationMode"] != "null":
            assert got["transferBackend"] == "mooncake", c["name"]


def test_what_sglang_cannot_express_is_rejected_by_parc_with_a_reason(verdicts):
    _, _, skipped = verdicts
    for line in skipped:
        assert "SGLang" in line or "sglang" in line or "no placement" in line.lower(), line


R1 = """\
apiVersion: parc.dev/v1alpha1
kind: ServingSpec
metadata: {name: r1}
model: {id: deepseek-ai/DeepSeek-R1, maxContextLength: 8192}
workload: {inputTokens: 1000, outputTokens: 200, concurrency: 64}
cluster:
  pools: [{name: p, gpu: H200-SXM-141GB, gpusPerNode: 8}]
engine: {name: sglang}
"""

LAUNCH = ["sglang", "serve", "--model-path", "deepseek-ai/DeepSeek-R1", "--port", "8000"]
H200 = {"vendor": "nvidia", "capability": [9, 0], "name": "NVIDIA H200", "memory": 141 * 10**9, "count": 8}
T4 = {"vendor": "nvidia", "capability": [7, 5], "name": "Tesla T4", "memory": 16 * 10**9, "count": 8}


def test_negative_controls_sglang_rejects_bad_argv(tmp_path):
    """The judge can fail: SGLang itself rejects argv that breaks its rules, and accepts the
    documented DeepSeek layouts and disaggregated instances."""
    spec = tmp_path / "r1.yaml"
    spec.write_text(R1)
    res = load_and_resolve(spec)
    cfg = tmp_path / "r1"
    cfg.mkdir()
    (cfg / "config.json").write_text(json.dumps(hfconfig.to_dict(res.model, res.checkpoint)))
    c = str(cfg)
    cases = [
        # attention DP must divide the TP group (parallel_hook.py handle_data_parallelism)
        {"argv": LAUNCH + ["--tp-size", "8", "--attn-dp-size", "3"], "config_dir": c, "device": H200},
        # not a flag of 0.5.23 (argparse)
        {"argv": LAUNCH + ["--tensor-parallel-size", "8", "--enable-expert-parallel"], "config_dir": c, "device": H200},
        # data-parallel replicas never span nodes (validation_hook.py check_server_args)
        {"argv": LAUNCH + ["--tp-size", "8", "--dp-size", "2", "--nnodes", "2", "--node-rank", "0",
                           "--dist-init-addr", "10.0.0.1:20000"], "config_dir": c, "device": H200},
        # tp x pp must divide over the nodes
        {"argv": LAUNCH + ["--tp-size", "3", "--nnodes", "2", "--node-rank", "0",
                           "--dist-init-addr", "10.0.0.1:20000"], "config_dir": c, "device": H200},
        # FP8 below the method's minimum capability (model_loader/loader.py)
        {"argv": LAUNCH + ["--tp-size", "8"], "config_dir": c, "device": T4},
        # the documented layouts and a disaggregated pair are accepted
        {"argv": LAUNCH + ["--tp-size", "8", "--attn-dp-size", "8", "--ep-size", "8"], "config_dir": c,
         "device": H200},
        {"argv": LAUNCH + ["--tp-size", "8", "--attn-dp-size", "8", "--pp-size", "2", "--nnodes", "2",
                           "--node-rank", "1", "--dist-init-addr", "10.0.0.1:20000"], "config_dir": c, "device": H200},
        {"argv": LAUNCH + ["--tp-size", "8", "--disaggregation-mode", "prefill", "--disaggregation-transfer-backend",
                           "mooncake", "--disaggregation-bootstrap-port", "9000"], "config_dir": c, "device": H200},
        {"argv": LAUNCH + ["--tp-size", "8", "--disaggregation-mode", "decode", "--disaggregation-transfer-backend",
                           "nixl"], "config_dir": c, "device": H200},
    ]
    r = run_judge(cases)
    assert not r[0]["ok"] and "AssertionError" in r[0]["error"], r[0]
    assert not r[1]["ok"] and "unrecognized arguments: --enable-expert-parallel" in r[1]["error"], r[1]
    assert not r[2]["ok"] and "multi-node data-parallel replicas are not supported" in r[2]["error"], r[2]
    assert not r[3]["ok"] and "tp_size must be divisible by number of nodes" in r[3]["error"], r[3]
    assert not r[4]["ok"] and "Minimum capability: 80" in r[4]["error"], r[4]
    for ok in r[5:]:
        assert ok["ok"], ok["error"]
    assert (r[5]["config"]["attnDp"], r[5]["config"]["ep"], r[5]["config"]["chunkedPrefillSize"]) == (8, 8, 1024)
    assert r[6]["config"]["pp"] == 2 and r[6]["config"]["nodeRank"] == 1
    assert r[7]["config"]["disaggregationMode"] == "prefill" and r[8]["config"]["transferBackend"] == "nixl"
