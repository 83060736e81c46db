"""Every output's pure payload builder against a golden payload (tests/alerting/golden/).

Set RAMPARTS_UPDATE_GOLDEN=1 to rewrite the golden files after a deliberate change; review the diff.
"""

from __future__ import annotations

import os
from pathlib import Path

import orjson
import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from ramparts.sinks import alertmanager, grafana, pagerduty, slack, webhook

GOLDEN = Path(__file__).parent / "golden"
NS = 1_000_000_000
T0 = 1_800_000_000 * NS
DASH = "https://grafana.example.com/d/ramparts-alerts"
SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
OLD_SECRET = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD"

ALERT = {"id": "5f1c0a7e9b2d4c6e8a0b1c2d", "ts": T0 + 90 * NS, "detector": "extraction.queries", "severity": "high",
         "entity": {"type": "principal", "id": "key:sk-3fa9c2"}, "score": 4.25,
         "summary": "principal key:sk-3fa9c2 sends boundary-probing queries to digits (62% low-confidence)",
         "evidence": {"statistic": "low_confidence", "value": 0.62, "threshold": 0.2, "queries": 140,
                      "model": "digits"},
         "window": {"start": T0, "end": T0 + 90 * NS}, "first_event_ts": T0, "event_count": 140}


def note(event: str = "firing", seq: int = 1) -> dict:
    return {"id": f"{ALERT['id']}.{seq}", "incident_id": ALERT["id"], "event": event, "seq": seq, "alert": ALERT}


CASES = {
    "webhook_firing": lambda: webhook.build_payload(note(), attempt=1),
    "webhook_resolved_redelivery": lambda: webhook.build_payload(note("resolved", 3), attempt=2),
    "slack_firing": lambda: slack.build_payload(note(), 1, DASH),
    "slack_resolved": lambda: slack.build_payload(note("resolved", 2), 1, DASH),
    "pagerduty_trigger": lambda: pagerduty.build_payload(note(), "R0UT1NGKEY000000000000000000000", DASH),
    "pagerduty_resolve": lambda: pagerduty.build_payload(note("resolved", 2), "R0UT1NGKEY000000000000000000000", DASH),
    "pagerduty_acknowledge": lambda: pagerduty.build_payload(note("acknowledged", 0), "R0UT1NGKEY000000000000000000000",
                                                             DASH),
    "alertmanager_firing": lambda: alertmanager.build_payload(note(), DASH),
    "alertmanager_resolved": lambda: alertmanager.build_payload(note("resolved", 2), DASH),
    "grafana_annotation": lambda: grafana.build_payload(note(), 1, "ramparts-alerts"),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_payload_matches_golden(name):
    got = orjson.loads(orjson.dumps(CASES[name]()))
    path = GOLDEN / f"{name}.json"
    if os.environ.get("RAMPARTS_UPDATE_GOLDEN"):
        path.write_bytes(orjson.dumps(got, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS) + b"\n")
    assert got == orjson.loads(path.read_bytes())


def test_builders_are_pure_and_do_not_change_the_notification():
    before = orjson.dumps(note())
    n = note()
    for build in CASES.values():
        assert orjson.dumps(build()) == orjson.dumps(build())
    assert orjson.dumps(n) == before


def test_pagerduty_dedup_key_is_the_incident_id_for_trigger_and_resolve():
    trig = CASES["pagerduty_trigger"]()
    res = CASES["pagerduty_resolve"]()
    assert trig["dedup_key"] == res["dedup_key"] == ALERT["id"]
    assert (trig["event_action"], res["event_action"]) == ("trigger", "resolve")


def test_slack_links_back_to_the_dashboard_filtered_to_the_entity():
    blocks = CASES["slack_firing"]()["blocks"]
    (button,) = [e for b in blocks if b["type"] == "actions" for e in b["elements"]]
    assert button["url"].startswith(DASH + "?") and "var-entity=key%3Ask-3fa9c2" in button["url"]


def test_webhook_signature_verifies_with_the_spec_verifier_under_either_secret_while_rotating():
    import time

    req = webhook.WebhookOutput("w", "http://127.0.0.1:1/hook", secrets=[SECRET, OLD_SECRET]).request(
        note(), 1, time.time())
    assert req.headers["webhook-id"] == note()["id"]
    assert len(req.headers["webhook-signature"].split(" ")) == 2
    for s in (SECRET, OLD_SECRET):
        assert Webhook(s).verify(req.body, req.headers)["data"]["id"] == note()["id"]
    with pytest.raises(WebhookVerificationError):
        Webhook("whsec_" + "A" * 32).verify(req.body, req.headers)
    tampered = req.body.replace(b"high", b"low")
    with pytest.raises(WebhookVerificationError):
        Webhook(SECRET).verify(tampered, req.headers)
