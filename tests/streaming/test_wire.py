"""The events topics' messages (streams/wire.py): columns on the wire, the same events back."""

from __future__ import annotations

import numpy as np
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ramparts.events import EventBatch, LineIds
from ramparts.streams import wire
from ramparts.streams.app import EventParts, group_by_partition
from ramparts.streams.keys import partition_for, route_key
from ramparts.streams.topics import project

PROPERTY = settings(max_examples=80, deadline=None, derandomize=True, database=None)

_event = st.fixed_dictionaries({
    "kind": st.sampled_from(["request", "prediction", "runtime", "gpu", "workload", "mystery"]),
    "ts": st.integers(min_value=0, max_value=2**62),
    "seq": st.integers(min_value=-2**63, max_value=2**63 - 1),
}, optional={
    "principal": st.sampled_from([None, "alice", "bob"]), "status": st.sampled_from([None, 200, 401]),
    "src_ip": st.sampled_from([None, "", "192.0.2.1", "192.0.2.2"]), "pod": st.sampled_from([None, "p0", "p1"]),
    "namespace": st.sampled_from([None, "ns"]), "gpu_uuid": st.sampled_from([None, "GPU-1"]),
    "node": st.sampled_from([None, "", "n1"]), "hostname": st.sampled_from(["h1"]),
    "model": st.sampled_from([None, "", "a", "b"]), "input": st.sampled_from([[1.5, 2], {"x": [1]}, "t"]),
    # equal values of other types: a message must give each back as it was
    "flag": st.sampled_from([1, 1.0, True, "1", None]),
})


def _as_parsed(events: list[dict], dict_every: int) -> EventBatch:
    """``events`` as the parse stage holds them: runs of events with the same keys as columns
    (a columnar parser's chunks), every ``dict_every``-th run as dicts (the other parsers, joins)."""
    parts, start, run = EventParts(), 0, 0
    for i in range(1, len(events) + 1):
        if i == len(events) or events[i].keys() != events[start].keys():
            rows = events[start:i]
            if dict_every and run % dict_every == 0:
                parts.extend(rows)
            else:
                fields = tuple(rows[0])
                parts.add_batch(EventBatch.from_columns(fields, {f: [e[f] for e in rows] for f in fields}, len(rows)))
            start, run = i, run + 1
    return parts.batch()


def _read(payloads: list[bytes]) -> list[dict]:
    return [e for p in payloads for e in wire.decode(p).events]


def _json(events: list[dict]) -> bytes:
    return orjson.dumps(events, option=orjson.OPT_SORT_KEYS)


def _as_version_2(payload: bytes) -> bytes:
    """A message as a worker of version 2 wrote it: every column a list, none under ``same``."""
    doc = orjson.loads(payload)
    for part in doc["parts"]:
        for f, v in part.pop("same", {}).items():
            part["cols"][f] = [v] * part["n"]
    doc["v"] = 2
    return orjson.dumps(doc)


@PROPERTY
@given(events=st.lists(_event, max_size=80), dict_every=st.sampled_from([0, 1, 2, 3]),
       partitions=st.integers(min_value=1, max_value=7), per=st.sampled_from([1, 3, 500]),
       route=st.sampled_from(["entity", "model"]))
def test_messages_carry_the_same_events_to_the_same_partitions_as_the_dicts_did(events, dict_every, partitions,
                                                                                  per, route):
    batch = _as_parsed(events, dict_every)
    assert batch.events == events
    assert wire.route_keys(batch, route) == [route_key(e, route) for e in events]
    got = wire.messages(batch, partitions, per, route)
    want = group_by_partition(events, partitions, route)
    assert set(got) == set(want)
    for p, payloads in got.items():
        assert all(len(wire.decode(m)) <= per for m in payloads)
        # orjson tells 1, 1.0 and True apart, which == does not
        assert _json(_read(payloads)) == _json(want[p])
        assert _json(_read([_as_version_2(m) for m in payloads])) == _json(want[p])


@PROPERTY
@given(events=st.lists(_event, max_size=60), dict_every=st.sampled_from([0, 2]))
def test_the_model_route_keeps_only_its_fields_of_a_selection(events, dict_every):
    fields = ("input", "kind", "model", "ts")
    batch = _as_parsed(events, dict_every)
    wanted = batch.select(batch.indices_where("kind", "request", "prediction"))
    got = wire.messages(wanted, 3, 4, "model", fields)
    routed = [e for e in events if e["kind"] in ("request", "prediction")]
    for p, group in group_by_partition(routed, 3, "model").items():
        assert _read(got[p]) == project(group, fields)


