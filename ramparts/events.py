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

from collections.abc import Callable, Iterable, Iterator, Sequence
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


class EventBatch(Sequence):
    """A list of normalized events with the column and selection verbs the pipeline needs.

    :meth:`indices_where` indexes the events by one field the first time a detector asks, and
    every later detector of the batch reads that index instead of walking every event again
    (``Pipeline.process_batch`` hands one batch to all of them); :meth:`shared` keeps what
    several detectors derive alike. Both follow :meth:`append` and :meth:`extend`; change
    ``events`` only through them.
    """

    __slots__ = ("events", "_index", "_shared")

    def __init__(self, events: list[dict] | None = None):
        self.events: list[dict] = events if events is not None else []
        self._index: dict[str, dict[Any, list[int]]] = {}
        self._shared: dict[str, Any] = {}

    def __len__(self) -> int:
        return len(self.events)

    def __getitem__(self, i):
        if isinstance(i, slice):
            return EventBatch(self.events[i])
        return self.events[i]

    def __iter__(self) -> Iterator[dict]:
        return iter(self.events)

    def __repr__(self) -> str:
        return f"EventBatch({len(self.events)} events, kinds={self.kinds()})"

    def append(self, event: dict) -> None:
        self.events.append(event)
        self._index.clear()
        self._shared.clear()

    def extend(self, events: Iterable[dict]) -> None:
        self.events.extend(events)
        self._index.clear()
        self._shared.clear()

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

    def where(self, field: str, *values: Any) -> list[dict]:
        """The events whose ``field`` equals one of ``values``, in batch order (:meth:`indices_where`)."""
        ev = self.events
        return [ev[i] for i in self.indices_where(field, *values)]

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
            index = {}
            for i, e in enumerate(self.events):
                v = e.get(field)
                try:
                    idx = index.get(v)
                except TypeError:  # a list or an object where a value was expected: equals no key
                    v, idx = _UNHASHABLE, index.get(_UNHASHABLE)
                if idx is None:
                    index[v] = [i]
                else:
                    idx.append(i)
            self._index[field] = index
        return index

    # -- columns -------------------------------------------------------------------------
    def column(self, name: str, dtype: Any = np.float64, missing: Any = None) -> np.ndarray:
        """One field as a numpy array.

        Numeric dtypes get NaN (floats) or ``missing`` (ints, default 0) where the field is
        absent or not a number; ``object`` keeps the values as they are (``None`` if absent).
        """
        events = self.events
        n = len(events)
        dt = np.dtype(dtype)
        if dt.kind == "f":
            fill = np.nan if missing is None else missing
            out = np.fromiter((_num(e.get(name), fill) for e in events), dtype=dt, count=n)
            return out
        if dt.kind in "iu":
            fill = 0 if missing is None else missing
            return np.fromiter((_int(e.get(name), fill) for e in events), dtype=dt, count=n)
        out = np.empty(n, dtype=object)
        out[:] = [e.get(name, missing) for e in events]
        return out

    def ts(self) -> np.ndarray:
        """Event times as int64 nanoseconds."""
        return np.fromiter((e["ts"] for e in self.events), dtype=np.int64, count=len(self.events))

    # -- selection -----------------------------------------------------------------------
    def select(self, which: np.ndarray | Sequence[int]) -> "EventBatch":
        """The events where a boolean mask is true, or at the given indices."""
        idx = np.asarray(which)
        if idx.dtype == bool:
            if len(idx) != len(self.events):
                raise ValueError(f"mask of length {len(idx)} for a batch of {len(self.events)}")
            idx = np.flatnonzero(idx)
        ev = self.events
        return EventBatch([ev[i] for i in idx.tolist()])

    def of_kind(self, kind: str) -> "EventBatch":
        return EventBatch([e for e in self.events if e.get("kind") == kind])

    def group_by(self, field: str) -> dict[Any, np.ndarray]:
        """Indices of the events per value of ``field`` (absent values group under ``None``)."""
        groups: dict[Any, list[int]] = {}
        for i, e in enumerate(self.events):
            groups.setdefault(e.get(field), []).append(i)
        return {k: np.asarray(v, dtype=np.int64) for k, v in groups.items()}

    def sorted_by_time(self) -> "EventBatch":
        """A stable sort on ``ts``: events of the same instant keep their input order."""
        order = np.argsort(self.ts(), kind="stable")
        return self.select(order)

    # -- output --------------------------------------------------------------------------
    def to_jsonl(self) -> bytes:
        return b"".join(to_json(e) + b"\n" for e in self.events)


_UNHASHABLE = object()  # the index key of values that cannot be dict keys
_NONE: list[int] = []


def _num(v: Any, fill: float) -> float:
    if v is None or isinstance(v, (str, bool, dict, list)):
        return fill
    return v


def _int(v: Any, fill: int) -> int:
    if isinstance(v, bool) or not isinstance(v, int):
        return fill
    return v
