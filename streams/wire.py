"""The events topics' messages: a batch of events as columns, and back, with no dict per event.

The parse stage sends each partition's events (``events``, ``events.model``) in messages of up
to ``EVENTS_PER_MESSAGE`` events and ``MAX_MESSAGE_BYTES`` bytes (a message over it is cut in
halves); the detect agents read them back into one
:class:`~ramparts.events.EventBatch` per partition. A message is the orjson of::

    {"v": 5, "parts": [{"n": 500, "fields": ["kind", "ts", "id", ...], "cols": {"ts": [...], ...},
                        "same": {"kind": "request", ...}, "types": {"ts": ["int"], ...},
                        "lines": {"id": {"origin": "ramparts.raw.gateway:0:17", "suffix": "", "from": 1, "to": 501}}},
                       {"events": [{...}, ...]}]}

one part per part of the batch, in batch order: a :class:`~ramparts.events.Columns` (what a
columnar parser writes) as its columns, a list of event dicts (what the other parsers write,
and the joins a parser emits at its end) as that list. Times stay int nanoseconds. Reading a
columns part back is one ``orjson.loads`` of a few lists, not a dict of ~24 keys per event.
A column whose values in the message are all one text, or all ``None`` (a part's kind and
source, a gateway's authority and method...), is written once, under ``same`` (absent when
there is none), and read back as a list of that value. A position id column not made yet (a
lazy field of :class:`~ramparts.events.Columns` whose ``make`` is a
:class:`~ramparts.events.LineIds`: ``"<origin>:<line><suffix>"``) is written under ``lines`` as
what it is made from, its origin, its suffix and its line numbers (``from`` and ``to``, a
range up to ``to``, when they follow one another, else the list ``lines``), and read back as a
lazy field again: neither side makes an id text per event unless something reads it (version
4; a column already made, by the parse stage's store say, goes as texts as before). Every field
is in exactly one of ``cols``, ``same`` and ``lines``. The types a parser vouched for in a column
of ``cols`` (:class:`~ramparts.events.Columns`' ``types``: every value's type is one of them) go
under ``types``, as names (``"int"``, ``"float"``, ``"str"``, ``"bool"``, ``"null"``: what orjson
writes and reads back as the same type), and are read back as the part's vouch, so that the detect
stage's :class:`~ramparts.detectors.typed_columns.TypedColumns` need not scan them either (version 5).
A float vouch goes with ``"null"`` added (orjson writes NaN and the infinities as null); a vouch
of another type does not go. The message's vouch is its sender's word, as its ``same`` is: the
reader does not check it against the values (that would be the scan it saves).

Consecutive columns parts of a message with the same fields (and the same fields under ``lines``)
are written as one part (version 6): the parse stage's batch holds a part per raw message, a
partition's message a share of tens of them, and the detect stage pays for every part it reads.
The joined part's lazy ids go as the parts' own entries, one after the other, under ``runs``
(``"lines": {"id": {"runs": [{"origin": ..., "suffix": "", "from": 1, "to": 201}, ...]}}``), and
are read back as one lazy field (:class:`~ramparts.events.LineIdRuns`: a line number and its run's
index in one int64). A column is under ``same`` when every joined part held that one value; a
column's types are vouched for when every part vouched for them.

Version 5 (the fourteenth to eighteenth sessions' workers) is the same without ``runs``, version 4
(the twelfth and thirteenth sessions') without ``types`` either, version 3
(the seventh to eleventh sessions') without ``lines`` either, version 2
(the fifth and sixth sessions') without ``same`` either, and version 1, what workers before it
wrote, a bare JSON array of event dicts; all are still read (a topic may hold such messages
after an upgrade; a worker of an older version sends the newer messages to its dead letters, so
upgrade every worker of a group together). Workers before version 4 stored an event in their
detect stage; from version 4 on the parse stage stores it before the hop. So a detect agent of
``events`` stores the events of a message older than ``STORED_UPSTREAM_FROM`` itself: an event
in flight at an upgrade reaches the store once. Anything else, or a message
whose parts do not hold together (a column of the wrong length, a field both in ``cols`` and
``same``, a part of neither shape), raises :class:`WireError`: the agent sends it to the dead
letters instead of the detectors.

>>> from ramparts.events import EventBatch
>>> b = EventBatch.concat([EventBatch.from_columns(("kind", "ts"), {"kind": ["gpu", "gpu"], "ts": [1, 2]}),
...                        EventBatch([{"kind": "runtime", "ts": 3, "pod": "p"}])])
>>> encode(b.select([1, 2]))
b'{"v":6,"parts":[{"n":1,"fields":["kind","ts"],"cols":{"kind":["gpu"],"ts":[2]}},{"events":[{"kind":"runtime","ts":3,"pod":"p"}]}]}'
>>> m = encode(b)
>>> m
b'{"v":6,"parts":[{"n":2,"fields":["kind","ts"],"cols":{"ts":[1,2]},"same":{"kind":"gpu"}},{"events":[{"kind":"runtime","ts":3,"pod":"p"}]}]}'
>>> decode(m).events == b.events, decode(b'[{"kind":"gpu","ts":1}]').values("ts")
(True, [1])
"""

from __future__ import annotations

import functools
from collections import defaultdict
from operator import itemgetter

import numpy as np
import orjson

from ramparts.events import LINE_MASK, RUN_SHIFT, Columns, EventBatch, LineIdRuns, LineIds

from .keys import MODEL_KINDS, entity_key, partition_for, route_key

VERSION = 6
# From version 4 on the worker that sends a message has stored its events (the parse stage
# writes them before the hop); a detect stage stores the events of an older worker's messages on
# ``events``, as that worker's detect stage would have, so none is missing from the store after
# an upgrade.
STORED_UPSTREAM_FROM = 4
READ_VERSIONS = (2, 3, 4, 5, 6)  # and version 1, a bare array
# The types a message's vouch may name (version 5, ``types``), each read back by orjson as itself.
_TYPE_NAME = {int: "int", float: "float", str: "str", bool: "bool", type(None): "null"}
_NAMED_TYPE = {name: tp for tp, name in _TYPE_NAME.items()}
_FLOAT_WIRED = frozenset((float, type(None)))  # what a float becomes through orjson: NaN and inf are null


