"""The solver's shortcuts give what the plain searches they replace give, for every candidate of
every example spec, of a mixed MoE fleet and of a prefill-heavy workload: the largest load a
shape holds within the SLO (searched chunk budget by chunk budget, against one binary search
over all budgets at once; the search stops at the load beyond which prefill never drains, checked
against the predictions), the load of most throughput (probes below the SLO edge cut short by
load / TPOT at load 1, against every probe), and the ranking of candidates for the alternatives
(under cost, TPOT predicted only for the ties the alternatives reach; against the full sort)."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import Iterator

import pytest

from conftest import ROOT, example_specs
from parc import costmodel as cm
from parc.resolve import Resolved, load_and_resolve
from parc.solver import Candidate, Chunk, _Evaluator, _ranked, _replica_price, enumerate_candidates


def union_edge(ev: _Evaluator, c: Candidate) -> int:
    """The largest load some chunk budget holds: one binary search over all budgets at once."""
    if not ev._meets(c, 1):
        return 0
    lo, hi = 1, c.max_load
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if ev._meets(c, mid):
            lo = mid
        else:
            hi = mid - 1
    return lo


def every_probe(ev: _Evaluator, c: Candidate) -> float | None:
    """The load of most throughput among the SLO edge and its halvings, every one predicted."""
    lo = ev.max_ok_load(c)
    if lo == 0:
        return None
    best, best_thr = lo, ev.timing(c, lo).throughput
    probe = lo
    while probe > 1:
        probe //= 2
        thr = ev.timing(c, probe).throughput
        if thr > best_thr:
            best, best_thr = probe, thr
    return float(best)


def fleet(tmp_path: Path, objective: str = "latency") -> Path:
    """Qwen3-235B (MoE: attention DP, expert parallelism) on 8 pools of 8 GPU types (as
    tests/benchmarks/bench_plan.py generates them)."""
    sys.path.insert(0, str(ROOT / "tests" / "benchmarks"))
    from bench_plan import spec

    p = tmp_path / f"fleet-{objective}.json"
    p.write_text(json.dumps(spec("Qwen/Qwen3-235B-A22B", 8, 64, objective, 1024)))
    return p


def prefill_heavy(tmp_path: Path) -> Path:
    """Long prompts, short outputs: throughput peaks below the SLO edge on many shapes."""
    doc = {"apiVersion": "parc.dev/v1alpha1", "kind": "ServingSpec", "metadata": {"name": "prefill-heavy"},
           "model": {"id": "Qwen/Qwen3-32B", "maxContextLength": 8192},
           "workload": {"inputTokens": 2000, "outputTokens": 16}, "slo": {"objective": "throughput", "ttftMs": 5000},
           "cluster": {"pools": [{"name": "l40s", "gpu": "L40S-48GB", "nodes": 4, "gpusPerNode": 8,
                                  "interNode": "infiniband"},
                                 {"name": "h100", "gpu": "H100-SXM-80GB", "nodes": 4, "gpusPerNode": 8,
                                  "interNode": "infiniband"}]}}
    p = tmp_path / "prefill-heavy.json"
    p.write_text(json.dumps(doc))
    return p


def specs(tmp_path: Path) -> list[Path]:
    return example_specs() + [fleet(tmp_path), prefill_heavy(tmp_path)]


def resolved(path: Path) -> tuple[Resolved, list[Candidate]]:
    res = load_and_resolve(path)
    return res, enumerate_candidates(res)[0]


def chunk_budgets(tmp_path: Path) -> Iterator[tuple[Path, _Evaluator, Candidate, Chunk]]:
    """Every chunk budget of every candidate of specs(), with an evaluator of its spec."""
    for path in specs(tmp_path):
        res, cands = resolved(path)
        ev = _Evaluator(res)
        for c in cands:
            for ch in c.chunks:
                yield path, ev, c, ch


def test_the_slo_holds_up_to_a_load_and_not_beyond(tmp_path):
    """What the searches rely on: for every chunk budget of every candidate, once a load misses
    the SLO no larger load meets it (TTFT and TPOT grow with the load, also where a prompt
    starts being split into one more chunk: its last, partial chunk costs its share). Loads on
    a 6% grid up to what memory holds."""
    checked = 0
    for path, ev, c, ch in chunk_budgets(tmp_path):
        hi = min(ch.max_load, c.max_load)
        grid = sorted({max(1, round(1.06 ** i)) for i in range(400) if 1.06 ** i <= hi} | {hi})
        oks = [ev.slo_ok(c, load, ev._at(c, ch.tokens, load)) for load in grid]
        assert oks == sorted(oks, reverse=True), f"{path.name} {c.engine} {c.label} budget {ch.tokens}"
        checked += 1
    assert checked > 2000


def test_the_drain_limit_is_where_ttft_turns_infinite(tmp_path):
    """The edge search stops at cm.drain_limit (prefill demand over the chunk budget reaches 1
    beyond it, so TTFT is infinite and no target is met): checked against the predictions,
    for every chunk budget of every candidate."""
    checked = 0
    for path, ev, c, ch in chunk_budgets(tmp_path):
        p = ev.prepare(c, ch.tokens)
        n = cm.drain_limit(p)
        assert n == 0 or math.isfinite(cm.predict_prepared(p, n).ttft_s), f"{path.name} {c.label}"
        assert not math.isfinite(cm.predict_prepared(p, n + 1).ttft_s), f"{path.name} {c.label}"
        checked += 1
    assert checked > 2000


def test_slo_edge_and_best_load_match_the_plain_searches(tmp_path):
    checked = below = 0
    for path in specs(tmp_path):
        res, cands = resolved(path)
        ev, plain = _Evaluator(res), _Evaluator(res)
        for c in cands:
            assert ev.max_ok_load(c) == union_edge(plain, c), f"{path.name} {c.engine} {c.label}"
            best = every_probe(plain, c)
            assert ev.best_load(c) == best, f"{path.name} {c.engine} {c.label}"
            checked += 1
            below += best is not None and best < ev.max_ok_load(c)
    assert checked > 500 and below > 20  # the probes matter on some shapes


@pytest.mark.parametrize("objective", ["cost", "latency"])
def test_ranking_matches_the_full_sort(tmp_path, objective):
    res, cands = resolved(fleet(tmp_path, objective))
    ev = _Evaluator(res)
    if objective == "cost":
        def key(c: Candidate) -> tuple[float, ...]:
            return (_replica_price(c), c.shape.gpus, ev.timing(c, 1).tpot_s)
    else:
        def key(c: Candidate) -> tuple[float, ...]:
            return (ev.timing(c, 1).tpot_s, ev.timing(c, 1).ttft_s)
    assert list(_ranked(_Evaluator(res), cands, objective)) == sorted(cands, key=key)
