"""Keying events to entities, models and partitions, and the batch core every shell calls."""

from __future__ import annotations

import asyncio
import logging
import os
import subprocess
import sys

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ramparts import detectors
from ramparts.config import load_config
from ramparts.detectors.base import Detector, DictState
from ramparts.detectors.access import CredentialStuffing as AuthFailureBurst
from ramparts.detectors.access import PodExec
from ramparts.events import EventBatch
from ramparts.streams.app import AckAfterFlush, group_by_partition
from ramparts.streams.keys import entity_key, partition_for, route_key
from ramparts.streams.pipeline import Pipeline, alert_to_json, alert_to_wire
from ramparts.streams.topics import TopicNames, consumed_topics, consumer_groups, model_routed_kinds
from ramparts.timeutil import parse_iso

from .harness import ModelCalls

NS = 1_000_000_000
T0 = parse_iso("2026-11-22T10:00:00Z")
PROPERTY = settings(max_examples=60, deadline=None, derandomize=True, database=None)


# -- entity_key -----------------------------------------------------------------------------

@pytest.mark.parametrize("event,key", [
    ({"kind": "request", "principal": "alice", "src_ip": "192.0.2.1", "status": 200}, "principal:alice"),
    ({"kind": "request", "principal": "alice", "src_ip": "192.0.2.1", "status": 403}, "principal:alice"),
    ({"kind": "request", "principal": "key:ab12", "src_ip": "192.0.2.7", "status": 401}, "src_ip:192.0.2.7"),
    ({"kind": "request", "principal": None, "src_ip": "192.0.2.7", "status": 200}, "src_ip:192.0.2.7"),
    ({"kind": "request", "src_ip": "192.0.2.7"}, "src_ip:192.0.2.7"),
    ({"kind": "prediction", "principal": "bob", "src_ip": "192.0.2.1"}, "src_ip:192.0.2.1"),
    ({"kind": "prediction", "principal": "bob", "src_ip": None}, "principal:bob"),
    ({"kind": "prediction", "principal": None, "src_ip": "192.0.2.1"}, "src_ip:192.0.2.1"),
    ({"kind": "gpu", "gpu_uuid": "GPU-1", "node": "n1"}, "node:n1"),
    ({"kind": "gpu", "gpu_uuid": "GPU-1", "node": None}, "gpu:GPU-1"),
    ({"kind": "gpu", "gpu_uuid": None, "node": "n1"}, "node:n1"),
    ({"kind": "workload", "gpu_uuid": "GPU-1", "node": "n1", "pod": "train-0"}, "node:n1"),
    ({"kind": "workload", "gpu_uuid": "GPU-1", "node": None, "pod": "train-0"}, "gpu:GPU-1"),
    ({"kind": "workload", "gpu_uuid": "", "node": "n1"}, "node:n1"),
    ({"kind": "runtime", "namespace": "inference", "pod": "vllm-0", "node": "n1"}, "pod:inference/vllm-0"),
    ({"kind": "runtime", "namespace": None, "pod": "vllm-0"}, "pod:vllm-0"),
    ({"kind": "runtime", "pod": None, "node": "n1", "hostname": "h1"}, "node:n1"),
    ({"kind": "runtime", "pod": None, "hostname": "h1"}, "node:h1"),
    ({"kind": "runtime", "source": "docker_events"}, "source:docker_events"),
    ({"kind": "mystery"}, "kind:mystery"),
])
def test_entity_key_per_kind(event, key):
    assert entity_key(event) == key


def test_a_gpu_sample_and_the_workload_authorized_on_it_share_a_key():
    sample = {"kind": "gpu", "gpu_uuid": "GPU-9", "node": "gpu-node-3", "pod": None}
    workload = {"kind": "workload", "gpu_uuid": "GPU-9", "node": "gpu-node-3", "pod": "train-0"}
    assert entity_key(sample) == entity_key(workload)
    # A pod list rarely names the GPUs (the device plugin picks them): the node is what both carry.
    pod = {"kind": "workload", "gpu_uuid": None, "node": "gpu-node-3", "pod": "train-0"}
    assert entity_key(pod) == entity_key(sample) == "node:gpu-node-3"


# -- route_key ------------------------------------------------------------------------------

