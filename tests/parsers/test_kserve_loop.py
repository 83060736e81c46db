"""The KServe parser's loop of the eighth session (the fast path and the join inline in
``_parse_rows``, times of the common spelling read inline, the source's model remembered per
parser; in the tenth, the last second of a time kept and the service's attributes remembered per
their texts) against a frozen copy of the loop it replaced (e1d5517): the same events, ids, dead
letters, counts and notes, and the same halves left waiting, on any sequence of lines cut into
chunks, with ``max_pending`` small enough to evict. Derandomized hypothesis.
"""

import copy
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ramparts.events import EventBatch
from ramparts.redact import Hasher
from ramparts.streams.parsers.base import DeadLetter, is_utf8
from ramparts.streams.parsers.kserve import (_NO_HEADERS, _UNSET, FIELDS, REQUEST_TYPE, RESPONSE_TYPE, STAMPED_FIELDS,
                                             KServeParser, _fast_tensor, _model_from_source)
from ramparts.timeutil import parse_iso

from .test_kserve_fastpath import _OTHER_LINES, PAIRS, _chunked, dumps

PROPERTY = settings(max_examples=400, deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.too_slow])


class Frozen(KServeParser):
    """The loop, fast path and join of e1d5517, as they were (with parse_batch and parse_chunk as df7e0c9 had
    them: the ids made in the loop)."""

    def parse_batch(self, records: list[bytes], origin: str, first_line: int,
                    dead: list[DeadLetter]) -> EventBatch:
        rows, ids = self._parse_rows(records, origin, first_line, dead)
        if not rows:
            return EventBatch()
        cols = dict(zip(FIELDS, map(list, zip(*rows))))
        if ids is None:
            return EventBatch.from_columns(FIELDS, cols, len(rows))
        cols["id"] = ids
        return EventBatch.from_columns(STAMPED_FIELDS, cols, len(rows))

    def parse_chunk(self, records: list[bytes], origin: str, first_line: int,
                    events: list[dict], dead: list[DeadLetter]) -> None:
        rows, ids = self._parse_rows(records, origin, first_line, dead)
        if ids is None:
            events.extend([dict(zip(FIELDS, r)) for r in rows])
        else:
            events.extend([dict(zip(STAMPED_FIELDS, (*r, i))) for r, i in zip(rows, ids)])

    def _parse_rows(self, records: list[bytes], origin: str, first_line: int,
                    dead: list[DeadLetter]) -> tuple[list[tuple], list[str] | None]:
        """The loop of :meth:`Parser.parse_chunk`, over rows (tuples in ``FIELDS`` order) instead of
        dicts: (the rows, in record order; their ids when ``stamp_ids``, else None). Every record is
        parsed, skipped or dead-lettered and counted as there; ids are ``<origin>:<line>.<k>``."""
        self._origin = origin
        self._dead = dead
        stats = self.stats
        fast_half = self._fast_half_of
        pair = self._pair
        general = self._general_rows
        rows: list[tuple] = []
        append = rows.append
        ids: list[str] | None = [] if self.stamp_ids else None
        line = first_line - 1
        parsed = skipped = 0
        for raw in records:
            line += 1
            half = fast_half(raw)  # None for a blank line too: msgspec reads no JSON there
            if half is not None:
                parsed += 1
                row = pair(half)
                if row is not None:
                    append(row)
                    if ids is not None:
                        ids.append(f"{origin}:{line}.0")
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
                rows.extend(out)
                if ids is not None:
                    ids.extend([f"{origin}:{line}.{k}" for k in range(len(out))])
        self._line = line
        stats.parsed += parsed
        stats.skipped += skipped
        stats.records += len(records)
        stats.events += len(rows)
        return rows, ids

    def _fast_half_of(self, raw: bytes) -> tuple | None:
        """The line's half by the fast path, or None for the general path to decide."""
        fast = self._fast
        # msgspec may not check the UTF-8 of every byte it reads past, orjson does: a line that
        # is not UTF-8 is left to the general path (which dead-letters it).
        if fast is not None and (raw.isascii() or is_utf8(raw)):
            try:
                return self._fast_half(fast(raw))
            except Exception:  # not this shape, a type the Structs do not take, bad JSON or data
                return None
        return None

    def _pair(self, half: tuple) -> tuple | None:
        """One half into the join: the prediction's row if its partner was waiting, else it waits
        (and None, unless it pushed out another half: that one's row)."""
        ce_id = half[1]
        pending = self._pending
        other = pending.pop(ce_id, None)
        if other is None:
            pending[ce_id] = half
            if len(pending) > self._max_pending:
                self.note("pending_evicted")
                return self._alone(pending.pop(next(iter(pending))))
            return None
        is_request = half[14]
        if other[14] == is_request:
            self.note("duplicate_ids")
            pending[ce_id] = half
            return self._alone(other)
        if is_request:
            return self._join(half, other)
        return self._join(other, half)

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
        ts = parse_iso(d.time)

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
        return (ts, ce_id, ident[0], ident[1], values, protocol, names, model_name, model_version,
                d.inferenceservicename or None, d.namespace or None, d.component or None, d.endpoint or None,
                _model_from_source(d.source or None), is_request)


def _outcome(parser_cls, lines: list[bytes], cuts: list[int], stamp: bool, options):
    parser = parser_cls(options, hasher=Hasher(b"t"))
    out = _chunked(parser, b"\n".join(lines), stamp, cuts, columnar=True)
    return out, list(parser._pending.items())


