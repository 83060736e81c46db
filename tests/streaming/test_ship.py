"""``ramparts ship`` against a real Kafka-compatible broker (Tansu), read back with aiokafka.

Each test ships under its own topic prefix on one broker for the module. Reading back waits
in bounded loops for the records it expects; nothing asserts on time.
"""

from __future__ import annotations

import asyncio
import itertools
import os
from pathlib import Path

import pytest

from ramparts.config import load_config
from ramparts.errors import RampartsError
from ramparts.streams.broker import EmbeddedBroker
from ramparts.streams.ship import ship_files
from ramparts.streams.topics import HEADER_END, HEADER_FORMAT, HEADER_FRAMING, HEADER_ORIGIN, create_topics

from .harness import HASH_KEY

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "examples"
_prefixes = itertools.count(1)
ROUNDS = 150  # read attempts of at most 0.2 s each before a test gives up waiting


@pytest.fixture
def make_config(broker):
    def make(**kafka):
        env = {"RAMPARTS_HASH_KEY": HASH_KEY, "RAMPARTS_KAFKA__BOOTSTRAP": broker.bootstrap,
               "RAMPARTS_KAFKA__TOPIC_PREFIX": f"ship{next(_prefixes)}-{os.getpid()}",
               "RAMPARTS_KAFKA__PARTITIONS": "3"}
        env.update({f"RAMPARTS_KAFKA__{k.upper()}": str(v) for k, v in kafka.items()})
        return load_config(None, env=env)
    return make


class Reader:
    """An aiokafka consumer without a group over some topics, from their start."""

    def __init__(self, config, topics: list[str]):
        self.config, self.topics = config, topics
        self.messages: list = []

    async def __aenter__(self):
        from aiokafka import AIOKafkaConsumer

        k = self.config.kafka
        await create_topics(k.bootstrap, self.topics, k.partitions)
        self.consumer = AIOKafkaConsumer(*self.topics, bootstrap_servers=k.bootstrap, group_id=None,
                                         auto_offset_reset="earliest", enable_auto_commit=False)
        await self.consumer.start()
        return self

    async def __aexit__(self, *exc):
        await self.consumer.stop()

    async def until(self, done) -> list:
        for _ in range(ROUNDS):
            if done(self.messages):
                return self.messages
            for msgs in (await self.consumer.getmany(timeout_ms=200)).values():
                self.messages.extend(msgs)
        raise AssertionError(f"gave up waiting; have {len(self.messages)} messages: {self.records()[-5:]}")

    def records(self) -> list[bytes]:
        return [r for m in self.messages for r in (m.value or b"").split(b"\n") if r]


def headers(m) -> dict[str, bytes]:
    return dict(m.headers or ())


def ship(config, paths, **kw):
    return asyncio.run(ship_files(config, [str(p) for p in paths], **kw))


def read(config, topics, n_messages):
    async def go():
        async with Reader(config, topics) as r:
            return await r.until(lambda ms: len(ms) >= n_messages)
    return asyncio.run(go())


def lines_file(tmp_path, name, n, blank_every=0, crlf=False) -> tuple[Path, list[bytes]]:
    """An Envoy AI Gateway JSON log of n records (the example's lines, repeated and numbered)."""
    base = [l for l in (EXAMPLES / "envoy-ai-gateway.jsonl").read_bytes().split(b"\n") if l.strip()]
    records = [base[i % len(base)].replace(b"{", b'{"n":%d,' % i, 1) for i in range(n)]
    out = []
    for i, r in enumerate(records):
        out.append(r)
        if blank_every and i % blank_every == 0:
            out.append(b"   ")
    path = tmp_path / name
    path.write_bytes((b"\r\n" if crlf else b"\n").join(out) + b"\n")
    return path, records


