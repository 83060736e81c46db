"""The parse agent's acknowledgement order: a held message is never skipped by a commit."""

from __future__ import annotations

import random
from types import SimpleNamespace

import pytest

from ramparts.streams.app import AckOrder


def message(topic: str, partition: int, offset: int):
    # What AckOrder reads of a Faust event: its message's topic, partition and offset.
    return SimpleNamespace(message=SimpleNamespace(topic=topic, partition=partition, offset=offset))


def offsets(evs):
    return [e.message.offset for e in evs]


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
