"""Kubernetes audit events: one event per auditID, impersonation, exec, privileged pods, the real sample."""

import collections

import orjson
import pytest

from ramparts.events import check_event
from ramparts.redact import Hasher
from ramparts.streams.decode import detect_format, parse_bytes
from ramparts.streams.parsers.k8s_audit import K8sAuditParser
from ramparts.timeutil import format_rfc3339

EXEC_URI = ("/api/v1/namespaces/inference/pods/vllm-7d9f8-abcde/exec?command=sh&command=-c"
            "&command=cat+%2Fvar%2Frun%2Fsecrets%2Fkubernetes.io%2Fserviceaccount%2Ftoken"
            "&container=vllm&stdin=true&stdout=true&tty=true")


def stage(name: str, stage_ts: str, code: int | None = None, **kw) -> dict:
    """One stage of `kubectl exec` as the log backend writes it (audit.k8s.io/v1, Metadata level)."""
    doc = {"kind": "Event", "apiVersion": "audit.k8s.io/v1", "level": "Metadata",
           "auditID": "6a9e5c1f-1f7b-4c3e-9a52-0d2b1f6e7a10", "stage": name, "requestURI": EXEC_URI,
           "verb": "create",
           "user": {"username": "kubernetes-admin", "groups": ["kubeadm:cluster-admins", "system:authenticated"]},
           "sourceIPs": ["172.18.0.1"], "userAgent": "kubectl/v1.29.2 (linux/amd64) kubernetes/4b8e819",
           "objectRef": {"resource": "pods", "namespace": "inference", "name": "vllm-7d9f8-abcde",
                         "apiVersion": "v1", "subresource": "exec"},
           "requestReceivedTimestamp": "2024-04-05T19:21:18.123456Z", "stageTimestamp": stage_ts,
           "annotations": {"authorization.k8s.io/decision": "allow", "authorization.k8s.io/reason": ""}}
    if code is not None:
        doc["responseStatus"] = {"metadata": {}, "code": code}
    doc.update(kw)
    return doc


EXEC_STAGES = [
    stage("RequestReceived", "2024-04-05T19:21:18.123456Z"),
    stage("ResponseStarted", "2024-04-05T19:21:18.145678Z", 101),
    stage("ResponseComplete", "2024-04-05T19:26:40.002001Z", 101),
]

PRIVILEGED_POD = {
    "kind": "Event", "apiVersion": "audit.k8s.io/v1", "level": "RequestResponse",
    "auditID": "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0", "stage": "ResponseComplete",
    "requestURI": "/api/v1/namespaces/inference/pods?fieldManager=kubectl-client-side-apply", "verb": "create",
    "user": {"username": "system:serviceaccount:ci:deployer", "groups": ["system:serviceaccounts"]},
    "sourceIPs": ["10.244.1.7", "10.0.0.1"], "userAgent": "kubectl/v1.30.1",
    "objectRef": {"resource": "pods", "namespace": "inference", "apiVersion": "v1"},
    "responseStatus": {"metadata": {}, "code": 201},
    "requestObject": {"kind": "Pod", "apiVersion": "v1",
                      "metadata": {"name": "gpu-debug", "namespace": "inference"},
                      "spec": {"nodeName": "gpu-node-3",
                               "containers": [{"name": "debug", "image": "ubuntu:22.04",
                                               "securityContext": {"privileged": True},
                                               "resources": {"limits": {"nvidia.com/gpu": "1"}}}],
                               "initContainers": [{"name": "init", "image": "busybox:1.36"}]}},
    "requestReceivedTimestamp": "2024-04-05T19:30:00.000001Z", "stageTimestamp": "2024-04-05T19:30:00.020001Z",
}


def lines(*docs) -> bytes:
    return b"".join(orjson.dumps(d) + b"\n" for d in docs)


def parse(data: bytes, parser=None):
    events, dead, p = parse_bytes(parser or "k8s_audit", data)
    for e in events:
        assert check_event(e) == [], check_event(e)
    return events, dead, p


