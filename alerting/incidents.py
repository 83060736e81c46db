"""Incidents: alerts of one detector about one entity become one incident, and few notifications.

Detectors already give an incident of theirs a stable id and a growing ``event_count``; they
also close it on their own gap and open a new one (a new id) when the entity goes on. The
tracker here sits after them and is what the on-call engineer sees: every alert of a detector
about an entity that comes within ``window`` (event time) of the incident's last one updates
that one incident -- the same ``id`` (the first alert's), ``event_count`` summed over the
detector's incidents, the severity the worst seen so far, the window from the first event on.
After ``window`` without an alert the incident resolves.

Notifications (what goes to the outbox and on to Slack, PagerDuty ...) are sent only when
something changed that a person should hear about:

* ``firing``: the incident opened;
* ``escalated``: its severity rose above what was last sent;
* ``renotify``: it is still open ``renotify`` after the last notification (0: never);
* ``resolved``: it went quiet for ``window``.

So a storm of any number of alerts on one entity is one incident and at most
``2 + len(SEVERITIES)`` notifications per ``renotify`` period.

State lives in the same :class:`~ramparts.detectors.base.StateStore` as detector state, under
``incidents/<detector>/<type>:<id>``: in the worker that is the Faust table of the partition
that owns the entity, so every worker agrees on each incident, and a worker that takes over a
partition takes its incidents with it. Which incidents are open is also kept in memory per
*scope* (the partition), to find quiet ones without a scan; a worker rebuilds it from the
store the first time it sees a scope (``TableState.scan``).

Each notification has an id ``<incident id>.<n>`` (n counts the incident's notifications), so
a batch processed again after a crash produces the same ids, and the outbox keeps one of each.
A resolved incident leaves a tombstone (its id and the notifications counted) for
``TOMBSTONE_WINDOWS`` windows: a detector incident that outlives the window (a detector gap
longer than ``window``) reopens the incident under the same id, and its notifications go on
counting (``<id>.3``, not ``<id>.1`` again, which the outbox would drop as queued already).

>>> from ramparts.detectors.base import DictState, make_alert
>>> t = IncidentTracker(window_seconds=60)
>>> state = DictState()
>>> a1 = make_alert("access.stuffing", "medium", ("src_ip", "10.0.0.1"), score=1, summary="s",
...                 evidence={}, first_ts=0, last_ts=10**9, count=20)
>>> alerts, notes = t.update([a1], state, now=10**9)
>>> [(n["event"], n["id"]) for n in notes] == [("firing", a1["id"] + ".1")]
True
>>> a2 = make_alert("access.stuffing", "high", ("src_ip", "10.0.0.1"), score=1, summary="s",
...                 evidence={}, first_ts=5 * 10**9, last_ts=6 * 10**9, count=30)
>>> alerts, notes = t.update([a2], state, now=6 * 10**9)
>>> alerts[0]["id"] == a1["id"], alerts[0]["event_count"], [n["event"] for n in notes]
(True, 50, ['escalated'])
>>> [n["event"] for n in t.update([], state, now=100 * 10**9)[1]]
['resolved']
"""

from __future__ import annotations

from typing import Any, Iterable

from ramparts.detectors.base import SEVERITIES

NS = 1_000_000_000
PREFIX = "incidents/"
RANK = {s: i for i, s in enumerate(SEVERITIES)}
PARTS = 4
TOMBSTONE_WINDOWS = 4
EVENTS = ("firing", "escalated", "renotify", "resolved", "acknowledged")


