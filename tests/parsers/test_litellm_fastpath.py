"""The msgspec fast path of the LiteLLM parser gives exactly what the general path gives.

The fast path decodes rows (and arrays of rows) into a Struct with msgspec, and the metadata
text into a Struct of the keys it reads, and skips the checks their types already made; any
row it cannot take falls back to the general (orjson) path. Both must agree on every input:
the same events (fields, values, order), the same dead letters (line, item, reason, raw
bytes) and the same counts and notes.
"""

import copy
import json

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ramparts.bench import corpus
from ramparts.redact import Hasher
from ramparts.streams.decode import parse_bytes
from ramparts.streams.parsers.litellm import LiteLLMParser

from .mutation import DROP, apply, changes

PROPERTY = settings(max_examples=300, deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.too_slow])
KEY_HASH = "88dc28d0f030c55ed4ab77ed8faf098196cb1c05df778539800c9f1243fe6b4b"

# Rows with their metadata decoded (it is encoded per test: as JSON text, as an object, ...).
META = {
    "user_api_key": KEY_HASH, "user_api_key_alias": "ci-bot", "user_api_key_team_id": "team-ml",
    "user_api_key_user_id": "default_user_id", "spend_logs_metadata": None, "requester_ip_address": "10.0.0.7",
    "applied_guardrails": [], "user_api_key_request_route": "/chat/completions", "status": "success",
    "error_information": None, "additional_usage_values": {"prompt_tokens_details": None},
}
FULL = {
    "request_id": "chatcmpl-9a1b2c3d", "call_type": "acompletion", "api_key": KEY_HASH, "spend": 0.000325,
    "total_tokens": 95, "prompt_tokens": 20, "completion_tokens": 75,
    "startTime": "2024-06-12 17:43:01.123456", "endTime": "2024-06-12 17:43:02.456789",
    "completionStartTime": "2024-06-12 17:43:01.612000", "model": "gpt-4o-mini-2024-07-18", "model_id": "m-1",
    "model_group": "gpt-4o-mini", "custom_llm_provider": "openai", "api_base": "https://api.openai.com/v1",
    "user": "", "metadata": META, "cache_hit": "False", "cache_key": "Cache OFF", "request_tags": "[]",
    "team_id": "team-ml", "end_user": "", "requester_ip_address": "10.0.0.7", "messages": "[]", "response": "{}",
    "session_id": None,
}
FAIL = {**FULL, "request_id": "failed-1", "metadata": {**META, "status": "failure", "error_information": {
    "error_code": "429", "error_class": "RateLimitError", "llm_provider": "openai", "traceback": "..."}}}
_bench = orjson.loads(corpus.lines("litellm", 1)[0])
BENCH = {**_bench, "metadata": orjson.loads(_bench["metadata"])}
# Without the columns that metadata keys stand in for (and without a model: model_group).
BARE = {k: v for k, v in FAIL.items() if k not in ("api_key", "requester_ip_address", "team_id", "model")}
BASES = [FULL, FAIL, BENCH, BARE]

OPTIONS = [
    None,
    {"principal_mode": "secret", "timezone": "Europe/Berlin"},
    {"principal_mode": "id", "principal_fields": ["metadata.user_api_key_user_id", "user", "total_tokens"],
     "model_keys": ["model_group", "new_model_column", "prompt_tokens", "cache_hit"]},
    {"principal_fields": ["metadata.status", "metadata.new_key", "end_user"], "model_keys": ["custom_llm_provider"]},
    {"principal_fields": ["metadata.a.b"]},  # a dotted key: general path only
    {"model_keys": ["spend"]},  # msgspec gives 5.0 for 5: general path only
]
_STATES = ["success", "failure", "failed", "error", "SUCCESS", "weird"]
_TIMES = ["2024-06-12 17:43:01.123456", "2024-06-12 17:43:01", "2024-06-12T17:43:01.5", "2024-06-12 17:43:01.123+02",
          "2024-06-12T17:43:01.123Z", "2024-06-12 17:43:00.000000", "2024-06-12 17:43:01.1234567891",
          "2024-06-12 17:43:01.", "2024-01-12 17:43:01.5", "2024-06-12 17:43:01.5 "]