class WireError(ValueError):
    """A message of the events topics that is not a batch of events this code can read."""


def _parts(batch: EventBatch) -> list:
    """Parts holding ``batch``'s events in batch order.

    Those of ``batch.pooled()`` when ``batch`` selects its events in increasing order from
    its parts (what :func:`partition_groups` makes of the parse stage's batch): pooling then
    keeps the order. Otherwise (a sorted batch, say) the events as one list of dicts, which
    keeps the order at the cost of the dicts (of the selected events only).
    """
    if not _increasing(batch.layout()[1]):
        return [batch.events]
    return batch.pooled().layout()[0]


def _increasing(order: list[int] | None) -> bool:
    """Whether a batch's ``order`` (``None``: its parts' own) takes its events in (non-decreasing) order."""
    return order is None or all(a <= b for a, b in zip(order, order[1:]))


class KindFields:
    """Which fields a route carries of an event, by its kind: ``by_kind[kind]``, and ``other`` for
    a kind not named (the entity route's projection, ``topics.entity_route_fields``).

    >>> f = KindFields({"gpu": ("kind", "ts", "util_pct")}, ("kind", "ts"))
    >>> f.of("gpu"), f.of("request")
    (('kind', 'ts', 'util_pct'), ('kind', 'ts'))
    >>> f.of_part(Columns(("kind", "ts", "x"), {"kind": ["request", "gpu"], "ts": [1, 2], "x": [3, 4]}, 2))
    ('kind', 'ts', 'util_pct')
    """

    __slots__ = ("by_kind", "other")

    def __init__(self, by_kind: dict[str, tuple[str, ...]], other: tuple[str, ...]):
        self.by_kind = by_kind
        self.other = other

    def of(self, kind: object) -> tuple[str, ...]:
        return self.by_kind.get(kind, self.other) if type(kind) is str else self.other

    def of_part(self, p: Columns) -> tuple[str, ...]:
        """The fields of a columns part: its kind's (a parser's part holds one kind), else those of
        every kind it holds, in the order their first kinds name them."""
        same = p.same("kind")
        if same is not None:
            return self.of(same[0])
        out: dict[str, None] = {}
        for kind in dict.fromkeys(p.cols.get("kind", ())):
            out.update(dict.fromkeys(self.of(kind)))
        return tuple(out)

    def project(self, events: list[dict]) -> list[dict]:
        of = self.of
        return [{k: e[k] for k in of(e.get("kind")) if k in e} for e in events]

    def __eq__(self, other: object) -> bool:
        return isinstance(other, KindFields) and (self.by_kind, self.other) == (other.by_kind, other.other)

    def __repr__(self) -> str:
        return f"KindFields({self.by_kind!r}, {self.other!r})"


Fields = tuple[str, ...] | KindFields | None  # what a message carries of each event


def _project(events: list[dict], fields) -> list[dict]:
    """``events`` with ``fields`` only (a tuple, a :class:`KindFields`; ``None``: as they are)."""
    if fields is None:
        return events
    if type(fields) is KindFields:
        return fields.project(events)
    return [{k: e[k] for k in fields if k in e} for e in events]


def encode(batch: EventBatch, fields: Fields = None) -> bytes:
    """One message of ``batch`` (a selection in increasing order, see :func:`_parts`), with only
    ``fields`` of each event (``None``: every field; the model route's projection)."""
    return _encode_parts(_parts(batch), fields)


def _encode_parts(parts: list, fields: Fields) -> bytes:
    return orjson.dumps({"v": VERSION, "parts": _joined([_entry(p, len(p), None, fields) for p in parts])})


def _entry(p: Columns | list, n: int, get, fields: Fields,
           plan: tuple[tuple[str, ...], dict] | None = None) -> dict:
    """A message's entry for part ``p``: the ``n`` events ``get`` takes of it (``None``: all), with
    ``fields`` only (``None``: all). A column of one text (or all ``None``) goes once, under
    ``same`` (:func:`_same`); the others as lists (or the tuples ``get`` makes: the same JSON).
    ``plan``: :func:`_plan` of ``p`` and ``fields``, when the caller keeps it for every message."""
    if type(p) is Columns:
        fs, whole, wired = _plan(p, fields) if plan is None else plan
        col = p._col
        plain: dict = {}
        same: dict = {}
        lines: dict = {}
        lazy = p._lazy if wired else None
        for f in fs:
            if n > 1 and f in whole:
                same[f] = whole[f]  # the whole part holds one text: so does its share, unread
                continue
            if lazy is not None and f in wired:
                spec = lazy.get(f)
                if spec is not None:  # still not made: its line numbers go, not its texts
                    lines[f] = _lines_entry(spec[0], spec[1], get)
                    continue
            vals = col(f) if get is None else get(col(f))
            if n > 1 and _same(vals):
                same[f] = vals[0]
            else:
                plain[f] = vals
        out = {"n": n, "fields": fs, "cols": plain}
        if same:
            out["same"] = same
        if lines:
            out["lines"] = lines
        if p.types is not None:
            types = _wired_types(p.types, plain)
            if types:
                out["types"] = types
        return out
    evs = p if get is None else get(p)
    return {"events": _project(evs, fields)}


def _wired_types(vouched: dict[str, frozenset], plain: dict) -> dict[str, tuple[str, ...]]:
    """The vouch of each column written under ``cols`` (of a part whose types ``vouched``), as type names
    (:func:`_wired_names`), and none for a column vouched with a type orjson would not read back as itself."""
    out = {}
    for f, types in vouched.items():
        if f in plain:
            names = _wired_names(types)
            if names is not None:
                out[f] = names
    return out


