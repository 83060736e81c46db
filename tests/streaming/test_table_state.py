"""The detect agents' state writes: ``TableState.write_back`` against the broker.

``write_back`` puts the changed keys into the Faust table's store and appends their changelog
records to record batches of the app's producer itself, instead of one Faust message per key
(``table[key] = value``). What must hold is what Faust's way gave: every key's record on the
changelog partition the write names, the values as the table holds them, the last write of a
key last, readable at once from the table, and a restarted app recovering the same table.
"""

from __future__ import annotations

import asyncio
import json
import random
import subprocess
import sys
import textwrap

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.structs import TopicPartition

from ramparts.streams.topics import create_topics

PARTITIONS = 2
APP_ID = "table-state-test"
SOURCE = "table-state-source"
CHANGELOG = f"{APP_ID}-state-changelog"

# A Faust app with one in-memory table, as the worker's. ``write``: for each source message
# (JSON: {"writes": [[key, value], ...]}), set the keys through a TableState and write them
# back to the message's partition; after the last message, check the table reads back what was
# written, flush and stop. ``dump``: recover the table, write it to a file and stop.
APP = textwrap.dedent("""
    import json, os, sys, tempfile
    import faust
    from ramparts.streams import app as worker_app
    from ramparts.streams.app import TableState

    bootstrap, mode, out, expect = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    sys.argv[1:] = ["worker", "--loglevel", "warn"]  # what app.main() reads
    worker_app._read_changelog_ends()  # what the worker's build_app does
    app = faust.App("%(app)s", broker=f"kafka://{bootstrap}", store="memory://", web_enabled=False,
                    datadir=tempfile.mkdtemp(), topic_partitions=%(partitions)d, topic_replication_factor=1,
                    recovery_consistency_check=False, key_serializer="raw", value_serializer="raw",
                    broker_session_timeout=10, broker_heartbeat_interval=3)
    source = app.topic("%(source)s", value_type=bytes, partitions=%(partitions)d)
    table = app.Table("state", partitions=%(partitions)d, key_type=bytes, value_type=bytes)
    seen = {}

    @app.agent(source)
    async def agent(stream):
        n = 0
        async for ev in stream.events():
            if mode != "write":
                continue
            state = TableState(table)
            for k, v in json.loads(ev.value)["writes"]:
                state.set(k, v)
                seen[k] = v
            await state.write_back(ev.message.partition)
            n += 1
            if n == expect:
                fresh = TableState(table)
                ok = all(fresh.get(k) == v for k, v in seen.items())
                await app.producer.flush()
                with open(out, "w") as f:
                    json.dump({"reads_back": ok}, f)
                os._exit(0)

    @app.task
    async def dump():
        if mode != "dump":
            return
        await app.tables.recovery.completed.wait()
        with open(out, "w") as f:
            json.dump({k.decode(): v.decode() for k, v in table.items()}, f)
        os._exit(0)

    app.main()
""") % {"app": APP_ID, "partitions": PARTITIONS, "source": SOURCE}


async def _send_source(bootstrap: str, messages: list[tuple[int, bytes]]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    try:
        for partition, value in messages:
            await producer.send_and_wait(SOURCE, value=value, partition=partition)
    finally:
        await producer.stop()


async def _read_changelog(bootstrap: str, counts: dict[int, int]) -> dict[int, list[tuple[bytes, bytes]]]:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        tps = [TopicPartition(CHANGELOG, p) for p in range(PARTITIONS)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        got: dict[int, list[tuple[bytes, bytes]]] = {p: [] for p in range(PARTITIONS)}
        for _ in range(200):
            if all(len(got[p]) >= counts[p] for p in got):
                break
            for tp, records in (await consumer.getmany(timeout_ms=200)).items():
                got[tp.partition].extend((r.key, r.value) for r in records)
        return got
    finally:
        await consumer.stop()


def _run_app(bootstrap: str, mode: str, out, expect: int) -> dict:
    cmd = [sys.executable, "-c", APP, bootstrap, mode, str(out), str(expect)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=180, check=False)
    assert done.returncode == 0 and out.exists(), done.stdout[-2000:] + done.stderr[-4000:]
    return json.loads(out.read_text())


def test_write_back_writes_each_key_to_the_named_changelog_partition_and_recovers(broker, tmp_path):
    asyncio.run(create_topics(broker.bootstrap, [SOURCE, CHANGELOG], PARTITIONS))
    rng = random.Random(7)
    messages: list[tuple[int, bytes]] = []
    expected_records: dict[int, list[tuple[bytes, bytes]]] = {p: [] for p in range(PARTITIONS)}
    final: dict[str, str] = {}
    for n in range(6):
        partition = n % PARTITIONS
        # Some keys written again by later batches; enough and large enough values to fill
        # several of the producer's record batches (16 KiB); one value larger than a batch.
        keys = [f"det/{partition}/{rng.randrange(150)}" for _ in range(120)]
        writes = {k: {"n": n, "pad": "x" * rng.randrange(50, 400), "f": rng.random()} for k in keys}
        if n == 3:
            writes[f"det/{partition}/big"] = {"n": n, "pad": "y" * 40_000}
        messages.append((partition, orjson.dumps({"writes": list(writes.items())})))
        for k, v in writes.items():
            expected_records[partition].append((k.encode(), orjson.dumps(v)))
            final[k] = orjson.dumps(v).decode()

    asyncio.run(_send_source(broker.bootstrap, messages))
    assert _run_app(broker.bootstrap, "write", tmp_path / "write.json", len(messages)) == {"reads_back": True}

    counts = {p: len(r) for p, r in expected_records.items()}
    got = asyncio.run(_read_changelog(broker.bootstrap, counts))
    # Every write, in order, on the partition of the batch that wrote it, and nothing else.
    assert got == expected_records

    recovered = _run_app(broker.bootstrap, "dump", tmp_path / "dump.json", 0)
    assert recovered == final
