"""Shared fixtures: the repository root, examples, and a CLI runner."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from click.testing import CliRunner

from parc.cli import main

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def example_specs() -> list[Path]:
    return sorted(EXAMPLES.glob("*.yaml"))


def skip_or_fail(reason: str) -> None:
    """Skip a test whose external tool is missing, but fail under CI=true (nothing may skip)."""
    if IN_CI:
        pytest.fail(f"CI=true and {reason}")
    pytest.skip(reason)


@pytest.fixture
def run():
    """Run the parc CLI in-process: run(args) -> (exit_code, stdout, stderr)."""
    runner = CliRunner()

    def _run(*args: str):
        result = runner.invoke(main, list(args), catch_exceptions=False)
        return result.exit_code, result.stdout, result.stderr

    return _run


MINIMAL = """\
apiVersion: parc.dev/v1alpha1
kind: ServingSpec
metadata:
  name: demo
model:
  id: meta-llama/Llama-3.1-8B-Instruct
workload:
  inputTokens: 1000
  outputTokens: 200
  concurrency: 8
cluster:
  pools:
    - name: p
      gpu: H100-SXM-80GB
      gpusPerNode: 8
"""


@pytest.fixture
def write(tmp_path):
    """write(text, name="spec.yaml") -> path of a spec file in a temp dir."""

    def _write(text: str, name: str = "spec.yaml") -> Path:
        p = tmp_path / name
        p.write_text(text, encoding="utf-8")
        return p

    return _write


def with_engine(text: str, engine: str, **model: str) -> str:
    """A spec's text with engine.name set (and model fields added), whatever it already says.
    An engine parc deploys only aggregated gets engine.disaggregation off: forcing it onto a
    disaggregated example asks for that engine's aggregated plan, without the example's
    workload.concurrency floor (sized for its disaggregated deployment)."""
    import io

    from ruamel.yaml import YAML

    from parc.engines import capabilities

    yaml = YAML()
    doc = yaml.load(text)
    doc.setdefault("engine", {})["name"] = engine
    doc["engine"].pop("version", None)
    if engine != "auto" and not capabilities()[engine].kv_transfer:
        if doc["engine"].pop("disaggregation", "off") != "off":
            doc.get("workload", {}).pop("concurrency", None)
    for k, v in model.items():
        doc["model"][k] = v
    buf = io.StringIO()
    yaml.dump(doc, buf)
    return buf.getvalue()


def amd_only(text: str) -> bool:
    """True when every pool of the spec has AMD GPUs (engines without ROCm cannot serve it)."""
    return "gpu: MI" in text and "gpu: H" not in text and "gpu: A" not in text


def venv_python(env: str, venv: str, what: str) -> Path:
    """The python of a judge's own venv (tests/engines/setup.sh): ``$env`` or ROOT/<venv>; skips
    (fails under CI=true) with ``what`` when it is not installed."""
    import os

    exe = Path(os.environ.get(env, ROOT / venv / "bin" / "python"))
    if not exe.exists():
        skip_or_fail(f"{what} is not installed ({exe} missing): run `bash tests/engines/setup.sh`")
    return exe


def run_harness(exe: Path, harness: Path, cases: list, timeout: int) -> list[dict]:
    """Run a judge harness in its venv with ``cases`` as JSON on stdin; one JSON verdict per case."""
    import json
    import subprocess

    out = subprocess.run([str(exe), str(harness)], input=json.dumps(cases), capture_output=True, text=True,
                         timeout=timeout, cwd=ROOT)
    lines = [json.loads(line) for line in out.stdout.splitlines() if line.startswith("{")]
    assert len(lines) == len(cases), out.stderr[-4000:]
    return lines


def objective_variants(tmp: Path, engine: str, drop: tuple[str, ...] = ()) -> list[Path]:
    """Every example under every objective with ``engine`` (a concurrency of 64 where the example
    has none), the engine keys in ``drop`` removed (another engine's flags or release): the
    specs the engine judges run every emitted argv of."""
    from ruamel.yaml import YAML

    yaml = YAML()
    out = []
    for spec in example_specs():
        for objective in ("latency", "throughput", "cost"):
            doc = yaml.load(spec.read_text())
            doc.setdefault("slo", {})["objective"] = objective
            if objective != "throughput" and "concurrency" not in doc["workload"]:
                doc["workload"]["concurrency"] = 64
            eng = doc.setdefault("engine", {})
            eng["name"] = engine
            for key in drop:
                eng.pop(key, None)
            p = tmp / f"{spec.stem}-{objective}.yaml"
            with open(p, "w") as fh:
                yaml.dump(doc, fh)
            out.append(p)
    return out


def substitute(argv: tuple[str, ...] | list[str], values: dict[str, str]) -> list[str]:
    """argv with parc's ``$(PARC_*)`` placeholders filled in from ``values``."""
    out = []
    for a in argv:
        for k, v in values.items():
            a = a.replace(f"$({k})", v)
        out.append(a)
    return out
