"""parc compile: golden output trees, determinism, --check, atomicity, generated shell
checked by bash -n and shellcheck, emitted argv checked against the engines' flag tables."""

from __future__ import annotations

import difflib
import json
import os
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

from conftest import EXAMPLES, ROOT, amd_only, example_specs, skip_or_fail, with_engine
from parc._toml import tomllib
from parc.engines import flags
from parc.pipeline import compile_spec

GOLDEN = ROOT / "tests" / "golden"
UPDATE = os.environ.get("PARC_UPDATE_GOLDEN") == "1"
COMPILABLE = [p for p in example_specs() if "int4-1xh200" not in p.name]


def tree(root: Path) -> dict[str, str]:
    return {p.relative_to(root).as_posix(): p.read_text() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("spec", COMPILABLE, ids=lambda p: p.stem)
def test_golden(spec, run, tmp_path):
    """Compile every example and compare with tests/golden/<example>/; PARC_UPDATE_GOLDEN=1 rewrites."""
    out = tmp_path / "out"
    code, _, err = run("compile", str(spec), "-o", str(out))
    assert code == 0, err
    expected_dir = GOLDEN / spec.stem
    if UPDATE:
        shutil.rmtree(expected_dir, ignore_errors=True)
        shutil.copytree(out, expected_dir)
    got, want = tree(out), tree(expected_dir)
    diffs = []
    for path in sorted(set(got) | set(want)):
        if got.get(path) != want.get(path):
            diffs += difflib.unified_diff((want.get(path) or "").splitlines(True), (got.get(path) or "").splitlines(True),
                                          f"golden/{spec.stem}/{path}", f"out/{path}")
    assert not diffs, "output differs from the golden tree (PARC_UPDATE_GOLDEN=1 to accept):\n" + "".join(diffs)


def test_example_without_placement_exits_3(run, tmp_path):
    code, _, err = run("compile", str(EXAMPLES / "llama3.1-405b-int4-1xh200.yaml"), "-o", str(tmp_path / "o"))
    assert code == 3 and "no placement fits" in err
    assert not (tmp_path / "o").exists()


def test_second_compile_is_byte_identical_and_check_passes(run, tmp_path):
    spec = EXAMPLES / "llama3.1-405b-2x8xa100.yaml"
    a, b = tmp_path / "a", tmp_path / "b"
    assert run("compile", str(spec), "-o", str(a))[0] == 0
    assert run("compile", str(spec), "-o", str(b))[0] == 0
    assert tree(a) == tree(b)
    code, out, _ = run("compile", str(spec), "-o", str(a), "--check")
    assert (code, out) == (0, f"{a}: up to date (5 files)\n")  # plan.json, PLAN.md, 2 launch, 1 sbatch


def test_check_catches_a_hand_edit_with_a_diff(run, tmp_path):
    spec = EXAMPLES / "llama3.2-3b-4xa40-throughput.yaml"
    out = tmp_path / "out"
    run("compile", str(spec), "-o", str(out))
    script = out / "slurm" / "llama32-3b-batch.sbatch"
    script.write_text(script.read_text().replace("--time=08:00:00", "--time=01:00:00"))
    code, stdout, err = run("compile", str(spec), "-o", str(out), "--check")
    assert code == 1
    assert "-#SBATCH --time=01:00:00\n+#SBATCH --time=08:00:00\n" in stdout  # diffs go to stdout
    assert err.splitlines() == [
        f"{script}: differs from what `parc compile` would write; run `parc compile` to regenerate it",
        f"{out}: 1 file differs from what `parc compile` would write"]
    script.unlink()
    code, stdout, err = run("compile", str(spec), "-o", str(out), "--check")
    assert code == 1 and "missing: slurm/llama32-3b-batch.sbatch" in stdout
    assert f"{script}: is missing; run `parc compile` to regenerate it" in err


def test_foreign_files_are_kept_and_stale_generated_files_removed(run, tmp_path):
    out = tmp_path / "out"
    run("compile", str(EXAMPLES / "llama3.1-405b-2x8xa100.yaml"), "-o", str(out))
    (out / "NOTES.md").write_text("mine\n")
    (out / "launch" / "my-wrapper.sh").write_text("echo hi\n")
    assert (out / "launch" / "vllm-head.sh").exists()
    # same name, now a single-node plan: the head/worker scripts become stale
    spec = tmp_path / "s.yaml"
    spec.write_text((EXAMPLES / "llama3.1-405b-2x8xa100.yaml").read_text().replace("precision: bf16", "precision: int4")
                    .replace("id: meta-llama/Llama-3.1-405B-Instruct", "id: hugging-quants/Meta-Llama-3.1-405B-Instruct-AWQ-INT4")
                    .replace("nodes: 2", "nodes: 1"))
    code, _, err = run("compile", str(spec), "-o", str(out))
    assert code == 0, err
    assert (out / "NOTES.md").read_text() == "mine\n"
    assert (out / "launch" / "my-wrapper.sh").read_text() == "echo hi\n"
    assert not (out / "launch" / "vllm-head.sh").exists()
    assert (out / "launch" / "vllm-server.sh").exists()


def test_failed_compile_leaves_previous_output_untouched(run, tmp_path):
    out = tmp_path / "out"
    run("compile", str(EXAMPLES / "llama3.2-3b-4xa40-throughput.yaml"), "-o", str(out))
    before = tree(out)
    bad = tmp_path / "bad.yaml"
    bad.write_text((EXAMPLES / "llama3.2-3b-4xa40-throughput.yaml").read_text().replace("gpu: A40-48GB", "gpu: A4O"))
    assert run("compile", str(bad), "-o", str(out))[0] == 2
    assert run("compile", str(EXAMPLES / "llama3.1-405b-int4-1xh200.yaml"), "-o", str(out))[0] == 3
    assert tree(out) == before
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".out.parc-new-")]


