"""The parse stage's own consumer of the raw topics (streams/raw_consumer.py), against Tansu.

Its group, ``<kafka.group>-raw``, commits a partition only up to the first message a parser
still holds for a join, reaches the end of the partition once the join is released, and a
revoke makes whoever owns the partition next read the held messages again, losing none.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from ramparts.streams.simulate import simulate
from ramparts.streams.topics import HEADER_END, HEADER_FORMAT, HEADER_ORIGIN, raw_group

from .harness import Stack, open_store, scenario_files


@pytest.fixture(scope="module")
def audit_file(tmp_path_factory):
    out = tmp_path_factory.mktemp("day") / "mix.json"
    simulate("mix", str(out), seed=7, start="2026-11-20T10:00:00Z")
    return next(f for f in scenario_files(out) if ".k8s_audit." in f)


@pytest.fixture
def stack(broker, tmp_path):
    s = Stack(broker.bootstrap, tmp_path)
    yield s
    s.stop_all()


def _messages(audit_file: str):
    """The audit log in messages of 50 lines, cut so that message ``half - 1`` ends with the first
    stage of a request whose second stage opens message ``half``: its parser holds it (and so
    the message) until then. Returns (messages before the cut, messages after it)."""
    lines = [line for line in Path(audit_file).read_bytes().split(b"\n") if line.strip()]
    cut = len(lines) // 2 | 1  # the simulated log alternates stages: this cut splits a pair
    before = [b"\n".join(lines[i:min(i + 50, cut)]) for i in range(0, cut, 50)]
    after = [b"\n".join(lines[i:i + 50]) for i in range(cut, len(lines), 50)]
    return before, after


def _produce(stack, values: list[bytes], end_last: bool) -> None:
    from aiokafka import AIOKafkaProducer

    async def run():
        producer = AIOKafkaProducer(bootstrap_servers=stack.bootstrap)
        await producer.start()
        try:
            for i, value in enumerate(values):
                headers = [(HEADER_FORMAT, b"k8s_audit"), (HEADER_ORIGIN, b"audit.log")]
                if end_last and i == len(values) - 1:
                    headers.append((HEADER_END, b"1"))
                await producer.send_and_wait(stack.names.raw("runtime"), value, partition=0, headers=headers)
        finally:
            await producer.stop()

    asyncio.run(run())


def _committed(stack, group: str, topic: str, partition: int = 0) -> int | None:
    from aiokafka import AIOKafkaConsumer
    from aiokafka.structs import TopicPartition

    async def run():
        probe = AIOKafkaConsumer(bootstrap_servers=stack.bootstrap, group_id=group, enable_auto_commit=False)
        await probe.start()
        try:
            return await probe.committed(TopicPartition(topic, partition))
        finally:
            await probe.stop()

    return asyncio.run(run())


def _wait(predicate, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return predicate()


def _runtime_ids(worker) -> set[str]:
    store = open_store(worker.store)
    try:
        return {r["id"] for r in store.query("SELECT id FROM ramparts.runtime FINAL")}
    finally:
        store.close()


def test_the_raw_group_commits_up_to_a_held_join_and_to_the_end_once_it_is_released(stack, audit_file):
    before, after = _messages(audit_file)
    held_at = len(before) - 1  # the offset of the message whose last record waits for its pair
    topic = stack.names.raw("runtime")
    group = raw_group(stack.config.kafka.group)
    _produce(stack, before, end_last=False)
    a = stack.worker("a").start()
    assert _wait(lambda: a.stats().get("raw_messages", 0) == len(before) or not a.alive(), 60), a.log_tail()
    assert _wait(lambda: a.stats().get("raw_held") == 1, 5), a.stats()
    # Everything before the held message is committed (an idle fetch commits), nothing past it.
    assert _wait(lambda: _committed(stack, group, topic) == held_at, 10), _committed(stack, group, topic)
    time.sleep(1.5)  # more than a commit interval: still not past it
    assert _committed(stack, group, topic) == held_at
    # The raw topics are not the Faust group's: it commits nothing there.
    assert _committed(stack, stack.config.kafka.group, topic) is None

    _produce(stack, after, end_last=True)
    assert stack.wait_consumed(alive=a.alive), a.log_tail()
    assert _committed(stack, group, topic) == len(before) + len(after)
    assert _wait(lambda: a.stats()["raw_held"] == 0, 5)
    assert a.stop() == 0, a.log_tail()


def test_a_revoke_drops_held_messages_and_the_next_owner_reads_them_again(stack, audit_file, tmp_path):
    # Two live workers: when the second joins, the first has its partitions revoked while it
    # holds a message for a join. It must drop it, uncommitted, with the parser (whichever
    # worker owns partition 0 next reads it again from the committed offset and parses the pair
    # whole); every audit event is stored, by one worker or the other, none lost.
    from ramparts.streams.replay import Progress, replay

    before, after = _messages(audit_file)
    _produce(stack, before, end_last=False)
    a = stack.worker("a").start()
    assert _wait(lambda: a.stats().get("raw_messages", 0) == len(before) or not a.alive(), 60), a.log_tail()
    assert _wait(lambda: a.stats().get("raw_held") == 1, 5), a.stats()

    b = stack.worker("b").start()
    # After the rebalance the held message (and nothing before it) is read again by its new owner.
    assert _wait(lambda: a.stats().get("raw_messages", 0) + b.stats().get("raw_messages", 0) > len(before), 60), (
        a.log_tail(), b.log_tail())
    assert a.stats().get("raw_held", 0) + b.stats().get("raw_held", 0) == 1
    _produce(stack, after, end_last=True)
    assert stack.wait_consumed(alive=lambda: a.alive() and b.alive()), (a.log_tail(), b.log_tail())
    assert _wait(lambda: a.stats()["raw_held"] == b.stats()["raw_held"] == 0, 5)
    read = a.stats()["raw_messages"] + b.stats()["raw_messages"]
    assert a.stop() == 0, a.log_tail()
    assert b.stop() == 0, b.log_tail()
    # Read again from the committed offset, so from the held message on; never from the start.
    assert len(before) + len(after) < read < 2 * len(before) + len(after)

    result = replay([audit_file], config=stack.config, progress=Progress(None, enabled=False),
                    dead_letter_path=str(tmp_path / "dead.jsonl"))
    assert len(_runtime_ids(a) | _runtime_ids(b)) == result.events


# Run in the worker before it starts: the parse stage fails on one message, as a bug would.
FAIL_ON_BOOM = """
from ramparts.streams import app as _app
_decode = _app.RawDecoder.decode
def decode(self, topic, partition, offset, value, *args):
    if value == b"boom":
        raise RuntimeError("the parse stage failed on purpose")
    return _decode(self, topic, partition, offset, value, *args)
