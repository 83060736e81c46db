"""The normalized event model (SPEC.md, "Inputs"), built for batches.

An event is a plain ``dict``: building one from decoded JSON costs nothing extra, and a
parser fills only the fields its format has. Inside the pipeline every time field (``ts``,
and ``start``/``end`` of workloads) is an ``int`` of nanoseconds since the epoch, UTC, so
that sorting, windowing and numpy columns need no parsing; ``to_json`` writes RFC 3339.

An :class:`EventBatch` is the unit every stage works on: parsers fill one, the pipeline
filters it by kind or entity and detectors read numpy columns from it.

>>> b = EventBatch([{"kind": "request", "ts": 0, "source": "nginx", "latency_ms": 5.0},
...                 {"kind": "request", "ts": 1, "source": "nginx"}])
>>> b.column("latency_ms").tolist()
[5.0, nan]
>>> len(b.select(b.column("latency_ms") > 1))
1
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Iterable, Iterator, Sequence
from itertools import repeat
from operator import itemgetter
from typing import Any

import numpy as np
import orjson

from .timeutil import format_rfc3339

COMMON_FIELDS = ("kind", "ts", "source")

# The fields SPEC.md promises per kind. Parsers may add more (documented per parser);
# consumers must tolerate any of these being absent when the source does not carry it.
KIND_FIELDS: dict[str, tuple[str, ...]] = {
    "request": ("principal", "src_ip", "model", "path", "status", "latency_ms", "tokens_in", "tokens_out"),
    "prediction": ("principal", "src_ip", "model", "model_version", "input", "output"),
    "runtime": ("rule", "verb", "priority", "namespace", "pod", "container", "image", "process", "user", "src_ip"),
    "gpu": ("node", "gpu_uuid", "util_pct", "mem_used_mib", "power_w", "processes", "namespace", "pod"),
    "workload": ("node", "gpu_uuid", "namespace", "pod", "start", "end"),
}
KINDS = tuple(KIND_FIELDS)

TIME_FIELDS = ("ts", "start", "end")


_NUM = (int, float)
FIELD_TYPES: dict[str, tuple[type, ...]] = {
    "principal": (str,), "src_ip": (str,), "model": (str,), "path": (str,), "status": (int,),
    "latency_ms": _NUM, "tokens_in": (int,), "tokens_out": (int,), "model_version": (str,),
    "input": (list, dict, str, int, float), "output": (list, dict, str, int, float),
    "rule": (str,), "verb": (str,), "priority": (str,), "namespace": (str,), "pod": (str,),
    "container": (str,), "image": (str,), "process": (str,), "user": (str,), "node": (str,),
    "gpu_uuid": (str,), "util_pct": _NUM, "mem_used_mib": _NUM, "power_w": _NUM,
    "processes": (list,), "start": (int,), "end": (int,),
}


def check_event(event: dict) -> list[str]:
    """What is wrong with an event, as a list of problems (empty when it is well-formed).

    Checks the common fields, that every field of its kind is present (``None`` allowed) and
    that present values have the documented types. Numbers must be finite.
    """
    problems = []
    kind = event.get("kind")
    if kind not in KIND_FIELDS:
        return [f"unknown kind {kind!r}"]
    ts = event.get("ts")
    if not isinstance(ts, int) or isinstance(ts, bool):
        problems.append(f"ts must be int nanoseconds, got {type(ts).__name__}")
    if not isinstance(event.get("source"), str):
        problems.append("source must be a format name")
    for f in KIND_FIELDS[kind]:
        if f not in event:
            problems.append(f"missing field {f!r}")
    for f, types in FIELD_TYPES.items():
        v = event.get(f)
        if v is None:
            continue
        if isinstance(v, bool) or not isinstance(v, types):
            problems.append(f"{f} has type {type(v).__name__}, expected {'/'.join(t.__name__ for t in types)}")
        elif isinstance(v, float) and (v != v or v in (float("inf"), float("-inf"))):
            problems.append(f"{f} is not finite: {v}")
    return problems


def to_wire(event: dict) -> dict:
    """The JSON-ready form of an event: time fields as RFC 3339 text, everything else as is.

    ``kind``, ``ts`` and ``source`` come first, whatever order a parser built the event in.
    """
    out = {"kind": event.get("kind"), "ts": None, "source": event.get("source")}
    out.update(event)
    for f in TIME_FIELDS:
        v = out.get(f)
        if isinstance(v, int):
            out[f] = format_rfc3339(v)
    return out


def to_json(event: dict) -> bytes:
    return orjson.dumps(to_wire(event))


class Columns:
    """Events held as columns: ``fields`` (every event's keys, in its dict's order) and
    ``cols[f]``, a list of ``n`` values per field (``None`` for a field the event leaves empty).

    What a parser writes instead of one dict per event: the detectors and the store read a
    field of every event as one list (:meth:`EventBatch.values`), and a dict is made only for
    an event somebody asks for whole (:meth:`dicts`). Every event of one ``Columns`` has the
    same keys; events of other shapes go in another part of the :class:`EventBatch`.

    A field may be made on first read (``lazy``: field -> ``(make, arg)``, its list being
    ``make(arg)``, where ``make`` maps a sequence to the list of one value per element, so that
    ``make(arg[i:j])`` is that list's slice): the parsers' position ids (``"<origin>:<line>"``),
    which in replay only the few events made whole (an alert's, a rule's candidates) and the
    store read, are kept as their line numbers until then. No reader sees the difference:
    :attr:`cols` makes every such field first, :meth:`values`, :meth:`row`, :meth:`dicts` and
    :meth:`take` make what they read.

    A parser may vouch for the types of a column's values (``types``: field -> a frozenset of
    types; msgspec's typed structs decide them, an ``int | None`` field holds only those): every
    value's type is one of them. A superset, not the exact set: a part taken from the events
    (:meth:`take`, and the selections of an :class:`EventBatch`, which keep the parts) holds a
    subset of them, so the vouch holds of it too. :class:`~ramparts.detectors.typed_columns.TypedColumns`
    then skips the scan of the types it would have made (:meth:`EventBatch.vouched`); the caller
    vouches for it, and nothing checks it.

    >>> c = Columns(("kind", "ts"), {"kind": ["gpu", "gpu"], "ts": [2, 1]}, 2)
    >>> c.dicts(), c.take([1]).dicts()
    ([{'kind': 'gpu', 'ts': 2}, {'kind': 'gpu', 'ts': 1}], [{'kind': 'gpu', 'ts': 1}])
    >>> ids = Columns(("kind", "id"), {"kind": ["gpu", "gpu"]}, 2, {"id": (LineIds("f"), range(7, 9))})
    >>> ids.row(1), ids.take([1]).values("id"), ids.cols["id"]
    ({'kind': 'gpu', 'id': 'f:8'}, ['f:8'], ['f:7', 'f:8'])
    """

    __slots__ = ("fields", "_cols", "n", "_same", "_lazy", "types")

    def __init__(self, fields: tuple[str, ...], cols: dict[str, list], n: int,
                 lazy: dict[str, tuple[Callable[[Any], list], Any]] | None = None,
                 one: dict[str, str] | None = None, types: dict[str, frozenset] | None = None):
        self.fields = fields
        self._cols = cols
        self.n = n
        # field -> same(field), once read; ``one`` (field -> the text every event holds there, as the
        # parser wrote the column: ``[text] * n``) answers it up front, without a pass over the column.
        self._same: dict[str, tuple | None] = {f: (v,) for f, v in one.items()} if one and n else {}
        self._lazy = lazy or None  # field -> (make, arg): not in _cols until read
        self.types = types or None  # field -> the types its parser vouches its values are among

    @property
    def cols(self) -> dict[str, list]:
        """Every field's list (the lazy fields made now)."""
        if self._lazy:
            for f in list(self._lazy):
                self._col(f)
        return self._cols

    def _col(self, field: str) -> list | None:
        """``field``'s list (made now when lazy), or None when no event has the field."""
        c = self._cols.get(field)
        if c is None and self._lazy is not None:
            spec = self._lazy.pop(field, None)
            if spec is not None:
                c = self._cols[field] = spec[0](spec[1])
        return c

    def same(self, field: str) -> tuple | None:
        """``(v,)`` when every event holds the same text ``v`` in ``field`` (or all hold none:
        ``(None,)``), else ``None`` (values of other types are not looked at); read once per part
        (a parser writes one kind, one source per part). Of no events: ``None``.

        >>> c = Columns(("kind", "n"), {"kind": ["gpu", "gpu"], "n": [1, 2]}, 2)
        >>> c.same("kind"), c.same("n"), c.same("absent")
        (('gpu',), None, (None,))
        """
        try:
            return self._same[field]
        except KeyError:
            col = self._col(field)
            got = self._same[field] = _same(col if col is not None else _ABSENT, self.n)
            return got

    def __len__(self) -> int:
        return self.n

    def values(self, field: str) -> list:
        c = self._col(field)
        return c if c is not None else [None] * self.n

    def dicts(self) -> list[dict]:
        fields = self.fields
        if not self.n:
            return []
        cols = self.cols
        return [dict(zip(fields, row)) for row in zip(*[cols[f] for f in fields])]

    def row(self, i: int) -> dict:
        cols, lazy = self._cols, self._lazy
        if lazy:
            out = {}
            for f in self.fields:
                spec = lazy.get(f)
                out[f] = cols[f][i] if spec is None else spec[0]((spec[1][i],))[0]
            return out
        return {f: cols[f][i] for f in self.fields}

    def take(self, idx: list[int]) -> "Columns":
        if not idx:
            return Columns(self.fields, {f: [] for f in self.fields}, 0, types=self.types)
        get = _getter(idx)
        lazy = self._lazy
        # What holds of every event holds of those taken (one text, or none: ``(None,)``; the types
        # vouched for, a superset of the taken values' types).
        one = {f: s[0] for f, s in self._same.items() if s is not None}
        return Columns(self.fields, {f: get(c) for f, c in self._cols.items()}, len(idx),
                       {f: (make, get(arg)) for f, (make, arg) in lazy.items()} if lazy else None, one, self.types)


class LineIds:
    """The ``make`` of a lazy id column (:class:`Columns`): ``"<origin>:<line><suffix>"`` of each
    line number, as the parsers stamp them (``Parser.stamp_ids``).

    >>> LineIds("a.log")(range(3, 5)), LineIds("b", ".0")([7])
    (['a.log:3', 'a.log:4'], ['b:7.0'])
    """

    __slots__ = ("origin", "suffix")

    def __init__(self, origin: str, suffix: str = ""):
        self.origin = origin
        self.suffix = suffix

    def __call__(self, lines: Iterable[int]) -> list[str]:
        origin, suffix = self.origin, self.suffix
        if suffix:
            return [f"{origin}:{k}{suffix}" for k in lines]
        return [f"{origin}:{k}" for k in lines]


# A line number of a LineIdRuns column carries its run's index in the bits above these.
RUN_SHIFT = 40
LINE_MASK = (1 << RUN_SHIFT) - 1


class LineIdRuns:
    """The ``make`` of a lazy id column whose events come from several runs of lines, each with its own
    :class:`LineIds` (``makes``): the number ``k`` is line ``k & LINE_MASK`` of run ``k >> RUN_SHIFT``,
    and its id the one ``makes[k >> RUN_SHIFT]`` makes of that line. What an events message's part
    joined from several raw messages' events carries (``streams/wire.py``, version 6): the numbers are
    an int64 array, made without an int object per event, or what is taken of it.

    >>> LineIdRuns((LineIds("a.log"), LineIds("b", ".0")))(np.array([3, 1 << RUN_SHIFT | 7, 4]))
    ['a.log:3', 'b:7.0', 'a.log:4']
    """

    __slots__ = ("makes",)

    def __init__(self, makes: tuple[LineIds, ...]):
        self.makes = makes

    def __call__(self, lines: Iterable[int]) -> list[str]:
        ends = [(m.origin, m.suffix) for m in self.makes]
        if type(lines) is np.ndarray:
            lines = lines.tolist()
        return [f"{o}:{k & LINE_MASK}{s}" for k in lines for o, s in (ends[k >> RUN_SHIFT],)]


def _part_reader(part: list[dict] | Columns, local: list[int] | range) -> Callable[[str], list]:
    """A function reading a field of a part's events at ``local`` (a ``range``: a slice of the part),
    with what does not depend on the field made once: the gather of ``local`` (an ``itemgetter``),
    the picked dicts of a list part."""
    if type(part) is Columns:
        col_of = part._col
        if type(local) is range:
            n, start, stop = len(local), local.start, local.stop

            def read(field: str) -> list:
                col = col_of(field)
                if col is None:
                    return [None] * n
                return col if n == len(col) else col[start:stop]
            return read
        get, n = _getter(local), len(local)
        return lambda field: [None] * n if (col := col_of(field)) is None else get(col)
    events = part[local.start:local.stop] if type(local) is range else _getter(local)(part)
    return lambda field: values_of(events, field)


def values_of(events: list[dict], field: str) -> list:
    """``[e.get(field) for e in events]``, in C when the events are plain dicts (else each
    event's own ``get`` is called: tests/recording.py's events note what is read)."""
    if events and type(events[0]) is dict:
        return list(map(dict.get, events, repeat(field)))
    return [e.get(field) for e in events]


_ABSENT: list = [None]
_LAZY: list = []  # EventBatch._of's order when it is the array given, made a list when read (EventBatch._order)


def _same(vals: list, n: int) -> tuple | None:
    """``(vals[0],)`` when all ``n`` values are one text (or all ``None``): ``vals`` of length 1
    means all ``n`` events hold that value. Else ``None``, and for any other type (1, 1.0 and
    True are one dict key, but the index keys each as its first event holds it)."""
    if not n:
        return None
    v = vals[0]
    if v is not None and type(v) is not str:
        return None
    if len(vals) == 1:
        return (v,)
    return (v,) if vals.count(v) == n and len(set(map(type, vals))) == 1 else None


def _run(loc: np.ndarray) -> list[int] | range:
    """``loc`` as a list, or as a ``range`` when it is one (each index the one before plus 1)."""
    n = len(loc)
    if n and loc[-1] - loc[0] == n - 1 and (n == 1 or bool(np.all(np.diff(loc) == 1))):
        return range(int(loc[0]), int(loc[0]) + n)
    return loc.tolist()


def _getter(idx: list[int]) -> Callable[[list], list]:
    """``lambda xs: [xs[i] for i in idx]``, in C."""
    if len(idx) == 0:
        return lambda xs: []
    if len(idx) == 1:
        i = idx[0]
        return lambda xs: [xs[i]]
    g = itemgetter(*idx)
    return lambda xs: list(g(xs))


class EventBatch(Sequence):
    """A batch of normalized events with the column and selection verbs the pipeline needs.

    The events are held in parts, each a list of dicts or a :class:`Columns` (what a
    columnar parser writes), with an optional order over the parts' events (a selection or a
    sort: nothing is copied). :meth:`values` reads one field of every event, in batch order,
    without making the events' dicts; :attr:`events` makes them (once) for code that wants
    them whole. A detector that reads only :meth:`values`, :meth:`indices_where` and
    :meth:`column` never pays for a dict per event.

    :meth:`indices_where` indexes the events by one field the first time a detector asks, and
    every later detector of the batch reads that index instead of walking every event again
    (``Pipeline.process_batch`` hands one batch to all of them); :meth:`shared` keeps what
    several detectors derive alike. Both follow :meth:`append` and :meth:`extend`; change
    the events only through them (the parts are shared by the batches selected from one).

    >>> b = EventBatch.from_columns(("kind", "ts"), {"kind": ["gpu", "request"], "ts": [5, 3]})
    >>> s = b.sorted_by_time()
    >>> s.values("ts"), s.values("model"), s.events
    ([3, 5], [None, None], [{'kind': 'request', 'ts': 3}, {'kind': 'gpu', 'ts': 5}])
    """

    __slots__ = ("_parts", "_olist", "_n", "_events", "_values", "_index", "_shared", "_oarr", "_ts", "_pmap",
                 "_psame")

    def __init__(self, events: list[dict] | None = None):
        events = events if events is not None else []
        self._parts: list[list[dict] | Columns] = [events]
        self._olist: list[int] | None = None  # _order
        self._n = len(events)
        self._events: list[dict] | None = events
        self._values: dict[str, list] = {}
        self._index: dict[str, dict[Any, list[int]]] = {}
        self._shared: dict[str, Any] = {}
        self._oarr: np.ndarray | None = None  # the order as an int64 array, when one was made
        self._ts: np.ndarray | None = None  # ts(), once read (or carried over by select and concat)
        self._pmap: tuple[np.ndarray, np.ndarray] | None = None  # part_map()
        self._psame: dict[int, tuple] = {}  # _list_same()

    @classmethod
    def _of(cls, parts: list, order: list[int] | None, oarr: np.ndarray | None = None,
            ts: np.ndarray | None = None, psame: dict[int, tuple] | None = None) -> "EventBatch":
        b = cls.__new__(cls)
        b._parts = parts
        b._olist = order
        b._n = len(oarr) if order is _LAZY else len(order) if order is not None else sum(len(p) for p in parts)
        b._events = None
        b._values, b._index, b._shared = {}, {}, {}
        b._oarr, b._ts, b._pmap = oarr, ts, None
        b._psame = {} if psame is None else psame
        return b

    @staticmethod
    def _psame_of(batches: Iterable["EventBatch"], parts: list) -> dict[int, tuple]:
        """What :meth:`_list_same` found of the lists of dicts among ``parts`` in ``batches`` (whose parts they
        are). An entry holds its part (so its id is no other object's while the entry lives); those of parts
        not kept here are dropped."""
        found: dict[int, tuple] = {}
        for b in batches:
            if b._psame:
                found.update(b._psame)
        if not found:
            return found
        return {id(p): e for p in parts if (e := found.get(id(p))) is not None and e[0] is p}

    @property
    def _order(self) -> list[int] | None:
        """The order over the parts' events (None: none), as a list. A batch made by ``select``, ``concat`` or
        ``compact`` holds it as an array (``_oarr``) and makes the list when first read: replay's merge makes
        pools and remainders whose order no one reads as a list (about 0.5 million ints per replay of the
        benchmark's mix, made and freed), and its batches' is made when a detector reads it."""
        o = self._olist
        if o is _LAZY:
            o = self._olist = self._oarr.tolist()
        return o

    def _order_array(self) -> np.ndarray:
        """The order as an int64 array (made once; ``select`` hands its own on)."""
        a = self._oarr
        if a is None:
            a = self._oarr = np.fromiter(self._order, dtype=np.int64, count=len(self._order))
        return a

    def part_map(self) -> tuple[np.ndarray, np.ndarray]:
        """For each event in batch order: the part holding it (an index into ``layout()``'s parts)
        and its index in that part, as two arrays (made once per batch; do not change them)."""
        pm = self._pmap
        if pm is None:
            sizes = [len(p) for p in self._parts]
            if self._olist is None:
                which = np.repeat(np.arange(len(sizes), dtype=np.intp), sizes)
                local = np.arange(self._n, dtype=np.int64) - np.repeat(np.cumsum([0] + sizes[:-1]), sizes)
            else:
                o = self._order_array()
                ends = np.cumsum(sizes)
                which = np.searchsorted(ends, o, side="right")
                local = o - (ends - sizes)[which]
            pm = self._pmap = (which, local)
        return pm

    @classmethod
    def from_columns(cls, fields: tuple[str, ...], cols: dict[str, list], n: int | None = None,
                     lazy: dict[str, tuple[Callable[[Any], list], Any]] | None = None,
                     ts: np.ndarray | None = None, one: dict[str, str] | None = None,
                     types: dict[str, frozenset] | None = None) -> "EventBatch":
        """A batch of one :class:`Columns` part (``n``: the events, by default the first column's length;
        ``lazy``: fields made on first read, see :class:`Columns`). ``ts``: the events' times as the
        int64 array :meth:`ts` would read from ``cols["ts"]``, when the parser has it already. ``one``:
        fields whose every event holds one text (field -> that text: a parser's ``kind`` and ``source``,
        written ``[text] * n``), which the batch's indices then take without reading the column; the
        caller vouches for it. ``types``: the types the caller vouches each of those fields' values are
        among (:class:`Columns`, :meth:`vouched`)."""
        if n is None:
            n = len(cols[fields[0]]) if fields else 0
        return cls._of([Columns(fields, cols, n, lazy, one, types)], None, ts=ts)

    @classmethod
    def concat(cls, batches: Iterable["EventBatch"]) -> "EventBatch":
        """The events of ``batches``, one after the other (their parts kept, none copied)."""
        batches = [b for b in batches if b._n]
        ts = np.concatenate([b._ts for b in batches]) if batches and all(b._ts is not None for b in batches) else None
        if all(b._olist is None for b in batches):
            parts = [p for b in batches for p in b._parts if len(p)]
            return cls._of(parts, None, ts=ts, psame=cls._psame_of(batches, parts))
        parts: list = []
        orders: list[np.ndarray] = []
        at = 0
        for b in batches:
            size = sum(len(p) for p in b._parts)
            parts.extend(b._parts)
            orders.append(np.arange(at, at + size, dtype=np.int64) if b._olist is None else b._order_array() + at)
            at += size
        oarr = np.concatenate(orders)
        return cls._of(parts, _LAZY, oarr, ts, cls._psame_of(batches, parts))

    def compact(self) -> "EventBatch":
        """The same events in the same order, over only the parts they are in (the others are
        dropped, nothing is copied): what :func:`~ramparts.streams.replay.merge_by_time` keeps
        of its pool between releases, so that the parts it releases no longer weigh on it.

        >>> a = EventBatch.concat([EventBatch([{"ts": 1}]), EventBatch([{"ts": 2}, {"ts": 3}])])
        >>> c = a.select([2, 1]).compact()
        >>> len(c.layout()[0]), c.layout()[1], c.values("ts")
        (1, [1, 0], [3, 2])
        """
        if self._olist is None:
            if all(len(p) for p in self._parts):
                return self
            parts = [p for p in self._parts if len(p)]
            return EventBatch._of(parts, None, ts=self._ts, psame=self._psame)
        which, local = self.part_map()
        used = np.bincount(which, minlength=len(self._parts)) > 0
        if used.all():
            return self
        sizes = np.array([len(p) for p in self._parts], dtype=np.int64)
        new_start = np.cumsum(np.where(used, sizes, 0)) - np.where(used, sizes, 0)
        oarr = local + new_start[which]
        parts = [p for p, u in zip(self._parts, used.tolist()) if u]
        return EventBatch._of(parts, _LAZY, oarr, self._ts, self._psame)

    def vouched(self, field: str, kinds: tuple[str, ...]) -> frozenset | None:
        """The types the parsers vouch for in ``field`` of the events of ``kinds`` (:class:`Columns`'
        ``types``): every such value's type is one of them, a superset (a selection holds a subset of its
        parts' values). ``None`` when a part that may hold events of ``kinds`` vouches nothing for it (a list
        of dicts, a part of several kinds that does not). A part whose events are all of another kind
        (its kind index, which the batch's kind index reads anyway) is left out.

        >>> b = EventBatch.concat([EventBatch.from_columns(("kind", "n"), {"kind": ["a"], "n": [1]},
        ...                                                types={"n": frozenset((int,))}),
        ...                        EventBatch([{"kind": "b", "n": "x"}])])
        >>> b.vouched("n", ("a",)) == {int}, b.vouched("n", ("a", "b")), b.vouched("m", ("a",))
        (True, None, None)
        """
        got: frozenset = frozenset()
        for p in self._parts:
            if not len(p):
                continue
            s = p.same("kind") if type(p) is Columns else self._list_same(p, "kind")
            if s is not None and s[0] not in kinds:
                continue  # none of kinds here (an unhashable or odd kind is not one text: s is None)
            vouch = p.types.get(field) if type(p) is Columns and p.types is not None else None
            if vouch is None:
                return None
            got = got | vouch
        return got

    @property
    def holds_dicts(self) -> bool:
        """Whether the events' dicts exist already (a batch of dicts, or :attr:`events` was read):
        reading them is then the cheaper way to a few fields of a few events."""
        return self._events is not None

    def layout(self) -> tuple[list, list[int] | None]:
        """The parts (lists of dicts and :class:`Columns`) and the order over their events
        (``None``: the parts' events one after the other), for code that writes a batch out
        as it is held (the events topics' messages). Shared: do not change them."""
        return self._parts, self._order

    @property
    def events(self) -> list[dict]:
        """The events as dicts, in batch order (made once, on first use; do not change them).
        Of a selection, only the selected events' dicts are made."""
        ev = self._events
        if ev is None:
            parts, order = self._parts, self._order
            if order is None:
                ev = []
                for p in parts:
                    ev.extend(p.dicts() if type(p) is Columns else p)
            elif len(parts) == 1:
                p = parts[0]
                if type(p) is Columns:
                    ev = p.take(order).dicts()
                else:
                    ev = _getter(order)(p) if order else []
            else:
                ev = self._selected_dicts(parts, order)
            self._events = ev
        return ev

    @staticmethod
    def _selected_dicts(parts: list, order: list[int]) -> list[dict]:
        starts = np.cumsum([0] + [len(p) for p in parts])
        idx = np.asarray(order, dtype=np.int64)
        which = np.searchsorted(starts, idx, side="right") - 1
        out: list = [None] * len(order)
        for k, p in enumerate(parts):
            pos = np.flatnonzero(which == k)
            if not len(pos):
                continue
            local = (idx[pos] - starts[k]).tolist()
            made = p.take(local).dicts() if type(p) is Columns else _getter(local)(p)
            for i, d in zip(pos.tolist(), made):
                out[i] = d
        return out

    def __len__(self) -> int:
        return self._n

    def __getitem__(self, i):
        if isinstance(i, slice):
            return self.select(range(self._n)[i])
        if self._events is not None:
            return self._events[i]
        if i < 0:
            i += self._n
        if not 0 <= i < self._n:
            raise IndexError("event index out of range")
        o = self._olist
        if o is not None:
            i = int(self._oarr[i]) if o is _LAZY else o[i]  # (one event: the order's list not made for it)
        for p in self._parts:
            if i < len(p):
                return p.row(i) if type(p) is Columns else p[i]
            i -= len(p)
        raise IndexError("event index out of range")  # pragma: no cover (n counts the parts)

    def __iter__(self) -> Iterator[dict]:
        return iter(self.events)

    def __repr__(self) -> str:
        return f"EventBatch({self._n} events, kinds={self.kinds()})"

    def _mutable(self) -> list[dict]:
        ev = self.events
        if self._parts != [ev] or self._olist is not None:  # the parts may be another batch's
            ev = list(ev)
        self._parts, self._olist, self._events = [ev], None, ev
        self._oarr = self._ts = self._pmap = None
        self._psame = {}
        self._values.clear()
        self._index.clear()
        self._shared.clear()
        return ev

    def append(self, event: dict) -> None:
        self._mutable().append(event)
        self._n += 1

    def extend(self, events: Iterable[dict]) -> None:
        ev = self._mutable()
        ev.extend(events)
        self._n = len(ev)

    def values(self, field: str) -> list:
        """``field`` of every event, in batch order (``None`` where absent), read once per batch
        for every detector that asks. The list is shared: do not change it.

        >>> EventBatch([{"kind": "gpu"}, {}]).values("kind")
        ['gpu', None]
        """
        v = self._values.get(field)
        if v is None:
            parts = self._parts
            if self._olist is None and len(parts) == 1:
                p = parts[0]
                v = p.values(field) if type(p) is Columns else values_of(p, field)
            else:
                base: list = []
                for p in parts:
                    base.extend(p.values(field) if type(p) is Columns else values_of(p, field))
                v = base if self._olist is None else _getter(self._order)(base) if self._order else []
            self._values[field] = v
        return v

    def kinds(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for k, idx in self._by("kind").items():
            if k is not _UNHASHABLE:
                counts[k] = len(idx)
        return counts

    def indices_where(self, field: str, *values: Any) -> list[int]:
        """Indices, in batch order, of the events whose ``field`` equals one of ``values``.

        The same events as ``[i for i, e in enumerate(events) if e.get(field) in values]``
        for hashable ``values`` (an absent field is ``None``). The result is shared: do not
        change it.

        >>> b = EventBatch([{"kind": "gpu"}, {"kind": "request"}, {"kind": "gpu"}, {}])
        >>> b.indices_where("kind", "gpu"), b.indices_where("kind", "request", "gpu"), b.indices_where("kind", None)
        ([0, 2], [0, 1, 2], [3])
        """
        index = self._by(field)
        if len(values) == 1:
            return index.get(values[0], _NONE)
        found = [index[v] for v in values if v in index]
        if len(found) <= 1:
            return found[0] if found else _NONE
        return sorted(i for idx in found for i in idx)

    def values_where(self, field: str, by: str, *values: Any) -> list:
        """``field`` of the events :meth:`indices_where` ``(by, *values)`` picks, in batch order:
        ``[self.values(field)[i] for i in self.indices_where(by, *values)]``, read from only
        their parts (of a few events of a large batch, only theirs are read). Made once per
        batch; shared: do not change it.

        >>> b = EventBatch.concat([EventBatch.from_columns(("kind", "n"), {"kind": ["a", "a"], "n": [1, 2]}),
        ...                        EventBatch([{"kind": "b", "n": 3}])]).select([2, 1, 0])
        >>> b.values_where("n", "kind", "a"), b.values_where("n", "kind", "b", "a")
        ([2, 1], [3, 2, 1])
        """
        key = ("values_where", field, by, values)
        got = self._shared.get(key)
        if got is None:
            got = self._shared[key] = self._values_where(field, by, values)
        return got

    def _values_where(self, field: str, by: str, values: tuple) -> list:
        idx = self.indices_where(by, *values)
        vals = self._values.get(field)
        if vals is None and (self._olist is None and len(self._parts) == 1 or self._events is not None):
            vals = self.values(field)
        if vals is not None:
            if len(idx) == len(vals):  # indices_where keeps batch order: every event
                return vals
            return _getter(idx)(vals) if idx else []
        if not idx:
            return []
        # Where the picked events lie (each part's gather, the order back to batch order) is worked
        # out once per batch for every field read (:meth:`_readers`): the detectors read six of every request.
        readers, perm = self.shared(("values_where_readers", by, values), lambda b: b._readers(idx, by, values))
        if len(readers) == 1:
            return readers[0](field)
        flat: list = []
        for read in readers:
            flat.extend(read(field))
        return flat if perm is None else perm(flat)

    def _plan(self, idx: list[int], by: str | None = None, values: tuple = ()
              ) -> list[tuple[Any, list[int] | range, np.ndarray | None]]:
        """The events at ``idx`` per part: (part, their indices in it, their positions in ``idx``).
        Indices that follow one another are a ``range`` (a part read in its order, as a file's
        requests mostly are: a slice of each column, not a gather). When ``idx`` is
        ``indices_where(by, *values)`` and those are the events of one part (:meth:`_by_parts`),
        their positions are the array that index was made of (no list is read back)."""
        which, local = self.part_map()
        parts_of = self._shared.get(("_parts_of", by)) if by is not None else None
        if parts_of is not None:
            ks = {k for v in values for k in parts_of.get(v, ())}
            if len(ks) == 1:
                k = ks.pop()
                pos = self._shared[("_positions_array", (k,))]
                return [(self._parts[k], _run(local[pos]), None)]
        ia = np.asarray(idx, dtype=np.int64)
        w, loc = which[ia], local[ia]
        if self._olist is None and len(ia) > 1 and bool(np.all(ia[1:] > ia[:-1])):
            return self._plan_in_order(w, loc)
        parts = np.unique(w).tolist()
        if len(parts) == 1:
            return [(self._parts[parts[0]], _run(loc), None)]
        plan = []
        for k in parts:
            pos = np.flatnonzero(w == k)
            plan.append((self._parts[k], _run(loc[pos]), pos))
        return plan

    def _plan_in_order(self, w: np.ndarray, loc: np.ndarray) -> list[tuple[Any, list[int] | range, np.ndarray | None]]:
        """:meth:`_plan` of increasing indices of a batch in its parts' own order (the worker's: a
        ``concat`` of the messages of a partition), their parts ``w`` and indices in them ``loc``. Each
        part's events are then one run of ``w``, found in one pass (not a pass per part: a message holds
        a part per raw message its events came from), and their indices in the part increase, so they
        are a ``range`` when the first and the last span them.

        >>> b = EventBatch.concat([EventBatch([{"k": 1}, {"k": 2}]), EventBatch.from_columns(("k",), {"k": [3, 4, 5]})])
        >>> [(len(p), local, pos) for p, local, pos in b._plan([0, 2, 4], "k", ())]
        [(2, range(0, 1), array([0])), (3, [0, 2], array([1, 2]))]
        >>> b.values_where("k", "k", 1, 3, 5)
        [1, 3, 5]
        """
        bounds = [0, *(np.flatnonzero(w[1:] != w[:-1]) + 1).tolist(), len(w)]
        firsts, lasts = loc[bounds[:-1]].tolist(), loc[np.array(bounds[1:]) - 1].tolist()
        plan: list[tuple[Any, list[int] | range, np.ndarray | None]] = []
        for k, a, b, lo, hi in zip(w[bounds[:-1]].tolist(), bounds, bounds[1:], firsts, lasts):
            plan.append((self._parts[k], range(lo, hi + 1) if hi - lo == b - a - 1 else loc[a:b].tolist(),
                         np.arange(a, b)))
        if len(plan) == 1:
            return [(plan[0][0], plan[0][1], None)]
        return plan

    def where(self, field: str, *values: Any) -> list[dict]:
        """The events whose ``field`` equals one of ``values``, in batch order (:meth:`indices_where`)."""
        idx = self.indices_where(field, *values)
        if self._events is not None:
            ev = self._events
            return [ev[i] for i in idx]
        return self.select(idx).events

    def shared(self, name: str, build: Callable[["EventBatch"], Any]) -> Any:
        """``build(self)``, computed once per batch under ``name`` for every detector that asks
        (detectors that select the same events alike); the result is shared: do not change it."""
        try:
            return self._shared[name]
        except KeyError:
            got = self._shared[name] = build(self)
            return got

    def _by(self, field: str) -> dict[Any, list[int]]:
        index = self._index.get(field)
        if index is None:
            parts = self._parts
            # One list of dicts, in its order: the loop over its values is the index (a batch of
            # dicts, the worker's and the tests'; no part to take one value from).
            one_list = self._olist is None and len(parts) == 1 and type(parts[0]) is not Columns
            index = None if one_list else self._by_parts(field)
            if index is None:
                index = _index_of(self.values(field))
            self._index[field] = index
        return index

    def _by_parts(self, field: str) -> dict[Any, list[int]] | None:
        """The index of ``field`` from the parts when each holds one text in it, or none (a
        parser's part has one kind, one source): no event is read. ``None`` when a part holds
        several values, or values of another type. The same dict as the loop over every event builds:
        the same keys (each as its first event holds it), in the order of their first events.
        A ``Columns`` part answers from what its parser vouched for (``one``), else by testing its
        column once (kept with the part, which replay's batches share); a list of dicts is read once
        for the batches that share it (:meth:`_list_same`). The positions of a set of parts are made once per batch (:meth:`_positions`):
        a parser's part has one kind and one source, so both indices share their lists."""
        parts = self._parts
        same = []
        for p in parts:
            if not len(p):
                same.append(None)
                continue
            if type(p) is Columns:
                s = p.same(field)
            else:
                s = self._list_same(p, field)
            if s is None:
                return None
            same.append(s)
        index: dict[Any, list[int]] = {}
        try:
            if self._olist is None:
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
            code: dict[Any, int] = {}
            codes = [-1 if s is None else code.setdefault(s[0], len(code)) for s in same]
        except TypeError:
            return None
        if not self._n:
            return index
        which, _ = self.part_map()
        if len(code) == 1:  # one value: every event, keyed as the first event's part holds it
            return {same[int(which[0])][0]: list(range(self._n))}
        # Each value's parts; the positions of one set of parts are made once per batch for every field
        # (a parser's part has one kind and one source: the kind's requests are the source's envoy_json).
        held: list[list[int]] = [[] for _ in code]
        for k, c in enumerate(codes):
            if c >= 0:
                held[c].append(k)
        groups = []
        for ks in held:
            pos = self._positions(tuple(ks))
            if pos:
                groups.append((pos[0], same[int(which[pos[0]])][0], pos, tuple(ks)))
        groups.sort(key=itemgetter(0))
        parts_of = self._shared[("_parts_of", field)] = {}  # value -> its parts, for _plan
        for _, key, pos, ks in groups:
            index[key] = pos
            parts_of[key] = ks
        return index

    def _list_same(self, p: list[dict], field: str) -> tuple | None:
        """:func:`_same` of ``field`` in a list of dicts ``p`` (one of the parts), found once for the batches
        that share the part: a batch's selections and compactions share what it finds (``select``, ``compact``:
        replay's merge compacts its pool before the batches it releases are read), and ``concat`` keeps it for
        the parts it keeps. Replay's merge hands the same parts of the small parsers
        (GPU samples, audit, Falco, workloads) on from batch to batch, and every batch's kind and source
        indices read them: their dicts were read again per batch (about 0.07 µs per event of the benchmark's
        mix). An entry holds its part and its length: a part grown since (:meth:`append` on a batch whose
        only part it is) is read again."""
        got = self._psame.get(id(p))
        if got is None or got[0] is not p or got[1] != len(p):
            got = self._psame[id(p)] = (p, len(p), {})
        memo = got[2]
        try:
            return memo[field]
        except KeyError:
            s = memo[field] = _same(values_of(p, field), len(p))
            return s

    def _positions(self, ks: tuple[int, ...]) -> list[int]:
        """The positions, in batch order, of the events of the parts ``ks`` (indices into the parts),
        made once per batch (shared by the indices of every field: do not change it)."""
        key = ("_positions", ks)
        got = self._shared.get(key)
        if got is None:
            which, _ = self.part_map()
            mask = which == ks[0] if len(ks) == 1 else np.isin(which, ks)
            arr = self._shared[("_positions_array", ks)] = np.flatnonzero(mask)
            got = self._shared[key] = arr.tolist()
        return got

    # -- columns -------------------------------------------------------------------------
    def column(self, name: str, dtype: Any = np.float64, missing: Any = None) -> np.ndarray:
        """One field as a numpy array.

        Numeric dtypes get NaN (floats) or ``missing`` (ints, default 0) where the field is
        absent or not a number; ``object`` keeps the values as they are (``missing`` where
        absent or ``None``).
        """
        vals = self.values(name)
        n = len(vals)
        dt = np.dtype(dtype)
        if dt.kind == "f":
            fill = np.nan if missing is None else missing
            return np.fromiter((_num(v, fill) for v in vals), dtype=dt, count=n)
        if dt.kind in "iu":
            fill = 0 if missing is None else missing
            return np.fromiter((_int(v, fill) for v in vals), dtype=dt, count=n)
        out = np.empty(n, dtype=object)
        out[:] = vals if missing is None else [missing if v is None else v for v in vals]
        return out

    def ts(self) -> np.ndarray:
        """Event times as int64 nanoseconds (read once per batch, and carried over to the batches
        :meth:`select` and :meth:`concat` make: shared, do not change it)."""
        t = self._ts
        if t is None:
            vals = self.values("ts")
            if None in vals:
                raise KeyError("ts")
            t = self._ts = np.fromiter(vals, dtype=np.int64, count=len(vals))
        return t

    # -- selection -----------------------------------------------------------------------
    def select(self, which: np.ndarray | Sequence[int]) -> "EventBatch":
        """The events where a boolean mask is true, or at the given indices (no event is copied)."""
        idx = np.asarray(which)
        if idx.dtype == bool:
            if len(idx) != self._n:
                raise ValueError(f"mask of length {len(idx)} for a batch of {self._n}")
            idx = np.flatnonzero(idx)
        idx = idx.astype(np.int64, copy=False) if len(idx) else np.zeros(0, dtype=np.int64)
        if len(idx) and (idx[0] < 0 or len(idx) > 1 and idx.min() < 0):
            idx = np.where(idx < 0, idx + self._n, idx)
        oarr = idx if self._olist is None else self._order_array()[idx]
        return EventBatch._of(self._parts, _LAZY, oarr, None if self._ts is None else self._ts[idx],
                              self._psame)

    def pooled(self) -> "EventBatch":
        """These events as parts without an order, each part's events in their order here: the
        same events as :meth:`concat` would keep, and a stable sort by time of ``pooled()``
        followed by more events gives the same order as of ``self`` followed by them, when
        ``self`` is sorted by time (events of one instant stay in the order they were read).
        Copies every column of the events' parts: :func:`~ramparts.streams.replay.merge_by_time`
        keeps its pool with :meth:`compact` instead, which copies nothing."""
        if self._olist is None:
            return self
        starts, at = [], 0
        for p in self._parts:
            starts.append(at)
            at += len(p)
        groups: list[list[int]] = [[] for _ in self._parts]
        for i in self._order:
            k = bisect.bisect_right(starts, i) - 1
            groups[k].append(i - starts[k])
        parts = []
        for p, g in zip(self._parts, groups):
            if g:
                parts.append(p.take(g) if type(p) is Columns else _getter(g)(p))
        return EventBatch._of(parts, None)

    def of_kind(self, kind: str) -> "EventBatch":
        return self.select(self.indices_where("kind", kind))

    def group_by(self, field: str) -> dict[Any, np.ndarray]:
        """Indices of the events per value of ``field`` (absent values group under ``None``)."""
        groups: dict[Any, list[int]] = {}
        for i, v in enumerate(self.values(field)):
            groups.setdefault(v, []).append(i)
        return {k: np.asarray(v, dtype=np.int64) for k, v in groups.items()}

    def sorted_by_time(self) -> "EventBatch":
        """A stable sort on ``ts``: events of the same instant keep their input order."""
        ts = self.ts()
        if len(ts) < 2 or bool(np.all(ts[1:] >= ts[:-1])):
            return self
        return self.select(np.argsort(ts, kind="stable"))

    # -- output --------------------------------------------------------------------------
    def to_jsonl(self) -> bytes:
        return b"".join(to_json(e) + b"\n" for e in self.events)

    def _readers(self, idx: list[int], by: str, values: tuple
                 ) -> tuple[list[Callable[[str], list]], Callable[[list], list] | None]:
        """For :meth:`_plan` of ``idx`` (shared under ``("values_where", by, values)``), one
        :func:`_part_reader` per part, and the permutation putting the parts' values in batch order
        (``None`` when they already are: positions increasing part after part, as the worker's
        batches of whole messages come)."""
        plan = self.shared(("values_where", by, values), lambda b: b._plan(idx, by, values))
        readers = [_part_reader(p, local) for p, local, _ in plan]
        if len(plan) == 1:
            return readers, None
        pos = np.concatenate([pos for _, _, pos in plan])
        if bool(np.all(pos[1:] > pos[:-1])):
            return readers, None
        return readers, _getter(np.argsort(pos, kind="stable").tolist())


def columnar(events: list[dict]) -> EventBatch:
    """The same events as a batch of :class:`Columns` parts (one per key set, in the events'
    order): what a columnar parser would hand on. For tests and benchmarks that check a
    detector reads a batch of columns as it reads the dicts.

    >>> b = columnar([{"kind": "gpu", "ts": 2}, {"kind": "request", "ts": 1, "status": 200}, {"kind": "gpu", "ts": 3}])
    >>> [type(p).__name__ for p in b._parts], b.events[1], b.values("status")
    (['Columns', 'Columns'], {'kind': 'request', 'ts': 1, 'status': 200}, [None, 200, None])
    """
    shapes: dict[tuple, list[int]] = {}
    for i, e in enumerate(events):
        shapes.setdefault(tuple(e), []).append(i)
    parts, where = [], []
    for fields, idx in shapes.items():
        rows = [events[i] for i in idx]
        parts.append(Columns(fields, {f: [e[f] for e in rows] for f in fields}, len(rows)))
        where.extend(idx)
    if where == sorted(where):
        return EventBatch._of(parts, None)
    order = [0] * len(where)
    for pos, i in enumerate(where):
        order[i] = pos
    return EventBatch._of(parts, order)


_UNHASHABLE = object()  # the index key of values that cannot be dict keys


def _index_of(vals: list) -> dict[Any, list[int]]:
    """The indices of each value in ``vals``, keyed by the value (in the order of first
    occurrence); values that cannot be dict keys go under ``_UNHASHABLE`` (they equal no key)."""
    index: dict[Any, list[int]] = {}
    try:
        for i, v in enumerate(vals):
            idx = index.get(v)
            if idx is None:
                index[v] = [i]
            else:
                idx.append(i)
    except TypeError:  # a list or an object where a value was expected: equals no key
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


_NONE: list[int] = []


def _num(v: Any, fill: float) -> float:
    if v is None or isinstance(v, (str, bool, dict, list)):
        return fill
    return v


def _int(v: Any, fill: int) -> int:
    if isinstance(v, bool) or not isinstance(v, int):
        return fill
    return v
