import copy

import orjson
import pytest

from ramparts.events import check_event
from ramparts.streams.decode import detect_format, parse_bytes
from ramparts.streams.parsers.k8s_pods import K8sPodsParser
from ramparts.timeutil import format_rfc3339

UUID_A = "GPU-6f1c2a9e-3b4d-4e5f-8a7b-0c1d2e3f4a5b"
UUID_B = "GPU-7a2d3b0f-4c5e-4f60-9b8c-1d2e3f4a5b6c"

TRAINING = {
    "apiVersion": "v1", "kind": "Pod",
    "metadata": {"creationTimestamp": "2026-03-02T08:59:41Z", "name": "llm-pretrain-0", "namespace": "training",
                 "uid": "5c1b7f0e-9d2a-4c3b-8e6f-1a2b3c4d5e6f", "labels": {"job-name": "llm-pretrain"}},
    "spec": {
        "initContainers": [{"name": "fetch-shards", "image": "busybox:1.36", "command": ["sh", "-c", "cp -r /src /data"],
                            "resources": {}}],
        "containers": [{
            "name": "trainer", "image": "nvcr.io/nvidia/pytorch:24.05-py3",
            "command": ["torchrun", "--nproc_per_node=4", "train.py"],
            "resources": {"limits": {"cpu": "32", "memory": "256Gi", "nvidia.com/gpu": "4"},
                          "requests": {"cpu": "16", "memory": "200Gi", "nvidia.com/gpu": "4"}},
        }],
        "nodeName": "gpu-node-1", "restartPolicy": "Never", "schedulerName": "default-scheduler",
        "serviceAccount": "trainer", "serviceAccountName": "trainer",
        "tolerations": [{"effect": "NoSchedule", "key": "nvidia.com/gpu", "operator": "Exists"}],
    },
    "status": {
        "phase": "Running", "hostIP": "10.0.3.17", "podIP": "10.244.3.9", "qosClass": "Burstable",
        "startTime": "2026-03-02T08:59:42Z",
        "containerStatuses": [{"name": "trainer", "ready": True, "restartCount": 0,
                               "state": {"running": {"startedAt": "2026-03-02T09:00:10Z"}}}],
    },
}
WEB = {
    "apiVersion": "v1", "kind": "Pod",
    "metadata": {"creationTimestamp": "2026-03-01T12:00:00Z", "name": "web-frontend-7d9f8c6b5-x2x4q",
                 "namespace": "default", "uid": "0a1b2c3d-0000-4000-8000-000000000001"},
    "spec": {"containers": [{"name": "nginx", "image": "nginx:1.27",
                             "resources": {"limits": {"cpu": "500m", "memory": "256Mi"}}}],
             "nodeName": "cpu-node-2", "serviceAccountName": "default"},
    "status": {"phase": "Running", "startTime": "2026-03-01T12:00:01Z"},
}
FINISHED = {
    "apiVersion": "v1", "kind": "Pod",
    "metadata": {"creationTimestamp": "2026-03-02T06:00:00Z", "name": "batch-eval-28391-q8x7z",
                 "namespace": "research", "uid": "9f8e7d6c-1111-4222-8333-444455556666",
                 "deletionTimestamp": "2026-03-02T08:00:00Z", "deletionGracePeriodSeconds": 30},
    "spec": {
        "containers": [
            {"name": "evaluator", "image": "registry.internal/research/eval:2.3.1",
             "env": [{"name": "NVIDIA_VISIBLE_DEVICES", "value": f"{UUID_A},{UUID_B}"},
                     {"name": "HF_HOME", "value": "/cache"}],
             "resources": {"limits": {"nvidia.com/gpu": 2}},
             "securityContext": {"privileged": True}},
            {"name": "log-shipper", "image": "fluent/fluent-bit:3.0", "resources": {}},
        ],
        "nodeName": "gpu-node-2", "serviceAccountName": "eval-runner",
    },
    "status": {
        "phase": "Succeeded", "startTime": "2026-03-02T06:00:02Z",
        "containerStatuses": [
            {"name": "evaluator", "state": {"terminated": {"exitCode": 0, "reason": "Completed",
                                                           "startedAt": "2026-03-02T06:00:05Z",
                                                           "finishedAt": "2026-03-02T07:41:13Z"}}},
            {"name": "log-shipper", "state": {"terminated": {"exitCode": 0, "reason": "Completed",
                                                             "startedAt": "2026-03-02T06:00:05Z",
                                                             "finishedAt": "2026-03-02T07:41:15Z"}}},
        ],
    },
}


