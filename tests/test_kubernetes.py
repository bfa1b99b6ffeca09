"""Kubernetes manifests and the parc-serving chart, checked against the real things: the
upstream Kubernetes OpenAPI schemas (strict), the CRDs' schemas, the kubernetes client's
models, and a real Helm (helm-python-sdk) rendering the chart object for object."""

from __future__ import annotations

import copy
import functools
import json
from pathlib import Path
from typing import Any

import pytest
from ruamel.yaml import YAML

from conftest import EXAMPLES, ROOT, example_specs, skip_or_fail
from parc.pipeline import compile_spec

K8S_VERSION = "1.33.0"
CRDS = ROOT / "tests" / "data" / "crds"
CHART = ROOT / "charts" / "parc-serving"
COMPILABLE = [p for p in example_specs() if "int4-1xh200" not in p.name]


def yaml_docs(text: str) -> list[dict[str, Any]]:
    return [d for d in YAML(typ="safe").load_all(text) if d]


@functools.lru_cache(maxsize=None)
def compiled(spec: Path) -> tuple[list[dict[str, Any]], dict[str, Any], dict[str, Any]]:
    """(objects, helm values, plan) of an example compiled for Kubernetes and Helm."""
    _, arts = compile_spec(spec, ("kubernetes", "helm"))
    files = {a.path: a.content for a in arts}
    (manifest,) = [c for p, c in files.items() if p.startswith("kubernetes/")]
    return yaml_docs(manifest), YAML(typ="safe").load(files["helm/values.yaml"]), json.loads(files["plan.json"])


@functools.lru_cache(maxsize=None)
def crd_schema(group_kind: str) -> dict[str, Any]:
    files = {"LeaderWorkerSet": "leaderworkerset.x-k8s.io_leaderworkersets.yaml",
             "ServiceMonitor": "monitoring.coreos.com_servicemonitors.yaml",
             "HTTPRoute": "gateway.networking.k8s.io_httproutes.yaml"}
    crd = YAML(typ="safe").load((CRDS / files[group_kind]).read_text())
    (version,) = [v for v in crd["spec"]["versions"] if v.get("storage")]
    return strict(version["schema"]["openAPIV3Schema"])


