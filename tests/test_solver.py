"""The solver: the seeds' scenarios come out as the seeds reason, and the search is optimal
under the cost model (compared with brute force on random small inventories)."""

from __future__ import annotations

import itertools
import json
import math

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import EXAMPLES
from parc.errors import InfeasibleError
from parc.loader import load_text
from parc.pipeline import make_plan
from parc.resolve import resolve
from parc.solver import TPOT_WINDOW, TTFT_WINDOW, _Evaluator, enumerate_candidates, rank, solve


def groups(plan):
    return [(g["pool"], g["replicas"], g["tp"], g["pp"], g["ep"], g["dpAttention"]) for g in plan["placement"]["groups"]]


def test_seed_3b_on_4xa40_throughput_is_data_parallel():
    plan = make_plan(EXAMPLES / "llama3.2-3b-4xa40-throughput.yaml")
    assert groups(plan) == [("a40", 4, 1, 1, 1, 1)]
    alt_tp4 = [a for a in plan["alternatives"] if a["placement"]["groups"][0]["tp"] == 4]
    for a in alt_tp4:
        assert a["predicted"]["throughputTokensPerSecond"] < plan["predicted"]["throughputTokensPerSecond"]


def test_seed_70b_on_4xa100_nvlink_latency_is_tp4():
    plan = make_plan(EXAMPLES / "llama2-70b-4xa100-nvlink.yaml")
    assert groups(plan) == [("dgx-a100", 1, 4, 1, 1, 1)]
    assert plan["meetsSlo"] is True
    # weights: ~35 GB (32 GiB) per GPU, as the seed computes
    assert 31 < plan["predicted"]["memoryPerGpuGiB"]["weights"] < 33.5
    reasons = [r["reason"] for r in plan["rejected"] if r["kind"] == "memory"]
    assert any("tp=1" not in r and "needs 1" in r for r in reasons)


def test_seed_70b_pcie_throughput_prefers_two_4gpu_replicas_over_tp8(tmp_path):
    spec = EXAMPLES / "llama3.1-70b-8xa100-pcie.yaml"
    plan = make_plan(spec)
    (g,) = plan["placement"]["groups"]
    assert (g["replicas"], g["gpusPerReplica"]) == (2, 4)
    assert any("PCIe" in n for n in plan["notes"])
    text = spec.read_text()

    def pinned(tp: int) -> dict:
        p = tmp_path / f"tp{tp}.yaml"
        p.write_text(text.replace("cluster:", f"constraints:\n  tp: {tp}\n  pp: 1\ncluster:"))
        return make_plan(p)

    tp8, tp4 = pinned(8), pinned(4)
    assert groups(tp4)[0][1:4] == (2, 4, 1)
    assert tp4["predicted"]["throughputTokensPerSecond"] > 1.25 * tp8["predicted"]["throughputTokensPerSecond"]
    # published TensorRT-LLM numbers: one tp=8 replica over PCIe is no faster than one tp=4 replica
    # (A100-PCIe, Llama-3-70B: 960 vs 987 tokens/s); parc's calibrated model over-predicts tp=8
    # over PCIe (its held-out rows: +17% to +57%) and puts it within 1.6x of tp=4, so doubling the
    # GPUs of a TP group over PCIe never pays like a second replica does
    assert tp8["predicted"]["throughputTokensPerSecond"] < 1.6 * tp4["predicted"]["throughputTokensPerSecond"] / 2
    assert any("TP group of 8 over PCIe" in n for n in tp8["notes"])
    assert tp8["predicted"]["communication"]["tpAllReduceMsPerToken"] > 0


def test_seed_405b_on_two_a100_nodes_is_tp8_pp2():
    plan = make_plan(EXAMPLES / "llama3.1-405b-2x8xa100.yaml")
    assert groups(plan) == [("dgx-a100", 1, 8, 2, 1, 1)]
    assert plan["placement"]["groups"][0]["nodesPerReplica"] == 2
    assert plan["predicted"]["communication"]["ppP2pMsPerToken"] > 0
    assert [e["role"] for e in plan["launch"]] == ["head", "worker"]


