"""extraction.volume: bursts of answered queries and tokens against a principal's own peak and
the model's other callers, on hand-made gateway and prediction streams (seeded)."""

from __future__ import annotations

import random

from ramparts.detectors.base import DictState
from ramparts.detectors.volume import VolumeDetector
from ramparts.events import EventBatch

NS = 1_000_000_000
MIN = 60 * NS
T0 = 1_795_000_020 * NS  # a minute boundary


def req(principal: str, t: int, status: int = 200, tokens: tuple[int, int] = (450, 220), model: str = "llama") -> dict:
    return {"kind": "request", "ts": t, "source": "envoy_json", "principal": principal, "src_ip": "10.0.0.1",
            "model": model, "path": "/v1/chat/completions", "status": status, "latency_ms": 900.0,
            "tokens_in": tokens[0], "tokens_out": tokens[1]}


def minute_of(principal: str, minute: int, n: int, rng: random.Random, **kw) -> list[dict]:
    """``n`` requests of ``principal`` spread over minute ``minute``."""
    return [req(principal, T0 + minute * MIN + rng.randrange(MIN), **kw) for _ in range(n)]


def run(events: list[dict], det: VolumeDetector | None = None) -> list[dict]:
    det = det or VolumeDetector()
    state, alerts = DictState(), []
    events = sorted(events, key=lambda e: e["ts"])
    for i in range(0, len(events), 200):
        alerts += det.update(EventBatch(events[i:i + 200]), state)
    return alerts


def background(rng: random.Random, minutes: int) -> list[dict]:
    # The model's regular callers: a heavy service (~600 a minute), two light keys.
    out = []
    for m in range(minutes):
        out += minute_of("svc-heavy", m, rng.randint(500, 650), rng)
        out += minute_of("key-a", m, rng.randint(2, 8), rng)
        out += minute_of("key-b", m, rng.randint(0, 15), rng)
    return out


def test_regular_callers_heavy_ones_included_raise_nothing_at_start_or_later():
    rng = random.Random(1)
    assert run(background(rng, 90)) == []


def test_a_known_key_pulling_far_over_its_own_peak_alerts_within_the_minute():
    rng = random.Random(2)
    events = background(rng, 60) + minute_of("key-a", 60, 300, rng)
    alerts = run(events)
    assert {a["entity"]["id"] for a in alerts} == {"key-a"}
    ev = alerts[0]["evidence"]
    assert ev["statistic"] == "queries_per_minute" and ev["reference"] == "own"
    assert ev["reference_peak"] <= 8 and ev["threshold"] == 120.0  # 4 x its peak is under the floor
    assert 120 <= ev["value"] <= 300 and ev["model"] == "llama"
    assert alerts[0]["severity"] == "medium" and alerts[-1]["severity"] == "high"  # 300 is 2.5x the threshold


def test_a_newcomer_is_judged_against_the_busiest_caller_of_the_model():
    rng = random.Random(3)
    base = background(rng, 40)
    calm = run(base + minute_of("new-key", 40, 1200, rng))  # 2x the heavy service: a new service, say
    assert calm == []
    alerts = run(base + minute_of("new-key", 40, 3000, rng))
    assert [a["entity"]["id"] for a in alerts][:1] == ["new-key"]
    (ev,) = [f for f in alerts[-1]["evidence"]["statistics"] if f["statistic"] == "queries_per_minute"]
    assert ev["reference"] == "population" and 500 <= ev["reference_peak"] <= 650
    assert ev["value"] >= 4 * ev["reference_peak"]


def test_a_batch_job_bursting_as_it_always_has_does_not_alert():
    rng = random.Random(4)
    events = background(rng, 200)
    for m in range(0, 200, 45):  # 400 rows in a minute, every 45 minutes
        events += minute_of("svc-batch", m, 400, rng)
    assert run(events) == []


def test_tokens_alert_when_a_key_asks_for_much_longer_answers():
    rng = random.Random(5)
    events = background(rng, 40) + minute_of("key-a", 40, 8, rng, tokens=(30_000, 8_000))
    alerts = run(events)
    assert {a["entity"]["id"] for a in alerts} == {"key-a"}
    assert alerts[-1]["evidence"]["statistic"] == "tokens_per_minute"
    assert alerts[-1]["evidence"]["value"] >= 200_000


def test_refused_requests_are_not_answers():
    rng = random.Random(6)
    events = background(rng, 40) + minute_of("key-a", 40, 400, rng, status=429)
    assert run(events) == []


def test_predictions_count_rows_and_keep_state_per_source_address():
    det, state = VolumeDetector({"min_minutes": 1}), DictState()

    def pred(t: int, rows: int) -> dict:
        return {"kind": "prediction", "ts": t, "source": "kserve", "principal": "acct-1", "src_ip": "192.0.2.9",
                "model": "digits", "model_version": "1", "input": [[0.0] * 4] * rows, "output": [0.5] * rows}

    assert det.update(EventBatch([pred(T0 + i * NS, 2) for i in range(60)]), state) == []  # 120 rows: minute 0
    alerts = det.update(EventBatch([pred(T0 + MIN + i * NS, 20) for i in range(30)]), state)
    assert alerts and alerts[-1]["evidence"]["value"] >= 480 and alerts[-1]["entity"] == {"type": "principal",
                                                                                       "id": "acct-1"}
    assert list(state.data) == ["extraction.volume/p|192.0.2.9|acct-1|digits"]
