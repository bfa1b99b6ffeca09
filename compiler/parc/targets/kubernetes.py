"""Targets ``kubernetes`` and ``helm``.

One source of truth: :func:`values` computes the Helm values of ``charts/parc-serving``
from the plan; :func:`objects` turns values into Kubernetes objects exactly as the chart's
templates do (a test renders the chart with real Helm and compares object for object).

    out/kubernetes/<name>.yaml   every object, multi-document, stable order
    out/helm/values.yaml         values for charts/parc-serving

Per plan group: a Deployment when a replica fits one node, a LeaderWorkerSet
(leaderworkerset.x-k8s.io/v1, size = nodes per replica) when it spans nodes. One Service
across groups selects the serving pods (servers and LWS leaders); one PodDisruptionBudget;
a ConfigMap with parc's generated launch files when a pod runs one; a ServiceMonitor when
``deploy.kubernetes.serviceMonitor`` is set.
"""

from __future__ import annotations

import math
from typing import Any

from parc import engines
from parc.errors import InfeasibleError, UsageError
from parc.plan import PlanGroup
from parc.render import render
from parc.targets import CPU_PER_GPU, Artifact, Inputs
from parc.targets.launch import build as launch_files
from parc.targets.launch import header, script_name

CONFIG_MOUNT = "/etc/parc"
PHASE_LABEL = "parc.dev/phase"
CACHE_MOUNT = "/var/cache/parc/huggingface"
SHM_SIZE = "16Gi"  # NCCL and the engines' shared-memory transports (vLLM docs recommend a large /dev/shm)
GRACE_SECONDS = 60
METRICS = "/metrics"
#: Host memory requested per GPU (engines load safetensors through host memory).
MEM_GIB_PER_GPU = 16


def image(inputs: Inputs) -> str:
    """The container image: engine.image, else the pinned release's official image for the
    GPUs' vendor (the CUDA or the ROCm build)."""
    spec = inputs.res.spec
    if spec.engine.image:
        return spec.engine.image
    groups = inputs.groups_for("kubernetes")
    vendors = sorted({g.pool.gpu.vendor for g in groups})
    if len(vendors) > 1:
        raise UsageError(f"target kubernetes: the plan's groups run on {' and '.join(vendors)} GPUs, which need "
                         "different engine images; compile each vendor's pools as a spec of its own, or set "
                         "engine.image to a multi-vendor image")
    engine = inputs.plan.engine
    found = engines.get(engine).image(spec.engine.version, vendors[0])
    if not found:
        raise UsageError(f"target kubernetes: parc has no official {engine} image for {vendors[0].upper()} GPUs at "
                         "this release; set engine.image")
    return found


PLACEHOLDERS = engines.PLACEHOLDERS


def _k8s_args(argv: tuple[str, ...] | list[str]) -> list[str]:
    """argv for a container command, exactly as the launch script passes it: the kubelet
    expands ``$(VAR)`` and turns ``$$`` into ``$`` in container args, so every ``$`` is doubled,
    except in parc's own ``$(PARC_*)`` placeholders, which the pod's env fills in."""
    out = []
    for a in argv:
        esc = a.replace("$", "$$")
        for var in PLACEHOLDERS:
            esc = esc.replace(f"$$({var})", f"$({var})")
        out.append(esc)
    return out


#: Variables the kubelet fills from the pod itself (the Downward API).
FIELD_ENV = {engines.NODE_ADDR: "status.podIP"}


def _env(plan_env: dict[str, str], extra: dict[str, str]) -> list[dict[str, Any]]:
    """The container's environment, sorted by name; a placeholder of the pod's own address
    comes from the Downward API. The kubelet expands ``$(VAR)`` in values from variables
    defined before them, and every parc placeholder sorts before the engines' variables."""
    merged = {**plan_env, **extra}
    out: list[dict[str, Any]] = [{"name": k, "value": v} for k, v in merged.items()]
    text = " ".join(merged.values())
    out += [{"name": var, "valueFrom": {"fieldRef": {"fieldPath": path}}}
            for var, path in FIELD_ENV.items() if f"$({var})" in text]
    return sorted(out, key=lambda e: e["name"])