def test_seed_405b_int4_does_not_fit_one_h200(run):
    code, out, err = run("plan", str(EXAMPLES / "llama3.1-405b-int4-1xh200.yaml"))
    assert code == 3
    assert out == ""
    spec = str(EXAMPLES / "llama3.1-405b-int4-1xh200.yaml")
    assert all(line.startswith(f"{spec}: ") for line in err.splitlines())  # every line names the spec
    lines = [line.removeprefix(f"{spec}: ") for line in err.splitlines()]
    assert lines[0].startswith("no placement fits: llama-3.1-405b in int4 needs ~216 GB of weights "
                               "(406B parameters at 0.531 bytes each as awq); the largest replica tried, "
                               "1 x H200-SXM-141GB (141 GB each), needs 207.2 GiB per GPU")
    assert lines[-1] == ("fix: use at least 2 GPUs of H200-SXM-141GB for one replica (more pools/nodes, interNode "
                         "for multi-node), a smaller precision, or a smaller maxContextLength")


def test_seed_8b_on_64_gpus_is_64_single_gpu_replicas():
    plan = make_plan(EXAMPLES / "llama3-8b-64gpus.yaml")
    assert groups(plan) == [("h100-fleet", 64, 1, 1, 1, 1)]
    assert plan["placement"]["gpusTotal"] == 64


def test_seed_mixtral_considers_expert_parallelism():
    plan = make_plan(EXAMPLES / "mixtral-8x7b-8xh100.yaml", top=10)
    shapes = [plan["placement"]] + [a["placement"] for a in plan["alternatives"]]
    with_ep = [s for s in shapes if s["groups"][0]["ep"] > 1]
    assert with_ep, "expert parallelism must be among the placements considered"
    eps = [p for p in [plan] + plan["alternatives"] if p["placement"]["groups"][0]["ep"] > 1]
    comm = [(p["placement"]["groups"][0]["dpAttention"], p["predicted"]["communication"]) for p in eps]
    # attention-DP ranks dispatch tokens to the experts' GPUs; EP inside one TP group needs no
    # dispatch (every rank holds every token; the MLP all-reduce combines the experts)
    assert all(c["epAllToAllMsPerToken"] > 0 for dpa, c in comm if dpa > 1)
    assert all(c["epAllToAllMsPerToken"] == 0 and c["tpAllReduceMsPerToken"] > 0 for dpa, c in comm if dpa == 1)
    assert any(dpa > 1 for dpa, _ in comm)


def test_heterogeneous_inventory_serves_from_both_pools(tmp_path, run):
    p = tmp_path / "het.yaml"
    p.write_text("""
apiVersion: parc.dev/v1alpha1
kind: ServingSpec
metadata: {name: het}
model: {id: meta-llama/Llama-3.1-70B-Instruct, maxContextLength: 8192}
workload: {inputTokens: 2000, outputTokens: 500}
slo: {objective: throughput, tpotMs: 100}
cluster:
  pools:
    - {name: h100, gpu: H100-SXM-80GB, nodes: 2, gpusPerNode: 8, interNode: infiniband}
    - {name: a100, gpu: A100-SXM-80GB, nodes: 4, gpusPerNode: 8, interNode: infiniband}
""")
    plan = make_plan(p)
    pools = {g["pool"] for g in plan["placement"]["groups"]}
    assert pools == {"h100", "a100"}
    assert plan["placement"]["gpusTotal"] == 48


def test_constraints_pin_and_cap(tmp_path):
    text = (EXAMPLES / "llama3-8b-64gpus.yaml").read_text()
    p = tmp_path / "c.yaml"
    p.write_text(text.replace("cluster:", "constraints:\n  tp: 8\n  maxGpus: 16\ncluster:"))
    plan = make_plan(p)
    assert groups(plan) == [("h100-fleet", 2, 8, 1, 1, 1)]
    assert plan["placement"]["gpusTotal"] == 16


def test_tgi_forced_on_a_plan_it_cannot_express(tmp_path, run):
    text = (EXAMPLES / "llama3.1-405b-2x8xa100.yaml").read_text()
    p = tmp_path / "tgi.yaml"
    p.write_text(text.replace("cluster:", "engine:\n  name: tgi\ncluster:"))
    code, _, err = run("plan", str(p))
    assert code == 3
    assert "no placement fits" in err