def _messages_by_selection(batch, partitions, per, route, fields):
    """The reference: each message ``encode`` of a selection of the batch (the path before the
    parts were cut by bisection, ``wire._encode_selected``)."""
    keys = wire.route_keys(batch, route)
    return {p: [wire.encode(batch.select(idx[i:i + per]), fields) for i in range(0, len(idx), per)]
            for p, idx in wire.partition_groups(keys, partitions).items()}


@PROPERTY
@given(events=st.lists(_event, max_size=80), dict_every=st.sampled_from([1, 2, 3]),
       partitions=st.integers(min_value=1, max_value=5), per=st.sampled_from([1, 3, 500]),
       how=st.sampled_from(["whole", "selected", "sorted"]),
       project_to=st.sampled_from([None, ("kind", "model", "ts")]))
def test_messages_cut_from_the_parts_are_the_bytes_of_each_selection_encoded(events, dict_every, partitions, per,
                                                                              how, project_to):
    batch = _as_parsed(events, dict_every)
    if how == "selected":  # the model route's input: a selection in increasing order
        batch = batch.select(batch.indices_where("kind", "request", "prediction", "gpu"))
    elif how == "sorted":  # an order that is not increasing: encoded through the selection's own order
        batch = batch.sorted_by_time()
    for route in ("entity", "model"):
        assert wire.messages(batch, partitions, per, route, project_to) == _messages_by_selection(
            batch, partitions, per, route, project_to)


def test_a_batch_in_another_order_than_its_parts_keeps_its_order():
    batch = _as_parsed([{"kind": "gpu", "ts": 3}, {"kind": "gpu", "ts": 1}, {"kind": "gpu", "ts": 2}], 0)
    s = batch.sorted_by_time()
    assert wire.decode(wire.encode(s)).values("ts") == [1, 2, 3]


def test_columns_come_back_as_columns_and_version_1_arrays_as_dicts():
    batch = _as_parsed([{"kind": "gpu", "ts": 1, "node": "n"}, {"kind": "gpu", "ts": 2, "node": "m"}], 0)
    doc = orjson.loads(wire.encode(batch))
    assert doc == {"v": 6, "parts": [{"n": 2, "fields": ["kind", "ts", "node"],
                                      "cols": {"ts": [1, 2], "node": ["n", "m"]}, "same": {"kind": "gpu"}}]}
    back = wire.decode(wire.encode(batch))
    assert back.values("node") == ["n", "m"] and not back.holds_dicts  # no dict made to read a column
    old = orjson.dumps([{"kind": "gpu", "ts": 1, "node": "n"}])
    assert wire.decode(old).events == [{"kind": "gpu", "ts": 1, "node": "n"}]
    assert len(wire.decode(orjson.dumps({"v": 2, "parts": [{"n": 0, "fields": [], "cols": {}}]}))) == 0


def test_a_column_of_one_text_goes_once_and_comes_back_whole():
    rows = [{"kind": "request", "ts": i, "method": "POST", "flag": 1, "model": None, "path": "/a" if i else "/b"}
            for i in range(20)]
    batch = _as_parsed(rows, 0)
    doc = orjson.loads(wire.encode(batch))
    part = doc["parts"][0]
    # texts and None: once; numbers (1, 1.0 and True are equal) and columns of several values: as lists
    assert part["same"] == {"kind": "request", "method": "POST", "model": None}
    assert set(part["cols"]) == {"ts", "flag", "path"}
    assert part["fields"] == ["kind", "ts", "method", "flag", "model", "path"]
    back = wire.decode(wire.encode(batch))
    assert back.events == rows and list(back.events[0]) == list(rows[0])  # the fields' order too
    # the share of one partition of a part that is not all one text, but is in that share
    mixed = _as_parsed([{"kind": "request", "ts": i, "principal": "a" if i % 2 else "b"} for i in range(8)], 0)
    payloads = wire.messages(mixed, 64, 500)
    assert sorted(orjson.loads(m)["parts"][0]["same"]["principal"] for ms in payloads.values() for m in ms) == \
        ["a", "b"]
    assert sorted((e["ts"], e["principal"]) for ms in payloads.values() for e in _read(ms)) == \
        [(i, "a" if i % 2 else "b") for i in range(8)]