def test_exec_stages_make_one_event_emitted_at_response_started():
    h = Hasher(b"t")
    p = K8sAuditParser(hasher=h)
    events, dead, p = parse(lines(*EXEC_STAGES), p)
    assert dead == []
    [e] = events
    assert e["stage"] == "ResponseStarted" and e["status"] == 101
    assert format_rfc3339(e["ts"]) == "2024-04-05T19:21:18.123456Z"  # when the request was received
    assert (e["verb"], e["resource"], e["subresource"]) == ("create", "pods", "exec")
    assert (e["namespace"], e["pod"], e["name"], e["container"]) == (
        "inference", "vllm-7d9f8-abcde", "vllm-7d9f8-abcde", "vllm")
    assert e["process"] == "sh"
    assert e["cmdline"] == "sh -c cat /var/run/secrets/kubernetes.io/serviceaccount/token"
    assert (e["user"], e["auth_user"], e["src_ip"]) == ("kubernetes-admin", None, "172.18.0.1")
    assert e["rule"] is None and e["priority"] is None and e["image"] is None and e["privileged"] is None
    assert e["audit_id"] == "6a9e5c1f-1f7b-4c3e-9a52-0d2b1f6e7a10"
    assert e["request_uri"] == EXEC_URI
    assert e["user_agent"].startswith("kubectl/v1.29.2")
    assert p.stats.notes == {"stages_merged": 2}
    assert (p.stats.records, p.stats.parsed, p.stats.events) == (3, 3, 1)


def test_event_is_emitted_as_soon_as_the_stream_opens():
    p = K8sAuditParser()
    events, dead = [], []
    docs = [orjson.dumps(d) for d in EXEC_STAGES]
    p.parse_chunk(docs[:2], "live", 1, events, dead)
    assert len(events) == 1 and events[0]["stage"] == "ResponseStarted"  # before the shell exits
    p.parse_chunk(docs[2:], "live", 3, events, dead)
    p.flush(events, dead)
    assert len(events) == 1 and dead == []


def test_request_received_alone_is_held_until_the_end():
    only = stage("RequestReceived", "2024-04-05T19:21:18.123456Z", auditID="aaaa")
    events, dead, p = parse(lines(only, PRIVILEGED_POD))
    assert dead == []
    assert [e["audit_id"] for e in events] == [PRIVILEGED_POD["auditID"], "aaaa"]
    assert events[1]["stage"] == "RequestReceived" and events[1]["status"] is None
    assert p.stats.notes == {"request_only": 1}


def test_out_of_order_and_panic_stages():
    docs = [stage("ResponseComplete", "2024-04-05T19:21:19Z", 101, auditID="b1"),
            stage("RequestReceived", "2024-04-05T19:21:18Z", auditID="b1"),  # late: merged
            stage("Panic", "2024-04-05T19:21:20Z", 500, auditID="b2"),
            stage("ResponseComplete", "2024-04-05T19:21:21Z", 500, auditID="b2")]
    events, dead, p = parse(lines(*docs))
    assert dead == []
    assert [(e["audit_id"], e["stage"], e["status"]) for e in events] == [
        ("b1", "ResponseComplete", 101), ("b2", "Panic", 500)]
    assert p.stats.notes == {"stages_merged": 2}


def test_state_is_bounded():
    p = K8sAuditParser({"max_pending": 2})
    held = [stage("RequestReceived", "2024-04-05T19:21:18Z", auditID=f"h{i}") for i in range(4)]
    events, dead, p = parse(lines(*held), p)
    assert [e["audit_id"] for e in events] == ["h0", "h1", "h2", "h3"]  # two flushed early, two at the end
    assert p.stats.notes == {"request_only": 4}
    assert len(p._emitted) <= 2 and not p._held


