"""Keying events to entities and partitions, and the batch core every shell calls."""

from __future__ import annotations

import logging
import os
import subprocess
import sys

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ramparts.detectors.base import Detector, DictState
from ramparts.detectors.placeholder import AuthFailureBurst, PodExec
from ramparts.events import EventBatch
from ramparts.streams.app import group_by_partition
from ramparts.streams.keys import entity_key, partition_for
from ramparts.streams.pipeline import Pipeline, alert_to_json, alert_to_wire
from ramparts.timeutil import parse_iso

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
    ({"kind": "gpu", "gpu_uuid": "GPU-1", "node": "n1"}, "gpu:GPU-1"),
    ({"kind": "gpu", "gpu_uuid": None, "node": "n1"}, "node:n1"),
    ({"kind": "workload", "gpu_uuid": "GPU-1", "node": "n1", "pod": "train-0"}, "gpu:GPU-1"),
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


def test_placeholders_name_the_placeholder_detectors():
    assert Pipeline.from_config(None).placeholders == ["access.stuffing", "runtime.falco", "access.k8s_exec"]


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