def _startup_seconds(weights_gib_per_gpu: float) -> int:
    """Time allowed for start-up: downloading and loading weights plus CUDA graph capture;
    10 minutes, plus 10 s per GiB of weights a GPU loads, rounded up to minutes."""
    return int(math.ceil((600 + 10 * weights_gib_per_gpu) / 60) * 60)


def group_values(inputs: Inputs, g: PlanGroup) -> dict[str, Any]:
    gpu = g.pool.gpu
    multi = g.nodes_per_replica > 1
    if g.launcher == "mpi":
        raise InfeasibleError(f"target kubernetes: a {g.engine} replica across {g.nodes_per_replica} nodes needs an "
                              "MPI launcher parc does not generate for Kubernetes; use engine vllm, or the slurm target")
    port = inputs.res.spec.deploy.port
    extra: dict[str, str] = {"HF_HOME": CACHE_MOUNT, engines.PORT: str(port)}
    annotations = {"k8s.v1.cni.cncf.io/networks": g.pool.networks} if multi and g.pool.networks else {}
    if g.phase != "both":
        extra[engines.KV_PORT] = str(port + engines.KV_PORT_OFFSET)
        bootstrap = (engines.capabilities()[g.engine].router or {}).get("bootstrap_annotation")
        if bootstrap and g.phase == "prefill":  # the router reads the KV side-channel port from it
            annotations[bootstrap] = str(port + engines.KV_PORT_OFFSET)
    if any(f"$({engines.CONFIG_DIR})" in a for p in g.processes for a in p.argv):
        extra[engines.CONFIG_DIR] = CONFIG_MOUNT
    caps = ["IPC_LOCK"] if multi and g.pool.inter_node in ("infiniband", "roce") else []
    if multi:
        head, work = g.process("head"), g.process("worker")
        lws = {**extra, engines.HEAD_ADDR: "$(LWS_LEADER_ADDRESS)"}
        if g.launcher == "ray":
            # the head runs parc's launch script (Ray bootstrap, then the server) from the ConfigMap
            leader = {"command": ["bash", f"{CONFIG_MOUNT}/{script_name(inputs, g, head)}"], "env": _env(dict(head.env), lws)}
            worker = {"command": _k8s_args(work.argv), "env": _env(dict(work.env), lws)}
        else:
            # data-parallel ranks: the leader serves the API; each worker pod runs its headless
            # ranks from the launch script, which computes its start rank from the LWS worker index
            leader = {"command": _k8s_args(head.argv), "env": _env(dict(head.env), lws)}
            worker = {"command": ["bash", f"{CONFIG_MOUNT}/{script_name(inputs, g, work)}"],
                      "env": _env(dict(work.env), {**lws, engines.NODE_RANK: "$(LWS_WORKER_INDEX)"})}
    else:
        server = g.process("server")
        leader = {"command": _k8s_args(server.argv), "env": _env(dict(server.env), extra)}
        worker = None
    return {
        "name": g.stem,
        "pool": g.pool.name,
        "engine": g.engine,
        "workload": "LeaderWorkerSet" if multi else "Deployment",
        "replicas": g.replicas,
        "size": g.nodes_per_replica,
        "gpusPerPod": g.gpus_per_node,
        "gpuResource": gpu.k8s_resource,
        "nodeSelector": ({gpu.k8s_product_label: gpu.k8s_product_value}
                         if gpu.k8s_product_label and gpu.k8s_product_value else {}),
        "cpu": str(CPU_PER_GPU * g.gpus_per_node),
        "memory": f"{MEM_GIB_PER_GPU * g.gpus_per_node}Gi",
        "startupSeconds": _startup_seconds(g.weights_gib_per_gpu),
        "capabilities": caps,
        "extraResources": ({g.pool.rdma_resource: str(g.pool.rdma_per_pod)}
                           if multi and g.pool.rdma_resource else {}),
        "annotations": dict(sorted(annotations.items())),
        "phase": g.phase,
        "weight": 0,
        "leader": leader,
        "worker": worker,
    }


