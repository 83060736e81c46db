"""Alertmanager-compatible: ``POST <url>/api/v2/alerts`` with a list of one alert.

Alertmanager groups, silences and deduplicates by labels, so the labels identify the incident
(``alertname`` the detector, ``incident_id``, the entity, ``severity``); ``annotations``
carry the summary and evidence; ``generatorURL`` links to the Grafana dashboard. A firing
incident is sent with ``endsAt`` one window ahead (Alertmanager resolves it by itself if
Ramparts goes silent, its own default is 5 minutes); ``resolved`` sends ``endsAt`` = the
incident's last alert, which resolves it. The API also takes the same alert again: a
redelivery is harmless. https://github.com/prometheus/alertmanager/blob/main/api/v2/openapi.yaml
"""

from __future__ import annotations

import orjson

from ramparts.timeutil import format_rfc3339

from .outputs import HttpRequest, Output, body_json, dashboard_link, wire

FIRING_FOR_NS = 3600 * 1_000_000_000


def build_payload(note: dict, dashboard_url: str) -> list[dict]:
    raw = note["alert"]
    alert = wire(raw)
    ent = alert["entity"]
    ends = raw["ts"] if note["event"] == "resolved" else raw["ts"] + FIRING_FOR_NS
    return [{
        "labels": {"alertname": alert["detector"], "detector": alert["detector"], "severity": alert["severity"],
                   "entity_type": ent["type"], "entity_id": str(ent["id"]), "incident_id": note["incident_id"],
                   "source": "ramparts"},
        "annotations": {"summary": alert["summary"], "event_count": str(alert["event_count"]),
                        "score": str(alert.get("score")),
                        "evidence": orjson.dumps(alert.get("evidence") or {}).decode()},
        "startsAt": alert.get("first_event_ts") or alert["ts"],
        "endsAt": format_rfc3339(ends),
        "generatorURL": dashboard_link(dashboard_url, raw),
    }]


class AlertmanagerOutput(Output):
    type = "alertmanager"

    def request(self, note: dict, attempt: int, now: float) -> HttpRequest:
        return HttpRequest("POST", self.url.rstrip("/") + "/api/v2/alerts", {},
                           body_json(build_payload(note, self.dashboard_url)))
