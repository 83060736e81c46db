"""Kong http-log entries: single objects and batched arrays, consumers, AI Proxy's ai section."""

import copy
from pathlib import Path

import orjson
import pytest

from ramparts.events import check_event
from ramparts.redact import Hasher
from ramparts.streams.decode import detect_format, parse_bytes, sniff_lines
from ramparts.streams.parsers.kong import KongParser
from ramparts.timeutil import format_rfc3339

SAMPLES = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "samples"
H = Hasher(b"test")
RAW_KEY = "kong-key-9f8e7d6c5b4a3210"

# Modelled on the http-log entry of Kong's plugin documentation (Kong 3.x): key-auth with
# hide_credentials off, so the apikey travels in the header and the query string.
ENTRY = {
    "service": {"host": "httpbin.konghq.com", "created_at": 1614232642, "connect_timeout": 60000,
                "id": "167290ee-c682-4ebf-bdea-e49a3ac5e260", "protocol": "http", "read_timeout": 60000,
                "port": 80, "path": "/anything", "updated_at": 1614232642, "write_timeout": 60000, "retries": 5,
                "ws_id": "54baa5a9-23d6-41e0-9c9a-02434b010b25", "name": "httpbin"},
    "route": {"id": "78f79740-c410-4fd9-a998-d0a60a99dc9b", "paths": ["/log"], "protocols": ["http"],
              "strip_path": True, "created_at": 1614232648, "ws_id": "54baa5a9-23d6-41e0-9c9a-02434b010b25",
              "request_buffering": True, "updated_at": 1614232648, "preserve_host": False, "regex_priority": 0,
              "response_buffering": True, "https_redirect_status_code": 426, "path_handling": "v0",
              "service": {"id": "167290ee-c682-4ebf-bdea-e49a3ac5e260"}},
    "request": {"querystring": {"apikey": RAW_KEY}, "size": 138, "uri": f"/log?apikey={RAW_KEY}",
                "url": f"http://localhost:8000/log?apikey={RAW_KEY}",
                "headers": {"host": "localhost:8000", "accept-encoding": "gzip, deflate", "user-agent": "HTTPie/2.4.0",
                            "accept": "*/*", "connection": "keep-alive", "apikey": RAW_KEY,
                            "authorization": "REDACTED"},
                "method": "GET"},
    "tries": [{"balancer_latency": 0, "port": 80, "balancer_start": 1614232668399, "ip": "18.211.130.98"}],
    "client_ip": "192.168.144.1",
    "workspace": "54baa5a9-23d6-41e0-9c9a-02434b010b25",
    "upstream_uri": "/anything",
    "response": {"headers": {"content-type": "application/json", "content-length": "503"}, "status": 200, "size": 811},
    "latencies": {"request": 1921, "kong": 9, "proxy": 1430},
    "started_at": 1614232668342,
    "consumer": {"username": "demo", "created_at": 1491847011000, "id": "35b03bfc-7a5b-4a23-a594-aa350c585fa8"},
    "authenticated_entity": {"id": "eaa330c0-4cff-47f5-c79e-b2e4f355207e",
                             "consumer_id": "35b03bfc-7a5b-4a23-a594-aa350c585fa8"},
    "upstream_status": "200",
    "source": "upstream",
}

# An LLM call through the AI Proxy plugin (current spelling: ai.proxy, usage.*_tokens).
AI = copy.deepcopy(ENTRY)
AI["request"].update(method="POST", uri="/openai/v1/chat/completions", url="http://localhost:8000/openai/v1/chat/completions",
                     querystring={})
AI["request"]["headers"] = {"host": "localhost:8000", "user-agent": "OpenAI/Python 1.40.0",
                            "content-type": "application/json", "authorization": "REDACTED"}
AI["ai"] = {
    "payload": {"request": '{"model":"gpt-4o","messages":[{"role":"user","content":"top secret prompt"}]}'},
    "proxy": {
        "payload": {"response": '{"choices":[{"message":{"content":"top secret answer"}}]}'},
        "usage": {"prompt_tokens": 28, "completion_tokens": 20, "total_tokens": 48, "cost": 0.0038,
                  "time_per_token": 133},
        "meta": {"request_model": "gpt-4o", "provider_name": "openai", "response_model": "gpt-4o-2024-08-06",
                 "plugin_id": "546c3856-24b3-469a-bd6c-f6083babd2cd", "llm_latency": 2670},
    },
}


def dumps(d) -> bytes:
    return orjson.dumps(d)


def parse(data: bytes, options=None):
    parser = KongParser(options, H)
    events, dead, parser = parse_bytes(parser, data)
    for e in events:
        assert check_event(e) == [], check_event(e)
    return events, dead, parser