class IncidentTracker:
    """Merge alerts into incidents in ``state`` and say which notifications to send."""

    def __init__(self, window_seconds: float = 3600.0, renotify_seconds: float = 0.0):
        self.window = int(window_seconds * NS)
        self.renotify = int(renotify_seconds * NS)
        # scope -> {state key: last alert ts} of the incidents open there; a scope is indexed
        # once it is in here (rebuilt from the store the first time a scope is seen).
        self.open: dict[Any, dict[str, int]] = {}

    @classmethod
    def from_config(cls, config) -> "IncidentTracker":
        a = config.alerting
        return cls(a.incident_window_seconds, a.renotify_seconds)

    def forget(self, scopes: Iterable[Any]) -> None:
        """Drop the open-incident index of ``scopes`` (partitions revoked from this worker)."""
        for s in scopes:
            self.open.pop(s, None)

    def _index(self, state: Any, scope: Any) -> dict[str, int]:
        idx = self.open.get(scope)
        if idx is None:
            idx = self.open[scope] = {}
            for key, inc in _scan(state, PREFIX):
                if isinstance(inc, dict) and inc.get("scope") == scope:
                    idx[key] = inc["last"]
        return idx

    def update(self, alerts: list[dict], state: Any, now: int | None, scope: Any = None
               ) -> tuple[list[dict], list[dict]]:
        """The batch's alerts as incident updates, and the notifications they call for.

        ``now`` is the batch's latest event time: incidents of ``scope`` quiet for the window
        by then resolve (a notification each). Alerts are taken in time order.
        """
        idx = self._index(state, scope)
        out: list[dict] = []
        notes: list[dict] = []
        for a in sorted(alerts, key=_alert_ts):
            ent = a["entity"]
            key = f"{PREFIX}{a['detector']}/{ent['type']}:{ent['id']}"
            inc = state.get(key)
            ts = a["ts"]
            if inc is not None and "closed" not in inc and ts - inc["last"] > self.window:
                notes.append(self._resolve(key, inc, state, idx, scope))
                inc = state.get(key)
            if inc is not None and "closed" in inc:
                # A resolved incident's tombstone: a detector incident that outlived the window
                # reopens it under the same id, so its notifications go on counting from there
                # (``<id>.1`` again would be dropped by the outbox as already queued).
                tomb, inc = inc, None
                n0 = tomb["n"] if tomb["closed"] == a["id"] else 0
            else:
                n0 = 0
            if inc is None:
                inc = {"id": a["id"], "parts": [], "base": 0, "first": a.get("first_event_ts", ts), "last": ts,
                       "sev": a["severity"], "nsev": None, "nat": None, "n": n0, "scope": scope}
            else:
                inc["first"] = min(inc["first"], a.get("first_event_ts", ts))
                inc["last"] = max(inc["last"], ts)
                if RANK[a["severity"]] > RANK[inc["sev"]]:
                    inc["sev"] = a["severity"]
                inc["scope"] = scope
            _count(inc, a["id"], a["event_count"])
            merged = dict(a)
            merged.update(id=inc["id"], severity=inc["sev"], event_count=_total(inc),
                          first_event_ts=inc["first"], window={"start": inc["first"], "end": inc["last"]})
            event = None
            if inc["nsev"] is None:
                event = "firing"
            elif RANK[inc["sev"]] > RANK[inc["nsev"]]:
                event = "escalated"
            elif self.renotify and ts - inc["nat"] >= self.renotify:
                event = "renotify"
            if event is not None:
                inc["n"] += 1
                inc["nsev"], inc["nat"] = inc["sev"], ts
                notes.append(notification(merged, event, inc["n"]))
            inc["alert"] = _summary_of(merged)
            state.set(key, inc)
            idx[key] = inc["last"]
            out.append(merged)
        if now is not None:
            for key, last in list(idx.items()):
                if now - last > self.window:
                    inc = state.get(key)
                    if inc is None or inc["last"] != last:  # gone or moved on: the index was stale
                        if inc is None:
                            del idx[key]
                        else:
                            idx[key] = inc["last"]
                        continue
                    if "closed" in inc:
                        if now - last > TOMBSTONE_WINDOWS * self.window:
                            del idx[key]
                            state.set(key, None)
                        continue
                    notes.append(self._resolve(key, inc, state, idx, scope))
        return out, notes

    def _resolve(self, key: str, inc: dict, state: Any, idx: dict[str, int], scope: Any = None) -> dict:
        # What is left is a tombstone (the id and the notifications counted), dropped after
        # TOMBSTONE_WINDOWS windows: enough for the detector's own incident to have ended.
        state.set(key, {"closed": inc["id"], "n": inc["n"] + 1, "last": inc["last"], "scope": scope})
        idx[key] = inc["last"]
        alert = dict(inc["alert"])
        alert.update(severity=inc["sev"], event_count=_total(inc),
                     window={"start": inc["first"], "end": inc["last"]}, ts=inc["last"])
        return notification(alert, "resolved", inc["n"] + 1)


def _count(inc: dict, detector_id: str, count: int) -> None:
    """Note the latest ``event_count`` of one of the detector's incidents inside this one.

    A detector may hold several incidents about one entity at once (``drift.model``: one per
    feature family) or one after another (closed on its own gap): the incident counts the
    latest count of each, whatever order their updates come in. The last ``PARTS`` are kept
    apart; older ones (closed long since) are folded into ``base`` to bound the state.
    """
    parts = inc["parts"]
    for p in parts:
        if p[0] == detector_id:
            p[1] = max(p[1], count)
            return
    parts.append([detector_id, count])
    while len(parts) > PARTS:
        inc["base"] += parts.pop(0)[1]


def _total(inc: dict) -> int:
    return inc["base"] + sum(p[1] for p in inc["parts"])


def notification(alert: dict, event: str, n: int) -> dict:
    """A notification: what the outbox stores and every output builds its payload from."""
    return {"id": f"{alert['id']}.{n}", "incident_id": alert["id"], "event": event, "seq": n, "alert": alert}


def _summary_of(alert: dict) -> dict:
    """What a resolve notification needs of the incident's last alert (kept small: < 2 KB of state)."""
    ev = alert.get("evidence") or {}
    small = {k: v for k, v in ev.items()
             if len(k) <= 32 and isinstance(v, (int, float, str, bool)) and len(str(v)) <= 64}
    return {"id": alert["id"], "ts": alert["ts"], "detector": alert["detector"], "severity": alert["severity"],
            "entity": alert["entity"], "score": alert.get("score"), "summary": str(alert.get("summary", ""))[:300],
            "evidence": dict(list(small.items())[:8]), "first_event_ts": alert.get("first_event_ts"),
            "event_count": alert.get("event_count")}


def _alert_ts(a: dict) -> int:
    return a["ts"]


def _scan(state: Any, prefix: str):
    """Every (key, value) of ``state`` under ``prefix``: ``state.scan`` when it has one, else its dict."""
    scan = getattr(state, "scan", None)
    if scan is not None:
        return scan(prefix)
    data = getattr(state, "data", None)
    if isinstance(data, dict):
        return [(k, v) for k, v in data.items() if k.startswith(prefix)]
    return []
