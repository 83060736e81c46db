"""The metric series model (anomaly.py) and its two stream detectors, on hand-made series."""

import math

import numpy as np
import orjson
import pytest

from ramparts.detectors.anomaly import EXTREME_SCORE, GpuMetrics, ModelMetrics, P2Quantile, SeriesModel
from ramparts.detectors.base import DictState
from ramparts.events import EventBatch, columnar

NS = 1_000_000_000
MIN = 60 * NS
T0 = 1_795_000_020 * NS


def daily(n: int, seed: int = 3, period: int = 96) -> np.ndarray:
    rng = np.random.default_rng(seed)
    i = np.arange(n)
    return 50 + 20 * np.sin(2 * math.pi * i / period) + rng.normal(0, 1, n)


@pytest.mark.parametrize("p", [0.5, 0.9, 0.99])
def test_p2_quantile_tracks_numpy(p):
    x = np.random.default_rng(5).lognormal(size=5000)
    q = P2Quantile(p)
    for v in x:
        q.add(float(v))
    assert q.value() == pytest.approx(np.quantile(x, p), rel=0.05)
    assert P2Quantile(p, q.state()).value() == pytest.approx(q.value(), rel=1e-5)


def test_nothing_is_scored_while_learning_and_a_repeating_series_stays_quiet():
    m = SeriesModel(learn_points=300)
    scores = [m.score(v) for v in daily(3000)]
    assert not any(scores[:300])
    assert sum(s > 0.55 for s in scores[300:]) <= 3  # at most a few flags over 27 periods


def test_a_new_extreme_scores_at_once_and_a_level_shift_is_flagged_once():
    m = SeriesModel(learn_points=300)
    for v in daily(1500):
        m.score(v)
    assert m.score(200.0) == EXTREME_SCORE  # far above the learned range
    m2 = SeriesModel(learn_points=300)
    x = daily(2400)
    x[1500:] += 8  # up by a fifth of the range: new shapes, not new extremes at first
    scores = np.array([m2.score(v) for v in x])
    flagged = np.nonzero(scores > 0.55)[0]
    assert len(flagged) and flagged[0] >= 1500 and flagged[0] < 1500 + 200
    assert len(flagged[flagged >= 1500]) <= 4  # masked after the first flag


def test_a_flat_stretch_where_the_series_always_moves_is_its_most_novel_moment():
    x = daily(2400)
    x[1600:1750] = 50.0
    m = SeriesModel(learn_points=300)
    scores = np.array([m.score(v) for v in x])
    assert scores[1600:1800].max() > 0
    assert scores[1600:1800].max() >= scores[300:1600].max()
    assert scores[1600:1800].max() >= scores[1800:].max()


def test_state_round_trips_through_json_and_scores_go_on_the_same():
    x = daily(2000)
    a = SeriesModel(learn_points=300, memory=560)
    b = SeriesModel(learn_points=300, memory=560)
    sa, sb = [], []
    for i, v in enumerate(x):
        sa.append(a.score(v))
        a = SeriesModel(learn_points=300, memory=560, state=orjson.loads(orjson.dumps(a.state())))
        sb.append(b.score(v))
        if i % 97 == 0:  # the other reloads rarely: a state stores what the model uses
            b = SeriesModel(learn_points=300, memory=560, state=b.state())
    assert len(orjson.dumps(a.state())) < 2048
    flagged_a = {i for i, s in enumerate(sa) if s > 0.55}
    flagged_b = {i for i, s in enumerate(sb) if s > 0.55}
    assert len(flagged_a ^ flagged_b) <= 2


@pytest.mark.parametrize("points, flagged", [(12, True), (3, False)])
def test_a_level_held_past_the_levels_held_before_is_flagged_after_a_spike_widened_the_range(points, flagged):
    # One spike makes the range ten times wider; the shapes' distances, as shares of that
    # range, no longer see a daily peak 15 higher. Held for four steps (12 points; steps of 3)
    # it is a new held level; for one step it is a burst, which one spike's step could be.
    x = daily(3000)
    x[1000] = 500.0
    x[2034:2034 + points] += 15  # at a daily peak (i % 96 == 24 at 2040)
    m = SeriesModel(learn_points=300)
    late = [(i, s, m.kind) for i, v in enumerate(x) if (s := m.score(v)) > 0 and i > 1001]
    if flagged:
        assert late == [(2042, EXTREME_SCORE, "new held level")]
        assert m.explain()["held_high"] > 80 > m.explain()["learned_high"] / 10
    else:
        assert late == []


