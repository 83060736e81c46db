"""The msgspec fast path of the KServe parser gives exactly what the general path gives, and
``parse_batch`` (columns, no dict per prediction) exactly what ``parse_chunk`` gives.

The fast path decodes a structured-mode CloudEvent into Structs of the attributes and body
keys it reads (tensor data straight to lists of scalars), remembers the principal and source
address per metadata text, and leaves anything else to the general (orjson) path. Both must
agree on every input: the same events (fields, values, types, order), the same dead letters
(line, item, reason, raw bytes), the same counts and notes, and the same join across lines.
The columnar ``parse_batch`` (what files and replay read) is held to ``parse_chunk`` (what the
worker's raw stage reads) on the same inputs, cut into chunks the join spans, ids stamped or not.
"""

import copy
import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ramparts.events import Columns
from ramparts.redact import Hasher
from ramparts.streams.decode import parse_bytes
from ramparts.streams.parsers.kserve import KServeParser

from .mutation import DROP, apply, changes

PROPERTY = settings(max_examples=300, deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.too_slow])
REQ = "org.kubeflow.serving.inference.request"
RESP = "org.kubeflow.serving.inference.response"
META = json.dumps({"X-Forwarded-For": ["10.42.3.14"], "X-User-Id": ["svc-payments"]}, separators=(",", ":"))


def _env(type_, id_, time, data, **ext):
    """A structured-mode CloudEvent as the simulator and KServe's logger write it."""
    doc = {"specversion": "1.0", "id": id_, "source": "http://localhost:9081/", "type": type_,
           "datacontenttype": "application/json", "time": time, "inferenceservicename": "fraud-xgb",
           "namespace": "models", "component": "predictor", "endpoint": "default"}
    doc.update(ext)
    doc["data"] = data
    return doc


def _tensor(name, shape, data, datatype="FP32"):
    return {"name": name, "shape": shape, "datatype": datatype, "data": data}


# (request, response) pairs of each shape the fast path reads.
PAIRS = [
    (_env(REQ, "a", "2026-11-01T00:00:00.035923Z", {"inputs": [_tensor("input-0", [1, 8], [
        1.523, 4.042, -2.991, 3.673, 5.481, 5.567, 2.768, 0.104])]}, metadata=META),
     _env(RESP, "a", "2026-11-01T00:00:00.039164Z", {
         "model_name": "fraud-xgb", "model_version": "3", "id": "a", "parameters": {},
         "outputs": [_tensor("output-0", [1], [0.35487])]})),
    (_env(REQ, "b", "2026-11-01T00:00:01.5Z", {"instances": [[6.8, 2.8, 4.8, 1.4], [6.0, 3.4, 4.5, 1.6]]},
          metadata=META, inferenceservicename="churn-lgbm"),
     _env(RESP, "b", "2026-11-01T00:00:01.52Z", {"predictions": [1, 0]}, inferenceservicename="churn-lgbm")),
    (_env(REQ, "c", "2026-11-01T00:00:02.100000001Z", {"inputs": [
        _tensor("ids", [1, 3], [[101, 2023, 102]], "INT64"), _tensor("mask", [1, 3], [1, 1, 1], "INT64"),
        _tensor("x", [2, 2, 2], [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8])]},
          traceparent="00-90bdf848647d50283394155d2df58f19-84dacdfdf07cadfc-00"),
     _env(RESP, "c", "2026-11-01T00:00:02.2Z", {
         "model_name": "bert", "id": "x", "outputs": [_tensor("out", [3], [0.5, 0.25, 0.25])]})),
]
_ok_pair = PAIRS[0]

