"""Records spelled the way the upstream tools write them: pure functions from values to bytes.

Generators decide *what* happened; these decide how Envoy AI Gateway, KServe's payload
logger, dcgm-exporter, Falco and the Kubernetes API server would have written it. Attack
injectors use the same functions, so an attack's lines cannot be told from benign lines by
their spelling.
"""

from __future__ import annotations

import json
from urllib.parse import quote

import orjson

from ramparts.timeutil import NS, format_rfc3339


def iso_ms(ns: int) -> str:
    """Envoy's ``%START_TIME%``: milliseconds, always three digits.

    >>> iso_ms(1772442000412345678)
    '2026-03-02T09:00:00.412Z'
    """
    sec = format_rfc3339(ns - ns % NS)[:-1]
    return f"{sec}.{ns % NS // 1_000_000:03d}Z"


def iso_us(ns: int) -> str:
    """Kubernetes' audit timestamps and Go's RFC3339Nano trimmed to microseconds.

    >>> iso_us(1772442070101234999)
    '2026-03-02T09:01:10.101234Z'
    """
    sec = format_rfc3339(ns - ns % NS)[:-1]
    return f"{sec}.{ns % NS // 1000:06d}Z"


def iso_ns(ns: int) -> str:
    """Falco's ``time``: nanoseconds, nine digits."""
    sec = format_rfc3339(ns - ns % NS)[:-1]
    return f"{sec}.{ns % NS:09d}Z"


# -- Envoy AI Gateway ---------------------------------------------------------------------------
def envoy_line(*, ts: int, method: str, path: str, status: int, flags: str, bytes_in: int, bytes_out: int,
               duration_ms: int, upstream_ms: int | None, src_ip: str, user_agent: str, request_id: str,
               authority: str, upstream_host: str | None, api_key: str, model: str, backend: str | None,
               tokens_in: int | None, tokens_out: int | None) -> bytes:
    """One access log line of Envoy AI Gateway's json_format (Envoy Gateway's default keys plus
    the ``genai_*`` fields and the API key header). Absent values are ``"-"``, as Envoy writes
    them for header and metadata commands."""
    return orjson.dumps({
        "start_time": iso_ms(ts), "method": method, "x-envoy-origin-path": path, "protocol": "HTTP/1.1",
        "response_code": status, "response_flags": flags, "bytes_received": bytes_in, "bytes_sent": bytes_out,
        "duration": duration_ms,
        "x-envoy-upstream-service-time": "-" if upstream_ms is None else str(upstream_ms),
        "x-forwarded-for": src_ip, "user-agent": user_agent, "x-request-id": request_id,
        ":authority": authority, "upstream_host": upstream_host or "-", "x-api-key": api_key,
        "genai_model_name": model, "genai_backend_name": backend or "-",
        "genai_tokens_input": "-" if tokens_in is None else tokens_in,
        "genai_tokens_output": "-" if tokens_out is None else tokens_out,
    })


# -- KServe payload logging -----------------------------------------------------------------------
KSERVE_REQUEST = "org.kubeflow.serving.inference.request"
KSERVE_RESPONSE = "org.kubeflow.serving.inference.response"


def kserve_event(*, ce_id: str, is_request: bool, ts: int, service: str, namespace: str, endpoint: str,
                 headers: dict[str, list[str]] | None, data: dict) -> bytes:
    """One CloudEvent as KServe's logger posts it (structured mode, as a message dumper logs it).

    ``headers`` are the request headers named in the logger's ``metadataHeaders``; KServe puts
    them, JSON-encoded, in the ``metadata`` extension of the request event only.
    """
    ev = {
        "specversion": "1.0", "id": ce_id, "source": "http://localhost:9081/",
        "type": KSERVE_REQUEST if is_request else KSERVE_RESPONSE, "datacontenttype": "application/json",
        "time": iso_us(ts), "inferenceservicename": service, "namespace": namespace, "component": "predictor",
        "endpoint": endpoint,
    }
    if is_request and headers:
        ev["metadata"] = json.dumps(headers, separators=(",", ":"))
    ev["data"] = data
    return orjson.dumps(ev)


