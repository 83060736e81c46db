"""The Faust app: raw topics in, events keyed by entity, detectors over tables, alerts out.

The parse stage and one agent (two with model-routed detectors), all thin shells over pure code:

* ``parse`` reads the raw topics in micro-batches, not as a Faust agent but through a plain
  aiokafka consumer of its own group, ``<kafka.group>-raw``, run as a service of the app
  (``raw_consumer.RawConsumer``: Faust's per-message cost was as large as a whole no-op agent's
  on single-record messages), parses each message with a
  long-lived parser per (format, topic, partition) so joins survive message boundaries, stamps
  every event with a position id (``topic:partition:offset:line``), sends dead letters to the
  ``deadletter`` topic and the store, writes the events to the store, whole (the raw offsets
  are committed after the store's flush), and sends them to ``events``, grouped into
  messages per target partition (the partition of the event's entity), as columns
  (``streams/wire.py``: a columnar parser's events never become dicts on the way), each with
  only the fields the entity-routed detectors of its kind read (``topics.entity_route_fields``).
* ``detect`` reads ``events`` in micro-batches (each message back into an ``EventBatch`` of
  columns; one no version reads goes to the dead letters) and, per partition, calls the same
  :meth:`Pipeline.process_batch` as replay, with the detector state of that partition's
  entities in a Faust table (changelog-backed: a restarted or rebalanced worker recovers it).
  The store (alerts) is flushed before the batch is acknowledged, and Faust commits only acknowledged
  offsets after flushing its producer: outputs are written before offsets are committed
  (at-least-once). Rows carry position ids and alerts stable incident ids, so a redelivered
  batch replaces rows instead of adding them. It runs the detectors routed by entity
  (``Detector.route == "entity"``).
* ``detect-model``, only when an enabled detector is routed by model
  (``Detector.route == "model"``): ``parse`` also sends the requests and predictions that
  name a model (of the kinds those detectors read, with only the fields they read:
  ``topics.model_route_fields``) to ``events.model``, partitioned by model
  (``route_key(e, "model")``), and this agent runs the model-routed detectors over them the
  same way, with their state in a table of its own (``detector-state-model``) and storing
  only their alerts: the events are stored once, by ``parse``.
"""

from __future__ import annotations

import logging
import os
import tempfile
import time
from collections import OrderedDict, defaultdict
from typing import Any

import faust
import orjson
from faust.types import TP

from ramparts.gctune import tune as tune_gc
from ramparts.events import EventBatch
from ramparts.redact import Hasher

from .decode import HEAD_BYTES, detect_format, make_parser, sniff_lines
from .keys import partition_for, route_key
from .parsers import DeadLetter, get_parser_class
from .parsers.base import LineBlock
from .pipeline import Pipeline, alert_to_json
from .raw_consumer import RawConsumer
from .topics import (HEADER_END, HEADER_FORMAT, HEADER_FRAMING, HEADER_ORIGIN, LogEnds, TopicNames,
                     entity_route_fields, fast_lz4, model_route_fields, model_routed_kinds, raw_group)
from .wire import STORED_UPSTREAM_FROM, decode_versioned, messages

log = logging.getLogger("ramparts.worker")

# Events per message on the events topics: enough to pay the per-message costs rarely (Faust's
# delivery to the detect agents, the acknowledgements, aiokafka's record batches and produce
# requests, both ways): 2,000 instead of 500 made the batched worker about 1.3 us of CPU per
# event cheaper (docs/benchmarks.md, tenth session), and 8,000 instead of 2,000 about 0.4 more
# (thirteenth session), once the routes carried only what their detectors read (about 114
# bytes of JSON per event). A message is also cut at ``wire.MAX_MESSAGE_BYTES`` (1 MiB before
# compression): on the benchmark's mix, as one batch, 31 messages of up to 8,000 events per
# route (the largest 0.99 MB, some cut in halves), against 114 and 113 of up to 2,000.
EVENTS_PER_MESSAGE = 8000
UNRECOGNISED = "unrecognised"
MAX_OPEN_PARSERS = 1024
MAX_HELD_MESSAGES = 256
_NO_HEADERS: dict[str, bytes] = {}  # a message without headers (never written to)



class TableState:
    """A :class:`StateStore` over a Faust table of orjson bytes, written back per partition."""

    def __init__(self, table: Any):
        self.table = table
        self.dirty: dict[str, Any] = {}

    def get(self, key: str) -> Any:
        if key in self.dirty:
            return self.dirty[key]
        raw = self.table.get(key.encode())
        return None if raw is None else orjson.loads(raw)

    def set(self, key: str, value: Any) -> None:
        self.dirty[key] = value

    def scan(self, prefix: str) -> list[tuple[str, Any]]:
        """Every key under ``prefix`` this worker holds (all its partitions), with its value."""
        p = prefix.encode()
        found = {k.decode(): orjson.loads(v) for k, v in list(self.table.items()) if k.startswith(p) and v}
        found.update((k, v) for k, v in self.dirty.items() if k.startswith(prefix))
        return list(found.items())

    async def write_back(self, partition: int) -> None:
        """Write the changed keys to the table and its changelog's ``partition``, one batch of
        records for them all.

        Faust's own way, ``table[key] = value``, sends one changelog message per key through
        its producer buffer (``Table.on_key_set``, ``Topic.send_soon``, ``publish_message``):
        about 1,700 messages per run of the benchmark, each through several layers of Python.
        Here the keys go into the table's store as Faust's ``__setitem__`` puts them, and their
        records are appended to aiokafka record batches of the app's producer
        (``create_batch``, ``send_batch``): the same keys and values on the same changelog
        partition (the events partition whose entities they are, as Faust's current-event
        routing picked), so recovery reads back the same table. The producer is the one
        Faust flushes before every commit, so the changelog is on the broker before the input
        behind it is committed, as before.
        """
        if not self.dirty:
            return
        table = self.table
        data = table.data
        producer = table.app.producer._ensure_producer()  # Faust's aiokafka producer
        topic = table.changelog_topic.get_topic_name()
        batch = producer.create_batch()
        for k, v in self.dirty.items():
            key, value = k.encode(), orjson.dumps(v)
            data[key] = value
            if batch.append(key=key, value=value, timestamp=None) is None:  # full: send it, start another
                _sent(await producer.send_batch(batch, topic, partition=partition))
                batch = producer.create_batch()
                batch.append(key=key, value=value, timestamp=None)  # the first record always fits
        _sent(await producer.send_batch(batch, topic, partition=partition))
        self.dirty = {}


