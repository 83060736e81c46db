"""Benign telemetry, one generator per format, all reading the same :class:`~.world.World`.

The shapes follow what these systems show in production: per-principal request rates that
come in sessions and follow the time of day, a handful of client errors and upstream
failures, latencies that grow with the tokens generated and the model's size, GPUs whose
load follows their pod's work (idle spares stay idle), kubelet and controller heartbeats
in the audit log, and Falco's routine notices.
"""

from __future__ import annotations

import math
import random

from ramparts.timeutil import NS

from . import formats as fmt
from .world import EMBED_MODEL, H100, GpuLoad, World, api_key, uuid_text

SCRAPE_INTERVAL_S = 15  # dcgm-exporter's collection interval as commonly configured (default 30)
GATEWAY_HOST = "llm.example.com"

# Per model: (time to first token ms, ms per output token, upstream pod IP).
_MODEL_SPEED = {
    "llama-3-8b-instruct": (90.0, 11.0, "10.42.1.17:8000"),
    "mistral-7b-instruct-v0.3": (85.0, 10.5, "10.42.1.23:8000"),
    "qwen2.5-32b-instruct": (240.0, 27.0, "10.42.2.11:8000"),
    EMBED_MODEL: (12.0, 0.0, "10.42.1.31:80"),
}
_BACKEND = {
    "llama-3-8b-instruct": "inference/vllm-llama-3-8b-instruct/route/0",
    "mistral-7b-instruct-v0.3": "inference/vllm-mistral-7b-instruct/route/0",
    "qwen2.5-32b-instruct": "inference/vllm-qwen2-5-32b-instruct/route/0",
    EMBED_MODEL: "inference/tei-bge-m3/route/0",
}