@functools.cache
def _wired_names(types: frozenset) -> tuple[str, ...] | None:
    """A vouch as the sorted names a message writes: with ``"null"`` beside ``"float"`` (orjson writes
    NaN and the infinities as null); ``None`` when it holds a type orjson would not read back as itself.
    Made once per vouch (the parsers' few), not per part of every message."""
    if float in types:
        types = types | _FLOAT_WIRED
    names = [_TYPE_NAME.get(t) for t in types]
    return None if None in names else tuple(sorted(names))


def _plan(p: Columns, fields: Fields) -> tuple[tuple[str, ...], dict, frozenset]:
    """The fields a message writes of columns part ``p`` (``fields`` of its own; ``None``: all),
    those of them whose whole column holds one text (or only ``None``), with that value, and
    those that go as their line numbers (:func:`_wired`). A column is asked (``Columns.same``,
    cached) only when its first values are one text."""
    cols, lazy = p._cols, p._lazy
    if type(fields) is KindFields:
        fields = fields.of_part(p)
    if fields is None:
        fs = p.fields
    else:
        fs = tuple(f for f in fields if f in cols or (lazy is not None and f in lazy))
    wired = _wired(lazy, fs)
    whole = {}
    for f in fs:
        if f in wired:
            continue
        col = p._col(f)
        if _same(col[:_SAMPLE]) and p.same(f) is not None:
            whole[f] = col[0]
    return fs, whole, wired


def _wired(lazy: dict | None, fs: tuple[str, ...]) -> frozenset:
    """The fields of ``fs`` that a message writes as the line numbers they are made from (version 4,
    ``lines``): the lazy ids (``make`` a :class:`~ramparts.events.LineIds`, of ints) not made yet.
    The other side makes them as lazy fields again: neither side makes a text per event unless
    something reads it."""
    if not lazy:
        return frozenset()
    out = []
    for f in fs:
        spec = lazy.get(f)
        if spec is not None and type(spec[0]) is LineIds and _int_lines(spec[1]):
            out.append(f)
    return frozenset(out)


def _int_lines(lines) -> bool:
    if type(lines) is range:
        return True
    if type(lines) is not list and type(lines) is not tuple:
        return False
    return not lines or set(map(type, lines)) == {int}


def _lines_entry(make: LineIds, lines, get) -> dict:
    """A lazy id column of a message: its ``origin`` and ``suffix``, and its line numbers, those
    ``get`` takes (``None``: all), as ``from`` and ``to`` (the range ``from`` up to, not
    including, ``to``) when they follow one another, else as the list ``lines``."""
    if get is not None:
        if type(lines) is range and lines.step == 1:
            taken = get(lines)
            a, b = taken[0], taken[-1]
            # the taken indices increase (a selection in order): consecutive lines iff b - a + 1 == len
            if b - a + 1 == len(taken):
                return {"origin": make.origin, "suffix": make.suffix, "from": a, "to": b + 1}
            return {"origin": make.origin, "suffix": make.suffix, "lines": taken}
        lines = get(lines)
    elif type(lines) is range and lines.step == 1:
        return {"origin": make.origin, "suffix": make.suffix, "from": lines.start, "to": lines.stop}
    return {"origin": make.origin, "suffix": make.suffix, "lines": lines if type(lines) is not range else list(lines)}


_SAMPLE = 8


def _same(vals: list | tuple) -> bool:
    """Whether every value of ``vals`` is the text ``vals[0]`` (or every one is ``None``).

    Texts and ``None`` only: 1, 1.0 and True are equal, but orjson writes each as it is. A
    text equals only a text (its JSON is the same, a subclass's too).

    >>> _same(["a", "a"]), _same((None, None)), _same(["a", "b"]), _same([1, 1]), _same(["a", None])
    (True, True, False, False, False)
    """
    v = vals[0]
    if v is not None and type(v) is not str:
        return False
    n = len(vals)
    return vals[:_SAMPLE].count(v) == min(n, _SAMPLE) and (n <= _SAMPLE or vals.count(v) == n)


def _tuple_getter(idx: list[int]):
    """``lambda xs: tuple(xs[i] for i in idx)``, in C (orjson writes a tuple as a list)."""
    if len(idx) == 1:
        i = idx[0]
        return lambda xs: (xs[i],)
    return itemgetter(*idx)


def _encode_selected(parts: list, starts: list[int], ends: np.ndarray, sel: np.ndarray,
                     fields: Fields, plans: list | None = None) -> bytes:
    """The message of the events at ``sel``: indices (an int array) in increasing order over
    ``parts`` one after the other (part ``k`` from ``starts[k]`` up to ``ends[k]``). The same
    bytes as ``_encode_parts(pooled parts of that selection)`` (:func:`_parts`), each part's
    share found by searching ``sel`` for the parts' bounds at once rather than placing each
    event, and of a columns part only the columns written taken. ``plans``: each part's
    :func:`_plan`, kept across the messages of one batch (``None`` where not made yet)."""
    out: list[dict] = []
    lo = 0
    for k, hi in enumerate(np.searchsorted(sel, ends).tolist()):
        if hi == lo:
            continue
        start = starts[k]
        local = (sel[lo:hi] - start if start else sel[lo:hi]).tolist()
        p = parts[k]
        plan = None
        if plans is not None and type(p) is Columns:
            plan = plans[k]
            if plan is None:
                plan = plans[k] = _plan(p, fields)
        out.append(_entry(p, hi - lo, _tuple_getter(local), fields, plan))
        lo = hi
        if lo == len(sel):
            break
    return orjson.dumps({"v": VERSION, "parts": _joined(out)})


_EMPTY: dict = {}  # read only: what a missing lines or types entry holds


