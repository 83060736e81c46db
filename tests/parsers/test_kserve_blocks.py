"""The KServe parser's block path (twelfth session: a block of lines decoded and made into halves column
by column, joined with one loop that makes no row, the predictions' columns built from the halves'
columns) against a frozen copy of the loop it replaced (97255b8's ``parse_batch``, ``parse_chunk``,
``_parse_rows`` and ``_fast_half``, line by line): the same events (values and types), ids, dead letters,
counts and notes, and the same halves left waiting, on any sequence of lines cut into chunks and blocks
of any size, with ``max_pending`` small enough to evict. Most lines are of the block path's common shape
(KServe's time spelling, in runs of one second), so that whole blocks take it, beside the lines that
send a block line by line. Derandomized hypothesis.
"""

import copy
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ramparts.events import EventBatch, LineIds
from ramparts.redact import Hasher
from ramparts.streams.parsers.base import DeadLetter, is_utf8
from ramparts.streams.parsers.kserve import (_NO_HEADERS, _ONE, _UNSET, FIELDS, REQUEST_TYPE, RESPONSE_TYPE,
                                             STAMPED_FIELDS, KServeParser, _block_times, _fast_tensor, _ids)
from ramparts.timeutil import _UTC_SECONDS, parse_iso

from .test_kserve_fastpath import _OTHER_LINES, PAIRS, _chunked, dumps
from .test_kserve_loop import _SERVICE, _SOURCES, _TIMES

PROPERTY = settings(max_examples=400, deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.too_slow])