# Times: the common spelling (its cache of seconds filled or not), and the spellings next to it
# that parse_iso reads otherwise or refuses.
_TIMES = ["2026-11-01T00:00:00.035923Z", "2026-11-01T00:00:00.039164Z", "2026-11-01T00:00:01.000000Z",
          "2026-11-01T00:00:00.03592Z", "2026-11-01T00:00:00.0359230Z", "2026-11-01T00:00:00Z",
          "2026-11-01T00:00:00,035923Z", "2026-11-01T00:00:00.03592xZ", "2026-11-01T00:00:00.0359\u00b23Z",
          "2026-11-01T00:00:00.\uff10\uff13\uff15\uff19\uff12\uff13Z", "2026-11-01T00:00:00.035923z",
          "2026-11-01T00:00:00.035923+00:00", "2026-11-01 00:00:00.035923Z", "2026-11-01t00:00:00.035923Z",
          "2026-11-01T00:00:60.035923Z", "2026-13-01T00:00:00.035923Z", "2026-11-01T00:00:00.-35923Z",
          "2026-11-01T00:00:00.+35923Z", "2026-11-01T00:00:00. 35923Z", "1969-12-31T23:59:59.999999Z",
          "2026-11-01T00:00:0\u00b2.035923Z", "2026-11-01T00:00:00x035923Z", "2026-11-01T00:00:00:035923Z", "",
          "2026-11-01T00:00:00.03592ZZ", "2026-11-01T00:00:00.0359231", "2026-11-01T00:00:00.\u00b235923Z",
          "2026-11-01T00:00:00.035923Z\u00b2"]
# The service's attributes: remembered per their texts with the source (tenth session).
_SERVICE = {"inferenceservicename": ["fraud-xgb", "llm", "", None], "namespace": ["models", "", None],
            "component": ["predictor", "transformer", None], "endpoint": ["default", "canary", "", None]}
_SOURCES = ["http://localhost:9081/", "http://fraud-xgb-predictor-default.models.svc/", "http://10.0.0.1/",
            "http://[::1]:80/", "http://bad[", "/", "", None]


@st.composite
def _line(draw) -> bytes:
    if draw(st.integers(0, 9)) == 0:
        return draw(st.sampled_from(_OTHER_LINES + [b"\xff{}", b"\r", b" \t"]))
    doc = copy.deepcopy(PAIRS[draw(st.integers(0, len(PAIRS) - 1))][draw(st.integers(0, 1))])
    doc["id"] = draw(st.sampled_from("abcdef"))
    doc["time"] = draw(st.sampled_from(_TIMES))
    doc["source"] = draw(st.sampled_from(_SOURCES))
    for name, values in _SERVICE.items():
        if draw(st.integers(0, 3)) == 0:
            doc[name] = draw(st.sampled_from(values))
    if draw(st.integers(0, 5)) == 0:
        doc["principal"] = draw(st.sampled_from(["alice", "", 5]))
    raw = dumps(doc)
    if draw(st.integers(0, 7)) == 0:  # cut short: bad JSON
        raw = raw[:draw(st.integers(0, len(raw)))]
    return raw


@PROPERTY
@given(lines=st.lists(_line(), min_size=1, max_size=40), cuts=st.lists(st.integers(0, 40), max_size=4),
       options=st.sampled_from([None, {"max_pending": 1}, {"max_pending": 2}, {"principal_attribute": "source"}]),
       stamp=st.booleans(), fill=st.booleans())
def test_the_loop_gives_what_the_frozen_loop_gave(lines, cuts, options, stamp, fill):
    if fill:  # the cache of seconds parse_iso keeps, filled or not for the common spelling
        parse_iso("2026-11-01T00:00:00Z")
    new, old = _outcome(KServeParser, lines, cuts, stamp, options), _outcome(Frozen, lines, cuts, stamp, options)
    assert new == old


def test_the_frozen_loop_is_the_old_one():
    # A prediction of each pair, through both: the same rows (a guard against a frozen copy that
    # drifted into calling the new code).
    lines = [dumps(d) for pair in PAIRS for d in pair]
    assert _outcome(KServeParser, lines, [], True, None) == _outcome(Frozen, lines, [], True, None)
    assert Frozen._parse_rows is not KServeParser._parse_rows and Frozen._fast_half is not KServeParser._fast_half


def test_a_line_of_several_predictions_names_each_by_its_place():
    """A CloudEvents batch line whose events make several predictions (ids ``<line>.0``, ``<line>.1`` ...)
    among lines of one each: the ids the frozen loop made, through parse_batch (whose ids are made when
    read, or at once for such a chunk) and parse_chunk."""
    (req_a, resp_a), (req_b, resp_b) = PAIRS[0], PAIRS[1]
    req_b, resp_b = {**req_b, "id": "b"}, {**resp_b, "id": "b"}
    lines = [dumps(req_a), dumps([resp_a, req_b, resp_b]), dumps({**req_a, "id": "c"}), dumps({**resp_a, "id": "c"})]
    for cuts in ([], [1], [2], [3]):
        new, old = _outcome(KServeParser, lines, cuts, True, None), _outcome(Frozen, lines, cuts, True, None)
        assert new == old
        ids = [dict((k, r) for k, _, r in e)["id"] for e in new[0][0]]
        assert ids == ["'t:0:2.0'", "'t:0:2.1'", "'t:0:4.0'"]
        assert _chunked(KServeParser(None, hasher=Hasher(b"t")), b"\n".join(lines), True, cuts, columnar=False) \
            == new[0]
