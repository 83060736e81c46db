import numpy as np
import orjson

from ramparts.events import KIND_FIELDS, EventBatch, check_event, to_json


def _req(i, **kw):
    e = {"kind": "request", "ts": 1_700_000_000_000_000_000 + i, "source": "test",
         **{f: None for f in KIND_FIELDS["request"]}}
    e.update(kw)
    return e


def test_columns_fill_missing_values():
    b = EventBatch([_req(0, latency_ms=5.0, status=200), _req(1, status=None), _req(2, latency_ms="x", status=404)])
    assert np.array_equal(b.column("latency_ms"), [5.0, np.nan, np.nan], equal_nan=True)
    assert b.column("status", np.int64).tolist() == [200, 0, 404]
    assert b.column("status", np.int64, missing=-1).tolist() == [200, -1, 404]
    assert b.column("source", object).tolist() == ["test"] * 3


def test_select_group_and_sort():
    b = EventBatch([_req(3, principal="a"), _req(1, principal="b"), _req(2, principal="a")])
    assert [e["ts"] % 10 for e in b.sorted_by_time()] == [1, 2, 3]
    groups = b.group_by("principal")
    assert groups["a"].tolist() == [0, 2] and groups["b"].tolist() == [1]
    only_a = b.select(b.column("principal", object) == "a")
    assert len(only_a) == 2 and all(e["principal"] == "a" for e in only_a)
    assert len(b.of_kind("gpu")) == 0 and b.kinds() == {"request": 3}


def test_json_writes_rfc3339_times_and_keeps_the_event_intact():
    e = _req(0)
    e["ts"] = 1554740215931000000
    assert orjson.loads(to_json(e))["ts"] == "2019-04-08T16:16:55.931Z"
    assert e["ts"] == 1554740215931000000


def test_check_event_finds_type_errors_and_missing_fields():
    assert check_event(_req(0, status=200, latency_ms=1.5, tokens_in=3)) == []
    problems = check_event(_req(0, status="200", latency_ms=float("nan"), tokens_in=True))
    assert len(problems) == 3
    e = _req(0)
    del e["model"]
    assert check_event(e) == ["missing field 'model'"]
    assert check_event({"kind": "nope"}) == ["unknown kind 'nope'"]


def test_indices_where_is_the_events_whose_field_equals_a_value_in_batch_order():
    events = [{"kind": "gpu", "source": "dcgm"}, {"kind": "request"}, {"kind": ["odd"]}, {},
              {"kind": "gpu", "source": {"not": "hashable"}}, {"kind": "runtime"}, {"kind": "request"}]
    b = EventBatch(events)
    for field in ("kind", "source"):
        for values in (("gpu",), ("request", "gpu"), ("runtime", "missing", "request"), (None,), ("nothing",)):
            want = [i for i, e in enumerate(events) if e.get(field) in values]
            assert b.indices_where(field, *values) == want, (field, values)
            assert b.where(field, *values) == [events[i] for i in want]
    assert b.kinds() == {"gpu": 2, "request": 2, None: 1, "runtime": 1}  # the unhashable kind is not counted
    b.append({"kind": "gpu"})  # the index follows the batch
    assert b.indices_where("kind", "gpu") == [0, 4, 7]
    b.extend([{"kind": "runtime"}])
    assert b.indices_where("kind", "runtime") == [5, 8]


def test_shared_builds_once_per_batch_and_again_after_a_change():
    b = EventBatch([{"kind": "request"}])
    calls = []

    def build(batch):
        calls.append(len(batch))
        return len(batch)

    assert b.shared("n", build) == 1 and b.shared("n", build) == 1
    b.append({"kind": "request"})
    assert b.shared("n", build) == 2
    assert calls == [1, 2]


# -- columnar parts ----------------------------------------------------------------------------
import hypothesis.strategies as st  # noqa: E402
from hypothesis import given, settings  # noqa: E402

from ramparts.events import Columns  # noqa: E402

_SHAPES = (("kind", "ts", "principal", "status"), ("kind", "ts", "gpu_uuid"), ("ts", "kind"))