def values(inputs: Inputs) -> dict[str, Any]:
    """Helm values for charts/parc-serving (also the input of :func:`objects`)."""
    res = inputs.res
    spec = res.spec
    k = spec.deploy.kubernetes
    mine = inputs.groups_for("kubernetes")
    files: dict[str, str] = {}
    if any(g.nodes_per_replica > 1 or g.files for g in mine):
        files = {a.path.split("/", 1)[1]: a.content for a in launch_files(inputs)}
    cache: dict[str, Any]
    if k.model_cache.pvc:
        cache = {"pvc": k.model_cache.pvc}
    elif k.model_cache.host_path:
        cache = {"hostPath": k.model_cache.host_path}
    else:
        cache = {"emptyDir": True}
    return {
        "name": spec.metadata.name,
        "namespace": k.namespace,
        "labels": dict(sorted(spec.metadata.labels.items())),
        "image": image(inputs),
        "imagePullPolicy": "IfNotPresent",
        "imagePullSecrets": [],
        "podAnnotations": {},
        "port": spec.deploy.port,
        "healthPath": engines.get(inputs.plan.engine).health_path,
        "metricsPath": METRICS,
        "service": {"type": k.service_type},
        "serviceMonitor": {"enabled": k.service_monitor, "interval": "30s"},
        "hfTokenSecret": k.hf_token_secret or "",
        "modelCache": cache,
        "shmSize": SHM_SIZE,
        "terminationGracePeriodSeconds": GRACE_SECONDS,
        "hostNetwork": k.host_network,
        "nodeSelector": dict(sorted(k.node_selector.items())),
        "tolerations": [t.model_dump(by_alias=True, exclude_none=True) for t in k.tolerations],
        "files": files,
        "routing": {"mode": inputs.plan.routing.mode,
                    "gateway": (k.gateway.model_dump(by_alias=True, exclude_none=True) if k.gateway else None)},
        "groups": [{**group_values(inputs, g), "weight": inputs.plan.routing.weights[g.index]} for g in mine],
        "router": router_values(inputs),
    }


#: Requests of the router pod (it proxies HTTP; no GPU).
ROUTER_CPU, ROUTER_MEMORY = "2", "4Gi"


def router_values(inputs: Inputs) -> dict[str, Any] | None:
    """The prefill/decode router of a disaggregated plan: a Deployment that finds the instances
    by their pods' labels (the router watches pods, so it gets a ServiceAccount and a Role)."""
    from parc import plan as plan_stage

    res, plan = inputs.res, inputs.plan
    if plan.router is None:
        return None
    spec = res.spec
    name = spec.metadata.name
    disc = engines.Discovery(
        spec.deploy.kubernetes.namespace,
        prefill=(("app.kubernetes.io/name", name), (PHASE_LABEL, "prefill")),
        decode=(("app.kubernetes.io/name", name), (PHASE_LABEL, "decode")), port=spec.deploy.port)
    proc = plan_stage.router(res, plan.groups, disc)
    assert proc is not None
    data = engines.capabilities()[plan.engine].router or {}
    return {"name": f"{name}-router", "image": spec.engine.router_image or data.get("image", ""),
            "command": _k8s_args(proc.argv), "env": _env(dict(proc.env), {}),
            "healthPath": data.get("health_path", "/health"), "cpu": ROUTER_CPU, "memory": ROUTER_MEMORY}


# ----------------------------------------------------------------------------- objects


