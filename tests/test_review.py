"""Reviewing a plan: PLAN.md (= `parc plan --format markdown`), `--format csv`, `--compare`,
`--set`, cost per hour and the cost objective, escaping of spec strings, and the Mermaid
diagram checked by the real Mermaid parser (tests/mermaid, installed by `npm ci`)."""

from __future__ import annotations

import csv
import io
import json
import re
import shutil
import subprocess

import pytest

from conftest import EXAMPLES, MINIMAL, ROOT, skip_or_fail
from parc import costmodel as cm
from parc import review
from parc.pipeline import compare, plan_for
from parc.targets import Inputs, build

PCIE = EXAMPLES / "llama3.1-70b-8xa100-pcie.yaml"
HETERO = EXAMPLES / "llama3.1-70b-h100-a100-hetero.yaml"
COST = EXAMPLES / "llama3.1-8b-cost-h100-l40s.yaml"
GOLDEN = ROOT / "tests" / "golden"
MERMAID = ROOT / "tests" / "mermaid"
HOSTILE = 'evil"]; click `x` |a| <script>alert(1)</script> *b* _c_ [l](u) @team #1 \\ & end\nnext'


def mermaid_block(text: str) -> str:
    (block,) = re.findall(r"^```mermaid\n(.*?)^```$", text, re.S | re.M)
    return block


def section(text: str, title: str) -> str:
    return text.split(f"\n## {title}")[1].split("\n## ")[0]


# ----------------------------------------------------------------------------- PLAN.md


def test_plan_md_states_the_numbers_of_plan_json():
    plan = plan_for(HETERO)
    doc, text = plan.document, review.markdown(plan)
    pred, pl = doc["predicted"], doc["placement"]
    assert text.startswith("# Plan: llama31-70b-mixed\n")
    assert (f"objective **throughput**, engine vllm {doc['engineVersion']}, {pl['gpusTotal']} GPUs, "
            f"{pred['costPerHour']:.2f} per hour, {pred['costPerMillionOutputTokens']:.2f} per million output tokens."
            in text)
    placement = section(text, "Placement")
    for g, p, s in zip(pl["groups"], pred["groups"], doc["groupEngineSettings"]):
        row = (f"| {g['pool']} | {g['replicas']} | {g['dpAttention']} | {g['tp']} | {g['pp']} | {g['ep']} | "
               f"{g['gpusPerReplica']} | {g['nodesPerReplica']} | {p['concurrencyPerReplica']:g} | "
               f"{s['maxNumSeqsPerReplica']} |")
        assert row in placement
    predictions = section(text, "Predictions")
    per_gpu = pred["throughputTokensPerSecond"] / pl["gpusTotal"]
    assert (f"| **deployment** | {pred['ttftMs']:.0f} | {pred['tpotMs']:.1f} | {pred['throughputTokensPerSecond']:.0f} "
            f"| {per_gpu:.1f} | {pl['gpusTotal']} | {pred['costPerHour']:.2f} |") in predictions
    band = doc["calibration"]["errorBand"]
    if band["fewMeasurements"]:  # a thin class states only its widened bound
        assert f"expected throughput error up to ±{band['throughputP90Ape'] * 100:.0f}% (90th percentile)" in predictions
    else:
        assert (f"expected throughput error ±{band['throughputMedianApe'] * 100:.0f}% median, "
                f"±{band['throughputP90Ape'] * 100:.0f}% at the 90th percentile") in predictions
    assert review.md(band["scope"]) in predictions
    mem = pred["groups"][1]["memoryPerGpuGiB"]
    assert f"| a100 | {mem['weights']:.1f} | {mem['kvCache']:.1f} |" in predictions
    alts = section(text, "Alternatives")
    assert len([ln for ln in alts.splitlines() if re.match(r"\| \d+ \|", ln)]) == len(doc["alternatives"])
    a1 = doc["alternatives"][0]
    gap = (a1["predicted"]["throughputTokensPerSecond"] / pred["throughputTokensPerSecond"] - 1) * 100
    assert f"| tok/s {gap:+.1f}% |" in alts
    assert f"## Rejected ({len(doc['rejected'])})" in text
    kinds = {r["kind"] for r in doc["rejected"]}
    rej = section(text, f"Rejected ({len(doc['rejected'])})")
    for kind in kinds:
        n = sum(1 for r in doc["rejected"] if r["kind"] == kind)
        assert f"| {kind} | {n} |" in rej
    assert len([ln for ln in section(text, "Why").splitlines() if ln.startswith("- ")]) == len(doc["notes"])


