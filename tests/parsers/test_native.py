"""The native prediction line: time spellings, list checks, credential safety."""

import orjson
import pytest

from ramparts.events import check_event
from ramparts.redact import Hasher
from ramparts.streams.decode import detect_format, parse_bytes
from ramparts.streams.parsers.native import NativePredictionParser
from ramparts.timeutil import format_rfc3339

LINE = orjson.dumps({"ts": "2024-04-05T19:21:18.123Z", "principal": "key-17", "model": "fraud-xgb",
                     "model_version": "3", "src_ip": "10.4.7.19", "input": [0.12, -1.3, 4.0, 0.0],
                     "output": [0.91]})


def line(**kw) -> bytes:
    doc = orjson.loads(LINE)
    doc.update(kw)
    return orjson.dumps({k: v for k, v in doc.items() if v is not ...})


def parse(data: bytes, parser=None):
    events, dead, p = parse_bytes(parser or "native", data)
    for e in events:
        assert check_event(e) == [], check_event(e)
    return events, dead, p


def test_golden_line():
    [e], dead, _ = parse(LINE + b"\n")
    assert dead == []
    assert e == {"kind": "prediction", "ts": e["ts"], "source": "native", "principal": "key-17",
                 "src_ip": "10.4.7.19", "model": "fraud-xgb", "model_version": "3",
                 "input": [0.12, -1.3, 4.0, 0.0], "output": [0.91], "request_id": None, "latency_ms": None}
    assert format_rfc3339(e["ts"]) == "2024-04-05T19:21:18.123Z"


@pytest.mark.parametrize("ts, expected", [
    (1712344878, "2024-04-05T19:21:18Z"),  # seconds
    (1712344878.25, "2024-04-05T19:21:18.250Z"),  # float seconds
    (1712344878.123, "2024-04-05T19:21:18.123Z"),  # as written, not the float's binary neighbour
    (1712344878123.5, "2024-04-05T19:21:18.123500Z"),  # float milliseconds
    (1712344878123, "2024-04-05T19:21:18.123Z"),  # milliseconds
    (1712344878123456, "2024-04-05T19:21:18.123456Z"),  # microseconds
    (1712344878123456789, "2024-04-05T19:21:18.123456789Z"),  # nanoseconds, exact beyond 2^53
    ("1712344878123", "2024-04-05T19:21:18.123Z"),  # digits as text
    ("2024-04-05T21:21:18.5+02:00", "2024-04-05T19:21:18.500Z"),  # offset honoured
])
def test_time_spellings(ts, expected):
    [e], dead, _ = parse(line(ts=ts) + b"\n")
    assert dead == []
    assert format_rfc3339(e["ts"]) == expected


def test_scalar_output_is_wrapped_and_number_version_becomes_text():
    [e], _, _ = parse(line(output="fraud", model_version=3) + b"\n")
    assert e["output"] == ["fraud"] and e["model_version"] == "3"
    p = NativePredictionParser({"wrap_scalar_output": False})
    _, dead, _ = parse(line(output=0.5) + b"\n", p)
    assert "output: expected a list" in dead[0].reason


def test_absent_fields_are_none_and_extras_pass_through():
    [e], dead, _ = parse(line(principal=..., src_ip=..., output=..., model_version=..., request_id="r-1",
                              latency_ms=12) + b"\n")
    assert dead == []
    assert e["principal"] is None and e["src_ip"] is None and e["output"] is None and e["model_version"] is None
    assert e["request_id"] == "r-1" and e["latency_ms"] == 12.0 and isinstance(e["latency_ms"], float)


def test_raw_credentials_as_principal_are_hashed():
    h = Hasher(b"t")
    [a, b], _, _ = parse(line(principal="Bearer sk-live-0123456789abcdefghij") + b"\n"
                         + line(principal="sk-live-0123456789abcdefghij") + b"\n",
                         NativePredictionParser(hasher=h))
    assert a["principal"] == b["principal"] == h.principal("sk-live-0123456789abcdefghij")
    assert "0123456789abcdefghij" not in a["principal"]
    [c], _, _ = parse(line(principal="key-17") + b"\n", NativePredictionParser({"principal_is_secret": True}, h))
    assert c["principal"] == h.principal("key-17")


@pytest.mark.parametrize("bad, reason", [
    (LINE[:-9], "invalid JSON"),
    (b"\xff\xfe\x00garbage\x89", "invalid JSON"),
    (b"[1, 2, 3]", "expected a JSON object"),
    (line(ts=...), "missing field 'ts'"),
    (line(ts="2024-02-30T00:00:00Z"), "day is out of range"),
    (line(ts="2024-13-01T00:00:00Z"), "month must be in 1..12"),
    (line(ts="yesterday"), "not an RFC 3339 timestamp"),
    (line(ts=-5), "timestamp out of range"),
    (line(ts=True), "ts: expected RFC 3339 text or an epoch number"),
    (line(ts=[1712344878]), "ts: expected RFC 3339 text or an epoch number"),
    (line(input="0.12,-1.3"), "input: expected a list"),
    (line(input={"age": 3}), "input: expected a list"),
    (line(output={"label": "fraud"}), "output: expected a list"),
    (line(principal=["key-17"]), "principal: expected text"),
    (line(model={"name": "x"}), "model: expected text"),
    (line(latency_ms="fast"), "latency_ms: expected a number"),
])
def test_bad_lines_are_dead_lettered_and_the_rest_parses(bad, reason):
    events, dead, p = parse(LINE + b"\n" + bad + b"\n" + LINE + b"\n")
    assert len(events) == 2
    assert len(dead) == 1 and dead[0].line == 2 and reason in dead[0].reason, dead
    assert (p.stats.records, p.stats.parsed, p.stats.failed) == (3, 2, 1)


def test_detection():
    assert detect_format(LINE + b"\n" + LINE + b"\n") == "native"
    nginx = b'10.0.0.1 - - [08/Apr/2019:16:16:55 +0000] "GET / HTTP/1.1" 200 1 "-" "-"\n'
    litellm = orjson.dumps({"request_id": "chatcmpl-1", "model": "gpt-4o", "startTime": "2024-04-05 19:21:18.1",
                            "messages": "{}", "response": "{}", "api_key": "abc"}) + b"\n"
    kserve = orjson.dumps({"specversion": "1.0", "id": "1", "type": "org.kubeflow.serving.inference.request",
                           "time": "2024-04-05T19:21:18Z", "data": {"instances": [[1]]}}) + b"\n"
    for head in (nginx, litellm, kserve):
        assert not NativePredictionParser.sniff(head, [l for l in head.split(b"\n") if l])