@pytest.mark.parametrize("event,key", [
    ({"kind": "request", "principal": "alice", "status": 200, "model": "llama-3-8b"}, "model:llama-3-8b"),
    ({"kind": "request", "principal": "key:ab12", "status": 401, "src_ip": "192.0.2.7", "model": "llama-3-8b"},
     "model:llama-3-8b"),
    ({"kind": "prediction", "principal": "bob", "src_ip": "192.0.2.1", "model": "digits", "model_version": "2"},
     "model:digits"),
    ({"kind": "request", "principal": "alice", "status": 200, "model": None}, None),
    ({"kind": "request", "principal": "alice", "status": 200, "model": ""}, None),
    ({"kind": "prediction", "principal": "bob"}, None),
    ({"kind": "gpu", "gpu_uuid": "GPU-1", "node": "n1", "model": "llama-3-8b"}, None),
    ({"kind": "runtime", "namespace": "inference", "pod": "vllm-0"}, None),
    ({"kind": "workload", "gpu_uuid": "GPU-1"}, None),
])
def test_route_key_by_model_names_the_model_of_requests_and_predictions_only(event, key):
    assert route_key(event, "model") == key


@PROPERTY
@given(event=st.fixed_dictionaries({
    "kind": st.sampled_from(["request", "prediction", "runtime", "gpu", "workload", "mystery"]),
    "principal": st.sampled_from([None, "alice"]), "status": st.sampled_from([None, 200, 401]),
    "src_ip": st.sampled_from([None, "192.0.2.1"]), "pod": st.sampled_from([None, "p0"]),
    "gpu_uuid": st.sampled_from([None, "GPU-1"]), "model": st.sampled_from([None, "m1"])}))
def test_route_key_by_entity_is_the_entity_key(event):
    assert route_key(event, "entity") == entity_key(event)


def test_route_key_names_the_known_routes_when_given_another():
    with pytest.raises(ValueError, match="entity, model"):
        route_key({"kind": "request", "model": "m"}, "principal")


def test_every_registered_detector_has_a_known_route():
    assert {c.route for c in detectors.DETECTOR_CLASSES} <= {"entity", "model"}


# -- partition_for --------------------------------------------------------------------------

KEYS = ["principal:alice", "src_ip:192.0.2.7", "pod:inference/vllm-0", "gpu:GPU-1", "node:n1", "kind:None", ""]


def test_partition_for_is_pinned():
    # Golden values: a change here moves every entity (and its table state) to another worker.
    assert [partition_for(k, 4) for k in KEYS] == [0, 2, 0, 1, 0, 1, 0]
    assert [partition_for(k, 12) for k in KEYS] == [4, 10, 0, 5, 0, 5, 0]


def test_partition_for_is_the_same_in_another_process_with_another_hash_seed():
    code = ("import json; from ramparts.streams.keys import partition_for; "
            f"print(json.dumps([partition_for(k, 7) for k in {KEYS!r}]))")
    out = subprocess.run([sys.executable, "-c", code], env={**os.environ, "PYTHONHASHSEED": "12345"},
                         capture_output=True, check=True, timeout=60).stdout
    assert orjson.loads(out) == [partition_for(k, 7) for k in KEYS]


@PROPERTY
@given(key=st.text(), partitions=st.integers(min_value=1, max_value=1024))
def test_partition_for_is_in_range(key, partitions):
    assert 0 <= partition_for(key, partitions) < partitions


def test_partition_for_spreads_keys_over_every_partition():
    counts = [0] * 8
    for i in range(4000):
        counts[partition_for(f"principal:user-{i}", 8)] += 1
    assert min(counts) > 4000 / 8 * 0.8


_event = st.fixed_dictionaries({
    "kind": st.sampled_from(["request", "prediction", "runtime", "gpu", "workload"]),
    "principal": st.sampled_from([None, "alice", "bob"]), "status": st.sampled_from([None, 200, 401]),
    "src_ip": st.sampled_from([None, "192.0.2.1", "192.0.2.2"]), "pod": st.sampled_from([None, "p0", "p1"]),
    "namespace": st.sampled_from([None, "ns"]), "gpu_uuid": st.sampled_from([None, "GPU-1"]),
    "node": st.sampled_from([None, "n1"]), "seq": st.integers(),
})


@PROPERTY
@given(events=st.lists(_event, max_size=60), partitions=st.integers(min_value=1, max_value=9))
def test_group_by_partition_keeps_every_event_in_order_on_its_entitys_partition(events, partitions):
    groups = group_by_partition(events, partitions)
    assert sorted(e["seq"] for g in groups.values() for e in g) == sorted(e["seq"] for e in events)
    for p, group in groups.items():
        assert group, p
        assert all(partition_for(entity_key(e), partitions) == p for e in group)
        assert group == [e for e in events if partition_for(entity_key(e), partitions) == p]


@PROPERTY
@given(events=st.lists(st.fixed_dictionaries({
    "kind": st.sampled_from(["request", "prediction", "runtime", "gpu"]), "model": st.sampled_from([None, "a", "b", "c"]),
    "seq": st.integers()}), max_size=60), partitions=st.integers(min_value=1, max_value=9))
