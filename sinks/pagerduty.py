"""PagerDuty Events API v2: trigger an incident, then acknowledge or resolve it.

``dedup_key`` is the Ramparts incident id, so PagerDuty folds every notification of an
incident into one PagerDuty incident: ``firing``, ``escalated`` and ``renotify`` send
``trigger`` (updating it), ``ramparts alerts ack`` sends ``acknowledge`` and ``resolved`` sends
``resolve``. PagerDuty deduplicates on the key, so a redelivery cannot page twice.
The routing key (the integration key) is the output's ``secret``.
https://developer.pagerduty.com/docs/events-api-v2/trigger-events/
"""

from __future__ import annotations

from .outputs import HttpRequest, Output, body_json, dashboard_link, wire

DEFAULT_URL = "https://events.pagerduty.com/v2/enqueue"
# PagerDuty's severities are critical, error, warning and info.
SEVERITY = {"critical": "critical", "high": "error", "medium": "warning", "low": "warning", "info": "info"}
ACTION = {"firing": "trigger", "escalated": "trigger", "renotify": "trigger", "acknowledged": "acknowledge",
          "resolved": "resolve"}


def build_payload(note: dict, routing_key: str, dashboard_url: str) -> dict:
    action = ACTION[note["event"]]
    body = {"routing_key": routing_key, "event_action": action, "dedup_key": note["incident_id"]}
    if action != "trigger":
        return body
    alert = wire(note["alert"])
    ent = alert["entity"]
    body.update({
        "payload": {
            "summary": f"[{alert['severity']}] {alert['summary']}"[:1024],
            "source": f"{ent['type']}:{ent['id']}",
            "severity": SEVERITY[alert["severity"]],
            "timestamp": alert["ts"],
            "component": ent["id"],
            "group": alert["detector"].split(".")[0],
            "class": alert["detector"],
            "custom_details": {"score": alert.get("score"), "event_count": alert["event_count"],
                               "first_event_ts": alert.get("first_event_ts"), "evidence": alert.get("evidence"),
                               "notification": note["id"]},
        },
        "client": "Ramparts",
        "client_url": dashboard_url,
        "links": [{"href": dashboard_link(dashboard_url, note["alert"]), "text": "Grafana: this entity"}],
    })
    return body


class PagerDutyOutput(Output):
    type = "pagerduty"
    events = frozenset({"firing", "escalated", "renotify", "resolved", "acknowledged"})

    def request(self, note: dict, attempt: int, now: float) -> HttpRequest:
        return HttpRequest("POST", self.url, {}, body_json(build_payload(note, self.secrets[0], self.dashboard_url)))