def _sent(fut: Any) -> None:
    fut.add_done_callback(_log_changelog_failure)


def _log_changelog_failure(fut: Any) -> None:
    # Faust's own changelog sends fail the same way: logged (its ``_on_changelog_sent``).
    if not fut.cancelled() and fut.exception() is not None:
        log.error("a changelog batch was not written: %r", fut.exception())


class AckOrder:
    """Hands back a partition's raw messages for committing in offset order only.

    A raw message held for a join while a later message of another file on the same
    partition is done must not be committed past: the next owner of the partition would skip
    it. Here a message (anything with ``topic``, ``partition`` and ``offset``: an aiokafka
    ``ConsumerRecord``) is released only once every earlier message of its partition is, so
    what is released is always a prefix, and the offset after the last released message of a
    partition is safe to commit. (The Faust agent this served had the same need in another
    form: Faust itself committed past an unacknowledged message on a partition with no commit
    yet, ``Consumer._new_offset``.)

    A revoked partition is forgotten: its messages are neither released later (a stale
    release is ignored) nor kept; the next owner reads them again from the committed offset.
    """

    def __init__(self) -> None:
        self._pending: dict[tuple[str, int], OrderedDict[int, list]] = {}

    def received(self, ev: Any) -> None:
        tp = (ev.topic, ev.partition)
        waiting = self._pending.get(tp)
        if waiting is None:
            waiting = self._pending[tp] = OrderedDict()
        waiting[ev.offset] = [ev, False]

    def release(self, ev: Any) -> list[Any]:
        """``ev`` is done: the messages that now can be committed, in offset order."""
        ready: list[Any] = []
        self._release(ev, ready)
        return ready

    def release_all(self, evs: list[Any]) -> list[Any]:
        """``release`` of each of ``evs`` in turn, the messages that can be committed joined."""
        ready: list[Any] = []
        for ev in evs:
            self._release(ev, ready)
        return ready

    def _release(self, ev: Any, ready: list[Any]) -> None:
        waiting = self._pending.get((ev.topic, ev.partition))
        entry = waiting.get(ev.offset) if waiting else None
        if entry is None or entry[0] is not ev:
            return  # a partition revoked since ``ev`` was read
        entry[1] = True
        if next(iter(waiting)) != ev.offset:
            return  # an earlier message of its partition is still out
        while waiting:
            offset, (first, done) = next(iter(waiting.items()))
            if not done:
                break
            del waiting[offset]
            ready.append(first)

    def forget(self, partitions: set[tuple[str, int]]) -> None:
        for tp in partitions:
            self._pending.pop(tp, None)

    def __len__(self) -> int:
        return sum(len(w) for w in self._pending.values())


