"""The types a parser vouches for in its columns (``Columns.types``) are true, travel with the events, and
change nothing that detection makes.

The Envoy parser vouches for its numeric columns as its structs declare them (ints, floats, None where a
column may hold one); :class:`~ramparts.detectors.typed_columns.TypedColumns` then skips the type scans the
vouch answers. A vouch that lied would change what the detectors read (an int64 array of what is not all
ints, a cast where there was a None): the tests feed lines whose JSON types differ from the usual (floats
where ints are usual, texts, bools, huge ints, nulls, Envoy's "-"), check every vouched column's actual
types are within the vouch, through selections, sorts, pools, concatenations with parts that vouch nothing
and the events hop's messages, and that the detectors' alerts and state equal those of the same events
with every vouch stripped.
"""

from __future__ import annotations

import json

import hypothesis.strategies as st
import numpy as np
import orjson
from hypothesis import example, given, settings

from ramparts.config import load_config
from ramparts.detectors import build_detectors
from ramparts.detectors.base import DictState
from ramparts.detectors.typed_columns import TypedColumns
from ramparts.events import Columns, EventBatch
from ramparts.redact import Hasher
from ramparts.streams import wire
from ramparts.streams.parsers.envoy_json import EnvoyJsonParser
from ramparts.streams.pipeline import Pipeline, alert_to_wire

_NONE = type(None)
_HUGE = 2 ** 70  # past int64 and uint64: msgspec's int refuses it (the general path reads it)
_U64 = 2 ** 64 - 1  # past int64 only

# The benchmark's line, as the simulator writes it (keys in the log's order).
_LINE = {
    "start_time": "2026-11-01T00:00:00.004Z", "method": "POST", "x-envoy-origin-path": "/v1/chat/completions",
    "protocol": "HTTP/1.1", "response_code": 200, "response_flags": "-", "bytes_received": 1848,
    "bytes_sent": 1789, "duration": 4545, "x-envoy-upstream-service-time": "4543",
    "x-forwarded-for": "10.42.0.61", "user-agent": "python-httpx/0.27.2",
    "x-request-id": "86c0258d-de4d-4d71-b412-583d6538ba05", ":authority": "llm.example.com",
    "upstream_host": "10.42.1.23:8000", "x-api-key": "sk-proj-yvBP1TgF5S6E1EWMNnF2JzbXSUIu6gmX",
    "genai_model_name": "mistral-7b-instruct-v0.3", "genai_backend_name": "inference/vllm-mistral/route/0",
    "genai_tokens_input": 391, "genai_tokens_output": 345,
}

# Per key: the usual values first (most lines), then values of other JSON types.
_ODD = {
    "response_code": ([200, 200, 401, 403, 500], [200.0, "200", True, None, "-", _HUGE, -1, 1000, 0]),
    "duration": ([4545, 12], [12.5, 0.0, -0.0, "-", None, "12", True, _HUGE, 1e308, 1e-300]),
    "bytes_received": ([1848], [1.5, "-", None, -1, True, _U64, _HUGE, "7"]),
    "bytes_sent": ([1789], [0, "-", None, 2.0, False]),
    "genai_tokens_input": ([391, 0], ["-", None, 3.0, False, _U64, _HUGE, "7", -3]),
    "genai_tokens_output": ([345, 1], ["-", None, 3.5, True, 2 ** 63, "x"]),
    "x-envoy-upstream-service-time": (["4543"], ["-", None, 12, 1.5, "abc", "1e400", "-0", True]),
    "start_time": ([None], [1794873600, 1794873600.5, 1794873600123, "1794873600"]),
}


