"""The worker against a real Kafka-compatible broker (Tansu), with real chdb stores.

Shipped records end up as events and alerts in the store; the worker and replay agree; two
workers split the partitions and the survivor takes over; a worker killed with SIGKILL
mid-stream and restarted loses nothing and duplicates no row.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import orjson
import pytest

from ramparts.streams.replay import Progress, replay
from ramparts.streams.simulate import simulate

from .harness import Stack, open_store, replay_alerts, scenario_files, stored_alerts

REPO = Path(__file__).resolve().parents[2]
TABLE_OF_KIND = {"request": "requests", "prediction": "predictions", "runtime": "runtime", "gpu": "gpu",
                 "workload": "workloads"}


@pytest.fixture(scope="module")
def day1(tmp_path_factory):
    out = tmp_path_factory.mktemp("day1") / "mix.json"
    simulate("mix", str(out), seed=7, start="2026-11-20T10:00:00Z")
    return scenario_files(out)


@pytest.fixture(scope="module")
def day2(tmp_path_factory):
    out = tmp_path_factory.mktemp("day2") / "mix.json"
    simulate("mix", str(out), seed=8, start="2026-11-21T10:00:00Z")
    return scenario_files(out)


@pytest.fixture
def stack(broker, tmp_path):
    s = Stack(broker.bootstrap, tmp_path)
    yield s
    s.stop_all()


def _events_by_table(pipeline_stats) -> dict[str, int]:
    return {TABLE_OF_KIND[k]: n for k, n in pipeline_stats.events_by_kind.items()}


def _replay_with_kinds(stack, files, tmp):
    from ramparts.streams.pipeline import Pipeline

    p = Pipeline.from_config(stack.config)
    r = replay(files, config=stack.config, progress=Progress(None, enabled=False),
               dead_letter_path=str(tmp / "replay-dead.jsonl"), pipeline=p)
    return r, _events_by_table(p.stats)


def _table_counts(store_path) -> dict[str, int]:
    store = open_store(store_path)
    try:
        return {t: n for t, n in store.counts().items() if t in TABLE_OF_KIND.values()}
    finally:
        store.close()


def test_shipped_records_become_stored_events_and_the_same_alerts_as_replay(stack, day1, tmp_path):
    report, expected = _replay_with_kinds(stack, day1, tmp_path)
    assert report.alerts, "the scenario's attacks must raise alerts for this comparison to mean something"
    w = stack.worker("a").start()
    shipped = stack.ship(day1, alive=w.alive)
    assert shipped.messages < shipped.records / 100  # packed, many records per message
    assert stack.wait_consumed(alive=w.alive), w.log_tail()
    assert w.stop() == 0, w.log_tail()

    store = open_store(w.store)
    try:
        counts = store.counts()
        for table, n in expected.items():
            assert counts[table] == n, (table, counts)
        assert stored_alerts(store) == replay_alerts(report)
        assert counts.get("dead_letters", 0) == 0
    finally:
        store.close()


def test_single_record_messages_and_garbage_from_other_producers(stack, tmp_path):
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

    from ramparts.streams.decode import parse_bytes

    example = (REPO / "examples" / "envoy-ai-gateway.jsonl").read_bytes()
    records = [l for l in example.split(b"\n") if l.strip()]
    events, dead, _ = parse_bytes("envoy_json", example, config=stack.config)
    assert not dead
    garbage = b"\x00this is not a log line of any format\xff"

    async def produce_and_read_dead():
        producer = AIOKafkaProducer(bootstrap_servers=stack.bootstrap)
        await producer.start()
        try:
            for r in records:
                await producer.send_and_wait(stack.names.raw("gateway"), r)
            await producer.send_and_wait(stack.names.raw("gateway"), garbage)
        finally:
            await producer.stop()

    asyncio.run(produce_and_read_dead())
    w = stack.worker("single").start()
    assert stack.wait_consumed(alive=w.alive), w.log_tail()
    assert w.stop() == 0, w.log_tail()

    async def read_dead_topic():
        c = AIOKafkaConsumer(stack.names.deadletter, bootstrap_servers=stack.bootstrap,
                             auto_offset_reset="earliest", group_id=None)
        await c.start()
        try:
            got = []
            deadline = time.monotonic() + 20
            while not got and time.monotonic() < deadline:
                for recs in (await c.getmany(timeout_ms=500)).values():
                    got.extend(orjson.loads(r.value) for r in recs)
            return got
        finally:
            await c.stop()

    dead_msgs = asyncio.run(read_dead_topic())
    assert [d["reason"] for d in dead_msgs] == ["format not recognised"]
    store = open_store(w.store)
    try:
        assert store.counts()["requests"] == len(events)
        rows = store.query("SELECT reason, source FROM ramparts.dead_letters FINAL")
        assert [(r["reason"], r["source"]) for r in rows] == [("format not recognised", "unrecognised")]
    finally:
        store.close()


def test_two_workers_split_the_partitions_and_the_survivor_takes_over(stack, day1, day2, tmp_path):
    _, expected1 = _replay_with_kinds(stack, day1, tmp_path)
    _, expected2 = _replay_with_kinds(stack, day2, tmp_path)
    a = stack.worker("a").start()
    b = stack.worker("b").start()
    stack.ship(day1)
    assert stack.wait_consumed(alive=lambda: a.alive() and b.alive()), a.log_tail() + b.log_tail()
    a_day1 = a.stats()
    assert b.stop() == 0, b.log_tail()
    stack.ship(day2)
    assert stack.wait_consumed(alive=a.alive), a.log_tail()
    assert a.stop() == 0, a.log_tail()

    ca, cb = _table_counts(a.store), _table_counts(b.store)
    # Both detect agents had events of day 1 (a worker's store holds what its parse stage made:
    # the raw partitions it owned, perhaps not the gateway log's).
    assert a_day1["events"] > 0 and b.stats()["events"] > 0, "both workers must have owned partitions"
    for table in expected1:
        assert ca.get(table, 0) + cb.get(table, 0) == expected1[table] + expected2[table], table
    store = open_store(a.store)
    try:
        day2_requests = store.query("SELECT count() AS n FROM ramparts.requests FINAL "
                                    "WHERE ts >= toDateTime64('2026-11-21 00:00:00', 9, 'UTC')")[0]["n"]
    finally:
        store.close()
    assert int(day2_requests) == expected2["requests"], "the survivor must have taken every partition"


def test_a_worker_killed_mid_stream_and_restarted_loses_nothing_and_duplicates_nothing(stack, day1, day2,
                                                                                        tmp_path):
    import signal

    report, expected1 = _replay_with_kinds(stack, day1 + day2, tmp_path)
    w = stack.worker("k").start()
    stack.ship(day1, alive=w.alive)
    assert stack.wait_consumed(alive=w.alive), w.log_tail()
    rest = stack.ship_reference(day2, alive=w.alive)
    done_before = w.stats().get("events", 0)
    stack.ship(rest)
    deadline = time.monotonic() + 60
    while w.stats().get("events", 0) <= done_before and time.monotonic() < deadline:
        time.sleep(0.05)
    assert w.stats().get("events", 0) > done_before, "the worker never started on the second half"
    w.stop(signal.SIGKILL)

    w2 = stack.worker("k")  # the same store directory
    w2.start()
    assert stack.wait_consumed(alive=w2.alive), w2.log_tail()
    assert w2.stop() == 0, w2.log_tail()

    store = open_store(w2.store)
    try:
        counts = store.counts()
        for table, n in expected1.items():
            assert counts[table] == n, (table, counts)
            distinct = store.query(f"SELECT uniqExact(id) AS n FROM ramparts.{table}")[0]["n"]
            assert int(distinct) == n, table
        # The same incidents (detector and entity). Their ids and counts may differ: the redone
        # tail is counted twice in detector state (docs/streaming.md, "Guarantees"). The
        # extraction detector is left out of this comparison: its model population lives in
        # the process and a restarted worker learns it again (docs/extraction.md, "Known
        # defects"), so its judgements after a restart differ from replay's by design.
        def restart_consistent(alerts):
            return {a[1:3] for a in alerts if a[1] != "extraction.queries"}

        stored, replayed = restart_consistent(stored_alerts(store)), restart_consistent(replay_alerts(report))
        # On a mismatch, the stored incidents' own words say why (a CI run once raised a
        # gpu.unauthorized alert here that replay does not: see test_log_ends.py).
        differing = [r for r in store.query("SELECT detector, entity_id, summary FROM ramparts.alerts FINAL")
                     if (r["detector"], r["entity_id"]) in stored ^ replayed]
        assert stored == replayed, (stored - replayed, replayed - stored, differing)
    finally:
        store.close()


def test_a_partition_handed_over_while_a_join_is_held_loses_none_of_the_held_records(stack, day1, tmp_path):
    # Audit records wait in the parser for their other stage, so their messages are not
    # acknowledged; a Falco file on the same partition is acknowledged behind them. A second
    # worker joins and the first one stops: the second takes the partition from its committed
    # offset, which must not have passed the held messages (Faust, left alone, commits past
    # them on a partition with no commit yet), or the held audit records are never stored.
    from aiokafka import AIOKafkaProducer

    from ramparts.streams.topics import HEADER_END, HEADER_FORMAT, HEADER_ORIGIN

    audit_file = next(f for f in day1 if ".k8s_audit." in f)
    falco_file = next(f for f in day1 if ".falco." in f)
    _, expected = _replay_with_kinds(stack, [audit_file, falco_file], tmp_path)
    lines = [l for l in Path(audit_file).read_bytes().split(b"\n") if l.strip()]
    cut = len(lines) // 2 | 1  # the simulated log alternates stages: this cut splits a pair
    chunks = [b"\n".join(lines[i:min(i + 50, cut)]) for i in range(0, cut, 50)]
    half = len(chunks)
    chunks += [b"\n".join(lines[i:i + 50]) for i in range(cut, len(lines), 50)]
    topic = stack.names.raw("runtime")

    def headers(fmt: bytes, origin: bytes, end: bool):
        h = [(HEADER_FORMAT, fmt), (HEADER_ORIGIN, origin)]
        return h + [(HEADER_END, b"1")] if end else h

    async def produce(messages):
        producer = AIOKafkaProducer(bootstrap_servers=stack.bootstrap)
        await producer.start()
        try:
            for value, h in messages:
                await producer.send_and_wait(topic, value, partition=0, headers=h)
        finally:
            await producer.stop()

    first = [(c, headers(b"k8s_audit", b"audit.log", False)) for c in chunks[:half]]
    first.append((Path(falco_file).read_bytes(), headers(b"falco", b"falco.log", True)))
    asyncio.run(produce(first))
    a = stack.worker("a").start()
    deadline = time.monotonic() + 60
    while a.stats().get("raw_messages", 0) < len(first) and time.monotonic() < deadline and a.alive():
        time.sleep(0.1)
    assert a.stats().get("raw_messages", 0) == len(first), a.log_tail()
    assert a.stats().get("raw_held", 0) > 0, "the test needs audit messages held for a join"

    b = stack.worker("b").start()
    deadline = time.monotonic() + 30
    while not b.stats() and time.monotonic() < deadline:  # b's app is up and joining
        time.sleep(0.1)
    assert a.stop() == 0, a.log_tail()  # b must take the partition from where a committed
    asyncio.run(produce([(c, headers(b"k8s_audit", b"audit.log", i == len(chunks) - 1))
                         for i, c in enumerate(chunks[half:], start=half)]))
    assert stack.wait_consumed(alive=b.alive), b.log_tail()
    assert b.stop() == 0, b.log_tail()

    ids: set[str] = set()
    for w in (a, b):
        store = open_store(w.store)
        try:
            rows = store.query("SELECT id FROM ramparts.runtime FINAL")
        finally:
            store.close()
        ids.update(r["id"] for r in rows)
    assert len(ids) == expected["runtime"]


def test_events_messages_of_the_old_format_are_read_and_undecodable_ones_go_to_the_dead_letters(stack):
    """A topic may hold messages of older workers after an upgrade (version 1: arrays of event
    dicts; version 3: columns with the ids as texts). Their events are detected and stored here,
    since the worker that sent them left storing them to its detect stage; a version-4 message's
    events are detected but not stored again (its parse stage stored them). What no version reads
    goes to the dead letters, and the agent goes on."""
    from aiokafka import AIOKafkaProducer

    from ramparts.streams import wire
    from ramparts.streams.decode import make_parser, parse_bytes

    example = (REPO / "examples" / "envoy-ai-gateway.jsonl").read_bytes()

    def parsed(origin: str):
        parser = make_parser("envoy_json", stack.config)
        parser.stamp_ids = True
        events, dead, _ = parse_bytes(parser, example, origin=origin)
        assert events and not dead
        return events

    v1, v3, v4 = parsed("old-v1"), parsed("old-v3"), parsed("new-v4")
    v3_doc = orjson.loads(wire.encode(v3))
    v3_doc["v"] = 3
    for part in v3_doc["parts"]:
        part.pop("types", None)  # version 5's vouch of the columns' types: no version-3 worker wrote one
    v3_message = orjson.dumps(v3_doc)
    assert b'"lines"' not in v3_message and wire.decode_versioned(v3_message)[1] == 3
    v4_message = wire.encode(v4)  # (of this version: stored upstream, as from version 4 on)
    assert wire.decode_versioned(v4_message)[1] == wire.VERSION >= wire.STORED_UPSTREAM_FROM
    bad = [b"\x00not json", b'{"v": 99, "parts": []}']

    async def produce():
        producer = AIOKafkaProducer(bootstrap_servers=stack.bootstrap)
        await producer.start()
        try:
            for value in (bad[0], orjson.dumps(v1.events), bad[1], v3_message, v4_message):
                await producer.send_and_wait(stack.names.events, value, partition=0)
        finally:
            await producer.stop()

    asyncio.run(produce())
    w = stack.worker("old").start()
    assert stack.wait_consumed(alive=w.alive), w.log_tail()
    assert w.stop() == 0, w.log_tail()
    stats = w.stats()
    assert stats["events"] == len(v1) + len(v3) + len(v4)
    assert stats["older_events_stored"] == len(v1) + len(v3)
    store = open_store(w.store)
    try:
        ids = {r["id"] for r in store.query("SELECT id FROM ramparts.requests FINAL")}
        assert ids == set(v1.values("id")) | set(v3.values("id")), sorted(ids)[:5]
        rows = store.query("SELECT source, file, reason FROM ramparts.dead_letters FINAL ORDER BY file")
        assert [(r["source"], r["file"]) for r in rows] == [("events", f"{stack.names.events}:0:0"),
                                                           ("events", f"{stack.names.events}:0:2")]
        assert all(r["reason"].startswith("undecodable events message") for r in rows)
    finally:
        store.close()