def test_single_entry_golden():
    events, dead, _ = parse(dumps(ENTRY) + b"\n")
    assert dead == []
    e = events[0]
    assert format_rfc3339(e["ts"]) == "2021-02-25T05:57:48.342Z"  # started_at, epoch ms
    assert (e["source"], e["principal"], e["src_ip"]) == ("kong", "demo", "192.168.144.1")
    assert (e["method"], e["status"], e["latency_ms"], e["kong_ms"], e["proxy_ms"]) == ("GET", 200, 1921.0, 9.0, 1430.0)
    assert (e["bytes_in"], e["bytes_out"], e["user_agent"]) == (138, 811, "HTTPie/2.4.0")
    assert (e["route"], e["service"], e["upstream_status"]) == ("78f79740-c410-4fd9-a998-d0a60a99dc9b", "httpbin", "200")
    assert e["consumer_id"] == "35b03bfc-7a5b-4a23-a594-aa350c585fa8"
    assert (e["model"], e["tokens_in"], e["tokens_out"], e["provider"]) == (None, None, None, None)
    # The raw key in the header and the query string never reaches the event.
    assert e["path"].startswith("/log?apikey=key:")
    assert RAW_KEY not in repr(e)


def test_batch_array_keeps_good_items_and_dead_letters_bad_ones():
    bad_status = copy.deepcopy(ENTRY)
    bad_status["response"]["status"] = "abc"
    bad_time = dict(ENTRY, started_at="yesterday")
    batch = [ENTRY, bad_status, AI, 42, bad_time]
    data = dumps(batch) + b"\n" + dumps(AI) + b"\n"
    events, dead, parser = parse(data)
    assert [e["principal"] for e in events] == ["demo", "demo", "demo"]
    assert [e["model"] for e in events] == [None, "gpt-4o", "gpt-4o"]
    assert [(d.line, d.item) for d in dead] == [(1, 1), (1, 3), (1, 4)]
    assert "response.status: expected an integer" in dead[0].reason
    assert dead[0].raw == dumps(bad_status)
    assert "not an object" in dead[1].reason and dead[1].raw == b"42"
    assert "started_at" in dead[2].reason
    s = parser.stats
    assert (s.records, s.parsed, s.failed, s.events, s.dead_letters) == (2, 2, 0, 3, 3)


def test_empty_batch_is_skipped_and_all_bad_batch_is_accounted():
    events, dead, parser = parse(b"[]\n" + dumps([1, "x"]) + b"\n")
    assert len(events) == 0 and [d.item for d in dead] == [0, 1]
    s = parser.stats
    assert (s.records, s.skipped, s.parsed, s.failed) == (2, 1, 1, 0)


def test_principal_order():
    no_consumer = {k: v for k, v in ENTRY.items() if k != "consumer"}
    events, _, _ = parse(dumps(no_consumer) + b"\n")
    assert events[0]["principal"] == "eaa330c0-4cff-47f5-c79e-b2e4f355207e"  # authenticated_entity.id
    anonymous = {k: v for k, v in no_consumer.items() if k != "authenticated_entity"}
    events, _, _ = parse(dumps(anonymous) + b"\n")
    assert events[0]["principal"] is None
    with_custom = dict(ENTRY, consumer={**ENTRY["consumer"], "custom_id": "acct-42"})
    events, _, _ = parse(dumps(with_custom) + b"\n", {"principal_fields": ["consumer.custom_id", "consumer.username"]})
    assert events[0]["principal"] == "acct-42"
    only_id = dict(ENTRY, consumer={"id": "35b03bfc-7a5b-4a23-a594-aa350c585fa8"})
    events, _, _ = parse(dumps(only_id) + b"\n")
    assert events[0]["principal"] == "35b03bfc-7a5b-4a23-a594-aa350c585fa8"


def test_key_header_fallback_is_hashed_and_redacted_values_ignored():
    anonymous = {k: v for k, v in ENTRY.items() if k not in ("consumer", "authenticated_entity")}
    events, _, _ = parse(dumps(anonymous) + b"\n", {"key_headers": ["authorization", "apikey"]})
    assert events[0]["principal"] == H.principal(RAW_KEY)  # authorization is "REDACTED": skipped
    assert RAW_KEY not in repr(events[0])


def test_ai_proxy_model_and_tokens():
    events, dead, _ = parse(dumps(AI) + b"\n")
    assert dead == []
    e = events[0]
    assert (e["model"], e["tokens_in"], e["tokens_out"], e["provider"]) == ("gpt-4o", 28, 20, "openai")
    assert e["path"] == "/openai/v1/chat/completions"
    assert "top secret" not in repr(e)  # payloads are never copied


def test_ai_proxy_older_spelling():
    # Kong 3.6-3.8 documentation: ai.ai-proxy with usage.prompt_token / completion_token.
    old = copy.deepcopy(AI)
    plugin = old["ai"].pop("proxy")
    plugin["usage"] = {"prompt_token": 89, "completion_token": 56, "total_tokens": 145, "cost": 0.0012}
    plugin["meta"] = {"request_model": "gpt-35-turbo", "provider_name": "azure", "response_model": "gpt-35-turbo"}
    old["ai"]["ai-proxy"] = plugin
    events, dead, _ = parse(dumps(old) + b"\n")
    assert dead == []
    assert (events[0]["model"], events[0]["tokens_in"], events[0]["tokens_out"], events[0]["provider"]) == (
        "gpt-35-turbo", 89, 56, "azure")


