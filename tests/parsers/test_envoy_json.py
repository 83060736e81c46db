"""Envoy JSON access logs: operator key names, typed or string values, genai_* fields, secrets."""

from pathlib import Path

import orjson
import pytest
from pydantic import ValidationError

from ramparts.events import check_event
from ramparts.redact import Hasher
from ramparts.streams.decode import detect_format, parse_bytes, sniff_lines
from ramparts.streams.parsers.envoy_json import EnvoyJsonParser
from ramparts.timeutil import format_rfc3339

SAMPLES = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "samples"
H = Hasher(b"test")

# Envoy Gateway's default JSON format (keys as its docs list them), as `aigw run` prints it:
# typed values, JSON null for what is absent.
GATEWAY = {
    ":authority": "backend:3000", "bytes_received": 0, "bytes_sent": 466, "connection_termination_details": None,
    "downstream_local_address": "10.244.0.14:3000", "downstream_remote_address": "10.244.0.12:34805",
    "duration": 1, "method": "GET", "protocol": "HTTP/1.1", "requested_server_name": None, "response_code": 200,
    "response_code_details": "via_upstream", "response_flags": "-",
    "route_name": "httproute/envoy-gateway-system/backend/rule/0/match/0/backend",
    "start_time": "2025-04-09T11:44:45.639Z", "upstream_cluster": "httproute/envoy-gateway-system/backend/rule/0",
    "upstream_host": "10.244.0.13:3000", "upstream_local_address": "10.244.0.14:58822",
    "upstream_transport_failure_reason": None, "user-agent": "curl/7.88.1", "x-envoy-origin-path": "/",
    "x-envoy-upstream-service-time": None, "x-forwarded-for": "10.244.0.12",
    "x-request-id": "ab1e4da7-5f1d-45ea-bb4a-fa1ccd03b82b",
}
# Envoy AI Gateway: the same format plus its genai_* fields, and the client's x-api-key
# header logged by the operator.
API_KEY = "sk-proj-4fG7hJ2kL9mN3pQ8rS1tU6vW"
AIGW = {
    **GATEWAY,
    "start_time": "2025-04-09T11:44:47.201Z", "method": "POST", "x-envoy-origin-path": "/v1/chat/completions",
    "response_code": 200, "bytes_received": 159, "bytes_sent": 334, "duration": 108,
    "x-envoy-upstream-service-time": "102", "x-forwarded-for": "203.0.113.50, 10.244.0.12",
    "upstream_cluster": "httproute/default/aigw-run/rule/0", "upstream_host": "192.168.5.2:11434",
    "genai_backend_name": "default/ollama/route/aigw-run/rule/0/ref/0", "genai_model_name": "qwen2.5:0.5b",
    "genai_model_name_override": "qwen2.5:0.5b-instruct", "genai_tokens_input": 44, "genai_tokens_output": 12,
    "x-api-key": API_KEY,
}
# Istio's JSON format (snake case command names) where every value is a string, as in
# operators' formats that wrap commands in text; older Envoy writes '-' for absent values.
ISTIO = {
    "start_time": "2024-06-18T09:37:14.078Z", "method": "POST", "path": "/v1/chat/completions?stream=false",
    "protocol": "HTTP/1.1", "response_code": "429", "response_flags": "UF,URX", "response_code_details": "via_upstream",
    "bytes_received": "336", "bytes_sent": "1675", "duration": "1590", "upstream_service_time": "-",
    "x_forwarded_for": "[2001:db8::7]:4711, 10.0.0.1", "user_agent": "PostmanRuntime/7.37.3",
    "request_id": "5895f5a9-e4e3-425b-98db-6c6a926195b7", "authority": "dashscope.aliyuncs.com",
    "upstream_host": "-", "upstream_cluster": "qwen", "route_name": "openai",
    "genai_model_name": "qwen-max", "genai_tokens_input": "21", "genai_tokens_output": "-",
    "authorization": f"Bearer {API_KEY}",
}


def line(d: dict) -> bytes:
    return orjson.dumps(d)


def parse(data: bytes, options=None):
    parser = EnvoyJsonParser(options, H)
    events, dead, parser = parse_bytes(parser, data)
    for e in events:
        assert check_event(e) == [], check_event(e)
    return events, dead, parser