def _joined(entries: list[dict]) -> list[dict]:
    """A message's part entries with each run of consecutive columns entries of the same fields (and
    the same fields under ``lines``) joined into one entry (:func:`_join`).

    The parse stage's batch holds a part per raw message (about 800 Envoy lines), and a partition's
    message takes a share of each: tens of parts per message, each a part of the batch the detect
    stage reads, which pays for every part (docs/benchmarks.md, seventeenth and eighteenth sessions).
    """
    out: list[dict] = []
    run: list[dict] = []
    for e in entries:
        if run and "n" in e and e["fields"] == run[0]["fields"] and \
                e.get("lines", _EMPTY).keys() == run[0].get("lines", _EMPTY).keys():
            run.append(e)
            continue
        if run:
            out.append(run[0] if len(run) == 1 else _join(run))
            run = []
        if "n" in e:
            run.append(e)
        else:
            out.append(e)
    if run:
        out.append(run[0] if len(run) == 1 else _join(run))
    return out


def _join(run: list[dict]) -> dict:
    """One entry of the events of ``run`` (columns entries of the same fields), in order: a column one
    text (or ``None``) in every entry, the same one, goes under ``same``; the others as one list each;
    the lazy ids under ``lines`` as the entries' own, one after the other (``runs``, version 6); a
    column's types vouched when every entry vouches for them (a ``same`` value for its own type)."""
    fields = run[0]["fields"]
    n = 0
    for e in run:
        n += e["n"]
    lines = run[0].get("lines")
    plain: dict = {}
    same: dict = {}
    types: dict = {}
    for f in fields:
        if lines is not None and f in lines:
            continue
        one: list = []  # each entry's one value of f, while there is one
        for e in run:
            s = e.get("same")
            if s is not None and f in s:
                one.append(s[f])
                continue
            if e["n"] == 1:
                v = e["cols"][f][0]
                if v is None or type(v) is str:
                    one.append(v)
                    continue
            break
        if len(one) == len(run) and one.count(one[0]) == len(one):
            same[f] = one[0]
            continue
        col: list = []
        names: set | None = set()
        for e in run:
            c = e["cols"].get(f)
            if c is None:
                v = e["same"][f]
                col.extend([v] * e["n"])
                if names is not None:
                    names.add("null" if v is None else "str")
            else:
                col.extend(c)
                if names is not None:
                    got = e.get("types", _EMPTY).get(f)
                    if got is None:
                        names = None
                    else:
                        names.update(got)
        plain[f] = col
        if names:
            types[f] = tuple(sorted(names))
    out: dict = {"n": n, "fields": fields, "cols": plain}
    if same:
        out["same"] = same
    if lines is not None:
        out["lines"] = {f: {"runs": [e["lines"][f] for e in run]} for f in lines}
    if types:
        out["types"] = types
    return out


def decode(value: bytes | None) -> EventBatch:
    """A message of the events topics (versions 2 to 5, or a version-1 array of dicts) as a batch.

    Raises :class:`WireError` (or orjson's ``JSONDecodeError``, also a ``ValueError``) for
    anything else."""
    return decode_versioned(value)[0]


def decode_versioned(value: bytes | None) -> tuple[EventBatch, int]:
    """:func:`decode`, and the message's version (1 for a bare array).

    >>> decode_versioned(b'[{"kind": "gpu"}]')[1], decode_versioned(encode(EventBatch([{"kind": "gpu"}])))[1]
    (1, 6)
    """
    if not value:
        raise WireError("empty message")
    doc = orjson.loads(value)
    if type(doc) is list:
        for e in doc:
            if type(e) is not dict:
                raise WireError("a version-1 message holds something other than events")
        return EventBatch(doc), 1
    if type(doc) is not dict or doc.get("v") not in READ_VERSIONS:
        v = doc.get("v") if type(doc) is dict else type(doc).__name__
        raise WireError(f"unknown message version {v!r}")
    parts = doc.get("parts")
    if type(parts) is not list:
        raise WireError("no parts")
    batches = []
    for part in parts:
        if type(part) is not dict:
            raise WireError("a part is not an object")
        cols = part.get("cols")
        if cols is not None:
            fields, n = part.get("fields"), part.get("n")
            if type(fields) is not list or type(cols) is not dict or type(n) is not int or n < 0:
                raise WireError("a columns part without fields, cols and n")
            lazy = types = None
            if len(part) > 3:
                cols, lazy, types = _extras(part, cols, n, doc["v"])
            if len(cols) + (len(lazy) if lazy else 0) != len(fields) or any(
                    type(cols.get(f)) is not list or len(cols[f]) != n for f in fields if not lazy or f not in lazy):
                raise WireError("a columns part whose columns do not match its fields and n")
            if n:
                batches.append(EventBatch.from_columns(tuple(fields), cols, n, lazy, types=types))
            continue
        events = part.get("events")
        if type(events) is not list or any(type(e) is not dict for e in events):
            raise WireError("a part of neither columns nor events")
        if events:
            batches.append(EventBatch(events))
    if len(batches) == 1:
        return batches[0], doc["v"]
    return EventBatch.concat(batches), doc["v"]


def _extras(part: dict, cols: dict, n: int, version: int) -> tuple[dict, dict | None, dict | None]:
    """The columns of a part that writes some under ``same`` (version 3), each a list of ``n``, its
    lazy id columns, those it writes under ``lines`` (version 4: field -> ``(LineIds, lines)``), and
    the types vouched for in its ``cols`` (version 5: field -> a frozenset of types)."""
    lines = part.get("lines")
    wired = part.get("types")
    extra = 3 + ("same" in part) + (lines is not None) + (wired is not None)
    if len(part) > extra or (lines is not None and version < 4) or (wired is not None and version < 5):
        raise WireError("a columns part with something else than n, fields, cols, same, lines and types")
    out = _unsame(part, cols, n) if "same" in part else cols
    types = None if wired is None else _types(wired, cols)
    if lines is None:
        return out, None, types
    if type(lines) is not dict:
        raise WireError("a columns part whose lines is not an object")
    lazy = {}
    for f, spec in lines.items():
        lazy[f] = _line_ids(f, spec, n, version)
    if any(f in out for f in lazy):
        raise WireError("a columns part with a field both in lines and in cols or same")
    return out, lazy, types