def _labels(v: dict[str, Any], instance: str, component: str) -> dict[str, str]:
    return {**v["labels"], "app.kubernetes.io/name": v["name"], "app.kubernetes.io/instance": instance,
            "app.kubernetes.io/component": component, "app.kubernetes.io/managed-by": "parc"}


def _meta(v: dict[str, Any], name: str, labels: dict[str, str]) -> dict[str, Any]:
    return {"name": name, "namespace": v["namespace"], "labels": labels}


def _pod(v: dict[str, Any], g: dict[str, Any], role: str, proc: dict[str, Any]) -> dict[str, Any]:
    """A pod template for one process (server, LWS leader, or LWS worker)."""
    serving = role in ("server", "leader")
    labels = _labels(v, g["name"], role)
    if serving and g.get("phase", "both") == "both":
        labels["parc.dev/serving"] = "true"
    elif serving:  # an instance of a disaggregated plan: the router finds it by its phase
        labels[PHASE_LABEL] = g["phase"]
    env = list(proc["env"])
    if v["hfTokenSecret"]:
        env.append({"name": "HF_TOKEN", "valueFrom": {"secretKeyRef": {"name": v["hfTokenSecret"], "key": "HF_TOKEN",
                                                                          "optional": True}}})
    gpu = {g["gpuResource"]: str(g["gpusPerPod"]), **g["extraResources"]}  # quantities are strings in the client models
    container: dict[str, Any] = {
        "name": "engine",
        "image": v["image"],
        "imagePullPolicy": v["imagePullPolicy"],
        "command": proc["command"],
        "env": env,
    }
    if serving:
        container["ports"] = [{"name": "http", "containerPort": v["port"], "protocol": "TCP"}]
    container["resources"] = {"requests": {"cpu": g["cpu"], "memory": g["memory"], **gpu}, "limits": dict(gpu)}
    mounts: list[dict[str, Any]] = [{"name": "shm", "mountPath": "/dev/shm"}, {"name": "model-cache", "mountPath": CACHE_MOUNT}]
    if v["files"]:
        mounts.append({"name": "parc-files", "mountPath": CONFIG_MOUNT, "readOnly": True})
    container["volumeMounts"] = mounts
    if serving:
        probe = {"httpGet": {"path": v["healthPath"], "port": "http"}}
        container["startupProbe"] = {**probe, "periodSeconds": 10, "failureThreshold": g["startupSeconds"] // 10}
        container["readinessProbe"] = {**probe, "periodSeconds": 10, "failureThreshold": 3}
        container["livenessProbe"] = {**probe, "periodSeconds": 30, "timeoutSeconds": 5, "failureThreshold": 3}
    caps: dict[str, Any] = {"drop": ["ALL"]}
    if g["capabilities"]:
        caps["add"] = list(g["capabilities"])
    container["securityContext"] = {"allowPrivilegeEscalation": False, "privileged": False, "capabilities": caps,
                                    "seccompProfile": {"type": "RuntimeDefault"}}
    cache = v["modelCache"]
    if "pvc" in cache:
        cache_vol: dict[str, Any] = {"persistentVolumeClaim": {"claimName": cache["pvc"]}}
    elif "hostPath" in cache:
        cache_vol = {"hostPath": {"path": cache["hostPath"], "type": "DirectoryOrCreate"}}
    else:
        cache_vol = {"emptyDir": {}}
    volumes = [{"name": "shm", "emptyDir": {"medium": "Memory", "sizeLimit": v["shmSize"]}},
               {"name": "model-cache", **cache_vol}]
    if v["files"]:
        volumes.append({"name": "parc-files", "configMap": {"name": f"{v['name']}-parc", "defaultMode": 0o555}})
    spec: dict[str, Any] = {
        "automountServiceAccountToken": False,
        "terminationGracePeriodSeconds": v["terminationGracePeriodSeconds"],
    }
    if v["hostNetwork"]:
        spec["hostNetwork"] = True
        spec["dnsPolicy"] = "ClusterFirstWithHostNet"
    selector = {**v["nodeSelector"], **g["nodeSelector"]}
    if selector:
        spec["nodeSelector"] = dict(sorted(selector.items()))
    if v["tolerations"]:
        spec["tolerations"] = v["tolerations"]
    if v["imagePullSecrets"]:
        spec["imagePullSecrets"] = v["imagePullSecrets"]
    spec["containers"] = [container]
    spec["volumes"] = volumes
    meta: dict[str, Any] = {"labels": labels}
    annotations = {**v["podAnnotations"], **g["annotations"]}
    if annotations:
        meta["annotations"] = dict(sorted(annotations.items()))
    return {"metadata": meta, "spec": spec}


def _workload(v: dict[str, Any], g: dict[str, Any]) -> dict[str, Any]:
    if g["workload"] == "Deployment":
        pod = _pod(v, g, "server", g["leader"])
        return {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": _meta(v, g["name"], _labels(v, g["name"], "server")),
            "spec": {
                "replicas": g["replicas"],
                "selector": {"matchLabels": {"app.kubernetes.io/name": v["name"],
                                             "app.kubernetes.io/instance": g["name"],
                                             "app.kubernetes.io/component": "server"}},
                # GPUs rarely have room for a surge pod: replace one replica at a time
                "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 0, "maxUnavailable": 1}},
                "template": pod,
            },
        }
    return {
        "apiVersion": "leaderworkerset.x-k8s.io/v1",
        "kind": "LeaderWorkerSet",
        "metadata": _meta(v, g["name"], _labels(v, g["name"], "leader")),
        "spec": {
            "replicas": g["replicas"],
            "startupPolicy": "LeaderCreated",
            "leaderWorkerTemplate": {
                "size": g["size"],
                "restartPolicy": "RecreateGroupOnPodRestart",
                "leaderTemplate": _pod(v, g, "leader", g["leader"]),
                "workerTemplate": _pod(v, g, "worker", g["worker"]),
            },
        },
    }


def _router(v: dict[str, Any], r: dict[str, Any]) -> list[dict[str, Any]]:
    """The router's ServiceAccount, Role (read pods), RoleBinding and Deployment."""
    labels = _labels(v, r["name"], "router")
    meta = _meta(v, r["name"], labels)
    probe = {"httpGet": {"path": r["healthPath"], "port": "http"}}
    container: dict[str, Any] = {
        "name": "router",
        "image": r["image"],
        "imagePullPolicy": v["imagePullPolicy"],
        "command": r["command"],
        **({"env": r["env"]} if r["env"] else {}),
        "ports": [{"name": "http", "containerPort": v["port"], "protocol": "TCP"}],
        "resources": {"requests": {"cpu": r["cpu"], "memory": r["memory"]}, "limits": {"memory": r["memory"]}},
        "readinessProbe": {**probe, "periodSeconds": 10, "failureThreshold": 3},
        "livenessProbe": {**probe, "periodSeconds": 30, "timeoutSeconds": 5, "failureThreshold": 3},
        "securityContext": {"allowPrivilegeEscalation": False, "privileged": False, "capabilities": {"drop": ["ALL"]},
                            "seccompProfile": {"type": "RuntimeDefault"}},
    }
    spec: dict[str, Any] = {"serviceAccountName": r["name"], "automountServiceAccountToken": True,
                            "terminationGracePeriodSeconds": v["terminationGracePeriodSeconds"]}
    if v["nodeSelector"]:
        spec["nodeSelector"] = dict(v["nodeSelector"])
    if v["tolerations"]:
        spec["tolerations"] = v["tolerations"]
    if v["imagePullSecrets"]:
        spec["imagePullSecrets"] = v["imagePullSecrets"]
    spec["containers"] = [container]
    pod_labels = {**labels, "parc.dev/serving": "true"}
    return [
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": meta, "automountServiceAccountToken": True},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role", "metadata": meta,
         "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "watch"]}]},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding", "metadata": meta,
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": r["name"]},
         "subjects": [{"kind": "ServiceAccount", "name": r["name"], "namespace": v["namespace"]}]},
        {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": meta,
         "spec": {"replicas": 1,
                  "selector": {"matchLabels": {"app.kubernetes.io/name": v["name"],
                                               "app.kubernetes.io/instance": r["name"],
                                               "app.kubernetes.io/component": "router"}},
                  "template": {"metadata": {"labels": pod_labels}, "spec": spec}}},
    ]


