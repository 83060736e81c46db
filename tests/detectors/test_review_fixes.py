"""Defects found in review of the compute and access detectors, each shown by a test before its fix."""

from __future__ import annotations

import orjson

from ramparts.detectors.access import NewModel, NewSource
from ramparts.detectors.base import DictState
from ramparts.detectors.compute import UnauthorizedCompute
from ramparts.events import EventBatch

NS = 1_000_000_000
T0 = 1_800_000_000 * NS


def _busy(t_s: int, gpu: str = "GPU-a") -> dict:
    return {"kind": "gpu", "ts": T0 + t_s * NS, "source": "dcgm", "node": "n1", "gpu_uuid": gpu, "util_pct": 100.0,
            "mem_used_mib": 2000.0, "power_w": 300.0, "processes": None, "namespace": None, "pod": None,
            "id": f"s:{t_s}:{gpu}"}


def test_an_unauthorized_gpu_seen_again_after_the_gap_opens_a_new_incident_not_the_closed_one():
    """Telemetry stops for longer than gap_seconds (exporter down), then the GPU is still busy:
    the incident closed on the gap; the next one must start at the new samples, with a new id,
    not at the first sample of the run (which gave the closed incident's id again)."""
    d, state = UnauthorizedCompute(), DictState()
    first = d.update(EventBatch([_busy(0), _busy(15)]), state)
    assert [a["event_count"] for a in first] == [2]
    assert d.update(EventBatch([_busy(2000)]), state) == []  # one sample after the gap: not yet
    (again,) = d.update(EventBatch([_busy(2015)]), state)
    assert again["id"] != first[0]["id"]
    assert again["first_event_ts"] == T0 + 2000 * NS and again["event_count"] == 2


def test_two_busy_samples_a_day_apart_are_not_two_in_a_row():
    d, state = UnauthorizedCompute(), DictState()
    assert d.update(EventBatch([_busy(0)]), state) == []
    assert d.update(EventBatch([_busy(86400)]), state) == []


def _req(t: int, principal: str, ip: str, model: str) -> dict:
    return {"kind": "request", "ts": T0 + t * NS, "source": "envoy_json", "principal": principal, "src_ip": ip,
            "model": model, "path": "/v1/chat/completions", "status": 200}


def test_habit_state_stays_under_2kb_with_many_long_values():
    """An adversary controls the model name (and a gateway may pass any src_ip text): long values,
    many of them, must not grow one principal's state past 2 KB."""
    for det, vary in ((NewModel(), "model"), (NewSource(), "src_ip")):
        state = DictState()
        events = []
        for t in range(200):
            model = "m" if vary == "src_ip" else f"model-{t:04d}-" + "x" * 400
            ip = "198.51.100.7" if vary == "model" else f"host{t:04d}-" + "y" * 400
            events.append(_req(t, "key:ab", ip, model))
        det.update(EventBatch(events), state)
        for k, v in state.data.items():
            assert len(orjson.dumps(v)) < 2048, (det.name, k, len(orjson.dumps(v)))


def test_habit_state_stays_under_2kb_at_the_largest_max_values_after_learning():
    """After learning, a principal keeps up to twice max_values values and the incident's last
    four new ones: with long adversarial values at the largest max_values the options allow,
    the state must still fit 2 KB (at 32 it took 3.3 KB, which is why the bound is 16)."""
    for cls, vary in ((NewModel, "model"), (NewSource, "src_ip")):
        top = next(m.le for m in cls.Options.model_fields["max_values"].metadata if hasattr(m, "le"))
        det = cls({"max_values": top, "learn_requests": top - 1, "learn_seconds": 0})
        state = DictState()
        events = []
        for t in range(300):
            k = t if t < top - 1 else 1000 + t  # learn top-1 values, then a new one every request
            model = "m" if vary == "src_ip" else f"model-{k:04d}-" + "x" * 400
            ip = "198.51.100.7" if vary == "model" else f"host{k:04d}-" + "y" * 400
            events.append(_req(t, "key:ab", ip, model))
        alerts = det.update(EventBatch(events), state)
        assert alerts, "the new values after learning must alert"
        sizes = [len(orjson.dumps(v)) for v in state.data.values()]
        assert sizes and max(sizes) < 2048, (det.name, sizes)
