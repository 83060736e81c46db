"""``ramparts bench playbooks``: incident to completed action, latency p50/p99 (target p99 <= 2 s).

Incidents arrive at ``rate`` a second for ``seconds`` (each a new principal under a
credential-stuffing incident, so each is a new run), and the engine acts on each through a
real action: ``--action nginx`` revokes the principal at a bench-owned NGINX on loopback
(map file rewritten, ``nginx -t``, ``nginx -s reload``), ``--action http`` calls a loopback
HTTP receiver (the generic HTTP action, as LiteLLM or Kong calls would). Latency = from the
incident's arrival to the action's completion, as seen by the engine's caller, which covers
trigger matching, the state database (SQLite, ``synchronous=FULL``), the action, and the
audit records written to the embedded ClickHouse (chdb) and the ``actions`` table. With
``--action nginx``, after each run the bench also checks that NGINX answers 403 for a sample
of the revoked principals. Reported per run: p50, p99, max; with ``--runs N`` the medians.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path

from .nginx_local import Nginx
from .receiver import start_receiver, stop_receiver

PLAYBOOK = """\
name: bench
trigger: {{detectors: ["access.stuffing"], min_severity: medium, entity_types: [principal]}}
mode: auto
steps:
  - action: {action}
    params: {params}
"""


def run_once(action: str, rate: float, seconds: float) -> dict:
    from ramparts.config import Config
    from ramparts.playbooks.runtime import close_engine, open_engine

    with tempfile.TemporaryDirectory(prefix="ramparts-bench-playbooks-") as tmp:
        t = Path(tmp)
        (t / "pb").mkdir()
        nginx = server = None
        settings: dict = {}
        try:
            if action == "nginx":
                nginx = Nginx(t / "nginx").start()
                settings = {"nginx": nginx.settings()}
                pb = PLAYBOOK.format(action="nginx.revoke", params='{principal: "${entity.id}"}')
            else:
                server, url = start_receiver()
                pb = PLAYBOOK.format(action="http.request", params=f'{{url: "{url}/block/${{entity.id}}"}}')
            (t / "pb" / "bench.yaml").write_text(pb)
            config = Config.model_validate({
                "store": {"dsn": str(t / "store")},
                "playbooks": {"dir": str(t / "pb"), "state_dir": str(t / "state"), "actions": settings,
                              "max_actions_per_target_per_hour": 1}})
            engine = open_engine(config)
            lat = []
            n = int(rate * seconds)
            start = time.perf_counter()
            try:
                for i in range(n):
                    due = start + i / rate
                    wait = due - time.perf_counter()
                    if wait > 0:
                        time.sleep(wait)
                    arrived = due  # an incident that had to wait for the previous one counts the wait
                    inc = {"id": f"bench-{i}", "ts": "2026-11-23T00:00:00Z", "detector": "access.stuffing",
                           "severity": "high", "entity": {"type": "principal", "id": f"key-{i}"}, "score": 1.0,
                           "summary": "bench", "evidence": {}, "event_count": 1}
                    engine.handle(inc)
                    lat.append(time.perf_counter() - arrived)
                done = sum(1 for r in engine.state.runs() if r["status"] == "done")
            finally:
                close_engine(engine)
            check = None
            if action == "nginx":
                sample = [f"key-{i}" for i in range(0, n, max(1, n // 10))] + [f"key-{n - 1}"]
                # Reloads are asynchronous: the last one's workers may still be starting, slowly on a
                # loaded machine. Ask each sampled key until it is refused, at most ~30 s each.
                # A connection refused while a reload swaps workers reads as 0, not as a verdict.
                still_open = [k for k in sample if nginx.wait_status(k, 403, tries=300) != 403]
                check = not still_open and nginx.wait_status("not-revoked", 200, tries=300) == 200
        finally:
            if nginx is not None:
                nginx.stop()
            if server is not None:
                stop_receiver(server)
    lat.sort()
    q = lambda p: lat[min(len(lat) - 1, int(p * len(lat)))] * 1000  # noqa: E731
    return {"incidents": n, "done": done, "p50_ms": q(0.50), "p99_ms": q(0.99), "max_ms": lat[-1] * 1000,
            "enforced": check}


def add_arguments(sub) -> None:
    p = sub.add_parser("playbooks", help="incident to completed playbook action latency (p50/p99)")
    p.add_argument("--action", choices=["nginx", "http"], default="nginx",
                   help="nginx: revoke at a bench-owned NGINX (reload per action); http: a loopback receiver")
    p.add_argument("--rate", type=float, default=5.0, help="incidents per second (default 5)")
    p.add_argument("--seconds", type=float, default=20.0, help="how long incidents arrive (default 20)")
    p.add_argument("--runs", type=int, default=3, help="runs; the medians are reported (default 3)")
    p.set_defaults(func=run)


def run(args) -> int:
    results = [run_once(args.action, args.rate, args.seconds) for _ in range(args.runs)]
    print(f"action: {args.action}, {args.rate:g} incidents/s for {args.seconds:g} s")
    print("| run | incidents | actions done | p50 ms | p99 ms | max ms | enforced (403 seen) |")
    print("|---|---|---|---|---|---|---|")
    for i, r in enumerate(results, 1):
        print(f"| {i} | {r['incidents']} | {r['done']} | {r['p50_ms']:.1f} | {r['p99_ms']:.1f} | {r['max_ms']:.1f} | "
              f"{'-' if r['enforced'] is None else r['enforced']} |")
    med = {k: statistics.median(r[k] for r in results) for k in ("p50_ms", "p99_ms", "max_ms")}
    print(f"| median | | | {med['p50_ms']:.1f} | {med['p99_ms']:.1f} | {med['max_ms']:.1f} | |")
    return 0 if all(r["done"] == r["incidents"] and r["enforced"] is not False for r in results) else 1
