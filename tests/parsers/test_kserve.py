"""KServe payload logging CloudEvents: both spellings, v1 and v2 bodies, the request/response join."""

import base64

import orjson
import pytest

from ramparts.events import check_event
from ramparts.redact import Hasher
from ramparts.streams.decode import detect_format, parse_bytes
from ramparts.streams.parsers.kserve import KServeParser
from ramparts.timeutil import format_rfc3339

REQ = "org.kubeflow.serving.inference.request"
RESP = "org.kubeflow.serving.inference.response"


def ce(type_, id_, time, data, **ext):
    """A structured-mode CloudEvent as KServe's logger builds it (pkg/logger/worker.go)."""
    doc = {"specversion": "1.0", "id": id_, "type": type_, "source": "http://localhost:9081/",
           "time": time, "datacontenttype": "application/json",
           "inferenceservicename": "sklearn-iris", "namespace": "default", "component": "predictor",
           "endpoint": "", "traceparent": "00-90bdf848647d50283394155d2df58f19-84dacdfdf07cadfc-00"}
    doc.update(ext)
    doc["data"] = data
    return orjson.dumps(doc)


# The two events of KServe's own logger sample (docs/samples/logger/basic/README.md).
V1_REQ = ce(REQ, "0009174a-24a8-4603-b098-09c8799950e9", "2021-04-10T00:23:26.0789529Z",
            {"instances": [[6.8, 2.8, 4.8, 1.4], [6.0, 3.4, 4.5, 1.6]]})
V1_RESP = ce(RESP, "0009174a-24a8-4603-b098-09c8799950e9", "2021-04-10T00:23:26.080736102Z",
             {"predictions": [1, 1]})

V2_REQ = ce(REQ, "5a1c4a57-23c3-4d5b-a79f-2d0c9ab3e1f1", "2024-04-05T19:21:18.100Z",
            {"inputs": [{"name": "input-0", "shape": [2, 4], "datatype": "FP32",
                         "data": [6.8, 2.8, 4.8, 1.4, 6.0, 3.4, 4.5, 1.6]}]},
            inferenceservicename="sklearn-v2-iris")
V2_RESP = ce(RESP, "5a1c4a57-23c3-4d5b-a79f-2d0c9ab3e1f1", "2024-04-05T19:21:18.142Z",
             {"model_name": "sklearn-v2-iris", "model_version": "v1.0.0", "id": "d3b15cad-50a2-4eaf-80ce-8b0a428bd298",
              "parameters": None,
              "outputs": [{"name": "output-0", "shape": [2], "datatype": "INT32", "data": [1, 1]}]},
             inferenceservicename="sklearn-v2-iris")


def parse(data: bytes, parser=None):
    events, dead, p = parse_bytes(parser or "kserve", data)
    for e in events:
        assert check_event(e) == [], check_event(e)
    return events, dead, p


def test_v1_request_and_response_join_into_one_prediction():
    events, dead, p = parse(V1_REQ + b"\n" + V1_RESP + b"\n")
    assert dead == []
    assert len(events) == 1
    e = events[0]
    assert e["kind"] == "prediction" and e["source"] == "kserve"
    assert format_rfc3339(e["ts"]) == "2021-04-10T00:23:26.078952900Z"  # the request's time
    assert e["input"] == [[6.8, 2.8, 4.8, 1.4], [6.0, 3.4, 4.5, 1.6]]
    assert e["output"] == [1, 1]
    assert e["model"] == "sklearn-iris"
    assert e["model_version"] is None  # endpoint "" carries no version
    assert e["request_id"] == "0009174a-24a8-4603-b098-09c8799950e9"
    assert e["namespace"] == "default" and e["component"] == "predictor"
    assert e["protocol"] == "v1" and e["input_names"] is None
    assert e["latency_ms"] == pytest.approx(1.783202)
    assert p.stats.notes == {}
    assert (p.stats.records, p.stats.parsed, p.stats.events) == (2, 2, 1)


def test_v2_tensors_are_reshaped_and_model_comes_from_the_response():
    events, dead, _ = parse(V2_REQ + b"\n" + V2_RESP + b"\n")
    assert dead == []
    [e] = events
    assert e["input"] == [[6.8, 2.8, 4.8, 1.4], [6.0, 3.4, 4.5, 1.6]]  # [2, 4] -> two rows of four
    assert e["output"] == [1, 1]
    assert (e["model"], e["model_version"], e["protocol"]) == ("sklearn-v2-iris", "v1.0.0", "v2")
    assert e["input_names"] == ["input-0"] and e["output_names"] == ["output-0"]
    assert format_rfc3339(e["ts"]) == "2024-04-05T19:21:18.100Z"
    assert e["latency_ms"] == 42.0


