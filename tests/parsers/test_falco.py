"""Falco json_output alerts: dotted output_fields, nanosecond times, <NA>, scrubbing."""

import orjson
import pytest

from ramparts.events import check_event
from ramparts.redact import Hasher
from ramparts.streams.decode import detect_format, parse_bytes
from ramparts.streams.parsers.falco import FalcoParser
from ramparts.timeutil import format_rfc3339

# Modelled on Falco's "Terminal shell in container" alert in a Kubernetes cluster (falco
# -pk / container.info), fields as Falco 0.37 writes them.
SHELL = {
    "hostname": "gpu-node-3",
    "output": "19:21:18.123456789: Notice A shell was spawned in a container with an attached terminal "
              "(evt_type=execve user=root user_uid=0 user_loginuid=-1 process=bash proc_exepath=/bin/bash "
              "parent=runc command=bash -c curl -H 'Authorization: Bearer eyJhbGciOiJSUzI1NiIsImtpZCI6Ik1' "
              "http://10.0.0.1 terminal=34816 exe_flags=EXE_WRITABLE container_id=4ce0b0d13f5c "
              "container_image=vllm/vllm-openai container_image_tag=v0.6.3 container_name=vllm "
              "k8s_ns=inference k8s_pod_name=vllm-7d9f8-abcde)",
    "priority": "Notice",
    "rule": "Terminal shell in container",
    "source": "syscall",
    "tags": ["T1059", "container", "maturity_stable", "mitre_execution", "shell"],
    "time": "2024-04-05T19:21:18.123456789Z",
    "output_fields": {
        "container.id": "4ce0b0d13f5c", "container.image.repository": "vllm/vllm-openai",
        "container.image.tag": "v0.6.3", "container.name": "vllm",
        "evt.arg.flags": "EXE_WRITABLE", "evt.time": 1712344878123456789, "evt.type": "execve",
        "k8s.ns.name": "inference", "k8s.pod.name": "vllm-7d9f8-abcde",
        "proc.aname[2]": "containerd-shim", "proc.aname[3]": "systemd", "proc.aname[4]": None,
        "proc.cmdline": "bash -c curl -H 'Authorization: Bearer eyJhbGciOiJSUzI1NiIsImtpZCI6Ik1' http://10.0.0.1",
        "proc.exepath": "/bin/bash", "proc.name": "bash", "proc.pname": "runc", "proc.tty": 34816,
        "user.loginuid": -1, "user.name": "root", "user.uid": 0,
    },
}
# A miner's outbound connection with fd.* fields; older Falco wrote <NA> for unresolved fields.
MINER = {
    "hostname": "gpu-node-1", "output": "...", "priority": "Critical",
    "rule": "Detect outbound connections to common miner pool ports", "source": "syscall",
    "tags": ["T1496", "mitre_impact", "network"], "time": "2024-04-05T19:21:19.000000001Z",
    "output_fields": {"container.id": "host", "container.name": "host", "container.image.repository": "<NA>",
                      "fd.name": "10.8.0.4:51234->45.9.148.21:3333", "fd.rip": "45.9.148.21", "fd.sip": "45.9.148.21",
                      "fd.cip": "10.8.0.4", "k8s.ns.name": "<NA>", "k8s.pod.name": "<NA>", "proc.name": "xmrig",
                      "proc.cmdline": "xmrig -o stratum+tcp://pool.example:3333 -u 48edfHu7V9Z84Yz --pass x",
                      "user.name": "nobody", "evt.time": 1712344879000000001},
}
# A k8s_audit-source rule from the k8saudit plugin.
KA = {
    "hostname": "falco-k8saudit-0", "output": "...", "priority": "Warning",
    "rule": "Attach/Exec Pod", "source": "k8s_audit", "tags": ["k8s"], "time": "2024-04-05T19:21:20Z",
    "output_fields": {"ka.target.namespace": "inference", "ka.target.name": "vllm-7d9f8-abcde",
                      "ka.target.resource": "pods", "ka.target.subresource": "exec", "ka.user.name": "bob",
                      "ka.verb": "create", "ka.uri": "/api/v1/namespaces/inference/pods/vllm-7d9f8-abcde/exec"},
}


def dumps(d: dict) -> bytes:
    return orjson.dumps(d)


def parse(data: bytes, parser=None):
    events, dead, p = parse_bytes(parser or "falco", data)
    for e in events:
        assert check_event(e) == [], check_event(e)
    return events, dead, p


def test_terminal_shell_golden():
    h = Hasher(b"t")
    [e], dead, _ = parse(dumps(SHELL) + b"\n", FalcoParser(hasher=h))
    assert dead == []
    assert format_rfc3339(e["ts"]) == "2024-04-05T19:21:18.123456789Z"  # nanoseconds kept
    assert e["ts"] == 1712344878123456789
    assert (e["rule"], e["priority"], e["verb"]) == ("Terminal shell in container", "notice", None)
    assert (e["namespace"], e["pod"], e["container"]) == ("inference", "vllm-7d9f8-abcde", "vllm")
    assert e["image"] == "vllm/vllm-openai:v0.6.3"
    assert (e["process"], e["user"], e["src_ip"]) == ("bash", "root", None)
    assert e["node"] == "gpu-node-3" and e["container_id"] == "4ce0b0d13f5c"
    assert e["tags"] == ["T1059", "container", "maturity_stable", "mitre_execution", "shell"]
    assert e["parent"] == "runc" and e["ancestors"] == ["containerd-shim", "systemd"]
    assert e["falco_source"] == "syscall"
    # The bearer token typed on the command line is gone from both texts.
    for text in (e["cmdline"], e["output"]):
        assert "eyJhbGciOiJSUzI1NiIsImtpZCI6Ik1" not in text
        assert h.secret_hash("eyJhbGciOiJSUzI1NiIsImtpZCI6Ik1") in text
    assert e["cmdline"].startswith("bash -c curl")


