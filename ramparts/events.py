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

from collections.abc import Iterable, Iterator, Sequence
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
    """A list of normalized events with the column and selection verbs the pipeline needs."""

    __slots__ = ("events",)

    def __init__(self, events: list[dict] | None = None):
        self.events: list[dict] = events if events is not None else []

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

    def extend(self, events: Iterable[dict]) -> None:
        self.events.extend(events)

    def kinds(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for e in self.events:
            k = e.get("kind")
            counts[k] = counts.get(k, 0) + 1
        return counts

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


def _num(v: Any, fill: float) -> float:
    if v is None or isinstance(v, (str, bool, dict, list)):
        return fill
    return v


def _int(v: Any, fill: int) -> int:
    if isinstance(v, bool) or not isinstance(v, int):
        return fill
    return v
