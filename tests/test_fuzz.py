"""Fuzzing the front door: generated specs (valid and mutated), raw bytes and YAML-level
garbage all end in exit 0, 2 or 3 with located messages, never a traceback, in bounded
time. The number of cases per class is PARC_FUZZ_EXAMPLES (CI sets it; see .ci/run)."""

from __future__ import annotations

import copy
import json
import os
import time
from typing import Any

import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import EXAMPLES, example_specs
from parc.cli import main
from parc.loader import load_file

EXAMPLES_PER_CLASS = int(os.environ.get("PARC_FUZZ_EXAMPLES", "300"))
FUZZ = settings(max_examples=EXAMPLES_PER_CLASS, deadline=None, derandomize=True,
                suppress_health_check=list(HealthCheck))
BASES = [load_file(p).data for p in example_specs()]
COUNTS: dict[str, int] = {}


def run_cli(tmp_path, content: bytes, command: str = "validate") -> tuple[int, str]:
    p = tmp_path / "spec.yaml"
    p.write_bytes(content)
    t = time.perf_counter()
    result = CliRunner().invoke(main, [command, str(p)], catch_exceptions=True)
    elapsed = time.perf_counter() - t
    err = result.stderr
    assert result.exit_code in (0, 2, 3), (result.exit_code, err, result.exception)
    assert "Traceback" not in err and "internal error" not in err, err
    assert elapsed < 10, f"took {elapsed:.1f} s"
    if result.exit_code == 2:
        for line in err.splitlines()[:-1]:
            # every problem line starts with the file name (located); usage errors name the file too
            assert line.startswith(str(p)), line
    return result.exit_code, err


def count(kind: str) -> None:
    COUNTS[kind] = COUNTS.get(kind, 0) + 1


# -- values that stress a field
weird_scalars = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=40),
    st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=300),
    st.sampled_from(["", " ", "0", "-1", "1e309", "NaN", "~", "null", "yes", "h100", "H100-SXM-80GB", "bf16", "auto",
                     "$(reboot)", "'; rm -rf / #", "\u202e", "🙂" * 50, "a" * 5000]),
)
weird_values = st.recursive(weird_scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=12), inner, max_size=4)), max_leaves=12)


def paths(doc: Any, prefix: tuple = ()) -> list[tuple]:
    out = [prefix]
    if isinstance(doc, dict):
        for k, v in doc.items():
            out += paths(v, prefix + (k,))
    elif isinstance(doc, list):
        for i, v in enumerate(doc):
            out += paths(v, prefix + (i,))
    return out


@st.composite
def mutated_specs(draw) -> dict:
    doc = copy.deepcopy(draw(st.sampled_from(BASES)))
    for _ in range(draw(st.integers(1, 4))):
        path = draw(st.sampled_from(paths(doc)[1:]))
        parent = doc
        for part in path[:-1]:
            parent = parent[part]
        op = draw(st.sampled_from(["replace", "delete", "add", "nest"]))
        key = path[-1]
        if op == "replace":
            parent[key] = draw(weird_values)
        elif op == "delete":
            del parent[key]
        elif op == "add" and isinstance(parent, dict):
            parent[draw(st.text(min_size=1, max_size=15))] = draw(weird_values)
        elif op == "nest":
            value = parent[key]
            for _ in range(draw(st.integers(1, 80))):
                value = [value] if draw(st.booleans()) else {"x": value}
            parent[key] = value
    return doc


@FUZZ
@given(mutated_specs())
def test_mutated_specs(tmp_path_factory, doc):
    tmp = tmp_path_factory.mktemp("m")
    text = json.dumps(doc, ensure_ascii=draw_ascii(doc))
    code, _ = run_cli(tmp, text.encode("utf-8", "surrogatepass"))
    if code == 0:  # still valid after the mutation: planning must end cleanly too
        run_cli(tmp, text.encode(), "plan")
    count("mutated specs")


def draw_ascii(doc: Any) -> bool:
    return len(json.dumps(doc)) % 2 == 0  # both escaped and raw unicode forms get exercised