def test_privileged_pod_create_with_request_object():
    [e], dead, _ = parse(lines(PRIVILEGED_POD))
    assert dead == []
    assert e["privileged"] is True
    assert (e["pod"], e["image"], e["node"], e["status"]) == ("gpu-debug", "ubuntu:22.04", "gpu-node-3", 201)
    assert e["src_ip"] == "10.244.1.7" and e["user"] == "system:serviceaccount:ci:deployer"
    assert e["container"] is None and e["process"] is None

    unprivileged = orjson.loads(orjson.dumps(PRIVILEGED_POD))
    unprivileged["auditID"] = "x"
    del unprivileged["requestObject"]["spec"]["containers"][0]["securityContext"]
    unprivileged["requestObject"]["spec"]["initContainers"][0]["securityContext"] = {"privileged": False}
    [e], _, _ = parse(lines(unprivileged))
    assert e["privileged"] is False


def test_deployment_template_and_pod_binding():
    deploy = {**PRIVILEGED_POD, "auditID": "d1",
              "objectRef": {"resource": "deployments", "namespace": "inference", "name": "miner", "apiGroup": "apps"},
              "requestObject": {"kind": "Deployment", "spec": {"template": {"spec": {"containers": [
                  {"name": "m", "image": "xmrig/xmrig:6.21", "securityContext": {"privileged": True}}]}}}}}
    binding = {**PRIVILEGED_POD, "auditID": "d2",
               "objectRef": {"resource": "pods", "namespace": "inference", "name": "gpu-debug",
                             "subresource": "binding"},
               "requestObject": {"kind": "Binding", "metadata": {"name": "gpu-debug"},
                                 "target": {"kind": "Node", "name": "gpu-node-5"}}}
    [d, b], dead, _ = parse(lines(deploy, binding))
    assert dead == []
    assert (d["image"], d["privileged"], d["pod"], d["name"]) == ("xmrig/xmrig:6.21", True, None, "miner")
    assert (b["node"], b["pod"], b["privileged"], b["subresource"]) == ("gpu-node-5", "gpu-debug", None, "binding")


def test_tokens_in_exec_commands_and_query_parameters_are_scrubbed():
    h = Hasher(b"t")
    token = "eyJhbGciOiJSUzI1NiIsImtpZCI6IkFCQyJ9"
    uri = ("/api/v1/namespaces/inference/pods/vllm-0/exec?command=curl&command=-H"
           f"&command=Authorization%3A+Bearer+{token}&command=http%3A%2F%2F10.0.0.1&container=vllm&token=abcdef123")
    doc = stage("ResponseStarted", "2024-04-05T19:21:18Z", 101, requestURI=uri, auditID="s1")
    [e], dead, _ = parse(lines(doc), K8sAuditParser(hasher=h))
    assert dead == []
    text = orjson.dumps(e).decode()
    assert token not in text and "abcdef123" not in text
    assert e["cmdline"] == f"curl -H Authorization: Bearer {h.secret_hash(token)} http://10.0.0.1"
    assert e["process"] == "curl" and e["container"] == "vllm"


def test_webhook_event_list_is_read_item_by_item():
    bad_item = {"kind": "Event", "auditID": "bad", "stage": "ResponseComplete", "verb": "get",
                "requestReceivedTimestamp": "2024-02-30T00:00:00Z"}
    doc = {"kind": "EventList", "apiVersion": "audit.k8s.io/v1", "metadata": {},
           "items": [PRIVILEGED_POD, bad_item, EXEC_STAGES[1]]}
    events, dead, p = parse(lines(doc))
    assert len(events) == 2
    assert len(dead) == 1 and dead[0].item == 1 and "day is out of range" in dead[0].reason