def _types(wired, cols: dict) -> dict[str, frozenset]:
    """A part's ``types`` (:func:`_wired_types`) as its vouch: field -> the types named."""
    if type(wired) is not dict:
        raise WireError("a columns part whose types is not an object")
    out = {}
    for f, names in wired.items():
        if f not in cols or type(names) is not list:
            raise WireError(f"a columns part whose types of {f!r} are not a list for one of its cols")
        try:
            out[f] = frozenset(_NAMED_TYPE[name] for name in names)
        except (KeyError, TypeError):
            raise WireError(f"a columns part whose types of {f!r} name other types") from None
    return out


def _line_ids(field: str, spec, n: int,
              version: int = VERSION) -> tuple[LineIds | LineIdRuns, range | list | np.ndarray]:
    """A lazy id column of a message (:func:`_lines_entry`, or the ``runs`` of them that :func:`_join`
    writes) as a Columns' lazy field."""
    if type(spec) is not dict:
        raise WireError(f"a columns part whose lines of {field!r} is not an object")
    if "runs" in spec:
        if version < 6 or len(spec) != 1:
            raise WireError(f"a columns part whose lines of {field!r} hold runs and more, or before version 6")
        return _line_id_runs(field, spec["runs"], n)
    origin, suffix = spec.get("origin"), spec.get("suffix")
    if type(origin) is not str or type(suffix) is not str:
        raise WireError(f"a columns part whose lines of {field!r} have no origin and suffix texts")
    if len(spec) == 4 and "from" in spec and "to" in spec:
        a, b = spec["from"], spec["to"]
        if type(a) is not int or type(b) is not int or b - a != n:
            raise WireError(f"a columns part whose lines of {field!r} are not a range of n")
        return LineIds(origin, suffix), range(a, b)
    lines = spec.get("lines")
    if len(spec) != 3 or type(lines) is not list or len(lines) != n or (n and set(map(type, lines)) != {int}):
        raise WireError(f"a columns part whose lines of {field!r} are not n line numbers")
    return LineIds(origin, suffix), lines


def _line_id_runs(field: str, runs, n: int) -> tuple[LineIdRuns, np.ndarray]:
    """The ``runs`` of a joined part's id column (:func:`_join`): each a column's own ``lines`` entry."""
    if type(runs) is not list or not runs or len(runs) >= 1 << (63 - RUN_SHIFT):
        raise WireError(f"a columns part whose lines of {field!r} are not a list of runs (at most 2**23)")
    makes, numbers, total = [], [], 0
    for k, run in enumerate(runs):
        if type(run) is not dict:
            raise WireError(f"a columns part whose lines of {field!r} have a run that is not an object")
        m = len(run["lines"]) if len(run) == 3 and type(run.get("lines")) is list else (
            run["to"] - run["from"] if type(run.get("to")) is int and type(run.get("from")) is int else -1)
        if m < 1:
            raise WireError(f"a columns part whose lines of {field!r} have an empty or malformed run")
        make, lines = _line_ids(field, run, m, 5)  # read as version 5 reads lines: a run holds no runs
        total += m
        lo, hi = (lines.start, lines.stop - 1) if type(lines) is range else (min(lines), max(lines))
        if lo < 0 or hi > LINE_MASK:  # checked before numpy sees them: a JSON number may exceed int64
            raise WireError(f"a columns part whose lines of {field!r} hold a line number out of 0 to 2**40 - 1")
        if type(lines) is range:
            a = np.arange(lines.start, lines.stop, dtype=np.int64)
        else:
            a = np.array(lines, dtype=np.int64)
        if k:
            a += k << RUN_SHIFT
        makes.append(make)
        numbers.append(a)
    if total != n:
        raise WireError(f"a columns part whose runs of lines of {field!r} do not hold n line numbers")
    return LineIdRuns(tuple(makes)), np.concatenate(numbers)


def _unsame(part: dict, cols: dict, n: int) -> dict:
    """The columns of a part that writes some under ``same`` (version 3), each a list of ``n``."""
    same = part.get("same", {})
    if type(same) is not dict:
        raise WireError("a columns part with something else than n, fields, cols and same")
    out = dict(cols)
    for f, v in same.items():
        if v is not None and type(v) is not str:  # what _same writes: a text or null, never a number
            raise WireError(f"a columns part whose same value of {f!r} is not a text or null")
        out[f] = [v] * n
    if len(out) != len(cols) + len(same):
        raise WireError("a columns part with a field both in cols and in same")
    return out


