"""The batch's per-part indices (``EventBatch._by_parts``: the ``kind`` and ``source`` indices taken from
the parts) give what they gave before (252c98f, frozen below) and what the loop over every event gives:
the same keys, as the same objects in the same order, the same positions as lists of ints; through
sorts, selections, slices, compactions and pools, over dict parts and ``Columns`` parts, with and
without the texts a parser vouches for (``one``)."""

from itertools import repeat
from operator import itemgetter

import hypothesis.strategies as st
import numpy as np
from hypothesis import given, settings

from ramparts.events import Columns, EventBatch, _index_of, _same


def _frozen_by_parts(b: EventBatch, field: str):
    """252c98f's ``EventBatch._by_parts``, as it was (``Columns.same`` then read every column)."""
    parts = b._parts
    same = []
    for p in parts:
        if not len(p):
            same.append(None)
            continue
        if type(p) is Columns:
            col = p._col(field)
            s = _same(col if col is not None else [None], p.n)
        else:
            s = _same(list(map(dict.get, p, repeat(field))) if p and type(p[0]) is dict
                      else [e.get(field) for e in p], len(p))
        if s is None:
            return None
        same.append(s)
    index: dict = {}
    try:
        if b._order is None:
            at = 0
            for p, s in zip(parts, same):
                if s is not None:
                    n = len(p)
                    idx = index.get(s[0])
                    if idx is None:
                        index[s[0]] = list(range(at, at + n))
                    else:
                        idx.extend(range(at, at + n))
                    at += n
            return index
        code: dict = {}
        codes = [-1 if s is None else code.setdefault(s[0], len(code)) for s in same]
    except TypeError:
        return None
    if not b._n:
        return index
    which, _ = b.part_map()
    if len(code) == 1:
        return {same[int(which[0])][0]: list(range(b._n))}
    per_event = np.asarray(codes, dtype=np.intp)[which]
    groups = []
    for c in range(len(code)):
        pos = np.flatnonzero(per_event == c)
        if len(pos):
            groups.append((int(pos[0]), same[int(which[pos[0]])][0], pos))
    groups.sort(key=itemgetter(0))
    for _, key, pos in groups:
        index[key] = pos.tolist()
    return index


class _Text(str):
    """A text of another type that equals a plain one (an index keys each value as its first event holds it)."""


_VALUES = ["request", "prediction", "gpu", None, 1, 1.0, True, _Text("request"), "envoy_json"]


@st.composite
def _parts(draw):
    """Parts, each a list of dicts or a Columns, of "kind" and "source" one text per part (mostly, as a
    parser writes them), several values, values of other types, or absent; with the dicts of their events."""
    parts, rows = [], []
    for k in range(draw(st.integers(1, 5))):
        n = draw(st.integers(0, 6))
        vals = {}
        for f in ("kind", "source"):
            how = draw(st.sampled_from(["one", "one", "one", "mixed", "absent"]))
            if how == "one":
                v = draw(st.sampled_from(["request", "prediction", "gpu", "envoy_json", _Text("gpu")]))
                vals[f] = [v] * n
            elif how == "mixed":
                vals[f] = [draw(st.sampled_from(_VALUES)) for _ in range(n)]
        fields = tuple(vals) + ("ts",)
        cols = {**vals, "ts": [draw(st.integers(0, 3)) for _ in range(n)]}
        evs = [dict(zip(fields, r)) for r in zip(*[cols[f] for f in fields])] if n else []
        if draw(st.booleans()):
            # A parser's part: it vouches for the fields it wrote [text] * n.
            one = {f: c[0] for f, c in vals.items() if n and type(c[0]) is str and c.count(c[0]) == n
                   and len(set(map(type, c))) == 1 and draw(st.booleans())}
            parts.append(Columns(fields, cols, n, None, one))
        else:
            parts.append(evs)
        rows.extend(evs)
    return parts, rows