@pytest.mark.parametrize("value", [
    b"", b"not json", b"42", b'["not an event"]', b'{"v": 7, "parts": []}', b'{"parts": []}',
    b'{"v": 2}', b'{"v": 2, "parts": [7]}', b'{"v": 2, "parts": [{"stuff": []}]}',
    b'{"v": 2, "parts": [{"events": [1]}]}',
    b'{"v": 2, "parts": [{"n": 2, "fields": ["kind"], "cols": {"kind": ["gpu"]}}]}',
    b'{"v": 2, "parts": [{"n": 1, "fields": ["kind"], "cols": {"ts": [1]}}]}',
    b'{"v": 2, "parts": [{"n": 1, "fields": ["kind"], "cols": {"kind": ["gpu"], "ts": [1]}}]}',
    b'{"v": 2, "parts": [{"n": -1, "fields": [], "cols": {}}]}',
    b'{"v": 3, "parts": [{"n": 1, "fields": ["kind"], "cols": {"kind": ["gpu"]}, "same": {"kind": "gpu"}}]}',
    b'{"v": 3, "parts": [{"n": 1, "fields": ["kind"], "cols": {}, "same": ["gpu"]}]}',
    b'{"v": 3, "parts": [{"n": 1, "fields": ["kind"], "cols": {}, "same": {"ts": 1}}]}',
    b'{"v": 3, "parts": [{"n": 1, "fields": ["kind"], "cols": {}, "same": {"kind": "gpu"}, "codes": {}}]}',
    b'{"v": 3, "parts": [{"n": 2, "fields": ["kind", "ts"], "cols": {"kind": ["gpu", "gpu"]}, "same": {"ts": 1}}]}',
    b'{"v": 3, "parts": [{"n": 2, "fields": ["kind"], "cols": {}, "same": {"kind": ["gpu"]}}]}',
    # version 4's lines: only there, of n ints, with an origin and a suffix, a field in one place only
    b'{"v": 3, "parts": [{"n": 1, "fields": ["id"], "cols": {}, "lines": {"id": {"origin": "o", "suffix": "", '
    b'"lines": [1]}}}]}',
    b'{"v": 4, "parts": [{"n": 2, "fields": ["id"], "cols": {}, "lines": {"id": {"origin": "o", "suffix": "", '
    b'"lines": [1]}}}]}',
    b'{"v": 4, "parts": [{"n": 1, "fields": ["id"], "cols": {}, "lines": {"id": {"origin": "o", "suffix": "", '
    b'"lines": ["1"]}}}]}',
    b'{"v": 4, "parts": [{"n": 1, "fields": ["id"], "cols": {}, "lines": {"id": {"origin": 1, "suffix": "", '
    b'"lines": [1]}}}]}',
    b'{"v": 4, "parts": [{"n": 1, "fields": ["id"], "cols": {}, "lines": {"id": {"origin": "o", "lines": [1]}}}]}',
    b'{"v": 4, "parts": [{"n": 2, "fields": ["id"], "cols": {}, "lines": {"id": {"origin": "o", "suffix": "", '
    b'"from": 1, "to": 2}}}]}',
    b'{"v": 4, "parts": [{"n": 1, "fields": ["id"], "cols": {"id": ["o:1"]}, "lines": {"id": {"origin": "o", '
    b'"suffix": "", "lines": [1]}}}]}',
    b'{"v": 4, "parts": [{"n": 1, "fields": ["id"], "cols": {}, "lines": {"ts": {"origin": "o", "suffix": "", '
    b'"lines": [1]}}}]}',
    b'{"v": 4, "parts": [{"n": 1, "fields": ["id"], "cols": {}, "lines": [1]}]}',
    # version 5's types: only there, an object of lists of the names orjson reads back, for columns of cols
    b'{"v": 4, "parts": [{"n": 1, "fields": ["ts"], "cols": {"ts": [1]}, "types": {"ts": ["int"]}}]}',
    b'{"v": 5, "parts": [{"n": 1, "fields": ["ts"], "cols": {"ts": [1]}, "types": [["int"]]}]}',
    b'{"v": 5, "parts": [{"n": 1, "fields": ["ts"], "cols": {"ts": [1]}, "types": {"ts": "int"}}]}',
    b'{"v": 5, "parts": [{"n": 1, "fields": ["ts"], "cols": {"ts": [1]}, "types": {"ts": ["list"]}}]}',
    b'{"v": 5, "parts": [{"n": 1, "fields": ["ts"], "cols": {"ts": [1]}, "types": {"ts": [["int"]]}}]}',
    b'{"v": 5, "parts": [{"n": 1, "fields": ["ts"], "cols": {"ts": [1]}, "types": {"n": ["int"]}}]}',
    b'{"v": 5, "parts": [{"n": 2, "fields": ["kind", "ts"], "cols": {"ts": [1, 2]}, "same": {"kind": "gpu"}, '
    b'"types": {"kind": ["str"]}}]}',
])
def test_what_is_not_a_batch_of_events_is_refused(value):
    with pytest.raises(ValueError):
        wire.decode(value)