def test_real_audit2rbac_sample(samples):
    data = (samples / "k8s-audit" / "audit2rbac-demo.log").read_bytes()
    assert detect_format(data) == "k8s_audit"
    events, dead, p = parse(data)
    assert dead == []
    raw = [orjson.loads(l) for l in data.splitlines() if l.strip()]
    assert len(events) == len({r["auditID"] for r in raw}) == 37
    assert p.stats.records == 37 and p.stats.notes == {}
    statuses = collections.Counter(e["status"] for e in events)
    assert statuses == {200: 26, 403: 11}
    # Every request was made by system:admin impersonating someone (kubectl --as).
    assert {e["auth_user"] for e in events} == {"system:admin"}
    users = collections.Counter(e["user"] for e in events)
    assert users == {"bob": 29, "system:serviceaccount:ns1:sa1": 5, "alice": 3}
    first = events[0]
    assert format_rfc3339(first["ts"]) == "2017-09-11T19:55:05Z"  # the v1beta1-era `timestamp` key
    assert (first["verb"], first["resource"], first["namespace"], first["status"], first["src_ip"]) == (
        "list", "pods", "default", 403, "::1")
    forbidden = [e for e in events if e["status"] == 403]
    assert collections.Counter((e["user"], e["resource"]) for e in forbidden) == {
        ("bob", "pods"): 3, ("bob", "nodes"): 1, ("system:serviceaccount:ns1:sa1", "pods"): 3,
        ("system:serviceaccount:ns1:sa1", "nodes"): 1, ("alice", "pods"): 1, ("alice", "configmaps"): 1,
        ("alice", "secrets"): 1}
    non_resource = [e for e in events if e["resource"] is None]
    assert non_resource and all(e["verb"] == "get" and e["pod"] is None for e in non_resource)
    assert "/api" in {e["request_uri"] for e in non_resource}


def _bad(**kw):
    d = {**EXEC_STAGES[2], "auditID": "bad", **kw}
    return orjson.dumps({k: v for k, v in d.items() if v is not ...})


@pytest.mark.parametrize("bad, reason", [
    (orjson.dumps(EXEC_STAGES[2])[:-40], "invalid JSON"),
    (b"\x1f\x8b\x08\x00 gzip bytes", "invalid JSON"),
    (_bad(requestReceivedTimestamp="2024-02-30T19:21:18Z"), "day is out of range"),
    (_bad(requestReceivedTimestamp="2024-13-01T19:21:18Z"), "month must be in 1..12"),
    (_bad(requestReceivedTimestamp=..., stageTimestamp=...), "no timestamp"),
    (_bad(requestReceivedTimestamp=1712344878), "requestReceivedTimestamp: expected RFC 3339 text"),
    (_bad(responseStatus={"code": "abc"}), "responseStatus.code: expected an integer"),
    (_bad(sourceIPs="172.18.0.1"), "sourceIPs: expected a list"),
    (_bad(user="kubernetes-admin"), "user: expected a JSON object"),
    (_bad(objectRef=["pods"]), "objectRef: expected a JSON object"),
    (_bad(stage="Done"), "unknown audit stage"),
    (_bad(verb=["get"]), "verb: expected text"),
])
def test_bad_events_are_dead_lettered_and_the_rest_parses(bad, reason):
    events, dead, p = parse(lines(PRIVILEGED_POD) + bad + b"\n" + lines(*EXEC_STAGES))
    assert len(events) == 2
    assert len(dead) == 1 and dead[0].line == 2 and reason in dead[0].reason, dead
    assert p.stats.failed == 1 and p.stats.parsed == 4


def test_detection():
    assert detect_format(lines(*EXEC_STAGES)) == "k8s_audit"
    nginx = b'10.0.0.1 - - [08/Apr/2019:16:16:55 +0000] "GET / HTTP/1.1" 200 1 "-" "-"\n'
    falco = b'{"rule":"Attach/Exec Pod","priority":"Warning","output":"audit.k8s.io","source":"k8s_audit"}\n'
    pods = b'{"apiVersion":"v1","kind":"List","items":[]}\n'
    for head in (nginx, falco, pods):
        assert not K8sAuditParser.sniff(head, [l for l in head.split(b"\n") if l])
