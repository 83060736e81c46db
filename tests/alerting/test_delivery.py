"""Delivery from the outbox to real HTTP receivers on loopback; retries on an injected clock (no sleeps).

Every loop is bounded; time moves only when a test moves it (``FakeClock``), so the schedule
of retries is exact and the jitter seeded.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import orjson
import yaml
from standardwebhooks.webhooks import Webhook

from ramparts.alerting.delivery import Deliverer
from ramparts.alerting.outbox import Outbox
from ramparts.sinks.grafana import GrafanaOutput
from ramparts.sinks.outputs import Route
from ramparts.sinks.pagerduty import PagerDutyOutput
from ramparts.sinks.webhook import WebhookOutput

from .receivers import FakeClock, Receiver, free_port
from .test_payloads import ALERT, OLD_SECRET, SECRET

ROUTING_KEY = "R0UT1NGKEYsecret0000000000000000"


def notes(n: int) -> list[dict]:
    out = []
    for i in range(n):
        a = {**ALERT, "id": f"inc{i:04d}"}
        out.append({"id": f"inc{i:04d}.1", "incident_id": a["id"], "event": "firing", "seq": 1, "alert": a})
    return out


def deliverer(box, outputs, clock, **kw) -> Deliverer:
    opts = dict(retry_initial_seconds=1.0, retry_max_seconds=60.0, breaker_failures=1000, seed=11, clock=clock)
    opts.update(kw)
    return Deliverer(box, outputs, **opts)


def received_ids(rx: Receiver) -> list[tuple[str, bool]]:
    return [(r["headers"]["webhook-id"], "ramparts-redelivery" in r["headers"]) for r in rx.requests]


def assert_once_or_marked(rx: Receiver, expected: set[str]) -> None:
    seen: set[str] = set()
    for wid, marked in received_ids(rx):
        assert wid not in seen or marked, f"{wid} delivered twice without being marked a redelivery"
        seen.add(wid)
    assert seen == expected


def test_signed_webhooks_verify_at_the_receiver_with_either_secret(tmp_path):
    with Receiver() as rx:
        box = Outbox(tmp_path)
        out = WebhookOutput("hook", rx.url + "/in", secrets=[SECRET, OLD_SECRET])
        clock = FakeClock()
        box.accept([], notes(3), [out], now=clock())
        d = deliverer(box, [out], clock)
        assert d.drain() == 3
    assert len(rx.requests) == 3
    for r in rx.requests:
        for s in (SECRET, OLD_SECRET):
            assert Webhook(s).verify(r["body"], r["headers"])["type"] == "ramparts.incident.firing"
    assert d.stats()["hook"]["delivered_total"] == 3 and d.stats()["hook"]["queue_depth"] == 0


def test_a_receiver_down_for_a_while_gets_every_alert_once_or_marked(tmp_path):
    clock = FakeClock()
    port = free_port()
    rx = Receiver(port=port)  # not started: connection refused
    box = Outbox(tmp_path)
    out = WebhookOutput("hook", rx.url, secrets=[SECRET])
    expected = {n["id"] for n in notes(20)}
    box.accept([], notes(20), [out], now=clock())
    d = deliverer(box, [out], clock, breaker_failures=3, breaker_open_seconds=30)
    for _ in range(20):  # about 10 minutes of receiver downtime on the clock
        d.drain()
        clock.advance(30)
    assert rx.requests == [] and d.pending() == 20
    assert d.breakers["hook"].opened_total >= 1
    with rx:
        for _ in range(50):
            clock.advance(60)
            d.drain()
            if d.pending() == 0:
                break
    assert d.pending() == 0
    assert_once_or_marked(rx, expected)
    # the ones tried while it was down arrive marked, with the same id
    assert any(marked for _, marked in received_ids(rx))


def test_429_with_retry_after_is_honoured(tmp_path):
    clock = FakeClock()
    rx = Receiver(lambda n, req: (429, {"Retry-After": "120"}) if n == 0 else (200, {}))
    with rx:
        box = Outbox(tmp_path)
        out = WebhookOutput("hook", rx.url, secrets=[SECRET])
        box.accept([], notes(1), [out], now=clock())
        d = deliverer(box, [out], clock)
        d.drain()
        (row,) = box.notifications()
        assert row["status"] == "pending" and row["last_status"] == 429
        clock.advance(119)
        assert d.drain() == 0 and len(rx.requests) == 1  # not before the receiver said
        clock.advance(1)
        assert d.drain() == 1
    assert [r for _, r in received_ids(rx)] == [False, True]
    assert box.notifications()[0]["status"] == "delivered"


def test_500s_open_the_breaker_then_one_trial_then_delivery(tmp_path):
    clock = FakeClock()
    healthy = {"ok": False}
    rx = Receiver(lambda n, req: (200, {}) if healthy["ok"] else (500, {}))
    with rx:
        box = Outbox(tmp_path)
        out = WebhookOutput("hook", rx.url, secrets=[SECRET])
        box.accept([], notes(5), [out], now=clock())
        d = deliverer(box, [out], clock, breaker_failures=3, breaker_open_seconds=30, retry_initial_seconds=0.001)
        for _ in range(10):
            d.drain()
            clock.advance(0.01)
        assert len(rx.requests) == 3 and d.breakers["hook"].state == "open"  # no attempt while open
        clock.advance(30)
        d.drain()
        assert len(rx.requests) == 4 and d.breakers["hook"].state == "open"  # the half-open trial failed
        healthy["ok"] = True
        clock.advance(30)
        for _ in range(10):
            d.drain()
            clock.advance(1)
        assert d.breakers["hook"].state == "closed" and d.pending() == 0
    assert d.stats()["hook"]["retried_total"] == 4


def test_giving_up_leaves_a_dead_letter_with_the_reason_and_no_secret(tmp_path):
    clock = FakeClock()
    with Receiver(lambda n, req: (503, {})) as rx400, Receiver(lambda n, req: (400, {})) as rx_bad:
        box = Outbox(tmp_path)
        retry = PagerDutyOutput("pd", rx400.url + f"/v2/enqueue?token={ROUTING_KEY}", secrets=[ROUTING_KEY])
        bad = WebhookOutput("hook", rx_bad.url, secrets=[SECRET])
        box.accept([], notes(1), [retry, bad], now=clock())
        d = deliverer(box, [retry, bad], clock, max_attempts=3)
        for _ in range(10):
            d.drain()
            clock.advance(120)
    rows = {r["output"]: r for r in box.notifications()}
    assert rows["hook"]["status"] == "dead" and rows["hook"]["attempts"] == 1
    assert "refused" in rows["hook"]["last_error"] and "HTTP 400" in rows["hook"]["last_error"]
    assert rows["pd"]["status"] == "dead" and rows["pd"]["attempts"] == 3 and "3 attempts" in rows["pd"]["last_error"]
    assert d.stats()["pd"]["failed_total"] == 1
    raw = b"".join(p.read_bytes() for p in tmp_path.iterdir())
    assert ROUTING_KEY.encode() not in raw and SECRET.encode() not in raw
    assert all(ROUTING_KEY not in (r["last_error"] or "") for r in rows.values())


def test_grafana_annotations_through_grafana_client_against_a_loopback_stand_in(tmp_path):
    """No Grafana server here: a loopback HTTP server that records requests stands in for one."""
    with Receiver() as rx:
        box = Outbox(tmp_path)
        out = GrafanaOutput("grafana", rx.url, secrets=["glsa_token_0123456789"], dashboard_uid="ramparts-alerts")
        clock = FakeClock()
        box.accept([], notes(1), [out], now=clock())
        assert deliverer(box, [out], clock).drain() == 1
    (req,) = rx.requests
    assert req["path"] == "/api/annotations"
    assert req["headers"]["authorization"] == "Bearer glsa_token_0123456789"
    body = orjson.loads(req["body"])
    assert body["dashboardUID"] == "ramparts-alerts" and "extraction.queries" in body["tags"]


def test_two_deliverers_on_one_outbox_send_each_notification_once(tmp_path):
    """Two workers on one host share the outbox: a notification is claimed by one of them."""
    import threading

    with Receiver() as rx:
        box = Outbox(tmp_path)
        out = WebhookOutput("hook", rx.url, secrets=[SECRET])
        box.accept([], notes(60), [out])
        a, b = (Deliverer(Outbox(tmp_path), [out], seed=s) for s in (1, 2))
        threads = [threading.Thread(target=d.drain) for d in (a, b)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
    assert sorted(received_ids(rx)) == sorted((n["id"], False) for n in notes(60))
    assert a.stats()["hook"]["delivered_total"] + b.stats()["hook"]["delivered_total"] == 60


def test_delivered_rows_are_purged_after_the_retention_and_dead_ones_kept(tmp_path):
    box = Outbox(tmp_path)
    box.accept([], notes(2), [WebhookOutput("hook", "http://x")], now=100.0)
    (first, _), (second, _) = box.claim("hook", 100.0, 2, 10.0, "test:1")
    box.finish(first, "delivered", 200.0)
    box.finish(second, "dead", 200.0, error="gave up")
    assert box.purge(before=150.0) == 0
    assert box.purge(before=300.0) == 1
    assert [r["status"] for r in box.notifications()] == ["dead"]


def test_routing_by_severity_detector_and_entity(tmp_path):
    box = Outbox(tmp_path)
    n = notes(1)
    outs = [WebhookOutput("all", "http://x"),
            WebhookOutput("critical-only", "http://x", route=Route(min_severity="critical")),
            WebhookOutput("extraction", "http://x", route=Route(detectors=["extraction.*"])),
            WebhookOutput("not-this-key", "http://x", route=Route(exclude_entities=["principal:key:sk-3fa9c2"])),
            WebhookOutput("gpus", "http://x", route=Route(entities=["gpu:*"]))]
    box.accept([], n, outs)
    assert sorted(r["output"] for r in box.notifications()) == ["all", "extraction"]
    assert box.accept([], n, outs) == 0  # the same notification again (a batch redone): queued once


def test_delivery_killed_mid_way_and_restarted_loses_nothing(tmp_path):
    expected = {n["id"] for n in notes(40)}
    with Receiver(delay=0.02) as rx:
        cfg = tmp_path / "ramparts.yaml"
        cfg.write_text(yaml.safe_dump({
            "alerting": {"outbox_dir": str(tmp_path / "outbox"), "seed": 1, "retry_initial_seconds": 0.05},
            # a short timeout: a notification cut by the kill is tried again after timeout + 2 s
            "outputs": [{"type": "webhook", "url": rx.url + "/hook", "secret_env": "TEST_WEBHOOK_SECRET",
                         "timeout_seconds": 1}]}))
        from ramparts.config import load_config
        from ramparts.sinks.outputs import build_outputs

        config = load_config(cfg)
        box = Outbox(tmp_path / "outbox")
        box.accept([], notes(40), build_outputs(config, resolve=False))
        env = {**os.environ, "TEST_WEBHOOK_SECRET": SECRET}
        cmd = [sys.executable, "-m", "ramparts.cli", "alerts", "deliver", "--config", str(cfg), "--until-empty",
               "--max-seconds", "60"]
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        for _ in range(3000):  # bounded: until a few arrived, then kill it without warning
            if len(rx.requests) >= 5 or proc.poll() is not None:
                break
            time.sleep(0.01)
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
        got_before = len(rx.requests)
        assert 5 <= got_before < 40
        done = subprocess.run(cmd, env=env, capture_output=True, timeout=120)
        assert done.returncode == 0, done.stderr.decode()
    assert_once_or_marked(rx, expected)
    assert box.counts() == {"delivered": 40}
    for r in rx.requests:
        Webhook(SECRET).verify(r["body"], r["headers"])


def test_a_restarted_deliverer_takes_over_the_claims_of_a_dead_one_at_once(tmp_path):
    import socket

    clock = FakeClock()
    with Receiver() as rx:
        box = Outbox(tmp_path)
        out = WebhookOutput("hook", rx.url, secrets=[SECRET])
        box.accept([], notes(3), [out], now=clock())
        dead_pid = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                                  text=True).stdout.strip()  # a process that has exited
        assert len(box.claim("hook", clock(), 10, 3600.0, f"{socket.gethostname()}:{dead_pid}")) == 3
        d = deliverer(box, [out], clock)
        assert d.drain() == 0  # leased for an hour
        assert d.release_dead_claims() == 3
        assert d.drain() == 3
    assert [marked for _, marked in received_ids(rx)] == [True, True, True]  # they may have been sent before