@st.composite
def _parts(draw):
    """Parts of a batch, as (dicts, the same as a columnar part or a list of dicts)."""
    out = []
    for _ in range(draw(st.integers(0, 4))):
        fields = draw(st.sampled_from(_SHAPES))
        n = draw(st.integers(0, 6))
        rows = [{f: draw(st.integers(0, 3)) if f in ("ts", "status") else draw(st.sampled_from(["a", "b", None]))
                 for f in fields} for _ in range(n)]
        as_columns = draw(st.booleans())
        part = Columns(fields, {f: [r[f] for r in rows] for f in fields}, n) if as_columns else rows
        out.append((rows, part))
    return out


def _batch(parts):
    """The columnar batch and the same events as one list of dicts."""
    rows = [r for dicts, _ in parts for r in dicts]
    b = EventBatch.concat(EventBatch.from_columns(p.fields, p.cols, p.n) if type(p) is Columns else EventBatch(p)
                          for _, p in parts)
    return b, rows


@settings(max_examples=300, deadline=None, derandomize=True)
@given(_parts(), st.data())
def test_a_batch_of_columns_reads_as_its_dicts_through_sorts_and_selections(parts, data):
    b, rows = _batch(parts)
    for _ in range(data.draw(st.integers(0, 3))):
        how = data.draw(st.sampled_from(["sort", "select", "slice", "pool"]))
        if how == "sort":
            b, rows = b.sorted_by_time(), sorted(rows, key=lambda e: e["ts"])
        elif how == "select":
            idx = data.draw(st.lists(st.integers(0, max(len(rows) - 1, 0)), max_size=len(rows))) if rows else []
            b, rows = b.select(idx), [rows[i] for i in idx]
        elif how == "slice":
            i, j = data.draw(st.integers(0, len(rows))), data.draw(st.integers(0, len(rows)))
            b, rows = b[i:j], rows[i:j]
        else:
            pooled = b.pooled()  # every event, in another order (below)
            assert sorted(map(repr, pooled.events)) == sorted(map(repr, rows))
            b, rows = pooled, list(pooled.events)
    assert len(b) == len(rows)
    for f in ("kind", "ts", "principal", "gpu_uuid", "status", "absent"):
        assert b.values(f) == [r.get(f) for r in rows]
        for v in ("a", None, 1):
            assert b.indices_where(f, v) == [i for i, r in enumerate(rows) if r.get(f) == v]
    assert [b[i] for i in range(len(rows))] == rows
    assert b.events == rows and [list(e) for e in b.events] == [list(r) for r in rows]  # keys in order too
    if rows:
        assert b[-1] == rows[-1]


@settings(max_examples=200, deadline=None, derandomize=True)
@given(_parts(), _parts(), st.data())
def test_the_rest_of_a_sorted_pool_pooled_sorts_with_more_events_like_the_rest_itself(parts, more, data):
    """merge_by_time's pool: the events after a cut of the sorted pool, pooled, then the next
    chunks, sort (stably, by time) as the rest in its sorted order followed by them would."""
    pool, _ = _batch(parts)
    nxt, _ = _batch(more)
    order = np.argsort(pool.ts(), kind="stable")
    rest = pool.select(order[data.draw(st.integers(0, len(pool))):])
    whole = EventBatch.concat([EventBatch(list(rest.events)), nxt]).sorted_by_time()
    assert EventBatch.concat([rest.pooled(), nxt]).sorted_by_time().events == whole.events