def test_slo_infeasible_says_closest(tmp_path, run):
    text = (EXAMPLES / "llama2-70b-4xa100-nvlink.yaml").read_text()
    p = tmp_path / "slo.yaml"
    p.write_text(text.replace("tpotMs: 60", "tpotMs: 5"))
    code, _, err = run("plan", str(p))
    assert code == 3
    assert err.startswith(f"{p}: no placement meets the SLO")
    assert "fix: relax slo.tpotMs / slo.ttftMs, lower workload.concurrency, or add faster GPUs" in err


def test_plan_json_keys_are_the_contract(run):
    code, out, _ = run("plan", str(EXAMPLES / "llama2-70b-4xa100-nvlink.yaml"), "--format", "json")
    assert code == 0
    doc = json.loads(out)
    for key in ["apiVersion", "kind", "metadata", "engine", "placement", "engineSettings", "predicted", "meetsSlo",
                "alternatives", "rejected", "launch"]:
        assert key in doc
    assert doc["kind"] == "Plan" and doc["apiVersion"] == "parc.dev/v1alpha1"
    assert set(doc["metadata"]) == {"name", "specSha256", "parcVersion"}
    g = doc["placement"]["groups"][0]
    assert set(g) == {"pool", "replicas", "tp", "pp", "ep", "dpAttention", "gpusPerReplica", "nodesPerReplica", "phase"}
    assert g["phase"] == "both"  # DESIGN.md: aggregated groups carry phase both
    assert set(doc["engineSettings"]) - {"kvCacheFreeMemoryFraction", "maxNumSeqsPerReplica", "perDataParallelRank"} \
        == {"maxNumSeqs", "maxModelLen", "maxNumBatchedTokens", "gpuMemoryUtilization",
                                          "kvCacheDtype"}
    pred = doc["predicted"]
    assert {"ttftMs", "tpotMs", "throughputTokensPerSecond", "maxConcurrencyPerReplica", "memoryPerGpuGiB",
            "communication"} <= set(pred)
    assert set(pred["memoryPerGpuGiB"]) == {"weights", "kvCache", "activations", "overhead", "total", "capacity"}
    assert set(pred["communication"]) == {"tpAllReduceMsPerToken", "ppP2pMsPerToken", "epAllToAllMsPerToken"}
    for alt in doc["alternatives"]:
        assert {"placement", "predicted", "score"} <= set(alt)
    for rej in doc["rejected"]:
        assert {"placement", "reason"} <= set(rej)
    (launch,) = doc["launch"]
    assert launch["role"] == "server" and launch["argv"][:3] == ["vllm", "serve", "meta-llama/Llama-2-70b-chat-hf"]


def test_plan_table_marks_the_chosen_row_and_groups_rejections(run):
    code, out, _ = run("plan", str(EXAMPLES / "mixtral-8x7b-8xh100.yaml"), "--top", "3")
    assert code == 0
    lines = out.splitlines()
    assert lines[2].split()[:6] == ["engine", "pool", "replicas", "dpAttn", "tp", "pp"]
    assert lines[3].startswith("*  ") and lines[3].split()[1] in ("vllm", "trtllm", "tgi", "sglang")
    assert sum(1 for ln in lines if ln.split()[:1] in (["vllm"], ["trtllm"], ["tgi"], ["sglang"])) <= 3
    assert any(ln.startswith("rejected (") for ln in lines)
    assert any(ln.strip().startswith("memory (") and "e.g." in ln for ln in lines)


# ----------------------------------------------------------------------------- brute force


def brute_force(res):
    """Exhaustive search over every shape and replica count of every pool (same evaluation):
    every placement that meets the SLO."""
    cands, _ = enumerate_candidates(res)
    ev = _Evaluator(res)
    objective = res.spec.slo.objective
    conc = res.spec.workload.concurrency
    max_gpus = res.spec.constraints.max_gpus
    found = []
    engines = sorted({c.engine for c in cands})
    for engine in engines:
        pools = {}
        for c in cands:
            if c.engine == engine:
                pools.setdefault(c.pool.name, []).append(c)
        options = [[None] + [(c, r) for c in cs for r in range(1, c.max_replicas + 1)] for cs in pools.values()]
        for combo in itertools.product(*options):
            chosen = [x for x in combo if x is not None]
            if not chosen:
                continue
            gpus = sum(c.shape.gpus * r for c, r in chosen)
            if max_gpus is not None and gpus > max_gpus:
                continue
            if objective == "throughput" or conc is None:
                loads = [ev.best_load(c) for c, _ in chosen]
                if any(ld is None for ld in loads):
                    continue
                sol = ev.solution([(c, r, ld) for (c, r), ld in zip(chosen, loads)])
                if conc is not None and sum(r * ld for (_, r), ld in zip(chosen, loads)) < conc:
                    continue
            else:
                load = float(math.ceil(conc / sum(r for _, r in chosen)))
                if not all(ev.ok(c, load) for c, _ in chosen):
                    continue
                sol = ev.solution([(c, r, load) for c, r in chosen])
            if sol.meets_slo:
                found.append(sol)
    return found


