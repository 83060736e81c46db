"""``ramparts bench alerting``: alert-to-receiver latency at a steady rate, through the real outbox.

A producer raises ``rate`` new incidents a second for ``seconds`` (each a new entity, so each
is a ``firing`` notification), in one batch every ``batch_seconds`` (0.05 s: the worker's
``kafka.batch_max_seconds``), through the same
:class:`~ramparts.alerting.AlertingStage` the worker calls: incidents in a state dict, the
notification written to the durable outbox (SQLite WAL, ``synchronous=FULL``), delivery woken.
The :class:`~ramparts.alerting.delivery.Deliverer` thread signs each one (Standard Webhooks)
and POSTs it to a webhook receiver on loopback (``http.server`` in a thread), which notes
when it arrived. Latency = arrival - the end of the batch's outbox transaction (both wall
clock, one process), so it covers the wait for the delivery thread, reading the outbox,
counting the attempt on disk, signing, the HTTP round trip, and nothing of the detectors.
Reported per run: p50, p99 and max latency, notifications delivered, and the process CPU
time per notification; with ``--runs N`` the medians over runs.
"""

from __future__ import annotations

import statistics
import tempfile
import time

NS = 1_000_000_000
SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


def run_once(rate: float, seconds: float, seed: int = 1, batch_seconds: float = 0.05) -> dict:
    from ramparts.alerting import AlertingStage
    from ramparts.alerting.delivery import Deliverer
    from ramparts.alerting.incidents import IncidentTracker
    from ramparts.alerting.outbox import Outbox
    from ramparts.detectors.base import DictState, make_alert
    from ramparts.sinks.outputs import Route
    from ramparts.sinks.webhook import WebhookOutput

    from .receiver import start_receiver, stop_receiver

    arrived: dict[str, float] = {}

    server, base = start_receiver(lambda h: arrived.setdefault(h.headers["webhook-id"], time.time()))
    url = f"{base}/hook"
    with tempfile.TemporaryDirectory(prefix="ramparts-bench-alerting-") as tmp:
        box = Outbox(tmp)
        out = WebhookOutput("webhook", url, secrets=[SECRET], route=Route())
        deliverer = Deliverer(box, [out], seed=seed)
        stage = AlertingStage(IncidentTracker(3600), box, [out], on_accept=deliverer.wake)
        state = DictState()
        accepted: dict[str, float] = {}
        deliverer.start()
        cpu0 = time.process_time()
        t0 = time.monotonic()
        n = int(rate * seconds)
        ticks = max(1, int(seconds / batch_seconds))
        made = 0
        for tick in range(ticks):
            pause = t0 + tick * batch_seconds - time.monotonic()
            if pause > 0:
                time.sleep(pause)
            want = int(n * (tick + 1) / ticks) - made
            batch = []
            for i in range(made, made + want):
                ts = 1_800_000_000 * NS + i * NS // 10
                batch.append(make_alert("access.stuffing", "high", ("src_ip", f"198.51.100.{i % 250}/{i}"),
                                        score=25.0, summary="25 failed authentications", evidence={"value": 25},
                                        first_ts=ts, last_ts=ts, count=25))
            made += want
            if not batch:
                continue
            stage.on_batch(batch, state, batch[-1]["ts"])
            done = time.time()
            for a in batch:
                accepted[f"{a['id']}.1"] = done
        deadline = time.monotonic() + 30.0
        while len(arrived) < n and time.monotonic() < deadline:
            time.sleep(0.01)
        cpu = time.process_time() - cpu0
        deliverer.stop()
        box.close()
    stop_receiver(server)
    lat = sorted((arrived[k] - accepted[k]) * 1000.0 for k in accepted if k in arrived)
    return {"rate": rate, "notifications": n, "delivered": len(lat),
            "p50_ms": _q(lat, 0.5), "p99_ms": _q(lat, 0.99), "max_ms": lat[-1] if lat else None,
            "cpu_ms_per_notification": cpu * 1000.0 / max(1, n)}


def _q(values: list[float], q: float) -> float | None:
    if not values:
        return None
    return values[min(len(values) - 1, round(q * (len(values) - 1)))]


def add_arguments(sub) -> None:
    p = sub.add_parser("alerting", help="alert-to-receiver latency (p50/p99) through the outbox at a steady rate")
    p.add_argument("--rate", type=float, default=50.0, help="new incidents per second (default 50)")
    p.add_argument("--seconds", type=float, default=20.0, help="how long the producer runs (default 20)")
    p.add_argument("--runs", type=int, default=3, help="runs; the medians are reported (default 3)")
    p.add_argument("--batch-seconds", type=float, default=0.05, help="a batch of alerts this often (default 0.05)")
    p.set_defaults(func=run)


def run(args) -> int:
    results = [run_once(args.rate, args.seconds, seed=i + 1, batch_seconds=args.batch_seconds)
               for i in range(args.runs)]
    print("| run | rate/s | notifications | delivered | p50 ms | p99 ms | max ms | CPU ms / notification |")
    print("|---|---|---|---|---|---|---|---|")
    for i, r in enumerate(results, 1):
        print(f"| {i} | {r['rate']:g} | {r['notifications']} | {r['delivered']} | {r['p50_ms']:.1f} | "
              f"{r['p99_ms']:.1f} | {r['max_ms']:.1f} | {r['cpu_ms_per_notification']:.2f} |")
    med = {k: statistics.median(r[k] for r in results) for k in ("p50_ms", "p99_ms", "max_ms",
                                                                 "cpu_ms_per_notification")}
    print(f"| median | {args.rate:g} | | | {med['p50_ms']:.1f} | {med['p99_ms']:.1f} | {med['max_ms']:.1f} | "
          f"{med['cpu_ms_per_notification']:.2f} |")
    return 0
