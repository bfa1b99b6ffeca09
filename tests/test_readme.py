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
