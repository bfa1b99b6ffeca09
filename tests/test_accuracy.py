"""Cost-model fidelity: the accuracy report runs on the published corpus and the held-out
targets hold; the built-in calibration is current; users calibrate with their own results."""

from __future__ import annotations

import importlib.util
import json

from conftest import EXAMPLES, ROOT
from parc import calibrate as cal
from parc.catalog import builtin_calibration

CORPUS = ROOT / "tests" / "benchmarks" / "data" / "published.csv"


def accuracy_module():
    spec = importlib.util.spec_from_file_location("accuracy", ROOT / "tests" / "benchmarks" / "accuracy.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_report_meets_the_held_out_targets(capsys):
    import sys

    mod = accuracy_module()

    argv = sys.argv
    sys.argv = ["accuracy.py"]
    try:
        code = mod.main()
    finally:
        sys.argv = argv
    out = capsys.readouterr().out
    assert "held-out targets:" in out and ": met" in out, out
    assert code == 0


def test_no_systematic_bias_across_tp():
    mod = accuracy_module()
    _, held, _ = mod.split()
    scored = cal.score(held, builtin_calibration())
    rep = cal.report(scored, by=lambda s: s.row.shape.tp if s.row.shape.dpa == 1 else None)
    for tp in ("1", "2", "4", "8"):
        n, median, p90, bias = rep.groups[tp]
        assert n >= 100 and abs(bias) < 0.10, (tp, n, bias)


def test_builtin_calibration_is_fitted_on_this_corpus():
    prov = builtin_calibration()["provenance"]
    assert prov["results"].endswith(f"(sha256 {cal.digest(CORPUS)})"), \
        "the corpus changed: refit with `python tests/benchmarks/accuracy.py --fit`"
    mod = accuracy_module()
    assert prov["heldOut"] == ", ".join(mod.HELD_OUT)


def test_corpus_rows_carry_sources():
    import csv

    rows = list(csv.DictReader(open(CORPUS, encoding="utf-8")))
    assert len(rows) >= 300
    sources = (ROOT / "tests" / "benchmarks" / "data" / "SOURCES.md").read_text()
    for sid in {r["source_id"] for r in rows}:
        assert sid in sources, sid


def test_parc_calibrate_and_a_spec_that_uses_it(run, tmp_path):
    lines = CORPUS.read_text().splitlines()
    mine = [lines[0]] + [ln for ln in lines[1:] if ",A100-PCIE-80GB," in ln and "trtllm-perf-v0.15" in ln][:30]
    csv_path = tmp_path / "results.csv"
    csv_path.write_text("\n".join(mine) + "\n")
    code, out, err = run("calibrate", str(csv_path), "-o", str(tmp_path / "cal.yaml"))
    assert code == 0, err
    assert out.startswith(f"{tmp_path / 'cal.yaml'}: fitted on 30 rows; on the fitted rows: median throughput error")
    doc = cal.load_calibration(tmp_path / "cal.yaml")
    assert doc["provenance"]["rows"] == 30 and "ampere" in doc["compute"]
    spec = tmp_path / "spec.yaml"
    spec.write_text((EXAMPLES / "llama3.1-70b-8xa100-pcie.yaml").read_text() + "calibration: cal.yaml\n")
    code, out, err = run("plan", str(spec), "--format", "json")
    assert code == 0, err
    plan = json.loads(out)
    assert plan["calibration"]["source"] == "cal.yaml"
    assert plan["calibration"]["fittedOn"] == "30 rows from 1 sources"
    code, out, _ = run("plan", str(EXAMPLES / "llama3.1-70b-8xa100-pcie.yaml"))
    assert "predictions: built-in calibration; expected throughput error ±" in out


def test_calibrate_errors(run, tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("a,b\n1,2\n")
    code, _, err = run("calibrate", str(bad), "-o", str(tmp_path / "c.yaml"))
    assert (code, err) == (2, f"{bad}: not a results CSV: needs the columns gpu, input_tokens, model, output_tokens, "
                              "precision, tp (see the README, section Calibration)\n")
    spec = tmp_path / "spec.yaml"
    spec.write_text((EXAMPLES / "llama3.1-70b-8xa100-pcie.yaml").read_text() + "calibration: nope.yaml\n")
    code, _, err = run("validate", str(spec))
    assert code == 2
    assert f"calibration: {tmp_path / 'nope.yaml'}: no such file" in err