def diurnal(ts: int) -> float:
    """Relative load at a time of day (UTC): a trough around 03:00, a peak around 15:00."""
    hour = (ts // NS % 86400) / 3600.0
    return 1.0 + 0.45 * math.sin(2 * math.pi * (hour - 9.0) / 24.0)


def _lognormal(r: random.Random, median: float, sigma: float, lo: int, hi: int) -> int:
    return int(min(hi, max(lo, r.lognormvariate(math.log(median), sigma))))


def request_id(r: random.Random) -> str:
    return uuid_text(r)


# -- gateway ----------------------------------------------------------------------------------------
def gateway(world: World) -> None:
    """Envoy AI Gateway access log lines of every principal, plus one client stuck on a revoked key."""
    for i, p in enumerate(world.principals):
        r = world.rng(f"gateway:{i}")
        base = world.rate * p.weight
        peak = base * 1.6 * 1.45
        t = world.start
        # Sessions: busy stretches (x1.6) and quiet ones (x0.3), minutes long.
        active = r.random() < 0.6
        switch = t + int(r.expovariate(1 / (180 if active else 120)) * NS)
        while True:
            t += int(r.expovariate(peak) * NS) + 1
            if t >= world.end:
                break
            while t >= switch:
                active = not active
                switch += int(r.expovariate(1 / (180 if active else 120)) * NS)
            if r.random() * peak > base * (1.6 if active else 0.3) * diurnal(t):
                continue
            world.out.add("envoy_json", t, _request(r, t, p.api_key, r.choice(p.src_ips), p.user_agent,
                                                     r.choice(p.models), p.error_rate))
    # A nightly job whose key was revoked last week keeps retrying: steady, slow 401s from
    # one address. Legitimate noise a stuffing detector must not page on.
    r = world.rng("gateway:stale-key")
    stale_key, ip = api_key(r), "203.0.113.41"
    t = world.start + int(r.uniform(0, 30) * NS)
    while t < world.end:
        world.out.add("envoy_json", t, fmt.envoy_line(
            ts=t, method="POST", path="/v1/chat/completions", status=401, flags="-", bytes_in=r.randrange(700, 1400),
            bytes_out=61, duration_ms=r.randrange(1, 4), upstream_ms=None, src_ip=ip,
            user_agent="python-requests/2.32.3", request_id=request_id(r), authority=GATEWAY_HOST,
            upstream_host=None, api_key=stale_key, model="llama-3-8b-instruct", backend=None,
            tokens_in=None, tokens_out=None))
        t += int(r.uniform(40, 80) * NS)


def _request(r: random.Random, t: int, key: str, ip: str, ua: str, model: str, error_rate: float) -> bytes:
    ttft, per_token, upstream = _MODEL_SPEED[model]
    embed = model == EMBED_MODEL
    path = "/v1/embeddings" if embed else "/v1/chat/completions"
    common = dict(ts=t, method="POST", path=path, src_ip=ip, user_agent=ua, request_id=request_id(r),
                  authority=GATEWAY_HOST, api_key=key, model=model)
    u = r.random()
    if u < error_rate:
        if r.random() < 0.6:  # the gateway's rate limit: answered locally, no upstream
            return fmt.envoy_line(**common, status=429, flags="RL", bytes_in=r.randrange(600, 6000), bytes_out=18,
                                  duration_ms=r.randrange(0, 2), upstream_ms=None, upstream_host=None,
                                  backend=_BACKEND[model], tokens_in=None, tokens_out=None)
        up = r.randrange(2, 9)  # vLLM rejects it (context too long, bad parameters)
        return fmt.envoy_line(**common, status=400, flags="-", bytes_in=r.randrange(600, 60000), bytes_out=r.randrange(150, 400),
                              duration_ms=up + r.randrange(1, 3), upstream_ms=up, upstream_host=upstream,
                              backend=_BACKEND[model], tokens_in=None, tokens_out=None)
    if u < error_rate + 0.004:
        if r.random() < 0.7:  # the pod restarting: connection refused, retried, failed
            return fmt.envoy_line(**common, status=503, flags="UF,URX", bytes_in=r.randrange(600, 6000), bytes_out=91,
                                  duration_ms=r.randrange(2, 40), upstream_ms=None, upstream_host=upstream,
                                  backend=_BACKEND[model], tokens_in=None, tokens_out=None)
        return fmt.envoy_line(**common, status=504, flags="UT", bytes_in=r.randrange(600, 6000), bytes_out=24,
                              duration_ms=60000 + r.randrange(0, 5), upstream_ms=None, upstream_host=upstream,
                              backend=_BACKEND[model], tokens_in=None, tokens_out=None)
    if embed:
        tin, tout = _lognormal(r, 180, 0.9, 2, 8192), 0
        up = int(ttft + tin * 0.04 * r.uniform(0.8, 1.3))
    else:
        tin, tout = _lognormal(r, 450, 0.9, 8, 16000), _lognormal(r, 220, 0.8, 1, 4096)
        up = int((ttft + tin * 0.02 + tout * per_token) * r.uniform(0.85, 1.25))
    return fmt.envoy_line(**common, status=200, flags="-", bytes_in=tin * 4 + r.randrange(150, 400),
                          bytes_out=(tout * 4 + r.randrange(350, 500)) if not embed else 4200 + r.randrange(0, 50),
                          duration_ms=up + r.randrange(1, 6), upstream_ms=up, upstream_host=upstream,
                          backend=_BACKEND[model], tokens_in=tin, tokens_out=tout)


# -- KServe payload logs --------------------------------------------------------------------------------
KSERVE_CALLERS = (("svc-payments", "10.42.3.14", 0.30), ("svc-checkout", "10.42.3.27", 0.22),
                  ("svc-risk-batch", "10.42.4.8", 0.15), ("svc-crm-sync", "10.42.5.19", 0.10),
                  ("svc-retention", "10.42.5.33", 0.10), ("analyst-notebook", "10.42.6.40", 0.05),
                  ("svc-fraud-review", "10.42.3.51", 0.05), ("svc-ledger", "10.42.4.62", 0.03))


def model_weights(world: World, model: str, n: int) -> tuple[list[float], list[float], list[float], float]:
    """The fixed (per seed) feature means, scales and the linear score behind a model's outputs,
    so that outputs depend on inputs the way a trained model's would."""
    r = world.rng(f"kserve-model:{model}")
    means = [round(r.uniform(-2, 5), 2) for _ in range(n)]
    scales = [round(r.uniform(0.3, 3), 2) for _ in range(n)]
    coefs = [r.uniform(-1.2, 1.2) / s for s in scales]
    return means, scales, coefs, r.uniform(-3.5, -1.5)


def kserve(world: World) -> None:
    """Request and response CloudEvents of the KServe predictors, from in-cluster callers."""
    from .world import KSERVE_MODELS

    r = world.rng("kserve")
    models = [(name, proto, n, version, model_weights(world, name, n)) for name, proto, n, version in KSERVE_MODELS]
    names = [c[0] for c in KSERVE_CALLERS]
    weights = [c[2] for c in KSERVE_CALLERS]
    rate = world.rate / 10
    t = world.start
    while True:
        t += int(r.expovariate(rate * 1.45) * NS) + 1
        if t >= world.end:
            break
        if r.random() * 1.45 > diurnal(t):
            continue
        caller = r.choices(range(len(names)), weights)[0]
        name, proto, n, version, w = models[0] if r.random() < 0.7 else models[1]
        rows = 1 if r.random() < 0.8 else r.randrange(2, 5)
        prediction(world, r, t, caller=names[caller], src_ip=KSERVE_CALLERS[caller][1], model=name,
                   protocol=proto, version=version, weights=w, rows=[features(r, w, n) for _ in range(rows)])


def features(r: random.Random, weights, n: int) -> list[float]:
    means, scales, _coefs, _b = weights
    return [round(r.gauss(means[j], scales[j]), 3) for j in range(n)]


def prediction(world: World, r: random.Random, t: int, *, caller: str, src_ip: str, model: str, protocol: str,
               version: str | None, weights, rows: list[list[float]]) -> None:
    """One inference as KServe's logger records it: a request event, then its response."""
    means, _scales, coefs, bias = weights
    scores = [round(1 / (1 + math.exp(-(bias + sum(c * (x - m) for c, x, m in zip(coefs, row, means))))), 5)
              for row in rows]
    ce_id = uuid_text(r)
    headers = {"X-Forwarded-For": [src_ip], "X-User-Id": [caller]}
    if protocol == "v2":
        n = len(rows[0])
        req = {"inputs": [{"name": "input-0", "shape": [len(rows), n], "datatype": "FP32",
                           "data": [x for row in rows for x in row]}]}
        resp = {"model_name": model, "model_version": version, "id": ce_id, "parameters": {},
                "outputs": [{"name": "output-0", "shape": [len(rows)], "datatype": "FP32", "data": scores}]}
    else:
        req = {"instances": rows}
        resp = {"predictions": scores}
    namespace = "models"
    world.out.add("kserve", t, fmt.kserve_event(ce_id=ce_id, is_request=True, ts=t, service=model,
                                                namespace=namespace, endpoint="default", headers=headers, data=req))
    done = t + int(r.uniform(2.5, 25.0) * 1e6)
    world.out.add("kserve", done, fmt.kserve_event(ce_id=ce_id, is_request=False, ts=done, service=model,
                                                   namespace=namespace, endpoint="default", headers=None, data=resp))


# -- DCGM -----------------------------------------------------------------------------------------------------
def _fb_total(model_name: str) -> int:
    return 81559 if model_name == H100 else 46068


def _load_for(world: World, gpu, t: int, r: random.Random) -> GpuLoad:
    for start, end, load in world.gpu_overrides.get(gpu.uuid, ()):
        if start <= t < end:
            return load
    if gpu.busy <= 0:
        return GpuLoad(0, 1 if gpu.model_name == H100 else 0, 0, 0.0, 0.0, 95_000, 180_000)
    training = gpu.pod is not None and gpu.pod[0] == "training"
    if training:
        util = min(100.0, r.gauss(gpu.busy, 1.5))
        return GpuLoad(util, 71_800 + r.uniform(-200, 200), 0, r.uniform(0.52, 0.64), util / 100 * 0.93,
                       r.uniform(2.1e9, 2.6e9), r.uniform(2.0e9, 2.5e9))
    # Serving: vLLM pre-allocates 90% of memory; load follows the traffic (and time of day).
    util = min(100.0, max(3.0, r.gauss(gpu.busy * diurnal(t), 9.0)))
    fb = 0.9 * _fb_total(gpu.model_name) if gpu.model_name == H100 else 11_500
    return GpuLoad(util, fb + r.uniform(-30, 30), 0, util / 100 * r.uniform(0.35, 0.5), util / 100 * 0.85,
                   util * r.uniform(2.0e6, 3.0e6), util * r.uniform(4.0e6, 6.0e6))


def dcgm(world: World) -> None:
    """dcgm-exporter scrapes of every GPU, written with per-sample millisecond timestamps."""
    r = world.rng("dcgm")
    world.out.header["dcgm"] = fmt.dcgm_header()
    step = SCRAPE_INTERVAL_S * NS
    t = world.start - world.start % step + step if world.start % step else world.start
    labels = {g.uuid: fmt.dcgm_labels(index=g.index, uuid=g.uuid, model_name=g.model_name, hostname=g.node,
                                      pod=g.pod) for g in world.gpus}
    while t < world.end:
        values = {}
        for g in world.gpus:
            load = _load_for(world, g, t, r)
            h100 = g.model_name == H100
            util = int(round(load.util_pct))
            idle_w, per_pct = (69.0, 5.3) if h100 else (33.0, 2.6)
            power = load.power_w or idle_w + util * per_pct + r.uniform(-4, 4)
            fb_used = int(load.fb_used_mib)
            values[g.uuid] = {
                "DCGM_FI_DEV_SM_CLOCK": (1980 if h100 else 2520) if util else (345 if h100 else 210),
                "DCGM_FI_DEV_GPU_TEMP": int(31 + util * 0.36 + r.uniform(-1, 1)),
                "DCGM_FI_DEV_POWER_USAGE": round(power, 3),
                "DCGM_FI_DEV_GPU_UTIL": util,
                "DCGM_FI_DEV_MEM_COPY_UTIL": (int(load.mem_copy_pct) if load.mem_copy_pct is not None else
                                              int(util * 0.35 * load.tensor_active * 2.5) if load.tensor_active else 0),
                "DCGM_FI_DEV_FB_FREE": _fb_total(g.model_name) - fb_used,
                "DCGM_FI_DEV_FB_USED": fb_used,
                "DCGM_FI_PROF_SM_ACTIVE": round(load.sm_active, 6),
                "DCGM_FI_PROF_PIPE_TENSOR_ACTIVE": round(load.tensor_active, 6),
                "DCGM_FI_PROF_PCIE_TX_BYTES": int(load.pcie_tx_bytes * r.uniform(0.9, 1.1)),
                "DCGM_FI_PROF_PCIE_RX_BYTES": int(load.pcie_rx_bytes * r.uniform(0.9, 1.1)),
            }
        # The exporter writes metric by metric, every GPU under each.
        for name, _kind, _help in fmt.DCGM_FIELDS:
            for g in world.gpus:
                world.out.add("dcgm", t, fmt.dcgm_sample(name, labels[g.uuid], values[g.uuid][name], t))
        t += step


# -- Falco ------------------------------------------------------------------------------------------------------
def falco(world: World) -> None:
    """Falco's routine notices: Prometheus talking to the API server, the device plugin starting."""
    r = world.rng("falco")
    t = world.start + int(r.uniform(5, 40) * NS)
    while t < world.end:
        if r.random() < 0.8:
            node = r.choice(("cpu-node-1", "cpu-node-2"))
            pod = r.choice(("prometheus-k8s-0", "prometheus-k8s-1"))
            cid = f"{r.getrandbits(48):012x}"
            world.out.add("falco", t, fmt.falco_alert(
                ts=t, hostname=node, rule="Contact K8S API Server From Container", priority="Notice",
                output=(f"Unexpected connection to K8s API Server from container (connection=10.42.7.9:{r.randrange(32768, 60999)}"
                        f"->10.96.0.1:443 lport=443 rport={r.randrange(32768, 60999)} fd_type=ipv4 fd_proto=tcp "
                        f"evt_type=connect user=nobody user_uid=65534 user_loginuid=-1 process=prometheus "
                        f"proc_exepath=/bin/prometheus parent=containerd-shim command=prometheus "
                        f"--config.file=/etc/prometheus/config_out/prometheus.env.yaml terminal=0 "
                        f"container_id={cid} container_image=quay.io/prometheus/prometheus "
                        f"container_image_tag=v2.54.1 container_name=prometheus k8s_ns=monitoring k8s_pod_name={pod})"),
                tags=["T1565", "container", "k8s", "maturity_stable", "mitre_discovery", "network"],
                fields={"container.id": cid, "container.image.repository": "quay.io/prometheus/prometheus",
                        "container.image.tag": "v2.54.1", "container.name": "prometheus", "fd.name":
                        "10.42.7.9->10.96.0.1:443", "fd.rip": "10.96.0.1", "k8s.ns.name": "monitoring",
                        "k8s.pod.name": pod, "proc.cmdline": "prometheus --config.file=/etc/prometheus/config_out/prometheus.env.yaml",
                        "proc.name": "prometheus", "proc.pname": "containerd-shim", "user.name": "nobody"}))
        else:
            node = r.choice([g.node for g in world.gpus])
            cid = f"{r.getrandbits(48):012x}"
            pod = f"nvidia-device-plugin-daemonset-{r.getrandbits(20):05x}"[:36]
            world.out.add("falco", t, fmt.falco_alert(
                ts=t, hostname=node, rule="Launch Privileged Container", priority="Informational",
                output=(f"Privileged container started (user=root user_loginuid=0 command=container:{cid} pid=1 "
                        f"k8s.ns=kube-system k8s.pod={pod} container={cid} "
                        f"image=nvcr.io/nvidia/k8s-device-plugin:v0.16.2)"),
                tags=["T1610", "cis", "container", "maturity_incubating", "mitre_execution"],
                fields={"container.id": cid, "container.image.repository": "nvcr.io/nvidia/k8s-device-plugin",
                        "container.image.tag": "v0.16.2", "container.name": "nvidia-device-plugin-ctr",
                        "k8s.ns.name": "kube-system", "k8s.pod.name": pod, "proc.cmdline": "nvidia-device-plugin",
                        "proc.name": "nvidia-device-plugin", "user.name": "root"}))
        t += int(r.expovariate(1 / 25.0) * NS) + 1


# -- Kubernetes audit ------------------------------------------------------------------------------------------
NODE_IPS = {"gpu-node-1": "10.0.1.11", "gpu-node-2": "10.0.1.12", "gpu-node-3": "10.0.1.13",
            "cpu-node-1": "10.0.1.21", "cpu-node-2": "10.0.1.22"}
KUBELET_UA = "kubelet/v1.30.4 (linux/amd64) kubernetes/8a9c0fa"


def audit(world: World) -> None:
    """The audit log's steady traffic: node and controller heartbeats, Prometheus listing pods,
    engineers reading pods and logs."""
    r = world.rng("k8s_audit")

    def request(t: int, verb: str, uri: str, user: str, groups: list[str], ip: str, ua: str, ref: dict,
                code: int = 200) -> None:
        took = int(r.uniform(0.6, 12.0) * 1e6)
        for at, line in fmt.audit_stages(audit_id=uuid_text(r), verb=verb, uri=uri, user=user, groups=groups,
                                         src_ip=ip, user_agent=ua, object_ref=ref, received=t, code=code,
                                         stages=[("RequestReceived", t), ("ResponseComplete", t + took)]):
            world.out.add("k8s_audit", at, line)

    # Kubelets renew their node lease every 10 s.
    for node, ip in NODE_IPS.items():
        t = world.start + int(r.uniform(0, 10) * NS)
        while t < world.end:
            request(t, "update", f"/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/{node}?timeout=10s",
                    f"system:node:{node}", ["system:nodes", "system:authenticated"], ip, KUBELET_UA,
                    {"resource": "leases", "namespace": "kube-node-lease", "name": node,
                     "apiGroup": "coordination.k8s.io", "apiVersion": "v1"})
            t += int(r.uniform(9.9, 10.1) * NS)
    # Leader election of the controller manager and the scheduler: every 2 s.
    for comp in ("kube-controller-manager", "kube-scheduler"):
        t = world.start + int(r.uniform(0, 2) * NS)
        while t < world.end:
            request(t, "update", f"/apis/coordination.k8s.io/v1/namespaces/kube-system/leases/{comp}?timeout=5s",
                    f"system:{comp}", ["system:authenticated"], "10.0.0.10",
                    f"{comp}/v1.30.4 (linux/amd64) kubernetes/8a9c0fa/leader-election",
                    {"resource": "leases", "namespace": "kube-system", "name": comp,
                     "apiGroup": "coordination.k8s.io", "apiVersion": "v1"})
            t += int(r.uniform(1.95, 2.05) * NS)
    # Prometheus' service discovery lists pods every 30 s.
    t = world.start + int(r.uniform(0, 30) * NS)
    while t < world.end:
        request(t, "list", f"/api/v1/pods?limit=500&resourceVersion={r.randrange(10**7, 10**8)}",
                "system:serviceaccount:monitoring:prometheus-k8s",
                ["system:serviceaccounts", "system:serviceaccounts:monitoring", "system:authenticated"],
                "10.42.7.9", "prometheus/2.54.1", {"resource": "pods", "apiVersion": "v1"})
        t += int(r.uniform(29.5, 30.5) * NS)
    # Engineers look at the serving pods and their logs.
    pods = [w.pod for w in world.serving_pods()]
    t = world.start + int(r.uniform(10, 60) * NS)
    while t < world.end:
        user = r.choice(("priya@example.com", "tomas@example.com", "sre-oncall@example.com"))
        ip = r.choice(("198.51.100.4", "198.51.100.9"))
        ua = "kubectl/v1.30.2 (linux/amd64) kubernetes/3968350"
        groups = ["ml-platform", "system:authenticated"]
        if r.random() < 0.5:
            request(t, "list", "/api/v1/namespaces/inference/pods?limit=500", user, groups, ip, ua,
                    {"resource": "pods", "namespace": "inference", "apiVersion": "v1"})
        else:
            pod = r.choice(pods)
            request(t, "get", f"/api/v1/namespaces/inference/pods/{pod}/log?container=vllm&tailLines=200", user,
                    groups, ip, ua, {"resource": "pods", "namespace": "inference", "name": pod,
                                     "apiVersion": "v1", "subresource": "log"})
        t += int(r.expovariate(1 / 45.0) * NS) + 1


# -- kubectl get pods -o json -----------------------------------------------------------------------------------
def pods(world: World) -> None:
    """The pod list at the start of the run: the GPU pods (authorized work) and a few others."""
    from ramparts.timeutil import format_rfc3339

    r = world.rng("k8s_pods")
    items = []

    def pod(namespace, name, container, image, node, started, gpus: tuple[str, ...] = (), port=8000):
        created = started - int(r.uniform(2, 40) * NS)
        resources: dict = {"limits": {"cpu": "8", "memory": "64Gi"}, "requests": {"cpu": "4", "memory": "32Gi"}}
        env = [{"name": "POD_NAME", "valueFrom": {"fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.name"}}}]
        if gpus:
            resources["limits"]["nvidia.com/gpu"] = str(len(gpus))
            resources["requests"]["nvidia.com/gpu"] = str(len(gpus))
            # Pinned devices: the pods are scheduled with their GPU UUIDs (the list is what the
            # unauthorized-compute detector compares DCGM's GPUs against).
            env.append({"name": "NVIDIA_VISIBLE_DEVICES", "value": ",".join(gpus)})
        ts = lambda ns: format_rfc3339(ns - ns % NS)  # noqa: E731  (Kubernetes times have seconds only)
        items.append({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"creationTimestamp": ts(created), "labels": {"app": name.rsplit("-", 1)[0]},
                         "name": name, "namespace": namespace, "resourceVersion": str(r.randrange(10**7, 10**8)),
                         "uid": uuid_text(r)},
            "spec": {"containers": [{"env": env, "image": image, "imagePullPolicy": "IfNotPresent", "name": container,
                                     "ports": [{"containerPort": port, "name": "http", "protocol": "TCP"}],
                                     "resources": resources}],
                     "nodeName": node, "restartPolicy": "Always", "schedulerName": "default-scheduler",
                     "serviceAccountName": "default" if namespace != "training" else "trainer"},
            "status": {"containerStatuses": [{"containerID": f"containerd://{r.getrandbits(256):064x}",
                                              "image": image, "name": container, "ready": True, "restartCount": 0,
                                              "started": True,
                                              "state": {"running": {"startedAt": ts(started + 9 * NS)}}}],
                       "hostIP": NODE_IPS.get(node, "10.0.1.30"), "phase": "Running",
                       "podIP": f"10.42.{r.randrange(1, 7)}.{r.randrange(2, 250)}", "qosClass": "Burstable",
                       "startTime": ts(started)},
        })

    for w in world.workloads:
        pod(w.namespace, w.pod, w.container, w.image, w.node, w.started_ns, w.gpus)
    pod("envoy-gateway-system", "envoy-ai-gateway-5c8f7d6b9-kq2xw", "envoy", "envoyproxy/envoy:distroless-v1.32.1",
        "cpu-node-1", world.start - 400 * 3600 * NS, port=10080)
    pod("monitoring", "prometheus-k8s-0", "prometheus", "quay.io/prometheus/prometheus:v2.54.1", "cpu-node-1",
        world.start - 900 * 3600 * NS, port=9090)
    pod("models", "churn-lgbm-predictor-00001-deployment-6b7f9", "kserve-container", "kserve/lgbserver:v0.14.0",
        "cpu-node-2", world.start - 300 * 3600 * NS, port=8080)
    items.sort(key=lambda p: (p["metadata"]["namespace"], p["metadata"]["name"]))
    world.out.document["k8s_pods"] = (fmt.pod_list(items), len(items))


GENERATORS = {"envoy_json": gateway, "kserve": kserve, "dcgm": dcgm, "falco": falco, "k8s_audit": audit,
              "k8s_pods": pods}