def test_held_levels_wait_for_twice_the_learning_period():
    # Just after learning, records of held levels fall by chance; the same shift at a daily
    # peak (i % 96 == 24) flags as a held level only once 600 points (2 x 300) have passed.
    # (From the end of learning, the first shift flags as a held level too, at 506.)
    x = daily(3000)
    x[350] = 500.0  # the range ten times wider: the shapes do not see the shifts below
    x[498:510] += 15  # before point 600
    x[2034:2046] += 30  # past the level the first shift held
    m = SeriesModel(learn_points=300)
    late = [(i, m.kind) for i, v in enumerate(x) if m.score(v) > 0 and i > 351]
    assert late == [(2042, "new held level")]


def test_the_held_levels_survive_a_round_trip():
    x = daily(1000)
    a = SeriesModel(learn_points=300, memory=560)
    for v in x:
        a.score(v)
    b = SeriesModel(learn_points=300, memory=560, state=orjson.loads(orjson.dumps(a.state())))
    assert list(b.held) == pytest.approx(list(a.held), rel=1e-5)
    assert (b.held_lo, b.held_hi) == pytest.approx((a.held_lo, a.held_hi), rel=1e-5)


def requests(model: str, minutes: int, latency, start: int = 0) -> list[dict]:
    out = []
    for k in range(start, start + minutes):
        for j in range(4):
            out.append({"kind": "request", "ts": T0 + k * MIN + j * 10 * NS, "source": "envoy_json",
                        "principal": "svc", "src_ip": "10.0.0.1", "model": model, "path": "/v1/chat/completions",
                        "status": 503 if latency(k) is None else 200, "latency_ms": latency(k) or 5.0,
                        "tokens_in": 10, "tokens_out": 100})
    return out


