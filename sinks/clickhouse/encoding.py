"""Records to rows, and rows to the bytes of an insert: pure functions, no I/O.

A row is a tuple in the order of its table's columns (:data:`schema.TABLES`); a batch of rows
is sent as ``JSONCompactEachRow``, one ``orjson.dumps`` call for the whole batch. Times stay
the integers of nanoseconds the pipeline already has: the table turns them into DateTime64.

The events of an ``EventBatch`` become columns instead (:func:`event_columns`: the same values
as :meth:`EventEncoder.row`, one list per column), sent as an Arrow stream
(:func:`arrow_columns`, :func:`arrow_stream`) that stores what the JSON of the same rows
stores; a block with a value of another type is sent as JSON rows.

Events sit in the hot path, so their rows are built by one ``itemgetter`` call over the
fields of their kind; everything else an event carries goes to ``extra`` as a JSON object.
Alerts, actions and dead letters are few: they are checked field by field on the way in.

>>> enc = EventEncoder("request")
>>> e = {"kind": "request", "ts": 1, "source": "nginx_combined", "id": "a.log:1", "principal": None,
...      "src_ip": "10.0.0.1", "model": None, "path": "/", "status": 200, "latency_ms": 5.0,
...      "tokens_in": None, "tokens_out": None, "method": "GET"}
>>> enc.row(e)
('a.log:1', 1, 'nginx_combined', None, '10.0.0.1', None, '/', 200, 5.0, None, None, {'method': 'GET'})
>>> encode_rows([enc.row(e)])[0]
b'["a.log:1",1,"nginx_combined",null,"10.0.0.1",null,"/",200,5.0,null,null,{"method":"GET"}]'
>>> enc.record(enc.row(e)) == e
True
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable, Mapping, Sequence
from operator import itemgetter
from typing import Any

import orjson

from ramparts.events import KIND_FIELDS
from ramparts.timeutil import parse_iso

from .schema import EVENT_TABLES, SEVERITIES, TABLES, Column

INT64_MIN, INT64_MAX = -(1 << 63), (1 << 63) - 1

_dumps = orjson.dumps


def any_json(record: Any, sort_keys: bool = False) -> bytes:
    """JSON of anything, for records that may not be JSON-clean (a dead letter's ``raw``)."""
    try:
        return _dumps(record, default=repr,
                      option=orjson.OPT_NON_STR_KEYS | (orjson.OPT_SORT_KEYS if sort_keys else 0))
    except (TypeError, orjson.JSONEncodeError):
        # orjson stops at integers beyond 64 bits; the standard library writes them.
        return json.dumps(record, default=repr, skipkeys=True, sort_keys=sort_keys).encode()


def content_id(record: Mapping[str, Any]) -> str:
    """A stable id for a record that came without one: the same content gives the same id."""
    return "h:" + hashlib.blake2b(any_json(record, sort_keys=True), digest_size=12).hexdigest()


class EventEncoder:
    """Rows of the table of one event kind."""

    __slots__ = ("kind", "table", "fields", "columns", "get", "plain", "known", "json_at", "extras_by_len")

    def __init__(self, kind: str):
        self.kind = kind
        self.table = EVENT_TABLES[kind]
        cols = TABLES[self.table][:-1]  # all but extra
        self.fields = tuple(c.field for c in cols)
        self.columns = tuple(c.name for c in TABLES[self.table])
        self.get = itemgetter(*self.fields)
        # An event that has every field of its kind, plus `kind`, and nothing else has len == plain.
        self.plain = len(self.fields) + 1
        self.known = frozenset(self.fields) | {"kind"}
        self.json_at = tuple(i for i, c in enumerate(cols) if c.type == "json")
        # The extra keys last seen on an event of each size. A parser gives its events the same
        # keys every time, and an event that has every field of its kind, `kind`, and all of
        # the remembered keys, and has as many keys as they add up to, has no others: its
        # extras are those keys, read by one itemgetter instead of a scan of the whole event.
        self.extras_by_len: dict[int, tuple[tuple[str, ...], Any]] = {}

    def row(self, e: dict) -> tuple:
        """The row of one event (the loop in ``ClickHouseSink.write_events`` inlines this)."""
        try:
            row = self.get(e)
        except KeyError:
            return self.row_slow(e)
        n = len(e)
        if n == self.plain:
            row += (None,)
        else:
            row += (self.extras(e, n),)
        if self.json_at:
            row = self.fix_json(row)
        return row

    def extras(self, e: dict, n: int) -> dict:
        """The fields of ``e`` that have no column (``e`` has every field of its kind, and ``n`` keys)."""
        seen = self.extras_by_len.get(n)
        if seen is not None:
            keys, get = seen
            try:
                values = get(e)
            except KeyError:
                pass
            else:
                return dict(zip(keys, values)) if len(keys) > 1 else {keys[0]: values}
        known = self.known
        extra = {k: v for k, v in e.items() if k not in known}
        if len(self.extras_by_len) < 64:  # bounded: sizes are few unless something is odd
            self.extras_by_len[n] = (tuple(extra), itemgetter(*extra))
        return extra

    def row_slow(self, e: dict) -> tuple:
        """The row of an event that lacks some field of its kind (absent is stored as NULL)."""
        get = e.get
        values = [get(f) for f in self.fields]
        if values[0] is None:
            values[0] = content_id(e)
        known = self.known
        extra = {k: v for k, v in e.items() if k not in known}
        row = (*values, extra or None)
        return self.fix_json(row) if self.json_at else row

    def fix_json(self, row: tuple) -> tuple:
        # A JSON column holds JSON text: arrays and objects arrive as such, but a plain
        # string would be stored bare, so it is encoded here.
        for i in self.json_at:
            if type(row[i]) is str:
                values = list(row)
                for j in self.json_at:
                    if type(values[j]) is str:
                        values[j] = _dumps(values[j]).decode()
                return tuple(values)
        return row

    def record(self, row: tuple) -> dict:
        """The event a row was built from (for a dead-letter record of a row that cannot be stored)."""
        e = {"kind": self.kind}
        e.update(zip(self.fields, row))
        for i in self.json_at:
            v = e[self.fields[i]]
            if type(v) is str:
                try:
                    e[self.fields[i]] = orjson.loads(v)
                except orjson.JSONDecodeError:
                    pass
        if row[-1]:
            e.update(row[-1])
        return e


ENCODERS: dict[str, EventEncoder] = {kind: EventEncoder(kind) for kind in KIND_FIELDS}


def encode_rows(rows: Sequence[tuple]) -> tuple[bytes, list[tuple[int, str]]]:
    """A JSONCompactEachRow block of ``rows``, and the rows left out with why.

    The block is one ``orjson.dumps`` of the whole list (rows separated by commas, which
    ClickHouse accepts between rows); only when that fails is each row encoded alone, to
    find the ones that cannot be written as JSON.
    """
    try:
        return _dumps(rows)[1:-1], []
    except (TypeError, orjson.JSONEncodeError):
        pass
    parts, bad = [], []
    for i, row in enumerate(rows):
        try:
            parts.append(_dumps(row))
        except (TypeError, orjson.JSONEncodeError) as e:
            bad.append((i, f"a value cannot be written as JSON: {e}"))
    return b",".join(parts), bad


def check_value(col: Column, v: Any) -> str | None:
    """What is wrong with a value for a column, or None (mirrors what ClickHouse rejects or corrupts)."""
    if v is None:
        return None if col.nullable or col.type in ("str", "json") else f"{col.field} is missing"
    t = col.type
    if t in ("int", "time"):
        if type(v) is not int:
            return f"{col.field} has type {type(v).__name__}, expected int"
        if not INT64_MIN <= v <= INT64_MAX:
            return f"{col.field} is out of the 64-bit range: {v}"
    elif t == "float":
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            return f"{col.field} has type {type(v).__name__}, expected a number"
    elif t == "str":
        if isinstance(v, (bytes, bytearray)):
            return f"{col.field} is bytes, expected text"
    return None


def check_row(table: str, row: tuple) -> str | None:
    """The first problem of a row, or None."""
    for col, v in zip(TABLES[table], row):
        problem = check_value(col, v)
        if problem:
            return problem
    return None


# -- alerts, actions, dead letters -------------------------------------------------------

def time_ns(value: Any, name: str, required: bool = True) -> int | None:
    """A time field as int nanoseconds: ints pass, RFC 3339 text is parsed."""
    if value is None:
        if required:
            raise ValueError(f"{name} is missing")
        return None
    if type(value) is int:
        return value
    if isinstance(value, str):
        try:
            return parse_iso(value)
        except ValueError:
            raise ValueError(f"{name} is not an RFC 3339 time: {value!r}") from None
    raise ValueError(f"{name} has type {type(value).__name__}, expected int nanoseconds or RFC 3339 text")


def _as_text(v: Any, name: str, required: bool = False) -> str:
    if v is None or v == "":
        if required:
            raise ValueError(f"{name} is missing")
        return ""
    if isinstance(v, (str, int, float)) and not isinstance(v, bool):
        return str(v)
    raise ValueError(f"{name} has type {type(v).__name__}, expected text")


def _text(d: Mapping, name: str, required: bool = False) -> str:
    return _as_text(d.get(name), name, required)


def _pair(d: Mapping, outer: str, key: str, flat: str) -> Any:
    nested = d.get(outer)
    if isinstance(nested, Mapping) and key in nested:
        return nested[key]
    return d.get(flat)


_ALERT_KNOWN = frozenset({"id", "ts", "detector", "severity", "entity", "entity_type", "entity_id", "score",
                          "summary", "evidence", "window", "window_start", "window_end", "first_event_ts",
                          "event_count", "updated_at"})


def alert_row(a: Mapping[str, Any]) -> tuple:
    """The row of an alert (SPEC.md, "Alerts"); raises ValueError saying what is wrong.

    ``entity`` and ``window`` may be nested (``{"type", "id"}``, ``{"start", "end"}``) or flat
    (``entity_type``...); times are int nanoseconds or RFC 3339 text. ``updated_at`` (the
    version: the latest wins) defaults to ``ts``.
    """
    ts = time_ns(a.get("ts"), "ts")
    severity = _text(a, "severity", required=True)
    if severity not in SEVERITIES:
        raise ValueError(f"severity {severity!r} is not one of {', '.join(SEVERITIES)}")
    score = a.get("score")
    if score is not None and (isinstance(score, bool) or not isinstance(score, (int, float))):
        raise ValueError(f"score has type {type(score).__name__}, expected a number")
    if score is not None and not math.isfinite(score):
        score = None  # JSON has no NaN: stored as NULL, "no usable score"
    count = a.get("event_count")
    if count is None:
        count = 0
    elif type(count) is not int:
        raise ValueError(f"event_count has type {type(count).__name__}, expected int")
    entity_type = _pair(a, "entity", "type", "entity_type")
    entity_id = _pair(a, "entity", "id", "entity_id")
    extra = {k: v for k, v in a.items() if k not in _ALERT_KNOWN}
    return (
        _text(a, "id", required=True), ts, _text(a, "detector", required=True), severity,
        _as_text(entity_type, "entity.type", required=True), _as_text(entity_id, "entity.id", required=True),
        score, _text(a, "summary"), a.get("evidence") if a.get("evidence") is not None else {},
        time_ns(_pair(a, "window", "start", "window_start"), "window.start", required=False),
        time_ns(_pair(a, "window", "end", "window_end"), "window.end", required=False),
        time_ns(a.get("first_event_ts"), "first_event_ts", required=False),
        count, time_ns(a.get("updated_at", ts), "updated_at"), extra or None,
    )


_ACTION_KNOWN = frozenset({"id", "ts", "alert_id", "playbook", "step", "action", "target", "mode", "status",
                           "detail", "updated_at"})


def action_row(a: Mapping[str, Any]) -> tuple:
    """The row of a playbook action record; raises ValueError saying what is wrong."""
    ts = time_ns(a.get("ts"), "ts")
    extra = {k: v for k, v in a.items() if k not in _ACTION_KNOWN}
    return (
        _text(a, "id", required=True), ts, _text(a, "alert_id"), _text(a, "playbook"), _text(a, "step"),
        _text(a, "action", required=True), _text(a, "target"), _text(a, "mode"), _text(a, "status"),
        a.get("detail") if a.get("detail") is not None else {},
        time_ns(a.get("updated_at", ts), "updated_at"), extra or None,
    )


_DEAD_KNOWN = frozenset({"id", "ts", "source", "file", "line", "item", "reason", "raw"})


def dead_letter_row(d: Mapping[str, Any], now_ns: int) -> tuple:
    """The row of a dead-letter record (``DeadLetter.to_dict``, or the sink's own).

    Its id, when it has none, is its position (``file:line`` or ``file:line#item``), so a
    record written again after a redelivery replaces itself.
    """
    file = _text(d, "file")
    line, item = d.get("line"), d.get("item")
    for name, v in (("line", line), ("item", item)):
        if v is not None and type(v) is not int:
            raise ValueError(f"{name} has type {type(v).__name__}, expected int")
    rid = _text(d, "id")
    if not rid and file and line is not None:
        rid = f"{file}:{line}" + (f"#{item}" if item is not None else "")
    elif not rid:
        rid = content_id(d)
    raw = d.get("raw")
    if isinstance(raw, (bytes, bytearray)):
        raw = bytes(raw).decode("utf-8", "replace")
    elif raw is not None and not isinstance(raw, str):
        raw = any_json(raw).decode()
    extra = {k: v for k, v in d.items() if k not in _DEAD_KNOWN}
    return (rid, time_ns(d.get("ts", now_ns), "ts"), _text(d, "source") or "?", file, line, item,
            _text(d, "reason"), raw or "", extra or None)


def record_dead_letter(record: Mapping[str, Any], reason: str, now_ns: int, stage: str = "store") -> dict:
    """A dead-letter record for a record the store could not take (an event, alert or action)."""
    rid = record.get("id")
    return {
        "id": f"{stage}:{rid if isinstance(rid, str) and rid else content_id(record)}",
        "ts": now_ns,
        "source": record.get("source") if isinstance(record.get("source"), str) else (
            record.get("detector") if isinstance(record.get("detector"), str) else "?"),
        "file": rid if isinstance(rid, str) else "",
        "reason": f"{stage}: {reason}",
        "raw": any_json(record).decode(),
    }


# -- columns: the events of an EventBatch, and Arrow inserts ---------------------------------

def event_columns(enc: EventEncoder, fields: tuple[str, ...], get: Callable[[str], list], n: int) -> list[list] | None:
    """The columns of ``n`` events of ``enc.kind`` that all have the keys ``fields`` (one part's
    keys: a columnar parser's): ``get(field)`` reads one field of every event, in order. The same
    values as :meth:`EventEncoder.row` gives each event, as one list per column of the table
    (``extra`` last, a dict or ``None`` per event); ``None`` when some event needs the per-event
    path (no ``id`` key, or a kind field missing where an id is ``None``: a content id).

    ``get``'s lists are shared (``EventBatch.values_where``): they are never changed here.
    """
    have = set(fields)
    if "id" not in have:
        return None
    cols: list[list] = []
    missing = False
    for f in enc.fields:
        if f in have:
            cols.append(get(f))
        else:
            cols.append([None] * n)
            missing = True
    if missing and None in cols[0]:
        return None  # row_slow gives these events a content id
    for i in enc.json_at:
        col = cols[i]
        if str in set(map(type, col)):  # as fix_json: a plain string is stored as its JSON text
            cols[i] = [_dumps(v).decode() if type(v) is str else v for v in col]
    known = enc.known
    keys = [f for f in fields if f not in known]
    if not keys:
        cols.append([None] * n)
    elif len(keys) == 1:
        k = keys[0]
        cols.append([{k: v} for v in get(k)])
    else:
        cols.append([dict(zip(keys, r)) for r in zip(*[get(k) for k in keys])])
    return cols


_NONE_T = type(None)
_STR_T = frozenset({str, _NONE_T})
_INT_T = frozenset({int, _NONE_T})
_FLOAT_T = frozenset({int, float, _NONE_T})
_JSON_T = frozenset({str, list, dict, _NONE_T})
_INF = (math.inf, -math.inf)
_EXACT = 1 << 53  # integers a double holds exactly


def _json_texts(values: list, types: set, n: int) -> list | None:
    """JSON text (bytes) of each value of a JSON column, ``None`` kept; ``None`` if one cannot be written."""
    if types == {dict} or types == {list}:
        # One orjson call for the column, cut between its values: ``},{`` (``],[``) stands
        # only between two values unless a string holds it, and then the count is off by one.
        close, open_ = (b"}", b"{") if dict in types else (b"]", b"[")
        try:
            body = _dumps(values)[1:-1]
        except (TypeError, orjson.JSONEncodeError):
            return None
        pieces = body.replace(close + b"," + open_, close + b"\n" + open_).split(b"\n")
        if len(pieces) == n:
            return pieces
    out = []
    for v in values:
        if v is None or type(v) is str:
            out.append(v)  # a string here is JSON text already (fix_json)
            continue
        try:
            out.append(_dumps(v))
        except (TypeError, orjson.JSONEncodeError):
            return None
    return out


def arrow_columns(table: str, cols: list[list]) -> Any:
    """A ``pyarrow.Table`` of a block of rows given as columns (one list per column of ``table``,
    in :data:`schema.TABLES` order), holding exactly what the ``JSONCompactEachRow`` insert of the
    same rows stores; ``None`` when a value is not of the plain types this covers (a string where
    a number belongs, an integer beyond 64 bits, bytes...): such a block goes as JSON, whose path
    finds the values ClickHouse refuses and sends their rows to the dead letters.

    NaN and infinities are NULL (orjson writes them as ``null``); ``extra`` is its JSON text or
    ``''`` (the column's default, what ``null`` becomes).
    """
    import pyarrow as pa

    arrays, names = [], []
    for col, values in zip(TABLES[table], cols):
        types = set(map(type, values))
        t = col.type
        if not col.nullable and _NONE_T in types and col.name != "extra":
            return None
        try:
            if t == "str":
                if not types <= _STR_T:
                    return None
                arr = pa.array(values, type=pa.string())
            elif t in ("int", "time"):
                if not types <= _INT_T:
                    return None
                arr = pa.array(values, type=pa.int64())
            elif t == "float":
                if not types <= _FLOAT_T:
                    return None
                if int in types and any(type(v) is int and not -_EXACT <= v <= _EXACT for v in values):
                    return None  # JSON carries the integer's digits (or cannot: beyond 64 bits)
                if float in types and any(v in _INF for v in values if type(v) is float):
                    values = [None if type(v) is float and v in _INF else v for v in values]
                arr = pa.array(values, type=pa.float64(), from_pandas=True)  # NaN: null
            else:  # json
                if not types <= _JSON_T:
                    return None
                n = len(values)
                if col.name == "extra" and _NONE_T in types:
                    present = [v for v in values if v is not None]
                    texts = _json_texts(present, types - {_NONE_T}, len(present)) if present else []
                    if texts is None:
                        return None
                    it = iter(texts)
                    texts = [b"" if v is None else next(it) for v in values]
                else:
                    texts = _json_texts(values, types, n)
                    if texts is None:
                        return None
                arr = pa.array(texts, type=pa.binary())
        except (pa.ArrowException, OverflowError, TypeError, ValueError):
            return None
        arrays.append(arr)
        names.append(col.name)
    return pa.Table.from_arrays(arrays, names=names)


def arrow_stream(data: Any) -> bytes:
    """The Arrow IPC stream of a ``pyarrow.Table`` (what ``INSERT ... FORMAT ArrowStream`` reads)."""
    import pyarrow as pa

    out = pa.BufferOutputStream()
    with pa.ipc.new_stream(out, data.schema) as w:
        w.write_table(data)
    return out.getvalue().to_pybytes()
