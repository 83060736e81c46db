"""Incidents from the worker's alert stream (the ``<prefix>.alerts`` topic) into the engine.

The workers produce every incident update there (``streams/app.py``); this consumer, in its
own group (``<kafka.group>-playbooks``), hands each to :meth:`Engine.handle` and commits the
batch's offsets after the engine has recorded it. At-least-once: an incident read again
after a crash lands on the run and steps already recorded, and acts on nothing twice.
"""

from __future__ import annotations

import asyncio
import logging
import time

import orjson

log = logging.getLogger("ramparts.playbooks.consumer")


async def consume(engine, bootstrap: str, topic: str, group: str, stop: "asyncio.Event | None" = None,
                  max_seconds: float | None = None, tick_seconds: float = 1.0, on_batch=None) -> int:
    """Consume until ``stop`` is set or ``max_seconds`` pass; returns the incidents handled."""
    from aiokafka import AIOKafkaConsumer

    from ramparts.streams.topics import create_topics

    await create_topics(bootstrap, [topic], 1)
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False,
                                auto_offset_reset="earliest")
    await consumer.start()
    loop = asyncio.get_running_loop()
    handled = 0
    deadline = None if max_seconds is None else time.monotonic() + max_seconds
    next_tick = time.monotonic()
    try:
        while not (stop is not None and stop.is_set()) and (deadline is None or time.monotonic() < deadline):
            batches = await consumer.getmany(timeout_ms=int(min(tick_seconds, 0.5) * 1000))
            n = 0
            for records in batches.values():
                for r in records:
                    try:
                        incident = orjson.loads(r.value)
                    except orjson.JSONDecodeError:
                        log.error("alerts topic %s partition %s offset %s: not JSON, skipped", r.topic, r.partition,
                                  r.offset)
                        continue
                    # The engine blocks (HTTP, nginx reload, the store): off the event loop.
                    await loop.run_in_executor(None, engine.handle, incident)
                    n += 1
            if batches:
                await consumer.commit()
            handled += n
            if on_batch is not None and n:
                on_batch(handled)
            if time.monotonic() >= next_tick:
                await loop.run_in_executor(None, engine.tick)
                next_tick = time.monotonic() + tick_seconds
    finally:
        await consumer.stop()
    return handled