def test_plan_md_of_the_pcie_seed_shows_the_replicas_and_pp_links():
    text = review.markdown(plan_for(PCIE))
    assert "| pcie-box | 2 | 1 | 1 | 4 | 1 | 4 | 1 |" in text
    block = mermaid_block(text)
    assert 'subgraph g0r ["replica x 2: vllm tp=1 pp=4' in block
    assert block.count("PP p2p: PCIe Gen4 31.5 GB/s per direction") == 3
    assert "cost/h" not in text  # unpriced


def test_markdown_format_is_plan_md_and_compile_writes_it(run, tmp_path):
    code, out, err = run("plan", str(HETERO), "--format", "markdown")
    assert code == 0, err
    assert run("compile", str(HETERO), "-o", str(tmp_path / "o"))[0] == 0
    assert (tmp_path / "o" / "PLAN.md").read_text() == out
    assert (GOLDEN / HETERO.stem / "PLAN.md").read_text() == out


def test_every_golden_tree_has_plan_md():
    for spec in sorted(EXAMPLES.glob("*.yaml")):
        if "int4-1xh200" in spec.name:
            continue
        assert (GOLDEN / spec.stem / "PLAN.md").is_file(), spec.stem


# ----------------------------------------------------------------------------- CSV


def test_csv_rows_match_plan_json(run):
    code, out, _ = run("plan", str(HETERO), "--format", "csv")
    assert code == 0
    doc = json.loads(run("plan", str(HETERO), "--format", "json")[1])
    text = review.csv_text(doc)
    assert text.count("\r\n") == 2 + len(doc["alternatives"])  # RFC 4180 line ends (CliRunner shows \n)
    assert out == text.replace("\r\n", "\n")
    rows = list(csv.DictReader(io.StringIO(out)))
    assert list(rows[0]) == list(review.CSV_COLUMNS)
    assert len(rows) == 1 + len(doc["alternatives"])
    chosen = rows[0]
    assert (chosen["rank"], chosen["chosen"], chosen["pools"]) == ("0", "true", "h100+a100")
    assert chosen["tp"] == "+".join(str(g["tp"]) for g in doc["placement"]["groups"])
    assert float(chosen["tokensPerSecond"]) == doc["predicted"]["throughputTokensPerSecond"]
    assert float(chosen["costPerHour"]) == doc["predicted"]["costPerHour"]
    for row, alt in zip(rows[1:], doc["alternatives"]):
        assert row["chosen"] == "false"
        assert int(row["gpus"]) == alt["placement"]["gpusTotal"]
        assert float(row["tpotMs"]) == alt["predicted"]["tpotMs"]
        assert row["meetsSlo"] == str(alt["meetsSlo"]).lower()


# ----------------------------------------------------------------------------- --compare


def test_compare_answers_why_tp4_beats_tp8_over_pcie(run):
    code, out, err = run("plan", str(PCIE), "--compare", "tp=4,pp=1", "tp=8")
    assert code == 0, err
    variants = compare(PCIE, ["tp=4,pp=1", "tp=8"])
    four, eight = (v.solution for v in variants)
    assert four is not None and eight is not None
    assert [g.replicas for g in four.groups] == [2] and four.groups[0].cand.shape.tp == 4
    assert [g.replicas for g in eight.groups] == [1] and eight.groups[0].cand.shape.tp == 8
    assert four.throughput > 1.3 * eight.throughput  # the seed: ~1.45x, all-reduces over PCIe and the sockets
    gain = (four.throughput / eight.throughput - 1) * 100
    assert (f"tp=4,pp=1 wins on throughput: {four.throughput:.0f} output tokens/s on 8 GPUs against "
            f"{eight.throughput:.0f} on 8 ({gain:+.0f}%). The cost term that differs most per token is TP all-reduce"
            in out)
    line = next(ln for ln in out.splitlines() if ln.startswith("TP all-reduce ms/token"))
    t4, t8 = variants[0].terms, variants[1].terms
    assert t4 is not None and t8 is not None
    assert line.split()[-3:] == [f"{t4.tp_all_reduce_ms:.3f}", f"{t8.tp_all_reduce_ms:.3f}",
                                 f"+{t8.tp_all_reduce_ms - t4.tp_all_reduce_ms:.3f}"]


