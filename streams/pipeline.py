"""The batch-processing core: one batch of events in, alerts out, everything written.

``ramparts replay`` (files, no broker) and the Faust worker are thin shells around
:meth:`Pipeline.process_batch`; that is what makes "replay and the worker produce the same
alerts for the same input" true by construction. The shell owns the I/O around it: where the
batch came from, where the detector state lives (a dict, or a Faust table), and when the
store is flushed (the worker flushes before it lets Faust commit offsets).

A pipeline may run only some detectors, and may leave the events to another stage and
write only its alerts. The worker runs two: the detectors routed by entity over the
``events`` topic and the detectors routed by model (``Detector.route == "model"``) over
``events.model``, both storing only their alerts (:meth:`Pipeline.from_config` with ``route=``
and ``write_events=False``): the worker's parse stage stores the events, whole, before they are
cut to the fields each route's detectors read. Replay keeps one pipeline with every detector over the whole batch:
one process owns every entity and every model there, so routing changes nothing.

>>> from ramparts.detectors.base import DictState
>>> p = Pipeline.from_config(None)
>>> events = [{"kind": "request", "ts": i * 10**9, "source": "nginx", "status": 401,
...            "src_ip": "192.0.2.9", "principal": None, "id": f"f:{i}"} for i in range(25)]
>>> [(a["detector"], a["event_count"]) for a in p.process_batch(events, DictState())]
[('access.stuffing', 25)]
>>> p.stats.events, p.stats.alerts
(25, 1)
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any

import orjson

from ramparts.detectors import build_detectors
from ramparts.detectors.base import Detector, StateStore, merge_alerts
from ramparts.errors import DetectorError
from ramparts.events import EventBatch
from ramparts.timeutil import format_rfc3339

from .keys import ROUTES

log = logging.getLogger("ramparts.pipeline")

# What :meth:`Pipeline.process_batch` itself reads of each event, besides its detectors: the
# time it sorts by and the kind it counts (the incident layer reads alerts, and the batch's
# latest ``ts``). A pipeline with ``write_events=False`` needs no other field of an event than
# these and its detectors' ``event_fields``; the worker's routes send it no others.
EVENT_FIELDS = ("kind", "ts")


@dataclass
class PipelineStats:
    """Counted per batch, not per event (STYLE.md, Vector's telemetry)."""

    batches: int = 0
    events: int = 0
    alerts: int = 0  # alert updates raised (an incident updated in 3 batches counts 3)
    events_by_kind: dict[str, int] = field(default_factory=dict)
    alerts_by_detector: dict[str, int] = field(default_factory=dict)
    detector_errors: int = 0
    last_detector_error: str | None = None
    busy_seconds: float = 0.0


class Pipeline:
    """Detectors over a batch, then the store: ``process_batch(events, state) -> alerts``.

    ``write_events=False`` stores only the alerts (the events are another pipeline's to store).
    """

    def __init__(self, detectors: list[Detector], sink: Any | None = None, *, write_events: bool = True,
                 alerting: Any | None = None):
        self.detectors = detectors
        self.sink = sink
        self.write_events = write_events
        # alerting.AlertingStage: the detectors' alerts become incident updates (state with the
        # entity's partition) and notifications go to the durable outbox; None: alerts as raised.
        self.alerting = alerting
        self.stats = PipelineStats()

    @classmethod
    def from_config(cls, config, sink: Any | None = None, *, route: str | None = None,
                    write_events: bool = True, alerting: Any | None = None) -> "Pipeline":
        """The enabled detectors of ``config``; with ``route``, only those routed that way
        (``Detector.route``: ``"entity"`` or ``"model"``); without, all of them (replay).
        Alerts go through ``alerting`` (default: incidents per ``config.alerting``, no outbox)."""
        from ramparts.alerting import AlertingStage
        from ramparts.alerting.incidents import IncidentTracker

        detectors = build_detectors(config)
        if route is not None:
            if route not in ROUTES:
                raise ValueError(f"unknown route {route!r}; known: {', '.join(ROUTES)}")
            detectors = [d for d in detectors if d.route == route]
        if alerting is None:
            alerting = AlertingStage.from_config(config) if config is not None else AlertingStage(IncidentTracker())
        return cls(detectors, sink, write_events=write_events, alerting=alerting)

    @property
    def placeholders(self) -> list[str]:
        return [d.name for d in self.detectors if d.placeholder]

    def process_batch(self, events: list[dict] | EventBatch, state: StateStore, scope: Any = None) -> list[dict]:
        """Run every detector over ``events`` (sorted here by event time, stably) and store.

        Returns the alerts raised or updated by this batch, one per incident id. A detector
        that fails on a batch is logged as a :class:`DetectorError` naming it and the batch's
        time span, and counted (``stats.detector_errors``); the other detectors and the store
        still get the batch. Redelivering the batch would fail the same way forever.
        ``scope`` names whose state ``state`` is (the worker's partition), for the incidents.
        """
        t0 = time.perf_counter()
        batch = (events if isinstance(events, EventBatch) else EventBatch(events)).sorted_by_time()
        n = len(batch)
        raised: list[dict] = []
        for d in self.detectors:
            try:
                raised.extend(d.update(batch, state))
            except Exception as e:  # one broken detector must not stop the others or the store
                self.stats.detector_errors += 1
                err = DetectorError(f"detector {d.name} failed on a batch of {n} events "
                                    f"({_span(batch)}): {type(e).__name__}: {e}")
                self.stats.last_detector_error = str(err)
                log.error("%s", err, exc_info=e)
        alerts = merge_alerts(raised)
        if self.alerting is not None:
            # The batch's latest time from its ts array (read by the sort), not the ts of every event.
            alerts = self.alerting.on_batch(alerts, state, int(batch.ts()[-1]) if n else None, scope)
        if self.sink is not None:
            if self.write_events:
                self.sink.write_events(batch)  # read by columns: no dict per event (sinks/clickhouse)
            if alerts:
                self.sink.write_alerts(alerts)
        s = self.stats
        s.batches += 1
        s.events += n
        s.alerts += len(alerts)
        for k, n in batch.kinds().items():
            s.events_by_kind[k] = s.events_by_kind.get(k, 0) + n
        for a in alerts:
            s.alerts_by_detector[a["detector"]] = s.alerts_by_detector.get(a["detector"], 0) + 1
        s.busy_seconds += time.perf_counter() - t0
        return alerts


def _span(batch: EventBatch) -> str:
    if not len(batch):
        return "empty"
    ts = batch.values("ts")
    return f"{format_rfc3339(ts[0])} .. {format_rfc3339(ts[-1])}"


def alert_to_wire(alert: dict) -> dict:
    """An alert as JSON-ready data: every time field as RFC 3339 text (SPEC.md "Alerts")."""
    out = dict(alert)
    for f in ("ts", "first_event_ts"):
        if isinstance(out.get(f), int):
            out[f] = format_rfc3339(out[f])
    w = out.get("window")
    if isinstance(w, dict):
        out["window"] = {k: format_rfc3339(v) if isinstance(v, int) else v for k, v in w.items()}
    return out


def alert_to_json(alert: dict) -> bytes:
    return orjson.dumps(alert_to_wire(alert))