def primary(sol, objective):
    if objective == "throughput":
        return (-round(sol.throughput, 6),)
    if objective == "cost":
        return (sol.gpus,)
    return (round(sol.tpot_s, 12), round(sol.ttft_s, 12))


GPUS = ["H100-SXM-80GB", "A100-PCIE-80GB", "L40S-48GB", "A40-48GB", "L4-24GB"]
MODELS = ["meta-llama/Llama-3.2-3B-Instruct", "meta-llama/Llama-3.1-8B-Instruct", "mistralai/Mistral-7B-Instruct-v0.3",
          "Qwen/Qwen3-30B-A3B"]


@st.composite
def small_specs(draw):
    objective = draw(st.sampled_from(["latency", "throughput", "cost"]))
    n_pools = draw(st.integers(1, 2))
    pools = []
    for i in range(n_pools):
        per_node = draw(st.sampled_from([1, 2, 4]))
        nodes = draw(st.integers(1, 2))
        pool = {"name": f"p{i}", "gpu": draw(st.sampled_from(GPUS)), "nodes": nodes, "gpusPerNode": per_node}
        if nodes > 1 and draw(st.booleans()):
            pool["interNode"] = "infiniband"
        pools.append(pool)
    slo = {"objective": objective}
    if draw(st.booleans()):
        slo["tpotMs"] = draw(st.sampled_from([30, 60, 120]))
    if draw(st.booleans()):
        slo["ttftMs"] = draw(st.sampled_from([300, 1000, 5000]))
    workload = {"inputTokens": draw(st.sampled_from([200, 1000, 3000])), "outputTokens": draw(st.sampled_from([50, 300]))}
    if objective != "throughput" or draw(st.booleans()):
        workload["concurrency"] = draw(st.integers(1, 96))
    spec = {"apiVersion": "parc.dev/v1alpha1", "kind": "ServingSpec", "metadata": {"name": "prop"},
            "model": {"id": draw(st.sampled_from(MODELS)), "maxContextLength": 8192},
            "workload": workload, "slo": slo, "cluster": {"pools": pools}, "engine": {"name": "vllm"}}
    if objective == "throughput" and "concurrency" not in workload and draw(st.booleans()):
        spec["constraints"] = {"maxGpus": draw(st.integers(1, 8))}
    return spec


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(small_specs())
def test_solver_is_optimal_under_the_cost_model(spec):
    res = resolve(load_text(json.dumps(spec), "prop.yaml"))
    found = brute_force(res)
    if not found:
        with pytest.raises(InfeasibleError):
            solve(res)
        return
    got = solve(res).best
    objective = spec["slo"]["objective"]
    if objective == "latency":
        # the rule (solver.rank): the fewest GPUs among placements within 5% of the best TPOT
        # and, among those, within 5% of the best TTFT
        t_star = min(s.tpot_s for s in found)
        f_star = min(s.ttft_s for s in found if s.tpot_s <= t_star * (1 + TPOT_WINDOW) * (1 + 1e-12))
        expected = rank(found, objective)[0]
        assert got.tpot_s <= t_star * (1 + TPOT_WINDOW) * (1 + 1e-9), (got, expected)
        assert got.ttft_s <= f_star * (1 + TTFT_WINDOW) * (1 + 1e-9), (got, expected)
        assert got.gpus <= expected.gpus, (got, expected)
        return
    expected = min(found, key=lambda s: primary(s, objective))
    assert primary(got, objective) == pytest.approx(primary(expected, objective), rel=1e-9), (got, expected)