def strict(schema: Any) -> Any:
    """A structural schema as JSON Schema where unknown fields are errors (as the API
    server's strict field validation reports them)."""
    if isinstance(schema, list):
        return [strict(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: strict(v) for k, v in schema.items()}
    if out.pop("x-kubernetes-int-or-string", False):
        out.pop("type", None)
        out["anyOf"] = [{"type": "integer"}, {"type": "string"}]
    if "properties" in schema and not schema.get("x-kubernetes-preserve-unknown-fields") \
            and "additionalProperties" not in schema:
        out["additionalProperties"] = False
    return out


def validate_object(obj: dict[str, Any]) -> None:
    import jsonschema
    import kubernetes_validate

    if obj["kind"] in ("LeaderWorkerSet", "ServiceMonitor", "HTTPRoute"):
        jsonschema.Draft7Validator(crd_schema(obj["kind"])).validate(obj)
    else:
        kubernetes_validate.validate(obj, K8S_VERSION, strict=True)


@pytest.fixture(scope="module", autouse=True)
def _needs_tools():
    for mod in ("kubernetes_validate", "kubernetes", "helm_python"):
        try:
            __import__(mod)
        except ImportError:
            skip_or_fail(f"the Python package for {mod} is not installed (pip install -e '.[test]')")


@pytest.mark.parametrize("spec", COMPILABLE, ids=lambda p: p.stem)
def test_manifests_validate_strictly(spec):
    objs, _, _ = compiled(spec)
    kinds = [o["kind"] for o in objs]
    assert "Service" in kinds and "PodDisruptionBudget" in kinds
    assert any(k in ("Deployment", "LeaderWorkerSet") for k in kinds)
    for obj in objs:
        validate_object(obj)


def test_strict_validation_catches_unknown_fields():
    import jsonschema
    import kubernetes_validate

    objs, _, _ = compiled(EXAMPLES / "llama2-70b-4xa100-nvlink.yaml")
    dep = copy.deepcopy(next(o for o in objs if o["kind"] == "Deployment"))
    dep["spec"]["template"]["spec"]["containers"][0]["gpus"] = 4
    with pytest.raises(Exception, match="gpus"):
        kubernetes_validate.validate(dep, K8S_VERSION, strict=True)
    lws, _, _ = compiled(EXAMPLES / "llama3.1-405b-2x8xa100.yaml")
    bad = copy.deepcopy(next(o for o in lws if o["kind"] == "LeaderWorkerSet"))
    bad["spec"]["leaderWorkerTemplate"]["workers"] = 2
    with pytest.raises(jsonschema.ValidationError):
        validate_object(bad)


@pytest.mark.parametrize("spec", COMPILABLE, ids=lambda p: p.stem)
def test_objects_load_into_the_kubernetes_client_without_loss(spec):
    from kubernetes import client

    api = client.ApiClient()
    models = {"Service": "V1Service", "Deployment": "V1Deployment", "PodDisruptionBudget": "V1PodDisruptionBudget",
              "ConfigMap": "V1ConfigMap"}
    objs, _, _ = compiled(spec)
    for obj in objs:
        if obj["kind"] not in models:
            # custom resources: their pod templates are core PodTemplateSpecs
            if obj["kind"] == "LeaderWorkerSet":
                for t in ("leaderTemplate", "workerTemplate"):
                    tmpl = obj["spec"]["leaderWorkerTemplate"][t]
                    model = api._ApiClient__deserialize(tmpl, "V1PodTemplateSpec")
                    assert api.sanitize_for_serialization(model) == tmpl
            continue
        model = api._ApiClient__deserialize(obj, models[obj["kind"]])
        assert api.sanitize_for_serialization(model) == obj


def helm_render(values: dict[str, Any], name: str = "release", namespace: str | None = None,
                chart: Path = CHART) -> list[dict[str, Any]]:
    """The objects real Helm renders (``helm template NAME -n NAMESPACE``; NOTES.txt is no manifest)."""
    import helm_python

    out = helm_python.Chart.load(str(chart)).render(values, name=name, namespace=namespace or values["namespace"])
    return [d for path, text in sorted(out.items()) if not path.endswith("/NOTES.txt") for d in yaml_docs(text)]


@pytest.mark.parametrize("spec", COMPILABLE, ids=lambda p: p.stem)
def test_chart_renders_the_same_objects_as_the_manifests(spec):
    objs, values, _ = compiled(spec)
    rendered = helm_render(values)
    key = lambda o: (o["kind"], o["metadata"]["name"])  # noqa: E731
    assert sorted(map(key, rendered)) == sorted(map(key, objs))
    ours = {key(o): o for o in objs}
    for obj in rendered:
        assert obj == ours[key(obj)], key(obj)
        validate_object(obj)


@pytest.mark.parametrize("spec", COMPILABLE, ids=lambda p: p.stem)
def test_chart_lints_and_values_match_the_schema(spec):
    import helm_python
    import jsonschema

    _, values, _ = compiled(spec)
    jsonschema.Draft7Validator(json.loads((CHART / "values.schema.json").read_text())).validate(values)
    report = helm_python.lint(str(CHART), values, strict=True)
    assert report["errors"] == [], report
    assert all(m["severity"] <= 1 for m in report["messages"]), report["messages"]


def test_chart_rejects_bad_values():
    import helm_python

    _, values, _ = compiled(EXAMPLES / "llama2-70b-4xa100-nvlink.yaml")
    bad = {**values, "port": "eighty"}
    with pytest.raises(helm_python.HelmError):
        helm_render(bad)


def test_platform_values_layer_on_top():
    """A platform team's own values (registry mirror, pull secrets, annotations) override parc's."""
    _, values, _ = compiled(EXAMPLES / "llama2-70b-4xa100-nvlink.yaml")
    layered = {**values, "image": "registry.internal/mirror/vllm-openai:v0.33.0",
               "imagePullSecrets": [{"name": "regcred"}], "podAnnotations": {"team.example/owner": "ml"}}
    dep = next(o for o in helm_render(layered) if o["kind"] == "Deployment")
    pod = dep["spec"]["template"]
    assert pod["spec"]["containers"][0]["image"] == "registry.internal/mirror/vllm-openai:v0.33.0"
    assert pod["spec"]["imagePullSecrets"] == [{"name": "regcred"}]
    assert pod["metadata"]["annotations"] == {"team.example/owner": "ml"}


@pytest.mark.parametrize("spec", COMPILABLE, ids=lambda p: p.stem)
def test_gpu_counts_agree_with_the_plan(spec):
    objs, _, plan = compiled(spec)
    total = 0
    for g in plan["placement"]["groups"]:
        pools = len({x["pool"] for x in plan["placement"]["groups"]}) > 1
        name = "-".join([plan["metadata"]["name"]] + ([g["pool"]] if pools else [])
                        + ([g["phase"]] if g["phase"] != "both" else []))
        (w,) = [o for o in objs if o["kind"] in ("Deployment", "LeaderWorkerSet") and o["metadata"]["name"] == name]
        if w["kind"] == "Deployment":
            pods, templates = w["spec"]["replicas"], [w["spec"]["template"]]
            assert g["nodesPerReplica"] == 1
            per_pod = templates[0]["spec"]["containers"][0]["resources"]["limits"]
        else:
            lwt = w["spec"]["leaderWorkerTemplate"]
            assert lwt["size"] == g["nodesPerReplica"]
            pods = w["spec"]["replicas"] * lwt["size"]
            templates = [lwt["leaderTemplate"], lwt["workerTemplate"]]
            per_pod = templates[0]["spec"]["containers"][0]["resources"]["limits"]
        gpus = sum(int(v) for k, v in per_pod.items() if k.endswith("/gpu"))
        total += gpus * pods
        assert gpus * (pods // g["replicas"]) == g["gpusPerReplica"]
        for t in templates:
            c = t["spec"]["containers"][0]
            assert {k: v for k, v in c["resources"]["requests"].items() if k.endswith("/gpu")} == \
                {k: v for k, v in c["resources"]["limits"].items() if k.endswith("/gpu")}
    assert total == plan["placement"]["gpusTotal"]


@pytest.mark.parametrize("spec", COMPILABLE, ids=lambda p: p.stem)
def test_pod_posture(spec):
    objs, _, _ = compiled(spec)
    text = json.dumps(objs)
    assert "HF_TOKEN\", \"value\"" not in text  # the token only ever comes from a secretKeyRef
    for o in objs:
        if o["kind"] == "Deployment" and o["metadata"]["labels"]["app.kubernetes.io/component"] == "router":
            # the prefill/decode router watches pods: its own ServiceAccount, bound to a Role that reads pods
            spec_ = o["spec"]["template"]["spec"]
            assert spec_["automountServiceAccountToken"] is True and spec_["serviceAccountName"] == o["metadata"]["name"]
            (role,) = [r for r in objs if r["kind"] == "Role" and r["metadata"]["name"] == o["metadata"]["name"]]
            assert role["rules"] == [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "watch"]}]
            sc = spec_["containers"][0]["securityContext"]
            assert sc["privileged"] is False and sc["allowPrivilegeEscalation"] is False
            assert "nvidia.com/gpu" not in json.dumps(spec_)
            continue
        if o["kind"] == "Deployment":
            templates = [o["spec"]["template"]]
        elif o["kind"] == "LeaderWorkerSet":
            templates = [o["spec"]["leaderWorkerTemplate"]["leaderTemplate"],
                         o["spec"]["leaderWorkerTemplate"]["workerTemplate"]]
        else:
            continue
        for t in templates:
            spec_ = t["spec"]
            assert spec_["automountServiceAccountToken"] is False
            assert "hostNetwork" not in spec_
            c = spec_["containers"][0]
            sc = c["securityContext"]
            assert sc["privileged"] is False and sc["allowPrivilegeEscalation"] is False
            assert sc["capabilities"]["drop"] == ["ALL"]
            assert {"cpu", "memory"} <= set(c["resources"]["requests"])
            shm = next(v for v in spec_["volumes"] if v["name"] == "shm")
            assert shm["emptyDir"]["medium"] == "Memory"


