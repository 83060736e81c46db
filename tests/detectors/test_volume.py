"""extraction.volume: bursts of answered queries and tokens against a principal's own peak and
the model's other callers, on hand-made gateway and prediction streams (seeded)."""

from __future__ import annotations

import random
from operator import itemgetter

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


# -- the compiled count (columns per batch) against the event-by-event loop it stands for ----------------
def _mixed_stream(seed: int, odd: bool) -> list[list[dict]]:
    """Batches of requests and predictions of a dozen principals over 40 minutes: heavy and light
    callers, newcomers from minute 12 on (judged against the population), bursts over their own
    peak, refused and failed requests, missing and negative token counts, stragglers a minute or
    more late (in batches of their own, sorted as ``process_batch`` sorts), events of other kinds;
    with ``odd``, some batches also hold values the columns cannot (a float status, a bool time,
    an unhashable source, a token count beyond 64 bits)."""
    rng = random.Random(seed)
    principals = [f"key-{i}" for i in range(8)] + [None, 7]
    events = []
    for minute in range(40):
        for p in principals + ([f"new-{minute}"] if minute >= 12 and minute % 5 == 0 else []):
            n = rng.choice([0, 2, 5, 30]) + (rng.choice([0, 0, 0, 200]) if minute > 4 else 0)
            model = rng.choice(["llama", "llama", "mistral", "", None])
            for _ in range(n):
                t = T0 + minute * MIN + rng.randrange(MIN)
                tokens = (rng.choice([450, 3000, None, -5, 0]), rng.choice([220, 90_000, None]))
                e = req(p, t, status=rng.choice([200] * 10 + [401, 403, 429, 500, None]), tokens=tokens,
                        model=model)
                if rng.random() < 0.05:
                    e = {"kind": "prediction", "ts": t, "source": "kserve", "principal": p,
                         "src_ip": rng.choice(["192.0.2.9", None]), "model": model,
                         "input": rng.choice([[[0.0] * 3] * rng.randint(1, 40), [1.0], None])}
                elif rng.random() < 0.02:
                    e = {"kind": "gpu", "ts": t, "source": "dcgm", "node": "n1"}
                events.append(e)
    events.sort(key=lambda e: e["ts"])
    cuts = sorted(rng.sample(range(1, len(events)), 60))
    batches = [events[a:b] for a, b in zip([0, *cuts], [*cuts, len(events)])]
    late = [dict(e, ts=e["ts"] - rng.randint(1, 3) * MIN) for e in rng.sample(events, 40)]
    for k, e in enumerate(late):
        batches.insert(rng.randrange(5, len(batches)), [e] if k % 2 else sorted(late[k:k + 5], key=lambda x: x["ts"]))
    if odd:
        for b in rng.sample(batches, 8):
            e = rng.choice([e for e in b if e["kind"] == "request"] or b)
            e.update(rng.choice([{"status": 200.0}, {"ts": True}, {"src_ip": ["x"]}, {"tokens_in": 1 << 70},
                                 {"status": "200"}]))
    return batches


def _run_batches(det: VolumeDetector, batches, per_event: bool) -> tuple[list, DictState]:
    state, out = DictState(), []
    for b in batches:
        batch = EventBatch(b)
        out.append(det._update_events(batch, state) if per_event else det.update(batch, state))
    return out, state


def test_compiled_counts_decide_what_the_event_by_event_loop_decides():
    import copy

    opts = {"min_minutes": 3, "min_queries": 40, "min_tokens": 60_000, "ratio": 2.0, "gap_seconds": 90.0,
            "half_life_hours": 0.5}
    for seed, odd in ((1, False), (2, False), (3, True)):
        batches = _mixed_stream(seed, odd)
        want_det, got_det = VolumeDetector(opts), VolumeDetector(opts)
        want, want_state = _run_batches(want_det, copy.deepcopy(batches), per_event=True)
        got, got_state = _run_batches(got_det, copy.deepcopy(batches), per_event=False)
        assert sum(map(len, want)) > 5 and any(a["evidence"]["reference"] == "population" for b in want for a in b)
        assert got == want
        assert list(got_state.data.items()) == list(want_state.data.items())  # the same states, in the same order
        assert got_det.peaks == want_det.peaks and list(map(list, got_det.peaks.values())) == \
            list(map(list, want_det.peaks.values()))
        assert got_det.first_minute == want_det.first_minute