def test_group_by_partition_by_model_leaves_out_what_names_no_model(events, partitions):
    groups = group_by_partition(events, partitions, "model")
    routed = [e for e in events if route_key(e, "model") is not None]
    assert sorted(e["seq"] for g in groups.values() for e in g) == sorted(e["seq"] for e in routed)
    for p, group in groups.items():
        assert group == [e for e in routed if partition_for(route_key(e, "model"), partitions) == p]


# -- Pipeline -------------------------------------------------------------------------------

def fail401(t_s: float, ip: str = "192.0.2.9") -> dict:
    return {"kind": "request", "ts": T0 + int(t_s * NS), "source": "nginx_combined", "principal": None,
            "src_ip": ip, "status": 401, "id": f"f:{t_s}:{ip}"}


def exec_into(t_s: float) -> dict:
    return {"kind": "runtime", "ts": T0 + int(t_s * NS), "source": "k8s_audit", "verb": "create",
            "resource": "pods", "subresource": "exec", "namespace": "inference", "pod": "vllm-0",
            "user": "eve", "id": f"a:{t_s}"}


def test_process_batch_counts_per_batch_and_merges_updates_of_one_incident():
    p = Pipeline([AuthFailureBurst({"min_count": 3}), PodExec()])
    state = DictState()
    first = p.process_batch([fail401(i) for i in range(5)] + [exec_into(2)], state)
    assert sorted((a["detector"], a["event_count"]) for a in first) == [("access.k8s_exec", 1),
                                                                         ("access.stuffing", 5)]
    second = p.process_batch(EventBatch([fail401(6), fail401(7)]), state)
    assert [(a["detector"], a["event_count"]) for a in second] == [("access.stuffing", 7)]
    assert second[0]["id"] == next(a["id"] for a in first if a["detector"] == "access.stuffing")
    s = p.stats
    assert (s.batches, s.events, s.alerts) == (2, 8, 3)
    assert s.events_by_kind == {"request": 7, "runtime": 1}
    assert s.alerts_by_detector == {"access.stuffing": 2, "access.k8s_exec": 1}
    assert s.detector_errors == 0


def test_process_batch_orders_a_batch_by_event_time_before_the_detectors_see_it():
    p = Pipeline([AuthFailureBurst({"min_count": 3, "window_seconds": 5})])
    # In arrival order the first three span 100 s; in event time 98..100 is a burst.
    (a,) = p.process_batch([fail401(0), fail401(100), fail401(99), fail401(98)], DictState())
    assert a["first_event_ts"] == T0 + 98 * NS and a["event_count"] == 3


def test_process_batch_does_not_reorder_or_change_the_callers_list():
    events = [fail401(3), fail401(1), fail401(2)]
    before = [dict(e) for e in events]
    Pipeline.from_config(None).process_batch(events, DictState())
    assert events == before


def test_an_empty_batch_is_counted_and_raises_nothing():
    p = Pipeline.from_config(None)
    assert p.process_batch([], DictState()) == []
    assert (p.stats.batches, p.stats.events, p.stats.alerts) == (1, 0, 0)


def test_no_placeholder_detector_is_left():
    assert Pipeline.from_config(None).placeholders == []


class Broken(Detector):
    name = "test.broken"
    kinds = ("request",)

    def update(self, batch, state):
        raise ZeroDivisionError("boom")


def test_a_failing_detector_is_logged_and_counted_and_the_others_and_the_store_still_run(tmp_path, caplog):
    from ramparts.sinks.clickhouse import ClickHouseSink

    with ClickHouseSink(str(tmp_path / "store")) as sink:
        p = Pipeline([Broken(), AuthFailureBurst({"min_count": 2})], sink)
        with caplog.at_level(logging.ERROR, logger="ramparts.pipeline"):
            alerts = p.process_batch([fail401(0), fail401(1)], DictState())
        sink.flush()
        counts = sink.counts()
    assert [a["detector"] for a in alerts] == ["access.stuffing"]
    assert p.stats.detector_errors == 1
    assert "test.broken" in p.stats.last_detector_error and "ZeroDivisionError: boom" in p.stats.last_detector_error
    assert "2026-11-22T10:00:00Z .. 2026-11-22T10:00:01Z" in p.stats.last_detector_error
    assert any("test.broken" in r.getMessage() for r in caplog.records)
    assert counts["requests"] == 2 and counts["alerts"] == 1


# -- alert_to_wire ------------------------------------------------------------------------