def route_keys(batch: EventBatch, route: str = "entity") -> list[str | None]:
    """:func:`~ramparts.streams.keys.route_key` of every event of ``batch``, in batch order,
    read from its columns (``batch.values``) rather than from each event's dict. The parse
    stage takes the keys' partitions from :func:`route_partitions` (no key text per event);
    this is its fallback for key fields of other values than texts, and its reference.

    >>> b = EventBatch.from_columns(("kind", "principal", "status", "src_ip", "model"),
    ...     {"kind": ["request", "request", "prediction"], "principal": ["a", "k", None],
    ...      "status": [200, 401, None], "src_ip": ["10.0.0.1", "10.0.0.2", None], "model": ["m", None, "m"]})
    >>> route_keys(b), route_keys(b, "model")
    (['principal:a', 'src_ip:10.0.0.2', 'principal:None'], ['model:m', None, 'model:m'])
    """
    n = len(batch)
    if route == "model":
        keys: list[str | None] = [None] * n
        model = batch.values("model")
        for kind in MODEL_KINDS:
            for i in batch.indices_where("kind", kind):
                m = model[i]
                if m:
                    keys[i] = f"model:{m}"
        return keys
    if route != "entity":
        raise ValueError(f"unknown route {route!r}")
    keys = [None] * n
    kinds = batch.kinds()
    done = 0
    if "request" in kinds or "prediction" in kinds:
        principal, src = batch.values("principal"), batch.values("src_ip")
        if "request" in kinds:
            status = batch.values("status")
            for i in batch.indices_where("kind", "request"):
                p = principal[i]
                keys[i] = f"src_ip:{src[i]}" if p is None or status[i] == 401 else f"principal:{p}"
            done += kinds["request"]
        if "prediction" in kinds:
            for i in batch.indices_where("kind", "prediction"):
                ip = src[i]
                keys[i] = f"src_ip:{ip}" if ip else f"principal:{principal[i]}"
            done += kinds["prediction"]
    if "gpu" in kinds or "workload" in kinds:
        node, gpu = batch.values("node"), batch.values("gpu_uuid")
        for i in batch.indices_where("kind", "gpu", "workload"):
            nd = node[i]
            keys[i] = f"node:{nd}" if nd else f"gpu:{gpu[i]}"
        done += kinds.get("gpu", 0) + kinds.get("workload", 0)
    if done < n:  # runtime events and unknown kinds: few, keyed from their dicts, made one by one
        # (``batch.select(rest).events`` would make the dict of every event of the batch's parts)
        for i, k in enumerate(keys):
            if k is None:
                keys[i] = entity_key(batch[i])
    return keys


def partition_groups(keys: list[str | None], partitions: int) -> dict[int, list[int]]:
    """The indices of ``keys`` per partition of their key, each in increasing order (the
    partitions in order of their first key); ``None`` keys are left out. Each distinct key is
    hashed once. For keys a caller already has (``messages(keys=)``); :func:`groups_of` groups
    :func:`route_partitions`' partitions alike."""
    out: dict[int, list[int]] = defaultdict(list)
    cache: dict[str, int] = {}
    for i, key in enumerate(keys):
        if key is None:
            continue
        p = cache.get(key)
        if p is None:
            p = cache[key] = partition_for(key, partitions)
        out[p].append(i)
    return out


# What the partition picking has seen of each key field's values (texts and None), kept across
# batches: per (key prefix, partition count), a value -> its key's partition and two flags,
# packed as ``partition << 2 | _NONE | _FALSY``. A batch's column is then one lookup per value,
# in C, and only values not seen before are hashed (:func:`_keyed`). ``partition_for`` is a pure
# function of the key's text, so what this keeps changes no partition: it only saves the
# second pass over the column that coding it by its distinct values took (a ``dict.fromkeys`` of
# the column, then a lookup per value) and each batch's hashing of its distinct keys.
_KEYED: dict[tuple[str, int], dict] = {}
_KEYED_MAX = 1 << 16  # values kept per key field; past it that field's memo starts again
_NONE, _FALSY = 1, 2  # the value is None; the value is not a key's (None or empty)
_FAILED: dict = {}  # status -> whether it is 401 (a request that failed authentication)


def _keyed(vals: list, prefix: str, partitions: int) -> np.ndarray | None:
    """Per value ``v`` of ``vals``, as an int64 array: ``partition_for(f"{prefix}:{v}", partitions) << 2``,
    with ``_NONE`` set when ``v`` is None and ``_FALSY`` when it is None or empty (no key of its own).
    ``None`` unless every value is a text or ``None`` (a key's text is ``f"{v}"``, and 1, 1.0 and True
    are equal as dict keys but not as texts).

    >>> _keyed(["a", None, "", "a"], "principal", 7).tolist() == [
    ...     partition_for("principal:a", 7) << 2, partition_for("principal:None", 7) << 2 | 3,
    ...     partition_for("principal:", 7) << 2 | 2, partition_for("principal:a", 7) << 2]
    True
    >>> _keyed(["a", 1], "principal", 7) is None, _keyed([["a"]], "principal", 7) is None
    (True, True)
    """
    memo = _KEYED.get((prefix, partitions))
    if memo is None:
        memo = _KEYED[(prefix, partitions)] = {}
    n = len(vals)
    try:  # every value seen before: one pass (the memo holds texts and None only)
        return np.fromiter(map(memo.__getitem__, vals), dtype=np.int64, count=n)
    except KeyError:
        pass
    except TypeError:  # an unhashable value
        return None
    try:
        distinct = dict.fromkeys(vals)
    except TypeError:
        return None
    new = [v for v in distinct if v not in memo]
    for v in new:
        if v is not None and type(v) is not str:
            return None
    if len(memo) + len(new) > _KEYED_MAX:
        memo.clear()
        new = list(distinct)
    for v in new:
        memo[v] = partition_for(f"{prefix}:{v}", partitions) << 2 | (_NONE if v is None else 0) | (0 if v else _FALSY)
    return np.fromiter(map(memo.__getitem__, vals), dtype=np.int64, count=n)


