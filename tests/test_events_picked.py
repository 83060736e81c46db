"""EventBatch.values_where, which works out where the picked events lie once per batch for every
field, against the events' own values on random batches of several parts (columns and lists of
dicts), with and without a batch order, each field read in turn."""

import random

from ramparts.detectors.kind_columns import kind_values
from ramparts.events import EventBatch

KINDS = ("request", "prediction", "gpu", None)
FIELDS = ("kind", "ts", "model", "n", "absent")


def _part(rng: random.Random, start: int) -> EventBatch:
    n = rng.randint(0, 12)
    one_kind = rng.random() < 0.6
    kind = rng.choice(KINDS)
    events = []
    for i in range(n):
        e = {"kind": kind if one_kind else rng.choice(KINDS), "ts": start + i, "n": rng.choice([1, 2.5, None, "x"])}
        if rng.random() < 0.8:
            e["model"] = rng.choice(["m", "n", None])
        events.append(e)
    if rng.random() < 0.5 and events and len({tuple(e) for e in events}) == 1:
        fields = tuple(events[0])
        return EventBatch.from_columns(fields, {f: [e[f] for e in events] for f in fields}, n)
    return EventBatch(events)


def _batch(rng: random.Random) -> EventBatch:
    b = EventBatch.concat([_part(rng, 100 * k) for k in range(rng.randint(1, 6))])
    r = rng.random()
    if r < 0.3 and len(b):
        order = list(range(len(b)))
        rng.shuffle(order)
        b = b.select(order[:rng.randint(0, len(b))])
    elif r < 0.5 and len(b):
        b = b.select(sorted(rng.sample(range(len(b)), rng.randint(0, len(b)))))
    return b


def test_values_where_reads_every_field_of_the_picked_events():
    rng = random.Random(20261124)
    multi = 0
    for _ in range(600):
        seed = rng.random()
        wanted = [rng.choice(KINDS) for _ in range(rng.randint(1, 2))]
        wanted = tuple(dict.fromkeys(wanted))
        fields = list(FIELDS)
        rng.shuffle(fields)
        a, b = _batch(random.Random(seed)), _batch(random.Random(seed))
        rows = [e for e in a.events if e.get("kind") in wanted]
        expected = {f: [e.get(f) for e in rows] for f in fields}
        for f in fields:
            assert b.values_where(f, "kind", *wanted) == expected[f], (seed, wanted, f)
        plan = b._shared.get(("values_where", "kind", wanted))
        multi += plan is not None and len(plan) > 1
    assert multi > 100  # the gathers over several parts were exercised


def test_kind_values_reads_values_where():
    columns = EventBatch.from_columns(("kind", "model"), {"kind": ["request"] * 3, "model": ["a", "b", "c"]})
    dicts = EventBatch([{"kind": "gpu"}, {"kind": "request", "model": "d"}])
    b = EventBatch.concat([columns, dicts]).select([4, 3, 2, 0])
    got = kind_values(b, ("request",), "model")
    assert got == ["d", "c", "a"]
    assert b.values_where("model", "kind", "request") is got


def test_a_batch_in_its_parts_order_plans_its_picks_as_any_batch_does():
    # The worker's batches (a concat of messages, no order) take a one-pass plan (_plan_in_order):
    # the same parts, indices and positions as the general plan of the same events in an order.
    rng = random.Random(20261125)
    several = 0
    for _ in range(400):
        b = EventBatch.concat([_part(rng, 100 * k) for k in range(rng.randint(1, 8))])
        if not len(b):
            continue
        idx = sorted(rng.sample(range(len(b)), rng.randint(1, len(b))))
        ordered = b.select(list(range(len(b))))  # the same parts, with an order: the general plan
        assert b._olist is None and ordered._olist is not None
        got, want = b._plan(idx), ordered._plan(idx)
        assert [(id(p), list(local), None if pos is None else pos.tolist()) for p, local, pos in got] == \
               [(id(p), list(local), None if pos is None else pos.tolist()) for p, local, pos in want]
        assert [type(local) for _, local, _ in got] == [type(local) for _, local, _ in want]  # ranges stay ranges
        several += len(got) > 1
    assert several > 100
