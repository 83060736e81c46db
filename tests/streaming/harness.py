"""Real parts for the streaming tests: the embedded broker, worker processes, shipping, waiting.

Every test gets its own topic prefix and consumer group on the shared broker, so tests do
not see each other's messages. Workers are real ``ramparts worker`` processes (killable with
SIGKILL), each with its own embedded chdb store directory. ``Stack(prelude=...)`` runs some
Python in each worker process before the CLI: :data:`REGISTER_MODEL_CALLS` registers
:class:`ModelCalls`, a model-routed test detector, as the test process does with
:func:`register_model_calls`.
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
from pydantic import BaseModel, ConfigDict

from ramparts.config import load_config
from ramparts.detectors.base import Detector, make_alert
from ramparts.streams.keys import route_key
from ramparts.streams.ship import ship_files
from ramparts.streams.topics import TopicNames, create_topics, wait_until_consumed

HASH_KEY = "streaming-tests-hash-key-0123456789"
WAIT_SECONDS = 120.0
_ids = itertools.count(1)


class Stack:
    """One test's view of the broker: its prefix, group, config and workers."""

    def __init__(self, bootstrap: str, tmp: Path, partitions: int = 4, prelude: str | None = None,
                 env: dict[str, str] | None = None):
        n = next(_ids)
        self.tmp = tmp
        self.prelude = prelude
        self.env = {**os.environ,
                    "RAMPARTS_KAFKA__BOOTSTRAP": bootstrap,
                    "RAMPARTS_KAFKA__TOPIC_PREFIX": f"t{n}-{os.getpid()}",
                    "RAMPARTS_KAFKA__GROUP": f"g{n}-{os.getpid()}",
                    "RAMPARTS_KAFKA__PARTITIONS": str(partitions),
                    "RAMPARTS_KAFKA__BATCH_MAX_SECONDS": "0.2",
                    "RAMPARTS_HASH_KEY": HASH_KEY, "RAMPARTS_ALERTING__OUTBOX_DIR": str(tmp / "outbox"),
                    **(env or {})}
        self.config = load_config(None, env=self.env)
        self.names = TopicNames(self.config.kafka.topic_prefix)
        self.bootstrap = bootstrap
        asyncio.run(create_topics(bootstrap, self.names.all, partitions))
        self.workers: list[Worker] = []

    def worker(self, name: str) -> "Worker":
        w = Worker(self, name)
        self.workers.append(w)
        return w

    def ship(self, files: list[str], single: bool = False, alive=None):
        """Ship ``files``; with ``alive`` (a running worker's check), pod lists first
        (:meth:`ship_reference`). Returns the report of the rest."""
        if alive is not None:
            files = self.ship_reference(files, alive, single=single)
        return asyncio.run(ship_files(self.config, files, single=single))

    def ship_reference(self, files: list[str], alive, single: bool = False) -> list[str]:
        """Ship the pod lists among ``files`` and wait until the worker consumed them, as ``ramparts
        dev`` does: the worker reads its raw topics in no guaranteed order, and a GPU sample judged
        before its node's pod list is a false alarm (docs/compute.md, "Reference data in the
        worker"). Returns the other files."""
        reference = [f for f in files if f.endswith(".k8s_pods.log")]
        if reference:
            asyncio.run(ship_files(self.config, reference, single=single))
            assert self.wait_consumed(alive=alive), "the worker did not consume the pod lists"
        return [f for f in files if f not in reference]

    def wait_consumed(self, alive=lambda: True, timeout: float = WAIT_SECONDS) -> bool:
        return asyncio.run(wait_until_consumed(self.bootstrap, self.config, timeout, alive=alive))

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
        args = ["worker", "--store", str(self.store), "--stats-file", str(self.stats_file)]
        if self.stack.prelude is None:
            cmd = [sys.executable, "-m", "ramparts.cli", *args]
        else:
            cmd = [sys.executable, "-c",
                   f"{self.stack.prelude}\nimport sys\nfrom ramparts.cli import main\nsys.exit(main(sys.argv[1:]))",
                   *args]
        self.proc = subprocess.Popen(cmd, stdout=open(self.log, "ab"), stderr=subprocess.STDOUT, env=self.stack.env)
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


def latest_alerts(per_store: list[set[tuple]]) -> set[tuple]:
    """The ``stored_alerts`` of several workers' stores, each incident in its latest state.

    An incident whose model or entity moved from one worker to another during a rebalance
    has rows in both stores; its updates carry a growing ``event_count`` (detectors/base.py),
    so the largest is the latest.
    """
    latest: dict[str, tuple] = {}
    for alerts in per_store:
        for a in alerts:
            if a[0] not in latest or a[3] > latest[a[0]][3]:
                latest[a[0]] = a
    return set(latest.values())


class ModelCalls(Detector):
    """A model-routed test detector: requests and predictions per model and time bucket.

    An incident per model and bucket once it holds ``min_count`` calls, its id and final count
    the same whatever order the events come in: the worker's order on ``events.model`` (one
    model's requests and predictions come from different files, parsed by whichever worker
    owns their raw partitions) is not replay's merge in event time. Its state stays small
    (``max_buckets``), which the contract suite's checks do not need to see: it is registered
    only by tests.
    """

    name = "test.model_calls"
    kinds = ("request", "prediction")
    route = "model"
    event_fields = ("kind", "ts", "model")  # route_key(e, "model") reads kind and model

    class Options(BaseModel):
        model_config = ConfigDict(extra="forbid", frozen=True)
        bucket_seconds: int = 600
        min_count: int = 200
        max_buckets: int = 288

    def update(self, batch, state):
        opts = self.options
        width = opts.bucket_seconds * 1_000_000_000
        counts: dict[str, dict[int, int]] = {}
        for e in batch:
            if e.get("kind") not in self.kinds:
                continue
            key = route_key(e, "model")
            if key is not None:
                per = counts.setdefault(key, {})
                b = e["ts"] // width
                per[b] = per.get(b, 0) + 1
        alerts = []
        for key, per in counts.items():
            st = state.get(self.key(key)) or {}
            for b, n in per.items():
                total = st.get(str(b), 0) + n
                st[str(b)] = total
                if total >= opts.min_count:
                    alerts.append(make_alert(self.name, "low", ("model", key.removeprefix("model:")), score=total,
                                             summary=f"{total} calls in {opts.bucket_seconds} s",
                                             evidence={"calls": total}, first_ts=b * width,
                                             last_ts=(b + 1) * width - 1, count=total))
            for old in sorted(st, key=int)[:-opts.max_buckets]:
                del st[old]
            state.set(self.key(key), st)
        return alerts


def register_model_calls() -> None:
    """Register :class:`ModelCalls` beside the real detectors (in this process, for good)."""
    from ramparts import detectors

    if ModelCalls not in detectors.DETECTOR_CLASSES:
        detectors.DETECTOR_CLASSES.append(ModelCalls)
        detectors.DETECTORS[ModelCalls.name] = ModelCalls


REGISTER_MODEL_CALLS = (f"import sys\nsys.path.insert(0, {str(Path(__file__).resolve().parents[2])!r})\n"
                        "from tests.streaming.harness import register_model_calls\nregister_model_calls()")
