"""LiteLLM SpendLogs rows: hashed keys, JSON-encoded columns, offset-less times, failure status."""

from pathlib import Path

import orjson
import pytest
from pydantic import ValidationError

from ramparts.events import check_event
from ramparts.redact import Hasher
from ramparts.streams.decode import detect_format, parse_bytes, sniff_lines
from ramparts.streams.parsers.litellm import LiteLLMParser
from ramparts.timeutil import format_rfc3339

SAMPLES = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "samples"
H = Hasher(b"test")
KEY_HASH = "88dc28d0f030c55ed4ab77ed8faf098196cb1c05df778539800c9f1243fe6b4b"  # SHA-256 of a virtual key

# A LiteLLM_SpendLogs row as a psql/JSON export prints it: metadata, messages and response
# are JSON-encoded strings; startTime/endTime are `timestamp without time zone`.
META = {
    "user_api_key": KEY_HASH, "user_api_key_alias": "ci-bot", "user_api_key_team_id": "team-ml",
    "user_api_key_org_id": None, "user_api_key_user_id": "default_user_id", "user_api_key_team_alias": "ml-platform",
    "spend_logs_metadata": None, "requester_ip_address": "10.0.0.7", "applied_guardrails": [],
    "user_api_key_request_route": "/chat/completions", "status": "success", "proxy_server_request": None,
    "error_information": None, "additional_usage_values": {"prompt_tokens_details": None},
}
ROW = {
    "request_id": "chatcmpl-9a1b2c3d-4e5f-6789-abcd-ef0123456789", "call_type": "acompletion",
    "api_key": KEY_HASH, "spend": 0.000325, "total_tokens": 95, "prompt_tokens": 20, "completion_tokens": 75,
    "startTime": "2024-06-12 17:43:01.123456", "endTime": "2024-06-12 17:43:02.456789",
    "completionStartTime": "2024-06-12 17:43:01.612000", "model": "gpt-4o-mini-2024-07-18", "model_id": "m-1",
    "model_group": "gpt-4o-mini", "custom_llm_provider": "openai", "api_base": "https://api.openai.com/v1",
    "user": "", "metadata": orjson.dumps(META).decode(), "cache_hit": "False", "cache_key": "Cache OFF",
    "request_tags": "[]", "team_id": "team-ml", "end_user": "", "requester_ip_address": "10.0.0.7",
    "messages": orjson.dumps([{"role": "user", "content": "summarise the confidential merger memo"}]).decode(),
    "response": orjson.dumps({"choices": [{"message": {"content": "the confidential memo says"}}]}).decode(),
    "session_id": None,
}
FAIL_META = {**META, "status": "failure", "error_information": {
    "error_code": "429", "error_class": "RateLimitError", "llm_provider": "openai",
    "traceback": "Traceback (most recent call last): ...",
    "error_message": "litellm.RateLimitError: RateLimitError: OpenAIException - Rate limit reached"}}
FAIL = {**ROW, "request_id": "failed-1", "spend": 0.0, "total_tokens": 0, "prompt_tokens": 0, "completion_tokens": 0,
        "startTime": "2024-06-12 17:43:05.000000", "endTime": "2024-06-12 17:43:05.250000",
        "metadata": orjson.dumps(FAIL_META).decode(), "messages": "{}", "response": "{}"}


def dumps(d) -> bytes:
    return orjson.dumps(d)


def parse(data: bytes, options=None):
    parser = LiteLLMParser(options, H)
    events, dead, parser = parse_bytes(parser, data)
    for e in events:
        assert check_event(e) == [], check_event(e)
    return events, dead, parser


def test_success_row_golden():
    events, dead, _ = parse(dumps(ROW) + b"\n")
    assert dead == []
    e = events[0]
    assert format_rfc3339(e["ts"]) == "2024-06-12T17:43:01.123456Z"  # no offset: UTC by default
    assert e["latency_ms"] == pytest.approx(1333.333)
    assert e["principal"] == KEY_HASH  # already a hash: kept as LiteLLM stores it
    assert (e["model"], e["model_group"], e["provider"]) == ("gpt-4o-mini-2024-07-18", "gpt-4o-mini", "openai")
    assert (e["status"], e["tokens_in"], e["tokens_out"], e["total_tokens"], e["spend"]) == (200, 20, 75, 95, 0.000325)
    assert (e["src_ip"], e["path"], e["call_type"]) == ("10.0.0.7", "/chat/completions", "acompletion")
    assert (e["team_id"], e["key_alias"], e["user"], e["end_user"], e["cache_hit"]) == ("team-ml", "ci-bot", None, None, False)
    assert e["request_id"] == "chatcmpl-9a1b2c3d-4e5f-6789-abcd-ef0123456789"
    assert "confidential" not in repr(e)  # messages and response are never copied


