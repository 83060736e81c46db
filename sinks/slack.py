"""Slack: a Block Kit message for an incoming webhook, with a link back to the Grafana dashboard.

One message per notification: a header with the severity and the event (new, escalated,
still open, resolved), the summary, a fields section (detector, entity, events, score,
first and last event), the evidence numbers, and an "Open in Grafana" button filtered to the
entity and the incident's time range. ``text`` is the plain fallback notifications show.
Slack does not deduplicate, so a redelivery says so in the header ("(resent)").

The incoming-webhook URL is itself the credential: configure it through ``url_env``.
"""

from __future__ import annotations

import orjson

from .outputs import HttpRequest, Output, body_json, dashboard_link, wire

EMOJI = {"info": ":information_source:", "low": ":large_blue_circle:", "medium": ":large_yellow_circle:",
         "high": ":large_orange_circle:", "critical": ":red_circle:"}
VERB = {"firing": "new incident", "escalated": "escalated", "renotify": "still open", "resolved": "resolved",
        "acknowledged": "acknowledged"}


def build_payload(note: dict, attempt: int, dashboard_url: str) -> dict:
    alert = wire(note["alert"])
    ent = alert["entity"]
    sev = alert["severity"]
    resolved = note["event"] == "resolved"
    icon = ":white_check_mark:" if resolved else EMOJI.get(sev, "")
    title = f"{icon} {sev.upper()} {alert['detector']}: {VERB.get(note['event'], note['event'])}"
    if attempt > 1:
        title += " (resent)"
    link = dashboard_link(dashboard_url, note["alert"])
    evidence = orjson.dumps(alert.get("evidence") or {}).decode()
    if len(evidence) > 2500:  # a section's text is limited to 3000 characters
        evidence = evidence[:2500] + "..."
    score = alert.get("score")
    return {
        "text": f"{title} - {alert['summary']} ({ent['type']} {ent['id']})",
        "blocks": [
            {"type": "header", "text": {"type": "plain_text", "text": title[:150], "emoji": True}},
            {"type": "section", "text": {"type": "mrkdwn", "text": alert["summary"][:3000]}},
            {"type": "section", "fields": [
                {"type": "mrkdwn", "text": f"*Detector*\n`{alert['detector']}`"},
                {"type": "mrkdwn", "text": f"*Entity*\n{ent['type']} `{ent['id']}`"},
                {"type": "mrkdwn", "text": f"*Events*\n{alert['event_count']}"},
                {"type": "mrkdwn", "text": f"*Score*\n{score:.3g}" if isinstance(score, (int, float)) else "*Score*\n-"},
                {"type": "mrkdwn", "text": f"*First event*\n{alert.get('first_event_ts')}"},
                {"type": "mrkdwn", "text": f"*Last event*\n{alert['ts']}"},
            ]},
            {"type": "section", "text": {"type": "mrkdwn", "text": f"*Evidence*\n```{evidence}```"}},
            {"type": "actions", "elements": [
                {"type": "button", "text": {"type": "plain_text", "text": "Open in Grafana"}, "url": link,
                 "action_id": "open_grafana"}]},
            {"type": "context", "elements": [
                {"type": "mrkdwn", "text": f"incident `{note['incident_id']}` - notification {note['seq']}"}]},
        ],
    }


class SlackOutput(Output):
    type = "slack"

    def request(self, note: dict, attempt: int, now: float) -> HttpRequest:
        return HttpRequest("POST", self.url, {}, body_json(build_payload(note, attempt, self.dashboard_url)))