def test_multi_node_replica_is_a_leaderworkerset_with_ray():
    objs, values, plan = compiled(EXAMPLES / "llama3.1-405b-2x8xa100.yaml")
    lws = next(o for o in objs if o["kind"] == "LeaderWorkerSet")
    lwt = lws["spec"]["leaderWorkerTemplate"]
    assert lwt["size"] == 2
    leader = lwt["leaderTemplate"]["spec"]["containers"][0]
    worker = lwt["workerTemplate"]["spec"]["containers"][0]
    assert leader["command"] == ["bash", "/etc/parc/vllm-head.sh"]
    assert worker["command"] == ["ray", "start", "--block", "--address=$(PARC_HEAD_ADDR):6379"]
    assert {"name": "PARC_HEAD_ADDR", "value": "$(LWS_LEADER_ADDRESS)"} in worker["env"]
    cm = next(o for o in objs if o["kind"] == "ConfigMap")
    assert "--distributed-executor-backend ray" in cm["data"]["vllm-head.sh"]
    assert "ports" in leader and "ports" not in worker
    assert leader["securityContext"]["capabilities"]["add"] == ["IPC_LOCK"]


def test_service_monitor_when_asked(tmp_path):
    p = tmp_path / "s.yaml"
    p.write_text((EXAMPLES / "mixtral-8x7b-8xh100.yaml").read_text().replace(
        "    hfTokenSecret: hf-token", "    hfTokenSecret: hf-token\n    serviceMonitor: true"))
    objs, values, _ = compiled(p)
    sm = next(o for o in objs if o["kind"] == "ServiceMonitor")
    assert sm["spec"]["endpoints"][0]["path"] == "/metrics"
    validate_object(sm)
    assert [o for o in helm_render(values) if o["kind"] == "ServiceMonitor"][0] == sm


