"""``ramparts dev`` (what ``make run`` calls): the whole product on one machine, in a minute.

It starts the embedded broker (Tansu) on a free loopback port, creates the topics, starts a
worker (a real ``ramparts worker`` process with an embedded chdb store), simulates a scenario
with labelled attacks, ships it, prints alerts as they arrive on the alerts topic, waits until
the worker has committed everything it was sent, stops it, and prints a summary: what was
stored where, which labelled attacks were caught. ``--follow`` keeps the broker and the worker
running (ship more with the printed ``ramparts ship --bootstrap ...``) until Ctrl-C.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import orjson

from .broker import EmbeddedBroker
from .topics import TopicNames, create_topics, wait_until_consumed

DEFAULT_DIR = "out/dev"
SEVERITY_ORDER = {"info": 0, "low": 1, "medium": 2, "high": 3, "critical": 4}


def add_arguments(sub) -> None:
    p = sub.add_parser(
        "dev", help="the demo: embedded broker, worker, simulated attacks, alerts printed",
        description="Start an embedded Kafka-compatible broker and a worker with an embedded ClickHouse "
                    "store, ship a simulated scenario with attacks, print alerts as they fire and a "
                    "summary, then stop (or keep running with --follow).")
    p.add_argument("--scenario", default="mix", help="simulated scenario (default: mix; see ramparts simulate --list)")
    p.add_argument("--dir", default=DEFAULT_DIR, help=f"working directory for data and logs (default: {DEFAULT_DIR})")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--follow", action="store_true", help="keep running after the scenario, until Ctrl-C")
    p.add_argument("--timeout-seconds", type=float, default=90.0,
                   help="give up waiting for the worker after this long (default: 90)")
    p.add_argument("--config", metavar="FILE", default=None, help="config file (default: ./ramparts.yaml if present)")
    p.set_defaults(func=run)


def run(args) -> int:
    return asyncio.run(_run(args))


def _say(msg: str) -> None:
    print(msg, flush=True)


async def _run(args) -> int:
    from ramparts.config import load_config
    from ramparts.streams.simulate import simulate

    t_start = time.monotonic()
    work = Path(args.dir)
    store_dir = work / "store"
    shutil.rmtree(store_dir, ignore_errors=True)  # a fresh demo every run
    work.mkdir(parents=True, exist_ok=True)
    for old in work.glob("sim/*"):
        old.unlink()
    broker = EmbeddedBroker(log_path=str(work / "broker.log")).start()
    env = {**os.environ, "RAMPARTS_KAFKA__BOOTSTRAP": broker.bootstrap, "RAMPARTS_STORE__DSN": str(store_dir),
           "RAMPARTS_ALERTING__OUTBOX_DIR": str(work / "outbox")}
    config = load_config(args.config, env=env)
    k = config.kafka
    names = TopicNames(k.topic_prefix)
    worker = None
    try:
        _say(f"ramparts dev: embedded broker (Tansu) on {broker.bootstrap}")
        await create_topics(broker.bootstrap, names.all, k.partitions)
        manifest = simulate(args.scenario, str(work / "sim" / f"{args.scenario}.json"), seed=args.seed)
        files = [str(manifest.file(f)) for f in manifest.files]
        _say(f"simulated '{args.scenario}': {sum(manifest.records.values()):,} records in {len(files)} files "
             f"under {work / 'sim'} ({len(manifest.attacks)} labelled attacks)")
        log = open(work / "worker.log", "wb")
        cmd = [sys.executable, "-m", "ramparts.cli", "worker", "--store", str(store_dir)]
        if args.config:
            cmd += ["--config", args.config]
        # Its own session too: on Ctrl-C, dev stops the worker (it commits) before the broker.
        worker = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        _say(f"worker started (pid {worker.pid}, log {work / 'worker.log'}, store {store_dir})")

        seen: dict[str, dict] = {}
        printer = asyncio.create_task(_print_alerts(broker.bootstrap, names.alerts, seen))

        from .ship import ship_files

        # Reference data first, as a pod watcher or registry feed would have it in a running
        # deployment: GPU samples judged before the pod list arrived would find nothing authorized.
        reference = [f for f in files if f.endswith(".k8s_pods.log")]
        if reference:
            await ship_files(config, reference)
            await wait_until_consumed(broker.bootstrap, config, args.timeout_seconds,
                                      alive=lambda: worker.poll() is None)
        report = await ship_files(config, [f for f in files if f not in reference])
        _say(f"shipped {report.records:,} records in {report.messages:,} messages")
        done = await wait_until_consumed(broker.bootstrap, config, args.timeout_seconds,
                                         alive=lambda: worker.poll() is None)
        await asyncio.sleep(1.0)  # the last alerts travel from the worker to the printer
        if args.follow and done:
            _say(f"following: ship more with `ramparts ship --bootstrap {broker.bootstrap} FILE`; Ctrl-C stops")
            stop = asyncio.Event()
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(sig, stop.set)
            while worker.poll() is None and not stop.is_set():
                try:
                    await asyncio.wait_for(stop.wait(), timeout=1.0)
                except asyncio.TimeoutError:
                    pass
        printer.cancel()
        code = _stop(worker)
        worker = None
        if not done:
            _say(f"error: the worker did not finish within {args.timeout_seconds:.0f} s; see {work / 'worker.log'}")
            return 1
        _summary(work, store_dir, config, manifest, seen, report, time.monotonic() - t_start, code)
        return 0
    finally:
        if worker is not None:
            _stop(worker)
        broker.stop()


def _stop(worker: subprocess.Popen) -> int:
    if worker.poll() is None:
        worker.send_signal(signal.SIGTERM)
        try:
            return worker.wait(timeout=30)
        except subprocess.TimeoutExpired:
            worker.kill()
            return worker.wait()
    return worker.returncode


async def _print_alerts(bootstrap: str, topic: str, seen: dict[str, dict]) -> None:
    from aiokafka import AIOKafkaConsumer

    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest",
                                enable_auto_commit=False, group_id=None)
    await consumer.start()
    try:
        while True:
            batches = await consumer.getmany(timeout_ms=500)
            for records in batches.values():
                for r in records:
                    a = orjson.loads(r.value)
                    if a["id"] not in seen:
                        _say(f"ALERT {a['severity'].upper():8} {a['detector']:18} "
                             f"{a['entity']['type']}={a['entity']['id']}: {a['summary']}")
                    seen[a["id"]] = a
    finally:
        await consumer.stop()


def _summary(work: Path, store_dir: Path, config, manifest, seen: dict[str, dict], report, elapsed: float,
             worker_code: int) -> None:
    from ramparts.sinks.clickhouse import ClickHouseSink

    sink = ClickHouseSink.from_config(config.store, dsn_override=str(store_dir))
    try:
        counts = sink.counts()
    finally:
        sink.close()
    _say("")
    _say(f"summary ({elapsed:.0f} s, worker exit code {worker_code}):")
    _say(f"  shipped   {report.records:,} records in {report.messages:,} Kafka messages")
    _say("  stored    " + ", ".join(f"{t} {n:,}" for t, n in sorted(counts.items()) if n) + f"  -> chdb store {store_dir}")
    _say(f"  alerts    {len(seen)} incident(s) on topic {config.kafka.topic_prefix}.alerts and in the alerts table")
    caught = 0
    for att in manifest.attacks:
        hit = [a for a in seen.values() if a["detector"] == att.detector and a["entity"]["id"] == att.entity_id]
        caught += bool(hit)
        mark = "caught" if hit else "missed"
        _say(f"  attack    {att.name:22} {att.detector:18} {att.entity_type}={att.entity_id}: {mark}")
    _say(f"  labelled attacks caught: {caught}/{len(manifest.attacks)}")
    _say(f"  logs      {work / 'worker.log'}, {work / 'broker.log'}; telemetry and ground truth in {work / 'sim'}")
    _say(f"  query     {os.path.relpath(sys.executable)} -c \"from ramparts.sinks.clickhouse import ClickHouseSink as S; "
         f"print(S('{store_dir}').query('SELECT detector, severity, summary FROM ramparts.alerts FINAL'))\"")