def test_permissions_are_stable(run, tmp_path):
    out = tmp_path / "out"
    old = os.umask(0o077)
    try:
        run("compile", str(EXAMPLES / "llama3.1-405b-2x8xa100.yaml"), "-o", str(out))
    finally:
        os.umask(old)
    modes = {p.relative_to(out).as_posix(): stat.S_IMODE(p.stat().st_mode) for p in out.rglob("*")}
    assert modes["launch/vllm-head.sh"] == 0o755
    assert modes["slurm/llama31-405b.sbatch"] == 0o755
    assert modes["plan.json"] == 0o644
    assert modes["launch"] == 0o755
    assert stat.S_IMODE(out.stat().st_mode) == 0o755


def test_directory_of_specs_compiles_into_subdirectories(run, tmp_path):
    specs = tmp_path / "specs"
    specs.mkdir()
    for name in ("llama3.2-3b-4xa40-throughput.yaml", "llama3.1-405b-2x8xa100.yaml"):
        shutil.copy(EXAMPLES / name, specs / name)
    out = tmp_path / "out"
    code, stdout, err = run("compile", str(specs), "-o", str(out))
    assert code == 0, err
    assert (out / "llama32-3b-batch" / "plan.json").exists()
    assert (out / "llama31-405b" / "slurm" / "llama31-405b.sbatch").exists()
    shutil.copy(EXAMPLES / "llama3.2-3b-4xa40-throughput.yaml", specs / "again.yaml")
    code, _, err = run("compile", str(specs), "-o", str(out))
    assert code == 2
    assert "metadata.name 'llama32-3b-batch' is also used by" in err


def generated_scripts(tmp_path: Path) -> list[Path]:
    scripts = []
    for spec in COMPILABLE:
        out = tmp_path / spec.stem
        _, arts = compile_spec(spec, ("launch", "slurm"))
        for a in arts:
            if a.path.endswith((".sh", ".sbatch")):
                p = out / a.path
                p.parent.mkdir(parents=True, exist_ok=True)
                p.write_text(a.content)
                scripts.append(p)
    return scripts