_KEYS = [KEY_HASH, KEY_HASH.upper(), "g" * 64, "sk-1234567890abcdefABCDEF", "key:already-hashed", "Bearer sk-x"]
_text = [None, "-", "", "x"]
# Values of each field's own kind that the fast path takes (including the spellings of
# "absent" and values the shared code must treat alike in both paths)...
_DOMAINS = {
    "text": _text + [DROP],
    "state": _text + _STATES + [DROP],
    "time": _text + _TIMES + [DROP],
    "key": _text + _KEYS + [DROP],
    "ip": _text + ["10.0.0.7", "[::1]:80", "10.0.0.1:8080", " 10.0.0.1 ", "fe80::1", "[bad", "\u200910.0.0.1", DROP],
    "route": _text + ["/chat/completions", "/x?key=abc&b=1", "?token=t", DROP],
    "count": [None, 0, 1, 95, 2**63 - 1, DROP],
    "spend": [None, 0, 0.5, 5, -1.5, -0.0, 1e300, 2**64 + 1, DROP],
    "cache": [None, True, False, "True", "false", "None", "", "x", DROP],
    "code": [None, "429", "None", " 503 ", "abc", 429, 700, 99, "", DROP],
}
# ... and values just outside it (each must send the row to the general path).
_OUTSIDE = {
    "text": [5, 1.5, True, [], {}], "state": [5, True, []], "time": [5, 1718214181.5, True, []],
    "key": [5, 1.5, True, [], {}], "ip": [5, []], "route": [5, {}], "count": [-1, 2**63, "-", "5", 1.5, True],
    "spend": ["0.1", "-", True, [], {}], "cache": [1, 0.5, []], "code": [429.0, True, [], 2**64],
}
COLUMNS = {
    "request_id": "text", "call_type": "text", "api_key": "key", "spend": "spend", "total_tokens": "count",
    "prompt_tokens": "count", "completion_tokens": "count", "startTime": "time", "starttime": "time",
    "start_time": "time", "endTime": "time", "endtime": "time", "end_time": "time", "model": "text",
    "model_group": "text", "custom_llm_provider": "text", "user": "text", "end_user": "text", "team_id": "text",
    "requester_ip_address": "ip", "status": "state", "cache_hit": "cache", "new_model_column": "text",
}
META_KEYS = {
    "status": "state", "requester_ip_address": "ip", "user_api_key_request_route": "route",
    "user_api_key_team_id": "text", "user_api_key_alias": "text", "user_api_key": "key",
    "user_api_key_user_id": "key", "new_key": "text",
}
ERROR_KEYS = {"error_code": "code", "error_class": "text"}


class GeneralOnly(LiteLLMParser):
    def _compile(self):
        return None


def dumps(v) -> bytes:
    # Not orjson: it cannot write integers beyond 64 bits.
    return json.dumps(v, separators=(",", ":"), ensure_ascii=False).encode()


def _row(rec: dict, form: str) -> dict:
    """The row with its metadata encoded as LiteLLM exports do (or not)."""
    meta = rec.get("metadata")
    if form == "text":
        return {**rec, "metadata": dumps(meta).decode()} if "metadata" in rec else rec
    if form == "object":
        return rec
    return {**rec, "metadata": form}  # a given metadata value


def _outcome(parser, data: bytes):
    events, dead, parser = parse_bytes(parser, data)
    s = parser.stats
    # Values with their types and spellings: 5 == 5.0 == True and 0.0 == -0.0 in Python, not in the output.
    return ([[(k, type(v), repr(v)) for k, v in e.items()] for e in events],
            [(d.line, d.item, d.reason, d.raw) for d in dead],
            (s.records, s.parsed, s.skipped, s.failed, s.events, s.dead_letters, list(s.notes.items())))