@pytest.mark.parametrize("text", [
    "curl -H 'X-API-KEY: abcdef0123456789' http://svc",
    "mysql --PASSWORD=hunter2hunter2 -h db",
    "export GITHUB_TOKEN=ghp_0123456789abcdefABCDEF",
    "python train.py --openai sk-proj-0123456789abcdefghijkl",
    "wget --header='authorization: basic dXNlcjpwYXNzd29yZA=='",
    "nothing secret here: bash -il",
])
def test_output_scrubbing_matches_the_hasher(text):
    h = Hasher(b"t")
    alert = {**SHELL, "output": text, "output_fields": {**SHELL["output_fields"], "proc.cmdline": text}}
    [e], _, _ = parse(dumps(alert) + b"\n", FalcoParser(hasher=h))
    assert e["output"] == e["cmdline"] == h.scrub_text(text)


def test_na_values_host_container_and_src_ip():
    [e], dead, _ = parse(dumps(MINER) + b"\n")
    assert dead == []
    assert e["priority"] == "critical"
    assert e["namespace"] is None and e["pod"] is None and e["image"] is None  # <NA>
    assert e["container"] == "host"
    assert e["src_ip"] == "45.9.148.21"  # fd.rip first
    assert e["process"] == "xmrig" and e["user"] == "nobody"
    assert format_rfc3339(e["ts"]) == "2024-04-05T19:21:19.000000001Z"
    [e], _, _ = parse(dumps(MINER) + b"\n", FalcoParser({"src_ip_fields": ["fd.cip"]}))
    assert e["src_ip"] == "10.8.0.4"


def test_k8s_audit_source_fields():
    [e], dead, _ = parse(dumps(KA) + b"\n")
    assert dead == []
    assert (e["verb"], e["namespace"], e["pod"], e["user"]) == ("create", "inference", "vllm-7d9f8-abcde", "bob")
    assert e["falco_source"] == "k8s_audit" and e["priority"] == "warning" and e["process"] is None


@pytest.mark.parametrize("given, expected", [
    ("Emergency", "emergency"), ("ALERT", "alert"), ("Error", "error"), ("Informational", "informational"),
    ("Info", "informational"), ("Debug", "debug"),
])
def test_priorities_are_lowercased(given, expected):
    [e], _, _ = parse(dumps({**SHELL, "priority": given}) + b"\n")
    assert e["priority"] == expected


def test_unknown_priority_is_kept_and_counted():
    [e], dead, p = parse(dumps({**SHELL, "priority": "Severe"}) + b"\n")
    assert dead == [] and e["priority"] == "severe" and p.stats.notes == {"unknown_priority": 1}


def test_time_falls_back_to_evt_time_and_container_image():
    alert = {**SHELL, "output_fields": {**SHELL["output_fields"], "container.image": "vllm/vllm-openai:v0.6.3"}}
    del alert["time"]
    del alert["output_fields"]["container.image.repository"]
    [e], dead, _ = parse(dumps(alert) + b"\n")
    assert dead == []
    assert e["ts"] == 1712344878123456789  # exact: an integer, never a float
    assert e["image"] == "vllm/vllm-openai:v0.6.3"


def _with(**kw):
    d = {**SHELL, **kw}
    return dumps({k: v for k, v in d.items() if v is not ...})


def _fields(**kw):
    return dumps({**SHELL, "output_fields": {**SHELL["output_fields"], **kw}})


@pytest.mark.parametrize("bad, reason", [
    (dumps(SHELL)[:-30], "invalid JSON"),
    (b"\x00\x9f\x92\x96 not falco", "invalid JSON"),
    (_with(time="2024-02-30T19:21:18.123456789Z"), "day is out of range"),
    (_with(time="2024-13-05T19:21:18.123456789Z"), "month must be in 1..12"),
    (_with(time=1712344878), "time: expected RFC 3339 text"),
    (_with(rule=...), "missing field 'rule'"),
    (_with(rule=["x"]), "rule: expected text"),
    (_with(priority=4), "priority: expected text"),
    (_with(tags="container,shell"), "tags: expected a list of text"),
    (_with(output_fields=["k8s.pod.name"]), "output_fields: expected a JSON object"),
    (_fields(**{"k8s.pod.name": {"name": "x"}}), "k8s.pod.name: expected text"),
    (_with(time=...,  output_fields={"evt.time": 1.7e18}), "alert has no time"),
])
def test_bad_alerts_are_dead_lettered_and_the_rest_parses(bad, reason):
    events, dead, p = parse(dumps(SHELL) + b"\n" + bad + b"\n" + dumps(MINER) + b"\n")
    assert len(events) == 2
    assert len(dead) == 1 and dead[0].line == 2 and reason in dead[0].reason, dead
    assert (p.stats.records, p.stats.parsed, p.stats.failed) == (3, 2, 1)


def test_detection():
    data = dumps(SHELL) + b"\n" + dumps(MINER) + b"\n" + dumps(KA) + b"\n"
    assert detect_format(data) == "falco"
    nginx = b'10.0.0.1 - - [08/Apr/2019:16:16:55 +0000] "GET / HTTP/1.1" 200 1 "-" "-"\n'
    docker = b'{"Type":"container","Action":"start","Actor":{"ID":"a","Attributes":{}},"time":1,"timeNano":1}\n'
    kong = b'{"request":{"method":"POST"},"response":{"status":200},"route":{"name":"r"},"started_at":1}\n'
    for head in (nginx, docker, kong):
        assert not FalcoParser.sniff(head, [l for l in head.split(b"\n") if l])