def test_generated_shell_passes_bash_n_and_shellcheck(tmp_path):
    scripts = generated_scripts(tmp_path)
    assert len(scripts) >= 12
    for s in scripts:
        r = subprocess.run(["bash", "-n", str(s)], capture_output=True, text=True)
        assert r.returncode == 0, f"{s}: {r.stderr}"
    if shutil.which("shellcheck") is None:
        skip_or_fail("shellcheck is not installed (Debian package shellcheck)")
    r = subprocess.run(["shellcheck", "--severity=style", "--shell=bash", *map(str, scripts)], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr


ENGINE_CASES = [(spec, engine) for spec in COMPILABLE for engine in ("vllm", "trtllm", "tgi", "sglang")]


@pytest.mark.parametrize("spec, engine", ENGINE_CASES, ids=lambda x: getattr(x, "stem", x))
def test_every_emitted_argv_is_valid_for_its_engine_release(spec, engine, tmp_path):
    from parc.errors import InfeasibleError, SpecError
    from parc.pipeline import make_plan

    p = tmp_path / "s.yaml"
    p.write_text(with_engine(spec.read_text(), engine))
    try:
        plan = make_plan(p)
    except (InfeasibleError, SpecError) as exc:  # the engine cannot serve this checkpoint or these GPUs
        assert engine == "tgi" or amd_only(spec.read_text()), exc
        return
    for version in flags.versions(engine):
        for entry in plan["launch"]:
            argv = entry["argv"]
            if argv[0] == "ray":
                continue
            if argv[0] == "trtllm-llmapi-launch":
                argv = argv[1:]
            assert flags.check_argv(engine, version, argv) == [], (version, argv)


def test_flag_check_rejects_what_the_engine_would():
    assert flags.check_argv("vllm", None, ["vllm", "serve", "m", "--tensor-parallel-size", "four"]) == [
        "--tensor-parallel-size: expects int, got 'four'"]
    assert flags.check_argv("vllm", None, ["vllm", "serve", "m", "--tp-size", "4"]) == [
        "--tp-size: not a flag of vllm 0.32.0"]
    assert flags.check_argv("tgi", None, ["text-generation-launcher", "--dtype", "fp8"]) == [
        "--dtype: expects one of float16, bfloat16, got 'fp8'"]
    assert flags.check_argv("tgi", None, ["text-generation-launcher", "--port", "1", "--port", "2"]) == [
        "--port: given twice"]
    assert flags.check_argv("trtllm", None, ["trtllm-serve", "--tp_size", "2"]) == ["the model must come first"]


def test_flag_tables_record_their_source():
    for engine in ("vllm", "trtllm", "tgi", "sglang"):
        assert flags.default_version(engine) in flags.versions(engine)
        for v in flags.versions(engine):
            rel = flags.release(engine, v)
            assert rel.repo and rel.commit and rel.command and len(rel.flags) > 20


def test_flag_tables_read_by_release_are_the_whole_files():
    """flags.py reads a table one release at a time (metadata first, flags when asked): the
    parts must give what parsing the whole file gives, for every engine and release."""
    for engine in ("vllm", "trtllm", "tgi", "sglang"):
        whole = tomllib.loads((ROOT / "compiler" / "parc" / "engines" / "flags" / f"{engine}.toml").read_text())
        by_release = {k: v for k, v in flags.table(engine).items() if k != "versions"}
        by_release["versions"] = {v: {**meta, "flags": flags.release(engine, v).flags}
                                  for v, meta in flags.table(engine)["versions"].items()}
        assert by_release == whole, engine
        assert list(by_release["versions"]) == list(whole["versions"])


def test_plan_group_counts_agree_across_targets(tmp_path):
    """GPUs per replica = tp x pp x dpAttention; #SBATCH nodes x GPUs = the GPUs of the replicas
    one job or array task runs; tasks x replicas per task = the group's replicas."""
    for spec in COMPILABLE:
        _, arts = compile_spec(spec, ("launch", "slurm"))
        files = {a.path: a.content for a in arts}
        plan = json.loads(files["plan.json"])
        total = 0
        if "router" in plan:  # disaggregated: one job holds every instance (tests/test_disaggregation.py)
            (sbatch,) = [c for p, c in files.items() if p.startswith("slurm/")]
            nodes = int(sbatch.split("#SBATCH --nodes=")[1].split("\n")[0])
            per_node = int(sbatch.split("#SBATCH --gres=gpu:")[1].split("\n")[0])
            assert nodes * per_node >= plan["placement"]["gpusTotal"]
            continue
        for i, g in enumerate(plan["placement"]["groups"]):
            assert g["tp"] * g["pp"] * g["dpAttention"] == g["gpusPerReplica"]
            total += g["gpusPerReplica"] * g["replicas"]
            (sbatch,) = [c for p, c in files.items() if p.startswith("slurm/") and (len(plan["placement"]["groups"]) == 1
                                                                                 or p.endswith(f"-{g['pool']}.sbatch"))]
            d = dict(line[len("#SBATCH --"):].split("=", 1) for line in sbatch.splitlines() if line.startswith("#SBATCH --")
                     and "=" in line)
            per_task = int(sbatch.split("\nreplicas=")[1].split("\n")[0])
            assert int(d["nodes"]) == g["nodesPerReplica"]
            assert int(d["nodes"]) * int(d["gres"].split(":")[1]) == g["gpusPerReplica"] * per_task
            assert (int(d.get("array", "0-0").split("-")[1]) + 1) * per_task == g["replicas"]
            for e in plan["launch"]:
                if e["group"] == i and e["argv"][:2] == ["vllm", "serve"]:
                    a = e["argv"]
                    tp = int(a[a.index("--tensor-parallel-size") + 1])
                    pp = int(a[a.index("--pipeline-parallel-size") + 1])
                    dp = int(a[a.index("--data-parallel-size") + 1]) if "--data-parallel-size" in a else 1
                    assert tp * pp * dp == g["gpusPerReplica"]
        assert total == plan["placement"]["gpusTotal"]
