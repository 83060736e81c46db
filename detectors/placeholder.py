"""Placeholder rules: simple thresholds that raise real alerts until the detector issues land.

They exist so that the streaming runtime, storage and the demo have alerts to carry; they
are marked ``placeholder = True`` and ``ramparts dev`` / ``ramparts replay`` say so in their
output. Each is an *incident rule*: events that match open an incident for an entity once
``min_count`` of them fall within ``window_seconds``; the incident stays open (same alert id,
growing ``event_count``) while matches keep coming less than ``gap_seconds`` apart.

>>> from ramparts.events import EventBatch
>>> from ramparts.detectors.base import DictState
>>> rule = AuthFailureBurst({"min_count": 3})
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

    placeholder = True
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
        by_entity: dict[tuple[str, str], list[dict]] = {}
        for i in self.matches(batch):
            e = batch.events[i]
            ent = self.entity_of(e)
            if ent is not None:
                by_entity.setdefault((self.entity_type_of(e), ent), []).append(e)
        o = self.options
        window, gap, need = int(o.window_seconds * NS), int(o.gap_seconds * NS), o.min_count
        alerts = []
        for (etype, ent), events in by_entity.items():
            # A second entity type gets its own keys: a node and a pod of one name stay apart.
            key = self.key(ent if etype == self.entity_type else f"{etype}:{ent}")
            st = state.get(key) or {"recent": [], "inc": None}
            recent, inc = list(st["recent"]), st["inc"]
            seen = list(st.get("seen", ()))
            seen_set = set(seen)
            touched: dict[int, dict] = {}
            last_event = events[-1]
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
                    touched[inc["first"]] = inc
                    last_event = e
            state.set(key, {"recent": recent, "inc": inc, "seen": seen[-SEEN_IDS:]})
            for i in touched.values():
                alerts.append(make_alert(
                    self.name, self.severity, (etype, ent), score=float(i["count"]),
                    summary=self.describe(ent, i["count"], last_event),
                    evidence=self.evidence(i, last_event), first_ts=i["first"], last_ts=i["last"],
                    count=i["count"]))
        return alerts

    def evidence(self, inc: dict, event: dict) -> dict:
        o = self.options
        return {"statistic": "matching events", "value": inc["count"], "threshold": o.min_count,
                "window_seconds": o.window_seconds, "placeholder_rule": True}


class AuthFailureBurst(IncidentRule):
    """Many 401s from one source address: someone trying credentials (placeholder rule)."""

    name = "access.stuffing"
    kinds = ("request",)
    entity_type = "src_ip"
    severity = "high"
    description = "placeholder: >= min_count HTTP 401 responses to one source address within the window"

    class Options(IncidentRule.Options):
        min_count: int = Field(default=20, ge=1, description="401s within window_seconds that open an incident.")

    def matches(self, batch: EventBatch) -> list[int]:
        return [i for i, e in enumerate(batch.events) if e.get("kind") == "request" and e.get("status") == 401]

    def entity_of(self, event: dict) -> str | None:
        return event.get("src_ip")

    def describe(self, entity: str, count: int, event: dict) -> str:
        return f"{count} failed authentications (HTTP 401) from {entity}"


class FalcoCritical(IncidentRule):
    """A Falco alert of priority Critical or above (placeholder rule)."""

    name = "runtime.falco"
    kinds = ("runtime",)
    entity_type = "pod"
    severity = "critical"
    description = "placeholder: Falco alerts of priority critical, alert or emergency, per pod"
    _PRIORITIES = frozenset({"critical", "alert", "emergency"})

    def matches(self, batch: EventBatch) -> list[int]:
        p = self._PRIORITIES
        return [i for i, e in enumerate(batch.events)
                if e.get("source") == "falco" and str(e.get("priority") or "").lower() in p]

    def entity_of(self, event: dict) -> str | None:
        return pod_id(event) or event.get("node") or event.get("hostname") or "unknown"

    def entity_type_of(self, event: dict) -> str:
        # Host-level rules (outside any container) fire with no pod: the alert is about the node.
        return "pod" if event.get("pod") else "node"

    def describe(self, entity: str, count: int, event: dict) -> str:
        return f"Falco: {event.get('rule')} ({count} alert{'s' if count > 1 else ''}) in {entity}"

    def evidence(self, inc: dict, event: dict) -> dict:
        return {**super().evidence(inc, event), "rule": event.get("rule"), "priority": event.get("priority"),
                "process": event.get("process"), "image": event.get("image")}


class PodExec(IncidentRule):
    """``kubectl exec`` / ``attach`` into a pod, from the Kubernetes audit log (placeholder rule)."""

    name = "access.k8s_exec"
    kinds = ("runtime",)
    entity_type = "pod"
    severity = "medium"
    description = "placeholder: exec or attach into a pod (Kubernetes audit)"

    def matches(self, batch: EventBatch) -> list[int]:
        return [i for i, e in enumerate(batch.events)
                if e.get("source") == "k8s_audit" and e.get("resource") == "pods"
                and e.get("subresource") in ("exec", "attach") and e.get("verb") in ("create", "get")]

    def entity_of(self, event: dict) -> str | None:
        return pod_id(event)

    def describe(self, entity: str, count: int, event: dict) -> str:
        return f"{event.get('user') or 'someone'} ran {event.get('subresource')} into pod {entity} ({count}x)"

    def evidence(self, inc: dict, event: dict) -> dict:
        return {**super().evidence(inc, event), "user": event.get("user"), "src_ip": event.get("src_ip")}


def pod_id(event: dict) -> str | None:
    pod = event.get("pod")
    if pod is None:
        return None
    ns = event.get("namespace")
    return f"{ns}/{pod}" if ns else pod