@st.composite
def _lines(draw):
    """A chunk of lines: mostly the usual values, some keys of other types (drawn per line)."""
    n = draw(st.integers(min_value=1, max_value=40))
    odd_share = draw(st.sampled_from([0.0, 0.05, 0.3, 1.0]))
    models = ["m1", "m2", "m3"]
    out = []
    for i in range(n):
        line = dict(_LINE)
        line["start_time"] = f"2026-11-01T00:{i // 60:02d}:{i % 60:02d}.{draw(st.integers(0, 999)):03d}Z"
        line["genai_model_name"] = draw(st.sampled_from(models))
        line["x-api-key"] = draw(st.sampled_from(["sk-a", "sk-b", "-"]))
        for key, (usual, odd) in _ODD.items():
            if draw(st.floats(0, 1)) < odd_share:
                line[key] = draw(st.sampled_from(odd))
            elif usual != [None]:
                line[key] = draw(st.sampled_from(usual))
        if draw(st.floats(0, 1)) < odd_share / 4:
            del line[draw(st.sampled_from(sorted(_ODD)))]  # an absent key: another key set
        out.append(_dumps(line))
    return out


def _dumps(line: dict) -> bytes:
    return json.dumps(line, separators=(",", ":")).encode()  # (orjson refuses ints past 64 bits)


def _parse(records: list[bytes], origin: str = "t") -> EventBatch:
    parser = EnvoyJsonParser(hasher=Hasher(b"vouch-test-key"))
    parser.stamp_ids = True
    return parser.parse_batch(records, origin, 1, [])


def _check_vouches(batch: EventBatch) -> int:
    """Every vouched column's values are of the vouched types; returns how many columns of parts with
    events were vouched (a chunk whose every line is a dead letter leaves an empty part, which a concat
    drops)."""
    checked = 0
    for p in batch.layout()[0]:
        if type(p) is Columns and p.types and p.n:
            for f, vouch in p.types.items():
                found = frozenset(map(type, p.values(f)))
                assert found <= vouch, (f, found, vouch)
                checked += 1
    return checked


def _stripped(batch: EventBatch) -> EventBatch:
    """The same events, with the same parts and order but no vouch."""
    parts, order = batch.layout()
    bare = [Columns(p.fields, dict(p._cols), p.n, dict(p._lazy) if p._lazy else None)
            if type(p) is Columns else p for p in parts]
    return EventBatch._of(bare, None if order is None else list(order))


_CONFIG = load_config(None, env={"RAMPARTS_HASH_KEY": "vouch-test-key"})


def _detect(batches: list[EventBatch]) -> tuple[list, list]:
    """Every detector over ``batches`` in turn: the alerts (wire form) and the state after."""
    pipeline, state = Pipeline(build_detectors(_CONFIG)), DictState()
    alerts = []
    for b in batches:
        alerts += [alert_to_wire(a) for a in pipeline.process_batch(b, state)]
    return alerts, sorted(state.data.items())


def _views(batch: EventBatch, extra: list[dict]) -> list[EventBatch]:
    """The batch as detection and the hop see it: whole, sorted, selections, a pool, with parts of dicts."""
    n = len(batch)
    out = [batch, batch.sorted_by_time(), batch.select(np.arange(n)[::2]), batch.select([])]
    if n > 2:
        out.append(batch.select(np.arange(n)[1:]).pooled())
    out.append(EventBatch.concat([batch, EventBatch(extra)]).sorted_by_time())
    return out


_GPU = [{"kind": "gpu", "ts": 1_793_491_200_000_000_000, "source": "dcgm", "node": "n1", "gpu_uuid": "g",
         "util_pct": 50.0, "power_w": 100, "processes": None, "namespace": None, "pod": None}]
_REQUEST_DICT = [{"kind": "request", "ts": 1_793_491_200_000_000_001, "source": "kong", "principal": "p",
                  "src_ip": "10.0.0.1", "model": "m1", "path": "/v1", "status": 200.0, "latency_ms": 3,
                  "tokens_in": True, "tokens_out": None}]


_DEAD = _dumps({**_LINE, "genai_tokens_output": "x"})  # a dead letter: tokens_out is not an integer