def objects(v: dict[str, Any]) -> list[dict[str, Any]]:
    """Every Kubernetes object for values ``v``, in a stable order."""
    common = _labels(v, v["name"], "server")
    serving = {"app.kubernetes.io/name": v["name"], "parc.dev/serving": "true"}
    out: list[dict[str, Any]] = []
    if v["files"]:
        out.append({"apiVersion": "v1", "kind": "ConfigMap",
                    "metadata": _meta(v, f"{v['name']}-parc", _labels(v, v["name"], "config")),
                    "data": dict(sorted(v["files"].items()))})
    ports = [{"name": "http", "port": v["port"], "targetPort": "http", "protocol": "TCP"}]
    weighted = v["routing"]["mode"] == "weighted"
    if not weighted:
        out.append({"apiVersion": "v1", "kind": "Service", "metadata": _meta(v, v["name"], common),
                    "spec": {"type": v["service"]["type"], "selector": serving, "ports": ports}})
    else:  # one Service per group, weighted by the HTTPRoute below
        for g in v["groups"]:
            out.append({"apiVersion": "v1", "kind": "Service", "metadata": _meta(v, g["name"], _labels(v, g["name"], "server")),
                        "spec": {"type": v["service"]["type"],
                                 "selector": {**serving, "app.kubernetes.io/instance": g["name"]}, "ports": ports}})
    out += [_workload(v, g) for g in v["groups"]]
    if v.get("router"):
        out += _router(v, v["router"])
    if weighted:
        gw = v["routing"]["gateway"]
        out.append({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
                    "metadata": _meta(v, v["name"], common),
                    "spec": {"parentRefs": [dict(gw)],
                             "rules": [{"matches": [{"path": {"type": "PathPrefix", "value": "/"}}],
                                        "backendRefs": [{"name": g["name"], "port": v["port"], "weight": g["weight"]}
                                                        for g in v["groups"]]}]}})
    out.append({"apiVersion": "policy/v1", "kind": "PodDisruptionBudget", "metadata": _meta(v, v["name"], common),
                "spec": {"maxUnavailable": 1, "selector": {"matchLabels": serving}}})
    if v["serviceMonitor"]["enabled"]:
        out.append({"apiVersion": "monitoring.coreos.com/v1", "kind": "ServiceMonitor",
                    "metadata": _meta(v, v["name"], common),
                    "spec": {"selector": {"matchLabels": {"app.kubernetes.io/name": v["name"],
                                                          "app.kubernetes.io/component": "server"}},
                             "namespaceSelector": {"matchNames": [v["namespace"]]},
                             "endpoints": [{"port": "http", "path": v["metricsPath"],
                                            "interval": v["serviceMonitor"]["interval"]}]}})
    return out


def build_manifests(inputs: Inputs) -> list[Artifact]:
    from parc.yamlout import dump_all

    docs = dump_all(objects(values(inputs)))
    body = render("kubernetes/manifests.yaml.j2", h=header(inputs), documents=docs)
    return [Artifact(f"kubernetes/{inputs.res.spec.metadata.name}.yaml", body)]


def build_values(inputs: Inputs) -> list[Artifact]:
    body = render("kubernetes/values.yaml.j2", h=header(inputs), values=values(inputs))
    return [Artifact("helm/values.yaml", body)]