HETERO = EXAMPLES / "llama3.1-70b-h100-a100-hetero.yaml"


def test_weighted_routing_carries_the_planned_shares():
    """Pool groups planned at different loads per replica: a Service per group and an HTTPRoute
    whose weights are the planned shares; manifests, Helm values and plan.json agree."""
    objs, values, plan = compiled(HETERO)
    assert plan["routing"]["mode"] == "weighted" == values["routing"]["mode"]
    loads = {g["pool"]: g["concurrencyPerReplica"] for g in plan["predicted"]["groups"]}
    assert len(set(loads.values())) == 2
    want = {g["pool"]: round(g["replicas"] * loads[g["pool"]]) for g in plan["placement"]["groups"]}
    assert {w["pool"]: w["weight"] for w in plan["routing"]["weights"]} == want
    (route,) = [o for o in objs if o["kind"] == "HTTPRoute"]
    assert route["spec"]["parentRefs"] == [{"name": "inference-gateway", "namespace": "gateway-system"}]
    stems = {g["pool"]: g["name"] for g in values["groups"]}
    assert {b["name"]: b["weight"] for b in route["spec"]["rules"][0]["backendRefs"]} == \
        {stems[p]: w for p, w in want.items()}
    services = [o for o in objs if o["kind"] == "Service"]
    assert sorted(s["metadata"]["name"] for s in services) == sorted(stems.values())
    for svc in services:  # each Service selects only its group's serving pods
        assert svc["spec"]["selector"]["app.kubernetes.io/instance"] == svc["metadata"]["name"]