def _agree(data: bytes, options=None):
    fast = LiteLLMParser(options, hasher=Hasher(b"t"))
    general = GeneralOnly(options, hasher=Hasher(b"t"))
    assert _outcome(fast, data) == _outcome(general, data)
    return fast


def _change(kinds: dict):
    return changes({key: _DOMAINS[kind] for key, kind in kinds.items()}, keep=2)


_FIELDS = [("row", k) for k in COLUMNS] + [("meta", k) for k in META_KEYS] + [("error", k) for k in ERROR_KEYS]
_KIND = {**{("row", k): v for k, v in COLUMNS.items()}, **{("meta", k): v for k, v in META_KEYS.items()},
         **{("error", k): v for k, v in ERROR_KEYS.items()}}
_outside = st.sampled_from(_FIELDS).flatmap(lambda f: st.tuples(st.just(f), st.sampled_from(_OUTSIDE[_KIND[f]])))
_META_FORMS = ["text", "text", "text", "object", "", "  ", "{}", "null", "[1, 2]", '{"status": "succ', '"x"', None, 5,
               '{"status":"success","a":"\\ud800"}', '{"status":"success"} ']


def _build(base, row_changes, meta_changes, error_changes, outside, meta_form):
    rec = copy.deepcopy(base)
    meta = rec.get("metadata")
    if not isinstance(meta, dict):
        meta = rec["metadata"] = {}
    err = meta.get("error_information")
    if not isinstance(err, dict):
        err = {}
    for table, drawn in ((rec, row_changes), (meta, meta_changes), (err, error_changes)):
        apply(table, drawn)
    if err:
        meta["error_information"] = err
    if outside is not None:
        (where, key), value = outside
        {"row": rec, "meta": meta, "error": err}[where][key] = value
        if where == "error":
            meta["error_information"] = err
    return _row(rec, meta_form)


@PROPERTY
@given(base=st.sampled_from(BASES), options=st.sampled_from(OPTIONS[:4]), row=_change(COLUMNS), meta=_change(META_KEYS),
       error=_change(ERROR_KEYS), outside=st.none() | st.none() | _outside,
       meta_form=st.sampled_from(["text"] * 8 + ["object"] * 4 + _META_FORMS),
       batch=st.sampled_from(["no", "no", "yes", "with a non-object"]))
def test_fast_and_general_paths_agree(base, options, row, meta, error, outside, meta_form, batch):
    rec = _build(base, row, meta, error, outside, meta_form)
    ok = _row(base, "text")
    probe = {"no": rec, "yes": [ok, rec], "with a non-object": [rec, 42, ok]}[batch]
    _agree(b"".join(dumps(x) + b"\n" for x in [ok, probe, ok]), options)


# Byte-level changes: JSON the generators above cannot write.
_bytes = st.sampled_from([b"\xff", b"\xc3\xa9", b"\xed\xa0\x80", b"\\u002d", b"\\u0000", b'"', b"\\", b"\\\\", b"-",
                          b"1", b"0", b"e5", b".5", b" ", b"{", b"}", b"[", b"]", b",", b":", b"null",
                          b"18446744073709551617", b'"startTime":null,', b'"metadata":{},', b'\\"status\\":\\"-\\",'])


@PROPERTY
@given(base=st.sampled_from(BASES),
       edits=st.lists(st.tuples(st.floats(0, 1), st.integers(0, 3), _bytes), min_size=1, max_size=3))
def test_fast_and_general_paths_agree_on_mangled_bytes(base, edits):
    line = dumps(_row(base, "text"))
    for where, cut, text in edits:
        i = int(where * len(line))
        line = line[:i] + text + line[i + cut:]
    _agree(line + b"\n" + dumps([_row(base, "text")] * 2) + b"\n")