def _ops(data, b, rows):
    for _ in range(data.draw(st.integers(0, 3))):
        how = data.draw(st.sampled_from(["sort", "select", "slice", "compact", "pool", "concat"]))
        if how == "sort":
            b, rows = b.sorted_by_time(), sorted(rows, key=lambda e: e["ts"])
        elif how == "select":
            idx = data.draw(st.lists(st.integers(0, max(len(rows) - 1, 0)), max_size=len(rows))) if rows else []
            b, rows = b.select(idx), [rows[i] for i in idx]
        elif how == "slice":
            i, j = data.draw(st.integers(0, len(rows))), data.draw(st.integers(0, len(rows)))
            b, rows = b[i:j], rows[i:j]
        elif how == "compact":
            b = b.compact()
        elif how == "pool":  # each part's events together, in their order here
            b = b.pooled()
            rows = [dict(e) for e in EventBatch._of(b._parts, b._order).events]
        else:
            b, rows = EventBatch.concat([b, b.select(list(range(len(rows)))[::-1])]), rows + rows[::-1]
    return b, rows


def _same_index(got, want):
    assert list(got) == list(want)
    assert [type(k) for k in got] == [type(k) for k in want]
    assert all(got[k] == want[k] and all(type(i) is int for i in got[k]) for k in want)


@settings(max_examples=600, deadline=None, derandomize=True)
@given(_parts(), st.data())
def test_the_per_part_indices_are_what_they_were(parts, data):
    parts, rows = parts
    b, rows = _ops(data, EventBatch._of(list(parts), None), rows)
    # A twin over copies of the parts, none vouched for, read by 252c98f's code.
    twin = EventBatch._of([Columns(p.fields, p._cols, p.n) if type(p) is Columns else p for p in b._parts],
                          b._order)
    fields = data.draw(st.permutations(["kind", "source", "ts"]))
    for f in fields:
        old = _frozen_by_parts(twin, f)
        new = b._by_parts(f)
        if old is None:
            assert new is None
        else:
            _same_index(new, old)
        loop = _index_of([r.get(f) for r in rows])
        _same_index(b._by(f), loop)
        for v in {v for v in loop if v is not None and type(v) is str} | {None}:
            assert b.indices_where(f, v) == [i for i, r in enumerate(rows) if r.get(f) == v]
            assert b.values_where("ts", f, v) == [r["ts"] for r in rows if r.get(f) == v]
    assert b.indices_where("kind", "request", "gpu") == [i for i, r in enumerate(rows)
                                                          if r.get("kind") in ("request", "gpu")]
    assert b.kinds() == twin.kinds()


def test_a_vouched_text_is_kept_through_take_and_answers_without_the_column():
    p = Columns(("kind", "source", "n"), {"kind": ["gpu"] * 3, "source": ["dcgm"] * 3, "n": [1, 2, 3]}, 3, None,
                {"kind": "gpu"})
    assert p._same == {"kind": ("gpu",)} and p.same("kind") == ("gpu",) and p.same("source") == ("dcgm",)
    t = p.take([2, 0])
    assert t._same == {"kind": ("gpu",), "source": ("dcgm",)} and t.values("n") == [3, 1]
    assert Columns(("kind",), {"kind": []}, 0, None, {"kind": "gpu"}).same("kind") is None
    mixed = Columns(("kind",), {"kind": ["a", "b", "b"]}, 3)
    assert mixed.same("kind") is None and mixed.take([2, 1]).same("kind") == ("b",)