_app.RawDecoder.decode = decode
"""


def test_a_failing_parse_stage_stops_the_worker_visibly_and_commits_nothing_past_the_failure(broker, tmp_path,
                                                                                               audit_file):
    stack = Stack(broker.bootstrap, tmp_path, prelude=FAIL_ON_BOOM)
    try:
        before, _ = _messages(audit_file)
        good = before[:3]  # whole pairs: nothing held
        _produce(stack, [*good, b"boom"], end_last=False)
        w = stack.worker("a").start()
        assert _wait(lambda: not w.alive(), 60), "the worker went on without its parse stage"
        code = w.stop()
        log = w.log.read_text(errors="replace")
        assert code != 0 and "the raw topics' consumer failed" in log, log[-3000:]
        committed = _committed(stack, raw_group(stack.config.kafka.group), stack.names.raw("runtime"))
        assert committed is None or committed <= len(good)  # never past the message that failed
    finally:
        stack.stop_all()


def test_raw_messages_larger_than_the_fetch_bound_are_each_read_whole(broker, tmp_path, audit_file):
    # kafka.raw_fetch_partition_bytes bounds what one fetch brings of a partition (a backlog's
    # micro-batch); a message over the bound still comes whole, one per fetch, and the join
    # across messages still pairs: every audit event is stored, and the group commits to the end.
    from ramparts.streams.replay import Progress, replay

    stack = Stack(broker.bootstrap, tmp_path, env={"RAMPARTS_KAFKA__RAW_FETCH_PARTITION_BYTES": "1024"})
    try:
        assert stack.config.kafka.raw_fetch_partition_bytes == 1024
        before, after = _messages(audit_file)
        assert min(len(v) for v in before + after) > 1024
        _produce(stack, before + after, end_last=True)
        a = stack.worker("a").start()
        assert stack.wait_consumed(alive=a.alive), a.log_tail()
        assert _committed(stack, raw_group(stack.config.kafka.group), stack.names.raw("runtime")) == (
            len(before) + len(after))
        assert _wait(lambda: a.stats().get("raw_messages") == len(before) + len(after), 5), a.stats()
        assert a.stop() == 0, a.log_tail()
        result = replay([audit_file], config=stack.config, progress=Progress(None, enabled=False),
                        dead_letter_path=str(tmp_path / "dead.jsonl"))
        assert len(_runtime_ids(a)) == result.events
    finally:
        stack.stop_all()


# Run in the worker before it starts: it dies (as by SIGKILL: no clean-up) right after its first
# flush of the store, before the raw offsets behind those rows are committed.
DIE_AFTER_THE_STORE = """
import os
from ramparts.streams import raw_consumer as _rc
_init = _rc.RawConsumer.__init__
def __init__(self, *args, **kwargs):
    _init(self, *args, **kwargs)
    flush = self.flush_store
    def flush_then_die():
        flush()
        os._exit(9)
    self.flush_store = flush_then_die