@FUZZ
@given(st.binary(max_size=2000))
def test_raw_bytes(tmp_path_factory, data):
    run_cli(tmp_path_factory.mktemp("b"), data)
    count("raw bytes")


YAML_PIECES = ["apiVersion: parc.dev/v1alpha1\n", "kind: ServingSpec\n", "metadata:\n", "  name: x\n", "\tname: x\n",
               "- a\n", "  - b\n", "a: &anchor [1, 2]\n", "b: *anchor\n", "c: *missing\n", "d: !!python/object:os.system x\n",
               "e: {f: [g, {h: i}]}\n", "\ufeff", "---\n", "...\n", "%YAML 1.1\n", "? complex\n: key\n", "k: 'unterminated\n",
               "k: \"\\x00\"\n", "k: |\n  block\n", "k: >-\n  folded\n", "  bad: indentation\n", "dup: 1\ndup: 2\n",
               "<<: *anchor\n", "model: {id: x}\n", "cluster: {pools: [{name: p, gpu: h100, gpusPerNode: 8}]}\n",
               "workload: {inputTokens: 1, outputTokens: 1, concurrency: 1}\n", "#comment\n", ": :\n", "[[[[\n", "{{{{\n"]


@FUZZ
@given(st.lists(st.sampled_from(YAML_PIECES), max_size=12), st.text(max_size=30))
def test_yaml_garbage(tmp_path_factory, pieces, tail):
    run_cli(tmp_path_factory.mktemp("y"), ("".join(pieces) + tail).encode("utf-8", "surrogatepass"))
    count("YAML garbage")