# Key fields of other values than texts (not what the parsers write): equal values of other types, one
# unhashable; the partitions must still be those of each event's key text.
_odd_event = st.fixed_dictionaries({
    "kind": st.sampled_from(["request", "prediction", "gpu", "workload", "runtime", "mystery"]),
}, optional={
    "principal": st.sampled_from([None, "alice", "1", 1, 1.0, True, ("t",)]),
    "status": st.sampled_from([None, 200, 401, 401.0, "401", [401]]),
    "src_ip": st.sampled_from([None, "", "192.0.2.1", 0, 1]), "node": st.sampled_from([None, "", "n1", 1, 1.0]),
    "gpu_uuid": st.sampled_from([None, "GPU-1", 1]), "model": st.sampled_from([None, "", "a", "1", 1, True]),
    "pod": st.sampled_from([None, "p0"]),
})


@PROPERTY
@given(events=st.lists(st.one_of(_event, _odd_event), max_size=60), dict_every=st.sampled_from([0, 1, 3]),
       partitions=st.sampled_from([1, 3, 7, 64]), route=st.sampled_from(["entity", "model"]),
       how=st.sampled_from(["whole", "selected", "sorted"]),
       kinds=st.sampled_from([None, ("request", "prediction"), ("prediction", "gpu", "runtime")]))
def test_route_partitions_are_those_of_each_events_key(events, dict_every, partitions, route, how, kinds):
    batch = _as_parsed(events, dict_every)
    if how == "selected":
        batch = batch.select(batch.indices_where("kind", "request", "prediction", "gpu"))
    elif how == "sorted":
        batch = batch.sorted_by_time() if all("ts" in e for e in events) else batch.select(range(len(batch))[::-1])
    want = [-1 if (kinds is not None and e["kind"] not in kinds) or (k := route_key(e, route)) is None
            else partition_for(k, partitions) for e in batch.events]
    got = wire.route_partitions(batch, partitions, route, kinds)
    assert got.tolist() == want
    groups = wire.groups_of(got)
    assert list(groups) == list(dict.fromkeys(p for p in want if p >= 0))  # by first event, as partition_groups
    assert groups == {p: [i for i, q in enumerate(want) if q == p] for p in set(want) if p >= 0}


@PROPERTY
@given(first=st.lists(st.one_of(_event, _odd_event), max_size=40),
       then=st.lists(st.one_of(_event, _odd_event), max_size=40), partitions=st.sampled_from([1, 3, 7]),
       route=st.sampled_from(["entity", "model"]), bound=st.sampled_from([1, 2, 3, 1 << 16]))
def test_route_partitions_kept_across_batches_are_those_of_each_events_key(first, then, partitions, route, bound):
    # what wire._keyed keeps of the values seen (a memo across batches): whether a value was
    # seen in an earlier batch, or forgotten when the memo overflowed, changes no partition
    saved = wire._KEYED_MAX
    wire._KEYED.clear()
    wire._FAILED.clear()
    try:
        wire._KEYED_MAX = bound
        for events in (first, then, first + then, first):
            batch = _as_parsed(events, 0)
            want = [-1 if (k := route_key(e, route)) is None else partition_for(k, partitions) for e in events]
            assert wire.route_partitions(batch, partitions, route).tolist() == want
            assert all(len(m) <= max(bound, len(first) + len(then)) for m in wire._KEYED.values())  # bounded
    finally:
        wire._KEYED_MAX = saved
        wire._KEYED.clear()
        wire._FAILED.clear()


@PROPERTY
@given(parts=st.lists(st.integers(min_value=-1, max_value=40), max_size=300))
def test_groups_of_keeps_each_partitions_events_in_order_and_the_partitions_by_first_event(parts):
    got = wire.groups_of(np.array(parts, dtype=np.int64))
    want: dict[int, list[int]] = {}
    for i, p in enumerate(parts):
        if p >= 0:
            want.setdefault(p, []).append(i)
    assert list(got.items()) == list(want.items())