def test_model_metrics_alerts_on_a_latency_spike_with_its_numbers():
    d = ModelMetrics({"learn_minutes": 60})
    rng = np.random.default_rng(2)
    base = 100 + 10 * np.sin(np.arange(400) / 10) + rng.normal(0, 1, 400)
    events = requests("llama", 300, lambda k: float(base[k]))
    events += requests("llama", 5, lambda k: 900.0, start=300)
    events += requests("llama", 2, lambda k: 100.0, start=305)
    state = DictState()
    alerts = d.update(EventBatch(events[:500]), state) + d.update(EventBatch(events[500:]), state)
    lat = [a for a in alerts if a["evidence"]["metric"] == "latency_ms"]
    assert lat and all(a["entity"] == {"type": "model", "id": "llama"} for a in lat)
    first = lat[0]
    assert first["detector"] == "anomaly.model" and first["severity"] == "high"
    # The incident opened on minute 300, a new extreme (high); its last update is the minute after.
    assert first["first_event_ts"] == (T0 // MIN + 300) * MIN
    assert first["evidence"]["value"] == 900.0 and first["evidence"]["learned_low"] < 200
    assert first["evidence"]["threshold"] == 0.6 and first["evidence"]["points"] >= 300
    assert not [a for a in alerts if a["evidence"]["metric"] in ("requests", "tokens_out")]


def test_model_metrics_sees_a_burst_of_server_errors():
    d = ModelMetrics({"learn_minutes": 60})
    events = requests("m", 300, lambda k: 50.0 + k % 5)
    events += requests("m", 3, lambda k: None, start=300)  # every request a 503
    events += requests("m", 1, lambda k: 50.0, start=303)
    alerts = d.update(EventBatch(events), DictState())
    assert any(a["evidence"]["metric"] == "error_rate" for a in alerts)


def test_counted_series_score_silent_minutes_as_zero_until_the_fill_limit():
    d = ModelMetrics({"learn_minutes": 20, "fill_minutes": 5})
    state = DictState()
    d.update(EventBatch(requests("m", 30, lambda k: 50.0)), state)
    before = state.get("anomaly.model/m/requests")["sm"]["n"]
    # Minute 34 closes minute 29 (the last one sent) and fills the 4 silent minutes between.
    d.update(EventBatch(requests("m", 1, lambda k: 50.0, start=34)), state)
    assert state.get("anomaly.model/m/requests")["sm"]["n"] == before + 1 + 4
    # Minute 60 closes minute 34; the 25 silent minutes after it are downtime, not zeros.
    d.update(EventBatch(requests("m", 1, lambda k: 50.0, start=60)), state)
    assert state.get("anomaly.model/m/requests")["sm"]["n"] == before + 1 + 4 + 1


def test_gpu_metrics_reads_utilisation_and_power_and_skips_garbage():
    d = GpuMetrics({"learn_minutes": 30})
    events = []
    for k in range(200):
        power = 300.0 + (k % 7) if k < 150 else 60.0  # the GPU drops to idle power
        events.append({"kind": "gpu", "ts": T0 + k * MIN, "source": "dcgm", "node": "n1", "gpu_uuid": "GPU-1",
                       "util_pct": "busy" if k % 11 == 0 else 90.0, "mem_used_mib": 1.0, "power_w": power,
                       "processes": [], "namespace": None, "pod": None})
    state = DictState()
    alerts = d.update(EventBatch(events), state)
    assert any(a["evidence"]["metric"] == "power_w" and a["entity"] == {"type": "gpu", "id": "GPU-1"}
               for a in alerts)
    assert set(state.data) == {"anomaly.gpu/GPU-1/util_pct", "anomaly.gpu/GPU-1/power_w"}


# -- the batch path against the per-event loop it replaced ---------------------------------------

def _reference_points(d, e: dict):
    """What each event added to which series before the columns (``values()`` of commit fbccdbf)."""
    from ramparts.detectors.anomaly import _num

    if isinstance(d, ModelMetrics):
        yield "requests", 1.0
        lat = _num(e.get("latency_ms"))
        if lat is not None:
            yield "latency_ms", lat
        status = _num(e.get("status"))
        if status is not None:
            yield "error_rate", 1.0 if status >= 500 else 0.0
        out = _num(e.get("tokens_out"))
        if out is not None:
            yield "tokens_out", out
    else:
        for metric in d.MEAN:
            v = _num(e.get(metric))
            if v is not None:
                yield metric, v


def _reference_update(d, batch: EventBatch, state) -> list[dict]:
    """``_MetricSeries.update`` as it was until commit fbccdbf: one Python pass over the events."""
    from ramparts.detectors.anomaly import MINUTE
    from ramparts.detectors.base import merge_alerts

    out: list[dict] = []
    cache: dict[tuple[str, str], dict] = {}
    for e in batch.where("kind", *d.kinds):
        entity, ts = e.get(d.entity_field), e.get("ts")
        if not isinstance(entity, str) or not isinstance(ts, int):
            continue
        minute = ts // MINUTE
        for metric, value in _reference_points(d, e):
            st = cache.get((entity, metric))
            if st is None:
                st = cache[entity, metric] = (state.get(f"{d.name}/{entity}/{metric}")
                                              or {"m": minute, "n": 0, "v": 0.0, "sm": None, "inc": None})
            if minute > st["m"]:
                out.extend(d._close(st, entity, metric, minute))
            elif minute < st["m"]:
                continue
            st["n"] += 1
            st["v"] += value
    for (entity, metric), st in cache.items():
        state.set(f"{d.name}/{entity}/{metric}", st)
    return merge_alerts(out)


_ODD = [None, "12", "busy", True, False, float("nan"), float("inf"), -float("inf"), [1], {"a": 1}, 10 ** 30,
        np.float32(2.5), np.int64(7), np.float64(3.25), 0, 1, 1.0]


def _odd_stream(kind: str, n: int, seed: int) -> list[dict]:
    """Requests (or GPU samples) of a few entities over 40 minutes: mostly well-formed, with every
    kind of bad value in every field, absent fields, stragglers, silences and shuffled stretches."""
    rng = np.random.default_rng(seed)
    entities = ["m1", "m2", "m3"] if kind == "request" else ["GPU-1", "GPU-2"]
    events = []
    for i in range(n):
        ts = T0 + int(i * 40 * MIN / n) + int(rng.integers(0, NS))
        if rng.random() < 0.03:
            ts -= int(rng.integers(1, 4)) * MIN  # a straggler from an earlier minute
        ent = entities[int(rng.integers(0, len(entities)))]
        if kind == "request":
            if i % 500 < 60 and ent == "m3":
                continue  # m3 goes silent for a while: filled minutes, then a gap past fill_minutes
            e = {"kind": "request", "ts": ts, "source": "envoy_json", "model": ent,
                 "latency_ms": float(rng.gamma(4, 20)), "status": int(rng.choice([200, 200, 200, 429, 503])),
                 "tokens_out": int(rng.integers(0, 800)) if rng.random() > 0.05 else None}
            numeric = ("latency_ms", "status", "tokens_out")
        else:
            e = {"kind": "gpu", "ts": ts, "source": "dcgm", "gpu_uuid": ent,
                 "util_pct": float(rng.uniform(0, 100)), "power_w": float(rng.uniform(60, 400))}
            numeric = ("util_pct", "power_w")
        r = rng.random()
        if r < 0.04:
            e[numeric[int(rng.integers(0, len(numeric)))]] = _ODD[int(rng.integers(0, len(_ODD)))]
        elif r < 0.05:
            e.pop(numeric[int(rng.integers(0, len(numeric)))])
        elif r < 0.055:
            e[d_field(kind)] = [None, 7, ["m1"], "", True][int(rng.integers(0, 5))]
        elif r < 0.06:
            e["ts"] = [None, float(ts), str(ts), True][int(rng.integers(0, 4))]
        elif r < 0.062:
            e.pop("ts")
        events.append(e)
        if rng.random() < 0.02:
            events.append({"kind": "prediction", "ts": ts, "model": ent})  # another kind: not read
    # a stretch out of order, as a batch that is not sorted would be
    events[n // 3: n // 3 + 40] = events[n // 3: n // 3 + 40][::-1]
    return events


def d_field(kind: str) -> str:
    return "model" if kind == "request" else "gpu_uuid"


def _cuts(events: list[dict], sizes: list[int]) -> list[list[dict]]:
    out, i, k = [], 0, 0
    while i < len(events):
        out.append(events[i:i + sizes[k % len(sizes)]])
        i += sizes[k % len(sizes)]
        k += 1
    return out


@pytest.mark.parametrize("cls,kind", [(ModelMetrics, "request"), (GpuMetrics, "gpu")])
@pytest.mark.parametrize("sizes", [[1], [7, 300, 2], [5000]])
def test_batches_give_the_alerts_and_state_of_the_per_event_loop(cls, kind, sizes):
    # The columns and the compiled sums against the loop they replace, on odd values of every
    # field, stragglers, silences and unsorted stretches: the same alerts, the same state (to the
    # bit: sums are added in the same order), written in the same order, batch by batch.
    options = {"learn_minutes": 6, "window": 2, "fill_minutes": 3, "alert_score": 0.5}
    events = _odd_stream(kind, 4000, seed=len(sizes))
    new, old = cls(options), cls(options)
    new_state, old_state = DictState(), DictState()
    alerts = 0
    for b in _cuts(events, sizes):
        got, want = new.update(EventBatch(b), new_state), _reference_update(old, EventBatch(b), old_state)
        assert got == want
        assert list(new_state.dirty) == list(old_state.dirty)
        assert orjson.dumps(new_state.take_dirty()) == orjson.dumps(old_state.take_dirty())
        alerts += len(got)
    assert alerts > 0, "the stream raised nothing: the comparison would not see a wrong score"
    assert orjson.dumps(new_state.data) == orjson.dumps(old_state.data)


def test_a_state_written_by_the_per_event_loop_goes_on_alike():
    # State written before this change (by the per-event loop) loads and goes on as it would have.
    options = {"learn_minutes": 6, "window": 2, "alert_score": 0.5}
    events = _odd_stream("request", 3000, seed=9)
    old_state = DictState()
    old = ModelMetrics(options)
    for b in _cuts(events[:1500], [400]):
        _reference_update(old, EventBatch(b), old_state)
    mixed = DictState()
    mixed.data = orjson.loads(orjson.dumps(old_state.data))  # as a changelog would hand it back
    old_state.data = orjson.loads(orjson.dumps(old_state.data))
    new = ModelMetrics(options)
    for b in _cuts(events[1500:], [400]):
        assert new.update(EventBatch(b), mixed) == _reference_update(old, EventBatch(b), old_state)
    assert orjson.dumps(mixed.data) == orjson.dumps(old_state.data)


def test_a_minute_past_int64_is_skipped_not_a_crash():
    # A time beyond 10**29 years has a minute int64 cannot hold: the event is not counted.
    d, state = ModelMetrics({"learn_minutes": 6}), DictState()
    events = requests("m", 3, lambda k: 50.0)
    events.append({**events[-1], "ts": 2 ** 100})
    d.update(EventBatch(events), state)
    assert state.get("anomaly.model/m/requests")["n"] == 4  # the last minute's four requests; not five


@pytest.mark.parametrize("cls,kind", [(ModelMetrics, "request"), (GpuMetrics, "gpu")])
@pytest.mark.parametrize("sizes", [[1], [7, 300, 2], [5000]])
def test_a_columnar_batch_gives_the_alerts_and_state_of_the_dicts_and_makes_no_dict(cls, kind, sizes):
    # The same odd stream as dicts and as columns (events.columnar: one Columns part per key set,
    # so events missing a field or of another kind sit in other parts, read back in batch order).
    options = {"learn_minutes": 6, "window": 2, "fill_minutes": 3, "alert_score": 0.5}
    events = _odd_stream(kind, 4000, seed=10 + len(sizes))
    on_dicts, on_columns = cls(options), cls(options)
    dict_state, column_state = DictState(), DictState()
    alerts = 0
    for b in _cuts(events, sizes):
        batch = columnar(b)
        got, want = on_columns.update(batch, column_state), on_dicts.update(EventBatch(b), dict_state)
        assert got == want
        assert not batch.holds_dicts, "the detector made the events' dicts"
        assert list(column_state.dirty) == list(dict_state.dirty)
        assert orjson.dumps(column_state.take_dirty()) == orjson.dumps(dict_state.take_dirty())
        alerts += len(got)
    assert alerts > 0, "the stream raised nothing: the comparison would not see a wrong score"
    assert orjson.dumps(column_state.data) == orjson.dumps(dict_state.data)