def pod_list(*pods) -> bytes:
    # kubectl prints sorted keys and 4-space indentation
    doc = {"apiVersion": "v1", "items": list(pods), "kind": "List", "metadata": {"resourceVersion": ""}}
    return orjson.dumps(doc, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS).replace(b"  ", b"    ")


def parse(data: bytes, options=None):
    events, dead, parser = parse_bytes(K8sPodsParser(options), data)
    for e in events:
        assert check_event(e) == [], e
    return events, dead, parser


def test_pod_list_golden():
    data = pod_list(TRAINING, WEB, FINISHED)
    assert detect_format(data) == "k8s_pods"
    events, dead, parser = parse(data)
    assert dead == []
    train, eval_a, eval_b = events
    assert (train["node"], train["gpu_uuid"], train["namespace"], train["pod"]) == (
        "gpu-node-1", None, "training", "llm-pretrain-0")
    assert format_rfc3339(train["start"]) == "2026-03-02T08:59:42Z" and train["ts"] == train["start"]
    assert train["end"] is None
    assert (train["gpu_count"], train["gpu_resources"], train["phase"], train["service_account"]) == (
        4, ["nvidia.com/gpu"], "Running", "trainer")
    assert train["images"] == ["busybox:1.36", "nvcr.io/nvidia/pytorch:24.05-py3"]
    assert train["privileged"] is False and train["pod_uid"] == "5c1b7f0e-9d2a-4c3b-8e6f-1a2b3c4d5e6f"
    # NVIDIA_VISIBLE_DEVICES names the UUIDs: one event per GPU
    assert [eval_a["gpu_uuid"], eval_b["gpu_uuid"]] == [UUID_A, UUID_B]
    # a finished pod ended with its last container, before its later deletion
    assert format_rfc3339(eval_a["end"]) == "2026-03-02T07:41:15Z"
    assert (eval_a["gpu_count"], eval_a["privileged"], eval_a["phase"], eval_a["node"]) == (2, True, "Succeeded", "gpu-node-2")
    assert eval_a["images"] == ["registry.internal/research/eval:2.3.1", "fluent/fluent-bit:3.0"]
    s = parser.stats
    assert s.notes == {"pods_without_gpu": 1}
    assert (s.records, s.parsed, s.events) == (1, 1, 3)


def test_single_pod_array_watch_events_and_json_lines():
    for doc in (orjson.dumps(TRAINING, option=orjson.OPT_INDENT_2), orjson.dumps([TRAINING, WEB]),
                orjson.dumps({"type": "MODIFIED", "object": TRAINING})):
        events, dead, _ = parse(doc)
        assert dead == [] and [e["pod"] for e in events] == ["llm-pretrain-0"]
    lines = b"\n".join(orjson.dumps(p) for p in (TRAINING, WEB, FINISHED)) + b"\n"
    assert detect_format(lines) == "k8s_pods"
    events, dead, _ = parse(lines)
    assert dead == [] and [e["pod"] for e in events] == ["llm-pretrain-0", "batch-eval-28391-q8x7z", "batch-eval-28391-q8x7z"]


def test_pending_pod_and_pod_being_deleted():
    pending = copy.deepcopy(TRAINING)
    del pending["status"]["startTime"]
    pending["status"]["phase"] = "Pending"
    pending["spec"].pop("nodeName")
    deleting = copy.deepcopy(TRAINING)
    deleting["metadata"]["deletionTimestamp"] = "2026-03-02T10:15:00Z"
    (p,), _, _ = parse(orjson.dumps(pending))
    assert format_rfc3339(p["start"]) == "2026-03-02T08:59:41Z" and p["node"] is None and p["end"] is None
    (d,), _, _ = parse(orjson.dumps(deleting))
    assert format_rfc3339(d["end"]) == "2026-03-02T10:15:00Z"


def test_gpu_resource_names_init_containers_and_uuid_annotation():
    pod = copy.deepcopy(TRAINING)
    pod["metadata"]["annotations"] = {"gpu.example.com/uuids": f"{UUID_B}, {UUID_A}"}
    pod["spec"]["initContainers"][0]["resources"] = {"limits": {"amd.com/gpu": "6"}}
    pod["spec"]["containers"].append({"name": "mig", "image": "x", "resources": {"requests": {"nvidia.com/mig-1g.10gb": "1"}}})
    events, dead, _ = parse(orjson.dumps(pod), {"gpu_uuid_annotation": "gpu.example.com/uuids"})
    assert dead == []
    assert [e["gpu_uuid"] for e in events] == [UUID_B, UUID_A]
    # scheduler rule: max(sum over containers = 4 + 1, largest init container = 6)
    assert events[0]["gpu_count"] == 6
    assert events[0]["gpu_resources"] == ["amd.com/gpu", "nvidia.com/gpu", "nvidia.com/mig-1g.10gb"]
    zero = copy.deepcopy(TRAINING)
    zero["spec"]["containers"][0]["resources"] = {"limits": {"nvidia.com/gpu": "0"}}
    events, _, parser = parse(orjson.dumps(zero))
    assert len(events) == 0 and parser.stats.notes == {"pods_without_gpu": 1}


