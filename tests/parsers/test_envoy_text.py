"""Envoy default text access log: positional fields, '-', IPv6, flag lists, Istio's variant."""

from pathlib import Path

import pytest

from ramparts.events import check_event
from ramparts.redact import Hasher
from ramparts.streams.decode import detect_format, parse_bytes, sniff_lines
from ramparts.streams.parsers.envoy_text import EnvoyTextParser, first_forwarded, host_of
from ramparts.timeutil import format_rfc3339

SAMPLES = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "samples"

# The example line of SOURCES.md (Envoy's documentation of the default format).
DOC_LINE = (b'[2019-04-08T16:16:55.931Z] "GET /service/1 HTTP/1.1" 200 - 0 89 5 4 "-" "curl/7.54.0" '
            b'"c219f6da-2b7f-483e-9ced-ec323d9330a9" "localhost:8000" "172.27.0.3:80"')
# An LLM call through a gateway: client behind two proxies (bracketed IPv6 with a port
# first), upstream over IPv6, retried after an upstream failure (UF,URX).
RETRIED = (b'[2024-05-14T09:30:01.250Z] "POST /v1/chat/completions HTTP/2" 503 UF,URX 1874 91 3012 - '
           b'"[2001:db8:85a3::8a2e:370:7334]:51234, 10.0.3.7" "OpenAI/Python 1.40.0" '
           b'"6c1e5b1e-3f0a-4a37-9e57-5b0c1d2e3f40" "llm.internal:8443" "[::1]:8000"')
# Istio's default: RESPONSE_CODE_DETAILS, CONNECTION_TERMINATION_DETAILS and
# "UPSTREAM_TRANSPORT_FAILURE_REASON" after the flags, unquoted fields after UPSTREAM_HOST.
ISTIO = (b'[2020-11-25T21:26:18.409Z] "GET /status/418 HTTP/1.1" 418 - via_upstream - "-" 0 135 4 4 "-" '
         b'"curl/7.73.0-DEV" "84961386-6d84-929d-98bd-c5aee93b5c88" "httpbin:8000" "127.0.0.1:80" '
         b'inbound|8000|| 127.0.0.1:41854 10.44.1.27:80 10.44.1.23:37652 '
         b'outbound_.8000_._.httpbin.default.svc.cluster.local default')


def parse(data: bytes, options=None):
    parser = EnvoyTextParser(options, Hasher(b"test"))
    events, dead, parser = parse_bytes(parser, data)
    for e in events:
        assert check_event(e) == [], check_event(e)
    return events, dead, parser


def test_documented_example_line_golden():
    events, dead, _ = parse(DOC_LINE + b"\n")
    assert dead == []
    e = events[0]
    assert format_rfc3339(e["ts"]) == "2019-04-08T16:16:55.931Z"
    assert (e["kind"], e["source"]) == ("request", "envoy_text")
    assert (e["method"], e["path"], e["protocol"], e["status"]) == ("GET", "/service/1", "HTTP/1.1", 200)
    assert e["response_flags"] is None  # '-'
    assert (e["bytes_in"], e["bytes_out"], e["latency_ms"], e["upstream_ms"]) == (0, 89, 5.0, 4.0)
    assert e["src_ip"] is None  # no X-Forwarded-For ('-')
    assert (e["user_agent"], e["request_id"], e["authority"], e["upstream_host"]) == (
        "curl/7.54.0", "c219f6da-2b7f-483e-9ced-ec323d9330a9", "localhost:8000", "172.27.0.3:80")
    # The default format carries no principal, model or token counts.
    assert (e["principal"], e["model"], e["tokens_in"], e["tokens_out"]) == (None, None, None, None)


def test_ipv6_forwarded_list_and_flag_list():
    events, dead, _ = parse(RETRIED + b"\n")
    assert dead == []
    e = events[0]
    assert e["src_ip"] == "2001:db8:85a3::8a2e:370:7334"  # first address, brackets and port stripped
    assert e["upstream_host"] == "[::1]:8000"
    assert e["response_flags"] == ["UF", "URX"]
    assert (e["status"], e["latency_ms"], e["upstream_ms"]) == (503, 3012.0, None)


@pytest.mark.parametrize("xff, ip", [
    ("203.0.113.7", "203.0.113.7"),
    ("203.0.113.7:4711, 10.0.0.1", "203.0.113.7"),
    ("2001:db8::1, 10.0.0.1", "2001:db8::1"),
    ("[2001:db8::1]:443", "2001:db8::1"),
    (" 198.51.100.2 ,10.0.0.1", "198.51.100.2"),
    ("-", None),
])
def test_forwarded_for_first_address(xff, ip):
    assert first_forwarded(xff) == ip
    line = DOC_LINE.replace(b'"-" "curl', f'"{xff}" "curl'.encode())
    events, dead, _ = parse(line + b"\n")
    assert dead == [] and events[0]["src_ip"] == ip


def test_host_of_addresses():
    assert host_of("[::1]:80") == "::1"
    assert host_of("172.27.0.3:80") == "172.27.0.3"
    assert host_of("fe80::1") == "fe80::1"
    assert host_of("-") is None and host_of("") is None


def test_downstream_reset_without_request_line():
    # A client that disconnects before sending headers: no request line, code 0, flag UC.
    line = b'[2024-05-14T09:30:02.000Z] "- - -" 0 UC 0 0 0 - "-" "-" "-" "-" "-"'
    events, dead, _ = parse(line + b"\n")
    assert dead == []
    e = events[0]
    assert (e["status"], e["response_flags"], e["method"], e["path"], e["upstream_host"]) == (0, ["UC"], None, None, None)
    assert format_rfc3339(e["ts"]) == "2024-05-14T09:30:02Z"