def test_compare_shows_why_a_variant_is_infeasible(run):
    code, out, _ = run("plan", str(PCIE), "--compare", "tp=4", "tp=3")
    assert code == 0
    assert "tp=3: no placement is possible" in out and "does not divide the 64 attention heads" in out
    assert "tp=4 is the only feasible variant." in out


@pytest.mark.parametrize("args, message", [
    (["--compare", "tp=4"], "--compare needs two or more variants"),
    (["--compare", "tp=4", "size=8"], "--compare size=8: unknown key 'size'"),
    (["--compare", "tp=4", "pool=nope"], "--compare pool=nope: no pool 'nope'; the spec's pools are pcie-box"),
    (["tp=4"], "unexpected argument 'tp=4'"),
])
def test_compare_usage_errors_exit_2(run, args, message):
    code, _, err = run("plan", str(PCIE), *args)
    assert code == 2 and message in err


@pytest.mark.parametrize("spec", [PCIE, HETERO, EXAMPLES / "deepseek-r1-fp8-2x8xh100-ib.yaml",
                                  EXAMPLES / "llama3.1-405b-2x8xa100.yaml"], ids=lambda p: p.stem)
def test_cost_terms_add_up_to_tpot(spec):
    from parc.resolve import load_and_resolve
    from parc.solver import solve

    res = load_and_resolve(spec)
    for g in solve(res, top=0).best.groups:
        t = cm.step_terms(cm.prepare(g.cand.ctx, g.cand.shape, g.timing.batched_tokens), g.load)
        assert t.tpot_ms == pytest.approx(g.timing.tpot_s * 1e3, rel=1e-9)
        assert t.bound_ms >= max(t.compute_ms, t.weight_read_ms + t.kv_read_ms) * 0.999
        assert t.tp_all_reduce_ms == pytest.approx(g.timing.comm.tp_all_reduce_ms)


# ----------------------------------------------------------------------------- --set


def test_set_overrides_fields_before_validation(run):
    doc = json.loads(run("plan", str(PCIE), "--format", "json", "--set", "constraints.tp=8")[1])
    assert {g["tp"] for g in doc["placement"]["groups"]} == {8}
    code, out, _ = run("plan", str(PCIE), "--format", "json", "--set", "cluster.pools[0].costPerGpuHour=2.5",
                       "--set", "slo.objective=cost", "--set", "workload.concurrency=32")
    doc = json.loads(out)
    assert code == 0 and doc["objective"] == "cost"
    assert doc["predicted"]["costPerHour"] == doc["placement"]["gpusTotal"] * 2.5


@pytest.mark.parametrize("arg, message", [
    ("constraints.tp=x", "--set constraints.tp=x: constraints.tp: expected a positive integer or a list of them, "
                         "got the string 'x'"),
    ("cluster.pools[0].costPerGpuHour=-1", "--set cluster.pools[0].costPerGpuHour=-1: "
                                           "cluster.pools[0].costPerGpuHour: must be > 0"),
    ("cluster.pools[3].gpu=H100", "--set cluster.pools[3].gpu=H100: cluster.pools has 1 items; [3] is out of range"),
    ("model.id.x=1", "--set model.id.x=1: model.id is not a mapping"),
    ("constraints.tpp=4", "constraints.tpp: unknown field 'tpp'"),
    ("slo.objective=[", "--set slo.objective=[: the value is not a YAML value"),
    ("constraints.tp", "--set constraints.tp: expected PATH=VALUE"),
    ("a b=1", "--set a b=1: 'a b' in 'a b' is not a field name or [index]"),
])
def test_set_errors_name_the_argument_and_field(run, arg, message):
    code, _, err = run("plan", str(PCIE), "--set", arg)
    assert code == 2 and message in err, err


def test_set_of_an_unknown_field_is_located_at_the_set():
    from parc.errors import SpecError
    from parc.pipeline import parse_set, resolve_with

    with pytest.raises(SpecError) as e:
        resolve_with(PCIE, [parse_set("constraints.tpp=4")])
    (p,) = e.value.problems
    assert str(p.location) == "--set constraints.tpp=4"


