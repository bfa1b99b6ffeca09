"""Faults and determinism: whatever stops a compile (bad spec, infeasible plan, a template
bug, a full disk, SIGKILL mid-write, a concurrent compile), the previous out/ stays whole
or is replaced whole; output is byte-identical across hash seeds, locales, time zones,
working directories and YAML key orders."""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from ruamel.yaml import YAML

from conftest import EXAMPLES, example_specs

COMPILABLE = [p for p in example_specs() if "int4-1xh200" not in p.name]
A = EXAMPLES / "llama3.1-405b-2x8xa100.yaml"
B = EXAMPLES / "llama3.2-3b-4xa40-throughput.yaml"


def tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def parc(*args: str, env: dict | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "parc", *args], capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, cwd=cwd)


@pytest.fixture(scope="module")
def trees(tmp_path_factory) -> dict[str, dict[str, bytes]]:
    base = tmp_path_factory.mktemp("ref")
    out = {}
    for spec in (A, B):
        assert parc("compile", str(spec), "-o", str(base / spec.stem)).returncode == 0
        out[spec.stem] = tree(base / spec.stem)
    return out


def test_template_bug_leaves_previous_output(tmp_path, monkeypatch, trees):
    from click.testing import CliRunner

    from parc import render
    from parc.cli import main

    out = tmp_path / "out"
    assert parc("compile", str(A), "-o", str(out)).returncode == 0
    real = render.render

    def broken(template, **ctx):
        if template.startswith("slurm/"):
            raise render.TemplateBug(f"templates/{template}:3: UndefinedError: 'j' has no attribute 'x'")
        return real(template, **ctx)

    monkeypatch.setattr("parc.targets.slurm.render", broken)
    result = CliRunner().invoke(main, ["compile", str(B), "-o", str(out)])
    assert result.exit_code == 70
    assert "internal error (a bug)" in result.stderr and "templates/slurm/" in result.stderr
    assert tree(out) == trees[A.stem]


def test_disk_full_leaves_previous_output(tmp_path, trees):
    """A real write failure: RLIMIT_FSIZE makes the kernel refuse writes past 4 KiB."""
    out = tmp_path / "out"
    assert parc("compile", str(A), "-o", str(out)).returncode == 0
    code = ("import resource, signal, sys; signal.signal(signal.SIGXFSZ, signal.SIG_IGN); "
            "resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096)); "
            "from parc.cli import main; sys.argv = ['parc', 'compile', sys.argv[1], '-o', sys.argv[2]]; main()")
    r = subprocess.run([sys.executable, "-c", code, str(B), str(out)], capture_output=True, text=True)
    assert r.returncode != 0
    assert "File too large" in r.stderr or "EFBIG" in r.stderr or "No space" in r.stderr, r.stderr
    assert tree(out) == trees[A.stem]
    assert parc("compile", str(B), "-o", str(out)).returncode == 0  # and a later compile cleans up
    assert tree(out) == trees[B.stem]
    assert not list(tmp_path.glob(".out.parc-new-*"))


def test_sigkill_mid_write_never_mixes(tmp_path, trees):
    out = tmp_path / "out"
    assert parc("compile", str(A), "-o", str(out)).returncode == 0
    rng = random.Random(7)
    kills = 0
    for i in range(25):
        spec = (A, B)[i % 2]
        p = subprocess.Popen([sys.executable, "-m", "parc", "compile", str(spec), "-o", str(out)],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(rng.uniform(0.15, 0.6))
        if p.poll() is None:
            p.send_signal(signal.SIGKILL)
            kills += 1
        p.wait()
        assert tree(out) in (trees[A.stem], trees[B.stem]), f"mixed output after run {i}"
    assert kills >= 5, "the kills should land mid-compile"


def test_concurrent_compiles_into_one_directory(tmp_path, trees):
    out = tmp_path / "out"
    for _ in range(3):
        procs = [subprocess.Popen([sys.executable, "-m", "parc", "compile", str(s), "-o", str(out)],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.PIPE) for s in (A, B, A, B)]
        for p in procs:
            assert p.wait() == 0, p.stderr.read()
        assert tree(out) in (trees[A.stem], trees[B.stem])


@pytest.mark.parametrize("env", [
    {"PYTHONHASHSEED": "0", "LC_ALL": "C", "TZ": "UTC"},
    {"PYTHONHASHSEED": "12345", "LC_ALL": "C.UTF-8", "TZ": "Pacific/Chatham"},
    {"PYTHONHASHSEED": "random", "LANG": "tr_TR.UTF-8", "TZ": "America/St_Johns"},
], ids=["seed0-C-UTC", "seed12345-CUTF8-Chatham", "random-tr-StJohns"])
def test_byte_identical_across_environments(tmp_path, env):
    ref = tmp_path / "ref"
    got = tmp_path / "got"
    for spec in COMPILABLE:
        assert parc("compile", str(spec), "-o", str(ref / spec.stem)).returncode == 0
        # another working directory and a relative spec path
        work = tmp_path / "elsewhere" / spec.stem
        work.mkdir(parents=True)
        shutil.copy(spec, work / "spec.yaml")
        r = parc("compile", "spec.yaml", "-o", str(got / spec.stem), env=env, cwd=work)
        assert r.returncode == 0, r.stderr
    assert tree(ref) == tree(got)


def test_key_order_does_not_change_the_output(tmp_path):
    yaml = YAML(typ="safe")
    rng = random.Random(3)

    def shuffle(node):
        if isinstance(node, dict):
            items = list(node.items())
            rng.shuffle(items)
            return {k: shuffle(v) for k, v in items}
        if isinstance(node, list):
            return [shuffle(v) for v in node]
        return node

    for spec in COMPILABLE:
        doc = yaml.load(spec.read_text())
        shuffled = tmp_path / f"{spec.stem}.yaml"
        shuffled.write_text(json.dumps(shuffle(doc), indent=1))
        assert parc("compile", str(spec), "-o", str(tmp_path / "a" / spec.stem)).returncode == 0
        assert parc("compile", str(shuffled), "-o", str(tmp_path / "b" / spec.stem)).returncode == 0
    assert tree(tmp_path / "a") == tree(tmp_path / "b")