class InOrder:
    """Lets through each partition's messages once and in offset order, or asks for a seek back.

    Faust's own read offsets are switched off (``_NoReadOffsets``: they dropped the messages
    of a seek back), so Faust hands over every message it fetches, twice or out of order
    around a rebalance. Kafka offsets of our topics are contiguous, so the agents check every
    message against the next offset they expect from its partition (the committed offset
    after an assignment):

    * the expected one: goes through;
    * an earlier one: delivered twice (a seek, a rebalance); dropped, the first copy counts;
    * a later one: messages were skipped. It is dropped, the hole is logged and counted, and
      the caller seeks the partition back to the expected offset (again every second while
      the hole lasts), so nothing is lost and no offset is acknowledged past a message that
      was never processed.

    A hole that seeking does not fill within ``GIVE_UP_SECONDS`` is not in the log any more
    (retention deleted it before this group read it: Kafka then starts from the earliest
    offset it has): the partition goes on from the message at hand, and the hole is logged as
    an error and counted with ``"lost": true``.
    """

    GIVE_UP_SECONDS = 10.0

    def __init__(self, committed, log, clock=time.monotonic) -> None:
        self.committed = committed  # (topic, partition) -> committed offset or None
        self.expected: dict[tuple[str, int], int] = {}
        # the open hole per partition: [expected offset, first seen, last sought (None: not yet)]
        self.open: dict[tuple[str, int], list] = {}
        self.holes: list[dict] = []
        self.duplicates = 0
        self.log = log
        self.clock = clock

    def admit(self, m: Any) -> bool:
        tp = (m.topic, m.partition)
        want = self.expected.get(tp)
        if want is None:
            c = self.committed(tp)
            want = c if c is not None else m.offset
        if m.offset == want:
            self.expected[tp] = want + 1
            self.open.pop(tp, None)
            return True
        if m.offset < want:
            self.duplicates += 1
            return False
        self.expected[tp] = want
        now = self.clock()
        hole = self.open.get(tp)
        if hole is None or hole[0] != want:
            self.open[tp] = [want, now, None]
            self._note(m, want, lost=False)
            self.log.warning("%s[%d]: offset %d read while %d was expected; seeking back to %d",
                             m.topic, m.partition, m.offset, want, want)
        elif now - hole[1] > self.GIVE_UP_SECONDS:
            self._note(m, want, lost=True)
            self.log.error("%s[%d]: offsets %d..%d are not in the log any more; going on from %d",
                           m.topic, m.partition, want, m.offset - 1, m.offset)
            self.expected[tp] = m.offset + 1
            del self.open[tp]
            return True
        return False

    def _note(self, m: Any, want: int, lost: bool) -> None:
        self.holes.append({"topic": m.topic, "partition": m.partition, "expected": want, "got": m.offset,
                           "lost": lost})
        del self.holes[:-20]

    def seeks(self) -> list[tuple[tuple[str, int], int]]:
        """Partitions to seek back now, and where to: a new hole at once, an open one every
        second (messages fetched before the seek may still come first; the caller also asks
        on a timer, so a hole at the end of a partition, with nothing arriving, is sought too)."""
        out = []
        now = self.clock()
        for tp, hole in self.open.items():
            if hole[2] is None or now - hole[2] > 1.0:
                hole[2] = now
                out.append((tp, hole[0]))
        return out

    def forget(self, partitions: set[tuple[str, int]]) -> None:
        for tp in partitions:
            self.expected.pop(tp, None)
            self.open.pop(tp, None)


class RawDecoder:
    """Raw Kafka messages to events and dead letters (pure apart from the parsers' join state)."""

    def __init__(self, config, hasher: Hasher):
        self.config = config
        self.hasher = hasher
        # One parser per shipped file: files of one format can share a partition, and a join
        # (a DCGM scrape, a KServe request and response) must never mix lines of two files.
        # Bounded: a shipper that dies never sends its file's end marker; the parser least
        # recently used is flushed (its joins emitted) when a new one would exceed the bound.
        self.parsers: OrderedDict[tuple[str, str, int, bytes | None], Any] = OrderedDict()
        self.last_format: dict[str, tuple[str, type]] = {}  # topic -> (format, parser class)
        self.records = 0
        self.evicted: list[tuple] = []  # parser keys flushed for the bound; the agent releases their messages

    def _parser(self, fmt: str, topic: str, partition: int, source: bytes | None,
                events: list[dict], dead: list[DeadLetter]):
        key = (fmt, topic, partition, source)
        p = self.parsers.get(key)
        if p is not None:
            self.parsers.move_to_end(key)
            return p
        p = make_parser(fmt, self.config, self.hasher)
        p.stamp_ids = True
        p.stream = f"{topic}:{partition}" + (f"({source.decode('utf-8', 'replace')})" if source else "")
        self.parsers[key] = p
        while len(self.parsers) > MAX_OPEN_PARSERS:
            old_key, oldest = self.parsers.popitem(last=False)
            oldest.flush(events, dead)
            self.evicted.append(old_key)
        return p

    def forget(self, partitions: set[tuple[str, int]]) -> None:
        """Drop the parsers of revoked partitions without emitting what they hold.

        The partition's next owner reads the held records again from the committed offset
        (they were never acknowledged) and emits the joins whole.
        """
        for key in [key for key in self.parsers if (key[1], key[2]) in partitions]:
            del self.parsers[key]

    def _format_of(self, topic: str, value: bytes) -> str | None:
        # A header-less single record: try the format last seen on this topic first (one
        # sniff instead of all of them). Every record is sniffed: two JSON formats can open
        # with the same bytes (an Envoy log whose json_format starts with request_id, and
        # LiteLLM's SpendLogs), so no cheaper shortcut tells them apart.
        head, lines = sniff_head(value)
        last = self.last_format.get(topic)
        if last is not None and last[1].sniff(head, lines):
            return last[0]
        fmt = detect_format(head)
        if fmt is not None:
            self.last_format[topic] = (fmt, get_parser_class(fmt))
        return fmt

    def decode(self, topic: str, partition: int, offset: int, value: bytes | None,
               headers: dict[str, bytes], events: "list[dict] | EventParts",
               dead: list[DeadLetter]) -> tuple[tuple | None, bool]:
        """Decode one message into ``events`` and ``dead``.

        ``events``: a list the events are appended to as dicts, or an :class:`EventParts`
        (the worker's way), which keeps each chunk as the parser hands it on
        (``Parser.parse_batch``: columns from a columnar parser, no dict per event).

        Returns the key of the parser that read it (None when none did) and whether that
        parser still holds records for a join: then the message must not be acknowledged yet.
        """
        origin = f"{topic}:{partition}:{offset}"
        if not value and not headers.get(HEADER_END):
            return None, False
        fmt_b = headers.get(HEADER_FORMAT)
        fmt = fmt_b.decode() if fmt_b else self._format_of(topic, value)
        src = headers.get(HEADER_ORIGIN)
        if src:
            origin = f"{origin}({src.decode('utf-8', 'replace')})"
        if fmt is None:
            dead.append(DeadLetter(UNRECOGNISED, origin, 1, "format not recognised", value))
            self.records += 1
            return None, False
        try:
            parser = self._parser(fmt, topic, partition, src, events, dead)
        except KeyError:
            dead.append(DeadLetter(UNRECOGNISED, origin, 1, f"unknown format {fmt!r} in the {HEADER_FORMAT} header",
                                   value))
            self.records += 1
            return None, False
        if headers.get(HEADER_FRAMING) == b"document" or parser.framing == "document":
            records = [value]
        elif parser.reads_blocks and type(value) is bytes and value.find(b"\n") >= 0:
            records = LineBlock.of(value)  # the same lines, not cut one by one (the Envoy parser reads slices at once)
        else:
            records = value.split(b"\n")
            if records[-1] == b"":
                records.pop()
            if value.find(b"\r") >= 0:
                records = [r[:-1] if r.endswith(b"\r") else r for r in records]
        self.records += len(records)
        add_batch = getattr(events, "add_batch", None)
        if add_batch is not None:
            add_batch(parser.parse_batch(records, origin, 1, dead))
        else:
            parser.parse_chunk(records, origin, 1, events, dead)
        key = (fmt, topic, partition, src)
        if headers.get(HEADER_END):
            parser.flush(events, dead)
            del self.parsers[key]
            return key, False
        return key, parser.holds_state()