_rc.RawConsumer.__init__ = __init__
"""


def test_a_worker_killed_between_storing_events_and_committing_them_loses_and_duplicates_nothing(broker, tmp_path,
                                                                                                  audit_file):
    # The parse stage stores the events it makes and commits the raw offsets behind them only
    # after the store's flush. Killed in between, the rows are in the store and the offsets not
    # committed: the next worker parses those messages again and writes the same rows (ids by
    # position), which replace the first ones.
    from ramparts.streams.replay import Progress, replay

    dying = Stack(broker.bootstrap, tmp_path, prelude=DIE_AFTER_THE_STORE)
    before, after = _messages(audit_file)
    _produce(dying, before + after, end_last=True)
    topic, group = dying.names.raw("runtime"), raw_group(dying.config.kafka.group)
    w = dying.worker("k").start()
    assert _wait(lambda: not w.alive(), 60), "the worker did not reach its first commit"
    assert w.stop() == 9, w.log_tail()
    assert _committed(dying, group, topic) is None  # nothing committed
    stored_first = _runtime_ids(w)
    assert stored_first  # but rows stored

    dying.prelude = None  # the same topics, group and store, without the fault
    w2 = dying.worker("k").start()
    try:
        assert dying.wait_consumed(alive=w2.alive), w2.log_tail()
        assert w2.stop() == 0, w2.log_tail()
    finally:
        dying.stop_all()
    assert _committed(dying, group, topic) == len(before) + len(after)
    result = replay([audit_file], config=dying.config, progress=Progress(None, enabled=False),
                    dead_letter_path=str(tmp_path / "dead.jsonl"))
    store = open_store(w2.store)
    try:
        rows = store.query("SELECT count() AS n, uniqExact(id) AS ids FROM ramparts.runtime FINAL")[0]
    finally:
        store.close()
    assert int(rows["n"]) == int(rows["ids"]) == result.events
    assert stored_first <= _runtime_ids(w2)