# ----------------------------------------------------------------------------- cost


def test_cost_objective_takes_the_cheaper_placement_per_hour_not_the_fewest_gpus(run):
    plan = plan_for(COST)
    doc = plan.document
    (g,) = doc["placement"]["groups"]
    gpus = doc["placement"]["gpusTotal"]
    assert g["pool"] == "l40s" and gpus > 1  # more GPUs than the one H100 below, and cheaper
    pred = doc["predicted"]
    assert pred["costPerHour"] == gpus * 1.0
    # both printed numbers are rounded (throughput to 0.1 token/s, the cost to 4 decimals)
    assert pred["costPerMillionOutputTokens"] == pytest.approx(
        gpus * 1.0 / (pred["throughputTokensPerSecond"] * 3600) * 1e6, abs=1e-4)
    h100 = [a for a in doc["alternatives"] if a["placement"]["groups"][0]["pool"] == "h100"]
    fewest = min(h100, key=lambda a: a["placement"]["gpusTotal"])
    assert fewest["placement"]["gpusTotal"] == 1 and fewest["meetsSlo"]
    assert fewest["predicted"]["costPerHour"] == 4.0 > pred["costPerHour"]
    # the same pools unpriced: fewest GPUs wins
    code, out, _ = run("plan", str(COST), "--format", "json", "--set", "cluster.pools[0].costPerGpuHour=null",
                       "--set", "cluster.pools[1].costPerGpuHour=null")
    unpriced = json.loads(out)
    assert code == 0 and unpriced["placement"]["gpusTotal"] == 1
    assert "costPerHour" not in unpriced["predicted"]


def test_cost_objective_needs_every_pool_priced(run):
    code, _, err = run("plan", str(COST), "--set", "cluster.pools[1].costPerGpuHour=null")
    assert code == 2
    assert ("cluster.pools[1].costPerGpuHour: required with slo.objective cost because pool 'h100' is priced" in err)


def test_table_splits_dp_into_replicas_and_dp_attention_and_shows_cost(run):
    code, out, _ = run("plan", str(COST))
    assert code == 0
    header = out.splitlines()[2].split()
    assert header == ["engine", "pool", "replicas", "dpAttn", "tp", "pp", "ep", "GPUs", "load", "TTFT", "ms", "TPOT", "ms",
                      "tok/s", "GiB/GPU", "cost/h", "cost/Mtok"]
    chosen = out.splitlines()[3].split()
    doc = json.loads(run("plan", str(COST), "--format", "json")[1])
    g = doc["placement"]["groups"][0]
    assert chosen[:9] == ["*", "vllm", "l40s", str(g["replicas"]), "1", str(g["tp"]), str(g["pp"]), "1",
                          str(doc["placement"]["gpusTotal"])]
    assert chosen[-2] == f"{doc['predicted']['costPerHour']:.2f}"
    assert "cost/h" not in run("plan", str(PCIE))[1]


# ----------------------------------------------------------------------------- escaping


def test_markdown_escaping_of_hostile_text():
    out = review.md(HOSTILE)
    assert "\n" not in out
    for raw in ("<script>", "`x`", "|a|", "*b*", "_c_", "[l]", "@team", " #1"):
        assert raw not in out
    assert "\\#1" in out and "\\*b\\*" in out and "\\_c\\_" in out and "\\[l\\]" in out
    assert "&lt;script&gt;" in out and "\\`x\\`" in out and "\\|a\\|" in out and "&#64;team" in out
    assert review.md("a.b-c, d (e)") == "a.b-c, d (e)"  # ordinary text stays readable


def test_mermaid_label_escaping_of_hostile_text():
    out = review.mermaid_label(HOSTILE)
    assert '"' not in out and "`" not in out and "<" not in out and "|" not in out and "\n" not in out
    assert "#quot;" in out and "#lt;script#gt;" in out and "#35;1" in out


def test_hostile_model_id_is_escaped_in_plan_md(write):
    spec = write(MINIMAL.replace("  id: meta-llama/Llama-3.1-8B-Instruct",
                                 "  id: 'org/<b>x</b>|`y`*z*@team'\n  architecture: llama-3.1-8b"))
    text = review.markdown(plan_for(spec))
    assert "Model org/&lt;b&gt;x&lt;/b&gt;\\|\\`y\\`\\*z\\*&#64;team (llama-3.1-8b" in text
    assert "<b>" not in text and "@team" not in text