def test_billion_laughs(tmp_path):
    lines = ['a0: &a0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]" for i in range(1, 12)]
    t = time.perf_counter()
    code, err = run_cli(tmp_path, ("\n".join(lines) + "\n").encode())
    assert code == 2 and "alias bomb" in err
    assert time.perf_counter() - t < 5


def test_fifty_megabyte_file(tmp_path):
    p = tmp_path / "spec.yaml"
    with open(p, "wb") as fh:
        fh.write((EXAMPLES / "llama2-70b-4xa100-nvlink.yaml").read_bytes())
        fh.write(b"# " + b"x" * (50 * 1024 * 1024) + b"\n")
    result = CliRunner().invoke(main, ["validate", str(p)])
    assert result.exit_code == 2
    assert f"{p}: file is 50.0 MiB; parc reads specs of at most 1 MiB" in result.stderr


# -- every other file parc reads: config.json, calibration YAML, results CSV, the output manifest
FILE_FUZZ = settings(max_examples=max(20, EXAMPLES_PER_CLASS // 4), deadline=None, derandomize=True,
                     suppress_health_check=list(HealthCheck))
SPEC_TEXT = (EXAMPLES / "llama3.2-3b-4xa40-throughput.yaml").read_text()


def no_crash(result) -> None:  # type: ignore[no-untyped-def]
    assert result.exit_code in (0, 1, 2, 3), (result.exit_code, result.stderr, result.exception)
    assert "Traceback" not in result.stderr and "internal error" not in result.stderr, result.stderr


@FILE_FUZZ
@given(st.sampled_from(["llama-3.1-8b", "mixtral-8x7b", "deepseek-v3", "qwen3-30b-a3b", "gpt-oss-20b"]),
       st.dictionaries(st.sampled_from(["num_hidden_layers", "hidden_size", "num_attention_heads", "num_key_value_heads",
                                        "head_dim", "vocab_size", "max_position_embeddings", "intermediate_size",
                                        "model_type", "quantization_config", "num_local_experts", "num_experts",
                                        "moe_intermediate_size", "kv_lora_rank", "text_config", "torch_dtype"]),
                       weird_values, max_size=3))
def test_config_json(tmp_path_factory, key, changes):
    from parc import catalog
    from parc.catalog import hfconfig

    tmp = tmp_path_factory.mktemp("c")
    cfg = {**hfconfig.to_dict(catalog.models().get(key)), **changes}
    try:
        text = json.dumps(cfg)
    except (ValueError, TypeError):
        text = str(cfg)
    (tmp / "config.json").write_text(text)
    spec = tmp / "s.yaml"
    spec.write_text(SPEC_TEXT.replace("  id: meta-llama/Llama-3.2-3B-Instruct", "  id: my/m\n  configPath: config.json"))
    no_crash(CliRunner().invoke(main, ["plan", str(spec)], catch_exceptions=True))
    count("config.json")


@FILE_FUZZ
@given(st.dictionaries(st.sampled_from(["compute", "memory_bandwidth", "collective", "engine", "memory", "bands",
                                        "kind", "provenance"]), weird_values, max_size=3),
       st.lists(st.sampled_from(YAML_PIECES), max_size=3))
def test_calibration_yaml(tmp_path_factory, changes, garbage):
    from ruamel.yaml import YAML

    from parc.catalog import DATA_DIR

    tmp = tmp_path_factory.mktemp("k")
    doc = YAML(typ="safe").load((DATA_DIR / "calibration.yaml").read_text())
    doc.update(changes)
    import io

    buf = io.StringIO()
    try:
        YAML().dump(doc, buf)
        text = buf.getvalue()
    except Exception:  # noqa: BLE001 - a value YAML cannot represent: write garbage instead
        text = "kind: x\n"
    (tmp / "cal.yaml").write_text(text + "".join(garbage))
    spec = tmp / "s.yaml"
    spec.write_text(SPEC_TEXT + "calibration: cal.yaml\n")
    no_crash(CliRunner().invoke(main, ["plan", str(spec)], catch_exceptions=True))
    count("calibration YAML")


CSV_HEADER = ("model,gpu,tp,pp,ep,dp_attention,replicas,gpu_count,nodes,precision,kv_cache_precision,engine,"
              "input_tokens,output_tokens,concurrency,output_tokens_per_s,source_id")
CELLS = st.one_of(st.sampled_from(["", "1", "8", "0", "-1", "two", "1e309", "nan", "inf", "llama-3.1-8b",
                                   "H100-SXM-80GB", "bf16", "fp8", "true", "9000", "\"", "a,b", "\n"]),
                  st.text(max_size=8))


@FILE_FUZZ
@given(st.lists(st.lists(CELLS, min_size=0, max_size=18), min_size=1, max_size=6), st.booleans())
def test_calibrate_csv(tmp_path_factory, rows, hold_out):
    import csv as csv_mod
    import io

    tmp = tmp_path_factory.mktemp("r")
    buf = io.StringIO()
    w = csv_mod.writer(buf)
    for r in rows:
        w.writerow(r)
    (tmp / "r.csv").write_text(CSV_HEADER + "\n" + buf.getvalue())
    args = ["calibrate", str(tmp / "r.csv"), "-o", str(tmp / "c.yaml")] + (["--hold-out", "x"] if hold_out else [])
    no_crash(CliRunner().invoke(main, args, catch_exceptions=True))
    count("calibrate CSV")


@FILE_FUZZ
@given(weird_values)
def test_output_manifest(tmp_path_factory, manifest):
    tmp = tmp_path_factory.mktemp("m")
    out = tmp / "out"
    out.mkdir()
    try:
        text = json.dumps({"generatedBy": "parc", "files": manifest})
    except (ValueError, TypeError):
        text = str(manifest)
    (out / ".parc-manifest").write_text(text)
    spec = tmp / "s.yaml"
    spec.write_text(SPEC_TEXT)
    no_crash(CliRunner().invoke(main, ["compile", str(spec), "-o", str(out)], catch_exceptions=True))
    count("manifest")


@pytest.fixture(scope="module", autouse=True)
def report_counts():
    yield
    if COUNTS:
        print("\nfuzz cases per class: " + ", ".join(f"{k}: {v}" for k, v in sorted(COUNTS.items())))