def route_partitions(batch: EventBatch, partitions: int, route: str = "entity",
                     kinds: tuple[str, ...] | None = None) -> np.ndarray:
    """The partition of every event's ``route`` key (:func:`route_key`, :func:`partition_for`),
    in batch order, as an int64 array; -1 for an event with no key, and (``kinds``) for every
    event of another kind. The same as hashing :func:`route_keys` event by event, without a key
    text per event: each field a kind's keys read is read of that kind's events only
    (``EventBatch.values_where``) and looked up, value by value in C, in what this process has
    seen of it (:func:`_keyed`: the values seen, texts and ``None``, with their key's partition;
    a batch holds few principals, addresses, nodes, models, mostly seen before), each value not
    seen before hashed once, and the events' partitions picked with numpy. A field of other
    values than texts (rare: not what the parsers write) takes the keys of :func:`route_keys`
    for that kind instead.

    >>> b = EventBatch.from_columns(("kind", "principal", "status", "src_ip", "model"),
    ...     {"kind": ["request", "request", "prediction"], "principal": ["a", "k", None],
    ...      "status": [200, 401, None], "src_ip": ["10.0.0.1", "10.0.0.2", None], "model": ["m", None, "m"]})
    >>> route_partitions(b, 7).tolist(), [partition_for(k, 7) for k in route_keys(b)]
    ([3, 6, 6], [3, 6, 6])
    >>> route_partitions(b, 7, "model").tolist(), route_partitions(b, 7, "model", ("prediction",)).tolist()
    ([1, -1, 1], [-1, -1, 1])
    """
    if route not in ("entity", "model"):
        raise ValueError(f"unknown route {route!r}")
    n = len(batch)
    out = np.full(n, -1, dtype=np.int64)
    counts = batch.kinds()
    wanted = [k for k in counts if kinds is None or k in kinds]
    fields = _Coded(batch, partitions)
    pickers = _MODEL if route == "model" else _ENTITY
    for kind in wanted:
        picker = pickers.get(kind)
        if picker is None:
            continue
        # both routes index the same kinds of one batch: the array is made once
        idx = batch.shared(("wire.kind_indices", kind),
                           lambda b, kind=kind: np.asarray(b.indices_where("kind", kind), dtype=np.intp))
        got = picker(fields, kind)
        if got is None:  # a field the key reads holds something else than texts
            keys = route_keys(batch, route)
            got = np.array([-1 if keys[i] is None else partition_for(keys[i], partitions) for i in idx.tolist()],
                           dtype=np.int64)
        out[idx] = got
    if route == "entity":
        if kinds is None:
            if sum(counts[k] for k in _ENTITY if k in counts) < n:
                # runtime events, unknown kinds (and a kind that is no text): few, keyed one by
                # one from their dicts (``batch.select(rest).events`` would make every part's)
                _fill_one_by_one(out, batch, np.flatnonzero(out < 0).tolist(), partitions)
        else:
            for kind in wanted:
                if kind not in _ENTITY:
                    _fill_one_by_one(out, batch, batch.indices_where("kind", kind), partitions)
    return out


def _fill_one_by_one(out: np.ndarray, batch: EventBatch, idx: list[int], partitions: int) -> None:
    if not len(idx):
        return
    # each event's part and place in it from the batch's part map (``batch[i]`` looks its part up
    # by a walk over the parts, per event); a columns part makes the event's dict, a list hands it
    parts = batch.layout()[0]
    which, local = batch.part_map()
    ia = np.asarray(idx, dtype=np.intp)
    cache: dict[str, int] = {}
    for i, k, j in zip(ia.tolist(), which[ia].tolist(), local[ia].tolist()):
        q = parts[k]
        key = entity_key(q.row(j) if type(q) is Columns else q[j])
        p = cache.get(key)
        if p is None:
            p = cache[key] = partition_for(key, partitions)
        out[i] = p


class _Coded:
    """The key fields of a batch's events of each kind as their values' partitions and flags
    (:func:`_keyed`), each read once, of that kind's events only (``EventBatch.values_where``:
    in the order of ``indices_where("kind", kind)``)."""

    def __init__(self, batch: EventBatch, partitions: int) -> None:
        self.batch, self.partitions = batch, partitions
        self._keyed: dict[tuple[str, str], np.ndarray | None] = {}

    def keyed(self, field: str, kind: str) -> np.ndarray | None:
        got = self._keyed.get((field, kind), False)
        if got is False:
            got = self._keyed[(field, kind)] = _keyed(self.batch.values_where(field, "kind", kind),
                                                      _PREFIX.get(field, field), self.partitions)
        return got

    def failed(self, kind: str) -> np.ndarray | None:
        """Whether the status of each event of ``kind`` is 401 (``None`` for an unhashable status)."""
        status = self.batch.values_where("status", "kind", kind)
        n = len(status)
        if not status.count(401):  # the same test as ``==``, in C: most batches hold no failure
            return np.zeros(n, dtype=bool)
        try:
            return np.fromiter(map(_FAILED.__getitem__, status), dtype=bool, count=n)
        except KeyError:
            pass
        except TypeError:
            return None
        try:
            d = dict.fromkeys(status)
        except TypeError:
            return None
        if len(_FAILED) + len(d) > _KEYED_MAX:
            _FAILED.clear()
        for v in d:
            if v not in _FAILED:
                _FAILED[v] = bool(v == 401)
        return np.fromiter(map(_FAILED.__getitem__, status), dtype=bool, count=n)

    def pick(self, kind: str, first: str, second: str, use_first: np.ndarray | None = None) -> np.ndarray | None:
        """Per event of ``kind``: the partition of ``first:<its first field>`` where ``use_first``
        (``None``: where that field is not empty), else of ``second:<its second>``."""
        a, b = self.keyed(first, kind), self.keyed(second, kind)
        if a is None or b is None:
            return None
        if use_first is None:
            use_first = (a & _FALSY) == 0
        return np.where(use_first, a >> 2, b >> 2)


_PREFIX = {"gpu_uuid": "gpu"}  # a key's text: ``<prefix>:<value>``, the prefix the field's name but for these


def _requests(c: _Coded, kind: str) -> np.ndarray | None:
    # by principal; by source address when there is none or the request failed authentication
    principal, failed = c.keyed("principal", kind), c.failed(kind)
    if principal is None or failed is None:
        return None
    return c.pick(kind, "src_ip", "principal", (principal & _NONE).astype(bool) | failed)


def _predictions(c: _Coded, kind: str) -> np.ndarray | None:
    return c.pick(kind, "src_ip", "principal")  # by source address; by principal when there is none


def _nodes(c: _Coded, kind: str) -> np.ndarray | None:
    return c.pick(kind, "node", "gpu_uuid")  # by node; by GPU when the node is not known


def _models(c: _Coded, kind: str) -> np.ndarray | None:
    model = c.keyed("model", kind)  # by model; no key (-1) when the event names none
    if model is None:
        return None
    return np.where(model & _FALSY, -1, model >> 2)