@pytest.mark.parametrize("base", range(len(BASES)))
def test_each_field_at_its_values_agrees(base):
    # Every field alone at every value of its kind and just outside: deterministic, so that
    # each bound of the fast types is checked whatever the random tests draw.
    lines = []
    for field in _FIELDS:
        for value in [*_DOMAINS[_KIND[field]], *_OUTSIDE[_KIND[field]]]:
            change = {field[1]: value}
            lines.append(_build(BASES[base], *(change if field[0] == w else {} for w in ("row", "meta", "error")),
                                None, "text"))
    for form in _META_FORMS:
        lines.append(_row(BASES[base], form))
    data = b"".join(dumps(x) + b"\n" for x in lines)
    for options in OPTIONS[:4]:
        _agree(data, options)


@pytest.mark.parametrize("line", [
    dumps(_row(FULL, "text")).replace(b'"Cache OFF"', b'"Cache\xffOFF"'),  # not UTF-8 where the fast path skips
    dumps(_row(FULL, "text")).replace(b'"https:', b'"\xed\xa0\x80'),
    dumps(_row(FULL, "text")).replace(b'"acompletion"', b'"\\u002d"'),  # an escaped "-"
    dumps(_row(FULL, "text")).replace(b'"prompt_tokens":20', b'"prompt_tokens":20,"prompt_tokens":"x"'),
    dumps(_row(FULL, "text")).replace(b'"prompt_tokens":20', b'"prompt_tokens":"x","prompt_tokens":20'),
    dumps(_row(FULL, "text")).replace(b'\\"status\\":\\"success\\"',
                                      b'\\"status\\":\\"weird\\",\\"status\\":\\"success\\"'),
    dumps({**_row(FULL, "text"), "endTime": "2024-06-12 17:43:00.0"}),  # a negative latency, noted once
    dumps([{**_row(FULL, "text"), "endTime": "2024-06-12 17:43:00.0"}, {**_row(FULL, "text"), "spend": "x"}]),
    # Notes of a line that falls back half-way are counted once, in the order of the rows.
    dumps([{**_row(FULL, "text"), "status": "weird"}, {**_row(FULL, "text"), "startTime": "2024-02-30 10:00:00"}]),
    dumps([{**_row(FULL, "text"), "endTime": "2024-06-12 17:43:00.0"},
           {**_row(FULL, "text"), "endTime": "2024-13-01 1"}]),
    dumps([{**_row(FULL, "text"), "status": "weird"}, {**_row(FULL, "text"), "endTime": "2024-06-12 17:43:00.0"}]),
    dumps([_row(FULL, "text"), None]), b"[]", b"[[]]", b"{}", b"null",
])
def test_corners_agree(line):
    for options in OPTIONS:
        _agree(line + b"\n", options)


class CountingGeneral(LiteLLMParser):
    general = 0

    def _event(self, rec):
        self.general += 1
        return super()._event(rec)


@pytest.mark.parametrize("options", OPTIONS[:4])
def test_fast_path_is_taken_for_the_benchmark_corpus(options):
    lines = corpus.lines("litellm", 2000)
    p = CountingGeneral(options, hasher=Hasher(b"t"))
    assert p._fast is not None
    events, dead, _ = parse_bytes(p, b"\n".join(lines) + b"\n")
    assert len(events) == 2000 and not dead
    assert p.general == 0
    rows = [orjson.loads(x) for x in lines[:50]] + [_row(FULL, "object"), _row(FAIL, "text")]
    events, dead, _ = parse_bytes(p, orjson.dumps(rows) + b"\n")
    assert len(events) == 52 and not dead and p.general == 0


def test_unsupported_options_use_the_general_path():
    assert LiteLLMParser({"principal_fields": ["metadata.a.b"]})._fast is None  # dig tries "a.b" whole first
    assert LiteLLMParser({"principal_fields": ["a.b"]})._fast is None
    assert LiteLLMParser({"principal_fields": ["metadata"]})._fast is None  # the metadata text itself
    assert LiteLLMParser({"principal_fields": ["metadata.error_information"]})._fast is None
    assert LiteLLMParser({"model_keys": ["spend"]})._fast is None  # msgspec gives 5.0 for 5
    assert LiteLLMParser({"principal_fields": ["user", "metadata.x"], "model_keys": ["y"]})._fast is not None