def sniff_head(value: bytes) -> tuple[bytes, list[bytes]]:
    """``(value[:HEAD_BYTES], sniff_lines(that))``, without the copy and the split for one short line."""
    if len(value) < HEAD_BYTES and value.find(b"\n") < 0:
        line = value.rstrip(b"\r")
        return value, ([line] if line and not line.isspace() else [])
    head = value[:HEAD_BYTES]
    return head, sniff_lines(head)


class EventParts:
    """The events :meth:`RawDecoder.decode` emits over a micro-batch, as the batches the parsers
    hand on (``add_batch``) and the lists of dicts they emit from their joins (``extend``).

    Consecutive events held as dicts are pooled into one list: single-record messages hand on
    a batch of one event each, and a part per event would cost every later step (the route
    keys, the selections, a part per event on the wire) more than the event itself."""

    def __init__(self) -> None:
        self._segments: list[EventBatch | list[dict]] = []
        self._n = 0

    def add_batch(self, batch: EventBatch) -> None:
        n = len(batch)
        if not n:
            return
        parts, order = batch.layout()  # dict parts are pooled here
        if order is None and all(type(p) is list for p in parts):
            for p in parts:
                self.extend(p)
            return
        self._segments.append(batch)
        self._n += n

    def extend(self, events: list[dict]) -> None:
        if not events:
            return
        last = self._segments[-1] if self._segments else None
        if type(last) is list:
            last.extend(events)
        else:
            self._segments.append(list(events))
        self._n += len(events)

    def __len__(self) -> int:
        return self._n

    def batch(self) -> EventBatch:
        """Every event added, in order, as one batch (the parts kept, nothing copied)."""
        return EventBatch.concat(EventBatch(s) if type(s) is list else s for s in self._segments)


def group_by_partition(events: list[dict], partitions: int, route: str = "entity") -> dict[int, list[dict]]:
    """``events`` by the partition of their ``route`` key, in order; events with no key are left out."""
    out: dict[int, list[dict]] = defaultdict(list)
    for e in events:
        key = route_key(e, route)
        if key is not None:
            out[partition_for(key, partitions)].append(e)
    return out


class AckAfterFlush:
    """Acknowledges agents' input only once the store holds what it produced.

    Agents ``add`` what they have processed (rows already handed to the sink's buffers);
    ``settle`` flushes the sink when a buffer is full or ``flush_interval_seconds`` have
    passed since the last settle (or always, ``force``), then acknowledges everything added
    before that flush, each on the stream it came from. One instance serves every agent: a
    flush writes the rows of all of them, so one flush releases them all. With no sink
    (benchmarks), everything added is acknowledged at once.
    """

    def __init__(self, sink: Any | None, clock=time.monotonic) -> None:
        self.sink = sink
        self.clock = clock
        self.unacked: list[tuple[Any, Any]] = []  # (stream, event)
        self.last = clock()

    def add(self, stream: Any, events: list[Any]) -> None:
        self.unacked.extend((stream, ev) for ev in events)

    def __len__(self) -> int:
        return len(self.unacked)

    async def settle(self, force: bool = False) -> None:
        if not self.unacked:
            return
        sink = self.sink
        if sink is not None:
            fresh = self.clock() - self.last < sink.flush_interval_seconds
            if not force and fresh and sink.fullest_buffer < sink.max_batch_rows:
                return
            sink.flush()
        self.last = self.clock()
        # Swapped before the first await: what an agent adds meanwhile waits for the next flush.
        done, self.unacked = self.unacked, []
        for stream, ev in done:
            await stream.ack(ev)


class _NoReadOffsets(dict):
    """Faust's per-partition read offsets, made to remember nothing.

    Faust's fetch loop drops a message whose offset is under the last one it read from its
    partition, and records a jump over the next one as a gap that counts as acknowledged
    (``Consumer._drain_messages``, ``_add_gap``). After a seek back, records fetched before
    it can still be delivered first, and then the seek's own deliveries are dropped: a CI
    run lost a raw message this way, and a seek back of ``InOrder`` stalled on it. Order and
    duplicates are ``InOrder``'s job; this mapping reads as "nothing read yet" for every
    partition, so Faust hands every message over and records no gap.
    """

    def __getitem__(self, tp):
        return None

    def __setitem__(self, tp, offset) -> None:
        pass

    def update(self, *args, **kwargs) -> None:
        pass