# -- dcgm-exporter ----------------------------------------------------------------------------------
# (field, Prometheus type, HELP text as dcgm-exporter's default-counters.csv has it)
DCGM_FIELDS = (
    ("DCGM_FI_DEV_SM_CLOCK", "gauge", "SM clock frequency (in MHz)."),
    ("DCGM_FI_DEV_GPU_TEMP", "gauge", "GPU temperature (in C)."),
    ("DCGM_FI_DEV_POWER_USAGE", "gauge", "Power draw (in W)."),
    ("DCGM_FI_DEV_GPU_UTIL", "gauge", "GPU utilization (in %)."),
    ("DCGM_FI_DEV_MEM_COPY_UTIL", "gauge", "Memory utilization (in %)."),
    ("DCGM_FI_DEV_FB_FREE", "gauge", "Framebuffer memory free (in MiB)."),
    ("DCGM_FI_DEV_FB_USED", "gauge", "Framebuffer memory used (in MiB)."),
    ("DCGM_FI_PROF_SM_ACTIVE", "gauge", "The ratio of cycles an SM has at least 1 warp assigned (in %)."),
    ("DCGM_FI_PROF_PIPE_TENSOR_ACTIVE", "gauge", "Ratio of cycles the tensor (HMMA) pipe is active (in %)."),
    ("DCGM_FI_PROF_PCIE_TX_BYTES", "counter", "The rate of data transmitted over the PCIe bus - including both "
                                              "protocol headers and data payloads - in bytes per second."),
    ("DCGM_FI_PROF_PCIE_RX_BYTES", "counter", "The rate of data received over the PCIe bus - including both "
                                              "protocol headers and data payloads - in bytes per second."),
)


def dcgm_header() -> bytes:
    return b"".join(f"# HELP {name} {text}\n# TYPE {name} {kind}\n".encode() for name, kind, text in DCGM_FIELDS)


def dcgm_labels(*, index: int, uuid: str, model_name: str, hostname: str,
                pod: tuple[str, str, str] | None) -> str:
    """The label set dcgm-exporter writes; ``container``/``namespace``/``pod`` only when its
    Kubernetes mapping found a pod holding the GPU."""
    s = f'gpu="{index}",UUID="{uuid}",device="nvidia{index}",modelName="{model_name}",Hostname="{hostname}"'
    if pod is not None:
        namespace, name, container = pod
        s += f',container="{container}",namespace="{namespace}",pod="{name}"'
    return "{" + s + "}"


def dcgm_sample(field_name: str, labels: str, value: int | float, ts: int) -> bytes:
    v = f"{value:.6f}" if isinstance(value, float) else str(value)
    return f"{field_name}{labels} {v} {ts // 1_000_000}".encode()


# -- Falco -----------------------------------------------------------------------------------------------
def falco_alert(*, ts: int, hostname: str, rule: str, priority: str, output: str, tags: list[str],
                fields: dict) -> bytes:
    """A Falco alert with ``json_output: true``; ``output`` starts with the time and priority
    as Falco prefixes it."""
    clock = iso_ns(ts)[11:-1]
    return orjson.dumps({
        "hostname": hostname, "output": f"{clock}: {priority} {output}", "priority": priority,
        "rule": rule, "source": "syscall", "tags": sorted(tags), "time": iso_ns(ts),
        "output_fields": dict(fields, **{"evt.time": ts}),
    })


# -- Kubernetes audit ----------------------------------------------------------------------------------
def audit_stages(*, audit_id: str, verb: str, uri: str, user: str, groups: list[str], src_ip: str,
                 user_agent: str, object_ref: dict, received: int, code: int,
                 stages: list[tuple[str, int]], reason: str | None = None) -> list[tuple[int, bytes]]:
    """The lines the log backend writes for one request, one per stage, with their times.

    ``stages`` is ``[(stage, stageTimestamp ns), ...]``; ``responseStatus`` appears from
    ResponseStarted on. Level Metadata: no request or response bodies.
    """
    out = []
    for stage, at in stages:
        ev = {
            "kind": "Event", "apiVersion": "audit.k8s.io/v1", "level": "Metadata", "auditID": audit_id,
            "stage": stage, "requestURI": uri, "verb": verb,
            "user": {"username": user, "groups": groups}, "sourceIPs": [src_ip], "userAgent": user_agent,
            "objectRef": object_ref,
        }
        if stage != "RequestReceived":
            status: dict = {"metadata": {}, "code": code}
            if code >= 400:
                status.update(status="Failure", reason=reason or "Forbidden")
            ev["responseStatus"] = status
        ev["requestReceivedTimestamp"] = iso_us(received)
        ev["stageTimestamp"] = iso_us(at)
        ev["annotations"] = {"authorization.k8s.io/decision": "forbid" if code == 403 else "allow",
                             "authorization.k8s.io/reason": "" if code == 403 else "RBAC: allowed by ClusterRoleBinding"}
        out.append((at, orjson.dumps(ev)))
    return out


def exec_uri(namespace: str, pod: str, container: str, command: list[str]) -> str:
    q = "&".join(f"command={quote(c, safe='')}" for c in command)
    return f"/api/v1/namespaces/{namespace}/pods/{pod}/exec?{q}&container={container}&stdin=true&stdout=true&tty=true"


# -- kubectl get pods -o json -------------------------------------------------------------------------------
def pod_list(pods: list[dict]) -> bytes:
    """``kubectl get pods -A -o json``: Go marshals maps with sorted keys, kubectl indents by 4."""
    doc = {"apiVersion": "v1", "items": pods, "kind": "List", "metadata": {"resourceVersion": ""}}
    return (json.dumps(doc, indent=4, sort_keys=True) + "\n").encode()
