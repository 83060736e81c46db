"""Generic webhook: the notification as JSON, signed per the Standard Webhooks spec.

Headers (https://www.standardwebhooks.com/): ``webhook-id`` (the notification id: the same on
every redelivery, so a receiver can deduplicate on it), ``webhook-timestamp`` (seconds, when
this attempt was signed) and ``webhook-signature`` (``v1,<base64 HMAC-SHA256 of
"id.timestamp.body">``). With two secrets configured (``secret`` and ``previous_secret``) the
header carries both signatures, space-separated, so a receiver verifying with either secret
accepts it while it rotates. Signing uses the ``standardwebhooks`` package, the spec's own
reference code, so receivers verifying with it agree by construction.

The body follows the spec's recommended shape ``{"type", "timestamp", "data"}``: ``type`` is
``ramparts.incident.<event>``, ``data`` the notification (``id``, ``incident_id``, ``event``,
``seq``, ``redelivery`` and the alert in SPEC.md's shape). A retry that may have reached the
receiver before carries ``"redelivery": true`` and the header ``ramparts-redelivery: <attempt>``.

>>> note = {"id": "ab.1", "incident_id": "ab", "event": "firing", "seq": 1, "alert": {"id": "ab",
...         "ts": 0, "detector": "access.stuffing", "severity": "high", "entity": {"type": "src_ip", "id": "x"},
...         "score": 1.0, "summary": "s", "evidence": {}, "window": {"start": 0, "end": 0},
...         "first_event_ts": 0, "event_count": 1}}
>>> build_payload(note, attempt=1)["type"]
'ramparts.incident.firing'
"""

from __future__ import annotations

from datetime import datetime, timezone

from standardwebhooks.webhooks import Webhook

from .outputs import HttpRequest, Output, body_json, wire


def build_payload(note: dict, attempt: int) -> dict:
    """The JSON body of ``note`` (pure: no secrets, no clock but the alert's own time)."""
    alert = wire(note["alert"])
    return {"type": f"ramparts.incident.{note['event']}", "timestamp": alert["ts"],
            "data": {"id": note["id"], "incident_id": note["incident_id"], "event": note["event"],
                     "seq": note["seq"], "redelivery": attempt > 1, "alert": alert}}


def sign_headers(msg_id: str, body: bytes, secrets: list[str], now: float) -> dict[str, str]:
    """The Standard Webhooks headers for ``body``, signed with every secret (current first)."""
    when = datetime.fromtimestamp(int(now), tz=timezone.utc)
    text = body.decode()
    sigs = [Webhook(s).sign(msg_id, when, text) for s in secrets]
    headers = {"webhook-id": msg_id, "webhook-timestamp": str(int(now))}
    if sigs:
        headers["webhook-signature"] = " ".join(sigs)
    return headers


class WebhookOutput(Output):
    type = "webhook"
    events = frozenset({"firing", "escalated", "renotify", "resolved", "acknowledged"})

    def request(self, note: dict, attempt: int, now: float) -> HttpRequest:
        body = body_json(build_payload(note, attempt))
        headers = sign_headers(note["id"], body, self.secrets, now)
        if attempt > 1:
            headers["ramparts-redelivery"] = str(attempt)
        return HttpRequest("POST", self.url, headers, body)
