"""The parse stage's input: the raw topics read by a plain aiokafka consumer inside the Faust app.

Why not a Faust agent: with one record per message (a log forwarder's way), Faust's
per-message machinery (``Consumer._drain_messages`` starting two tasks per message, the
event built for the stream's queue, the per-message acknowledgement) cost the worker about
71 µs of CPU per message, as much as a whole no-op Faust agent, and four times our own parsing
(docs/benchmarks.md, "The single-record path: a profile"). Here a micro-batch is one
``getmany`` call and one list of records. The detect agents stay Faust agents: their messages
carry up to 8,000 events each, so Faust's cost per message is small there, and they need its tables.

:class:`RawConsumer` is a mode ``Service`` registered with the app (``app.service``): it starts
after the app's producer and is stopped with the app. Its guarantees, the ones the Faust agent
had:

* **its own group**, ``<kafka.group>-raw`` (:func:`topics.raw_group`), manual commits,
  ``auto_offset_reset="earliest"``, the app's session, heartbeat and request timeouts, the fetch
  wait capped at ``kafka.fetch_max_wait_ms``, up to ``kafka.raw_fetch_partition_bytes`` fetched
  per partition at once (8 MiB: one ``getmany`` of a backlog brought about three times the
  events Faust's 1 MiB did, and the steps after it, detection above all, cost less per event in
  larger batches: docs/benchmarks.md, eighth session);
* **at-least-once**: the offset after a message is committed only once the message is
  released (its events and dead letters sent, no parser holding any of its records for a join:
  ``stage.process`` returns each partition's released prefix, in offset order), the store has
  flushed (``flush_store``: the parse stage stores the events it makes) and the producer has
  flushed. Commits go out about once a second (``COMMIT_INTERVAL_SECONDS``) and whenever a
  fetch comes back empty, so an idle worker's group reaches the end of its topics promptly;
* **rebalances**: aiokafka's rebalance protocol revokes every partition on every rebalance. On
  revoke, under the same lock as a batch's processing, the producer is flushed, the released
  prefix committed, and the stage forgets the partitions (parsers, held messages): the next
  owner, perhaps this worker, reads them again from the committed offset and parses the held
  records whole. A batch fetched before the revoke and not yet processed is dropped (its
  records are read again after the assignment); aiokafka returns no record fetched under an
  earlier assignment, and keeps each partition in offset order, so the raw topics need none of
  the offset checks the Faust agents need (``InOrder``);
* **stop**: the batch in hand is finished, the producer flushed, the released prefix committed,
  the consumer closed;
* **errors**: a commit refused because the group rebalanced meanwhile is logged and skipped
  (the next owner reads the uncommitted messages again); any other error stops parsing for
  good, so it crashes the worker (the log says why, the process exits non-zero) for its
  supervisor to restart it, rather than leaving a worker up that parses nothing.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any, Awaitable, Callable

from mode import Service

log = logging.getLogger("ramparts.worker.raw")

COMMIT_INTERVAL_SECONDS = 1.0
STOP_TIMEOUT_SECONDS = 10.0


class RawConsumer(Service):
    """Feeds the raw topics to ``process`` in micro-batches and commits what it releases.

    ``process(records)`` takes a batch of aiokafka ``ConsumerRecord`` s (each partition's in
    offset order) and returns the records that may now be committed, each partition's in offset
    order (a prefix of what it was given so far: ``AckOrder``); ``forget(partitions)`` drops
    whatever the stage holds of the ``(topic, partition)`` pairs given.
    """

    def __init__(self, app: Any, topics: list[str], group: str, kafka: Any,
                 process: Callable[[list[Any]], Awaitable[list[Any]]], forget: Callable[[set], None],
                 flush_store: Callable[[], None] | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.app = app
        self.topics = topics
        self.group = group
        self.kafka = kafka
        self.process = process
        self.forget = forget
        self.flush_store = flush_store  # the store's flush: the events ``process`` wrote to it
        self.consumer: Any = None
        # Held while a batch is processed or committed, and while partitions are revoked.
        self.lock = asyncio.Lock()
        self.epoch = 0  # bumped by every revoke: a batch fetched in an older epoch is stale
        self.releasable: dict[tuple[str, int], int] = {}  # next offset to commit per partition
        self.committed: dict[tuple[str, int], int] = {}  # what this worker last committed
        self.last_commit = time.monotonic()
        self.commits = 0
        self.commits_refused = 0
        self.stale_batches = 0
        self.done = asyncio.Event()

    async def on_start(self) -> None:
        from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener

        conf = self.app.conf
        k = self.kafka
        owner = self

        class Listener(ConsumerRebalanceListener):
            async def on_partitions_revoked(self, revoked):
                await owner.revoke({(tp.topic, tp.partition) for tp in revoked})

            async def on_partitions_assigned(self, assigned):
                pass  # aiokafka starts each partition at its committed offset

        self.consumer = AIOKafkaConsumer(
            bootstrap_servers=k.bootstrap.split(","),
            client_id=f"{conf.broker_client_id}-raw",
            group_id=self.group,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            fetch_max_wait_ms=k.fetch_max_wait_ms,
            max_partition_fetch_bytes=k.raw_fetch_partition_bytes,
            request_timeout_ms=int(conf.broker_request_timeout * 1000),
            session_timeout_ms=int(conf.broker_session_timeout * 1000),
            heartbeat_interval_ms=int(conf.broker_heartbeat_interval * 1000),
            rebalance_timeout_ms=int(conf.broker_rebalance_timeout * 1000),
        )
        self.consumer.subscribe(self.topics, listener=Listener())
        await self.consumer.start()

    @Service.task
    async def _consume(self) -> None:
        k = self.kafka
        timeout_ms = max(1, int(k.batch_max_seconds * 1000))
        try:
            while not self.should_stop:
                fetched = await self.consumer.getmany(timeout_ms=timeout_ms, max_records=k.batch_max_events)
                epoch = self.epoch
                async with self.lock:
                    if fetched and epoch != self.epoch:
                        self.stale_batches += 1  # its partitions were revoked meanwhile: read again later
                        continue
                    if fetched:
                        batch = [r for records in fetched.values() for r in records]
                        releasable = self.releasable
                        for r in await self.process(batch):
                            releasable[(r.topic, r.partition)] = r.offset + 1
                    if self.releasable and (not fetched
                                            or time.monotonic() - self.last_commit >= COMMIT_INTERVAL_SECONDS):
                        await self.commit()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.critical("the raw topics' consumer failed; stopping the worker: %r", exc, exc_info=True)
            raise  # mode crashes the app with it: the worker exits non-zero
        finally:
            self.done.set()

    async def commit(self, partitions: set | None = None) -> None:
        """Flush the producer, then commit the released prefix (of ``partitions``, else of all).

        Called with ``lock`` held."""
        from aiokafka.errors import CommitFailedError, IllegalStateError
        from aiokafka.structs import TopicPartition

        offsets = {tp: o for tp, o in self.releasable.items()
                   if (partitions is None or tp in partitions) and self.committed.get(tp) != o}
        self.last_commit = time.monotonic()
        if not offsets:
            return
        # Events and dead letters of every released message are in the store's buffers and the
        # producer's hands; they must be in the store and on the broker before the offsets that
        # stand for them. A store that fails raises here: nothing is committed.
        if self.flush_store is not None:
            self.flush_store()
        await self.app.producer.flush()
        try:
            await self.consumer.commit({TopicPartition(t, p): o for (t, p), o in offsets.items()})
        except (CommitFailedError, IllegalStateError) as exc:
            # The group rebalanced since: these partitions may be another worker's now, which
            # reads the uncommitted messages again (at-least-once, rows replaced by position id).
            self.commits_refused += 1
            log.warning("raw commit refused (%s): %s", exc.__class__.__name__, exc)
            return
        self.committed.update(offsets)
        self.commits += 1

    async def revoke(self, partitions: set[tuple[str, int]]) -> None:
        async with self.lock:
            self.epoch += 1
            if self.consumer is not None and partitions:
                await self.commit(partitions)
            self.forget(partitions)
            for tp in partitions:
                self.releasable.pop(tp, None)
                self.committed.pop(tp, None)

    async def on_stop(self) -> None:
        if self.consumer is None:
            return
        # Let the batch in hand finish (the loop sees ``should_stop`` after it), then settle.
        try:
            await asyncio.wait_for(self.done.wait(), STOP_TIMEOUT_SECONDS)
        except asyncio.TimeoutError:
            # Stuck (seen once when another part of the app had crashed): commit nothing more;
            # the partitions' next owner redoes the uncommitted tail.
            log.error("the raw topics' consumer did not finish its batch within %.0f s; committing nothing more",
                      STOP_TIMEOUT_SECONDS)
            await self.consumer.stop()
            return
        try:
            if not self.crashed:  # after a crash the producer may be gone: commit nothing more
                async with self.lock:
                    await self.commit()
        finally:
            await self.consumer.stop()
