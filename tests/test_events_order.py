"""A batch made by ``select``, ``concat`` or ``compact`` holds its order as the array it was made from and makes
the list when first read (``EventBatch._order``): what it reads, and what is read of it, is what the list would
give, through chains of those steps over parts of dicts and of columns (hypothesis, derandomized)."""

import hypothesis.strategies as st
from hypothesis import given, settings

from ramparts.events import _LAZY, Columns, EventBatch


@st.composite
def _batch(draw):
    parts, rows = [], []
    for k in range(draw(st.integers(1, 4))):
        n = draw(st.integers(0, 6))
        ts = [draw(st.integers(0, 5)) for _ in range(n)]
        evs = [{"kind": "gpu" if k % 2 else "request", "ts": t, "n": len(rows) + i} for i, t in enumerate(ts)]
        if draw(st.booleans()):
            parts.append(Columns(("kind", "ts", "n"), {f: [e[f] for e in evs] for f in ("kind", "ts", "n")}, n))
        else:
            parts.append(evs)
        rows.extend(evs)
    return EventBatch._of(parts, None), rows


@settings(max_examples=400, deadline=None, derandomize=True)
@given(_batch(), st.data())
def test_an_order_made_when_read_reads_as_the_list(made, data):
    b, rows = made
    for _ in range(data.draw(st.integers(1, 4))):
        how = data.draw(st.sampled_from(["sort", "select", "concat", "compact"]))
        if how == "sort":
            b, rows = b.sorted_by_time(), sorted(rows, key=lambda e: e["ts"])
        elif how == "select":
            idx = data.draw(st.lists(st.integers(0, len(rows) - 1), max_size=8)) if rows else []
            b, rows = b.select(idx), [rows[i] for i in idx]
        elif how == "concat":
            other = b.select(list(range(len(rows)))[::-1])
            b, rows = EventBatch.concat([b, other]), rows + rows[::-1]
        else:
            b = b.compact()
        if b._olist is not None and b._olist is not _LAZY:
            assert b._olist == b._oarr.tolist()
    lazy = b._olist is _LAZY
    read = data.draw(st.sampled_from(["item", "values", "events", "layout", "index"]))
    if read == "item":
        assert [b[i] for i in range(len(rows))] == rows
        assert b._olist is _LAZY or not lazy  # one event at a time: the list is not made for it
    elif read == "values":
        assert b.values("n") == [r["n"] for r in rows] and b.ts().tolist() == [r["ts"] for r in rows]
    elif read == "events":
        assert b.events == rows
    elif read == "layout":
        parts, order = b.layout()
        flat = [e for p in parts for e in (p.dicts() if type(p) is Columns else p)]
        assert (flat if order is None else [flat[i] for i in order]) == rows
        assert order is None or type(order) is list and all(type(i) is int for i in order)
    else:
        assert b.indices_where("kind", "gpu") == [i for i, r in enumerate(rows) if r["kind"] == "gpu"]
    assert len(b) == len(rows)
    if lazy and read in ("layout", "events"):
        assert type(b._order) is list and b._order == b._oarr.tolist()


def test_replay_s_merge_makes_no_order_list_no_one_reads():
    from ramparts.streams.replay import merge_by_time

    a = [[{"kind": "gpu", "ts": t} for t in range(k * 20, k * 20 + 20, 2)] for k in range(3)]
    c = [EventBatch.from_columns(("kind", "ts"), {"kind": ["request"] * 20, "ts": list(range(k * 20, k * 20 + 20))})
         for k in range(3)]
    got = list(merge_by_time([iter(a), iter(c)], 7))
    assert len(got) > 5 and all(b._olist is _LAZY for b in got if len(b._parts) > 1)
    ts = [t for b in got for t in b.ts().tolist()]
    assert ts == sorted(ts) and len(ts) == 90 and all(b._olist is _LAZY for b in got if len(b._parts) > 1)
    assert [t for b in got for t in b.values("ts")] == ts
