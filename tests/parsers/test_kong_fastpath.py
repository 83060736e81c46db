"""The msgspec fast path of the Kong parser gives exactly what the general path gives.

The fast path decodes entries (and batches) into Structs with msgspec and skips the checks
their types already made; any line it cannot take falls back to the general (orjson) path.
Both must agree on every input: the same events (fields, values, order), the same dead
letters (line, batch item, reason, raw bytes) and the same counts.
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
from ramparts.streams.parsers.kong import KongParser

PROPERTY = settings(max_examples=300, deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.too_slow])

# A full entry (Kong 3.x http-log with AI Proxy's ai section), with fields the parser reads
# and fields it skips.
FULL = {
    "service": {"host": "httpbin.konghq.com", "id": "167290ee-c682", "name": "httpbin", "port": 80, "retries": 5},
    "route": {"id": "78f79740-c410", "paths": ["/log"], "strip_path": True, "service": {"id": "167290ee"}},
    "request": {"querystring": {"apikey": "kong-key-1"}, "size": 138, "uri": "/log?apikey=kong-key-1",
                "url": "http://localhost:8000/log?apikey=kong-key-1",
                "headers": {"host": "localhost:8000", "user-agent": "HTTPie/2.4.0", "apikey": "kong-key-1",
                            "authorization": "REDACTED", "x-model": ["llama-3-8b", "ignored"]},
                "method": "GET"},
    "tries": [{"balancer_latency": 0, "port": 80, "balancer_start": 1614232668399, "ip": "18.211.130.98"}],
    "client_ip": "192.168.144.1",
    "upstream_uri": "/anything",
    "response": {"headers": {"content-type": "application/json"}, "status": 200, "size": 811},
    "latencies": {"request": 1921, "kong": 9, "proxy": 1430},
    "started_at": 1614232668342,
    "consumer": {"username": "demo", "created_at": 1491847011000, "id": "35b03bfc-7a5b"},
    "authenticated_entity": {"id": "eaa330c0-4cff", "consumer_id": "35b03bfc-7a5b"},
    "upstream_status": "200",
    "source": "upstream",
    "ai": {
        "payload": {"request": '{"model":"gpt-4o"}'},
        "proxy": {"payload": {"response": "{}"},
                  "usage": {"prompt_tokens": 28, "completion_tokens": 20, "total_tokens": 48, "cost": 0.0038},
                  "meta": {"request_model": "gpt-4o", "provider_name": "openai", "response_model": "gpt-4o-2024"}},
    },
}
BASES = [FULL, orjson.loads(corpus.lines("kong", 1)[0])]

# Every place the parser reads, and some it does not.
PATHS = [
    ("request",), ("request", "method"), ("request", "uri"), ("request", "size"), ("request", "headers"),
    ("request", "headers", "user-agent"), ("request", "headers", "x-model"), ("request", "headers", "apikey"),
    ("request", "headers", "authorization"), ("request", "url"),
    ("response",), ("response", "status"), ("response", "size"),
    ("latencies",), ("latencies", "request"), ("latencies", "kong"), ("latencies", "proxy"),
    ("consumer",), ("consumer", "username"), ("consumer", "id"), ("consumer", "custom_id"),
    ("authenticated_entity",), ("authenticated_entity", "id"),
    ("route",), ("route", "name"), ("route", "id"), ("service",), ("service", "name"), ("service", "id"),
    ("client_ip",), ("started_at",), ("upstream_status",), ("tries",), ("source",),
    ("ai",), ("ai", "proxy"), ("ai", "payload"), ("ai", "ai-proxy"), ("ai", "other"),
    ("ai", "proxy", "meta"), ("ai", "proxy", "usage"), ("ai", "proxy", "meta", "request_model"),
    ("ai", "proxy", "meta", "response_model"), ("ai", "proxy", "meta", "provider_name"),
    ("ai", "proxy", "usage", "prompt_tokens"), ("ai", "proxy", "usage", "prompt_token"),
    ("ai", "proxy", "usage", "completion_tokens"),
]
# Values the fast path takes but must map as the general path does, then anything else.
_edges = st.sampled_from([None, "-", "", -1, 0, -0.0, -2.5, 1, 7.25, "x", "?", "/a?key=s", []])
_scalars = st.one_of(
    _edges, st.booleans(),
    st.integers(-5, 2000) | st.sampled_from([2**53 + 1, 2**63 - 1, 2**63, 2**64 - 1, 2**64 + 7]),
    st.sampled_from([1614232668342, 7258118399999, 7258118400000, -1614232668342]),
    st.floats(-10, 1e6, allow_nan=False) | st.sampled_from([0.5, 1e300]),
    st.sampled_from(["200", "12", "1.5", "-3", "REDACTED", "Bearer sk-abc", "/p?apikey=secret&x=1",
                     "1614232668342", "gpt-4o", "\u00e9t\u00e9", "a\u0000b"]),
)
_values = st.one_of(
    _edges, _scalars,
    st.lists(_scalars, max_size=3),
    st.dictionaries(st.sampled_from(["name", "id", "meta", "usage", "request_model", "prompt_tokens", "x"]),
                    _scalars | st.dictionaries(st.sampled_from(["request_model", "prompt_tokens", "x"]), _scalars,
                                               max_size=2), max_size=3),
)
OPTIONS = [
    None,
    {"key_headers": ["authorization", "apikey"], "model_header": None},
    {"principal_fields": ["consumer.custom_id", "request.size", "request.headers.x-user", "client_ip"],
     "model_header": "User-Agent"},
    {"principal_fields": ["nothing.here", "authenticated_entity.consumer_id"], "key_headers": ["x-model"]},
    {"principal_fields": ["latencies.request"]},  # a latency: general path only
]


class GeneralOnly(KongParser):
    def _compile(self):
        return None


def dumps(v) -> bytes:
    # Not orjson: it cannot write integers beyond 64 bits.
    return json.dumps(v, separators=(",", ":"), ensure_ascii=False).encode()


def _set(doc: dict, path: tuple, value, drop: bool) -> None:
    node = doc
    for part in path[:-1]:
        nxt = node.get(part)
        if not isinstance(nxt, dict):
            nxt = node[part] = {}
        node = nxt
    if drop:
        node.pop(path[-1], None)
    else:
        node[path[-1]] = value


def _outcome(parser, data: bytes):
    events, dead, parser = parse_bytes(parser, data)
    s = parser.stats
    # Values with their types and spellings: 5 == 5.0 == True and 0.0 == -0.0 in Python, not in the output.
    return ([[(k, type(v), repr(v)) for k, v in e.items()] for e in events],
            [(d.line, d.item, d.reason, d.raw) for d in dead],
            (s.records, s.parsed, s.skipped, s.failed, s.events, s.dead_letters, s.notes))


def _agree(data: bytes, options=None):
    fast = KongParser(options, hasher=Hasher(b"t"))
    general = GeneralOnly(options, hasher=Hasher(b"t"))
    assert _outcome(fast, data) == _outcome(general, data)
    return fast


@PROPERTY
@given(base=st.sampled_from(BASES), options=st.sampled_from(OPTIONS),
       changes=st.lists(st.tuples(st.sampled_from(PATHS), _values, st.sampled_from([False, False, True])),
                        max_size=6),
       shape=st.sampled_from(["object", "batch", "batch with a non-object"]))
def test_fast_and_general_paths_agree(base, options, changes, shape):
    rec = copy.deepcopy(base)
    for path, value, drop in changes:
        _set(rec, path, value, drop)
    if shape == "object":
        lines = [rec]
    elif shape == "batch":
        lines = [[base, rec, base]]  # one bad item: the general path dead-letters it alone
    else:
        lines = [[rec, 42, base]]
    data = b"".join(dumps(x) + b"\n" for x in [base, *lines, base])
    _agree(data, options)


# Every field the parser reads, each left alone or given a value of its own kind that the
# fast path takes (so that its typed shortcuts are compared value by value, the spellings of
# "absent" included), and at most one given a value just outside what the fast path takes.
_text = st.sampled_from([None, "-", "", "x", "?", "?key=s", "/a?apikey=s&b=1", "REDACTED", "Bearer sk-abc", "200",
                         DROP := object()])
_DOMAINS = {
    "text": _text,
    "header": _text | st.lists(st.sampled_from(["-", "", "x", "REDACTED"]), max_size=2),
    "count": st.sampled_from([None, 0, 1, 138, 2**63 - 1, DROP]),
    "status": st.sampled_from([None, 0, 200, 999, DROP]),
    "latency": st.sampled_from([None, -1, -0.0, 0, 5, 2.5, -2.5, 1e300, 2**63 - 1, 2**64 + 1, DROP]),
    "started": st.sampled_from([0, 1, 1614232668342, 7258118399999]),
}
_EDGE_VALUES = {
    "text": [None, "-", "", "x", "?key=s", DROP], "header": [None, "-", "", [], ["-", "x"], ["x"], DROP],
    "count": [None, 0, 2**63 - 1, DROP], "status": [None, 0, 999, DROP],
    "latency": [None, -1, -0.0, 0, 2.5, 1e300, 2**64 + 1, DROP], "started": [0, 7258118399999],
}
_OUTSIDE = {
    "text": [5, 1.5, True, [], {}], "header": [5, [1], {}, [None], ["x", 1]],
    "count": [-1, 2**63, "-", "5", 1.5, True], "status": [1000, -1, "200", 200.0, ""],
    "latency": ["5", True, [], {}, "-"], "started": [-1, 7258118400000, "1614232668342", 1614232668342.5, None],
}
LEAVES = {
    ("request", "method"): "text", ("request", "uri"): "text", ("request", "size"): "count",
    ("request", "headers", "user-agent"): "header", ("request", "headers", "x-model"): "header",
    ("request", "headers", "apikey"): "header", ("request", "headers", "authorization"): "header",
    ("request", "headers", "x-user"): "header",
    ("response", "status"): "status", ("response", "size"): "count",
    ("latencies", "request"): "latency", ("latencies", "kong"): "latency", ("latencies", "proxy"): "latency",
    ("consumer", "username"): "text", ("consumer", "id"): "text", ("consumer", "custom_id"): "text",
    ("authenticated_entity", "id"): "text", ("authenticated_entity", "consumer_id"): "text",
    ("route", "name"): "text", ("route", "id"): "text", ("service", "name"): "text", ("service", "id"): "text",
    ("client_ip",): "text", ("upstream_status",): "text", ("started_at",): "started",
    ("ai", "proxy", "meta", "request_model"): "text", ("ai", "proxy", "meta", "response_model"): "text",
    ("ai", "proxy", "meta", "provider_name"): "text", ("ai", "ai-proxy", "meta", "request_model"): "text",
    ("ai", "proxy", "usage", "prompt_tokens"): "count", ("ai", "proxy", "usage", "prompt_token"): "count",
    ("ai", "proxy", "usage", "completion_tokens"): "count", ("ai", "ai-proxy", "usage", "completion_token"): "count",
    ("ai", "payload", "meta", "request_model"): "text", ("ai", "other", "usage", "prompt_tokens"): "count",
}
KEEP = object()
_changes = st.fixed_dictionaries({
    path: st.tuples(st.integers(0, 2), _DOMAINS[kind]).map(lambda t: t[1] if t[0] == 0 else KEEP)
    for path, kind in LEAVES.items()})
_OBJECTS = sorted({p[:i] for p in LEAVES for i in range(1, len(p))})
_outside = st.sampled_from(sorted(LEAVES)).flatmap(
    lambda path: st.tuples(st.just(path), st.sampled_from(_OUTSIDE[LEAVES[path]])))


@PROPERTY
@given(base=st.sampled_from(BASES), options=st.sampled_from(OPTIONS[:4]), changes=_changes,
       dropped=st.lists(st.sampled_from(_OBJECTS), max_size=2), outside=st.none() | _outside, batch=st.booleans())
def test_fast_and_general_paths_agree_on_typed_values(base, options, changes, dropped, outside, batch):
    rec = copy.deepcopy(base)
    for path in dropped:
        _set(rec, path, None, True)
    for path, value in changes.items():
        if value is not KEEP:
            _set(rec, path, value, value is DROP)
    if outside is not None:
        _set(rec, *outside, False)
    probe = [base, rec] if batch else rec
    _agree(b"".join(dumps(x) + b"\n" for x in [base, probe, base]), options)


# The ai section: which plugin is read (the known keys first, then any other object with
# meta or usage, never payload), absent against null, both spellings of the token counts.
_meta = st.dictionaries(st.sampled_from(["request_model", "response_model", "provider_name", "llm_latency"]),
                        st.sampled_from([None, "-", "", "gpt-4o", "openai", 5]), max_size=3)
_usage = st.dictionaries(st.sampled_from(["prompt_tokens", "prompt_token", "completion_tokens", "completion_token",
                                          "cost"]), st.sampled_from([None, "-", 0, 28, -1, 1.5, "12"]), max_size=4)
_plugin = st.fixed_dictionaries({}, optional={"meta": _meta | st.sampled_from([None, "x", [], 1]),
                                              "usage": _usage | st.sampled_from([None, "x", [], 1]),
                                              "payload": st.just({"response": "{}"})})
_ai = st.dictionaries(st.sampled_from(["payload", "proxy", "ai-proxy", "ai-proxy-advanced", "other", "zzz"]),
                      _plugin | st.sampled_from([None, "x", 1, [], True]), max_size=4)


@PROPERTY
@given(base=st.sampled_from(BASES), ai=_ai | st.sampled_from([None, "x", []]), options=st.sampled_from(OPTIONS[:2]))
def test_fast_and_general_paths_agree_on_ai_sections(base, ai, options):
    rec = dict(base, ai=ai)
    _agree(dumps(rec) + b"\n" + dumps([rec, base]) + b"\n", options)


# Byte-level changes: JSON the generators above cannot write (escapes, duplicate keys, bytes
# that are not UTF-8, numbers beyond 64 bits, whitespace).
_bytes = st.sampled_from([b"\xff", b"\xc3\xa9", b"\xed\xa0\x80", b"\\u002d", b"\\u0000", b'"', b"\\", b"-", b"1", b"0",
                          b"e5", b".5", b" ", b"\t", b"{", b"}", b"[", b"]", b",", b":", b"null",
                          b"18446744073709551617",
                          b'"started_at":1,', b'"request":null,', b'"consumer":{"username":"-"},'])


@PROPERTY
@given(base=st.sampled_from(BASES),
       edits=st.lists(st.tuples(st.floats(0, 1), st.integers(0, 3), _bytes), min_size=1, max_size=3))
def test_fast_and_general_paths_agree_on_mangled_bytes(base, edits):
    line = orjson.dumps(base)
    for where, cut, text in edits:
        i = int(where * len(line))
        line = line[:i] + text + line[i + cut:]
    _agree(line + b"\n" + orjson.dumps([base, base]) + b"\n")


@pytest.mark.parametrize("line", [
    # Not UTF-8 in a field the fast path skips: msgspec would not look, orjson rejects the line.
    orjson.dumps(FULL).replace(b'"upstream"', b'"up\xffstream"'),
    orjson.dumps(FULL).replace(b'"/anything"', b'"/\xed\xa0\x80"'),
    orjson.dumps(FULL).replace(b'"GET"', b'"\\u002d"'),  # an escaped "-"
    orjson.dumps(FULL).replace(b'"size":138', b'"size":18446744073709551617'),
    orjson.dumps(FULL).replace(b'"demo"', b'"\\ud800"'),  # a lone surrogate
    orjson.dumps(FULL).replace(b'"kong":9', b'"kong":9,"kong":"slow"'),  # a duplicate key, the last wins
    orjson.dumps(FULL).replace(b'"kong":9', b'"kong":"slow","kong":9'),
    orjson.dumps([FULL, None, FULL]),
    b"[]", b"[[]]", b"{}", b"null", b" " + orjson.dumps(FULL) + b"\t",
])
def test_corners_agree(line):
    for options in OPTIONS:
        _agree(line + b"\n", options)


@pytest.mark.parametrize("base", range(len(BASES)))
def test_each_field_at_its_edges_agrees(base):
    # Every field alone at every value of its kind and just outside: deterministic, so that
    # each bound of the fast types is checked whatever the random tests draw.
    lines = []
    for path, kind in LEAVES.items():
        for value in [*_EDGE_VALUES[kind], *_OUTSIDE[kind]]:
            rec = copy.deepcopy(BASES[base])
            _set(rec, path, value, value is DROP)
            lines.append(rec)
    data = b"".join(dumps(x) + b"\n" for x in lines)
    for options in OPTIONS[:4]:
        _agree(data, options)


@pytest.mark.parametrize("ai", [
    {"payload": {"meta": {"request_model": "p"}}, "other": {"usage": {"prompt_tokens": 3}}},
    {"payload": {"meta": {"request_model": "p"}}},
    {"proxy": None, "ai-proxy": "x", "ai-proxy-advanced": {"meta": {"request_model": "adv"}}},
    {"proxy": [], "zzz": {"meta": None}, "other": {"usage": {"prompt_tokens": 3}}},
    {"other": {"x": 1}, "zzz": {"usage": None}},
    {"proxy": {"usage": {"prompt_tokens": None, "prompt_token": 5, "completion_token": 7}}},
    {"proxy": {"usage": {"prompt_token": 5}, "meta": {"request_model": "", "response_model": "r"}}},
    {"proxy": {"usage": "x", "meta": 5}}, {}, "x", None, [],
])
def test_ai_sections_agree(ai):
    for base in BASES:
        _agree(dumps(dict(base, ai=ai)) + b"\n")


class CountingGeneral(KongParser):
    general = 0

    def _event(self, rec):
        self.general += 1
        return super()._event(rec)


@pytest.mark.parametrize("options", [None, OPTIONS[1], OPTIONS[2], OPTIONS[3]])
def test_fast_path_is_taken_for_the_benchmark_corpus(options):
    lines = corpus.lines("kong", 2000)
    p = CountingGeneral(options, hasher=Hasher(b"t"))
    assert p._fast is not None
    events, dead, _ = parse_bytes(p, b"\n".join(lines) + b"\n")
    assert len(events) == 2000 and not dead
    assert p.general == 0
    batch = orjson.dumps([orjson.loads(x) for x in lines[:50]]) + b"\n" + orjson.dumps(FULL) + b"\n"
    events, dead, _ = parse_bytes(p, batch)
    assert len(events) == 51 and not dead and p.general == 0


def test_unsupported_options_use_the_general_path():
    assert KongParser({"principal_fields": ["latencies.request"]})._fast is None  # msgspec gives 5.0 for 5
    assert KongParser({"principal_fields": ["consumer"]})._fast is None  # an object
    assert KongParser({"principal_fields": ["client_ip.x"]})._fast is None  # through a value
    assert KongParser({"principal_fields": ["ai.proxy.meta.request_model"]})._fast is None
    assert KongParser({"principal_fields": ["request.headers.x-k"], "key_headers": ["x-k"]})._fast is None
    assert KongParser({"principal_fields": ["consumer.custom_id", "request.size"]})._fast is not None
