"""Incident rules: matching events open, extend and close an incident per entity.

The base of the rule-shaped detectors of ``access.py`` and ``runtime.py`` (and of the
event rules of ``compute.py``): events that match open an incident for an entity once
``min_count`` of them fall within ``window_seconds``; the incident stays open (same alert id,
growing ``event_count``) while matches keep coming less than ``gap_seconds`` apart. A
subclass says which events match (``matches``), whose they are (``entity_of``) and what the
alert says (``describe``, ``evidence``).

>>> from ramparts.events import EventBatch
>>> from ramparts.detectors.base import DictState
>>> from ramparts.detectors.access import CredentialStuffing
>>> rule = CredentialStuffing({"min_count": 3})
>>> batch = EventBatch([{"kind": "request", "ts": i * 10**9, "source": "nginx", "status": 401,
...                      "src_ip": "198.51.100.7", "principal": None} for i in range(5)])
>>> [(a["detector"], a["entity"]["id"], a["event_count"]) for a in rule.update(batch, DictState())]
[('access.stuffing', '198.51.100.7', 5)]
"""

from __future__ import annotations

import zlib
from typing import ClassVar

from pydantic import Field

from ramparts.events import EventBatch

from .base import Detector, StateStore, make_alert

NS = 1_000_000_000
SEEN_IDS = 64


class IncidentRule(Detector):
    """Count matching events per entity; open, extend and close incidents (see the module doc)."""

    entity_type: ClassVar[str]
    severity: ClassVar[str] = "medium"

    class Options(Detector.Options):
        min_count: int = Field(default=1, ge=1, description="Matches within window_seconds that open an incident.")
        window_seconds: float = Field(default=60.0, gt=0, description="Window for min_count.")
        gap_seconds: float = Field(default=300.0, gt=0, description="An incident closes after this long without a match.")

    def matches(self, batch: EventBatch) -> list[int]:
        raise NotImplementedError

    def entity_of(self, event: dict) -> str | None:
        raise NotImplementedError

    def entity_type_of(self, event: dict) -> str:
        return self.entity_type

    def describe(self, entity: str, count: int, event: dict) -> str:
        raise NotImplementedError

    def update(self, batch: EventBatch, state: StateStore) -> list[dict]:
        by_entity: dict[tuple[str, str, str], list[dict]] = {}
        for e in events_at(batch, self.matches(batch)):
            ent = self.entity_of(e)
            if ent is not None:
                etype = self.entity_type_of(e)
                by_entity.setdefault((etype, ent, self.state_key(etype, ent, e)), []).append(e)
        o = self.options
        window, gap, need = int(o.window_seconds * NS), int(o.gap_seconds * NS), o.min_count
        alerts = []
        for (etype, ent, key), events in by_entity.items():
            st = state.get(key) or {"recent": [], "inc": None}
            recent, inc = list(st["recent"]), st["inc"]
            extra = dict(st.get("x") or {})
            seen = list(st.get("seen", ()))
            seen_set = set(seen)
            touched: dict[int, tuple[dict, dict, dict]] = {}
            for e in events:
                # At-least-once delivery redoes the tail of a killed worker's input with the
                # same position ids: an event counted already must not count twice (it would
                # push a benign source over the threshold). The last SEEN_IDS ids are kept.
                eid = e.get("id")
                if eid is not None:
                    h = zlib.crc32(eid.encode())
                    if h in seen_set:
                        continue
                    seen.append(h)
                    seen_set.add(h)
                t = e["ts"]
                if inc is not None and t - inc["last"] > gap:
                    inc = None
                    extra = {}
                self.observe(extra, e)
                if inc is not None:
                    inc = {"first": inc["first"], "last": max(t, inc["last"]), "count": inc["count"] + 1}
                else:
                    recent.append(t)
                    # Only the last min_count times can decide whether a burst is on: bounded state.
                    del recent[:-need]
                    if len(recent) >= need and t - recent[0] <= window:
                        inc = {"first": recent[0], "last": t, "count": len(recent)}
                        recent = []
                if inc is not None:
                    touched[inc["first"]] = (inc, e, self.extra_evidence(extra))
            st = {"recent": recent, "inc": inc, "seen": seen[-SEEN_IDS:]}
            if extra:
                st["x"] = extra
            state.set(key, st)
            for i, last_event, extra_ev in touched.values():
                alerts.append(make_alert(
                    self.name, self.severity, (etype, ent), score=float(i["count"]),
                    summary=self.describe(ent, i["count"], last_event),
                    evidence={**self.evidence(i, last_event), **extra_ev},
                    first_ts=i["first"], last_ts=i["last"],
                    count=i["count"]))
        return alerts

    def state_key(self, etype: str, entity: str, event: dict) -> str:
        """Where an entity's incident state lives. A second entity type gets its own keys: a
        node and a pod of one name stay apart."""
        return self.key(entity if etype == self.entity_type else f"{etype}:{entity}")

    def observe(self, extra: dict, event: dict) -> None:
        """Keep a little more per entity (bounded, JSON): ``extra`` lives as long as the incident."""

    def extra_evidence(self, extra: dict) -> dict:
        return {}

    def evidence(self, inc: dict, event: dict) -> dict:
        o = self.options
        return {"statistic": "matching events", "value": inc["count"], "threshold": o.min_count,
                "window_seconds": o.window_seconds}


def events_at(batch: EventBatch, idx: list[int]) -> list[dict]:
    """The events at batch indices ``idx`` as dicts, making only theirs.

    On a batch of columns ``batch.events`` makes a dict per event of the batch, about 1 µs each;
    a detector that wants a few events whole (matches, alerts, rare kinds) takes them here
    instead, one row each (as ``batch.select(idx).events`` would, without the selection). On a
    batch of dicts these are its own dicts.

    >>> from ramparts.events import columnar
    >>> events_at(columnar([{"kind": "gpu", "ts": 2}, {"kind": "request", "ts": 1}]), [1])
    [{'kind': 'request', 'ts': 1}]
    """
    return [batch[i] for i in idx]


def events_of_kinds(batch: EventBatch, *kinds: str) -> list[dict]:
    """The events of ``kinds`` as dicts, in batch order, made once per batch for every detector
    that asks (shared: do not change them)."""
    return events_where(batch, "kind", *kinds)[1]


def events_where(batch: EventBatch, field: str, *values) -> tuple[list[int], list[dict]]:
    """The indices and dicts of the events whose ``field`` is one of ``values``
    (:meth:`~ramparts.events.EventBatch.indices_where`), made once per batch for every detector
    that asks (shared: do not change them). For the few events a rule tests whole (audit, Falco,
    runtime, GPU events: a few percent of the mix) this costs less than reading the fields it
    tests of every event of the batch."""
    def build(b: EventBatch) -> tuple[list[int], list[dict]]:
        idx = b.indices_where(field, *values)
        return idx, events_at(b, idx)

    return batch.shared(f"detectors.events_where:{field}=" + "|".join(map(str, values)), build)


def pod_id(event: dict) -> str | None:
    pod = event.get("pod")
    if pod is None:
        return None
    ns = event.get("namespace")
    return f"{ns}/{pod}" if ns else pod


def node_of(event: dict) -> str | None:
    """The node a runtime or GPU event names: Kubernetes' ``node``, else Falco's ``hostname``."""
    return event.get("node") or event.get("hostname")