def test_alert_to_wire_writes_every_time_field_as_rfc3339_and_leaves_the_alert_alone():
    (alert,) = Pipeline.from_config(None).process_batch([fail401(i * 0.5) for i in range(21)], DictState())
    before = orjson.loads(orjson.dumps(alert))
    wire = alert_to_wire(alert)
    assert wire["first_event_ts"] == wire["window"]["start"] == "2026-11-22T10:00:00Z"
    assert wire["ts"] == wire["window"]["end"] == "2026-11-22T10:00:10Z"
    assert {k: v for k, v in wire.items() if k not in ("ts", "first_event_ts", "window")} == \
        {k: v for k, v in alert.items() if k not in ("ts", "first_event_ts", "window")}
    assert orjson.loads(orjson.dumps(alert)) == before
    assert orjson.loads(alert_to_json(alert)) == wire


def test_alert_to_wire_keeps_nanoseconds_and_passes_text_through():
    wire = alert_to_wire({"ts": T0 + 1, "first_event_ts": "already text", "window": {"start": T0 + 1500, "end": None}})
    assert wire == {"ts": "2026-11-22T10:00:00.000000001Z", "first_event_ts": "already text",
                    "window": {"start": "2026-11-22T10:00:00.000001500Z", "end": None}}


# -- Routes: which pipeline runs which detectors --------------------------------------------

@pytest.fixture
def with_model_calls(monkeypatch):
    """ModelCalls (a model-routed test detector) registered beside the real ones, for one test."""
    monkeypatch.setattr(detectors, "DETECTOR_CLASSES", [*detectors.DETECTOR_CLASSES, ModelCalls])
    monkeypatch.setitem(detectors.DETECTORS, ModelCalls.name, ModelCalls)


class RecordingSink:
    """What a pipeline wrote, and the knobs ``AckAfterFlush`` reads."""

    def __init__(self, max_batch_rows: int = 1000, flush_interval_seconds: float = 1.0):
        self.events: list[dict] = []
        self.alerts: list[dict] = []
        self.flushes = 0
        self.max_batch_rows = max_batch_rows
        self.flush_interval_seconds = flush_interval_seconds
        self.fullest_buffer = 0

    def write_events(self, events):
        self.events.extend(events)
        self.fullest_buffer += len(events)

    def write_alerts(self, alerts):
        self.alerts.extend(alerts)

    def flush(self):
        self.flushes += 1
        self.fullest_buffer = 0


def call(t_s: float, model: str, kind: str = "request", principal: str = "alice") -> dict:
    return {"kind": kind, "ts": T0 + int(t_s * NS), "source": "envoy_json", "principal": principal,
            "src_ip": "192.0.2.1", "model": model, "status": 200, "id": f"c:{kind}:{model}:{t_s}"}


def test_a_pipeline_runs_the_detectors_of_its_route_and_replays_pipeline_runs_them_all(with_model_calls):
    config = load_config(None, env={})
    everything = [d.name for d in Pipeline.from_config(config).detectors]
    by_entity = [d.name for d in Pipeline.from_config(config, route="entity").detectors]
    by_model = [d.name for d in Pipeline.from_config(config, route="model").detectors]
    assert "test.model_calls" in by_model
    assert by_entity == [n for n in everything if n not in by_model]  # the registry's order, kept
    assert by_model == [n for n in everything if n not in by_entity]
    assert all(detectors.DETECTORS[n].route == "model" for n in by_model)
    assert all(detectors.DETECTORS[n].route == "entity" for n in by_entity)
    with pytest.raises(ValueError, match="unknown route"):
        Pipeline.from_config(config, route="gpu")


def test_a_pipeline_that_leaves_the_events_to_another_writes_only_its_alerts():
    sink = RecordingSink()
    p = Pipeline([AuthFailureBurst({"min_count": 2})], sink, write_events=False)
    alerts = p.process_batch([fail401(0), fail401(1)], DictState())
    assert sink.events == [] and sink.alerts == alerts and len(alerts) == 1
    assert p.stats.events == 2