def test_columns_fall_back_to_the_event_loop_for_values_they_cannot_hold():
    det = VolumeDetector()
    good = [req("k", T0 + i * NS) for i in range(3)]
    assert det._columns(EventBatch(good)) is not None
    for odd in ({"status": 200.0}, {"ts": True}, {"src_ip": ["x"]}, {"tokens_out": 1 << 70}, {"tokens_in": False}):
        assert det._columns(EventBatch([*good, {**good[0], **odd}])) is None, odd
    # a state written by the event loop goes on in the compiled count, and the other way round
    state = DictState()
    events = [req("k", T0 + i * NS // 4) for i in range(600)]
    det._update_events(EventBatch(events[:300]), state)
    det.update(EventBatch(events[300:]), state)
    ref_state = DictState()
    VolumeDetector()._update_events(EventBatch(events), ref_state)
    assert state.data == ref_state.data


def test_token_counts_at_the_edges_count_as_the_event_loop_counts_them():
    # The columns read token counts as floats (None as NaN): counts under 0, at and over the 2^40
    # bound and beyond 64 bits (either sign) decide what the event loop decides; a count beyond a
    # float's range goes to the event loop.
    assert VolumeDetector()._columns(EventBatch([req("k", T0, tokens=(1 << 2000, 1))])) is None
    edges = [None, 0, -5, -(1 << 70), (1 << 40) - 1, 1 << 40, (1 << 40) + 1, 1 << 53, 1 << 70]
    rng = random.Random(7)
    opts = {"min_minutes": 1, "min_queries": 3, "min_tokens": 5_000, "ratio": 1.5}
    for k, edge in enumerate(edges):
        # six quiet minutes (20 a minute), then a burst (280 in a minute): an alert to judge
        times = [T0 + i * 3 * NS for i in range(120)] + [T0 + 6 * MIN + i * NS // 5 for i in range(280)]
        events = [req("k", t, tokens=(rng.choice([100, None, 7000]), rng.choice([50, None]))) for t in times]
        for e in rng.sample(events, 3):
            e["tokens_in" if k % 2 else "tokens_out"] = edge
        batches = [events[i:i + 50] for i in range(0, len(events), 50)]
        want, want_state = _run_batches(VolumeDetector(opts), batches, per_event=True)
        got, got_state = _run_batches(VolumeDetector(opts), batches, per_event=False)
        assert got == want and list(got_state.data.items()) == list(want_state.data.items()), edge
        assert sum(map(len, want)) > 0


def test_query_counts_of_predictions_are_the_per_prediction_rule():
    """The query rows counted per prediction by whole columns are the per-prediction rule of before
    (frozen copy): len(input) for a non-empty list of lists, else 1."""
    from hypothesis import given, settings
    from hypothesis import strategies as st

    from ramparts.detectors.volume import _query_counts

    leaf = st.one_of(st.floats(0, 1), st.integers(0, 3), st.none(), st.text(max_size=2))
    value = st.one_of(leaf, st.lists(leaf, max_size=3), st.lists(st.lists(leaf, max_size=3), max_size=3))

    @settings(derandomize=True, max_examples=1000, deadline=None, database=None)
    @given(st.lists(value, max_size=6))
    def check(inputs):
        want = [len(inp) if type(inp) is list and inp and type(inp[0]) is list else 1 for inp in inputs]
        assert _query_counts(inputs) == want

    check()
    assert _query_counts([[[1.0]], [[1.0], [2.0]]]) == [1, 2]  # the common shape, by columns


def test_columns_write_each_state_as_a_new_dict_with_every_stored_key_in_its_order():
    # The compiled count writes each stream's state back as a new dict: a key it does not know (here
    # "x", first, and "y", last) stays where it was, with its value, as the event loop's copy keeps it,
    # and the stored dict itself is not changed (a guard for a cheaper read or write of the states).
    rng = random.Random(7)
    events = sorted(background(rng, 3) + minute_of("key-c", 2, 30, rng), key=lambda e: e["ts"])
    first, rest = events[:900], events[900:]
    states = []
    for per_event in (True, False):
        det, state = VolumeDetector(), DictState()
        det.update(EventBatch(first), state)
        stored = {}
        for key, s in list(state.data.items()):
            state.data[key] = stored[key] = {"x": key, **s, "y": [1, 2]}
        before = {key: (list(s.items()), id(s)) for key, s in stored.items()}
        (det._update_events if per_event else det.update)(EventBatch(rest), state)
        assert {key: (list(s.items()), id(s)) for key, s in stored.items()} == before  # not changed in place
        assert all(state.data[key] is not s for key, s in stored.items())
        states.append(list(map(list, map(dict.items, state.data.values()))))
        assert all(list(s)[0] == "x" and list(s)[-1] == "y" for s in state.data.values() if "y" in s)
    assert states[0] == states[1] and sum("y" in map(itemgetter(0), s) for s in states[1]) >= 3