class Frozen(KServeParser):
    """97255b8's parse_batch, parse_chunk, loop and fast path, as they were (line by line)."""

    def parse_batch(self, records: list[bytes], origin: str, first_line: int,
                    dead: list[DeadLetter]) -> EventBatch:
        """The chunk's predictions as one :class:`~ramparts.events.Columns` part: a row tuple per
        prediction, turned into columns at the end; no dict is made for any of them."""
        rows, ids, ks = self._parse_rows(records, origin, first_line, dead)
        if not rows:
            return EventBatch()
        cols = dict(zip(FIELDS, map(list, zip(*rows))))
        # Every row is ("prediction", ts, "kserve", ...) (_parse_rows): the batch's indices take kind and
        # source so, without reading their columns.
        if ids is None:
            return EventBatch.from_columns(FIELDS, cols, len(rows), one=_ONE)
        if ks:
            cols["id"] = _ids(origin, ids, ks)
            return EventBatch.from_columns(STAMPED_FIELDS, cols, len(rows), one=_ONE)
        # Every id "<origin>:<line>.0": made when first read (a lazy field of the Columns; replay reads few).
        return EventBatch.from_columns(STAMPED_FIELDS, cols, len(rows), {"id": (LineIds(origin, ".0"), ids)},
                                      one=_ONE)

    def parse_chunk(self, records: list[bytes], origin: str, first_line: int,
                    events: list[dict], dead: list[DeadLetter]) -> None:
        """:meth:`parse_batch`'s predictions as dicts (what the worker's raw stage reads)."""
        rows, ids, ks = self._parse_rows(records, origin, first_line, dead)
        if ids is None:
            events.extend([dict(zip(FIELDS, r)) for r in rows])
        else:
            events.extend([dict(zip(STAMPED_FIELDS, (*r, i))) for r, i in zip(rows, _ids(origin, ids, ks))])

    def _parse_rows(self, records: list[bytes], origin: str, first_line: int,
                    dead: list[DeadLetter]) -> tuple[list[tuple], list[int] | None, dict[int, int]]:
        """The loop of :meth:`Parser.parse_chunk`, over rows (tuples in ``FIELDS`` order) instead of
        dicts: (the rows, in record order; when ``stamp_ids`` the line of each, else None; the rows
        whose ``k`` is not 0, with it). Every record is parsed, skipped or dead-lettered and counted as
        there; ids are ``<origin>:<line>.<k>`` (:func:`_ids`), ``k`` the row's place among its line's."""
        self._origin = origin
        self._dead = dead
        stats = self.stats
        fast = self._fast
        fast_half = self._fast_half
        general = self._general_rows
        pending = self._pending
        max_pending = self._max_pending
        join = self._join
        rows: list[tuple] = []
        append = rows.append
        ids: list[int] | None = [] if self.stamp_ids else None
        ks: dict[int, int] = {}  # position in rows -> k, where k is not 0
        line = first_line - 1
        parsed = skipped = 0
        for raw in records:
            line += 1
            # The fast path (``_fast_half_of``, inline): msgspec may not check the UTF-8 of every
            # byte it reads past, orjson does, so a line that is not UTF-8 goes to the general path.
            half = None
            if fast is not None and (raw.isascii() or is_utf8(raw)):
                try:
                    half = fast_half(fast(raw))
                except Exception:  # not this shape, a type the Structs do not take, bad JSON or data
                    pass  # (None for a blank line too: msgspec reads no JSON there)
            if half is not None:
                parsed += 1
                # The join (``_pair``, its common cases inline): a half whose partner is waiting
                # makes the prediction; one that comes first waits, unless the map is full.
                ce_id = half[1]
                other = pending.pop(ce_id, None)
                if other is None:
                    pending[ce_id] = half
                    if len(pending) <= max_pending:
                        continue
                    self.note("pending_evicted")
                    row = self._alone(pending.pop(next(iter(pending))))
                elif other[14] == half[14]:
                    self.note("duplicate_ids")
                    pending[ce_id] = half
                    row = self._alone(other)
                elif half[14]:
                    row = join(half, other)
                else:
                    row = join(other, half)
                append(row)
                if ids is not None:
                    ids.append(line)
                continue
            self._line = line
            if not raw or raw.isspace():
                skipped += 1
                continue
            try:
                out = general(raw)
            except Exception as e:  # any failure of one record is that record's problem
                self.record_failed(dead, origin, line, e, raw)
                continue
            if out is None:
                skipped += 1
                continue
            parsed += 1
            if out:
                if ids is not None:
                    ids.extend([line] * len(out))
                    for k in range(1, len(out)):
                        ks[len(rows) + k] = k
                rows.extend(out)
        self._line = line
        stats.parsed += parsed
        stats.skipped += skipped
        stats.records += len(records)
        stats.events += len(rows)
        return rows, ids, ks

    def _fast_half(self, d: Any) -> tuple | None:
        """A line decoded by the fast path (``_compile_fast``) to its half, as ``_one`` and
        ``_half`` would give it; None for the general path to decide (other event types,
        bodies it would note or reject). Nothing is noted here, so a fallback counts nothing twice."""
        t = d.type
        if t == REQUEST_TYPE:
            is_request = True
        elif t == RESPONSE_TYPE:
            is_request = False
        else:
            return None
        ce_id = d.id
        if not ce_id:
            return None
        # parse_iso's common spelling inline (KServe stamps 'YYYY-MM-DDTHH:MM:SS.ffffffZ'): its
        # cache of seconds read, and the microseconds; anything else is parse_iso's to read.
        # The second of the last such time is kept: a time in that second is read with no slice of it
        # looked up (times come in runs of one second).
        t = d.time
        if t.startswith(self._last_head) and len(t) == 27 and t[26] == "Z" and t[19] == ".":
            frac = t[20:26]
            ts = self._last_base + int(frac) * 1000 if frac.isdigit() else parse_iso(t)
        else:
            head = t[:19]
            base = _UTC_SECONDS.get(head)
            if base is not None and len(t) == 27 and t[26] == "Z" and t[10] == "T" and t[19] == ".":
                self._last_head, self._last_base = head, base
                frac = t[20:26]
                ts = base + int(frac) * 1000 if frac.isdigit() else parse_iso(t)
            else:
                ts = parse_iso(t)

        meta = d.metadata
        attrs = self._fast_attrs(d)
        if attrs == self._no_attrs:  # the common case: who and where come from the metadata alone
            ident = self._idents.get(meta)
            if ident is None:
                ident = self._ident(meta, _NO_HEADERS)
        else:
            key = (meta, attrs)
            ident = self._idents.get(key)
            if ident is None:
                ident = self._ident(key, {k: v for k, v in zip(self._attr_names, attrs) if v is not None})

        body = d.data
        if body is None:
            values = protocol = names = model_name = model_version = None
        else:
            model_name = body.model_name or None
            model_version = body.model_version or None
            if is_request:
                v1, v2 = body.instances, body.inputs
            else:
                v1, v2 = body.predictions, body.outputs
            names = None
            if v1 is not _UNSET:
                values, protocol = v1, "v1"
            elif v2 is not _UNSET:
                if not v2:
                    values, protocol = v2, "v1"  # an empty list: the general path's TF-style reading
                else:
                    protocol = "v2"
                    if len(v2) == 1:
                        t0 = v2[0]
                        values = t0.data
                        shape = t0.shape
                        if shape is not None and len(shape) > 1:
                            # One row of the whole length (a single instance): [data], else reshaped.
                            if (len(shape) == 2 and shape[0] == 1 and shape[1] == len(values) and values
                                    and type(values[0]) is not list):
                                values = [values]
                            else:
                                values = _fast_tensor(t0)
                        names = self._names.get(t0.name)
                        if names is None:
                            names = self._shared_names((t0.name,))
                    else:
                        values = [_fast_tensor(x) for x in v2]
                        names = self._shared_names(tuple([x.name for x in v2]))
            elif model_name is not None or body.id is not _UNSET:
                values, protocol = None, "v2"
            else:
                return None  # unknown_bodies: noted by the general path
        # The service's attributes and the model its source names, remembered per their texts: one str
        # per distinct value kept by the events (fewer objects to free), one lookup per line.
        key = (d.source, d.inferenceservicename, d.namespace, d.component, d.endpoint)
        ctx = self._contexts.get(key)
        if ctx is None:
            ctx = self._context(key)
        return (ts, ce_id, ident[0], ident[1], values, protocol, names, model_name, model_version,
                ctx[0], ctx[1], ctx[2], ctx[3], ctx[4], is_request)