_TEXT = ["", "x", None, DROP, 5, 1.5, True, ["x"], [], {"a": 1}]
# Values each envelope attribute may take (inside and outside the fast path's types).
ATTRS = {
    "id": ["a", "", None, DROP, 5, 5.0, True, ["a"], []],
    "type": [REQ, RESP, "dev.knative.other", None, DROP, 5, [REQ], []],
    "time": ["2026-11-01T00:00:00Z", "2026-11-01T00:00:00.123456789Z", "2026-11-01T00:00:00.1234567891Z",
             "2026-11-01T00:00:00+02:00", "2026-02-30T00:00:00Z", "2026-13-01T00:00:00Z", "nope", "", None,
             DROP, 1712345678, ["2026-11-01T00:00:00Z"]],
    "source": ["http://localhost:9081/", "http://sklearn-iris-predictor-default.kserve-test/", "http://10.0.0.1/",
               "http://[::1]:80/", "http://bad[", "/", "", None, DROP, 5, ["http://a.b/"]],
    "inferenceservicename": _TEXT, "namespace": _TEXT, "component": _TEXT, "endpoint": _TEXT + ["canary"],
    "specversion": ["1.0", None, DROP, 1.0], "datacontenttype": ["application/json", None, DROP, 5],
    "metadata": [META, "", "{}", "{", "null", '{"x-api-key":["sk-proj-0123456789abcdefghijkl"]}',
                 '{"Authorization":["Bearer tok"],"X-Real-Ip":["203.0.113.5"]}', '{"X-User-Id":[]}',
                 '{"X-User-Id":5}', '{"X-User-Id":{"a":1}}', '{"X-User-Id":["-"],"User":["bob"]}',
                 '{"X-Forwarded-For":"198.51.100.7, 10.0.0.2"}', "[1]", None, DROP, 5, {"X-User-Id": ["dict"]}],
    # Principal and address attributes of the default options, and ones no option names.
    "principal": ["alice", " ", "-", "", None, DROP, 7, 1.5, ["bob"], [], {"a": 1}, "Bearer abc",
                  "sk-0123456789abcdefghij"],
    "user": ["carol", None, DROP, 5, ["x"]],
    "authorization": ["Bearer eyJ.secret", None, DROP],
    "srcip": ["192.0.2.1", "10.0.0.1, 10.0.0.2", "", None, DROP, 5, ["192.0.2.9"]],
    "x-forwarded-for": ["198.51.100.7", None, DROP],
    "traceparent": ["00-x-y-00", None, DROP, 5],
    "data_base64": [DROP, None, "eyJpbnN0YW5jZXMiOiBbWzFdXX0=", "!!"],
    "tenant": [DROP, "team-blue"],
}
# Values of the body's keys.
_SCALARS = [0, 1, -1, 1.5, -0.0, 1e300, 2**63 - 1, 2**63, 2**64 - 1, 2**64 + 1, -2**63, -2**63 - 1, True, None, "s"]
_LISTS = [[], [1.5, 2], [[1, 2], [3, 4]], [[[1]]], [{"b64": "aGk="}], [[1, {"a": 1}]], [1, [2, 3]],
          [2**64 + 1], [[2**63]], [True, None, "x"]]
BODY = {
    "instances": _LISTS + [DROP, None, "6.8,2.8", {"a": [1]}],
    "predictions": _LISTS + [DROP, None, {"a": 1}, 5],
    "inputs": [DROP, None, [], {"a": [1]}, [1, 2], [{"name": "x"}], [{"data": [1, 2], "shape": [2]}]],
    "outputs": [DROP, None, [], [{"data": [1], "extra": 1}], [[1]]],
    "model_name": [DROP, None, "", "m", 5, 1.5, ["m"]],
    "model_version": [DROP, None, "", "v1", 5],
    "id": [DROP, None, "i", 5],
    "parameters": [DROP, None, {}, {"a": 1}, {"a": {"b": 1}}, 5],
    "other": [DROP, 1, "x"],
}
# Values of a tensor's keys.
TENSOR = {
    "name": [DROP, None, "t", 5, ""],
    "shape": [DROP, None, [], [4], [2, 2], [1, 4], [4, 1], [2, 3], [2, -2], [2, True], [2, 2.0], ["2", 2],
              [2**64 + 1, 0], [0, 4], [1, 2, 2], [2, 0], 5],
    "datatype": [DROP, None, "FP32", 5],
    "data": [[1, 2, 3, 4], [1.5, 2.5, 3.5, 4.5], [[1, 2], [3, 4]], [], [1, 2, 3], [2**64 + 1, 1, 1, 1],
             [2**63, 1, 1, 1], ["a", "b", "c", "d"], [True, False, None, 0], [[1], 2, 3, 4], [1, [2], 3, 4],
             None, "abcd", DROP],
    "parameters": [DROP, {}, {"x": 1}, {"x": [1]}],
}


