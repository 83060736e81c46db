"""Docker engine events: exact timeNano, exec commands, Kubernetes labels, legacy keys."""

import orjson
import pytest

from ramparts.events import check_event
from ramparts.redact import Hasher
from ramparts.streams.decode import detect_format, parse_bytes
from ramparts.streams.parsers.docker_events import DockerEventsParser
from ramparts.timeutil import format_rfc3339

CID = "4ce0b0d13f5c8e7b23da7d48fe889434573036c27ae5a74837233de441c3601e"
LABELS = {"io.kubernetes.pod.name": "vllm-7d9f8-abcde", "io.kubernetes.pod.namespace": "inference",
          "io.kubernetes.container.name": "vllm", "io.kubernetes.pod.uid": "2b7c7f0e-8f2a-4b1e-9d43-0c1b2a3d4e5f"}

# As `docker events --format '{{json .}}'` prints them (Docker 24: legacy keys still present).
# The timeNano literal is written as text so that no float ever touches it.
EXEC_START = (b'{"status":"exec_start: bash -c nvidia-smi","id":"' + CID.encode() + b'",'
              b'"from":"vllm/vllm-openai:v0.6.3","Type":"container","Action":"exec_start: bash -c nvidia-smi",'
              b'"Actor":{"ID":"' + CID.encode() + b'","Attributes":{"execID":"9f3c1a","image":"vllm/vllm-openai:v0.6.3",'
              b'"name":"k8s_vllm_vllm-7d9f8-abcde_inference_2b7c7f0e_0",'
              b'"io.kubernetes.pod.name":"vllm-7d9f8-abcde","io.kubernetes.pod.namespace":"inference",'
              b'"io.kubernetes.container.name":"vllm"}},"scope":"local","time":1712345678,'
              b'"timeNano":1712345678123456789}')