def test_failure_status_from_error_information():
    events, dead, _ = parse(dumps(FAIL) + b"\n")
    assert dead == []
    e = events[0]
    assert (e["status"], e["error_class"], e["latency_ms"]) == (429, "RateLimitError", 250.0)

    no_code = {**FAIL_META, "error_information": {"error_code": "None", "error_class": "APIConnectionError"}}
    events, _, _ = parse(dumps({**FAIL, "metadata": dumps(no_code).decode()}) + b"\n")
    assert events[0]["status"] == 500
    # A newer schema's top-level status column is read too; neither: unknown.
    plain = {k: v for k, v in META.items() if k != "status"}
    events, _, _ = parse(dumps({**ROW, "metadata": dumps(plain).decode(), "status": "failure"}) + b"\n"
                         + dumps({**ROW, "metadata": dumps(plain).decode()}) + b"\n")
    assert [e["status"] for e in events] == [500, None]


def test_metadata_as_an_object_and_missing():
    # row_to_json exports the jsonb columns as real objects.
    events, dead, _ = parse(dumps({**ROW, "metadata": META, "messages": [], "response": {}}) + b"\n"
                            + dumps({**ROW, "metadata": None}) + b"\n")
    assert dead == []
    assert [e["key_alias"] for e in events] == ["ci-bot", None]
    assert [e["status"] for e in events] == [200, None]


def test_raw_keys_are_hashed():
    raw = "sk-1234567890abcdefABCDEF"  # a master key or raw virtual key where a hash belongs
    events, _, _ = parse(dumps({**ROW, "api_key": raw}) + b"\n")
    assert events[0]["principal"] == H.principal(raw) and events[0]["principal"].startswith("key:sk-")
    assert raw not in repr(events[0])
    events, _, _ = parse(dumps({**ROW, "api_key": KEY_HASH}) + b"\n", {"principal_mode": "secret"})
    assert events[0]["principal"] == H.principal(KEY_HASH)
    events, _, _ = parse(dumps({**ROW, "api_key": "svc-reporting"}) + b"\n", {"principal_mode": "id"})
    assert events[0]["principal"] == "svc-reporting"


def test_principal_fallback_and_configured_field():
    events, _, _ = parse(dumps({**ROW, "api_key": ""}) + b"\n")
    assert events[0]["principal"] == KEY_HASH  # metadata.user_api_key
    events, _, _ = parse(dumps(ROW) + b"\n", {"principal_fields": ["metadata.user_api_key_user_id"], "principal_mode": "id"})
    assert events[0]["principal"] == "default_user_id"
    events, _, _ = parse(dumps({**ROW, "api_key": "", "metadata": "{}"}) + b"\n")
    assert events[0]["principal"] is None


@pytest.mark.parametrize("start, iso, tz", [
    ("2024-06-12T17:43:01.123", "2024-06-12T17:43:01.123Z", "UTC"),
    ("2024-06-12 17:43:01", "2024-06-12T17:43:01Z", "UTC"),
    ("2024-06-12 17:43:01.5", "2024-06-12T15:43:01.500Z", "Europe/Berlin"),  # CEST, UTC+2
    ("2024-01-12 17:43:01.5", "2024-01-12T16:43:01.500Z", "Europe/Berlin"),  # CET, UTC+1
    ("2024-06-12 17:43:01.123+02", "2024-06-12T15:43:01.123Z", "UTC"),       # Postgres short offset
    ("2024-06-12T17:43:01.123Z", "2024-06-12T17:43:01.123Z", "Europe/Berlin"),  # an offset wins
])
def test_timezones(start, iso, tz):
    events, dead, _ = parse(dumps({**ROW, "startTime": start, "endTime": None}) + b"\n", {"timezone": tz})
    assert dead == []
    assert format_rfc3339(events[0]["ts"]) == iso
    assert events[0]["latency_ms"] is None