def test_envoy_gateway_default_format_golden():
    events, dead, _ = parse(line(GATEWAY) + b"\n")
    assert dead == []
    e = events[0]
    assert format_rfc3339(e["ts"]) == "2025-04-09T11:44:45.639Z"
    assert (e["source"], e["method"], e["path"], e["protocol"], e["status"]) == ("envoy_json", "GET", "/", "HTTP/1.1", 200)
    assert (e["latency_ms"], e["bytes_in"], e["bytes_out"], e["upstream_ms"]) == (1.0, 0, 466, None)
    assert e["response_flags"] is None
    assert (e["src_ip"], e["user_agent"], e["authority"], e["upstream_host"]) == (
        "10.244.0.12", "curl/7.88.1", "backend:3000", "10.244.0.13:3000")
    assert e["request_id"] == "ab1e4da7-5f1d-45ea-bb4a-fa1ccd03b82b"
    assert (e["principal"], e["model"], e["tokens_in"], e["tokens_out"]) == (None, None, None, None)


def test_ai_gateway_genai_fields_and_hashed_api_key():
    events, dead, _ = parse(line(AIGW) + b"\n")
    assert dead == []
    e = events[0]
    assert (e["model"], e["tokens_in"], e["tokens_out"]) == ("qwen2.5:0.5b", 44, 12)
    assert (e["backend"], e["model_override"]) == ("default/ollama/route/aigw-run/rule/0/ref/0", "qwen2.5:0.5b-instruct")
    assert e["principal"] == H.principal(API_KEY) and e["principal"].startswith("key:sk-")
    assert API_KEY not in repr(e)
    assert (e["src_ip"], e["path"], e["upstream_ms"], e["latency_ms"]) == ("203.0.113.50", "/v1/chat/completions", 102.0, 108.0)


def test_string_values_dashes_flag_lists_and_bearer_header():
    events, dead, _ = parse(line(ISTIO) + b"\n")
    assert dead == []
    e = events[0]
    assert (e["status"], e["latency_ms"], e["bytes_in"], e["bytes_out"]) == (429, 1590.0, 336, 1675)
    assert (e["tokens_in"], e["tokens_out"], e["upstream_ms"], e["upstream_host"]) == (21, None, None, None)
    assert e["response_flags"] == ["UF", "URX"]
    assert e["src_ip"] == "2001:db8::7"
    assert (e["authority"], e["user_agent"], e["model"]) == ("dashscope.aliyuncs.com", "PostmanRuntime/7.37.3", "qwen-max")
    # "Bearer X" and "X" are the same credential, hashed alike.
    assert e["principal"] == H.principal(API_KEY)
    assert API_KEY not in repr(e)


@pytest.mark.parametrize("remote, ip", [
    ("10.244.0.12:34805", "10.244.0.12"),
    ("[2001:db8::5]:5555", "2001:db8::5"),
    ("-", None),
])
def test_downstream_remote_address_is_the_fallback_source(remote, ip):
    rec = {**GATEWAY, "x-forwarded-for": None, "downstream_remote_address": remote}
    events, dead, _ = parse(line(rec) + b"\n")
    assert dead == [] and events[0]["src_ip"] == ip


def test_response_code_zero_is_kept():
    rec = {**GATEWAY, "response_code": 0, "response_flags": "DC", "upstream_host": None}
    events, dead, _ = parse(line(rec) + b"\n")
    assert dead == [] and events[0]["status"] == 0 and events[0]["response_flags"] == ["DC"]


def test_identity_field_is_preferred_and_kept_readable():
    rec = {**AIGW, "user": "alice@example.com"}
    events, _, _ = parse(line(rec) + b"\n")
    assert events[0]["principal"] == "alice@example.com"
    events, _, _ = parse(line(rec) + b"\n", {"prefer_identity": False})
    assert events[0]["principal"] == H.principal(API_KEY)
    # Without a key, the identity is used whatever the preference.
    events, _, _ = parse(line({**GATEWAY, "consumer": "team-a"}) + b"\n", {"prefer_identity": False})
    assert events[0]["principal"] == "team-a"


