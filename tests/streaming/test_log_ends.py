"""End offsets read to the log's real end, for the waits and for Faust's table recovery.

Tansu 0.6.0 answers a ListOffsets request for the latest offset with the base offset of the
partition's last record batch plus one (streams/topics.py, ``LogEnds``). Faust's recovery read
a changelog only that far, and a restarted worker lost the last batch of its detectors' state.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import textwrap

from aiokafka import AIOKafkaProducer
from aiokafka.structs import TopicPartition

from ramparts.streams.topics import LogEnds, create_topics

LAST_BATCH = 40


async def _produce_batch(bootstrap: str, topic: str, partition: int, items: list[tuple[bytes, bytes]]) -> list[int]:
    """Send ``items`` without waiting for each, so the producer packs them into one batch;
    returns their offsets."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=50)
    await producer.start()
    try:
        futures = [await producer.send(topic, value=v, key=k, partition=partition) for k, v in items]
        return [md.offset for md in await asyncio.gather(*futures)]
    finally:
        await producer.stop()


async def _ends(bootstrap: str, tps: list[TopicPartition]) -> dict:
    async with LogEnds(bootstrap) as log_ends:
        return await log_ends.ends(tps)


def test_log_ends_are_one_past_the_last_record_whatever_the_batches(broker):
    topic = "log-ends-test"
    asyncio.run(create_topics(broker.bootstrap, [topic], 3))
    tps = [TopicPartition(topic, p) for p in range(3)]
    first = asyncio.run(_produce_batch(broker.bootstrap, topic, 0, [(b"k", b"%d" % i) for i in range(50)]))
    single = asyncio.run(_produce_batch(broker.bootstrap, topic, 1, [(b"k", b"one")]))
    assert first == list(range(50)) and single == [0]
    assert asyncio.run(_ends(broker.bootstrap, tps)) == {tps[0]: 50, tps[1]: 1, tps[2]: 0}

    more = asyncio.run(_produce_batch(broker.bootstrap, topic, 0, [(b"k", b"%d" % i) for i in range(30)]))
    assert more == list(range(50, 80))
    assert asyncio.run(_ends(broker.bootstrap, tps))[tps[0]] == 80


# A Faust app with one in-memory table, as the worker's: it recovers the table from its
# changelog, writes what it holds to a file and stops.
RECOVERING_APP = textwrap.dedent("""
    import asyncio, json, os, sys, tempfile
    import faust
    from ramparts.streams import app as worker_app

    bootstrap, out = sys.argv[1], sys.argv[2]
    sys.argv[1:] = ["worker", "--loglevel", "warn"]  # what app.main() reads
    worker_app._read_changelog_ends()  # what the worker's build_app does
    app = faust.App("log-ends-recovery", broker=f"kafka://{bootstrap}", store="memory://", web_enabled=False,
                    datadir=tempfile.mkdtemp(), topic_partitions=1, topic_replication_factor=1,
                    recovery_consistency_check=False, key_serializer="raw", value_serializer="raw",
                    broker_session_timeout=10, broker_heartbeat_interval=3)
    source = app.topic("log-ends-source", value_type=bytes, partitions=1)
    table = app.Table("state", partitions=1, key_type=bytes, value_type=bytes)

    @app.agent(source)
    async def agent(stream):
        async for _ in stream:
            pass

    @app.task
    async def dump():
        await app.tables.recovery.completed.wait()
        with open(out, "w") as f:
            json.dump({k.decode(): v.decode() for k, v in table.items()}, f)
        os._exit(0)

    app.main()
""")


def test_a_restarted_worker_recovers_every_record_of_its_changelogs_last_batch(broker, tmp_path):
    """Three batches of writes to one changelog partition, the last overwriting some keys: the
    recovered table holds the last value of every key. (Without ``_read_changelog_ends`` it held
    120 keys, one of them with the last batch's value: Faust's reading stopped at the first
    record of the last batch.)"""
    changelog = "log-ends-recovery-state-changelog"
    asyncio.run(create_topics(broker.bootstrap, [changelog, "log-ends-source"], 1))
    expected: dict[str, str] = {}
    for n, keys in enumerate((range(60), range(60, 120), range(100, 100 + LAST_BATCH))):
        items = [(b"key-%d" % i, b"batch-%d" % n) for i in keys]
        asyncio.run(_produce_batch(broker.bootstrap, changelog, 0, items))
        expected.update((k.decode(), v.decode()) for k, v in items)
    assert asyncio.run(_ends(broker.bootstrap, [TopicPartition(changelog, 0)]))[TopicPartition(changelog, 0)] == 160

    out = tmp_path / "table.json"
    cmd = [sys.executable, "-c", RECOVERING_APP, broker.bootstrap, str(out)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0 and out.exists(), done.stdout[-2000:] + done.stderr[-4000:]
    recovered = json.loads(out.read_text())
    assert len(recovered) == len(expected) == 140
    assert recovered == expected