def _forget_read_offsets() -> None:
    """Give every Faust consumer this process makes a ``_NoReadOffsets``."""
    from faust.transport import consumer as faust_consumer

    base = faust_consumer.Consumer
    if getattr(base, "_ramparts_no_read_offsets", False):
        return
    init = base.__init__

    def __init__(self, *args, **kwargs):
        init(self, *args, **kwargs)
        self._read_offset = _NoReadOffsets()

    base.__init__ = __init__
    base._ramparts_no_read_offsets = True


def _read_changelog_ends() -> None:
    """Make Faust's table recovery read every changelog to its real end (:class:`LogEnds`).

    Recovery reads a changelog partition up to the end offset the broker reports. Tansu
    reports the base offset of the partition's last record batch plus one, and the changelog
    writes of one micro-batch go out as one batch: recovery stopped after the first of them,
    and the others were applied or not depending on whether they had been fetched in the same
    response (Faust applies what it has queued, but flushes its buffer of records only when a
    recovery ends). A CI run lost a node's GPU authorizations this way in the kill-and-restart
    test: the restarted worker judged an authorized GPU with the previous day's pod list and
    raised a ``gpu.unauthorized`` alert replay does not. The broker's answer, when it cannot be
    corrected (no record read at the end within the probe's time), is kept and logged.
    """
    from aiokafka.errors import KafkaError
    from aiokafka.structs import TopicPartition
    from faust.tables.recovery import Recovery

    if getattr(Recovery, "_ramparts_log_ends", False):
        return
    build = Recovery._build_highwaters

    async def _build_highwaters(self, consumer, tps, destination, title):
        await build(self, consumer, tps, destination, title)
        if not tps:
            return
        bootstrap = ",".join(f"{u.host}:{u.port}" for u in self.app.conf.broker)
        faust_tp = {(tp.topic, tp.partition): tp for tp in tps}
        try:
            async with LogEnds(bootstrap) as log_ends:
                ends = await log_ends.ends([TopicPartition(*key) for key in faust_tp])
        except (KafkaError, OSError, TimeoutError) as exc:  # the broker's ends stand; recovery goes on
            log.warning("could not read the %s changelogs' ends (%s): recovery reads to the broker's", title, exc)
            return
        for tp, end in ends.items():
            key = faust_tp[(tp.topic, tp.partition)]
            destination[key] = max(destination[key], end - 1)

    Recovery._build_highwaters = _build_highwaters
    Recovery._ramparts_log_ends = True


def _limit_fetch_wait(max_wait_ms: int) -> None:
    """Cap the consumer's fetch long-poll, which Faust hard-codes to 1500 ms.

    Measured (docs/benchmarks.md): with 1500 ms the batched Kafka path ran about 15% slower
    against Tansu, the worker idling between its two agents; a fetch of one partition is
    answered within 2 ms of new data, so the wait comes from fetches that span many
    partitions (not isolated further). A short cap costs a few empty fetches a second when
    idle. Faust's driver builds its consumer from the ``aiokafka`` module's class, so the
    capped class replaces it there, for every consumer this process makes afterwards.
    """
    import aiokafka
    from faust.transport.drivers import aiokafka as driver

    base = aiokafka.AIOKafkaConsumer
    if getattr(driver.aiokafka.AIOKafkaConsumer, "_ramparts_capped", None) == max_wait_ms:
        return

    class CappedConsumer(base):  # type: ignore[misc,valid-type]
        _ramparts_capped = max_wait_ms

        def __init__(self, *args, **kwargs):
            kwargs["fetch_max_wait_ms"] = min(kwargs.get("fetch_max_wait_ms", max_wait_ms), max_wait_ms)
            super().__init__(*args, **kwargs)

    driver.aiokafka.AIOKafkaConsumer = CappedConsumer


def producer_compression(k) -> str | None:
    """The compression of everything the worker produces (aiokafka's ``compression_type``; ``None``:
    none): ``kafka.worker_compression``, else ``kafka.compression``, the shipper's.

    One setting for the worker's one producer: the events topics are nearly all of its bytes (the
    changelogs, alerts and dead letters are a few thousand records per run of the benchmark).
    Those bytes never leave the cluster and are read back by the same workers, so compressing them
    trades the workers' CPU (lz4 both ways, a few tenths of a microsecond per event,
    docs/benchmarks.md, fourteenth session) against the broker's disk and network; the default
    keeps lz4, the raw topics' choice, as before.
    """
    c = k.worker_compression or k.compression
    return None if c == "none" else c