def test_v2_several_tensors_and_nested_or_mismatched_data():
    body = {"inputs": [
        {"name": "ids", "shape": [1, 3], "datatype": "INT64", "data": [[101, 2023, 102]]},  # sent nested
        {"name": "mask", "shape": [1, 3], "datatype": "INT64", "data": [1, 1, 1]},
        {"name": "odd", "shape": [2, 2], "datatype": "FP32", "data": [0.1, 0.2, 0.3]},  # wrong length
    ]}
    events, dead, p = parse(ce(REQ, "r1", "2024-04-05T19:21:18Z", body) + b"\n")
    assert dead == []
    [e] = events
    assert e["input"] == [[[101, 2023, 102]], [[1, 1, 1]], [0.1, 0.2, 0.3]]
    assert e["input_names"] == ["ids", "mask", "odd"]
    assert e["output"] is None
    assert p.stats.notes == {"tensor_shape_mismatch": 1, "unjoined_requests": 1}


def test_interleaved_requests_and_responses_join_on_id_whatever_the_order():
    lines = []
    for i in range(3):
        lines.append(ce(REQ, f"id-{i}", f"2024-04-05T19:21:1{i}Z", {"instances": [[i, i]]}))
    # Responses arrive out of order, and one response before its request (KServe's logger
    # sends from a pool of workers).
    lines.append(ce(RESP, "id-2", "2024-04-05T19:21:12.5Z", {"predictions": [2]}))
    lines.append(ce(RESP, "id-3", "2024-04-05T19:21:13.5Z", {"predictions": [3]}))
    lines.append(ce(RESP, "id-0", "2024-04-05T19:21:10.5Z", {"predictions": [0]}))
    lines.append(ce(REQ, "id-3", "2024-04-05T19:21:13Z", {"instances": [[3, 3]]}))
    lines.append(ce(RESP, "id-1", "2024-04-05T19:21:11.5Z", {"predictions": [1]}))
    events, dead, p = parse(b"\n".join(lines) + b"\n")
    assert dead == []
    by_id = {e["request_id"]: e for e in events}
    assert sorted(by_id) == ["id-0", "id-1", "id-2", "id-3"]
    for i in range(4):
        e = by_id[f"id-{i}"]
        assert e["input"] == [[i, i]] and e["output"] == [i]
        assert format_rfc3339(e["ts"]) == f"2024-04-05T19:21:1{i}Z"  # the request's time
        assert e["latency_ms"] == 500.0
    assert p.stats.notes == {}


def test_unmatched_halves_are_emitted_at_the_end_and_counted():
    data = (ce(REQ, "lonely-req", "2024-04-05T19:21:10Z", {"instances": [[1]]}) + b"\n"
            + ce(RESP, "lonely-resp", "2024-04-05T19:21:11Z", {"predictions": [9]}) + b"\n")
    events, dead, p = parse(data)
    assert dead == []
    by_id = {e["request_id"]: e for e in events}
    assert by_id["lonely-req"]["input"] == [[1]] and by_id["lonely-req"]["output"] is None
    assert by_id["lonely-resp"]["input"] is None and by_id["lonely-resp"]["output"] == [9]
    assert format_rfc3339(by_id["lonely-resp"]["ts"]) == "2024-04-05T19:21:11Z"
    assert by_id["lonely-req"]["latency_ms"] is None
    assert p.stats.notes == {"unjoined_requests": 1, "orphan_responses": 1}
    assert p.stats.events == 2


def test_pending_map_is_bounded():
    p = KServeParser({"max_pending": 2})
    lines = [ce(REQ, f"r{i}", "2024-04-05T19:21:10Z", {"instances": [[i]]}) for i in range(5)]
    lines.append(ce(RESP, "r4", "2024-04-05T19:21:11Z", {"predictions": [4]}))
    events, dead, p = parse(b"\n".join(lines) + b"\n", p)
    assert dead == [] and len(events) == 5
    assert [e["request_id"] for e in events[:3]] == ["r0", "r1", "r2"]  # flushed oldest first
    assert events[3]["request_id"] == "r4" and events[3]["output"] == [4]
    assert p.stats.notes["pending_evicted"] == 3
    assert p.stats.notes["unjoined_requests"] == 4


def test_duplicate_request_id_flushes_the_first():
    lines = [ce(REQ, "same", "2024-04-05T19:21:10Z", {"instances": [[1]]}),
             ce(REQ, "same", "2024-04-05T19:21:12Z", {"instances": [[2]]}),
             ce(RESP, "same", "2024-04-05T19:21:13Z", {"predictions": [2]})]
    events, dead, p = parse(b"\n".join(lines) + b"\n")
    assert [(e["input"], e["output"]) for e in events] == [([[1]], None), ([[2]], [2])]
    assert p.stats.notes == {"duplicate_ids": 1, "unjoined_requests": 1}


