"""What the worker compresses: ``kafka.worker_compression``, else ``kafka.compression`` (streams/app.py
``producer_compression``).

The events topics are a hop inside the cluster, written and read by the workers alone: a
deployment may send them uncompressed (less CPU in the workers, more bytes on the broker) while
``ramparts ship`` keeps compressing the raw topics. The worker must then read lz4 raw messages,
write plain events messages, and alert exactly as replay does.
"""

from __future__ import annotations

import asyncio

import pytest

from ramparts.config import ConfigError, load_config
from ramparts.streams.app import build_app, producer_compression
from ramparts.streams.replay import Progress, replay
from ramparts.streams.simulate import simulate

from .harness import Stack, open_store, replay_alerts, scenario_files, stored_alerts

CODEC_NONE, CODEC_LZ4 = 0, 3  # a record batch's compression attribute (Kafka's protocol)


@pytest.mark.parametrize("env, expected", [
    ({}, "lz4"),                                                    # the default: as before
    ({"RAMPARTS_KAFKA__COMPRESSION": "zstd"}, "zstd"),              # unset: the shipper's choice
    ({"RAMPARTS_KAFKA__WORKER_COMPRESSION": "none"}, None),         # the worker's own, the shipper's kept
    ({"RAMPARTS_KAFKA__COMPRESSION": "none", "RAMPARTS_KAFKA__WORKER_COMPRESSION": "lz4"}, "lz4"),
])
def test_the_workers_producer_compresses_as_worker_compression_says_else_as_compression(env, expected, tmp_path):
    config = load_config(None, env={"RAMPARTS_HASH_KEY": "k" * 32, **env})
    assert producer_compression(config.kafka) == expected
    app = build_app(config, datadir=str(tmp_path))
    assert app.conf.producer_compression_type == expected
    assert app.producer.compression_type == expected  # what Faust hands aiokafka's producer


def test_an_unknown_worker_compression_is_refused():
    with pytest.raises(ConfigError, match="worker_compression"):
        load_config(None, env={"RAMPARTS_KAFKA__WORKER_COMPRESSION": "brotli"})


def _codecs_of(stack: Stack, topics: list[str], monkeypatch) -> dict[str, set[int]]:
    """The compression codec of every record batch on ``topics``, read from the start.

    aiokafka drops a fetched batch's attributes once it has unpacked its records, so the fetcher's
    ``MemoryRecords`` (a name its module looks up per fetch response) is wrapped here to note the
    codec of each batch before the records are handed on unchanged."""
    from aiokafka import AIOKafkaConsumer
    from aiokafka.consumer import fetcher
    from aiokafka.record.memory_records import MemoryRecords

    codecs: dict[str, set[int]] = {t: set() for t in topics}
    seen: list[set[int]] = []

    def noting(data):
        records = MemoryRecords(data)
        while (batch := records.next_batch()) is not None:
            seen[-1].add(batch.compression_type)
        return MemoryRecords(data)

    monkeypatch.setattr(fetcher, "MemoryRecords", noting)

    async def read(topic: str) -> None:
        consumer = AIOKafkaConsumer(topic, bootstrap_servers=stack.bootstrap, auto_offset_reset="earliest",
                                    enable_auto_commit=False, group_id=None)
        await consumer.start()
        try:
            while True:
                fetched = await consumer.getmany(timeout_ms=1000)
                if not fetched:
                    return
        finally:
            await consumer.stop()

    for topic in topics:
        seen.append(codecs[topic])
        asyncio.run(read(topic))
    return codecs


def test_uncompressed_events_topics_and_lz4_raw_topics_give_the_same_alerts_as_replay(broker, tmp_path, monkeypatch):
    manifest = tmp_path / "sim" / "mix.json"
    simulate("mix", str(manifest), seed=7, start="2026-11-20T10:00:00Z")
    files = scenario_files(manifest)
    stack = Stack(broker.bootstrap, tmp_path, env={"RAMPARTS_KAFKA__WORKER_COMPRESSION": "none"})
    try:
        assert stack.config.kafka.compression == "lz4"  # what ship compresses the raw topics with
        report = replay(files, config=stack.config, progress=Progress(None, enabled=False),
                        dead_letter_path=str(tmp_path / "replay-dead.jsonl"))
        assert report.alerts, "the scenario's attacks must raise alerts for this comparison to mean something"
        w = stack.worker("a").start()
        stack.ship(files, alive=w.alive)
        assert stack.wait_consumed(alive=w.alive), w.log_tail()
        assert w.stop() == 0, w.log_tail()

        store = open_store(w.store)
        try:
            assert stored_alerts(store) == replay_alerts(report)
        finally:
            store.close()

        names = stack.names
        codecs = _codecs_of(stack, [names.events, names.events_model, names.raw_all[0]], monkeypatch)
        assert codecs[names.events] == {CODEC_NONE}, codecs
        assert codecs[names.events_model] == {CODEC_NONE}, codecs
        assert codecs[names.raw_all[0]] == {CODEC_LZ4}, codecs
    finally:
        stack.stop_all()