@PROPERTY
@given(events=st.lists(st.one_of(_event, _odd_event), max_size=60), dict_every=st.sampled_from([0, 1, 3]),
       per=st.sampled_from([1, 3, 500]), project_to=st.sampled_from([None, ("kind", "model", "ts")]))
def test_the_model_route_of_some_kinds_is_the_bytes_of_their_selection(events, dict_every, per, project_to):
    # what the parse stage sends on events.model: no selection made first (streams/app.py)
    batch = _as_parsed(events, dict_every)
    kinds = ("request", "prediction")
    wanted = batch.select(batch.indices_where("kind", *kinds))
    assert wire.messages(batch, 5, per, "model", project_to, kinds=kinds) == _messages_by_selection(
        wanted, 5, per, "model", project_to)
    assert wire.messages(batch, 5, per, "model", project_to, kinds=kinds) == wire.messages(
        wanted, 5, per, "model", project_to, keys=wire.route_keys(wanted, "model"))


@PROPERTY
@given(events=st.lists(st.one_of(_event, _odd_event), max_size=60), dict_every=st.sampled_from([0, 1, 3]),
       partitions=st.sampled_from([1, 4, 64]), per=st.sampled_from([1, 3, 500]),
       how=st.sampled_from(["whole", "selected"]))
def test_a_batch_of_few_events_keyed_one_by_one_gives_the_messages_of_the_partitions_path(events, dict_every,
                                                                                         partitions, per, how):
    batch = _as_parsed(events, dict_every)
    if how == "selected":
        batch = batch.select(batch.indices_where("kind", "request", "prediction", "gpu"))
    few = wire._FEW
    try:
        got = {}
        for threshold in (0, 10**9):  # every batch through route_partitions, then every one keyed per event
            wire._FEW = threshold
            got[threshold] = [wire.messages(batch, partitions, per, "entity"),
                              wire.messages(batch, partitions, per, "model", ("kind", "model", "ts"),
                                            kinds=("request", "prediction"))]
    finally:
        wire._FEW = few
    assert got[0] == got[10**9]


@PROPERTY
@given(events=st.lists(_event, max_size=80), dict_every=st.sampled_from([0, 1, 3]),
       partitions=st.integers(min_value=1, max_value=5), per=st.sampled_from([1, 3, 500]),
       how=st.sampled_from(["whole", "selected", "sorted"]), route=st.sampled_from(["entity", "model"]),
       max_bytes=st.integers(min_value=1, max_value=3000))
def test_a_message_over_max_bytes_is_cut_in_halves_and_the_events_stay_in_order(events, dict_every, partitions,
                                                                                  per, how, route, max_bytes):
    batch = _as_parsed(events, dict_every)
    if how == "selected":
        batch = batch.select(batch.indices_where("kind", "request", "prediction", "gpu"))
    elif how == "sorted":
        batch = batch.sorted_by_time()
    whole = wire.messages(batch, partitions, per, route)
    # far under the bound: the same bytes as without it
    assert wire.messages(batch, partitions, per, route, max_bytes=1 << 30) == whole
    got = wire.messages(batch, partitions, per, route, max_bytes=max_bytes)
    assert set(got) == set(whole)
    for p, payloads in got.items():
        assert all(len(m) <= max_bytes or len(wire.decode(m)) == 1 for m in payloads)
        assert all(len(wire.decode(m)) <= per for m in payloads)
        assert _json(_read(payloads)) == _json(_read(whole[p]))  # every event, once, in order
        if all(len(m) <= max_bytes for m in whole[p]):
            assert payloads == whole[p]


