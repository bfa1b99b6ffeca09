"""A real wheel, installed into a fresh venv, runs from another directory and finds its
templates, schemas and charts (`parc chart export`), without test-only dependencies."""

from __future__ import annotations

import subprocess
import sys
import venv
import zipfile

import pytest

from conftest import EXAMPLES, ROOT


@pytest.mark.slow
def test_wheel_installs_and_runs_from_elsewhere(tmp_path):
    dist = tmp_path / "dist"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(dist), str(ROOT)],
                   check=True, capture_output=True)
    (wheel,) = dist.glob("parc-*.whl")
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True)
    py = env_dir / "bin" / "python"
    subprocess.run([str(py), "-m", "pip", "install", "-q", str(wheel)], check=True, capture_output=True)
    parc = env_dir / "bin" / "parc"
    work = tmp_path / "elsewhere"
    work.mkdir()
    spec = work / "spec.yaml"
    spec.write_text((EXAMPLES / "llama2-70b-4xa100-nvlink.yaml").read_text())
    out = subprocess.run([str(parc), "validate", "spec.yaml"], cwd=work, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout == "spec.yaml: ok (llama-2-70b, 4 GPUs)\n"
    schema = subprocess.run([str(parc), "schema"], cwd=work, capture_output=True, text=True, check=True)
    assert schema.stdout == (ROOT / "schemas" / "servingspec.schema.json").read_text()
    found = subprocess.run([str(py), "-c", "from parc.resources import resource_dir as r; "
                            "print(all((r(n) / '.').is_dir() for n in ('templates', 'schemas', 'charts')), r('templates'))"],
                           cwd=work, capture_output=True, text=True, check=True)
    assert found.stdout.startswith("True ") and "site-packages" in found.stdout
    # the chart: shipped whole, exported from the installed wheel byte for byte
    with zipfile.ZipFile(wheel) as zf:
        shipped = {n.removeprefix("parc/_resources/charts/parc-serving/") for n in zf.namelist()
                   if n.startswith("parc/_resources/charts/parc-serving/") and not n.endswith("/")}
    chart = ROOT / "charts" / "parc-serving"
    repo = {p.relative_to(chart).as_posix(): p.read_bytes() for p in chart.rglob("*") if p.is_file()}
    assert shipped == set(repo) and {"templates/NOTES.txt", "ci/default-values.yaml", ".helmignore"} <= shipped
    out = subprocess.run([str(parc), "chart", "export", "vendor"], cwd=work, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    exported = work / "vendor" / "parc-serving"
    assert {p.relative_to(exported).as_posix(): p.read_bytes() for p in exported.rglob("*")
            if p.is_file() and p.name != ".parc-manifest"} == repo
    # jsonschema is a test dependency only: the installed parc compiles without it
    missing = subprocess.run([str(py), "-c", "import importlib.util as u; print(u.find_spec('jsonschema'))"],
                             capture_output=True, text=True, check=True)
    assert missing.stdout == "None\n"
    out = subprocess.run([str(parc), "compile", "spec.yaml", "-o", "out"], cwd=work, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert (work / "out" / "helm" / "values.yaml").is_file()