class GeneralOnly(KServeParser):
    def __init__(self, *a, **k):
        super().__init__(*a, **k)
        self._fast = None


def dumps(v) -> bytes:
    # Not orjson: it cannot write integers beyond 64 bits.
    return json.dumps(v, separators=(",", ":"), ensure_ascii=False).encode()


def _outcome(parser, data: bytes, stamp: bool):
    events, dead, parser = parse_bytes(parser, data) if not stamp else _stamped(parser, data)
    s = parser.stats
    # Values with their types and spellings: 5 == 5.0 == True and 0.0 == -0.0 in Python, not in the output.
    return ([[(k, type(v), repr(v)) for k, v in e.items()] for e in events],
            [(d.line, d.item, d.reason, d.raw) for d in dead],
            (s.records, s.parsed, s.skipped, s.failed, s.events, s.dead_letters, list(s.notes.items())))


def _stamped(parser, data: bytes):
    # The worker's way: ids stamped, records in two chunks (the join spans them), then the flush.
    parser.stamp_ids = True
    lines = data.split(b"\n")
    events, dead = [], []
    half = len(lines) // 2
    parser.parse_chunk(lines[:half], "t:0", 1, events, dead)
    parser.parse_chunk(lines[half:], "t:0", half + 1, events, dead)
    parser.flush(events, dead)
    return events, dead, parser


def _chunked(parser, data: bytes, stamp: bool, cuts: list[int], columnar: bool):
    """The outcome of ``data`` read in chunks cut before the lines ``cuts`` (0-based), through
    ``parse_batch`` or ``parse_chunk``, then the flush."""
    parser.stamp_ids = stamp
    lines = data.split(b"\n")
    events, dead = [], []
    bounds = [0, *sorted(c for c in cuts if 0 < c < len(lines)), len(lines)]
    for a, b in zip(bounds, bounds[1:]):
        if columnar:
            batch = parser.parse_batch(lines[a:b], "t:0", a + 1, dead)
            # Columns only, and read as columns before any dict is made.
            assert all(type(part) is Columns for part in batch.layout()[0] if len(part))
            fields = batch.layout()[0][0].fields if len(batch) else ()
            columns = {f: list(batch.values(f)) for f in fields}
            assert not batch.holds_dicts or not len(batch)
            got = batch.events
            assert columns == {f: [e[f] for e in got] for f in fields}
            events.extend(got)
        else:
            parser.parse_chunk(lines[a:b], "t:0", a + 1, events, dead)
    parser.flush(events, dead)
    s = parser.stats
    return ([[(k, type(v), repr(v)) for k, v in e.items()] for e in events],
            [(d.line, d.item, d.reason, d.raw) for d in dead],
            (s.records, s.parsed, s.skipped, s.failed, s.events, s.dead_letters, list(s.notes.items())),
            parser.holds_state())