def test_binary_mode_dumps_with_ce_headers():
    h = Hasher(b"t")
    req = orjson.dumps({
        "headers": {"Ce-Id": ["b-1"], "Ce-Specversion": ["1.0"], "Ce-Type": [REQ],
                    "Ce-Source": ["http://sklearn-iris-predictor-default.kserve-test/"],
                    "Ce-Time": ["2024-04-05T19:21:18.5Z"], "Ce-Namespace": ["kserve-test"],
                    "Ce-Component": ["predictor"], "Ce-Endpoint": ["canary"],
                    "Content-Type": ["application/json"],
                    "Authorization": ["Bearer eyJhbGciOiJSUzI1NiJ9.secret-token-value"],
                    "X-Forwarded-For": ["198.51.100.7, 10.0.0.2"]},
        "body": '{"instances": [[5.1, 3.5, 1.4, 0.2]]}'})
    resp = orjson.dumps({"ce-id": "b-1", "ce-type": RESP, "ce-source": "http://localhost:9081/",
                         "ce_time": "2024-04-05T19:21:18.6Z", "content-type": "application/json",
                         "data": {"predictions": [0]}})
    events, dead, _ = parse(req + b"\n" + resp + b"\n", KServeParser(hasher=h))
    assert dead == []
    [e] = events
    assert e["input"] == [[5.1, 3.5, 1.4, 0.2]] and e["output"] == [0]
    # No inferenceservicename: the model comes from the source host, minus KServe's suffix.
    assert e["model"] == "sklearn-iris"
    assert e["model_version"] == "canary" and e["namespace"] == "kserve-test"
    assert e["principal"] == h.principal("eyJhbGciOiJSUzI1NiJ9.secret-token-value")
    assert "secret-token-value" not in orjson.dumps(e).decode()
    assert e["src_ip"] == "198.51.100.7"


def test_principal_from_configured_attribute_and_logged_metadata_headers():
    h = Hasher(b"t")
    # KServe's `metadata` extension: json.Marshal of the headers named in metadataHeaders.
    meta = orjson.dumps({"X-Api-Key": ["sk-proj-0123456789abcdefghijkl"], "X-Real-Ip": ["203.0.113.5"]}).decode()
    line = ce(REQ, "m1", "2024-04-05T19:21:18Z", {"instances": [[1]]}, metadata=meta)
    [e], dead, _ = parse(line + b"\n", KServeParser(hasher=h))
    assert e["principal"] == h.principal("sk-proj-0123456789abcdefghijkl")
    assert e["src_ip"] == "203.0.113.5"

    line = ce(REQ, "m2", "2024-04-05T19:21:18Z", {"instances": [[1]]}, tenant="team-blue", clientaddr="192.0.2.1",
              user="not-this-one")
    opts = {"principal_attribute": "tenant", "src_ip_attribute": "clientaddr"}
    [e], _, _ = parse(line + b"\n", KServeParser(opts, hasher=h))
    assert (e["principal"], e["src_ip"]) == ("team-blue", "192.0.2.1")

    # Default attribute `principal`, then the fallbacks (`user`), kept readable.
    line = ce(REQ, "m3", "2024-04-05T19:21:18Z", {"instances": [[1]]}, user="alice")
    [e], _, _ = parse(line + b"\n", KServeParser(hasher=h))
    assert e["principal"] == "alice"


def test_data_base64_and_opaque_bodies():
    line = orjson.dumps({"specversion": "1.0", "id": "x1", "type": REQ, "source": "/", "time": "2024-04-05T19:21:18Z",
                         "inferenceservicename": "resnet",
                         "data_base64": base64.b64encode(b'{"instances": [{"b64": "aGVsbG8="}]}').decode()})
    png = orjson.dumps({"specversion": "1.0", "id": "x2", "type": REQ, "source": "/", "time": "2024-04-05T19:21:18Z",
                        "inferenceservicename": "resnet", "datacontenttype": "application/octet-stream",
                        "data_base64": base64.b64encode(b"\x89PNG\r\n\x1a\n....").decode()})
    events, dead, p = parse(line + b"\n" + png + b"\n")
    assert dead == []
    by_id = {e["request_id"]: e for e in events}
    assert by_id["x1"]["input"] == [{"b64": "aGVsbG8="}] and by_id["x1"]["model"] == "resnet"
    assert by_id["x2"]["input"] is None
    assert p.stats.notes["opaque_bodies"] == 1


