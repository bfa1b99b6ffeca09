"""The chart charts/parc-serving as a chart of its own, checked with real Helm (helm-python-sdk):
its defaults lint strictly and install a working deployment, names and namespaces follow the
release unless the values pin them, NOTES.txt, the chart-testing values in ci/, and
`parc chart export`."""

from __future__ import annotations

import copy
import json
import os
import re
from pathlib import Path
from typing import Any

import pytest
from ruamel.yaml import YAML

from conftest import EXAMPLES, skip_or_fail
from parc.pipeline import compile_spec
from parc.targets.kubernetes import objects
from test_kubernetes import CHART, compiled, helm_render, validate_object

CI = sorted((CHART / "ci").glob("*-values.yaml"))
UPDATE = os.environ.get("PARC_UPDATE_GOLDEN") == "1"
#: First line of a ci/ file that is parc's own output for an example (kept current below).
FROM_PARC = re.compile(r"^# chart-testing values: `parc compile examples/(?P<spec>[\w.-]+\.yaml) --target helm`")
HETERO = EXAMPLES / "llama3.1-70b-h100-a100-hetero.yaml"

#: The spec whose compiled values are the chart's defaults (values.yaml says so).
DEFAULTS_SPEC = """\
apiVersion: parc.dev/v1alpha1
kind: ServingSpec
metadata:
  name: parc-serving
model:
  id: Qwen/Qwen3-8B
  precision: bf16
  maxContextLength: 8192
workload:
  inputTokens: 1000
  outputTokens: 200
  concurrency: 8
slo:
  objective: latency
cluster:
  pools:
    - name: l4
      gpu: L4-24GB
      nodes: 1
      gpusPerNode: 1
      scheduler: kubernetes
"""


@pytest.fixture(scope="module", autouse=True)
def _needs_tools():
    for mod in ("kubernetes_validate", "helm_python", "jsonschema"):
        try:
            __import__(mod)
        except ImportError:
            skip_or_fail(f"the Python package for {mod} is not installed (pip install -e '.[test]')")


def load(path: Path) -> dict[str, Any]:
    return YAML(typ="safe").load(path.read_text()) or {}


def defaults() -> dict[str, Any]:
    return load(CHART / "values.yaml")