def test_pooled_then_sorted_orders_like_the_sorted_whole():
    """What merge_by_time relies on: a sorted selection, pooled, then more events, sorts like the
    sorted selection followed by them (one instant's events in the order they were read)."""
    a = EventBatch.from_columns(("ts", "n"), {"ts": [3, 1, 3, 2], "n": [0, 1, 2, 3]})
    b = EventBatch([{"ts": 3, "n": 4}, {"ts": 1, "n": 5}])
    pool = EventBatch.concat([a, b])
    rest = pool.select(np.argsort(pool.ts(), kind="stable")[2:])  # [1:n5]... the later ones
    more = EventBatch([{"ts": 2, "n": 6}, {"ts": 3, "n": 7}])
    whole = EventBatch.concat([EventBatch(rest.events), more]).sorted_by_time()
    pooled = EventBatch.concat([rest.pooled(), more]).sorted_by_time()
    assert [e["n"] for e in pooled] == [e["n"] for e in whole] == [3, 6, 0, 2, 4, 7]


def test_append_to_a_selection_leaves_the_batch_it_came_from_alone():
    a = EventBatch([{"ts": 1}, {"ts": 2}])
    s = a.select([1])
    s.append({"ts": 3})
    assert [e["ts"] for e in s] == [2, 3] and [e["ts"] for e in a] == [1, 2]
    assert s.values("ts") == [2, 3] and len(s) == 2


def test_a_selection_makes_only_its_own_dicts_and_concat_keeps_orders():
    cols = EventBatch.from_columns(("ts", "k"), {"ts": [5, 1, 3], "k": ["a", "b", "c"]})
    dicts = EventBatch([{"ts": 2, "k": "d"}, {"ts": 4, "k": "e"}])
    both = EventBatch.concat([cols, dicts])
    s = both.sorted_by_time()
    picked = s.select([0, 4])
    assert picked.events == [{"ts": 1, "k": "b"}, {"ts": 5, "k": "a"}]
    assert not s.holds_dicts and not both.holds_dicts and picked.holds_dicts
    parts, order = EventBatch.concat([s.select([3, 1]), cols]).layout()
    assert order == [4, 3, 5, 6, 7] and len(parts) == 3
    assert [e["k"] for e in EventBatch.concat([s.select([3, 1]), cols])] == ["e", "d", "a", "b", "c"]


# -- the field index from the parts, values_where, compact, ts carried --------------------------
from ramparts.events import _UNHASHABLE  # noqa: E402


def _reference_index(vals):
    """The index as the loop over every event builds it (main c7170a5): keys as their first
    event holds them, in the order of their first events; unhashable values under _UNHASHABLE."""
    index = {}
    for i, v in enumerate(vals):
        try:
            idx = index.get(v)
        except TypeError:
            v, idx = _UNHASHABLE, index.get(_UNHASHABLE)
        if idx is None:
            index[v] = [i]
        else:
            idx.append(i)
    return index


# Values a part may hold: equal values of other types (1, 1.0, True: one dict key), None, a list.
_ODD = st.sampled_from(["request", "gpu", None, 1, 1.0, True, 0, ("t",), ["unhashable"]])


@st.composite
def _kind_parts(draw):
    """Parts that mostly hold one value of "kind" each (as a parser's do), sometimes several."""
    out = []
    for _ in range(draw(st.integers(0, 5))):
        n = draw(st.integers(0, 5))
        if draw(st.integers(0, 3)):
            one = draw(_ODD)
            kinds = [one] * n
        else:
            kinds = [draw(_ODD) for _ in range(n)]
        rows = [{"kind": k, "ts": draw(st.integers(0, 3)), "n": j} for j, k in enumerate(kinds)]
        if draw(st.booleans()):
            rows_missing = [{"ts": r["ts"], "n": r["n"]} for r in rows] if draw(st.integers(0, 4)) == 0 else None
            if rows_missing is not None:
                rows = rows_missing
        as_columns = draw(st.booleans())
        fields = tuple(rows[0]) if rows else ("kind", "ts", "n")
        part = Columns(fields, {f: [r[f] for r in rows] for f in fields}, n) if as_columns else rows
        out.append((rows, part))
    return out


