"""Columns' lazy fields (the parsers' position ids, made on first read) are invisible to every reader:
a batch whose parts hold a field lazily reads as the same batch with that field made up front,
through the batch's verbs, its dicts, the events messages and the store's readers."""

import hypothesis.strategies as st
import numpy as np
from hypothesis import given, settings

from ramparts.events import Columns, EventBatch, LineIds
from ramparts.streams import wire

_FIELDS = ("kind", "ts", "source", "model", "id")


@st.composite
def _parts(draw):
    """Parts as (the part with "id" lazy, the same part with "id" made, its dicts)."""
    out = []
    for k in range(draw(st.integers(1, 4))):
        n = draw(st.integers(0, 7))
        origin = draw(st.sampled_from(["a.log", "b:3:9(x.log)", "ü"]))
        suffix = draw(st.sampled_from(["", ".0"]))
        first = draw(st.integers(1, 5))
        if draw(st.booleans()):
            lines = range(first, first + n)  # a chunk every line of which made an event
        else:
            lines = sorted(draw(st.lists(st.integers(1, 60), min_size=n, max_size=n, unique=True)))
        kind = draw(st.sampled_from(["request", "prediction"]))
        cols = {"kind": [kind] * n, "ts": [draw(st.integers(0, 4)) for _ in range(n)], "source": [f"s{k}"] * n,
                "model": [draw(st.sampled_from(["m", None])) for _ in range(n)]}
        make = LineIds(origin, suffix)
        lazy = Columns(_FIELDS, dict(cols), n, {"id": (make, lines)})
        eager = Columns(_FIELDS, {**cols, "id": make(lines)}, n)
        rows = [dict(zip(_FIELDS, r)) for r in zip(*[eager.cols[f] for f in _FIELDS])]
        out.append((lazy, eager, rows))
    return out


def _batch(parts, which):
    return EventBatch.concat(EventBatch._of([p[which]], None) for p in parts)


def _ops(data, b, c, rows):
    """The same random selections, sorts and compactions of both batches and of the dicts."""
    for _ in range(data.draw(st.integers(0, 3))):
        how = data.draw(st.sampled_from(["sort", "select", "slice", "compact", "pool"]))
        if how == "sort":
            b, c, rows = b.sorted_by_time(), c.sorted_by_time(), sorted(rows, key=lambda e: e["ts"])
        elif how == "select":
            idx = data.draw(st.lists(st.integers(0, max(len(rows) - 1, 0)), max_size=len(rows))) if rows else []
            b, c, rows = b.select(idx), c.select(idx), [rows[i] for i in idx]
        elif how == "slice":
            i, j = data.draw(st.integers(0, len(rows))), data.draw(st.integers(0, len(rows)))
            b, c, rows = b[i:j], c[i:j], rows[i:j]
        elif how == "compact":
            b, c = b.compact(), c.compact()
        else:
            b, c = b.pooled(), c.pooled()
            rows = list(c.events)
    return b, c, rows


@settings(max_examples=300, deadline=None, derandomize=True)
@given(_parts(), st.data())
def test_a_lazy_field_reads_as_the_field_made_up_front(parts, data):
    b, c, rows = _ops(data, _batch(parts, 0), _batch(parts, 1), [r for p in parts for r in p[2]])
    # A reader picked at random first: the lazy field may be made by any of them.
    first = data.draw(st.sampled_from(["values", "where", "row", "events", "wire", "none"]))
    if first == "values":
        assert b.values("id") == c.values("id") == [r["id"] for r in rows]
    elif first == "where":
        for kind in ("request", "prediction"):
            assert b.values_where("id", "kind", kind) == c.values_where("id", "kind", kind) \
                == [r["id"] for r in rows if r["kind"] == kind]
    elif first == "row":
        assert [b[i] for i in range(len(rows))] == rows
    elif first == "wire":  # a lazy id goes as its line numbers (wire version 4): the same events read back
        got = wire.decode(wire.encode(b)).events
        assert got == wire.decode(wire.encode(c)).events == rows
        assert [list(e) for e in got] == [list(r) for r in rows]
    for kind in ("request", "prediction"):
        assert b.values_where("id", "kind", kind) == [r["id"] for r in rows if r["kind"] == kind]
        assert b.values_where("model", "kind", kind) == [r["model"] for r in rows if r["kind"] == kind]
    assert [b[i] for i in range(len(rows))] == rows
    assert b.values("id") == [r["id"] for r in rows] and b.indices_where("id", *(r["id"] for r in rows[:1])) \
        == c.indices_where("id", *(r["id"] for r in rows[:1]))
    assert b.events == rows and [list(e) for e in b.events] == [list(r) for r in rows]
    assert wire.encode(b) == wire.encode(c) and wire.decode(wire.encode(b)).events == rows