def layered(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """Helm's layering for values without nulls: maps merge, anything else is replaced."""
    out = copy.deepcopy(base)
    for k, v in over.items():
        out[k] = layered(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else copy.deepcopy(v)
    return out


def resolved(values: dict[str, Any], release: str, namespace: str) -> dict[str, Any]:
    """The chart's naming rule (charts/parc-serving/README.md): empty names follow the release."""
    v = copy.deepcopy(values)
    v["name"] = v["name"] or release
    v["namespace"] = v["namespace"] or namespace
    for g in v["groups"]:
        g["name"] = g["name"] or (v["name"] if len(v["groups"]) == 1 else f"{v['name']}-{g['pool']}")
    return v


def notes(values: dict[str, Any], release: str = "chat", namespace: str = "team-a") -> str:
    import helm_python

    return helm_python.Chart.load(str(CHART)).render(values, name=release, namespace=namespace)[
        "parc-serving/templates/NOTES.txt"]


def lint(values: dict[str, Any], chart: Path = CHART) -> None:
    """`helm lint --strict` (the CLI lints in namespace "default"): no errors, no warnings."""
    import helm_python

    report = helm_python.lint(str(chart), values, strict=True, namespace="default")
    assert report["errors"] == [], report
    assert all(m["severity"] <= 1 for m in report["messages"]), report["messages"]


def key(obj: dict[str, Any]) -> tuple[str, str]:
    return obj["kind"], obj["metadata"]["name"]


def test_defaults_lint_strictly_and_match_the_schema():
    import jsonschema

    jsonschema.Draft7Validator(json.loads((CHART / "values.schema.json").read_text())).validate(defaults())
    lint({})


def test_defaults_are_what_parc_compiles(tmp_path):
    """The default group, image and settings are parc's own output for DEFAULTS_SPEC, with the
    names left to the release and the model cache to the chart's default."""
    spec = tmp_path / "defaults.yaml"
    spec.write_text(DEFAULTS_SPEC)
    _, arts = compile_spec(spec, ("helm",))
    ours = YAML(typ="safe").load(next(a.content for a in arts if a.path == "helm/values.yaml"))
    chart = defaults()
    assert (chart["name"], chart["namespace"], chart["modelCache"]) == ("", "", {})
    assert ours["modelCache"] == {"emptyDir": True}  # what the chart's {} means
    for g in ours["groups"]:
        g["name"] = ""
    unpinned = {k: v for k, v in ours.items() if k not in ("name", "namespace", "modelCache")}
    assert {k: v for k, v in chart.items() if k not in ("name", "namespace", "modelCache")} == unpinned


@pytest.mark.parametrize("path", CI, ids=lambda p: p.name)
def test_ci_values_lint_and_render(path):
    """Each chart-testing values file (layered on the defaults, as `ct` does) lints strictly and
    renders exactly the objects parc builds for those values, each valid against the upstream
    Kubernetes schemas and the CRDs."""
    values = load(path)
    lint(values)
    rendered = helm_render(values, name="ct-release", namespace="ct-ns")
    want = objects(resolved(layered(defaults(), values), "ct-release", "ct-ns"))
    assert sorted(map(key, rendered)) == sorted(map(key, want))
    ours = {key(o): o for o in want}
    for obj in rendered:
        assert obj == ours[key(obj)], key(obj)
        validate_object(obj)


def test_ci_values_cover_the_chart():
    kinds = {o["kind"] for p in CI for o in helm_render(load(p), name="ct-release", namespace="ct-ns")}
    assert kinds == {"Deployment", "LeaderWorkerSet", "Service", "PodDisruptionBudget", "ConfigMap", "HTTPRoute",
                     "ServiceMonitor"}


@pytest.mark.parametrize("path", [p for p in CI if FROM_PARC.match(p.read_text())], ids=lambda p: p.name)
def test_ci_values_from_parc_are_current(path):
    """A ci/ file that is parc's output for an example stays byte-identical to what parc writes
    for it now (PARC_UPDATE_GOLDEN=1 rewrites it, like the golden trees)."""
    text = path.read_text()
    first, _, _ = text.partition("\n")
    m = FROM_PARC.match(first)
    assert m
    _, arts = compile_spec(EXAMPLES / m["spec"], ("helm",))
    want = first + "\n" + next(a.content for a in arts if a.path == "helm/values.yaml")
    if UPDATE:
        path.write_text(want)
        text = want
    assert text == want, f"{path} is not what parc writes for examples/{m['spec']} (PARC_UPDATE_GOLDEN=1 to accept)"


def test_names_and_namespaces_follow_the_release():
    objs = helm_render({}, name="chat", namespace="team-a")
    assert sorted(map(key, objs)) == [("Deployment", "chat"), ("PodDisruptionBudget", "chat"), ("Service", "chat")]
    assert {o["metadata"]["namespace"] for o in objs} == {"team-a"}
    # several groups: `<name>-<pool>`, as parc names them; the ConfigMap and HTTPRoute follow
    _, values, _ = compiled(HETERO)
    free = {**values, "name": "", "namespace": "", "groups": [{**g, "name": ""} for g in values["groups"]]}
    objs = helm_render(free, name="mixed", namespace="team-b")
    assert sorted(map(key, objs)) == sorted([
        ("ConfigMap", "mixed-parc"), ("Deployment", "mixed-h100"), ("LeaderWorkerSet", "mixed-a100"),
        ("Service", "mixed-h100"), ("Service", "mixed-a100"), ("HTTPRoute", "mixed"), ("PodDisruptionBudget", "mixed")])
    assert {o["metadata"]["namespace"] for o in objs} == {"team-b"}
    want = {key(o): o for o in objects(resolved(free, "mixed", "team-b"))}
    assert {key(o): o for o in objs} == want


def test_pinned_name_and_namespace_win():
    objs, values, _ = compiled(HETERO)
    rendered = helm_render(values, name="other", namespace="elsewhere")
    assert sorted(map(key, rendered)) == sorted(map(key, objs))
    assert {o["metadata"]["namespace"] for o in rendered} == {"inference"}


def test_a_layer_can_leave_the_namespace_to_helm():
    """`--set namespace=` over parc's values: `helm -n` decides, the names stay the spec's."""
    objs, values, _ = compiled(HETERO)
    rendered = helm_render({**values, "namespace": ""}, name="other", namespace="team-c")
    assert {o["metadata"]["namespace"] for o in rendered} == {"team-c"}
    assert sorted(map(key, rendered)) == sorted(map(key, objs))


def two_groups(pool: str) -> dict[str, Any]:
    g = defaults()["groups"][0]
    return {"groups": [{**g, "pool": pool}, {**g, "pool": "b"}]}


@pytest.mark.parametrize(("values", "release", "namespace", "message"), [
    ({}, "Chat", "team-a", 'parc-serving: name "Chat" is not a DNS-1123 label of at most 63 characters'),
    # a 53-character release name is valid, but `<name>-<pool>` of a second group is over 63
    (two_groups("pool-with-a-long-name"), "a" * 53, "team-a",
     f'parc-serving: name "{"a" * 53}-pool-with-a-long-name" is not a DNS-1123 label of at most 63 characters'),
    ({}, "chat", "Team_A", 'parc-serving: namespace "Team_A" is not a DNS-1123 label; set `namespace` in the values'),
])
def test_names_that_kubernetes_would_reject_fail_clearly(values, release, namespace, message):
    import helm_python

    with pytest.raises(helm_python.HelmRenderError, match=re.escape(message)):
        helm_render(values, name=release, namespace=namespace)


def test_notes_say_what_was_installed_and_how_to_reach_it():
    assert notes({}) == """\
parc-serving 0.1.0 installed chat in namespace team-a (release chat), image vllm/vllm-openai:v0.32.0:
  Deployment chat: 1 replica(s) of 1 pod(s) x 1 nvidia.com/gpu (vllm, pool l4)

Readiness: the engine downloads and loads its weights first (the startup probe allows each group's time below).
  kubectl -n team-a rollout status deployment/chat --timeout=780s
  kubectl -n team-a get pods -l app.kubernetes.io/name=chat

Service: http://chat.team-a.svc:8000 (type ClusterIP). From your machine:
  kubectl -n team-a port-forward service/chat 8000:8000
  curl -f 'http://127.0.0.1:8000/health'
"""
    _, values, _ = compiled(HETERO)
    text = notes(values)
    a100, h100 = (next(g for g in values["groups"] if g["pool"] == p) for p in ("a100", "h100"))
    assert f"kubectl -n inference wait --for=condition=Available leaderworkerset/{a100['name']} " \
           f"--timeout={a100['startupSeconds']}s\n" in text
    assert f"kubectl -n inference rollout status deployment/{h100['name']} --timeout={h100['startupSeconds']}s\n" in text
    assert "through the Gateway inference-gateway (HTTPRoute llama31-70b-mixed in inference" in text
    assert "ServiceMonitor" not in text
    assert "Metrics: ServiceMonitor qwen3-chat scrapes /metrics every 15s.\n" in \
        notes(load(CHART / "ci" / "pinned-platform-values.yaml"))


def chart_tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_chart_export_writes_the_shipped_chart(tmp_path, run):
    code, _, err = run("chart", "export", str(tmp_path / "vendor"))
    out = tmp_path / "vendor" / "parc-serving"
    assert (code, err) == (0, f"{out}: written\n")
    exported = chart_tree(out)
    assert exported.pop(".parc-manifest")
    assert exported == chart_tree(CHART)
    lint({}, chart=out)
    assert helm_render({}, name="chat", namespace="team-a", chart=out) == helm_render({}, name="chat", namespace="team-a")
    # again: nothing to refuse (parc wrote every file); --check agrees; a file of the user's is kept
    (out / "NOTES.local").write_text("mine\n")
    assert run("chart", "export", str(tmp_path / "vendor"))[0] == 0
    assert (out / "NOTES.local").read_text() == "mine\n"
    (out / "NOTES.local").unlink()
    assert run("chart", "export", "--check", str(tmp_path / "vendor")) == (0, "", f"{out}: up to date\n")


def test_chart_export_refuses_to_overwrite_what_it_did_not_write(tmp_path, run):
    run("chart", "export", str(tmp_path))
    values = tmp_path / "parc-serving" / "values.yaml"
    values.write_text(values.read_text() + "# edited\n")
    code, diff, err = run("chart", "export", "--check", str(tmp_path))
    assert code == 1 and "+# edited" not in diff and "-# edited\n" in diff
    assert err == f"{tmp_path / 'parc-serving'}: 1 file differs from the chart this parc ships; " \
                  f"run `parc chart export {tmp_path}`\n"
    code, _, err = run("chart", "export", str(tmp_path))
    assert code == 2
    assert err == f"{values}: was generated by parc but edited since (its sha256 differs from .parc-manifest); " \
                  "move it away or restore it, parc will not overwrite your edit\n"
    assert values.read_text().endswith("# edited\n")
    own = tmp_path / "own"
    (own / "parc-serving").mkdir(parents=True)
    (own / "parc-serving" / "Chart.yaml").write_text("apiVersion: v2\nname: mine\nversion: 1.0.0\n")
    code, _, err = run("chart", "export", str(own))
    assert code == 2
    assert err == f"{own / 'parc-serving' / 'Chart.yaml'}: exists and was not written by parc; move it away or " \
                  "delete it, parc will not overwrite it\n"
    assert sorted(p.name for p in (own / "parc-serving").iterdir()) == ["Chart.yaml"]


def test_chart_export_usage_errors(tmp_path, run):
    assert run("chart", "export", "") == (2, "", "DIRECTORY is empty (an unset variable?); give the directory to "
                                                 "hold the chart, e.g. charts/\n")
    (tmp_path / "f").write_text("")
    assert run("chart", "export", str(tmp_path / "f")) == (2, "", f"{tmp_path / 'f'}: exists and is not a directory\n")
    code, _, err = run("chart", "export")
    assert code == 2 and "Missing argument 'DIRECTORY'" in err


def test_every_chart_file_is_shipped():
    """The wheel ships charts/ whole (pyproject force-include); parc.chart reads every file."""
    from parc.chart import chart_files

    assert {a.path: a.content.encode() for a in chart_files()} == chart_tree(CHART)
    assert {"templates/NOTES.txt", ".helmignore", "README.md"} <= {a.path for a in chart_files()}