def ev(action: str, typ: str = "container", attrs: dict | None = None, time_nano: int = 1712345679000000001,
       actor_id: str = CID) -> bytes:
    return orjson.dumps({"Type": typ, "Action": action,
                         "Actor": {"ID": actor_id, "Attributes": attrs if attrs is not None else {
                             "image": "vllm/vllm-openai:v0.6.3", "name": "k8s_vllm_x", **LABELS}},
                         "scope": "local", "time": time_nano // 10**9, "timeNano": time_nano})


def parse(data: bytes, parser=None):
    events, dead, p = parse_bytes(parser or "docker_events", data)
    for e in events:
        assert check_event(e) == [], check_event(e)
    return events, dead, p


def test_time_nano_beyond_2_53_is_exact():
    assert 1712345678123456789 > 2**53 and float(1712345678123456789) != 1712345678123456789
    [e], dead, _ = parse(EXEC_START + b"\n")
    assert dead == []
    assert e["ts"] == 1712345678123456789 and type(e["ts"]) is int
    assert format_rfc3339(e["ts"]) == "2024-04-05T19:34:38.123456789Z"


def test_exec_start_golden():
    [e], _, _ = parse(EXEC_START + b"\n")
    assert (e["verb"], e["process"], e["cmdline"]) == ("exec_start", "bash", "bash -c nvidia-smi")
    assert (e["namespace"], e["pod"], e["container"]) == ("inference", "vllm-7d9f8-abcde", "vllm")
    assert e["image"] == "vllm/vllm-openai:v0.6.3"
    assert (e["type"], e["actor_id"], e["exec_id"]) == ("container", CID, "9f3c1a")
    assert e["rule"] is None and e["priority"] is None and e["user"] is None and e["src_ip"] is None
    assert e["action_detail"] is None and e["exit_code"] is None


def test_exec_create_with_a_path_and_a_token_on_the_command_line():
    h = Hasher(b"t")
    line = ev("exec_create: /usr/bin/curl -H Authorization: Bearer ghp_0123456789abcdefABCDEF http://10.0.0.1 ")
    [e], _, _ = parse(line + b"\n", DockerEventsParser(hasher=h))
    assert e["verb"] == "exec_create" and e["process"] == "curl"
    assert "ghp_0123456789abcdefABCDEF" not in e["cmdline"]
    assert e["cmdline"].startswith("/usr/bin/curl -H Authorization: Bearer key:")


def test_plain_container_outside_kubernetes_and_other_actions():
    attrs = {"image": "xmrig/xmrig:6.21", "name": "quirky_bohr", "exitCode": "137"}
    data = (ev("die", attrs=attrs) + b"\n"
            + ev("health_status: unhealthy", attrs={"image": "nginx:1.25", "name": "web"}) + b"\n")
    [die, health], dead, _ = parse(data)
    assert dead == []
    assert (die["verb"], die["container"], die["pod"], die["namespace"], die["image"]) == (
        "die", "quirky_bohr", None, None, "xmrig/xmrig:6.21")
    assert die["exit_code"] == 137 and die["process"] is None
    assert (health["verb"], health["action_detail"]) == ("health_status", "unhealthy")


def test_image_and_network_events():
    data = (ev("pull", typ="image", attrs={"name": "xmrig/xmrig"}, actor_id="xmrig/xmrig:6.21") + b"\n"
            + ev("connect", typ="network", attrs={"container": CID, "name": "bridge", "type": "bridge"},
                 actor_id="a1b2c3") + b"\n")
    [pull, net], dead, _ = parse(data)
    assert dead == []
    assert (pull["type"], pull["verb"], pull["image"], pull["container"]) == ("image", "pull", "xmrig/xmrig", None)
    assert (net["type"], net["verb"], net["container"], net["actor_id"]) == ("network", "connect", None, "a1b2c3")


def test_legacy_lowercase_only_events():
    line = b'{"status":"start","id":"' + CID.encode() + b'","from":"nginx:1.25","time":1461943101}'
    [e], dead, _ = parse(line + b"\n")
    assert dead == []
    assert (e["verb"], e["actor_id"], e["image"], e["type"]) == ("start", CID, "nginx:1.25", "container")
    assert format_rfc3339(e["ts"]) == "2016-04-29T15:18:21Z"


def test_float_time_nano_falls_back_to_exact_seconds():
    line = orjson.dumps({"Type": "container", "Action": "start", "Actor": {"ID": CID, "Attributes": {}},
                         "time": 1712345678, "timeNano": 1.7123456781234568e18})
    [e], _, _ = parse(line + b"\n")
    assert e["ts"] == 1712345678 * 10**9


@pytest.mark.parametrize("bad, reason", [
    (EXEC_START[:-25], "invalid JSON"),
    (b"\xde\xad\xbe\xef garbage", "invalid JSON"),
    (b'{"Type":"container","Actor":{"ID":"x"},"time":1712345678}', "missing field 'Action'"),
    (b'{"Type":"container","Action":7,"time":1712345678}', "Action: expected text"),
    (b'{"Type":"container","Action":"start","time":"yesterday"}', "time: expected epoch seconds"),
    (b'{"Type":"container","Action":"start","time":1712345678,"timeNano":"abc"}', "timeNano: expected an integer"),
    (b'{"Type":"container","Action":"start"}', "missing field 'time'"),
    (b'{"Type":"container","Action":"start","time":-1712345678}', "timestamp out of range"),
    (b'{"Type":"container","Action":"start","time":1712345678,"Actor":"x"}', "Actor: expected a JSON object"),
    (b'{"Type":"container","Action":"start","time":1712345678,"Actor":{"Attributes":{"image":["a"]}}}',
     "image: expected text"),
    (b'{"Type":"container","Action":"die","time":1712345678,"Actor":{"Attributes":{"exitCode":"oops"}}}',
     "exitCode: expected an integer"),
])
def test_bad_events_are_dead_lettered_and_the_rest_parses(bad, reason):
    events, dead, p = parse(EXEC_START + b"\n" + bad + b"\n" + ev("start") + b"\n")
    assert len(events) == 2
    assert len(dead) == 1 and dead[0].line == 2 and reason in dead[0].reason, dead
    assert (p.stats.records, p.stats.parsed, p.stats.failed) == (3, 2, 1)


def test_detection():
    assert detect_format(EXEC_START + b"\n" + ev("start") + b"\n") == "docker_events"
    nginx = b'10.0.0.1 - - [08/Apr/2019:16:16:55 +0000] "GET / HTTP/1.1" 200 1 "-" "-"\n'
    falco = b'{"rule":"Terminal shell in container","priority":"Notice","output":"x","time":"2024-04-05T19:21:18Z"}\n'
    envoy = b'{"start_time":"2024-04-05T19:21:18.123Z","method":"POST","response_code":200,"status":"ok"}\n'
    for head in (nginx, falco, envoy):
        assert not DockerEventsParser.sniff(head, [l for l in head.split(b"\n") if l])