def build_app(config, *, sink: Any | None = None, datadir: str | None = None, noop: bool = False,
              stats_file: str | None = None, outbox: Any | None = None, deliverer: Any | None = None) -> faust.App:
    """The worker's Faust app. ``noop=True`` builds the benchmark's no-op agent instead.

    ``stats_file`` gets the worker's counters as JSON four times a second (written
    atomically): raw messages, records, events, alerts, dead letters, and the wall-clock
    times of the first and last batch, from which ``ramparts bench throughput`` computes rates.

    ``outbox`` (``alerting.outbox.Outbox``): incidents' notifications are queued there, per
    batch, before the batch is acknowledged; ``deliverer`` sends them (its own threads) and
    its metrics join the stats under ``alerting``.
    """
    k = config.kafka
    _limit_fetch_wait(k.fetch_max_wait_ms)
    _forget_read_offsets()
    _read_changelog_ends()
    fast_lz4()
    names = TopicNames(k.topic_prefix)
    brokers = ";".join(f"kafka://{b.strip()}" for b in k.bootstrap.split(","))
    app = faust.App(
        k.group if not noop else k.group + "-noop",
        broker=brokers,
        store="memory://",
        web_enabled=False,
        datadir=datadir or tempfile.mkdtemp(prefix="ramparts-faust-"),
        topic_partitions=k.partitions,
        topic_replication_factor=1,
        consumer_auto_offset_reset="earliest",
        producer_compression_type=producer_compression(k),
        producer_max_request_size=4 * 1024 * 1024,
        broker_session_timeout=k.session_timeout_seconds,
        # Faust's default waits, on a rebalance, until every message read is acknowledged:
        # raw messages held for an open join never would be (their partition is paused), and
        # the rebalance would hang. The revocation handler below settles what can be settled.
        stream_wait_empty=False,
        # The tables are in memory: their "persisted offset" is the last changelog offset this
        # process applied or wrote itself, never a file left behind. Faust's check (meant for a
        # RocksDB file over a recreated topic) crashed the worker on "persisted offset 3 >
        # highwater 2" (tests/streaming) when the broker's end offset stopped at the first
        # record of its last batch (Tansu's, see _read_changelog_ends); it guards nothing here.
        recovery_consistency_check=False,
        broker_heartbeat_interval=min(3.0, k.session_timeout_seconds / 3),
        value_serializer="raw",
        key_serializer="raw",
    )
    app.ramparts_stats = stats = {"raw_messages": 0, "records": 0, "parsed_events": 0, "events": 0,
                                  "older_events_stored": 0, "dead_letters": 0, "alerts": 0,
                                  "batches": 0, "first_at": None, "last_at": None,
                                  # the process's CPU seconds at the same two moments (bench throughput's
                                  # CPU-time rates: a loaded machine slows wall time, not CPU time)
                                  "first_cpu": None, "last_cpu": None}

    if stats_file:
        @app.timer(0.25)
        async def write_stats():
            if deliverer is not None:
                stats["alerting"] = deliverer.stats()
            raw = getattr(app, "ramparts_raw", None)
            if raw is not None:
                # the parse stage's commits, those refused by a rebalance, batches dropped by one
                stats["raw_commits"], stats["raw_commits_refused"], stats["raw_stale_batches"] = (
                    raw.commits, raw.commits_refused, raw.stale_batches)
            _write_json_atomic(stats_file, stats)

    if noop:
        # A plain Faust agent over the raw topics, on purpose: the benchmark's yardstick for
        # what Faust costs per message (the parse stage does not pay it: RawConsumer).
        raw_topic = app.topic(*names.raw_all, value_type=bytes, value_serializer="raw", partitions=k.partitions)

        @app.agent(raw_topic, name="noop")
        async def noop_agent(stream):
            async for event in stream.events():
                now = time.time()
                if stats["first_at"] is None:
                    stats["first_at"], stats["first_cpu"] = now, time.process_time()
                stats["raw_messages"] += 1
                stats["last_at"], stats["last_cpu"] = now, time.process_time()
        return app

    events_topic = app.topic(names.events, value_type=bytes, value_serializer="raw", partitions=k.partitions)
    # What events carries of an event: the fields the entity-routed detectors of its kind and the
    # pipeline read (the events are stored by the parse stage, not after the hop).
    entity_fields = entity_route_fields(config)
    model_kinds = model_routed_kinds(config)
    # What events.model carries of an event: the fields its detectors and pipeline read.
    model_fields = model_route_fields(config)
    model_topic = (app.topic(names.events_model, value_type=bytes, value_serializer="raw", partitions=k.partitions)
                   if model_kinds else None)
    alerts_topic = app.topic(names.alerts, value_type=bytes, value_serializer="raw", partitions=k.partitions)
    dead_topic = app.topic(names.deadletter, value_type=bytes, value_serializer="raw", partitions=k.partitions)
    # Keys and values are bytes (the app's "raw" serializers): entity keys encoded, values orjson.
    state_table = app.Table("detector-state", partitions=k.partitions, key_type=bytes, value_type=bytes)
    hasher = Hasher(config.resolved_hash_key())
    decoder = RawDecoder(config, hasher)

    def alerting_stage():
        from ramparts.alerting import AlertingStage
        from ramparts.sinks.outputs import build_outputs

        if outbox is None:
            return None
        return AlertingStage.from_config(config, outbox, build_outputs(config),
                                         on_accept=deliverer.wake if deliverer is not None else None)

    # The events are stored by the parse stage (``parse_batch``): the detect stages store alerts.
    pipeline = Pipeline.from_config(config, sink, route="entity", write_events=False, alerting=alerting_stage())
    app.ramparts_pipeline = pipeline
    model_pipeline = None
    if model_kinds:
        # A table of its own rather than a share of ``detector-state``: its changelog partition
        # N is written only from ``events.model`` partition N, so which worker restores a
        # model's state follows that topic alone, and a worker that takes over a partition
        # restores no more than each agent needs.
        model_table = app.Table("detector-state-model", partitions=k.partitions, key_type=bytes, value_type=bytes)
        # The events are stored by the parse stage: this one writes only its alerts.
        model_pipeline = Pipeline.from_config(config, sink, route="model", write_events=False,
                                              alerting=alerting_stage())
        app.ramparts_model_pipeline = model_pipeline
        stats["model_events"] = 0

    # A raw message is committed once its events are sent on and no parser still holds
    # any of its records for a join: after a restart the parser must read them again (a DCGM
    # scrape cut by a message boundary, a KServe request waiting for its response), or it
    # would emit part of a join under an id the whole one already has. A shipped file's end
    # marker releases everything; a stream whose parser never lets go (a followed file) is
    # released every MAX_HELD_MESSAGES messages, a bounded risk (docs/streaming.md).
    held: dict[tuple, list[Any]] = defaultdict(list)
    order = AckOrder()
    # The detect agents' input, read by Faust: each partition once and in offset order.

    def committed(tp: tuple[str, int]) -> int | None:
        return app.consumer._committed_offset.get(TP(*tp))

    inorder = InOrder(committed, logging.getLogger("ramparts.streams"))
    stats["offset_holes"] = inorder.holes

    async def admitted(batch: list[Any]) -> list[Any]:
        """The batch's messages of partitions this worker owns, each once, in offset order."""
        generation = app.consumer_generation_id
        assigned = None
        out = []
        for ev in batch:
            m = ev.message
            if m.generation_id is not None and m.generation_id != generation:
                # Read before a rebalance (left in a micro-batch): kept if the partition is
                # still this worker's, dropped if it has gone to another one or the rebalance
                # is not over (its seek to the committed offsets reads it again).
                if app.rebalancing:
                    continue
                if assigned is None:
                    assigned = {(tp.topic, tp.partition) for tp in app.consumer.assignment()}
                if (m.topic, m.partition) not in assigned:
                    continue
            if inorder.admit(m):
                out.append(ev)
        await seek_back()
        stats["duplicates_dropped"] = inorder.duplicates
        return out

    async def seek_back() -> None:
        for (topic, partition), offset in inorder.seeks():
            tp = TP(topic, partition)
            app.consumer._gap.pop(tp, None)  # Faust's "gap" there was never one: see InOrder
            await app.consumer.seek(tp, offset)

    @app.timer(1.0)
    async def seek_back_idle():
        await seek_back()

    async def dead_letters(dead: list[DeadLetter]) -> None:
        """To the dead-letter topic and the store (flushed: they are sent before their input is committed)."""
        stats["dead_letters"] += len(dead)
        rows = [d.to_dict(hasher) for d in dead]
        for row in rows:
            await dead_topic.send(value=orjson.dumps(row))
        if sink is not None:
            sink.write_dead_letters(rows)
            sink.flush()

    async def parse_batch(batch: list[Any]) -> list[Any]:
        """The parse stage over a micro-batch of raw records (aiokafka ``ConsumerRecord`` s, each
        partition's in offset order): events and dead letters sent on; returns the records that
        may now be committed (:class:`raw_consumer.RawConsumer` commits them after a flush)."""
        if stats["first_at"] is None:
            stats["first_at"], stats["first_cpu"] = time.time(), time.process_time()
        parts = EventParts()
        dead: list[DeadLetter] = []
        release: list[Any] = []
        for r in batch:
            order.received(r)
            headers = dict(r.headers) if r.headers else _NO_HEADERS
            key, holding = decoder.decode(r.topic, r.partition, r.offset, r.value, headers, parts, dead)
            if not holding:
                if key in held:
                    release.extend(held.pop(key))
                release.append(r)
            else:
                waiting = held[key]
                waiting.append(r)
                if len(waiting) >= MAX_HELD_MESSAGES:
                    release.extend(held.pop(key))
        for key in decoder.evicted:
            release.extend(held.pop(key, ()))
        decoder.evicted.clear()
        if dead:
            await dead_letters(dead)
        # As columns (streams/wire.py): the route keys' partitions read from the batch's
        # columns (each distinct key hashed once), each message its parts' columns.
        events = parts.batch()
        if sink is not None and len(events):
            # Stored here, whole, before the hop: the raw offsets behind them are committed only
            # after the store is flushed (``RawConsumer.commit``), and ids are by position, so a
            # raw batch read again writes the same rows.
            sink.write_events(events)
            stats["rows_received"] = dict(sink.rows_received_total)
        stats["parsed_events"] += len(events)
        for p, values in messages(events, k.partitions, EVENTS_PER_MESSAGE, "entity", entity_fields).items():
            for value in values:
                await events_topic.send(value=value, partition=p)
        if model_topic is not None:
            # The model key is None for every kind but requests and predictions; of those,
            # only the kinds the model-routed detectors read go (cut from the same batch: no
            # selection of them is made first).
            for p, values in messages(events, k.partitions, EVENTS_PER_MESSAGE, "model", model_fields,
                                      kinds=model_kinds).items():
                for value in values:
                    await model_topic.send(value=value, partition=p)
        ready = order.release_all(release)
        # Counted together, after the sends (the stats timer runs while they are awaited): a
        # reader never sees a batch's messages counted and what it holds not yet.
        stats["raw_messages"] += len(batch)
        stats["records"] = decoder.records
        stats["raw_held"] = len(order)
        return ready

    def forget_raw(gone: set[tuple[str, int]]) -> None:
        """Drop, unreleased, what the parse stage holds of revoked raw partitions (held
        messages and their parsers): their next owner reads and parses them again, whole."""
        order.forget(gone)
        decoder.forget(gone)
        for key in [key for key in held if (key[1], key[2]) in gone]:
            del held[key]
        stats["raw_held"] = len(order)

    @app.service
    class RawParse(RawConsumer):
        """The parse stage's consumer, started and stopped with the app."""

        def __init__(self, **kwargs: Any) -> None:
            super().__init__(app, names.raw_all, raw_group(k.group), k, parse_batch, forget_raw,
                             flush_store=sink.flush if sink is not None else None, **kwargs)
            app.ramparts_raw = self

    # Input of the detect agents is acknowledged only once the store has its outputs: rows are
    # buffered across micro-batches into inserts of thousands of rows (or about a second,
    # store.flush_interval_seconds), and the Kafka offsets behind them stay uncommitted until
    # that insert is done. A timer settles what an idle stream leaves buffered.
    acks = AckAfterFlush(sink)

    async def detect(stream, pipe: Pipeline, table: Any, counter: str, store_older: bool = False) -> None:
        """The body of a detect agent: ``pipe`` over ``stream``'s micro-batches, per partition.
        ``store_older``: store the events of messages a worker of an older version sent (it left
        them to its detect stage: ``wire.STORED_UPSTREAM_FROM``)."""
        async for batch in stream.noack_take(k.batch_max_events, within=k.batch_max_seconds):
            batch = await admitted(batch)
            by_partition: dict[int, list[EventBatch]] = {}
            undecodable: list[DeadLetter] = []
            for ev in batch:
                m = ev.message
                try:
                    got, version = decode_versioned(ev.value)
                except ValueError as exc:  # WireError, orjson's JSONDecodeError
                    undecodable.append(DeadLetter("events", f"{m.topic}:{m.partition}:{m.offset}", 1,
                                                  f"undecodable events message: {exc}", ev.value or b""))
                    continue
                if store_older and version < STORED_UPSTREAM_FROM and sink is not None and len(got):
                    sink.write_events(got)
                    stats["older_events_stored"] += len(got)
                got_p = by_partition.get(m.partition)
                if got_p is None:
                    got_p = by_partition[m.partition] = []
                got_p.append(got)
            if undecodable:
                await dead_letters(undecodable)
            for p, got in by_partition.items():
                events = got[0] if len(got) == 1 else EventBatch.concat(got)
                state = TableState(table)
                alerts = pipe.process_batch(events, state, scope=p)
                await state.write_back(p)
                stats[counter] += len(events)
                for a in alerts:
                    await alerts_topic.send(key=a["id"].encode(), value=alert_to_json(a))
                stats["alerts"] += len(alerts)
            stats["detector_errors"] = pipeline.stats.detector_errors + (
                model_pipeline.stats.detector_errors if model_pipeline is not None else 0)
            if sink is not None:
                stats["rows_received"] = dict(sink.rows_received_total)
            acks.add(stream, batch)
            await acks.settle()
            stats["batches"] += 1
            stats["last_at"], stats["last_cpu"] = time.time(), time.process_time()

    @app.agent(events_topic, name="detect")
    async def detect_agent(stream):
        await detect(stream, pipeline, state_table, "events", store_older=True)

    if model_topic is not None:
        @app.agent(model_topic, name="detect-model")
        async def detect_model_agent(stream):
            await detect(stream, model_pipeline, model_table, "model_events")

    @app.timer(0.25)
    async def settle_idle():
        await acks.settle()

    @app.on_partitions_revoked.connect
    async def on_revoked(sender: Any, revoked: set, **kwargs: Any) -> None:
        # Before the partitions go: what the detect agents have done is written and committed
        # (less for the next owner to redo). The raw topics are not Faust's: see RawConsumer.
        gone = {(tp.topic, tp.partition) for tp in revoked}
        inorder.forget(gone)
        pipeline.alerting.tracker.forget(p for t, p in gone if t == names.events)
        if model_pipeline is not None:
            model_pipeline.alerting.tracker.forget(p for t, p in gone if t == names.events_model)
        await acks.settle(force=True)
        await app.consumer.commit()

    return app


