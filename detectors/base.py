"""What every detector is: batch verbs over per-entity state, and the alerts they raise.

A detector sees one :class:`~ramparts.events.EventBatch` at a time (already in event-time
order) and the state of the entities it keeps, through a :class:`StateStore`. In replay the
store is a dict; in the worker it is a Faust table with a changelog, so a restarted or
rebalanced worker resumes where the last one stopped. State values must be plain JSON-able
data (dicts, lists, numbers, strings): that is what the changelog carries.

An alert is a dict in the shape SPEC.md fixes ("Alerts"), with time fields as int ns inside
the pipeline. Its ``id`` is stable: the same incident (detector, entity, first event) gives the
same id, and a later update of an open incident carries the same id with a larger
``event_count``, so storage and receivers deduplicate on it.

>>> alert = make_alert("access.example", "medium", ("src_ip", "10.0.0.1"), score=3.0,
...                    summary="3 things", evidence={"n": 3}, first_ts=10, last_ts=20, count=3)
>>> alert["id"], alert["entity"], alert["window"]
('2a39af3ec884b5525aae4323', {'type': 'src_ip', 'id': '10.0.0.1'}, {'start': 10, 'end': 20})
"""

from __future__ import annotations

import hashlib
from typing import Any, ClassVar, Iterable, Protocol

from pydantic import BaseModel, ConfigDict

from ramparts.events import EventBatch

SEVERITIES = ("info", "low", "medium", "high", "critical")
ENTITY_TYPES = ("principal", "model", "gpu", "node", "pod", "src_ip")


class StateStore(Protocol):
    """Per-entity detector state: ``get`` a key's value (``None`` when new), ``set`` it."""

    def get(self, key: str) -> Any: ...

    def set(self, key: str, value: Any) -> None: ...


class DictState:
    """The state store of replay and tests: a dict, with the keys written since the last reset."""

    def __init__(self) -> None:
        self.data: dict[str, Any] = {}
        self.dirty: set[str] = set()

    def get(self, key: str) -> Any:
        return self.data.get(key)

    def set(self, key: str, value: Any) -> None:
        self.data[key] = value
        self.dirty.add(key)

    def take_dirty(self) -> dict[str, Any]:
        out = {k: self.data[k] for k in self.dirty}
        self.dirty.clear()
        return out


def alert_id(detector: str, entity_type: str, entity_id: str, first_ts: int) -> str:
    """The stable id of an incident: the same detector, entity and first event give the same id."""
    h = hashlib.blake2b(f"{detector}\x1f{entity_type}\x1f{entity_id}\x1f{first_ts}".encode(), digest_size=12)
    return h.hexdigest()


def make_alert(detector: str, severity: str, entity: tuple[str, str], *, score: float, summary: str,
               evidence: dict, first_ts: int, last_ts: int, count: int) -> dict:
    """An alert in the SPEC.md shape; times are int ns (``events.to_wire`` style output turns them to text)."""
    etype, eid = entity
    return {
        "id": alert_id(detector, etype, eid, first_ts),
        "ts": last_ts,
        "detector": detector,
        "severity": severity,
        "entity": {"type": etype, "id": eid},
        "score": float(score),
        "summary": summary,
        "evidence": evidence,
        "window": {"start": first_ts, "end": last_ts},
        "first_event_ts": first_ts,
        "event_count": int(count),
    }


class Detector:
    """One detector: a name, the kinds it reads, options, and ``update(batch, state) -> alerts``.

    Subclasses set ``name`` (the dotted alert family), ``kinds`` and an ``Options`` model, and
    implement :meth:`update`; a model-routed one (``route = "model"``) also ``event_fields``.
    State keys must start with ``"<name>/"`` so detectors sharing a store never collide.
    """

    name: ClassVar[str]
    kinds: ClassVar[tuple[str, ...]]
    description: ClassVar[str] = ""
    placeholder: ClassVar[bool] = False
    # Which key the worker routes this detector's events by (streams.keys.route_key): "entity"
    # (the event's own entity: principal, source, GPU, pod) or "model" (every request and
    # prediction of one model on one partition, for detectors that judge a model as a whole).
    route: ClassVar[str] = "entity"
    # The event fields ``update`` reads (``None``: it may read any). The worker sends a
    # model-routed detector's events a second time, on ``events.model``, with only the fields
    # the enabled model-routed detectors declare (streams/topics.py ``model_route_fields``):
    # a field read but not declared would be missing there, and in no replay or unit test.
    # Absent and ``None`` must read alike (``e.get``), as for any field a parser may leave out.
    event_fields: ClassVar[tuple[str, ...] | None] = None

    class Options(BaseModel):
        model_config = ConfigDict(extra="forbid", frozen=True)

    def __init__(self, options: BaseModel | dict | None = None):
        if options is None:
            options = self.Options()
        elif isinstance(options, dict):
            options = self.Options(**options)
        self.options = options

    def update(self, batch: EventBatch, state: StateStore) -> list[dict]:
        raise NotImplementedError

    def key(self, entity_id: str) -> str:
        return f"{self.name}/{entity_id}"


def merge_alerts(alerts: Iterable[dict]) -> list[dict]:
    """One alert per id, the last update winning (a batch may update one incident many times)."""
    latest: dict[str, dict] = {}
    for a in alerts:
        latest[a["id"]] = a
    return list(latest.values())