def test_the_parsers_vouch_for_what_their_columns_hold(tmp_path):
    """The Envoy and KServe parsers' parts say kind and source without their columns being read: what
    they say is what the columns hold (the mix's requests and predictions, replayed in chunks)."""
    from ramparts.streams.decode import decode_file
    from ramparts.streams.simulate import simulate

    simulate("mix", str(tmp_path / "mix.json"), seed=7, start="2026-11-01T00:00:00Z")
    seen = set()
    for fmt in ("envoy_json", "kserve"):
        _, chunks = decode_file(str(tmp_path / f"mix.{fmt}.log"), fmt, stamp_ids=True, chunk_lines=700)
        for c in chunks:
            for p in c.events.layout()[0]:
                assert type(p) is Columns
                for f, s in p._same.items():
                    assert s == _same(p._cols[f], p.n), (fmt, f)
                    seen.add((fmt, f, s))
    assert seen == {("envoy_json", "kind", ("request",)), ("envoy_json", "source", ("envoy_json",)),
                    ("kserve", "kind", ("prediction",)), ("kserve", "source", ("kserve",))}


def _ops_read_between(data, b, rows):
    """:func:`_ops`, with the kind or source index read between the steps: what a batch finds of its lists of
    dicts (``_list_same``) is then handed on through the steps (shared by selections and compactions, kept
    by concat), as replay's merge hands its pool on from batch to batch."""
    for _ in range(data.draw(st.integers(1, 4))):
        if data.draw(st.booleans()):
            b._by(data.draw(st.sampled_from(["kind", "source"])))
        b, rows = _ops(data, b, rows)
    return b, rows


@settings(max_examples=400, deadline=None, derandomize=True)
@given(_parts(), st.data())
def test_what_a_batch_found_of_its_lists_of_dicts_holds_in_the_batches_made_from_it(parts, data):
    parts, rows = parts
    b, rows = _ops_read_between(data, EventBatch._of(list(parts), None), rows)
    for f in data.draw(st.permutations(["kind", "source", "ts"])):
        loop = _index_of([r.get(f) for r in rows])
        _same_index(b._by(f), loop)
        for v in {v for v in loop if v is not None and type(v) is str} | {None}:
            assert b.indices_where(f, v) == [i for i, r in enumerate(rows) if r.get(f) == v]


class _Counted(dict):
    """An event that counts the reads of each of its fields (values_of calls an event's own ``get``)."""

    reads: dict = {}

    def get(self, key, default=None):
        _Counted.reads[key] = _Counted.reads.get(key, 0) + 1
        return super().get(key, default)


def test_replay_s_merge_reads_a_list_of_dicts_kind_once_per_part():
    """The small parsers' parts (lists of dicts) stay in the merge's pool from batch to batch: their kind and
    source are read once per part, not once per batch, and every batch's index is the loop's."""
    from ramparts.streams.replay import merge_by_time

    gpu = [[_Counted(kind="gpu", source="dcgm", ts=t) for t in range(k, 400, 7)] for k in range(2)]
    req = [EventBatch.from_columns(("kind", "source", "ts"), {"kind": ["request"] * 50, "source": ["envoy_json"] * 50,
                                                             "ts": list(range(k * 50, k * 50 + 50))})
           for k in range(8)]
    _Counted.reads = {}
    batches = 0
    for batch in merge_by_time([iter(gpu), iter(req)], 16):
        rows = batch.events
        for f in ("kind", "source"):
            _same_index(batch._by(f), _index_of([r.get(f) for r in rows]))
        batches += 1
    n_gpu = sum(map(len, gpu))
    assert batches > 20
    # Once per part in the indices; once more per event where the test itself read the rows (r.get above).
    assert _Counted.reads["kind"] == n_gpu + n_gpu and _Counted.reads["source"] == n_gpu + n_gpu


def test_a_list_grown_since_its_kind_was_found_is_read_again():
    b = EventBatch([{"kind": "gpu", "ts": 1}])
    s = b.select([0])
    assert s._by_parts("kind") == {"gpu": [0]}
    b.append({"kind": "request", "ts": 2})  # in place: s shares the list
    assert b._parts[0] is s._parts[0] and len(s._parts[0]) == 2
    twin = EventBatch._of(s._parts, None, psame=s._psame)  # what was found of it, at one event, is not reused
    assert twin._by_parts("kind") is None
    assert twin.indices_where("kind", "request") == [1] and b.indices_where("kind", "gpu") == [0]