def _write_json_atomic(path: str, data: dict) -> None:
    tmp = f"{path}.tmp"
    with open(tmp, "wb") as f:
        f.write(orjson.dumps(data))
    os.replace(tmp, path)


def faust_worker(app: faust.App, loglevel: str = "warn") -> Any:
    """Faust's ``Worker`` for ``app``, without its start-up spinner.

    Faust draws the spinner from a log handler at DEBUG and sets the root logger to DEBUG for
    it (at any ``loglevel`` from warn up), so every debug call of aiokafka and Faust, several
    per message sent or fetched, built a ``LogRecord`` that the handlers then dropped, for the
    whole life of the worker (docs/benchmarks.md, sixth session). Without it the root logger
    is at ``loglevel``.
    """
    from faust.worker import Worker

    worker = Worker(app, loglevel=loglevel, quiet=True, redirect_stdouts=False)
    worker.spinner = None
    return worker


def run_worker(config, sink: Any | None = None, loglevel: str = "warn", stats_file: str | None = None,
               noop: bool = False, outbox: Any | None = None, deliverer: Any | None = None) -> None:
    """Run the worker until it is stopped (SIGTERM / Ctrl-C), then flush and close the store."""
    app = build_app(config, sink=sink, stats_file=stats_file, noop=noop, outbox=outbox, deliverer=deliverer)
    worker = faust_worker(app, loglevel)
    tune_gc()

    try:
        worker.execute_from_commandline()
    finally:
        if stats_file:
            _write_json_atomic(stats_file, app.ramparts_stats)
        if sink is not None:
            sink.close()