def _outcome(parser_cls, lines: list[bytes], cuts: list[int], stamp: bool, options, columnar: bool, block: int):
    parser = parser_cls(options, hasher=Hasher(b"t"))
    parser._block_lines = block
    parser._block_min_lines = 1
    out = _chunked(parser, b"\n".join(lines), stamp, cuts, columnar=columnar)
    return out, list(parser._pending.items())


# Times of the common spelling, in two seconds (a block of one second's times is read at once).
_COMMON_TIMES = ["2026-11-01T00:00:00.035923Z", "2026-11-01T00:00:00.039164Z", "2026-11-01T00:00:00.000000Z",
                 "2026-11-01T00:00:00.999999Z", "2026-11-01T00:00:01.000001Z"]


@st.composite
def _line(draw) -> bytes:
    kind = draw(st.integers(0, 19))
    if kind == 0:
        return draw(st.sampled_from(_OTHER_LINES + [b"\xff{}", b"\r", b" \t", "{\"x\": \"\u00e9\"}".encode()]))
    doc = copy.deepcopy(PAIRS[draw(st.integers(0, len(PAIRS) - 1))][draw(st.integers(0, 1))])
    doc["id"] = draw(st.sampled_from("abcdef"))
    doc["time"] = draw(st.sampled_from(_COMMON_TIMES if kind > 3 else _TIMES))
    if kind <= 5:
        doc["source"] = draw(st.sampled_from(_SOURCES))
    if kind <= 7:
        for name, values in _SERVICE.items():
            if draw(st.integers(0, 3)) == 0:
                doc[name] = draw(st.sampled_from(values))
    if kind == 1:
        doc["principal"] = draw(st.sampled_from(["alice", "", 5, None]))
    if kind == 2:  # a body the fast path leaves to the general path, or refuses
        doc["data"] = draw(st.sampled_from([None, {}, {"unknown": 1}, {"id": "x"}, "opaque", [[1.0]],
                                            {"inputs": [{"name": "x", "shape": [2, 3], "data": [1, 2]}]},
                                            {"outputs": [{"name": "y", "shape": [2, 2], "data": [1, 2, 3, 4]}]},
                                            {"instances": [[1e300]], "model_name": ""}]))
    if kind == 3:
        doc["metadata"] = draw(st.sampled_from(["", "{}", "{", '{"X-Api-Key":["sk-proj-0123456789abcdefghijkl"]}',
                                                '{"X-User-Id":[5]}', '{"X-Forwarded-For":["10.0.0.9, 10.0.0.1"]}']))
    raw = dumps(doc)
    if kind == 4:  # cut short: bad JSON
        raw = raw[:draw(st.integers(0, len(raw)))]
    return raw


@PROPERTY
@given(lines=st.lists(_line(), min_size=1, max_size=40), cuts=st.lists(st.integers(0, 40), max_size=4),
       options=st.sampled_from([None, {"max_pending": 1}, {"max_pending": 2}, {"principal_attribute": "source"}]),
       stamp=st.booleans(), columnar=st.booleans(), block=st.sampled_from([1, 2, 3, 5, 8, 256]))
def test_the_block_path_gives_what_the_frozen_loop_gave(lines, cuts, options, stamp, columnar, block):
    new = _outcome(KServeParser, lines, cuts, stamp, options, columnar, block)
    assert new == _outcome(Frozen, lines, cuts, stamp, options, columnar, block)