@settings(max_examples=60, deadline=None, derandomize=True, database=None)
@given(_lines(), _lines(), st.sampled_from([_GPU, _REQUEST_DICT]))
@example(first=[_DEAD, _DEAD], second=[_dumps(_LINE)], extra=_GPU)  # every line of a chunk a dead letter
def test_a_vouch_holds_and_detection_reads_the_same_as_without_it(first, second, extra):
    a, b = _parse(first, "a"), _parse(second, "b")
    batch = EventBatch.concat([a, b])
    assert _check_vouches(batch) == sum(_check_vouches(x) for x in (a, b))
    views = _views(batch, extra)
    for v in views:
        _check_vouches(v)
    # the events hop: what a message vouches for holds of what it carries
    hopped = []
    for v in views:
        try:
            message = wire.encode(v)
        except orjson.JSONEncodeError:  # an int past 64 bits: no message either way
            continue
        back = wire.decode(message)
        _check_vouches(back)
        hopped.append(back)
    assert _detect(views + hopped) == _detect([_stripped(v) for v in views + hopped])


@settings(max_examples=40, deadline=None, derandomize=True, database=None)
@given(_lines())
def test_typed_columns_give_the_exact_types_and_the_same_arrays_as_without_a_vouch(lines):
    batch = _parse(lines)
    fields = ("ts", "status", "latency_ms", "tokens_in", "tokens_out")
    for view in _views(batch, _REQUEST_DICT):
        vouched, bare = TypedColumns(view, ("request",)), TypedColumns(_stripped(view), ("request",))
        for f in fields:
            exact = frozenset(map(type, bare.values(f)))
            assert vouched.types(f) == exact == bare.types(f)
            for within in (frozenset((int,)), frozenset((int, _NONE)), frozenset((int, float, _NONE))):
                got = vouched.types(f, within)
                assert exact <= got and within.issuperset(got) == within.issuperset(exact)
            for name in ("ints", "floats"):
                x, y = getattr(vouched, name)(f), getattr(bare, name)(f)
                assert (x is None) == (y is None)
                if x is not None:
                    assert x.dtype == y.dtype and x.tobytes() == y.tobytes()


def test_a_vouch_of_ints_and_none_on_a_selection_without_none_is_read_exactly():
    b = EventBatch.from_columns(("kind", "n"), {"kind": ["r"] * 4, "n": [1, None, 3, 4]},
                                types={"n": frozenset((int, _NONE))})
    s = b.select([0, 2, 3])
    c = TypedColumns(s, ("r",))
    assert c.vouched("n") == {int, _NONE}
    assert c.types("n") == {int}  # exact: the scan, since the vouch is two types
    assert c.types("n", frozenset((int, _NONE))) == {int, _NONE}  # the vouch, which that test reads alike
    assert c.ints("n").tolist() == [1, 3, 4] and c.floats("n").tolist() == [1.0, 3.0, 4.0]
    one = TypedColumns(EventBatch.from_columns(("kind", "n"), {"kind": ["r"], "n": [7]},
                                               types={"n": frozenset((int,))}).select([]), ("r",))
    assert one.types("n") == frozenset()  # no values: no types, whatever the vouch
    # a part of dicts that may hold the kind vouches nothing; one of another kind is left out
    mixed = EventBatch.concat([b, EventBatch([{"kind": "r", "n": "x"}])])
    assert TypedColumns(mixed, ("r",)).vouched("n") is None
    assert TypedColumns(mixed, ("r",)).types("n", frozenset((int, _NONE))) == {int, _NONE, str}
    other = EventBatch.concat([b, EventBatch([{"kind": "gpu", "n": "x"}])])
    assert TypedColumns(other, ("r",)).vouched("n") == {int, _NONE}
    # take (pooled) keeps the vouch
    assert b.select([3, 0]).pooled().layout()[0][0].types == {"n": frozenset((int, _NONE))}


def test_the_parser_vouches_one_type_for_a_column_of_numbers_only():
    lines = [_dumps(dict(_LINE, genai_tokens_input=i)) for i in range(5)]
    lines.append(_dumps(dict(_LINE, genai_tokens_output="-")))
    (part,), _ = _parse(lines).layout()
    assert part.types["status"] == {int} and part.types["latency_ms"] == {float} and part.types["ts"] == {int}
    assert part.types["tokens_in"] == {int} and part.types["tokens_out"] == {int, _NONE}
    # through the hop: a float vouch goes with null (orjson writes NaN as null)
    back = wire.decode(wire.encode(_parse(lines)))
    (hopped,), _ = back.layout()
    assert hopped.types["status"] == {int} and hopped.types["latency_ms"] == {float, _NONE}