def test_records_are_packed_up_to_ship_max_records_with_format_origin_and_one_key(make_config, tmp_path):
    config = make_config(ship_max_records=10)
    path, records = lines_file(tmp_path, "gw.log", 25, blank_every=4, crlf=True)
    report = ship(config, [path])
    assert (report.messages, report.records) == (3, 25)
    assert report.files == {str(path): ("envoy_json", 25)}
    msgs = read(config, [config.kafka.topic_prefix + ".raw.gateway"], 3)
    assert len(msgs) == 3
    assert [len(m.value.split(b"\n")) for m in msgs] == [10, 10, 5]
    assert [r for m in msgs for r in m.value.split(b"\n")] == records  # blanks gone, CR stripped, in order
    assert {m.key for m in msgs} == {b"gw.log"} and len({m.partition for m in msgs}) == 1
    for m in msgs:
        h = headers(m)
        assert h[HEADER_FORMAT] == b"envoy_json" and h[HEADER_ORIGIN] == b"gw.log"
        assert HEADER_FRAMING not in h
    assert [HEADER_END in headers(m) for m in msgs] == [False, False, True]


def test_a_file_that_fills_its_last_message_ends_with_an_empty_end_marker(make_config, tmp_path):
    config = make_config(ship_max_records=10)
    path, records = lines_file(tmp_path, "even.log", 20)
    ship(config, [path])
    msgs = read(config, [config.kafka.topic_prefix + ".raw.gateway"], 3)
    assert [len(m.value) > 0 for m in msgs] == [True, True, False]
    assert [HEADER_END in headers(m) for m in msgs] == [False, False, True]


def test_a_last_line_without_a_newline_is_shipped(make_config, tmp_path):
    config = make_config()
    path, records = lines_file(tmp_path, "cut.log", 3)
    path.write_bytes(path.read_bytes().rstrip(b"\n"))
    ship(config, [path])
    (m,) = read(config, [config.kafka.topic_prefix + ".raw.gateway"], 1)
    assert m.value.split(b"\n") == records and HEADER_END in headers(m)


def test_each_family_goes_to_its_raw_topic_and_a_pod_list_is_one_document(make_config, tmp_path):
    config = make_config()
    pods, falco = EXAMPLES / "pods.json", EXAMPLES / "falco.jsonl"
    report = ship(config, [pods, falco])
    assert report.files[str(pods)] == ("k8s_pods", 1) and report.files[str(falco)] == ("falco", 2)
    p = config.kafka.topic_prefix
    (doc,) = read(config, [p + ".raw.workload"], 1)
    assert doc.value == pods.read_bytes()
    assert headers(doc) == {HEADER_FORMAT: b"k8s_pods", HEADER_ORIGIN: b"pods.json",
                            HEADER_FRAMING: b"document", HEADER_END: b"1"}
    (rt,) = read(config, [p + ".raw.runtime"], 1)
    assert headers(rt)[HEADER_FORMAT] == b"falco" and len(rt.value.split(b"\n")) == 2


def test_two_files_are_keyed_each_by_its_own_name(make_config, tmp_path):
    config = make_config(ship_max_records=4)
    a, _ = lines_file(tmp_path, "a.log", 9)
    b, _ = lines_file(tmp_path, "b.log", 6)
    ship(config, [a, b])
    msgs = read(config, [config.kafka.topic_prefix + ".raw.gateway"], 5)
    by_key = {}
    for m in msgs:
        by_key.setdefault(m.key, []).append(m)
    assert {k: len(v) for k, v in by_key.items()} == {b"a.log": 3, b"b.log": 2}
    for k, ms in by_key.items():
        assert {headers(m)[HEADER_ORIGIN] for m in ms} == {k}
        assert len({m.partition for m in ms}) == 1
        assert [HEADER_END in headers(m) for m in ms][-1] and sum(HEADER_END in headers(m) for m in ms) == 1


def test_single_sends_one_record_per_message_without_headers_or_key(make_config, tmp_path):
    config = make_config(ship_max_records=10)
    path, records = lines_file(tmp_path, "one.log", 7, blank_every=3)
    report = ship(config, [path], single=True)
    assert (report.messages, report.records) == (7, 7)
    msgs = read(config, [config.kafka.topic_prefix + ".raw.gateway"], 7)
    assert sorted(m.value for m in msgs) == sorted(records)
    assert all(not m.headers and m.key is None for m in msgs)


