"""Falco alerts of priority Critical and above that no more specific detector claims.

Falco's own rules are the judgment here; this detector turns their critical alerts into
incidents per pod (per node for host-level rules), so they reach the alert outputs and
playbooks with the rest. Miner rules are left to ``gpu.miner`` (an incident per pod or node
of the Falco alert; not joined with that node's GPU samples, which live on another
partition: docs/compute.md), and shells in serving pods to ``access.shell``.

>>> from ramparts.detectors.base import DictState
>>> from ramparts.events import EventBatch
>>> e = {"kind": "runtime", "ts": 10**9, "source": "falco", "rule": "Drop and execute new binary in container",
...      "priority": "critical", "namespace": "ml", "pod": "nb-0", "process": "x"}
>>> [(a["detector"], a["entity"]["id"]) for a in FalcoCritical().update(EventBatch([e]), DictState())]
[('runtime.falco', 'ml/nb-0')]
"""

from __future__ import annotations

from ramparts.events import EventBatch

from .compute import MinerSignature
from .incident import IncidentRule, events_where, node_of, pod_id


class FalcoCritical(IncidentRule):
    """A Falco alert of priority Critical or above, per pod (per node for host rules)."""

    name = "runtime.falco"
    kinds = ("runtime",)
    # What update reads of an event (the worker's events topic carries no other field of its kinds).
    event_fields = ("cmdline", "hostname", "id", "image", "kind", "namespace", "node", "pod", "priority", "process",
                    "rule", "source", "tags", "ts")
    entity_type = "pod"
    severity = "critical"
    description = "Falco alerts of priority critical, alert or emergency, per pod (miner rules go to gpu.miner)"
    _PRIORITIES = frozenset({"critical", "alert", "emergency"})

    def __init__(self, options=None):
        super().__init__(options)
        self._miner = MinerSignature()

    def matches(self, batch: EventBatch) -> list[int]:
        p = self._PRIORITIES
        return [i for i, e in zip(*events_where(batch, "source", "falco"))
                if str(e.get("priority") or "").lower() in p and self._miner._event_match(e) is None]

    def entity_of(self, event: dict) -> str | None:
        return pod_id(event) or node_of(event) or "unknown"

    def entity_type_of(self, event: dict) -> str:
        # Host-level rules (outside any container) fire with no pod: the alert is about the node.
        return "pod" if event.get("pod") else "node"

    def describe(self, entity: str, count: int, event: dict) -> str:
        return f"Falco: {event.get('rule')} ({count} alert{'s' if count > 1 else ''}) in {entity}"

    def evidence(self, inc: dict, event: dict) -> dict:
        return {**super().evidence(inc, event), "rule": event.get("rule"), "priority": event.get("priority"),
                "process": event.get("process"), "image": event.get("image")}
