"""Defects found in review of the alerting layer, each shown by a test before its fix.

Real components only: loopback HTTP receivers, the SQLite outbox, the tracker over DictState.
"""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from ramparts.alerting.delivery import Deliverer
from ramparts.alerting.incidents import IncidentTracker
from ramparts.alerting.outbox import Outbox
from ramparts.detectors.base import DictState, make_alert
from ramparts.sinks.slack import SlackOutput
from ramparts.sinks.webhook import WebhookOutput

from .receivers import FakeClock, Receiver, free_port
from .test_payloads import ALERT, SECRET

NS = 1_000_000_000
T0 = 1_800_000_000 * NS
SLACK_TOKEN = "xOxB7hGq2ZpL9wRt4kYs1NcV"


class EchoPathReceiver:
    """Answers 404 with the request line in the body, as Express's default handler does
    ("Cannot POST /services/..."): a receiver echoing the URL path back."""

    def __init__(self):
        self.port = free_port()

    def __enter__(self):
        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                body = f"Cannot POST {self.path}".encode()
                self.send_response(404)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()


def _notes(n: int) -> list[dict]:
    return [{"id": f"inc{i:04d}.1", "incident_id": f"inc{i:04d}", "event": "firing", "seq": 1,
             "alert": {**ALERT, "id": f"inc{i:04d}"}} for i in range(n)]


def test_a_slack_url_echoed_back_by_the_receiver_reaches_neither_the_outbox_nor_the_log(tmp_path, caplog):
    clock = FakeClock()
    with EchoPathReceiver() as rx:
        url = f"http://127.0.0.1:{rx.port}/services/T0AAAAAAA/B0BBBBBBB/{SLACK_TOKEN}"
        out = SlackOutput("slack", url)
        box = Outbox(tmp_path)
        box.accept([], _notes(1), [out], now=clock())
        d = Deliverer(box, [out], seed=1, clock=clock)
        with caplog.at_level("DEBUG", logger="ramparts.alerting"):
            d.drain()
    (row,) = box.notifications()
    assert row["status"] == "dead" and "HTTP 404" in row["last_error"]
    assert SLACK_TOKEN not in row["last_error"]
    assert SLACK_TOKEN not in caplog.text
    box.close()
    raw = b"".join(p.read_bytes() for p in tmp_path.iterdir())
    assert SLACK_TOKEN.encode() not in raw


class _Flaky(WebhookOutput):
    """A webhook whose payload cannot be built for one notification (a bug in a builder, an
    alert a builder does not expect): ``request`` raises for it."""

    def request(self, note, attempt, now):
        if note["id"] == "inc0001.1":
            raise KeyError("severity")
        return super().request(note, attempt, now)


def test_a_notification_whose_send_raises_does_not_resend_the_others_or_stay_stuck(tmp_path):
    clock = FakeClock()
    with Receiver() as rx:
        out = _Flaky("hook", rx.url, secrets=[SECRET])
        box = Outbox(tmp_path)
        box.accept([], _notes(3), [out], now=clock())
        d = Deliverer(box, [out], seed=1, clock=clock, retry_initial_seconds=1.0, retry_max_seconds=10.0,
                      max_attempts=3)
        for _ in range(20):  # rounds of the delivery thread, time moving on between them
            try:
                d.drain(max_steps=5)
            except KeyError:
                pass  # before the fix the exception escaped step(); the thread logs it and loops
            clock.advance(30)
    ids = [r["headers"]["webhook-id"] for r in rx.requests]
    assert sorted(ids) == ["inc0000.1", "inc0002.1"], ids  # each delivered once, none resent
    rows = {r["id"]: r for r in box.notifications()}
    assert rows["inc0000.1"]["status"] == "delivered" and rows["inc0002.1"]["status"] == "delivered"
    bad = rows["inc0001.1"]
    assert bad["status"] == "dead" and "KeyError" in bad["last_error"], bad


def _alert(ts_s: int, first_s: int, count: int, sev: str = "high") -> dict:
    return make_alert("gpu.unauthorized", sev, ("gpu", "GPU-a"), score=float(count), summary="busy",
                      evidence={}, first_ts=T0 + first_s * NS, last_ts=T0 + ts_s * NS, count=count)


def test_an_incident_reopened_under_the_same_detector_id_is_notified_again(tmp_path):
    """A detector incident that outlives the tracker's window (its gap longer than the window,
    or a detector reusing an id) reopens a tracker incident with the same id: its firing
    notification must not collide with the first one's id (the outbox would drop it)."""
    t = IncidentTracker(window_seconds=60)
    state = DictState()
    box = Outbox(tmp_path)
    out = WebhookOutput("hook", "http://127.0.0.1:9/", secrets=[SECRET])
    queued = []
    for ts, cnt, now in ((0, 2, 0), (None, None, 70), (100, 3, 100), (None, None, 170), (200, 4, 200)):
        alerts = [] if ts is None else [_alert(ts, 0, cnt)]
        merged, notes = t.update(alerts, state, now=T0 + now * NS, scope=0)
        queued.append((box.accept(merged, notes, [out], now=float(now)), [n["event"] for n in notes]))
        if now == 0:  # acknowledged while first open: the reopened incident is not acknowledged
            box.ack(merged[0]["id"], "alice", [])
    events = [e for _, ev in queued for e in ev]
    assert events == ["firing", "resolved", "firing", "resolved", "firing"]
    assert [q for q, _ in queued] == [1, 1, 1, 1, 1], queued  # every notification reached the outbox
    ids = [r["id"] for r in box.notifications()]
    assert len(ids) == len(set(ids)) == 5
    (inc,) = box.incidents()
    assert inc["status"] == "open" and inc["acked_at"] is None and not box.acked(inc["id"])
