"""Deterministic synthetic lines in each line-framed format, for benchmarks and fuzzing seeds.

The lines follow the upstream formats closely (field names, quoting, units, timestamp
spellings) and vary what varies in production: addresses, principals, models, paths, status
codes, latencies, timestamps that advance. They are not attack scenarios; ``ramparts
simulate`` makes those.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from datetime import datetime, timedelta, timezone

import orjson

MODELS = ["llama-3-8b", "gpt-4o-mini", "mistral-7b", "claude-haiku", "qwen2-72b", "fraud-xgb"]
PATHS = ["/v1/chat/completions", "/v1/completions", "/v1/embeddings", "/v2/models/fraud-xgb/infer", "/healthz"]
AGENTS = ["curl/8.5.0", "python-requests/2.32.3", "OpenAI/Python 1.40.0", "Go-http-client/2.0"]
START = datetime(2026, 3, 2, 9, 0, 0, tzinfo=timezone.utc)


def _rng(seed: int) -> random.Random:
    return random.Random(seed)


def _ip(r: random.Random) -> str:
    return f"10.{r.randrange(256)}.{r.randrange(256)}.{r.randrange(1, 255)}"


def _when(i: int, r: random.Random) -> datetime:
    # About 2,000 events per second of log time: many lines share a second, as in production.
    return START + timedelta(microseconds=i * 500 + r.randrange(500))


def _iso_ms(t: datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%S.") + f"{t.microsecond // 1000:03d}Z"


def envoy_json(i: int, r: random.Random) -> bytes:
    t = _when(i, r)
    tin, tout = r.randrange(5, 4000), r.randrange(1, 1500)
    return orjson.dumps({
        "start_time": _iso_ms(t), "method": "POST", "path": r.choice(PATHS), "protocol": "HTTP/1.1",
        "response_code": r.choice([200, 200, 200, 200, 401, 429, 500]), "response_flags": "-",
        "bytes_received": r.randrange(100, 9000), "bytes_sent": r.randrange(100, 20000),
        "duration": r.randrange(20, 9000), "upstream_service_time": str(r.randrange(10, 8000)),
        "x_forwarded_for": _ip(r), "user_agent": r.choice(AGENTS),
        "request_id": f"{r.getrandbits(128):032x}", "authority": "ai-gateway.internal",
        "upstream_host": "10.1.0.7:8000", "x_api_key": f"sk-{r.randrange(40):04d}{'a' * 20}",
        "genai_model_name": r.choice(MODELS), "genai_backend_name": "default/vllm/route/0",
        "genai_tokens_input": tin, "genai_tokens_output": tout,
    })


def envoy_text(i: int, r: random.Random) -> bytes:
    t = _when(i, r)
    return (f'[{_iso_ms(t)}] "POST {r.choice(PATHS)} HTTP/1.1" {r.choice([200, 200, 200, 404, 503])} '
            f'{r.choice(["-", "-", "UF,URX"])} {r.randrange(100, 9000)} {r.randrange(100, 20000)} '
            f'{r.randrange(1, 900)} {r.randrange(1, 800)} "{_ip(r)}" "{r.choice(AGENTS)}" '
            f'"{r.getrandbits(128):032x}" "ai-gateway.internal" "10.1.0.7:8000"').encode()


def nginx_combined(i: int, r: random.Random) -> bytes:
    t = _when(i, r)
    user = r.choice(["-", f"svc-{r.randrange(50)}", f"user{r.randrange(500)}"])
    return (f'{_ip(r)} - {user} [{t.strftime("%d/%b/%Y:%H:%M:%S +0000")}] '
            f'"POST {r.choice(PATHS)} HTTP/1.1" {r.choice([200, 200, 200, 401, 403, 502])} {r.randrange(0, 30000)} '
            f'"-" "{r.choice(AGENTS)}"').encode()


def kong(i: int, r: random.Random) -> bytes:
    t = _when(i, r)
    return orjson.dumps({
        "request": {"method": "POST", "uri": r.choice(PATHS), "url": "http://kong:8000" + r.choice(PATHS),
                    "size": r.randrange(100, 9000), "headers": {"host": "kong:8000", "user-agent": r.choice(AGENTS),
                                                                "x-model": r.choice(MODELS)}},
        "response": {"status": r.choice([200, 200, 200, 401, 429]), "size": r.randrange(100, 9000), "headers": {}},
        "consumer": {"username": f"team-{r.randrange(30)}", "id": f"{r.getrandbits(64):016x}"},
        "authenticated_entity": {"id": f"{r.getrandbits(64):016x}"},
        "latencies": {"request": r.randrange(5, 9000), "kong": r.randrange(0, 5), "proxy": r.randrange(5, 9000)},
        "client_ip": _ip(r), "started_at": int(t.timestamp() * 1000),
        "route": {"name": "llm"}, "service": {"name": "vllm"},
    })


def litellm(i: int, r: random.Random) -> bytes:
    t = _when(i, r)
    end = t + timedelta(milliseconds=r.randrange(50, 9000))
    pt, ct = r.randrange(5, 4000), r.randrange(1, 1500)
    return orjson.dumps({
        "request_id": f"chatcmpl-{r.getrandbits(96):024x}", "call_type": "acompletion",
        "api_key": f"{r.getrandbits(256):064x}", "spend": round(r.random() / 100, 6),
        "total_tokens": pt + ct, "prompt_tokens": pt, "completion_tokens": ct,
        "startTime": t.strftime("%Y-%m-%d %H:%M:%S.%f"), "endTime": end.strftime("%Y-%m-%d %H:%M:%S.%f"),
        "model": r.choice(MODELS), "model_group": "default", "user": f"user{r.randrange(500)}",
        "team_id": "team-1", "requester_ip_address": _ip(r),
        "metadata": orjson.dumps({"user_api_key_alias": f"key-{r.randrange(40)}", "status": "success"}).decode(),
        "messages": "{}", "response": "{}",
    })


def native(i: int, r: random.Random) -> bytes:
    t = _when(i, r)
    return orjson.dumps({
        "ts": _iso_ms(t), "principal": f"key-{r.randrange(40)}", "model": "fraud-xgb", "model_version": "3",
        "src_ip": _ip(r), "input": [round(r.gauss(0, 1), 4) for _ in range(8)],
        "output": [round(r.random(), 4)],
    })


def falco(i: int, r: random.Random) -> bytes:
    t = _when(i, r)
    return orjson.dumps({
        "hostname": f"gpu-node-{r.randrange(8)}", "output": "Shell spawned in a container (user=root)",
        "priority": r.choice(["Warning", "Notice", "Critical"]), "rule": "Terminal shell in container",
        "source": "syscall", "tags": ["container", "mitre_execution", "shell"],
        "time": t.strftime("%Y-%m-%dT%H:%M:%S.") + f"{t.microsecond:06d}{r.randrange(1000):03d}Z",
        "output_fields": {"container.id": f"{r.getrandbits(48):012x}", "container.name": "vllm",
                          "container.image.repository": "vllm/vllm-openai", "container.image.tag": "v0.6.3",
                          "evt.time": int(t.timestamp() * 1e9), "k8s.ns.name": "inference",
                          "k8s.pod.name": f"vllm-{r.randrange(20)}", "proc.cmdline": "bash -il",
                          "proc.name": "bash", "user.name": "root"},
    })


def k8s_audit(i: int, r: random.Random) -> bytes:
    t = _when(i, r)
    ns = r.choice(["inference", "training", "default"])
    return orjson.dumps({
        "kind": "Event", "apiVersion": "audit.k8s.io/v1", "level": "Metadata",
        "auditID": f"{r.getrandbits(128):032x}", "stage": "ResponseComplete",
        "requestURI": f"/api/v1/namespaces/{ns}/pods", "verb": r.choice(["get", "list", "watch", "create"]),
        "user": {"username": f"system:serviceaccount:{ns}:default", "groups": ["system:serviceaccounts"]},
        "sourceIPs": [_ip(r)], "userAgent": "kubectl/v1.30.1",
        "objectRef": {"resource": "pods", "namespace": ns, "apiVersion": "v1"},
        "responseStatus": {"metadata": {}, "code": r.choice([200, 200, 403])},
        "requestReceivedTimestamp": t.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        "stageTimestamp": t.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
    })


def docker_events(i: int, r: random.Random) -> bytes:
    t = _when(i, r)
    ns = int(t.timestamp()) * 1_000_000_000 + t.microsecond * 1000 + r.randrange(1000)
    return orjson.dumps({
        "status": "start", "id": f"{r.getrandbits(256):064x}", "from": "vllm/vllm-openai:v0.6.3",
        "Type": "container", "Action": r.choice(["start", "exec_start: bash", "die"]),
        "Actor": {"ID": f"{r.getrandbits(256):064x}", "Attributes": {
            "image": "vllm/vllm-openai:v0.6.3", "name": f"k8s_vllm_vllm-{r.randrange(20)}_inference_0",
            "io.kubernetes.pod.name": f"vllm-{r.randrange(20)}", "io.kubernetes.pod.namespace": "inference",
            "io.kubernetes.container.name": "vllm"}},
        "scope": "local", "time": ns // 1_000_000_000, "timeNano": ns,
    })


def dcgm(i: int, r: random.Random) -> bytes:
    gpu = i % 8
    ms = int(START.timestamp() * 1000) + (i // 8) * 1000
    return (f'DCGM_FI_DEV_GPU_UTIL{{gpu="{gpu}",UUID="GPU-{gpu:08d}-0000-0000-0000-000000000000",'
            f'device="nvidia{gpu}",modelName="NVIDIA H100 80GB HBM3",Hostname="gpu-node-1",'
            f'container="trainer",namespace="training",pod="llm-pretrain-0"}} {r.randrange(101)} {ms}').encode()


def kserve(i: int, r: random.Random) -> bytes:
    # Request and response CloudEvents alternate, joined on id by the parser.
    t = _when(i, r)
    ev_id = f"{i // 2:08x}-5b6d-4e7f-9a0b-1c2d3e4f5a6b"
    common = {"specversion": "1.0", "id": ev_id, "source": "http://localhost:9081/",
              "time": _iso_ms(t), "inferenceservicename": "fraud-xgb", "namespace": "models",
              "component": "predictor", "endpoint": "default", "principal": f"key-{r.randrange(40)}"}
    if i % 2 == 0:
        data = {"inputs": [{"name": "input-0", "shape": [1, 8], "datatype": "FP32",
                            "data": [round(r.gauss(0, 1), 4) for _ in range(8)]}]}
        return orjson.dumps({**common, "type": "org.kubeflow.serving.inference.request", "data": data})
    data = {"model_name": "fraud-xgb", "model_version": "3", "id": ev_id,
            "outputs": [{"name": "output-0", "shape": [1], "datatype": "FP32", "data": [round(r.random(), 4)]}]}
    return orjson.dumps({**common, "type": "org.kubeflow.serving.inference.response", "data": data})


def nvidia_smi(i: int, r: random.Random) -> bytes:
    if i == 0:
        return (b"timestamp, name, uuid, index, utilization.gpu [%], memory.used [MiB], memory.total [MiB], "
                b"power.draw [W], temperature.gpu, clocks.current.sm [MHz]")
    gpu = i % 8
    t = START + timedelta(seconds=i // 8)
    return (f"{t.strftime('%Y/%m/%d %H:%M:%S')}.{r.randrange(1000):03d}, NVIDIA H100 80GB HBM3, "
            f"GPU-{gpu:08d}-0000-0000-0000-000000000000, {gpu}, {r.randrange(101)} %, {r.randrange(81559)} MiB, "
            f"81559 MiB, {r.uniform(60, 700):.2f} W, {r.randrange(30, 80)}, {r.randrange(300, 1980)} MHz").encode()


GENERATORS: dict[str, Callable[[int, random.Random], bytes]] = {
    "envoy_json": envoy_json, "envoy_text": envoy_text, "nginx_combined": nginx_combined,
    "kong": kong, "litellm": litellm, "native": native, "falco": falco, "k8s_audit": k8s_audit,
    "docker_events": docker_events, "dcgm": dcgm, "kserve": kserve, "nvidia_smi": nvidia_smi,
}


def lines(fmt: str, n: int, seed: int = 7) -> list[bytes]:
    r = _rng(seed)
    gen = GENERATORS[fmt]
    return [gen(i, r) for i in range(n)]
