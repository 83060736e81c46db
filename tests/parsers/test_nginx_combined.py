import pytest

from ramparts.redact import Hasher
from ramparts.streams.decode import detect_format, parse_bytes
from ramparts.streams.parsers.nginx_combined import NginxCombinedParser
from ramparts.timeutil import format_rfc3339

LINE = (b'203.0.113.9 - team-a [08/Apr/2019:18:16:55 +0200] "POST /v1/chat/completions HTTP/1.1" 200 1532 '
        b'"-" "OpenAI/Python 1.40.0"')


def test_combined_line_golden():
    events, dead, _ = parse_bytes("nginx_combined", LINE + b"\n")
    assert dead == []
    e = events[0]
    assert format_rfc3339(e["ts"]) == "2019-04-08T16:16:55Z"  # %z honoured
    assert (e["principal"], e["src_ip"], e["method"], e["path"], e["status"], e["bytes_out"], e["user_agent"]) == (
        "team-a", "203.0.113.9", "POST", "/v1/chat/completions", 200, 1532, "OpenAI/Python 1.40.0")
    assert e["latency_ms"] is None and e["model"] is None


def test_dashes_ipv6_and_garbage_request_lines():
    data = (b'::1 - - [08/Apr/2019:16:16:55 +0000] "-" 400 0 "-" "-"\n'
            b'2001:db8::7 - - [08/Apr/2019:16:16:56 +0000] "\\x16\\x03\\x01\\x02\\x00\\x01\\x00" 400 157 "-" "-"\n')
    events, dead, _ = parse_bytes("nginx_combined", data)
    assert dead == []
    assert [e["principal"] for e in events] == [None, None]
    assert [e["src_ip"] for e in events] == ["::1", "2001:db8::7"]
    assert events[0]["path"] == "-" and events[0]["method"] is None and events[0]["bytes_out"] == 0
    assert events[1]["method"] is None and events[1]["path"].startswith("\\x16")


def test_trailing_fields_by_position_and_secret_principal():
    p = NginxCombinedParser({"principal_field": "extra:1", "principal_is_secret": True,
                             "request_time_field": 0, "model_field": 2}, Hasher(b"t"))
    line = LINE + b' 0.250 "Bearer sk-live-0123456789abcdefghij" "llama-3-8b"\n'
    events, dead, _ = parse_bytes(p, line)
    e = events[0]
    assert e["latency_ms"] == 250.0 and e["model"] == "llama-3-8b"
    assert e["principal"] == Hasher(b"t").principal("sk-live-0123456789abcdefghij")
    assert b"sk-live-0123456789abcdefghij" not in repr(e).encode()


def test_secret_query_parameters_are_hashed_in_the_path():
    line = b'10.0.0.1 - - [08/Apr/2019:16:16:55 +0000] "GET /v1/models?key=AIzaSyD-SECRET HTTP/1.1" 200 1 "-" "-"\n'
    events, _, _ = parse_bytes("nginx_combined", line)
    assert "AIzaSyD-SECRET" not in events[0]["path"]


@pytest.mark.parametrize("bad, reason", [
    (b'10.0.0.1 - - [31/Feb/2019:16:16:55 +0000] "GET / HTTP/1.1" 200 1 "-" "-"', "day is out of range"),
    (b'10.0.0.1 - - [08/Apr/2019:16:16:55 +0000] "GET / HTTP/1.1" 2000 1 "-" "-"', "not an NGINX combined"),
    (b'10.0.0.1 - - [08/Apr/2019:16:16:55 +0000] "GET / HTTP/1.1', "not an NGINX combined"),
    (b"\x00\xff\xfe garbage \x89PNG", "not an NGINX combined"),
])
def test_bad_lines_are_dead_lettered_and_the_rest_parses(bad, reason):
    events, dead, parser = parse_bytes("nginx_combined", LINE + b"\n" + bad + b"\n" + LINE + b"\n")
    assert len(events) == 2
    assert len(dead) == 1 and dead[0].line == 2 and reason in dead[0].reason and dead[0].raw == bad
    s = parser.stats
    assert (s.records, s.parsed, s.failed, s.skipped) == (3, 2, 1, 0)


def test_detection():
    assert detect_format(LINE + b"\n" + LINE + b"\n") == "nginx_combined"
    assert detect_format(b'{"a": 1}\n') != "nginx_combined"