_ENTITY = {"request": _requests, "prediction": _predictions, "gpu": _nodes, "workload": _nodes}
_MODEL = {kind: _models for kind in MODEL_KINDS}


def groups_of(parts: np.ndarray) -> dict[int, list[int]]:
    """The indices of ``parts`` (:func:`route_partitions`) per partition, each in increasing
    order, the partitions in order of their first event; -1 (no key) left out. The same as
    :func:`partition_groups` of the keys the partitions were hashed from.

    >>> groups_of(np.array([2, -1, 0, 2, 0]))
    {2: [0, 3], 0: [2, 4]}
    """
    return {p: g.tolist() for p, g in _group_arrays(parts).items()}


def _group_arrays(parts: np.ndarray) -> dict[int, np.ndarray]:
    """:func:`groups_of`, each partition's indices as an int array."""
    if not len(parts):
        return {}
    present = np.flatnonzero(np.bincount(parts + 1)[1:]).tolist()
    if len(present) <= 16:  # a pass per partition: cheaper than a sort
        groups = [np.flatnonzero(parts == p) for p in present]
        groups.sort(key=lambda g: g[0])
        return {int(parts[g[0]]): g for g in groups}
    order = np.argsort(parts, kind="stable")
    ranked = parts[order]
    bounds = np.flatnonzero(ranked[1:] != ranked[:-1]) + 1
    starts = np.concatenate(([0], bounds))
    ends = np.concatenate((bounds, [len(ranked)]))
    firsts = [(int(order[a]), int(ranked[a]), a, b) for a, b in zip(starts.tolist(), ends.tolist()) if ranked[a] >= 0]
    firsts.sort()
    return {p: order[a:b] for _, p, a, b in firsts}


# Most bytes of one message, before compression: a message of ``per_message`` events that
# encodes to more is cut in halves until each fits (or holds one event). Kafka's default limit
# on a record batch is 1 MB (after compression), aiokafka's producer here refuses a message over
# 4 MiB (``producer_max_request_size``), and a message refused there would stop the parse stage.
MAX_MESSAGE_BYTES = 1 << 20


def _within(encode_chunk, items, per_message: int, max_bytes: int) -> list[bytes]:
    """``items`` encoded ``per_message`` at a time, in order, each chunk that encodes to more than
    ``max_bytes`` cut in halves (again while a half does and holds more than one item)."""
    out: list[bytes] = []

    def cut(chunk) -> None:
        data = encode_chunk(chunk)
        if len(data) <= max_bytes or len(chunk) < 2:
            out.append(data)
            return
        half = len(chunk) // 2
        cut(chunk[:half])
        cut(chunk[half:])

    for i in range(0, len(items), per_message):
        cut(items[i:i + per_message])
    return out


def messages(batch: EventBatch, partitions: int, per_message: int, route: str = "entity",
             fields: Fields = None, keys: list[str | None] | None = None,
             kinds: tuple[str, ...] | None = None, max_bytes: int = MAX_MESSAGE_BYTES) -> dict[int, list[bytes]]:
    """``batch``'s events with a ``route`` key (of ``kinds`` only; ``None``: every kind) as
    messages per partition, in batch order, at most ``per_message`` events and, unless a single
    event is larger, ``max_bytes`` bytes each, with ``fields`` only (``None``: all; a
    :class:`KindFields`: those of each event's kind). ``keys``: the
    events' route keys, when the caller has them (else their partitions come from
    :func:`route_partitions`, with no key text per event)."""
    out: dict[int, list[bytes]] = {}
    dicts_only = all(type(p) is list for p in batch.layout()[0])
    if keys is not None:
        if kinds is not None:
            raise ValueError("keys and kinds: pass one")
    elif len(batch) < _FEW:
        # A few events (single-record messages as they come): numpy's fixed costs per call
        # would cost more than a key per event.
        keys = [route_key(e, route) for e in batch.events] if dicts_only else route_keys(batch, route)
        if kinds is not None:
            keys = [k if kd in kinds else None for k, kd in zip(keys, batch.values("kind"))]
    if keys is not None:
        groups = partition_groups(keys, partitions)
    else:
        groups = _group_arrays(route_partitions(batch, partitions, route, kinds))
    if dicts_only:
        # Dicts only (parsers that write no columns yet): cut per dict, as before columns;
        # selections and pooling would only add to that.
        evs = batch.events
        for p, idx in groups.items():
            group = [evs[i] for i in (idx.tolist() if type(idx) is np.ndarray else idx)]
            group = _project(group, fields)
            out[p] = _within(lambda g: orjson.dumps({"v": VERSION, "parts": [{"events": g}]}), group,
                             per_message, max_bytes)
        return out
    parts, order = batch.layout()
    if order is not None and not _increasing_array(batch):  # not a selection in increasing order: rare
        for p, idx in groups.items():
            out[p] = _within(lambda chunk: encode(batch.select(chunk), fields), idx, per_message, max_bytes)
        return out
    # Each message's events cut straight from the batch's parts (the same parts, and so the
    # same bytes, as ``encode(batch.select(chunk))``, without a Python step per event).
    starts, at = [], 0
    for q in parts:
        starts.append(at)
        at += len(q)
    ends = np.array(starts[1:] + [at], dtype=np.int64)
    oarr = None if order is None else batch._order_array()
    plans: list = [None] * len(parts)
    for p, idx in groups.items():
        if type(idx) is not np.ndarray:
            idx = np.array(idx, dtype=np.int64)
        sel = idx if oarr is None else oarr[idx]
        out[p] = _within(lambda chunk: _encode_selected(parts, starts, ends, chunk, fields, plans), sel,
                         per_message, max_bytes)
    return out


_FEW = 64  # fewer events than this in a batch: keys per event (messages)


def _increasing_array(batch: EventBatch) -> bool:
    """:func:`_increasing` of ``batch``'s order, read as an array (no Python step per event)."""
    o = batch._order_array()
    return len(o) < 2 or bool(np.all(o[1:] >= o[:-1]))
