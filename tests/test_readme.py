"""The README's two fresh-machine commands exist, and CI runs the test command verbatim."""

from __future__ import annotations

from conftest import ROOT

README = (ROOT / "README.md").read_text()
TEST_CMD = "python3 -m venv .venv && . .venv/bin/activate && pip install -q -e '.[test]' && python -m pytest -q"
RUN_CMD = ("python3 -m venv .venv && . .venv/bin/activate && pip install . && "
           "parc compile examples/llama2-70b-4xa100-nvlink.yaml -o out/")


def test_readme_has_the_two_commands():
    assert f"    {TEST_CMD}\n" in README
    assert f"    {RUN_CMD}\n" in README


def test_ci_runs_the_readme_test_command():
    assert TEST_CMD in (ROOT / ".ci" / "run").read_text()


def test_readme_example_exists():
    assert (ROOT / "examples" / "llama2-70b-4xa100-nvlink.yaml").is_file()


def test_shell_completion_as_documented():
    """The README's completion lines work: click's bash script, and completions of a command
    name and of --format values from the running parc."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    assert 'eval "$(_PARC_COMPLETE=bash_source parc)"' in README
    parc = str(Path(sys.executable).parent / "parc")
    script = subprocess.run([parc], env={**os.environ, "_PARC_COMPLETE": "bash_source"}, capture_output=True,
                            text=True, check=True).stdout
    assert "complete -o nosort -F _parc_completion parc" in script
    env = {**os.environ, "_PARC_COMPLETE": "bash_complete", "COMP_WORDS": "parc va", "COMP_CWORD": "1"}
    words = subprocess.run([parc], env=env, capture_output=True, text=True).stdout.split()
    assert "plain,validate" in words
    env.update(COMP_WORDS="parc validate --format ", COMP_CWORD="3")
    words = subprocess.run([parc], env=env, capture_output=True, text=True).stdout.split()
    assert {"plain,text", "plain,json", "plain,github"} <= set(words)


def test_readme_plan_output_is_what_parc_prints(run, monkeypatch):
    """The README's sample `parc plan` output is the current output, byte for byte."""
    monkeypatch.chdir(ROOT)
    cmd = "$ parc plan examples/llama2-70b-4xa100-nvlink.yaml\n"
    start = README.index(cmd) + len(cmd)
    shown = README[start:README.index("```", start)]
    code, out, _ = run("plan", "examples/llama2-70b-4xa100-nvlink.yaml")
    assert code == 0 and shown == out