def test_the_workers_split_raises_what_one_pipeline_raises_and_stores_each_event_once(with_model_calls):
    # The worker's shape, without Kafka: the entity-routed detectors over all events, per
    # entity partition, storing them; the model-routed ones over the events that name a
    # model, per model partition, storing only alerts. Replay's shape: one pipeline, all
    # detectors, whole batches. Same alerts, and every event stored once.
    config = load_config(None, env={"RAMPARTS_DETECTORS__TEST_MODEL_CALLS__MIN_COUNT": "5",
                                    "RAMPARTS_DETECTORS__ACCESS_STUFFING__MIN_COUNT": "3"})
    models = ["llama-3-8b", "digits", "bge-m3"]
    events = [call(i, models[i % 3], "request" if i % 2 else "prediction") for i in range(60)]
    events += [fail401(100 + i) for i in range(4)] + [exec_into(120)]

    whole, whole_state = Pipeline.from_config(config), DictState()
    whole_alerts: dict[str, dict] = {}
    for i in range(0, len(events), 16):
        whole_alerts.update((a["id"], a) for a in whole.process_batch(events[i:i + 16], whole_state))
    assert {a["detector"] for a in whole_alerts.values()} == {"test.model_calls", "access.stuffing", "access.k8s_exec"}

    sink = RecordingSink()
    by_entity = Pipeline.from_config(config, sink, route="entity")
    by_model = Pipeline.from_config(config, sink, route="model", write_events=False)
    split_alerts: dict[str, dict] = {}
    states = {}
    for i in range(0, len(events), 16):
        chunk = events[i:i + 16]
        for route, pipe in (("entity", by_entity), ("model", by_model)):
            for p, group in group_by_partition(chunk, 3, route).items():
                state = states.setdefault((route, p), DictState())
                split_alerts.update((a["id"], a) for a in pipe.process_batch(group, state))
    assert split_alerts == whole_alerts
    assert sorted(e["id"] for e in sink.events) == sorted(e["id"] for e in events)
    assert by_model.stats.events == sum(1 for e in events if route_key(e, "model") is not None)


def test_the_model_topic_is_consumed_only_when_a_model_routed_detector_is_enabled(monkeypatch):
    config = load_config(None, env={"RAMPARTS_KAFKA__TOPIC_PREFIX": "x"})
    names = TopicNames("x")
    plain = [c for c in detectors.DETECTOR_CLASSES if c.route != "model"]
    monkeypatch.setattr(detectors, "DETECTOR_CLASSES", plain)
    assert model_routed_kinds(config) == frozenset()
    assert consumed_topics(config) == [names.events]
    # The raw topics are read by the parse stage's own group, waited on first.
    assert consumer_groups(config) == [("ramparts-worker-raw", names.raw_all), ("ramparts-worker", [names.events])]
    monkeypatch.setattr(detectors, "DETECTOR_CLASSES", [*plain, ModelCalls])
    monkeypatch.setitem(detectors.DETECTORS, ModelCalls.name, ModelCalls)
    assert model_routed_kinds(config) == {"request", "prediction"}
    assert consumed_topics(config) == [names.events, names.events_model]
    off = load_config(None, env={"RAMPARTS_KAFKA__TOPIC_PREFIX": "x", "RAMPARTS_DETECTORS__TEST_MODEL_CALLS__ENABLED": "false"})
    assert consumed_topics(off) == [names.events]


# -- AckAfterFlush ----------------------------------------------------------------------------

class FakeStream:
    def __init__(self, name: str, log: list):
        self.name, self.log = name, log

    async def ack(self, ev):
        self.log.append((self.name, ev))


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def test_ack_after_flush_acknowledges_each_agents_input_on_its_stream_only_after_a_flush():
    log: list = []
    clock = Clock()
    sink = RecordingSink(max_batch_rows=10, flush_interval_seconds=1.0)
    acks = AckAfterFlush(sink, clock=clock)
    entity, model = FakeStream("events", log), FakeStream("events.model", log)

    async def go():
        sink.write_events([{}] * 3)
        acks.add(entity, [1, 2])
        acks.add(model, [7])
        await acks.settle()  # fresh and no buffer full: wait for more
        assert (log, sink.flushes, len(acks)) == ([], 0, 3)
        sink.write_events([{}] * 7)  # a buffer is full
        await acks.settle()
        assert sink.flushes == 1 and log == [("events", 1), ("events", 2), ("events.model", 7)]
        acks.add(model, [8])
        clock.now = 0.5
        await acks.settle()
        assert sink.flushes == 1 and len(acks) == 1
        clock.now = 1.6  # a second since the last settle
        await acks.settle()
        assert sink.flushes == 2 and log[-1] == ("events.model", 8)
        acks.add(entity, [3])
        await acks.settle(force=True)  # a rebalance
        assert sink.flushes == 3 and log[-1] == ("events", 3)
        await acks.settle(force=True)  # nothing to acknowledge: no flush either
        assert sink.flushes == 3

    asyncio.run(go())


def test_ack_after_flush_without_a_store_acknowledges_at_once():
    log: list = []
    acks = AckAfterFlush(None)
    acks.add(FakeStream("events", log), [1])
    asyncio.run(acks.settle())
    assert log == [("events", 1)] and len(acks) == 0