def test_istio_variant():
    events, dead, _ = parse(ISTIO + b"\n")
    assert dead == []
    e = events[0]
    assert (e["status"], e["bytes_out"], e["latency_ms"], e["upstream_host"]) == (418, 135, 4.0, "127.0.0.1:80")
    # No X-Forwarded-For: Istio's %DOWNSTREAM_REMOTE_ADDRESS% (4th trailing field) is the client.
    assert e["src_ip"] == "10.44.1.23"


def test_extra_trailing_fields_and_configured_principal_and_model():
    # The operator appended "%REQ(X-API-KEY)%" "%REQ(X-MODEL)%" to the default format.
    key = "sk-live-7bY2kQ9mZ3xW8vN4cR1t"
    line = RETRIED + f' "{key}" "llama-3-70b"'.encode()
    events, dead, _ = parse(line + b"\n")
    assert dead == [] and events[0]["principal"] is None  # default: no principal

    events, dead, _ = parse(line + b"\n", {"principal_field": 0, "model_field": 1})
    e = events[0]
    assert e["principal"] == Hasher(b"test").principal(key)
    assert e["model"] == "llama-3-70b"
    assert key not in repr(e)

    # A non-secret identity (say a JWT subject) can be kept readable.
    events, _, _ = parse(DOC_LINE + b' "alice@example.com"\n', {"principal_field": 0, "principal_is_secret": False})
    assert events[0]["principal"] == "alice@example.com"
    # An index past the fields present, or '-', gives no principal rather than an error.
    events, dead, _ = parse(DOC_LINE + b' "-"\n' + DOC_LINE + b"\n", {"principal_field": 0})
    assert dead == [] and [e["principal"] for e in events] == [None, None]


def test_quotes_inside_a_header_value():
    # Envoy writes header values verbatim; a user agent with quotes must not shift the fields.
    line = DOC_LINE.replace(b'"curl/7.54.0"', b'"Mozilla/5.0 "compatible" bot"')
    events, dead, _ = parse(line + b"\n")
    assert dead == []
    e = events[0]
    assert e["user_agent"] == 'Mozilla/5.0 "compatible" bot'
    assert (e["request_id"], e["authority"], e["upstream_host"]) == (
        "c219f6da-2b7f-483e-9ced-ec323d9330a9", "localhost:8000", "172.27.0.3:80")


def test_secret_query_parameter_is_hashed_in_the_path():
    line = DOC_LINE.replace(b"/service/1", b"/v1/models?key=AIzaSyD-SECRET-123&alt=json")
    events, _, _ = parse(line + b"\n")
    assert "AIzaSyD-SECRET-123" not in events[0]["path"]
    assert events[0]["path"].startswith("/v1/models?key=key:") and events[0]["path"].endswith("&alt=json")


@pytest.mark.parametrize("bad, reason", [
    (DOC_LINE.replace(b"2019-04-08", b"2019-02-30"), "day is out of range"),
    (DOC_LINE.replace(b"2019-04-08", b"2019-13-08"), "month must be in 1..12"),
    (DOC_LINE.replace(b"[2019-04-08T16:16:55.931Z]", b"[yesterday]"), "not an RFC 3339 timestamp"),
    (DOC_LINE.replace(b" 200 ", b" abc "), "not an Envoy text access log line"),
    (DOC_LINE.replace(b" 200 ", b" 2000 "), "not an Envoy text access log line"),
    (DOC_LINE[:60], "not an Envoy text access log line"),
    (DOC_LINE[:-40], "of the 5 quoted fields"),
    (b"\x00\xff\xfe garbage \x89PNG\r\x1a", "not an Envoy text access log line"),
    (b'{"start_time": "2019-04-08T16:16:55.931Z"}', "not an Envoy text access log line"),
])
def test_bad_lines_are_dead_lettered_and_the_rest_parses(bad, reason):
    events, dead, parser = parse(DOC_LINE + b"\n" + bad + b"\n" + RETRIED + b"\n")
    assert len(events) == 2
    assert len(dead) == 1 and dead[0].line == 2 and reason in dead[0].reason and dead[0].raw == bad
    s = parser.stats
    assert (s.records, s.parsed, s.failed, s.skipped) == (3, 2, 1, 0)


def test_blank_lines_are_skipped():
    events, dead, parser = parse(DOC_LINE + b"\n\n   \n" + ISTIO + b"\n")
    assert len(events) == 2 and dead == [] and parser.stats.skipped == 2


def test_detection():
    data = DOC_LINE + b"\n" + RETRIED + b"\n" + ISTIO + b"\n"
    assert detect_format(data) == "envoy_text"
    assert EnvoyTextParser.sniff(data, sniff_lines(data))


@pytest.mark.parametrize("other", [
    b'203.0.113.9 - team-a [08/Apr/2019:18:16:55 +0200] "POST /v1/chat/completions HTTP/1.1" 200 1532 "-" "curl/8.5.0"',
    b'{"start_time":"2019-04-08T16:16:55.931Z","method":"GET","response_code":200,"upstream_host":"10.0.0.1:80"}',
    b'[{"started_at": 1717000000123, "latencies": {"request": 5}}]',
    b"[2019-04-08 16:16:55] some application log line",
    b"",
    b"\x00\xff\xfe",
])
def test_sniff_does_not_claim_other_formats(other):
    data = (other + b"\n") * 3
    assert not EnvoyTextParser.sniff(data, sniff_lines(data))


def test_sniff_does_not_claim_the_real_samples():
    files = [p for p in SAMPLES.rglob("*") if p.is_file() and p.suffix in (".txt", ".log")]
    assert files, f"no samples under {SAMPLES}"
    for p in files:
        head = p.read_bytes()[:65536]
        assert not EnvoyTextParser.sniff(head, sniff_lines(head)), p