def test_without_a_gateway_every_replica_is_planned_at_the_same_load(tmp_path):
    spec = tmp_path / "even.yaml"
    text = HETERO.read_text()
    spec.write_text(text[: text.index("    gateway:")])
    _, arts = compile_spec(spec, ("kubernetes",))
    files = {a.path: a.content for a in arts}
    plan = json.loads(files["plan.json"])
    assert plan["routing"]["mode"] == "even"
    assert len({g["concurrencyPerReplica"] for g in plan["predicted"]["groups"]}) == 1
    objs = yaml_docs(next(c for p, c in files.items() if p.startswith("kubernetes/")))
    assert [o["kind"] for o in objs].count("Service") == 1 and "HTTPRoute" not in [o["kind"] for o in objs]


def test_gated_models_get_the_token_by_default():
    objs, values, _ = compiled(EXAMPLES / "llama3.3-70b-fp8-8xh100.yaml")  # the spec names no secret
    assert values["hfTokenSecret"] == "hf-token"
    (dep,) = [o for o in objs if o["kind"] == "Deployment"]
    env = dep["spec"]["template"]["spec"]["containers"][0]["env"]
    assert {"name": "HF_TOKEN", "valueFrom": {"secretKeyRef": {"name": "hf-token", "key": "HF_TOKEN",
                                                               "optional": True}}} in env


def test_no_token_when_the_spec_turns_it_off(tmp_path):
    spec = tmp_path / "s.yaml"
    spec.write_text((EXAMPLES / "llama3.3-70b-fp8-8xh100.yaml").read_text().replace(
        "      scheduler: kubernetes", "      scheduler: kubernetes\ndeploy:\n  kubernetes:\n    hfTokenSecret: \"\"", 1))
    _, arts = compile_spec(spec, ("kubernetes",))
    assert "HF_TOKEN" not in next(a.content for a in arts if a.path.startswith("kubernetes/"))


def test_multi_node_pods_get_the_fabric_the_pool_names(tmp_path, run):
    spec = tmp_path / "s.yaml"
    text = (EXAMPLES / "llama3.1-405b-2x8xa100.yaml").read_text().replace("      scheduler: slurm\n", "")
    spec.write_text(text.replace("      interNode: infiniband", "      interNode: infiniband\n      rdmaResource: "
                                 "rdma/rdma_shared_device_a\n      networks: default/ib-net\n      ncclSocketIfname: eth0"
                                 "\n      glooSocketIfname: eth0\n      scheduler: kubernetes", 1))
    _, arts = compile_spec(spec, ("kubernetes",))
    objs = yaml_docs(next(a.content for a in arts if a.path.startswith("kubernetes/")))
    (lws,) = [o for o in objs if o["kind"] == "LeaderWorkerSet"]
    for role in ("leaderTemplate", "workerTemplate"):
        pod = lws["spec"]["leaderWorkerTemplate"][role]
        res = pod["spec"]["containers"][0]["resources"]
        assert res["requests"]["rdma/rdma_shared_device_a"] == res["limits"]["rdma/rdma_shared_device_a"] == "1"
        assert pod["metadata"]["annotations"]["k8s.v1.cni.cncf.io/networks"] == "default/ib-net"
        env = {e["name"]: e.get("value") for e in pod["spec"]["containers"][0]["env"]}
        assert env["NCCL_SOCKET_IFNAME"] == env["GLOO_SOCKET_IFNAME"] == "eth0"
        validate_object(lws)
    # without them, compile says on stderr what the pods will lack, and writes the same files
    plain = tmp_path / "plain.yaml"
    plain.write_text(text.replace("      interNode: infiniband", "      interNode: infiniband\n      scheduler: kubernetes", 1))
    code, out, err = run("compile", str(plain), "-o", str(tmp_path / "out"), "--target", "kubernetes")
    assert code == 0
    assert "warning: cluster.pools[0] (dgx-a100): multi-node pods over infiniband request no RDMA device" in err