def _batch_agrees(data: bytes, options=None, stamp=False, cuts=None, parser=KServeParser):
    """parse_batch gives what parse_chunk gives (cut in three by default)."""
    if cuts is None:
        n = data.count(b"\n") + 1
        cuts = [n // 3, 2 * n // 3]
    by_batch = _chunked(parser(options, hasher=Hasher(b"t")), data, stamp, cuts, columnar=True)
    assert by_batch == _chunked(parser(options, hasher=Hasher(b"t")), data, stamp, cuts, columnar=False)
    return by_batch


def taught(options=None, with_attrs=False):
    """A parser whose learned decoder (``kserve._Learned``) is built before its first line, with every text
    value of the tables below and of PAIRS learned (and the principal and address attributes read or not):
    lines then take it from the first one, instead of after the lines that teach it."""
    p = KServeParser(options, hasher=Hasher(b"t"))
    learned = p._learned
    if learned is not None:
        known = learned.known
        docs = [d for pair in PAIRS for d in pair]
        for f, values in known.items():
            table = TENSOR if f in ("name", "datatype") else BODY if f in ("model_name", "model_version") else ATTRS
            values.update(v for v in table.get(f, ()) if type(v) is str)
            values.update(d[f] for d in docs if type(d.get(f)) is str)
        for d in docs:
            body = d["data"]
            known["model_name"].add(body.get("model_name", "m"))
            known["model_version"].add(body.get("model_version", "v1"))
            known["name"].update(t["name"] for t in body.get("inputs", []) + body.get("outputs", []))
            known["datatype"].update(t["datatype"] for t in body.get("inputs", []) + body.get("outputs", []))
        learned.with_attrs = with_attrs
        learned._build()
    return p


def _agree(data: bytes, options=None, stamp=False):
    fast = KServeParser(options, hasher=Hasher(b"t"))
    general = GeneralOnly(options, hasher=Hasher(b"t"))
    expected = _outcome(general, data, stamp)
    assert _outcome(fast, data, stamp) == expected
    # The learned decoder built before the first line (the attributes read or not): the same again.
    assert _outcome(taught(options), data, stamp) == expected
    assert _outcome(taught(options, with_attrs=True), data, stamp) == expected
    _batch_agrees(data, options, stamp)
    return fast


def _change(table: dict):
    return changes(table, keep=3)


OPTIONS = [None, {"principal_attribute": "tenant", "src_ip_fallbacks": ["x-real-ip"]},
           {"principal_attribute": "source"},  # a name the Struct reads as another attribute: general path only
           {"principal_fallbacks": [], "src_ip_fallbacks": [], "max_pending": 1}]


def _build(base: dict, attrs: dict, body: dict, tensor: dict, which: int) -> dict:
    doc = copy.deepcopy(base)
    apply(doc, attrs)
    data = doc.get("data")
    if isinstance(data, dict):
        apply(data, body)
        for key in ("inputs", "outputs"):
            ts = data.get(key)
            if isinstance(ts, list) and ts and isinstance(ts[which % len(ts)], dict):
                apply(ts[which % len(ts)], tensor)
    return doc


@PROPERTY
@given(pair=st.sampled_from(PAIRS), half=st.integers(0, 1), attrs=_change(ATTRS), body=_change(BODY),
       tensor=_change(TENSOR), which=st.integers(0, 2), options=st.sampled_from(OPTIONS),
       order=st.sampled_from(["req first", "resp first", "probe twice", "batch"]), stamp=st.booleans())
def test_fast_and_general_paths_agree(pair, half, attrs, body, tensor, which, options, order, stamp):
    probe = _build(pair[half], attrs, body, tensor, which)
    other = pair[1 - half]
    ok_req, ok_resp = _ok_pair
    if order == "req first":
        docs = [ok_req, probe, other, ok_resp] if half else [ok_req, other, probe, ok_resp]
    elif order == "resp first":
        docs = [ok_resp, other, probe, ok_req] if half else [ok_resp, probe, other, ok_req]
    elif order == "probe twice":
        docs = [probe, ok_req, probe, other, ok_resp]
    else:
        docs = [ok_req, [probe, other], ok_resp]
    _agree(b"".join(dumps(d) + b"\n" for d in docs), options, stamp)


# Byte-level changes: JSON the generators above cannot write.
_bytes = st.sampled_from([b"\xff", b"\xc3\xa9", b"\xed\xa0\x80", b"\\u002d", b"\\u0000", b"\\ud800", b'"', b"\\",
                          b"\\\\", b"-", b"1", b"0", b"e5", b"e999", b".5", b" ", b"{", b"}", b"[", b"]", b",", b":",
                          b"null", b"true", b"18446744073709551617", b"9223372036854775808", b'"data":null,',
                          b'"id":"a",', b'"x":1,', b"\t", b"\x01"])


@PROPERTY
@given(pair=st.sampled_from(PAIRS), half=st.integers(0, 1),
       edits=st.lists(st.tuples(st.floats(0, 1), st.integers(0, 3), _bytes), min_size=1, max_size=3))
def test_fast_and_general_paths_agree_on_mangled_bytes(pair, half, edits):
    line = dumps(pair[half])
    for where, cut, text in edits:
        i = int(where * len(line))
        line = line[:i] + text + line[i + cut:]
    _agree(line + b"\n" + dumps(pair[1 - half]) + b"\n" + b"".join(dumps(d) + b"\n" for d in _ok_pair))


@pytest.mark.parametrize("pair", range(len(PAIRS)))
def test_each_value_alone_agrees(pair):
    # Every key alone at every value: deterministic, so that each bound of the fast types is
    # checked whatever the random tests draw.
    lines = []
    for half in (0, 1):
        for table, arg in ((ATTRS, 0), (BODY, 1), (TENSOR, 2)):
            for key, values in table.items():
                for value in values:
                    change = [{}, {}, {}]
                    change[arg] = {key: value}
                    for which in range(3 if arg == 2 else 1):
                        lines.append(_build(PAIRS[pair][half], *change, which))
                        lines.append(PAIRS[pair][1 - half])
    data = b"".join(dumps(x) + b"\n" for x in lines)
    for options in OPTIONS:
        _agree(data, options)
        _agree(data, options, stamp=True)


@pytest.mark.parametrize("line", [
    dumps(PAIRS[0][0]).replace(b'"models"', b'"mod\xffels"'),  # not UTF-8
    dumps(PAIRS[0][0]).replace(b'"models"', b'"\xed\xa0\x80"'),
    dumps(PAIRS[0][0]).replace(b'"models"', b'"\\u002d"'),  # an escaped "-"
    dumps(PAIRS[0][0]).replace(b'"id":"a"', b'"id":"a","id":"b"'),  # duplicate keys: the last one
    dumps(PAIRS[0][0]).replace(b'"id":"a"', b'"id":5,"id":"a"'),
    dumps(PAIRS[0][0]).replace(b'"namespace":"models"', b'"namespace":"models","namespace":5'),
    dumps(PAIRS[0][0]).replace(b"1.523", b"1e400"),
    dumps(PAIRS[0][0]).replace(b"1.523", b"1.523e-400"),
    dumps(PAIRS[0][0]).replace(b"1.523", b"-0"),
    dumps(PAIRS[0][1]).replace(b'"parameters":{}', b'"parameters":{"x":1e999}'),
    dumps(PAIRS[0][1]).replace(b'"parameters":{}', b'"parameters":{"x":[1e999]}'),
    dumps(PAIRS[0][0]) + b" ", b" " + dumps(PAIRS[0][0]), dumps(PAIRS[0][0]) + b"x",
    dumps([PAIRS[0][0], PAIRS[0][1]]), b"[]", b"{}", b"null", b"5",
])
def test_corners_agree(line):
    for options in OPTIONS:
        _agree(line + b"\n" + b"".join(dumps(d) + b"\n" for d in PAIRS[0]), options)


class CountingGeneral(KServeParser):
    general = 0

    def _one(self, doc):
        self.general += 1
        return super()._one(doc)


def test_fast_path_is_taken_for_the_simulated_payload_log(tmp_path):
    from ramparts.streams.simulate import simulate

    manifest = tmp_path / "m.json"
    simulate("mix", str(manifest), seed=3, start="2026-11-01T00:00:00Z", rate=5)
    data = (tmp_path / "m.kserve.log").read_bytes()
    p = CountingGeneral(hasher=Hasher(b"t"))
    assert p._fast is not None
    events, dead, _ = parse_bytes(p, data)
    assert events and not dead
    assert p.general == 0
    _agree(data)
    _agree(data, stamp=True)


# Lines for the join across chunks: both halves of a few ids, in any order, repeated (a reused
# Ce-Id), missing, with blank, bad, other-type and batch-mode lines among them.
def _half_line(pair: int, half: int, id_: str, spelling: int) -> bytes:
    doc = copy.deepcopy(PAIRS[pair][half])
    doc["id"] = id_
    if spelling == 1:  # a binary-mode dump: the general path
        doc = {"headers": {f"Ce-{k.capitalize()}": v for k, v in doc.items() if k != "data"}, "body": doc["data"]}
    elif spelling == 2:  # one item of a batch
        return dumps([doc])
    return dumps(doc)


_OTHER_LINES = [b"", b"   ", b"{", b"null", b"[]", b"[1, {}]", dumps(_env("dev.knative.other", "q", "2026-11-01T00:00:00Z", {})),
                dumps(_env(REQ, "", "2026-11-01T00:00:00Z", {"instances": [[1]]})),
                dumps(_env(REQ, "q", "2026-11-01T00:00:00Z", {"unknown": 1}))]
_LINE = st.one_of(
    st.tuples(st.integers(0, len(PAIRS) - 1), st.integers(0, 1), st.sampled_from("abcde"), st.integers(0, 2))
    .map(lambda t: _half_line(*t)),
    st.sampled_from(_OTHER_LINES))


@PROPERTY
@given(lines=st.lists(_LINE, min_size=1, max_size=40), cuts=st.lists(st.integers(0, 40), max_size=4),
       options=st.sampled_from(OPTIONS + [{"max_pending": 2}]), stamp=st.booleans())
def test_batch_and_chunk_agree_across_chunks(lines, cuts, options, stamp):
    events, dead, counts, _ = _batch_agrees(b"\n".join(lines), options, stamp, cuts)
    assert counts[0] == len(lines) and counts[1] + counts[2] + counts[3] == len(lines)


def test_batch_of_the_simulated_payload_log_is_columns(tmp_path):
    from ramparts.streams.simulate import simulate

    manifest = tmp_path / "m.json"
    simulate("mix", str(manifest), seed=5, start="2026-11-01T00:00:00Z", rate=5)
    data = (tmp_path / "m.kserve.log").read_bytes()
    n = data.count(b"\n")
    for stamp in (False, True):
        events, dead, counts, held = _batch_agrees(data, None, stamp, [n // 4, n // 2, n // 2 + 1])
        assert events and not dead and not held
    # The ids the streaming pipeline stamps: "<origin>:<line>.<k>" of the line that completes the
    # pair (in the chunk it is in), the flush's "<origin>:end.<k>".
    p = KServeParser(hasher=Hasher(b"t"))
    p.stamp_ids = True
    req, resp = (dumps(d) for d in PAIRS[1])
    lone = _half_line(0, 0, "z", 0)
    first = p.parse_batch([req, b"", lone], "t:0", 1, [])
    second = p.parse_batch([resp], "t:0", 4, [])
    assert len(first) == 0 and p.holds_state()
    assert second.values("id") == ["t:0:4.0"] and second.values("request_id") == ["b"]
    events, dead = [], []
    p.flush(events, dead)
    assert [(e["id"], e["request_id"], e["output"]) for e in events] == [("t:0:end.0", "z", None)] and not dead
    assert list(second.events[0])[-1] == "id" and second.values("kind") == ["prediction"]


def test_unsupported_options_use_the_general_path():
    assert KServeParser({"principal_attribute": "source"})._fast is None
    assert KServeParser({"src_ip_fallbacks": ["data_base64"]})._fast is None
    assert KServeParser({"principal_attribute": "tenant"})._fast is not None
    # The principal/address attributes are read from the line, before the metadata.
    p = KServeParser(hasher=Hasher(b"t"))
    line = dumps(_env(REQ, "z", "2026-11-01T00:00:00Z", {"instances": [[1]]}, metadata=META, user="carol"))
    [e], dead, _ = parse_bytes(p, line + b"\n")
    assert not dead and (e["principal"], e["src_ip"]) == ("carol", "10.42.3.14")
    line = dumps(_env(REQ, "z", "2026-11-01T00:00:00Z", {"instances": [[1]]}, metadata=META))
    [e], dead, _ = parse_bytes(p, line + b"\n")
    assert not dead and (e["principal"], e["src_ip"]) == ("svc-payments", "10.42.3.14")