def test_plan_md_is_deterministic_and_written_with_plan_json():
    from parc.resolve import load_and_resolve

    a, b = plan_for(HETERO), plan_for(HETERO)
    assert review.markdown(a) == review.markdown(b)
    arts = build(Inputs(load_and_resolve(HETERO), a), ())
    assert [x.path for x in arts] == ["PLAN.md", "plan.json"]


# ----------------------------------------------------------------------------- Mermaid


def _big_spec(write, gpus_per_node: int, nodes: int, model: str = "meta-llama/Llama-3.1-8B-Instruct",
              extra: str = "") -> str:
    text = MINIMAL.replace("  id: meta-llama/Llama-3.1-8B-Instruct", f"  id: {model}")
    text = text.replace("      gpusPerNode: 8\n", f"      gpusPerNode: {gpus_per_node}\n      nodes: {nodes}\n"
                        "      interNode: infiniband\n      scheduler: kubernetes\n")
    return write(text.replace("  concurrency: 8", "  concurrency: 4096") + extra)


def test_diagram_is_bounded_for_4096_gpus(write):
    plan = plan_for(_big_spec(write, 8, 512), sets=["slo.objective=throughput"])  # every GPU busy
    assert plan.document["placement"]["gpusTotal"] == 4096
    lines = review.diagram(plan)
    assert len(lines) < 40
    assert any("replica x " in ln for ln in lines) and any("node x " in ln for ln in lines)


def _deep_pipeline(write) -> list[str]:
    """A 70B model pinned to pp=8 over 4 nodes: more stages than the diagram draws."""
    spec = _big_spec(write, 8, 4, "meta-llama/Llama-3.1-70B-Instruct")
    plan = plan_for(spec, top=0, sets=["constraints.pp=8", "constraints.tp=4"])
    return review.diagram(plan)


def test_diagram_collapses_deep_pipelines(write):
    lines = _deep_pipeline(write)
    assert any("more stages alike" in ln for ln in lines)
    assert sum(1 for ln in lines if "PP p2p" in ln) == 3  # stage 1 -> 2 -> the stages alike -> last
    assert any("node 1 of 4" in ln for ln in lines)


def _parse(diagrams: list[str]) -> list[dict[str, object]]:
    if shutil.which("node") is None:
        skip_or_fail("node is not installed (the Mermaid parser runs on Node.js)")
    if not (MERMAID / "node_modules" / "mermaid").is_dir():
        skip_or_fail("the Mermaid parser is not installed: npm ci --prefix tests/mermaid")
    proc = subprocess.run(["node", str(MERMAID / "parse.mjs")], input=json.dumps(diagrams), capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    result: list[dict[str, object]] = json.loads(proc.stdout)
    return result


def test_every_plan_md_diagram_parses_with_mermaid(write):
    texts = {p.parent.name: mermaid_block(p.read_text()) for p in sorted(GOLDEN.glob("*/PLAN.md"))}
    assert len(texts) >= 14
    hostile = ("flowchart LR\n"
               f"  a[\"{review.mermaid_label(HOSTILE)}\"]\n"
               f"  subgraph s [\"{review.mermaid_label(HOSTILE)}\"]\n    b[\"x\"]\n  end\n"
               f"  a -->|\"{review.mermaid_label(HOSTILE)}\"| b\n"
               f"  b -.-|\"{review.mermaid_label(HOSTILE)}\"| b\n")
    big = "\n".join(review.diagram(plan_for(_big_spec(write, 8, 512)))) + "\n"
    moe = "\n".join(review.diagram(plan_for(EXAMPLES / "deepseek-r1-fp8-2x8xh100-ib.yaml"))) + "\n"
    deep = "\n".join(_deep_pipeline(write)) + "\n"
    broken = 'flowchart LR\n  a["x"] -->|"y| b\n'  # an unterminated label: the parser must reject it
    names = list(texts) + ["hostile labels", "4096 GPUs", "deepseek", "deep pipeline", "broken"]
    results = _parse(list(texts.values()) + [hostile, big, moe, deep, broken])
    for name, r in zip(names[:-1], results[:-1]):
        assert r == {"ok": True, "type": "flowchart-v2"}, (name, r)
    assert results[-1]["ok"] is False
