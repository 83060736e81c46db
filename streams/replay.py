"""``ramparts replay``: the whole pipeline over files, no broker.

Files of different formats are read side by side and merged in event time (a pod list's
workloads apply from their start; DCGM scrapes interleave with gateway logs), cut into
batches and handed to the same :meth:`Pipeline.process_batch` the worker calls. Alerts are
written as JSON lines at the end, one line per incident in its final state.

Replay runs one pipeline with every enabled detector over each whole batch, those routed by
model (``Detector.route == "model"``) beside those routed by entity: the worker splits them
over two topics only because its entities and models are spread over partitions and workers,
and here one process owns them all, with one state.

The merge is by watermark, not per event: the file whose newest event is oldest is read
next, and everything no later than the oldest "newest event" of all open files is released,
sorted with numpy. A file that is itself out of order is tolerated (its events are released
in time order once every file has moved past them).

>>> a = iter([[{"ts": 1}, {"ts": 5}], [{"ts": 9}]])
>>> b = iter([[{"ts": 2}, {"ts": 3}], [{"ts": 8}]])
>>> [[e["ts"] for e in chunk] for chunk in merge_by_time([a, b])]
[[1, 2, 3], [5], [8], [9]]
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, BinaryIO

import numpy as np
import orjson

from ramparts.detectors.base import DictState
from ramparts.events import EventBatch
from ramparts.redact import Hasher

from .parsers import DeadLetter
from .pipeline import Pipeline, alert_to_wire
from .run import DEFAULT_DEAD_LETTER, DeadLetterWriter, ParseReport, iter_file_batches

BATCH_EVENTS = 8192


def merge_by_time(sources: list[Iterator[EventBatch | Iterable[dict]]],
                  batch_events: int | None = None) -> Iterator[EventBatch]:
    """Merge per-file iterators of event chunks into chunks in event-time order.

    With ``batch_events``, each released run is yielded in pieces of at most that many events
    (the first ``batch_events``, the next, ...), each piece a selection of the merge's pool made
    at once: the same batches as cutting the chunks afterwards (``chunk[i:i + batch_events]``),
    without a selection of the whole chunk first and its cut (a list of the order per event,
    and ``numpy.asarray`` of a ``range`` per slice)."""
    active = {i: it for i, it in enumerate(sources)}
    newest = {i: -(2**63) for i in active}  # the newest ts read from each open file
    pending: list[EventBatch] = []
    released_up_to = -(2**63)

    def release(upto: int | None) -> Iterator[EventBatch]:
        nonlocal pending
        if not pending:
            return
        pool = pending[0] if len(pending) == 1 else EventBatch.concat(pending)
        ts = pool.ts()
        order = np.argsort(ts, kind="stable")
        if upto is None:
            pending = []
            cut = len(order)
        else:
            cut = int(np.searchsorted(ts[order], upto, side="right"))
            # What stays is kept in its sorted order over only the parts it is in (compact): the
            # parts released whole are dropped, and a stable sort of it followed by the next chunks
            # orders it as the sort of the whole would. Its times go with it (select carries them).
            rest = pool.select(order[cut:]).compact()
            pending = [rest] if len(rest) else []
        if not cut:
            return
        if batch_events is None or cut <= batch_events:
            yield pool.select(order[:cut])
            return
        for start in range(0, cut, batch_events):
            yield pool.select(order[start:min(start + batch_events, cut)])

    while active:
        # Read from the file that lags most: that is the one holding the watermark back.
        i = min(active, key=newest.__getitem__)
        chunk = next(active[i], None)
        if chunk is None:
            del active[i], newest[i]
        else:
            if not isinstance(chunk, EventBatch):
                chunk = EventBatch(list(chunk))
            if len(chunk):
                pending.append(chunk)
                newest[i] = max(newest[i], int(chunk.ts().max()))
        if active:
            watermark = min(newest.values())
            if watermark > released_up_to:
                released_up_to = watermark
                yield from release(watermark)
    yield from release(None)


class Progress:
    """A progress line on stderr for long inputs: bytes read of the total, events, rate."""

    def __init__(self, total_bytes: int | None, stream: BinaryIO | Any = None, enabled: bool | None = None,
                 every_seconds: float = 0.5):
        self.stream = stream or sys.stderr
        self.enabled = self.stream.isatty() if enabled is None else enabled
        self.total = total_bytes
        self.read = 0
        self.events = 0
        self.t0 = time.monotonic()
        self._last = 0.0
        self.every = every_seconds
        self._shown = False

    def on_read(self, n: int) -> None:
        self.read += n

    def tick(self, events: int) -> None:
        self.events += events
        now = time.monotonic()
        if self.enabled and now - self._last >= self.every:
            self._last = now
            self._draw(now)

    def _draw(self, now: float) -> None:
        rate = self.events / max(now - self.t0, 1e-9)
        if self.total:
            frac = min(self.read / self.total, 1.0)
            bar = "#" * int(frac * 30)
            head = f"[{bar:<30}] {frac:6.1%}"
        else:
            head = f"{self.read / 1e6:8.1f} MB read"
        self.stream.write(f"\r{head}  {self.events:,} events  {rate:,.0f} events/s ")
        self.stream.flush()
        self._shown = True

    def done(self) -> None:
        if self._shown:
            self.stream.write("\r" + " " * 78 + "\r")
            self.stream.flush()


class _DeadLetters:
    """Dead letters to the file and, when there is a store, to its dead_letters table."""

    def __init__(self, writer: DeadLetterWriter, sink: Any | None, hasher: Hasher):
        self.writer, self.sink, self.hasher = writer, sink, hasher

    @property
    def count(self) -> int:
        return self.writer.count

    def write(self, dead: list[DeadLetter]) -> None:
        if not dead:
            return
        self.writer.write(dead)
        if self.sink is not None:
            self.sink.write_dead_letters([d.to_dict(self.hasher) for d in dead])


@dataclass
class ReplayReport:
    parse: ParseReport
    events: int = 0
    elapsed_seconds: float = 0.0
    alerts: dict[str, dict] = field(default_factory=dict)  # id -> final state
    store: str | None = None
    store_counts: dict[str, int] = field(default_factory=dict)
    placeholders: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # what detectors say about themselves (a model missing)
    detector_errors: int = 0
    last_detector_error: str | None = None

    def render(self) -> str:
        out = [self.parse.render().rstrip("\n")]
        rate = self.events / self.elapsed_seconds if self.elapsed_seconds else 0.0
        out.append(f"replayed {self.events:,} events in {self.elapsed_seconds:.2f} s ({rate:,.0f} events/s)")
        by_det: dict[str, int] = {}
        for a in self.alerts.values():
            by_det[a["detector"]] = by_det.get(a["detector"], 0) + 1
        out.append(f"alerts: {len(self.alerts)} incident(s)" +
                   (": " + ", ".join(f"{d} {n}" for d, n in sorted(by_det.items())) if by_det else ""))
        if self.detector_errors:
            out.append(f"error: {self.detector_errors} detector failure(s); last: {self.last_detector_error}")
        fired = sorted(p for p in self.placeholders if p in by_det)
        if fired:
            out.append("note: " + ", ".join(fired) + " alerts come from placeholder rules until their "
                       "detector issues land")
        for n in self.notes:
            out.append(f"note: {n}")
        if self.store:
            counts = ", ".join(f"{t} {n:,}" for t, n in sorted(self.store_counts.items()) if n)
            out.append(f"store: {self.store}" + (f" ({counts})" if counts else ""))
        return "\n".join(out) + "\n"


def replay(paths: list[str], config=None, fmt: str = "auto", sink: Any | None = None,
           dead_letter_path: str | None = None, batch_events: int = BATCH_EVENTS,
           progress: Progress | None = None, pipeline: Pipeline | None = None) -> ReplayReport:
    """Replay ``paths`` through the pipeline; ``sink`` (a ClickHouse sink) is flushed and counted at the end."""
    hasher = Hasher(config.resolved_hash_key() if config is not None else None)
    hasher.warn_if_development_key()
    parse_report = ParseReport(dead_letter_path=dead_letter_path or DEFAULT_DEAD_LETTER)
    report = ReplayReport(parse=parse_report)
    pipeline = pipeline or Pipeline.from_config(config, sink)  # every detector, whatever its route
    report.placeholders = pipeline.placeholders
    report.notes = [d.note for d in pipeline.detectors if getattr(d, "note", None)]
    state = DictState()
    if progress is None:
        total = sum(os.path.getsize(p) for p in paths
                    if p != "-" and os.path.isfile(p) and not p.endswith(".gz"))
        progress = Progress(total or None)
    dead_out = _DeadLetters(DeadLetterWriter(parse_report.dead_letter_path, hasher), sink, hasher)
    t0 = time.perf_counter()
    try:
        sources = []
        for path in paths:
            if path != "-" and os.path.isdir(path):
                parse_report.failed_files.append((path, "is a directory"))
                continue
            sources.append(iter_file_batches(path, fmt, config, hasher, parse_report, dead_out,
                                             stamp_ids=True, on_read=progress.on_read))
        for part in merge_by_time(sources, batch_events):
            for a in pipeline.process_batch(part, state):
                report.alerts[a["id"]] = a
            report.events += len(part)
            progress.tick(len(part))
        if sink is not None:
            sink.flush()
    finally:
        dead_out.writer.close()
        progress.done()
    report.elapsed_seconds = time.perf_counter() - t0
    report.detector_errors = pipeline.stats.detector_errors
    report.last_detector_error = pipeline.stats.last_detector_error
    if sink is not None:
        report.store = repr(sink)
        report.store_counts = sink.counts()
    return report


def write_alerts(alerts: Iterable[dict], out: BinaryIO) -> int:
    """Alerts as JSON lines in first-event order; returns how many."""
    n = 0
    for a in sorted(alerts, key=lambda a: (a["first_event_ts"], a["id"])):
        out.write(orjson.dumps(alert_to_wire(a)) + b"\n")
        n += 1
    return n