def _with_lazy_ids(batch: EventBatch, gaps: int, suffix: str) -> EventBatch:
    """``batch`` with an ``id`` field in each columns part made as the parsers make it: a lazy
    field of line numbers (a range, or with ``gaps`` a list that skips lines), ``LineIds``."""
    parts = []
    for k, p in enumerate(batch.layout()[0]):
        if type(p) is list:
            parts.append(EventBatch([dict(e, id=f"d{k}:{i}") for i, e in enumerate(p)]))
            continue
        lines = range(3, 3 + p.n) if not gaps else [3 + i + i // gaps for i in range(p.n)]
        parts.append(EventBatch.from_columns(p.fields + ("id",), dict(p.cols), p.n,
                                             {"id": (LineIds(f"t:{k}:9(src)", suffix), lines)}))
    return EventBatch.concat(parts)


def _as_version_3(batch: EventBatch) -> EventBatch:
    """The same events with their ids made (texts): what a worker of version 3 sent."""
    for p in batch.layout()[0]:
        if type(p) is not list:
            p.cols
    return batch


@PROPERTY
@given(events=st.lists(_event, max_size=80), dict_every=st.sampled_from([0, 2]),
       partitions=st.integers(min_value=1, max_value=5), per=st.sampled_from([1, 3, 500]),
       how=st.sampled_from(["whole", "selected", "sorted"]), gaps=st.sampled_from([0, 1, 3]),
       suffix=st.sampled_from(["", ".0"]), project_to=st.sampled_from([None, ("kind", "id", "ts")]))
def test_ids_go_as_their_line_numbers_and_come_back_the_same_texts_made_when_read(events, dict_every, partitions,
                                                                                   per, how, gaps, suffix,
                                                                                   project_to):
    def batch_of():
        b = _with_lazy_ids(_as_parsed(events, dict_every), gaps, suffix)
        if how == "selected":
            b = b.select(b.indices_where("kind", "request", "prediction", "gpu"))
        elif how == "sorted":
            b = b.sorted_by_time()
        return b

    for route in ("entity", "model"):
        got = wire.messages(batch_of(), partitions, per, route, project_to)
        old = wire.messages(_as_version_3(batch_of()), partitions, per, route, project_to)  # ids as texts
        assert set(got) == set(old)
        for p, payloads in got.items():
            assert _json(_read(payloads)) == _json(_read(old[p]))
            if how != "sorted":  # read back as lines, not made: no id text until read
                for m in payloads:
                    for q in wire.decode(m).layout()[0]:
                        assert type(q) is list or "id" not in q.fields or "id" in q._lazy
        # a message of version 3 (ids as texts) still reads: the same events
        for p, payloads in old.items():
            assert _json(_read([m.replace(b'{"v":6,', b'{"v":3,', 1) for m in payloads])) == _json(_read(payloads))


def test_consecutive_lines_go_as_a_range_and_others_as_a_list():
    b = EventBatch.from_columns(("kind", "ts", "id"), {"kind": ["gpu"] * 6, "ts": list(range(6))}, 6,
                                {"id": (LineIds("t:0:5"), range(1, 7))})
    whole = orjson.loads(wire.encode(b))["parts"][0]
    assert whole["lines"] == {"id": {"origin": "t:0:5", "suffix": "", "from": 1, "to": 7}}
    assert "id" not in whole["cols"]
    some = orjson.loads(wire.messages(b.select([1, 2, 3]), 1, 500)[0][0])["parts"][0]["lines"]["id"]
    assert (some["from"], some["to"]) == (2, 5)
    gaps = orjson.loads(wire.messages(b.select([0, 2, 5]), 1, 500)[0][0])["parts"][0]["lines"]["id"]
    assert gaps["lines"] == [1, 3, 6]
    back = wire.decode(wire.encode(b.select([0, 2, 5])))
    assert back.values("id") == ["t:0:5:1", "t:0:5:3", "t:0:5:6"]
    # ids already made (a store read them): they go as texts, as before
    b.values("id")
    assert orjson.loads(wire.encode(b))["parts"][0]["cols"]["id"][0] == "t:0:5:1"


def _as_raw_messages(events: list[dict], sizes: list[int], gaps: int, vouch_every: int) -> EventBatch:
    """``events`` as the parse stage holds them when each raw message's lines are a part of their own:
    each run of events with the same keys cut into parts of ``sizes`` (taken in turn), each with lazy
    ids of its own origin (``LineIds``; with ``gaps`` a list that skips lines, else a range), every
    ``vouch_every``-th vouching for the types of its ``ts`` and ``seq`` (0: none does)."""
    parts, start, k = [], 0, 0
    for i in range(1, len(events) + 1):
        if i < len(events) and events[i].keys() == events[start].keys():
            continue
        run, at = events[start:i], 0
        while at < len(run):
            rows = run[at:at + sizes[k % len(sizes)]]
            fields = tuple(rows[0])
            lines = range(1, 1 + len(rows)) if not gaps else [1 + j + j // gaps for j in range(len(rows))]
            types = {"ts": frozenset({int}), "seq": frozenset({int})} if vouch_every and k % vouch_every == 0 else None
            parts.append(EventBatch.from_columns(fields + ("id",), {f: [e[f] for e in rows] for f in fields},
                                                 len(rows), {"id": (LineIds(f"raw:0:{k}", ".0" if k % 3 else ""),
                                                                    lines)}, types=types))
            at, k = at + len(rows), k + 1
        start = i
    return EventBatch.concat(parts)


@PROPERTY
@given(events=st.lists(_event, max_size=80), sizes=st.lists(st.integers(min_value=1, max_value=9), min_size=1,
                                                             max_size=4),
       gaps=st.sampled_from([0, 2]), vouch_every=st.sampled_from([0, 1, 2]),
       partitions=st.integers(min_value=1, max_value=4), per=st.sampled_from([2, 7, 500]),
       route=st.sampled_from(["entity", "model"]), project_to=st.sampled_from([None, ("kind", "id", "ts", "seq")]))
def test_parts_of_several_raw_messages_go_as_one_and_come_back_the_same_events(events, sizes, gaps, vouch_every,
                                                                                partitions, per, route, project_to):
    # runs of up to 12 events with the same keys (a raw message's lines are mostly of one shape)
    events = [dict.fromkeys(sorted(keys)) | e for i in range(0, len(events), 12)
              for keys in [set().union(*events[i:i + 12])] for e in events[i:i + 12]]
    want_batch = _as_raw_messages(events, sizes, gaps, vouch_every)
    want = group_by_partition(want_batch.events, partitions, route)  # the ids made here, as texts
    got = wire.messages(_as_raw_messages(events, sizes, gaps, vouch_every), partitions, per, route, project_to)
    assert set(got) == set(want)
    for p, payloads in got.items():
        assert _json(_read(payloads)) == _json(project(want[p], project_to) if project_to else want[p])
        for m in payloads:
            back = wire.decode(m)
            parts = back.layout()[0]
            # joined: no two parts in a row of the same fields; the ids not made until read
            assert all(a.fields != b.fields for a, b in zip(parts, parts[1:]))
            assert all("id" in q._lazy for q in parts if "id" in q.fields)
            for q in parts:
                for f, types in (q.types or {}).items():  # a vouch holds of every value
                    assert {type(v) for v in q.values(f)} <= types
                if vouch_every == 1 and "seq" in q.fields:  # every part vouched: so does the joined one
                    assert q.types["seq"] == frozenset({int})
            # what is taken of a joined part, or read of one event, has the ids it had
            ids = back.values("id")
            if len(back) > 1:
                assert back.select([len(back) - 1, 0]).values("id") == [ids[-1], ids[0]]
                assert back[len(back) - 1]["id"] == ids[-1]


def test_a_joined_part_keeps_a_text_common_to_its_parts_once_and_the_types_they_all_vouch_for():
    def part(k, n, path, vouch_flag):
        types = {"ts": frozenset({int}), **({"flag": frozenset({int, type(None)})} if vouch_flag else {})}
        return EventBatch.from_columns(
            ("kind", "ts", "path", "flag", "id"),
            {"kind": ["request"] * n, "ts": list(range(n)), "path": [path] * n, "flag": [1] * (n - 1) + [None]},
            n, {"id": (LineIds(f"raw:1:{k}"), range(5, 5 + n))}, types=types)

    batch = EventBatch.concat([part(0, 3, "/a", True), part(1, 2, "/a", False), part(2, 4, "/b", True)])
    doc = orjson.loads(wire.encode(batch))
    assert doc["v"] == 6 and len(doc["parts"]) == 1
    joined = doc["parts"][0]
    assert joined["n"] == 9 and joined["same"] == {"kind": "request"}
    assert joined["cols"]["path"] == ["/a"] * 5 + ["/b"] * 4  # one text in each part, not the same one
    # flag: one part vouches for nothing; path: each part one text (under same), the type of that text
    assert joined["types"] == {"ts": ["int"], "path": ["str"]}
    assert joined["lines"] == {"id": {"runs": [{"origin": f"raw:1:{k}", "suffix": "", "from": 5, "to": 5 + n}
                                               for k, n in enumerate((3, 2, 4))]}}
    back = wire.decode(wire.encode(batch))
    assert back.events == batch.events
    (q,) = back.layout()[0]
    assert q.types == {"ts": frozenset({int}), "path": frozenset({str})} and q.same("kind") == ("request",)
    # a part whose path is a text and another's the same text: once; vouched types of a text column
    # with a part of one text (written under same) count that text's type
    two = [EventBatch.from_columns(("kind", "path"), {"kind": ["gpu"] * n, "path": [p] * n}, n,
                                   types={"path": frozenset({str})}) for n, p in ((1, "/x"), (3, "/x"))]
    assert orjson.loads(wire.encode(EventBatch.concat(two)))["parts"][0]["same"] == {"kind": "gpu", "path": "/x"}
    mixed = [EventBatch.from_columns(("kind", "path"), {"kind": ["gpu"] * 2, "path": p}, 2,
                                     types={"path": frozenset({str, type(None)})}) for p in (["/x", None], ["/y"] * 2)]
    entry = orjson.loads(wire.encode(EventBatch.concat(mixed)))["parts"][0]
    assert entry["cols"]["path"] == ["/x", None, "/y", "/y"] and entry["types"]["path"] == ["null", "str"]
    # ids made in one part (a store read them) and not in the next: two parts, each as it is
    made, lazy = part(0, 2, "/a", True), part(1, 2, "/a", True)
    made.values("id")
    entries = orjson.loads(wire.encode(EventBatch.concat([made, lazy])))["parts"]
    assert [("lines" in e, "id" in e["cols"]) for e in entries] == [(False, True), (True, False)]


_RUN = b'{"origin": "o", "suffix": "", "from": 1, "to": 2}'


@pytest.mark.parametrize("value", [
    b'{"v": 5, "parts": [{"n": 1, "fields": ["id"], "cols": {}, "lines": {"id": {"runs": [' + _RUN + b']}}}]}',
    b'{"v": 6, "parts": [{"n": 1, "fields": ["id"], "cols": {}, "lines": {"id": {"runs": []}}}]}',
    b'{"v": 6, "parts": [{"n": 1, "fields": ["id"], "cols": {}, "lines": {"id": {"runs": ' + _RUN + b'}}}]}',
    b'{"v": 6, "parts": [{"n": 2, "fields": ["id"], "cols": {}, "lines": {"id": {"runs": [' + _RUN + b']}}}]}',
    b'{"v": 6, "parts": [{"n": 1, "fields": ["id"], "cols": {}, "lines": {"id": {"runs": [' + _RUN + b'], '
    b'"origin": "o"}}}]}',
    b'{"v": 6, "parts": [{"n": 1, "fields": ["id"], "cols": {}, "lines": {"id": {"runs": [[1]]}}}]}',
    b'{"v": 6, "parts": [{"n": 1, "fields": ["id"], "cols": {}, "lines": {"id": {"runs": [{"runs": []}]}}}]}',
    b'{"v": 6, "parts": [{"n": 2, "fields": ["id"], "cols": {}, "lines": {"id": {"runs": [' + _RUN + b', {"origin": '
    b'"o", "suffix": "", "from": 2, "to": 2}]}}}]}',
    b'{"v": 6, "parts": [{"n": 1, "fields": ["id"], "cols": {}, "lines": {"id": {"runs": [{"origin": "o", '
    b'"suffix": "", "lines": [-1]}]}}}]}',
    b'{"v": 6, "parts": [{"n": 1, "fields": ["id"], "cols": {}, "lines": {"id": {"runs": [{"origin": "o", '
    b'"suffix": "", "from": 1099511627776, "to": 1099511627777}]}}}]}',
    b'{"v": 6, "parts": [{"n": 1, "fields": ["id"], "cols": {}, "lines": {"id": {"runs": [{"origin": "o", '
    b'"suffix": "", "lines": ["1"]}]}}}]}',
    # over int64 (orjson reads up to 2**64 - 1): refused before numpy would overflow
    b'{"v": 6, "parts": [{"n": 1, "fields": ["id"], "cols": {}, "lines": {"id": {"runs": [{"origin": "o", '
    b'"suffix": "", "lines": [18446744073709551615]}]}}}]}',
    b'{"v": 6, "parts": [{"n": 1, "fields": ["id"], "cols": {}, "lines": {"id": {"runs": [{"origin": "o", '
    b'"suffix": "", "from": 18446744073709551614, "to": 18446744073709551615}]}}}]}',
])
def test_runs_of_lines_that_do_not_hold_together_are_refused(value):
    with pytest.raises(wire.WireError):
        wire.decode(value)
