"""Real parts for the streaming tests: the embedded broker, worker processes, shipping, waiting.

Every test gets its own topic prefix and consumer group on the shared broker, so tests do
not see each other's messages. Workers are real ``ramparts worker`` processes (killable with
SIGKILL), each with its own embedded chdb store directory.
"""

from __future__ import annotations

import asyncio
import glob
import itertools
import os
import signal
import subprocess
import sys
from pathlib import Path

import orjson

from ramparts.config import load_config
from ramparts.streams.ship import ship_files
from ramparts.streams.topics import TopicNames, create_topics, wait_until_committed

HASH_KEY = "streaming-tests-hash-key-0123456789"
WAIT_SECONDS = 120.0
_ids = itertools.count(1)


class Stack:
    """One test's view of the broker: its prefix, group, config and workers."""

    def __init__(self, bootstrap: str, tmp: Path, partitions: int = 4):
        n = next(_ids)
        self.tmp = tmp
        self.env = {**os.environ,
                    "RAMPARTS_KAFKA__BOOTSTRAP": bootstrap,
                    "RAMPARTS_KAFKA__TOPIC_PREFIX": f"t{n}-{os.getpid()}",
                    "RAMPARTS_KAFKA__GROUP": f"g{n}-{os.getpid()}",
                    "RAMPARTS_KAFKA__PARTITIONS": str(partitions),
                    "RAMPARTS_KAFKA__BATCH_MAX_SECONDS": "0.2",
                    "RAMPARTS_HASH_KEY": HASH_KEY}
        self.config = load_config(None, env=self.env)
        self.names = TopicNames(self.config.kafka.topic_prefix)
        self.bootstrap = bootstrap
        asyncio.run(create_topics(bootstrap, self.names.all, partitions))
        self.workers: list[Worker] = []

    def worker(self, name: str) -> "Worker":
        w = Worker(self, name)
        self.workers.append(w)
        return w

    def ship(self, files: list[str], single: bool = False):
        return asyncio.run(ship_files(self.config, files, single=single))

    def wait_consumed(self, alive=lambda: True, timeout: float = WAIT_SECONDS) -> bool:
        return asyncio.run(wait_until_committed(self.bootstrap, self.config.kafka.group,
                                                [*self.names.raw_all, self.names.events], timeout, alive=alive))

    def stop_all(self) -> None:
        for w in self.workers:
            w.stop()


class Worker:
    def __init__(self, stack: Stack, name: str):
        self.store = stack.tmp / f"store-{name}"
        self.stats_file = stack.tmp / f"stats-{name}.json"
        self.log = stack.tmp / f"worker-{name}.log"
        self.stack = stack
        self.proc: subprocess.Popen | None = None

    def start(self) -> "Worker":
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "ramparts.cli", "worker", "--store", str(self.store),
             "--stats-file", str(self.stats_file)],
            stdout=open(self.log, "ab"), stderr=subprocess.STDOUT, env=self.stack.env)
        return self

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stats(self) -> dict:
        try:
            return orjson.loads(self.stats_file.read_bytes())
        except (OSError, orjson.JSONDecodeError):
            return {}

    def stop(self, sig: int = signal.SIGTERM) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        code = self.proc.returncode
        self.proc = None
        return code

    def log_tail(self) -> str:
        try:
            return self.log.read_text(errors="replace")[-3000:]
        except OSError:
            return ""


def scenario_files(manifest_path: Path) -> list[str]:
    return sorted(glob.glob(str(manifest_path.with_suffix("")) + ".*.log"))


def open_store(path: Path):
    from ramparts.sinks.clickhouse import ClickHouseSink

    return ClickHouseSink(str(path))


def stored_alerts(store) -> set[tuple]:
    rows = store.query("SELECT id, detector, entity_id, event_count FROM ramparts.alerts FINAL")
    return {(r["id"], r["detector"], r["entity_id"], int(r["event_count"])) for r in rows}


def replay_alerts(report) -> set[tuple]:
    return {(a["id"], a["detector"], a["entity"]["id"], a["event_count"]) for a in report.alerts.values()}
