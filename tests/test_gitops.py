"""The GitOps path end to end on a sample repository (tests/data/gitops): pre-commit-style
validation of every staged YAML file, a directory compile that reports every failing spec and
writes nothing, the drift gate, the ``json`` and ``github`` formats, and the GitHub Actions
workflow the README shows, run step by step."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from ruamel.yaml import YAML

from conftest import ROOT

SAMPLE = ROOT / "tests" / "data" / "gitops"
BROKEN = "specs/chat-broken.yaml"
INFEASIBLE = "specs/llama-405b-one-gpu.yaml"
GOOD = ["specs/assistant-70b.yaml", "specs/evals-3b.yaml"]
NOT_SPECS = [".github/workflows/parc.yaml", ".pre-commit-config.yaml", "apps/assistant.yaml",
             "specs/kustomization.yaml"]
ANNOTATION = re.compile(r"^::(error|warning) file=(?P<file>[^,:]+)(,line=(?P<line>\d+),col=(?P<col>\d+))?"
                        r",title=[^:]+::(?P<msg>.+)$")


@pytest.fixture
def repo(tmp_path, monkeypatch) -> Path:
    dest = tmp_path / "serving"
    shutil.copytree(SAMPLE, dest)
    monkeypatch.chdir(dest)
    return dest


def _hook(hook_id: str) -> dict:
    hooks = YAML(typ="safe").load((ROOT / ".pre-commit-hooks.yaml").read_text())
    return next(h for h in hooks if h["id"] == hook_id)


def _staged(repo: Path, hook: dict) -> list[str]:
    """The files pre-commit would pass to ``hook`` when every file is staged: its ``files``
    regex and ``types: [yaml]`` (pre-commit's identify tags .yaml/.yml files as yaml)."""
    assert hook["types"] == ["yaml"]
    pattern = re.compile(hook["files"])
    files = sorted(p.relative_to(repo).as_posix() for p in repo.rglob("*") if p.is_file())
    return [f for f in files if pattern.search(f) and f.endswith((".yaml", ".yml"))]


def _entry(run, hook: dict, *args: str):
    argv = shlex.split(hook["entry"])
    assert argv[0] == "parc"
    return run(*argv[1:], *hook.get("args", []), *args)


def test_validate_hook_checks_only_servingspecs(run, repo):
    hook = _hook("parc-validate")
    staged = _staged(repo, hook)
    assert set(NOT_SPECS) <= set(staged) and BROKEN in staged
    code, out, err = _entry(run, hook, *staged)
    assert code == 2
    for f in NOT_SPECS:
        assert f"{f}: skipped (not a ServingSpec)" in out.splitlines()
    assert f"{INFEASIBLE}: ok (llama-3.1-405b, 1 GPU)" in out.splitlines()  # validate does not solve
    problems = err.splitlines()
    assert problems[-1] == "2 problems in 1 spec"
    assert all(p.startswith(f"{BROKEN}:") for p in problems[:-1])
    assert f"{BROKEN}:12:14: slo.objective: must be one of latency | throughput | cost" in err
    assert f"{BROKEN}:16:12: cluster.pools[0].gpu: unknown GPU 'H1OO'; did you mean 'H100-SXM-80GB'?" in err


def test_an_explicit_non_spec_is_an_error_without_the_hook_flag(run, repo):
    code, _, err = run("validate", "apps/assistant.yaml")
    assert code == 2 and err.startswith("apps/assistant.yaml:")


def test_directory_compile_reports_every_failing_spec_and_writes_nothing(run, repo):
    code, out, err = run("compile", "specs/", "-o", "out/")
    assert code == 3  # the worst class: one invalid (2), one infeasible (3)
    assert not (repo / "out").exists()
    lines = err.splitlines()
    assert lines[-1] == "nothing written: 2 of 4 specs failed"
    assert all(line.startswith((f"{BROKEN}:", f"{INFEASIBLE}:")) for line in lines[:-1]), lines
    assert any(line.startswith(f"{INFEASIBLE}: no placement fits") for line in lines)
    assert any(line.startswith(f"{INFEASIBLE}: fix: use at least") for line in lines)
    assert "specs/kustomization.yaml: skipped (not a ServingSpec)" in out


def test_worst_class_is_the_exit_code(run, repo):
    (repo / BROKEN).unlink()
    code, _, err = run("compile", "specs/", "-o", "out/")
    assert code == 3 and err.splitlines()[-1] == "nothing written: 1 of 3 specs failed"
    (repo / INFEASIBLE).unlink()
    shutil.copy(SAMPLE / BROKEN, repo / BROKEN)
    code, _, _ = run("compile", "specs/", "-o", "out/")
    assert code == 2


def test_json_report_names_file_line_column_field_fix_and_class(run, repo):
    code, out, err = run("compile", "specs/", "-o", "out/", "--format", "json")
    assert (code, err) == (3, "")
    doc = json.loads(out)
    assert (doc["kind"], doc["command"], doc["exitCode"], doc["exitClass"]) == ("Report", "compile", 3, "infeasible")
    status = {s["file"]: s["status"] for s in doc["specs"]}
    assert status == {GOOD[0]: "ok", GOOD[1]: "ok", BROKEN: "invalid", INFEASIBLE: "infeasible",
                      "specs/kustomization.yaml": "skipped"}
    first = doc["problems"][0]
    assert first == {"file": BROKEN, "line": 12, "column": 14, "field": "slo.objective",
                     "message": "must be one of latency | throughput | cost, got the string 'latncy'",
                     "fix": "did you mean 'latency'?", "severity": "error", "exitClass": "invalid",
                     "exitCode": 2, "detail": []}
    last = doc["problems"][-1]
    assert last["file"] == INFEASIBLE and last["exitClass"] == "infeasible"
    assert last["fix"].startswith("use at least 6 GPUs of H200-SXM-141GB")
    assert any(d.startswith("closest: h200 tp=1 pp=1") for d in last["detail"])


def test_github_annotations(run, repo):
    code, out, err = run("validate", "--format", "github", "specs/")
    assert (code, err) == (2, "")
    notes = [m for m in map(ANNOTATION.match, out.splitlines()) if m]
    assert [(m["file"], m["line"], m["col"]) for m in notes] == [(BROKEN, "12", "14"), (BROKEN, "16", "12")]
    assert all((repo / m["file"]).is_file() for m in notes)
    code, out, _ = run("compile", "specs/", "-o", "out/", "--format", "github")
    infeasible = [m for m in map(ANNOTATION.match, out.splitlines()) if m and m["file"] == INFEASIBLE]
    assert code == 3 and len(infeasible) == 1 and infeasible[0]["line"] is None
    # the message's lines (reason, closest, fix) are %0A-escaped into one annotation
    assert "%0Aclosest: h200 tp=1 pp=1" in infeasible[0]["msg"] and "\n" not in infeasible[0]["msg"]


def test_annotations_escape_what_a_spec_can_inject(run, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    Path("x,y%.yaml").write_text("apiVersion: parc.dev/v1alpha1\nkind: ServingSpec\nmetadata:\n  name: \"a\\n::error::forged\"\n")
    code, out, _ = run("validate", "--format", "github", "x,y%.yaml")
    assert code == 2
    lines = out.splitlines()
    assert all(line.startswith("::error file=x%2Cy%25.yaml") for line in lines if line.startswith("::")), lines
    assert not any(line.startswith("::error::forged") for line in lines)


def test_drift_gate_after_fixing(run, repo):
    (repo / BROKEN).unlink()
    (repo / INFEASIBLE).unlink()
    code, out, err = run("compile", "specs/", "-o", "out/")
    assert code == 0, err
    assert (repo / "out" / "assistant-70b" / "plan.json").is_file()
    hook = _hook("parc-compile-check")
    assert hook["pass_filenames"] is False
    code, out, err = _entry(run, hook)
    generated = len([p for p in (repo / "out").rglob("*") if p.is_file() and p.name != ".parc-manifest"])
    assert (code, err) == (0, "") and out.endswith(f"out/: up to date ({generated} files)\n")
    sbatch = repo / "out" / "evals-3b" / "slurm" / "evals-3b.sbatch"
    sbatch.write_text(sbatch.read_text().replace("--time=08:00:00", "--time=01:00:00"))
    code, out, err = run("compile", "specs/", "-o", "out/", "--check", "--format", "github")
    assert (code, err) == (1, "")
    assert "-#SBATCH --time=01:00:00\n+#SBATCH --time=08:00:00\n" in out  # the diff, on stdout
    notes = [m for m in map(ANNOTATION.match, out.splitlines()) if m]
    assert [m["file"] for m in notes] == ["out/evals-3b/slurm/evals-3b.sbatch"]
    code, out, err = run("compile", "specs/", "-o", "out/", "--check", "--format", "json")
    doc = json.loads(out)
    assert (code, doc["exitClass"], [p["file"] for p in doc["problems"]]) == (1, "drift", [
        "out/evals-3b/slurm/evals-3b.sbatch"])
    assert "+#SBATCH --time=08:00:00" in doc["diff"]


def _workflow_steps() -> list[dict]:
    wf = YAML(typ="safe").load((SAMPLE / ".github" / "workflows" / "parc.yaml").read_text())
    return [s for s in wf["jobs"]["parc"]["steps"] if "run" in s and "pip install" not in s["run"]]


def _run_step(step: dict, repo: Path, tmp: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
           "RUNNER_TEMP": str(tmp), "GITHUB_STEP_SUMMARY": str(tmp / "summary.md")}
    return subprocess.run(["bash", "-e", "-c", step["run"]], cwd=repo, env=env, capture_output=True, text=True,
                          timeout=300)


def test_the_workflow_runs(repo, tmp_path):
    runner = tmp_path / "runner"
    runner.mkdir()
    steps = _workflow_steps()
    assert [s["name"] for s in steps] == ["Validate every spec", "Compiled output is up to date", "Plan summary"]
    r = _run_step(steps[0], repo, runner)
    assert r.returncode == 2 and f"::error file={BROKEN},line=12,col=14" in r.stdout
    (repo / BROKEN).unlink()
    (repo / INFEASIBLE).unlink()
    subprocess.run([str(Path(sys.executable).parent / "parc"), "compile", "specs/", "-o", "out/"], cwd=repo,
                   check=True, capture_output=True)
    for step in steps:
        r = _run_step(step, repo, runner)
        assert r.returncode == 0, (step["name"], r.stdout, r.stderr)
    summary = (runner / "summary.md").read_text()
    assert summary.count("```mermaid") == 2 and "assistant-70b" in summary and "evals-3b" in summary


def test_readme_shows_the_sample_configs():
    readme = (ROOT / "README.md").read_text()
    for name in (".pre-commit-config.yaml", ".github/workflows/parc.yaml"):
        assert (SAMPLE / name).read_text() in readme, f"README's GitOps section must show {name} as in {SAMPLE}"


def test_infeasible_plan_in_json_is_still_a_plan(run, repo):
    code, out, err = run("plan", INFEASIBLE, "--format", "json")
    assert (code, err) == (3, "")
    doc = json.loads(out)
    assert (doc["kind"], doc["feasible"], doc["meetsSlo"]) == ("Plan", False, False)
    assert doc["metadata"]["name"] == "llama-405b-one-gpu"
    assert doc["closest"]["placement"] == {"engine": doc["closest"]["placement"]["engine"], "pool": "h200",
                                           "tp": 1, "pp": 1, "ep": 1, "dpAttention": 1}
    assert doc["closest"]["kind"] == "memory" and "needs 761.0 GiB per GPU" in doc["closest"]["reason"]
    assert doc["fix"].startswith("use at least 6 GPUs") and doc["rejected"]
    assert doc["problems"][0]["exitClass"] == "infeasible"


def test_slo_miss_in_json_carries_the_closest_predictions(run, tmp_path, monkeypatch):
    from conftest import MINIMAL

    monkeypatch.chdir(tmp_path)
    Path("spec.yaml").write_text(MINIMAL + "slo:\n  objective: latency\n  tpotMs: 1\n")
    code, out, _ = run("plan", "spec.yaml", "--format", "json")
    doc = json.loads(out)
    assert code == 3 and doc["feasible"] is False
    assert doc["closest"]["predicted"]["tpotMs"] > 1 and doc["closest"]["misses"]


@pytest.mark.slow
def test_real_pre_commit_runs_the_shipped_hooks(tmp_path):
    """pre-commit itself installs this repository's hooks (from a commit of its files, as a
    user's `repo:` would) and runs them on the sample repository."""
    pre_commit = Path(sys.executable).parent / "pre-commit"
    if not pre_commit.exists():
        from conftest import skip_or_fail

        skip_or_fail("pre-commit is not installed (it is in the test extra)")
    if not (ROOT / ".git").exists():
        from conftest import skip_or_fail

        skip_or_fail("the repository is not a git checkout; pre-commit installs hooks from a git repository")
    git = ["git", "-c", "user.email=t@example.com", "-c", "user.name=t", "-c", "commit.gpgsign=false"]
    hooks = tmp_path / "parc"
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=ROOT, capture_output=True, text=True,
                           check=True).stdout.split("\n")
    for f in files:
        if f and not f.startswith("tests/") and (ROOT / f).is_file():
            (hooks / f).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / f, hooks / f)
    subprocess.run(git + ["init", "-q"], cwd=hooks, check=True)
    subprocess.run(git + ["add", "-A"], cwd=hooks, check=True)
    subprocess.run(git + ["commit", "-qm", "parc"], cwd=hooks, check=True)
    sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=hooks, capture_output=True, text=True,
                         check=True).stdout.strip()
    repo = tmp_path / "serving"
    shutil.copytree(SAMPLE, repo)
    config = (repo / ".pre-commit-config.yaml").read_text()
    config = re.sub(r"repo: \S+.*", f"repo: {hooks}", config).replace("rev: v0.1.0", f"rev: {sha}")
    (repo / ".pre-commit-config.yaml").write_text(config)
    subprocess.run(git + ["init", "-q"], cwd=repo, check=True)
    subprocess.run(git + ["add", "-A"], cwd=repo, check=True)
    env = {**os.environ, "PRE_COMMIT_HOME": str(tmp_path / "cache")}
    r = subprocess.run([str(pre_commit), "run", "--all-files"], cwd=repo, env=env, capture_output=True, text=True,
                       timeout=900)
    assert r.returncode == 1, r.stdout + r.stderr
    assert "- hook id: parc-validate\n- exit code: 2" in r.stdout
    assert "- hook id: parc-compile-check\n- exit code: 3" in r.stdout
    assert ".github/workflows/parc.yaml: skipped (not a ServingSpec)" in r.stdout
    assert f"{BROKEN}:16:12: cluster.pools[0].gpu: unknown GPU 'H1OO'" in r.stdout
    # fixed: both hooks pass once the bad specs are gone and out/ is compiled
    for f in (BROKEN, INFEASIBLE):
        (repo / f).unlink()
    subprocess.run([str(Path(sys.executable).parent / "parc"), "compile", "specs/", "-o", "out/"], cwd=repo,
                   check=True, capture_output=True)
    subprocess.run(git + ["add", "-A"], cwd=repo, check=True)
    r = subprocess.run([str(pre_commit), "run", "--all-files"], cwd=repo, env=env, capture_output=True, text=True,
                       timeout=900)
    assert r.returncode == 0, r.stdout + r.stderr
    assert re.search(r"parc validate\.+Passed", r.stdout) and re.search(r"parc compile --check\.+Passed", r.stdout)
