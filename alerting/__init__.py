"""Where alerts become incidents and notifications, and leave through the outputs in ``sinks/``.

``incidents.py`` merges a detector's alerts about one entity into one incident (state with
the partition that owns the entity) and decides when a person is told; ``outbox.py`` keeps
every notification on disk until it is delivered; ``delivery.py`` sends them with retries,
backoff, Retry-After and a breaker per output. :class:`AlertingStage` is what the batch core
(``streams/pipeline.py``) calls once per batch. See docs/alerting.md.
"""

from __future__ import annotations

from typing import Any

from .incidents import IncidentTracker


class AlertingStage:
    """Per batch: alerts -> incident updates (returned) and notifications (into the outbox)."""

    def __init__(self, tracker: IncidentTracker, outbox: Any | None = None, outputs: list[Any] | None = None,
                 on_accept: Any | None = None):
        self.tracker = tracker
        self.outbox = outbox
        self.outputs = outputs or []
        self.on_accept = on_accept  # called after notifications were queued (wakes delivery)
        self.notifications = 0
        self.queued = 0

    @classmethod
    def from_config(cls, config, outbox: Any | None = None, outputs: list[Any] | None = None,
                    on_accept: Any | None = None) -> "AlertingStage":
        return cls(IncidentTracker.from_config(config), outbox, outputs, on_accept)

    def on_batch(self, alerts: list[dict], state: Any, now: int | None, scope: Any = None) -> list[dict]:
        alerts, notes = self.tracker.update(alerts, state, now, scope)
        self.notifications += len(notes)
        if self.outbox is not None and (alerts or notes):
            queued = self.outbox.accept(alerts, notes, self.outputs)
            self.queued += queued
            if queued and self.on_accept is not None:
                self.on_accept()
        return alerts