def test_cloudevents_batch_mode_with_a_bad_item():
    bad = {"specversion": "1.0", "id": "z", "type": REQ, "time": "2024-02-30T00:00:00Z", "data": {}}
    batch = b"[" + V1_REQ + b"," + orjson.dumps(bad) + b"," + V1_RESP + b"]"
    events, dead, p = parse(batch + b"\n")
    assert len(events) == 1 and events[0]["output"] == [1, 1]
    assert len(dead) == 1 and dead[0].item == 1 and "day is out of range" in dead[0].reason
    assert (p.stats.records, p.stats.parsed, p.stats.failed) == (1, 1, 0)


def test_response_stamped_before_its_request_has_no_latency():
    data = (ce(REQ, "early", "2024-04-05T19:21:18.200Z", {"instances": [[1]]}) + b"\n"
            + ce(RESP, "early", "2024-04-05T19:21:18.199Z", {"predictions": [1]}) + b"\n")
    [e], _, _ = parse(data)
    assert e["latency_ms"] is None and e["output"] == [1]


def test_other_cloudevent_types_are_skipped_and_counted():
    other = orjson.dumps({"specversion": "1.0", "id": "k1", "type": "dev.knative.apiserver.resource.update",
                          "source": "/apis/v1", "time": "2024-04-05T19:21:18Z", "data": {}})
    events, dead, p = parse(other + b"\n" + V1_REQ + b"\n" + V1_RESP + b"\n")
    assert len(events) == 1 and dead == []
    assert p.stats.skipped == 1 and p.stats.notes == {"other_event_types": 1}


@pytest.mark.parametrize("bad, reason", [
    (V1_REQ[:-20], "invalid JSON"),
    (b"\x00\x01\xff\xfe\x89PNG garbage", "invalid JSON"),
    (ce(REQ, "b1", "2024-02-30T00:00:00Z", {"instances": [[1]]}), "day is out of range"),
    (ce(REQ, "b2", "2024-13-01T00:00:00Z", {"instances": [[1]]}), "month must be in 1..12"),
    (ce(REQ, "b3", 1712345678, {"instances": [[1]]}), "time: expected RFC 3339 text"),
    (ce(REQ, "b4", "2024-04-05T19:21:18Z", {"instances": "6.8,2.8"}), "instances: expected a list"),
    (ce(REQ, "b5", "2024-04-05T19:21:18Z", {"inputs": [{"name": "x", "shape": [2], "data": "ab"}]}),
     "inputs[0].data: expected a list"),
    (ce(REQ, "b6", "2024-04-05T19:21:18Z", {"inputs": [{"name": "x", "shape": ["2"], "data": [1, 2]}]}),
     "shape: expected a list of non-negative integers"),
    (ce(RESP, "b7", "2024-04-05T19:21:18Z", {"predictions": {"a": 1}}), "predictions: expected a list"),
    (orjson.dumps({"specversion": "1.0", "type": REQ, "time": "2024-04-05T19:21:18Z", "data": {}}), "without an id"),
    (orjson.dumps({"hello": "world"}), "not a CloudEvent"),
    (ce(REQ, "b8", "2024-04-05T19:21:18Z", {"instances": [[1]]}, principal={"x": 1}),
     "principal: expected text"),
])
def test_bad_records_are_dead_lettered_and_the_rest_still_joins(bad, reason):
    events, dead, p = parse(V1_REQ + b"\n" + bad + b"\n" + V1_RESP + b"\n")
    assert len(dead) == 1 and dead[0].line == 2 and reason in dead[0].reason, dead
    assert dead[0].raw == bad
    assert len(events) == 1 and events[0]["output"] == [1, 1]
    assert (p.stats.records, p.stats.parsed, p.stats.failed) == (3, 2, 1)


def test_detection():
    data = V1_REQ + b"\n" + V1_RESP + b"\n"
    assert detect_format(data) == "kserve"
    binary = orjson.dumps({"ce-id": "1", "ce-type": REQ, "ce-time": "2024-04-05T19:21:18Z", "body": {"instances": []}})
    assert detect_format(binary + b"\n") == "kserve"
    assert detect_format(b"[" + V1_REQ + b"," + V1_RESP + b"]\n") == "kserve"
    nginx = b'10.0.0.1 - - [08/Apr/2019:16:16:55 +0000] "GET / HTTP/1.1" 200 1 "-" "-"\n'
    native = b'{"ts":"2024-04-05T19:21:18Z","principal":"k","model":"m","input":[1],"output":[0]}\n'
    other_ce = orjson.dumps({"specversion": "1.0", "id": "1", "type": "com.example.thing", "source": "/"}) + b"\n"
    for head in (nginx, native, other_ce):
        assert not KServeParser.sniff(head, [l for l in head.split(b"\n") if l])