def test_the_frozen_loop_is_the_old_one():
    # A guard against a frozen copy that drifted into calling the new code.
    assert Frozen.parse_batch is not KServeParser.parse_batch and Frozen._parse_rows is not KServeParser._parse_rows
    lines = [dumps(d) for pair in PAIRS for d in pair]
    assert _outcome(KServeParser, lines, [], True, None, True, 2) == _outcome(Frozen, lines, [], True, None, True, 2)


def _common_lines(n: int) -> list[bytes]:
    """``n`` pairs of the first shape, each request followed by its response, in one second."""
    req, resp = PAIRS[0]
    out = []
    for i in range(n):
        out.append(dumps({**req, "id": f"id{i}", "time": f"2026-11-01T00:00:00.{2 * i:06d}Z"}))
        out.append(dumps({**resp, "id": f"id{i}", "time": f"2026-11-01T00:00:00.{2 * i + 1:06d}Z"}))
    return out


def test_common_blocks_take_the_block_path(monkeypatch):
    """Blocks of the common shape are read as blocks (the line by line loop is not called), halves swapped or
    split across blocks and chunks; and give what the frozen loop gives."""
    lines = _common_lines(20)
    lines[4], lines[5] = lines[5], lines[4]  # a response before its request
    called = []
    monkeypatch.setattr(KServeParser, "_parse_rows", lambda self, *a: called.append(a) or ([], [], {}))
    for block in (3, 4, 7):
        for cuts in ([], [9], [1, 17, 30]):
            new = _outcome(KServeParser, lines, cuts, True, None, True, block)
            assert new == _outcome(Frozen, lines, cuts, True, None, True, block)
            assert len(new[0][0]) == 20 and not called


def test_a_bad_line_sends_its_block_line_by_line(monkeypatch):
    lines = _common_lines(8)
    lines[5] = lines[5][:-3]  # bad JSON: a dead letter, and its block (lines 4 to 7) line by line
    seen = []
    rows = KServeParser._parse_rows
    monkeypatch.setattr(KServeParser, "_parse_rows", lambda self, records, origin, first, dead:
                        seen.append((first, len(records))) or rows(self, records, origin, first, dead))
    new = _outcome(KServeParser, lines, [], True, None, False, 4)
    assert seen == [(5, 4)]
    assert new == _outcome(Frozen, lines, [], True, None, False, 4)
    assert [d[0] for d in new[0][1]] == [6]


@pytest.mark.parametrize("times", [
    ["2026-11-01T00:00:00.035923Z"] * 3 + ["2026-11-01T00:00:00.03592Z"],  # one of another length
    ["2026-11-01T00:00:00.0359\u00b23Z"] * 2,  # not ASCII
    ["2026-11-01T00:00:00.03592xZ"] * 2, ["2026-11-01T00:00:00,035923Z"] * 2, ["2026-11-01t00:00:00.035923Z"] * 2,
    ["2026-11-01T00:00:00.035923z"] * 2, ["2026-13-01T00:00:00.035923Z"] * 2,  # a bad date
    [f"2026-11-01T00:00:0{i}.035923Z" for i in range(8)],  # too many seconds for the block
])
def test_block_times_refuse_what_the_lines_decide(times):
    assert _block_times(times) is None


def test_short_chunks_go_line_by_line(monkeypatch):
    """A chunk (or its last block) shorter than ``_block_min_lines`` goes line by line: a forwarder's single
    record pays no block's fixed cost."""
    lines = _common_lines(40)  # 80 lines: one block of 64 and one of 16
    seen = []
    rows = KServeParser._parse_rows
    monkeypatch.setattr(KServeParser, "_parse_rows", lambda self, records, origin, first, dead:
                        seen.append((first, len(records))) or rows(self, records, origin, first, dead))
    parser = KServeParser(None, hasher=Hasher(b"t"))
    parser._block_lines = 64
    parser.parse_batch(lines, "t:0", 1, [])
    parser.parse_batch(lines[:1], "t:0", 81, [])
    assert seen == [(65, 16), (81, 1)]


def test_block_times_are_parse_iso():
    times = [f"2026-11-01T00:00:{s:02d}.{f:06d}Z" for s in range(3) for f in (0, 1, 999999, 35923, 500000, 7, 8, 9)]
    _UTC_SECONDS.clear()  # each run's second read whether or not parse_iso's cache holds it
    assert _block_times(times) == [parse_iso(t) for t in times]
    assert _block_times(times) == [parse_iso(t) for t in times]