def test_an_unrecognised_file_is_an_error_that_lists_the_formats(make_config, tmp_path):
    path = tmp_path / "junk.bin"
    path.write_bytes(b"\x00\x01 nothing anyone logs\n")
    with pytest.raises(RampartsError) as err:
        ship(make_config(), [path])
    msg = str(err.value)
    assert "cannot tell the format" in msg and "--format" in msg and "envoy_json" in msg and "dcgm" in msg


def test_an_unknown_format_name_is_an_error_with_a_suggestion(make_config, tmp_path):
    path, _ = lines_file(tmp_path, "gw.log", 2)
    with pytest.raises(RampartsError, match="envoy_json"):
        ship(make_config(), [path], fmt="envoy_jsn")


def test_follow_ships_appended_lines_and_follows_a_rotated_file(make_config, tmp_path):
    config = make_config(ship_max_records=1000)
    path, first = lines_file(tmp_path, "live.log", 3)
    base = [l for l in (EXAMPLES / "envoy-ai-gateway.jsonl").read_bytes().split(b"\n") if l.strip()]
    appended = [base[0].replace(b"{", b'{"n":%d,' % (100 + i), 1) for i in range(4)]
    late = [base[1].replace(b"{", b'{"n":%d,' % (200 + i), 1) for i in range(2)]
    rotated = [base[2].replace(b"{", b'{"n":%d,' % (300 + i), 1) for i in range(5)]

    async def go():
        async with Reader(config, [config.kafka.topic_prefix + ".raw.gateway"]) as r:
            task = asyncio.create_task(ship_files(config, [str(path)], follow=True))
            try:
                await r.until(lambda ms: len(r.records()) >= 3)
                with open(path, "ab") as f:
                    f.write(b"\n".join(appended[:2]) + b"\n")
                    f.flush()
                    f.write(appended[2] + b"\n" + appended[3])  # the last line is still being written
                await r.until(lambda ms: len(r.records()) >= 6)
                with open(path, "ab") as f:
                    f.write(b"\n" + b"\n".join(late))  # no final newline: the rotation ends that line
                # logrotate: the old file moves aside, a new one takes its name (before the
                # shipper has read the lines just written to the old one)
                os.rename(path, tmp_path / "live.log.1")
                path.write_bytes(b"\n".join(rotated) + b"\n")
                await r.until(lambda ms: len(r.records()) >= 3 + 4 + 2 + 5)
                assert not task.done(), task.exception() if task.done() else None
            finally:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
            return r

    r = asyncio.run(go())
    assert r.records() == first + appended + late + rotated
    assert {m.key for m in r.messages} == {b"live.log"}
    assert all(headers(m)[HEADER_FORMAT] == b"envoy_json" for m in r.messages)
    assert not any(HEADER_END in headers(m) for m in r.messages)  # a followed file never ends


def test_topic_names_cover_every_family_once(make_config):
    from ramparts.streams.topics import FAMILY_OF_KIND, TopicNames

    names = TopicNames("p")
    assert [names.raw_for_kind(k) for k in FAMILY_OF_KIND] == \
        ["p.raw.gateway", "p.raw.payload", "p.raw.runtime", "p.raw.gpu", "p.raw.workload"]
    assert len(set(names.all)) == len(names.all) == 10
    assert {names.events, names.events_model, names.alerts, names.actions, names.deadletter} == \
        {"p.events", "p.events.model", "p.alerts", "p.actions", "p.deadletter"}


def test_create_topics_creates_only_the_missing_ones(make_config):
    from ramparts.streams.topics import TopicNames

    config = make_config()
    names = TopicNames(config.kafka.topic_prefix)
    k = config.kafka
    assert sorted(asyncio.run(create_topics(k.bootstrap, names.raw_all[:2], 2))) == sorted(names.raw_all[:2])
    assert asyncio.run(create_topics(k.bootstrap, names.all, 2)) == names.all[2:]
    assert asyncio.run(create_topics(k.bootstrap, names.all, 2)) == []


def test_an_embedded_broker_listens_on_loopback_and_stops_on_exit():
    import socket

    with EmbeddedBroker() as b:
        host, port = b.bootstrap.split(":")
        assert host == "127.0.0.1"
        proc = b.proc
        with socket.create_connection((host, int(port)), timeout=5):
            pass
    assert b.proc is None and proc.poll() is not None