@settings(max_examples=400, deadline=None, derandomize=True)
@given(_kind_parts(), st.data())
def test_the_index_from_the_parts_is_the_index_of_every_event(parts, data):
    b, rows = _batch(parts)
    for _ in range(data.draw(st.integers(0, 2))):
        how = data.draw(st.sampled_from(["sort", "select", "compact"]))
        if how == "sort":
            b, rows = b.sorted_by_time(), sorted(rows, key=lambda e: e["ts"])
        elif how == "select":
            idx = data.draw(st.lists(st.integers(0, max(len(rows) - 1, 0)), max_size=len(rows))) if rows else []
            b, rows = b.select(idx), [rows[i] for i in idx]
        else:
            b = b.compact()
    want = _reference_index([r.get("kind") for r in rows])
    got = b._by("kind")
    assert list(got.items()) == list(want.items())
    assert [type(k) for k in got] == [type(k) for k in want]  # each key as its first event holds it
    for vs in (("request",), (1,), (None,), ("gpu", 1.0), (("t",),)):
        assert b.indices_where("kind", *vs) == [i for i, r in enumerate(rows) if r.get("kind") in vs]
        for f in ("n", "ts", "kind", "absent"):
            assert b.values_where(f, "kind", *vs) == [r.get(f) for r in rows if r.get("kind") in vs]
    assert b.kinds() == {k: len(v) for k, v in want.items() if k is not _UNHASHABLE}


@settings(max_examples=200, deadline=None, derandomize=True)
@given(_parts(), st.data())
def test_compact_keeps_the_events_and_their_order_over_fewer_parts(parts, data):
    b, rows = _batch(parts)
    if rows:
        idx = data.draw(st.lists(st.integers(0, len(rows) - 1), max_size=len(rows)))
        b, rows = b.select(idx), [rows[i] for i in idx]
    c = b.compact()
    c_parts, _ = c.layout()
    assert c.events == rows and c.values("ts") == [r["ts"] for r in rows]
    assert all(len(p) for p in c_parts) and len(c_parts) <= len(b.layout()[0])
    for f in ("kind", "principal"):
        for v in ("a", None):
            assert c.indices_where(f, v) == [i for i, r in enumerate(rows) if r.get(f) == v]


@settings(max_examples=200, deadline=None, derandomize=True)
@given(_parts(), _parts(), st.data())
def test_times_carried_by_select_and_concat_are_the_events_times(parts, more, data):
    a, rows = _batch(parts)
    m, more_rows = _batch(more)
    a.ts()  # read, then carried
    if rows:
        idx = data.draw(st.lists(st.integers(-len(rows), len(rows) - 1), max_size=len(rows)))
        a, rows = a.select(idx), [rows[i] for i in idx]
    if data.draw(st.booleans()):
        m.ts()
    both = EventBatch.concat([a, m])
    want = [r["ts"] for r in rows + more_rows]
    assert both.ts().tolist() == want == both.values("ts") and both.events == rows + more_rows
    assert both.sorted_by_time().values("ts") == sorted(want)


def test_a_change_forgets_the_times_read():
    b = EventBatch([{"kind": "gpu", "ts": 2}])
    assert b.ts().tolist() == [2]
    b.append({"kind": "gpu", "ts": 1})
    assert b.ts().tolist() == [2, 1] and b.sorted_by_time().values("ts") == [1, 2]


def test_parts_of_one_kind_each_are_indexed_without_reading_the_events():
    req = EventBatch.from_columns(("kind", "ts"), {"kind": ["request"] * 3, "ts": [5, 1, 3]})
    gpu = EventBatch([{"kind": "gpu", "ts": 2}, {"kind": "gpu", "ts": 4}])
    b = EventBatch.concat([req, gpu]).sorted_by_time()
    assert b._by_parts("kind") == {"request": [0, 2, 4], "gpu": [1, 3]} == _reference_index(b.values("kind"))
    assert b.values_where("ts", "kind", "gpu") == [2, 4] and b.values_where("ts", "kind", "request") == [1, 3, 5]
    mixed = EventBatch.concat([b, EventBatch([{"kind": "gpu"}, {"kind": "runtime"}])])
    assert mixed._by_parts("kind") is None  # a part of two kinds: the loop over the events
    assert mixed.indices_where("kind", "gpu") == [1, 3, 5]