def test_model_fallbacks():
    base = {k: v for k, v in AIGW.items() if k != "genai_model_name"}
    events, _, _ = parse(line({**base, "x-ai-eg-model": "gpt-4o-mini"}) + b"\n")
    assert events[0]["model"] == "gpt-4o-mini"
    events, _, _ = parse(line({**base, "model": "llama-3-8b", "x-ai-eg-model": "gpt-4o-mini"}) + b"\n")
    assert events[0]["model"] == "llama-3-8b"


def test_operator_field_map_and_nested_keys():
    # An operator's own json_format: other key names, and a nested object.
    rec = {"ts": "2025-01-02T03:04:05.5+01:00", "req": {"path": "/v1/embeddings", "method": "POST"},
           "code": "200", "took_ms": 12.5, "client": "198.51.100.4", "in_tok": 7, "out_tok": 0,
           "llm": "text-embedding-3-small", "key": "Bearer tok-abcdef0123456789"}
    options = {"fields": {"start_time": ["ts"], "path": ["req.path"], "method": ["req.method"],
                          "response_code": ["code"], "duration": ["took_ms"], "x_forwarded_for": ["client"],
                          "tokens_in": ["in_tok"], "tokens_out": ["out_tok"], "model": ["llm"], "api_key": ["key"]}}
    events, dead, _ = parse(line(rec) + b"\n", options)
    assert dead == []
    e = events[0]
    assert format_rfc3339(e["ts"]) == "2025-01-02T02:04:05.500Z"
    assert (e["path"], e["method"], e["status"], e["latency_ms"]) == ("/v1/embeddings", "POST", 200, 12.5)
    assert (e["src_ip"], e["tokens_in"], e["tokens_out"], e["model"]) == ("198.51.100.4", 7, 0, "text-embedding-3-small")
    assert e["principal"] == H.principal("tok-abcdef0123456789")


def test_unknown_field_role_is_a_config_error():
    with pytest.raises(ValidationError, match="unknown field role"):
        EnvoyJsonParser({"fields": {"statuscode": ["code"]}})
    with pytest.raises(ValidationError):
        EnvoyJsonParser({"no_such_option": 1})


@pytest.mark.parametrize("start, iso", [
    (1554740215.931, "2019-04-08T16:16:55.931Z"),        # %START_TIME(%s.%3f)% as a number
    ("1554740215931", "2019-04-08T16:16:55.931Z"),        # milliseconds as text
    (1554740215, "2019-04-08T16:16:55Z"),
    ("2019-04-08T16:16:55.931123Z", "2019-04-08T16:16:55.931123Z"),
    ("2019-04-08T18:16:55+02:00", "2019-04-08T16:16:55Z"),
])
def test_start_time_spellings(start, iso):
    events, dead, _ = parse(line({**GATEWAY, "start_time": start}) + b"\n")
    assert dead == [] and format_rfc3339(events[0]["ts"]) == iso


def test_lines_with_different_key_sets_in_one_stream():
    data = b"\n".join(line(r) for r in (GATEWAY, ISTIO, AIGW, ISTIO, GATEWAY)) + b"\n"
    events, dead, _ = parse(data)
    assert dead == []
    assert [e["status"] for e in events] == [200, 429, 200, 429, 200]
    assert [e["model"] for e in events] == [None, "qwen-max", "qwen2.5:0.5b", "qwen-max", None]
    assert [e["path"] for e in events] == ["/", "/v1/chat/completions?stream=false", "/v1/chat/completions",
                                           "/v1/chat/completions?stream=false", "/"]


def test_secret_query_parameter_is_hashed_in_the_path():
    events, _, _ = parse(line({**GATEWAY, "x-envoy-origin-path": "/v1/models?api_key=AIzaSyD-SECRET-123"}) + b"\n")
    assert "AIzaSyD-SECRET-123" not in events[0]["path"] and events[0]["path"].startswith("/v1/models?api_key=key:")


GOOD = line(AIGW)