def test_unknown_timezone_is_a_config_error():
    with pytest.raises(ValidationError, match="unknown time zone"):
        LiteLLMParser({"timezone": "Mars/Olympus_Mons"})


def test_negative_latency_is_dropped_and_counted():
    events, dead, parser = parse(dumps({**ROW, "endTime": "2024-06-12 17:43:00.000000"}) + b"\n")
    assert dead == [] and events[0]["latency_ms"] is None
    assert parser.stats.notes == {"negative_latency": 1}


def test_array_of_rows():
    bad = {**ROW, "prompt_tokens": "many"}
    events, dead, parser = parse(dumps([ROW, bad, FAIL]) + b"\n")
    assert [e["status"] for e in events] == [200, 429]
    assert [(d.line, d.item) for d in dead] == [(1, 1)] and "prompt_tokens" in dead[0].reason
    assert parser.stats.events == 2 and parser.stats.dead_letters == 1


GOOD = dumps(ROW)


@pytest.mark.parametrize("bad, reason", [
    (GOOD[:80], "invalid JSON"),
    (b"\x00\xff\xfe garbage \x89PNG", "invalid JSON"),
    (dumps({**ROW, "startTime": "2024-02-30 10:00:00"}), "day is out of range"),
    (dumps({**ROW, "startTime": "2024-13-01 10:00:00.5"}), "month must be in 1..12"),
    (dumps({**ROW, "startTime": 1718214181}), "startTime: expected a timestamp text"),
    (dumps({k: v for k, v in ROW.items() if k != "startTime"}), "missing field 'startTime'"),
    (dumps({**ROW, "endTime": "later"}), "not an RFC 3339 timestamp"),
    (dumps({**ROW, "metadata": '{"status": "succ'}), "metadata: not valid JSON text"),
    (dumps({**ROW, "metadata": "[1, 2]"}), "metadata: expected a JSON object"),
    (dumps({**ROW, "prompt_tokens": "many"}), "prompt_tokens: expected an integer"),
    (dumps({**ROW, "completion_tokens": -1}), "completion_tokens: negative count"),
    (dumps({**ROW, "spend": {"usd": 1}}), "spend: expected a number"),
    (dumps({**ROW, "model": ["gpt-4o"]}), "model: expected text"),
    (b'"a string"', "expected a SpendLogs row"),
])
def test_bad_rows_are_dead_lettered_and_the_rest_parses(bad, reason):
    events, dead, parser = parse(GOOD + b"\n" + bad + b"\n" + dumps(FAIL) + b"\n")
    assert len(events) == 2
    assert len(dead) == 1 and dead[0].line == 2 and dead[0].raw == bad
    assert reason in dead[0].reason, dead[0].reason
    s = parser.stats
    assert (s.records, s.parsed, s.failed) == (3, 2, 1)


def test_detection():
    assert detect_format(dumps(ROW) + b"\n" + dumps(FAIL) + b"\n") == "litellm"
    assert detect_format(dumps([ROW, FAIL]) + b"\n") == "litellm"


@pytest.mark.parametrize("other", [
    b'203.0.113.9 - - [08/Apr/2019:18:16:55 +0200] "POST /v1/chat/completions HTTP/1.1" 200 1532 "-" "curl/8.5.0"',
    dumps({"start_time": "2025-04-09T11:44:45.639Z", "response_code": 200, "duration": 1, "upstream_host": "x:1",
           "bytes_received": 0, "request_id": "r1"}),
    dumps({"request": {"method": "GET"}, "latencies": {"request": 5}, "started_at": 1717000000123, "client_ip": "1.2.3.4"}),
    dumps({"request_id": "r1", "model": "gpt-4o"}),
    dumps({"specversion": "1.0", "id": "r1", "type": "org.kubeflow.serving.inference.request", "data": {}}),
    b"", b"[]",
])
def test_sniff_does_not_claim_other_formats(other):
    data = (other + b"\n") * 3
    assert not LiteLLMParser.sniff(data, sniff_lines(data))


def test_sniff_does_not_claim_the_real_samples():
    files = [p for p in SAMPLES.rglob("*") if p.is_file() and p.suffix in (".txt", ".log")]
    assert files, f"no samples under {SAMPLES}"
    for p in files:
        head = p.read_bytes()[:65536]
        assert not LiteLLMParser.sniff(head, sniff_lines(head)), p