@settings(max_examples=150, deadline=None, derandomize=True)
@given(_parts(), st.data())
def test_reading_other_fields_leaves_a_lazy_field_unmade(parts, data):
    b, c, rows = _ops(data, _batch(parts, 0), _batch(parts, 1), [r for p in parts for r in p[2]])
    for f in ("kind", "ts", "model", "source"):
        assert b.values(f) == [r[f] for r in rows]
        assert b.values_where(f, "kind", "request") == [r[f] for r in rows if r["kind"] == "request"]
    assert b.ts().tolist() == [r["ts"] for r in rows]
    assert b.indices_where("kind", "request") == c.indices_where("kind", "request")
    if rows:
        i = data.draw(st.integers(0, len(rows) - 1))
        assert b[i] == rows[i]  # one event made whole: its own id only
    for lazy, _, _ in parts:
        assert lazy.n == 0 or "id" not in lazy._cols


def test_a_part_made_whole_or_taken_makes_its_ids():
    p = Columns(("kind", "id"), {"kind": ["gpu"] * 3}, 3, {"id": (LineIds("f"), range(4, 7))})
    t = p.take([2, 0])
    assert "id" not in t._cols and t.values("id") == ["f:6", "f:4"] and t.row(0) == {"kind": "gpu", "id": "f:6"}
    assert p.same("id") is None and p.cols == {"kind": ["gpu"] * 3, "id": ["f:4", "f:5", "f:6"]}
    assert p.dicts() == [{"kind": "gpu", "id": f"f:{k}"} for k in (4, 5, 6)]
    one = Columns(("id",), {}, 2, {"id": (LineIds("g", ".0"), [3, 3])})
    assert one.same("id") == ("g:3.0",)


def test_times_handed_to_a_batch_of_columns_are_its_times():
    b = EventBatch.from_columns(("kind", "ts"), {"kind": ["a"] * 3, "ts": [5, 1, 3]}, 3, ts=np.array([5, 1, 3]))
    assert b.ts().tolist() == [5, 1, 3] and b.sorted_by_time().values("ts") == [1, 3, 5]


def test_the_envoy_parser_hands_on_its_times_and_ids_unmade(tmp_path):
    """The Envoy parser's batches: their times are the int64 array ts() would read from their events,
    and their ids and flags' lists are made only when read, the ids and flags the events carry."""
    from ramparts.streams.decode import decode_file

    path = tmp_path / "a.log"
    head = b'{"start_time":"2026-11-01T00:00:0%d.%03dZ","method":"POST","response_code":200,"response_flags":"-",'
    head += b'"duration":5,'
    tail = b'"x-envoy-upstream-service-time":"4","x-request-id":"r%d","x-forwarded-for":"10.0.0.%d"}'
    lines = [(head + tail) % (i // 300, i % 1000, i, i % 7) for i in range(2000)]
    lines[700] = b"not json"
    lines[1600] = lines[1600].replace(b'"response_flags":"-"', b'"response_flags":"UF,URX"')
    lines[1601] = lines[1601].replace(b'"response_flags":"-"', b'"response_flags":"UF"')
    # A line the fast decoder takes whose value then fails a check: left out of the slice's columns and times.
    lines[1700] = lines[1700].replace(b'-time":"4"', b'-time":"nan"')
    path.write_bytes(b"\n".join(lines) + b"\n")
    want_ids = [[f"{path}:{k}" for k in range(1, 1501) if k != 701],
                [f"{path}:{k}" for k in range(1501, 2001) if k != 1701]]
    for stamp in (True, False):
        parser, chunks = decode_file(str(path), "envoy_json", stamp_ids=stamp, chunk_lines=1500)
        got = [c.events for c in chunks]
        assert [len(b) for b in got] == [1499, 499]
        # The first line of a key set goes the general way (its decoder is built from it): not the second chunk.
        assert got[0]._ts is None and got[1]._ts is not None and got[1]._ts.dtype == np.int64
        for b, ids in zip(got, want_ids):
            part = b.layout()[0][0]
            assert "id" not in part._cols and (b is got[0] or "response_flags" not in part._cols)
            assert b.values("response_flags") == [["UF", "URX"] if e["id"] == f"{path}:1601" else
                                                  ["UF"] if e["id"] == f"{path}:1602" else None for e in b.events] \
                if stamp else True
            assert b.ts().tolist() == [e["ts"] for e in b.events]
            assert [e.get("id") for e in b.events] == (ids if stamp else [None] * len(b))