@pytest.mark.parametrize("bad, reason", [
    (GOOD[:57], "invalid JSON"),                                                    # truncated
    (b"\x00\xff\xfe garbage \x89PNG", "invalid JSON"),
    (line({**AIGW, "start_time": "2025-02-30T11:44:47.201Z"}), "day is out of range"),
    (line({**AIGW, "start_time": "2025-13-01T11:44:47.201Z"}), "month must be in 1..12"),
    (line({**AIGW, "start_time": "soon"}), "not an RFC 3339 timestamp"),
    (line({**AIGW, "start_time": None}), "no start time"),
    (line({**AIGW, "start_time": [2025]}), "start_time: expected a time"),
    (line({**AIGW, "response_code": "abc"}), "response_code: expected an integer"),
    (line({**AIGW, "response_code": 1000}), "response_code out of range"),
    (line({**AIGW, "genai_tokens_input": [44]}), "tokens_in: expected an integer, got list"),
    (line({**AIGW, "genai_tokens_output": -3}), "tokens_out: negative count"),
    (line({**AIGW, "duration": {"ms": 1}}), "duration: expected a number"),
    (line({**AIGW, "method": {"verb": "GET"}}), "method: expected text"),
    (line({**AIGW, "x-api-key": True}), "api_key: expected text"),
    (b"[1, 2, 3]", "expected a JSON object"),
])
def test_bad_records_are_dead_lettered_and_the_rest_parses(bad, reason):
    events, dead, parser = parse(GOOD + b"\n" + bad + b"\n" + line(ISTIO) + b"\n")
    assert len(events) == 2
    assert len(dead) == 1 and dead[0].line == 2 and dead[0].raw == bad
    assert reason in dead[0].reason, dead[0].reason
    s = parser.stats
    assert (s.records, s.parsed, s.failed) == (3, 2, 1)


def test_detection():
    for rec in (GATEWAY, AIGW, ISTIO):
        data = (line(rec) + b"\n") * 3
        assert detect_format(data) == "envoy_json"
    # Only the genai fields (a trimmed json_format) still identify the format.
    data = line({"start_time": "2025-04-09T11:44:47.201Z", "genai_model_name": "m", "genai_tokens_input": 1}) + b"\n"
    assert EnvoyJsonParser.sniff(data, sniff_lines(data))


KONG = {"request": {"method": "GET", "uri": "/", "headers": {}}, "response": {"status": 200},
        "latencies": {"request": 5, "kong": 1, "proxy": 4}, "client_ip": "10.0.0.1", "started_at": 1717000000123}
LITELLM = {"request_id": "chatcmpl-1", "call_type": "acompletion", "api_key": "ab" * 32, "spend": 0.1,
           "startTime": "2024-06-12 17:43:01.123", "endTime": "2024-06-12 17:43:02.123", "model": "gpt-4o"}


@pytest.mark.parametrize("other", [
    b'203.0.113.9 - - [08/Apr/2019:18:16:55 +0200] "POST /v1/chat/completions HTTP/1.1" 200 1532 "-" "curl/8.5.0"',
    b'[2019-04-08T16:16:55.931Z] "GET /service/1 HTTP/1.1" 200 - 0 89 5 4 "-" "curl/7.54.0" "x" "y" "z"',
    line(KONG), line([KONG]), line(LITELLM),
    line({"ts": "2024-01-01T00:00:00Z", "principal": "k", "model": "m", "input": [1], "output": [0]}),
    line({"rule": "Terminal shell in container", "priority": "Notice", "time": "2024-04-05T19:21:18Z",
          "output_fields": {"k8s.pod.name": "p"}}),
    line({"status": "start", "id": "c0ffee", "Type": "container", "Action": "start", "timeNano": 1}),
    line({"response_code": 200}),  # a lone response code is not enough
    b"",
])
def test_sniff_does_not_claim_other_formats(other):
    data = (other + b"\n") * 3
    assert not EnvoyJsonParser.sniff(data, sniff_lines(data))


def test_sniff_does_not_claim_the_real_samples():
    files = [p for p in SAMPLES.rglob("*") if p.is_file() and p.suffix in (".txt", ".log")]
    assert files, f"no samples under {SAMPLES}"
    for p in files:
        head = p.read_bytes()[:65536]
        assert not EnvoyJsonParser.sniff(head, sniff_lines(head)), p
