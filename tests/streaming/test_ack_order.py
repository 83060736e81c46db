"""The parse stage's commit order: a held message is never skipped by a commit."""

from __future__ import annotations

import random
from types import SimpleNamespace

import pytest

from ramparts.streams.app import AckOrder


def message(topic: str, partition: int, offset: int):
    # What AckOrder reads of a raw record (aiokafka's ConsumerRecord): topic, partition, offset.
    return SimpleNamespace(topic=topic, partition=partition, offset=offset)


def offsets(evs):
    return [e.offset for e in evs]


def test_a_later_message_waits_for_a_held_earlier_one_of_its_partition():
    order = AckOrder()
    held, falco, other = message("raw", 0, 5), message("raw", 0, 6), message("raw", 1, 6)
    for ev in (held, falco, other):
        order.received(ev)
    assert order.release(falco) == []  # 5 is still held: acknowledging 6 would commit past it
    assert order.release(other) == [other]  # another partition is not held up
    assert offsets(order.release(held)) == [5, 6]
    assert len(order) == 0


@pytest.mark.parametrize("seed", range(5))
def test_released_messages_always_form_a_prefix_of_what_was_read(seed):
    rng = random.Random(seed)
    order = AckOrder()
    evs = [message("raw", 0, i) for i in range(200)]
    for ev in evs:
        order.received(ev)
    acked: list[int] = []
    for ev in rng.sample(evs, len(evs)):
        acked.extend(offsets(order.release(ev)))
        assert acked == list(range(len(acked)))
    assert acked == list(range(200))


@pytest.mark.parametrize("seed", range(5))
def test_release_all_is_release_of_each_in_turn(seed):
    # The parse stage releases a micro-batch's messages at once: same messages, same order as
    # one release per message, over several partitions and with messages held across batches.
    rng = random.Random(seed)
    one, many = AckOrder(), AckOrder()
    evs = [message("raw", rng.randrange(3), i) for i in range(300)]
    for ev in evs:
        one.received(ev)
        many.received(ev)
    pending = rng.sample(evs, len(evs))
    while pending:
        n = rng.randrange(1, 40)
        batch, pending = pending[:n], pending[n:]
        expected = [r for ev in batch for r in one.release(ev)]
        assert many.release_all(batch) == expected
    assert len(one) == len(many) == 0


def test_a_revoked_partition_is_forgotten_and_a_stale_release_is_ignored():
    order = AckOrder()
    held, later = message("raw", 2, 10), message("raw", 2, 11)
    order.received(held)
    order.received(later)
    order.forget({("raw", 2)})
    assert len(order) == 0
    assert order.release(held) == [] and order.release(later) == []
    # The partition comes back and the same offsets are read again: the old events stay stale.
    again = message("raw", 2, 10)
    order.received(again)
    assert order.release(held) == []
    assert order.release(again) == [again]


# -- InOrder: each partition's messages once and in offset order -------------------------------------
class Log:
    def __init__(self):
        self.warnings = []

    def warning(self, msg, *args):
        self.warnings.append(msg % args)

    error = warning


def test_in_order_starts_at_the_committed_offset_and_drops_what_it_has_seen():
    from ramparts.streams.app import InOrder

    log = Log()
    gate = InOrder(lambda tp: {("raw", 0): 10}.get(tp), log)
    m = lambda p, o: message("raw", p, o)
    assert [gate.admit(m(0, o)) for o in (10, 11, 12)] == [True, True, True]
    assert gate.admit(m(0, 11)) is False and gate.duplicates == 1  # delivered again after a seek
    assert gate.admit(m(1, 40)) is True  # no commit yet on partition 1: its first message starts it
    assert gate.seeks() == [] and log.warnings == []


def test_a_skipped_offset_is_never_admitted_past_and_the_partition_is_sought_back_once():
    from ramparts.streams.app import InOrder

    log = Log()
    gate = InOrder(lambda tp: 10, log)
    m = lambda o: message("raw", 0, o)
    assert gate.admit(m(10)) is True
    # Faust handed over 14 (read before a rebalance, delivered after its seek): 11-13 never came.
    assert gate.admit(m(14)) is False and gate.admit(m(15)) is False
    assert gate.seeks() == [(("raw", 0), 11)]
    assert gate.seeks() == []  # asked once: the seek is under way
    assert len(log.warnings) == 1 and "seeking back to 11" in log.warnings[0]
    assert gate.holes == [{"topic": "raw", "partition": 0, "expected": 11, "got": 14, "lost": False}]
    assert [gate.admit(m(o)) for o in (11, 12, 13, 14, 15)] == [True] * 5  # the seek's delivery
    assert gate.admit(m(14)) is False  # a late copy of the first delivery


def test_a_revoked_partition_starts_again_from_its_committed_offset():
    from ramparts.streams.app import InOrder

    committed = {("raw", 0): 10}
    gate = InOrder(lambda tp: committed.get(tp), Log())
    m = lambda o: message("raw", 0, o)
    assert all(gate.admit(m(o)) for o in range(10, 20))
    committed[("raw", 0)] = 15  # the new assignment's committed offset (15..19 were held, not acked)
    gate.forget({("raw", 0)})
    assert gate.admit(m(15)) is True


def test_a_hole_no_seek_fills_is_given_up_and_logged_as_lost():
    from ramparts.streams.app import InOrder

    now = [100.0]
    log = Log()
    gate = InOrder(lambda tp: 10, log, clock=lambda: now[0])  # committed 10, but retention kept 25 on
    m = lambda o: message("raw", 0, o)
    assert gate.admit(m(25)) is False and gate.seeks() == [(("raw", 0), 10)]
    now[0] += 5
    assert gate.admit(m(25)) is False  # the seek lands on 25 again: still within the wait
    now[0] += 6
    assert gate.admit(m(25)) is True  # not in the log any more: go on from 25
    assert gate.admit(m(26)) is True
    assert gate.holes[-1] == {"topic": "raw", "partition": 0, "expected": 10, "got": 25, "lost": True}
    assert "not in the log any more" in log.warnings[-1]