def test_model_from_request_header():
    rec = copy.deepcopy(ENTRY)
    rec["request"]["headers"]["x-model"] = ["llama-3-8b", "ignored"]  # repeated header: an array
    events, _, _ = parse(dumps(rec) + b"\n")
    assert events[0]["model"] == "llama-3-8b"
    rec["request"]["headers"]["x-llm"] = "mistral-7b"
    events, _, _ = parse(dumps(rec) + b"\n", {"model_header": "X-LLM"})
    assert events[0]["model"] == "mistral-7b"
    events, _, _ = parse(dumps(rec) + b"\n", {"model_header": None})
    assert events[0]["model"] is None


def test_rejected_before_proxying():
    # A 401 from key-auth: no consumer, no upstream, proxy latency -1.
    rec = {k: v for k, v in ENTRY.items() if k not in ("consumer", "authenticated_entity", "tries", "upstream_status")}
    rec = dict(rec, response={"status": 401, "size": 96, "headers": {}}, latencies={"request": 1, "kong": 1, "proxy": -1})
    events, dead, _ = parse(dumps(rec) + b"\n")
    assert dead == []
    e = events[0]
    assert (e["status"], e["latency_ms"], e["kong_ms"], e["proxy_ms"], e["principal"]) == (401, 1.0, 1.0, None, None)


GOOD = dumps(ENTRY)


@pytest.mark.parametrize("bad, reason", [
    (GOOD[:100], "invalid JSON"),
    (b"\x00\xff\xfe garbage \x89PNG", "invalid JSON"),
    (b'"just a string"', "got a JSON str"),
    (dumps(dict(ENTRY, started_at=None)), "missing field 'started_at'"),
    (dumps(dict(ENTRY, started_at="2021-02-25")), "started_at"),
    (dumps(dict(ENTRY, started_at=-5)), "out of range"),
    (dumps(dict(ENTRY, request="GET /")), "request: expected a JSON object"),
    (dumps(dict(ENTRY, latencies={"request": "slow"})), "latencies.request: expected a number"),
    (dumps(dict(ENTRY, response={"status": 1000})), "out of range"),
    (dumps(dict(ENTRY, client_ip=["10.0.0.1"])), "client_ip: expected text"),
    (dumps(dict(AI, ai={"proxy": {"usage": {"prompt_tokens": [1]}}})), "ai.usage.prompt_tokens"),
])
def test_bad_records_are_dead_lettered_and_the_rest_parses(bad, reason):
    events, dead, parser = parse(GOOD + b"\n" + bad + b"\n" + dumps(AI) + b"\n")
    assert len(events) == 2
    assert len(dead) == 1 and dead[0].line == 2 and dead[0].raw == bad and dead[0].item is None
    assert reason in dead[0].reason, dead[0].reason


def test_detection_single_and_batched():
    assert detect_format((dumps(ENTRY) + b"\n") * 3) == "kong"
    assert detect_format(dumps([ENTRY, AI]) + b"\n") == "kong"
    # A batch line longer than the 64 KiB head: no whole line to parse, the keys decide.
    big = dumps([ENTRY] * 60) + b"\n"
    assert len(big) > 65536
    assert detect_format(big[:65536]) == "kong"
    events, dead, _ = parse_bytes("auto", big)
    assert len(events) == 60 and dead == []


LITELLM = {"request_id": "chatcmpl-1", "call_type": "acompletion", "api_key": "ab" * 32, "spend": 0.1,
           "startTime": "2024-06-12 17:43:01.123", "endTime": "2024-06-12 17:43:02.123", "model": "gpt-4o"}


@pytest.mark.parametrize("other", [
    b'203.0.113.9 - - [08/Apr/2019:18:16:55 +0200] "POST /v1/chat/completions HTTP/1.1" 200 1532 "-" "curl/8.5.0"',
    dumps({"start_time": "2025-04-09T11:44:45.639Z", "response_code": 200, "duration": 1, "upstream_host": "x:1",
           "bytes_received": 0}),
    dumps(LITELLM), dumps([LITELLM]),
    dumps({"kind": "Event", "apiVersion": "audit.k8s.io/v1", "stage": "ResponseComplete"}),
    dumps({"latencies": {"request": 1}}),  # not enough on its own
    b"[1, 2, 3]", b"",
])
def test_sniff_does_not_claim_other_formats(other):
    data = (other + b"\n") * 3
    assert not KongParser.sniff(data, sniff_lines(data))


def test_sniff_does_not_claim_the_real_samples():
    files = [p for p in SAMPLES.rglob("*") if p.is_file() and p.suffix in (".txt", ".log")]
    assert files, f"no samples under {SAMPLES}"
    for p in files:
        head = p.read_bytes()[:65536]
        assert not KongParser.sniff(head, sniff_lines(head)), p
