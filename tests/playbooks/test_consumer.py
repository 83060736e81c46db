"""Incidents from the alerts topic of a real Kafka-compatible broker (Tansu, on loopback)."""

import asyncio

import orjson

from ramparts.playbooks.consumer import consume
from ramparts.streams.broker import EmbeddedBroker

from .helpers import incident
from .test_engine import hook, posts


async def produce(bootstrap, topic, values):
    from aiokafka import AIOKafkaProducer

    from ramparts.streams.topics import create_topics

    await create_topics(bootstrap, [topic], 1)
    p = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await p.start()
    try:
        for v in values:
            await p.send_and_wait(topic, orjson.dumps(v), key=v["id"].encode())
    finally:
        await p.stop()


def test_incidents_from_the_alerts_topic_act_once(harness, api):
    a = api()
    hook(harness, a.url)
    eng = harness.open()
    with EmbeddedBroker() as broker:
        inc = incident()
        # the same incident three times (a firing, a renotify, a redelivery) and one other
        values = [inc, {**inc, "event_count": 80}, inc, incident(iid="inc-2", eid="key-bob")]
        asyncio.run(produce(broker.bootstrap, "ramparts.alerts", values))

        async def run():
            stop = asyncio.Event()

            def seen(n):
                if n >= len(values):
                    stop.set()
            return await consume(eng, broker.bootstrap, "ramparts.alerts", "test-playbooks", stop,
                                 max_seconds=60, on_batch=seen)
        assert asyncio.run(run()) == 4
        # consumed again by the same group after a restart: the offsets were committed
        assert asyncio.run(consume(eng, broker.bootstrap, "ramparts.alerts", "test-playbooks", max_seconds=3)) == 0
    assert sorted(r["path"] for r in posts(a)) == ["/block/key-alice", "/block/key-bob"]