def _bad(mutate):
    pod = copy.deepcopy(TRAINING)
    mutate(pod)
    return pod


@pytest.mark.parametrize("bad, reason", [
    (_bad(lambda p: p.pop("metadata")), "metadata: expected a JSON object"),
    (_bad(lambda p: p["metadata"].pop("name")), "metadata.name"),
    (_bad(lambda p: p["status"].update(startTime="2026-02-30T08:59:42Z")), "status.startTime: day is out of range"),
    (_bad(lambda p: p["status"].update(startTime=1772441982)), "status.startTime"),
    (_bad(lambda p: p["spec"]["containers"][0]["resources"]["limits"].update({"nvidia.com/gpu": "two"})), "whole number of GPUs"),
    (_bad(lambda p: p["spec"]["containers"][0]["resources"]["limits"].update({"nvidia.com/gpu": True})), "boolean"),
    (_bad(lambda p: p["spec"].update(containers={"trainer": {}})), "spec.containers: expected a list"),
    ("not a pod", "item: expected a JSON object"),
])
def test_bad_item_is_rejected_and_the_others_kept(bad, reason):
    events, dead, parser = parse(pod_list(TRAINING, bad, FINISHED))
    assert [e["pod"] for e in events] == ["llm-pretrain-0", "batch-eval-28391-q8x7z", "batch-eval-28391-q8x7z"]
    assert len(dead) == 1 and dead[0].item == 1 and reason in dead[0].reason, dead
    assert orjson.loads(dead[0].raw) == bad
    s = parser.stats
    assert (s.records, s.parsed, s.failed, s.dead_letters) == (1, 1, 0, 1)


def test_bad_json_line_is_rejected_alone():
    data = orjson.dumps(TRAINING) + b"\n" + orjson.dumps(FINISHED)[:80] + b"\n\xff\xfe\n" + orjson.dumps(FINISHED) + b"\n"
    events, dead, _ = parse(data)
    assert len(events) == 3
    assert [d.item for d in dead] == [1, 2] and all(d.reason for d in dead)


def test_truncated_document_and_other_documents_are_dead_lettered_whole():
    data = pod_list(TRAINING, FINISHED)
    for bad in (data[: len(data) // 2], b'{"apiVersion": "v1", "kind": "Service", "metadata": {"name": "x"}}', b"42"):
        events, dead, parser = parse(bad)
        assert len(events) == 0 and len(dead) == 1 and dead[0].line == 1 and dead[0].raw == bad
        assert parser.stats.failed == 1


def test_other_kinds_in_a_list_are_counted():
    svc = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "llm-api", "namespace": "inference"}}
    events, dead, parser = parse(pod_list(TRAINING, svc))
    assert dead == [] and len(events) == 1 and parser.stats.notes == {"non_pod_items": 1}


def test_detection_is_specific(samples):
    assert detect_format(orjson.dumps({"apiVersion": "v1", "items": [TRAINING], "kind": "List"})) == "k8s_pods"
    audit = (samples / "k8s-audit" / "audit2rbac-demo.log").read_bytes()
    assert not K8sPodsParser.sniff(audit[:65536], audit.split(b"\n")[:5])
    audit_with_pod = orjson.dumps({
        "kind": "Event", "apiVersion": "audit.k8s.io/v1", "level": "Request", "verb": "create",
        "objectRef": {"resource": "pods", "namespace": "training", "name": "llm-pretrain-0"},
        "requestObject": TRAINING, "requestReceivedTimestamp": "2026-03-02T08:59:41.000000Z"})
    assert not K8sPodsParser.sniff(audit_with_pod, [audit_with_pod])
    nginx = (b'203.0.113.9 - team-a [08/Apr/2019:18:16:55 +0200] "POST /v1/chat/completions HTTP/1.1" 200 1532 '
             b'"-" "OpenAI/Python 1.40.0"\n')
    assert not K8sPodsParser.sniff(nginx, [nginx.strip()])
    registry = b'[{"node": "gpu-node-1", "gpu_uuid": "GPU-1", "pod": "p", "start": "2026-03-02T09:00:00Z"}]'
    assert not K8sPodsParser.sniff(registry, [registry])
    assert not K8sPodsParser.sniff(b"{\xff", [b"{\xff"])
