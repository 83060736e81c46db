"""The extraction detector's statistics, each on a hand-made stream (numpy, seeded)."""

from __future__ import annotations

import math
import zlib

import numpy as np
import pytest

from ramparts.detectors.base import DictState
from ramparts.detectors.extraction import (ExtractionDetector, binomial_tail, median_pairwise, query_rows,
                                           shapiro_w)
from ramparts.events import EventBatch

NS = 1_000_000_000
T0 = 1_795_000_000 * NS
WIDTH = 16


def event(principal: str, t: int, x, probs, src: str | None = None, model: str = "m") -> dict:
    return {"kind": "prediction", "ts": t, "source": "kserve", "principal": principal,
            "src_ip": src if src is not None else f"address-of-{principal}",  # one address per principal
            "model": model, "model_version": "1", "input": [list(map(float, x))], "output": [list(map(float, probs))]}


def natural(rng: np.random.Generator, n: int) -> np.ndarray:
    # A "population" of clustered inputs: 5 centres, features in [0, 10], as real data is structured.
    centres = np.random.default_rng(0).uniform(2, 8, size=(5, WIDTH))
    return np.clip(centres[rng.integers(0, 5, n)] + rng.normal(0, 0.8, (n, WIDTH)), 0, 10).round(2)


def confident(rng: np.random.Generator) -> list[float]:
    p = rng.uniform(0.85, 0.99)
    return [p, 1 - p]


def warm(det: ExtractionDetector, state: DictState, rng: np.random.Generator, n_clients: int = 20,
         per_client: int = 40) -> int:
    """Benign clients that teach the detector its population (from each client's 21st query on:
    streams are judged before they teach); returns the next free time."""
    t = T0
    for i in range(per_client):
        batch = []
        for c in range(n_clients):
            t += NS // 10
            batch.append(event(f"benign-{c}", t, natural(rng, 1)[0], confident(rng)))
        assert det.update(EventBatch(batch), state) == []
    return t


def feed(det, state, principal, X, probs_of, t, src=None, step=NS // 4):
    alerts = []
    for i, x in enumerate(X):
        t += step
        alerts += det.update(EventBatch([event(principal, t, x, probs_of(i), src)]), state)
    return alerts, t


def first_alert_query(alerts, principal=None):
    return alerts[0]["evidence"]["queries"] if alerts else None


# -- pieces ---------------------------------------------------------------------------------------
def test_query_rows_reads_one_row_batches_and_binary_scores():
    rows = query_rows({"input": [1, 2, 3], "output": [0.1, 0.7, 0.2]})
    assert len(rows) == 1 and rows[0][1] == 0.7 and rows[0][2] == 1
    rows = query_rows({"input": [[1, 2], [3, 4]], "output": [0.9, 0.2]})  # a binary model's scores
    assert [(r[1], r[2]) for r in rows] == [(0.9, 1), (0.8, 0)]
    rows = query_rows({"input": "a prompt", "output": None})
    assert rows == [(None, None, None)]
    assert query_rows({"input": [[1, float("nan")]], "output": [[0.5, 0.5]]})[0][0] is None


def test_binomial_tail_matches_the_exact_sum():
    from math import comb

    n, p = 30, 0.05
    for k in (0, 1, 3, 10, 30):
        exact = sum(comb(n, j) * p ** j * (1 - p) ** (n - j) for j in range(k, n + 1))
        assert binomial_tail(k, n, p) == pytest.approx(exact, rel=1e-9, abs=1e-300)


def test_median_pairwise_and_shapiro_on_known_points():
    pts = np.array([[0, 0], [3, 0], [0, 4]], dtype=np.float32)  # distances 3, 4, 5
    assert median_pairwise(pts) == pytest.approx(4.0)
    rng = np.random.default_rng(1)
    assert shapiro_w(rng.normal(size=48)) > 0.9
    assert shapiro_w(np.r_[np.zeros(40), np.full(8, 5.0)]) < 0.6


# -- statistics on hand-made streams ------------------------------------------------------------------
def test_natural_clients_and_a_repeating_client_raise_nothing():
    rng = np.random.default_rng(2)
    det, state = ExtractionDetector(), DictState()
    t = warm(det, state, rng)
    base = natural(rng, 5)
    repeats = np.repeat(base, 40, axis=0)  # five rows, each sent 40 times (retries, a re-run batch job)
    alerts, t = feed(det, state, "cache-client", repeats, lambda i: confident(rng), t)
    assert alerts == []
    s = state.get("extraction.queries/p|" + event("cache-client", 0, [0], [1, 0])["src_ip"] + "|cache-client|m")
    assert s["rep"] == 195 and s["nd"] == 5


def test_uniform_random_queries_are_out_of_range_within_min_queries():
    rng = np.random.default_rng(3)
    det, state = ExtractionDetector(), DictState()
    t = warm(det, state, rng)
    alerts, _ = feed(det, state, "thief", rng.uniform(0, 10, (60, WIDTH)).round(2), lambda i: confident(rng), t)
    assert alerts, "uniform random probes must be caught"
    a = alerts[0]
    assert a["entity"] == {"type": "principal", "id": "thief"}
    ev = a["evidence"]
    assert ev["statistic"] == "out_of_range" and ev["value"] >= ev["threshold"] and ev["queries"] == 20


def test_a_line_search_is_close_queries_without_any_population():
    # Bisection between two points: each probe half as far from the last. No warm-up: the
    # statistic is scale-free and needs no population.
    rng = np.random.default_rng(4)
    det, state = ExtractionDetector(), DictState()
    X = []
    for _ in range(6):
        a, b = natural(rng, 2)
        lo, hi = 0.0, 1.0
        for _ in range(10):
            mid = (lo + hi) / 2
            X.append(a + mid * (b - a))
            lo, hi = (mid, hi) if rng.random() < 0.5 else (lo, mid)
    alerts, _ = feed(det, state, "prober", np.array(X), lambda i: [0.55, 0.45], T0)
    assert alerts
    assert alerts[0]["evidence"]["statistic"] == "close_queries"
    assert alerts[0]["evidence"]["queries"] <= 30


def test_low_confidence_outputs_alert_once_the_population_has_a_base_rate():
    rng = np.random.default_rng(5)
    det, state = ExtractionDetector({"close_ratio": 0.01}), DictState()  # isolate the output statistic
    t = warm(det, state, rng)
    alerts, _ = feed(det, state, "edge", natural(rng, 60), lambda i: [0.52, 0.48], t)
    assert alerts and alerts[0]["evidence"]["statistic"] == "low_confidence"


def test_a_sybil_split_alerts_on_the_shared_source_and_no_key_alone():
    rng = np.random.default_rng(6)
    det, state = ExtractionDetector(), DictState()
    t = warm(det, state, rng)
    X = rng.uniform(0, 10, (64, WIDTH)).round(2)
    alerts = []
    for i, x in enumerate(X):  # 16 keys, four queries each: every key under min_queries
        t += NS // 4
        alerts += det.update(EventBatch([event(f"key-{i % 16}", t, x, confident(rng), src="192.0.2.150")]), state)
    assert {(a["entity"]["type"], a["entity"]["id"]) for a in alerts} == {("src_ip", "192.0.2.150")}
    assert alerts[0]["evidence"]["queries"] == 20


def test_two_benign_clients_behind_one_address_do_not_add_up_to_an_attack():
    rng = np.random.default_rng(7)
    det, state = ExtractionDetector(), DictState()
    t = warm(det, state, rng)
    alerts = []
    for i, x in enumerate(natural(rng, 200)):
        t += NS // 4
        alerts += det.update(EventBatch([event(f"office-{i % 2}", t, x, confident(rng), src="203.0.113.10")]), state)
    assert alerts == []


def _shifted(rng: np.random.Generator, n: int) -> np.ndarray:
    # The same clients after an upstream change: every feature moved by 6 (outside the old range).
    return (natural(rng, n) + 6.0).round(2)


def test_a_shift_of_the_whole_population_is_not_an_attack_and_the_ranges_are_learnt_again():
    rng = np.random.default_rng(10)
    det, state = ExtractionDetector(), DictState()
    t = warm(det, state, rng)
    pop = det.populations[("m", WIDTH)]
    assert pop.epoch == 0
    alerts = []
    for i in range(60):  # the same 20 clients, now all sending shifted inputs
        batch = []
        for c in range(20):
            t += NS // 10
            batch.append(event(f"benign-{c}", t, _shifted(rng, 1)[0], confident(rng)))
        alerts += det.update(EventBatch(batch), state)
    assert alerts == []
    assert pop.epoch == 1 and pop.ready, "the stale ranges must be replaced by the shifted population's"
    # ... and a thief is judged against the new ranges: the old population's inputs are now out of range.
    thief, _ = feed(det, state, "thief", natural(rng, 40), lambda i: confident(rng), t)
    assert thief and thief[0]["evidence"]["statistic"] == "out_of_range"


def test_one_source_moving_out_of_range_alone_is_still_judged_against_its_peers():
    rng = np.random.default_rng(11)
    det, state = ExtractionDetector(), DictState()
    t = warm(det, state, rng)
    alerts = []
    for i in range(40):  # 19 clients as before, one of them sends shifted inputs
        batch = []
        for c in range(20):
            t += NS // 10
            x = _shifted(rng, 1)[0] if c == 0 else natural(rng, 1)[0]
            batch.append(event(f"benign-{c}", t, x, confident(rng)))
        alerts += det.update(EventBatch(batch), state)
    assert {a["entity"]["id"] for a in alerts} == {"benign-0"}
    assert alerts[0]["evidence"]["statistic"] == "out_of_range"
    assert det.populations[("m", WIDTH)].epoch == 0


def test_streams_teach_the_population_only_once_judged_clean():
    rng = np.random.default_rng(12)
    det, state = ExtractionDetector(), DictState()
    t = warm(det, state, rng)
    pop = det.populations[("m", WIDTH)]
    seen = pop.seen
    # Three short-lived thieves, each under min_queries: none of their rows may widen the ranges
    # the next thief is judged against.
    for k in range(3):
        feed(det, state, f"prober-{k}", rng.uniform(0, 10, (19, WIDTH)).round(2), lambda i: confident(rng), t)
    assert pop.seen == seen
    feed(det, state, "benign-0", natural(rng, 5), lambda i: confident(rng), t)
    assert pop.seen == seen + 5  # a judged, clean stream does teach


def test_an_incident_keeps_its_id_and_grows_while_the_attack_goes_on():
    rng = np.random.default_rng(8)
    det, state = ExtractionDetector(), DictState()
    t = warm(det, state, rng)
    alerts, _ = feed(det, state, "thief", rng.uniform(0, 10, (80, WIDTH)).round(2), lambda i: confident(rng), t)
    assert len({a["id"] for a in alerts}) == 1
    assert [a["event_count"] for a in alerts] == sorted(a["event_count"] for a in alerts)
    assert alerts[-1]["event_count"] == 80


def test_state_per_stream_stays_under_2kb():
    import orjson

    rng = np.random.default_rng(9)
    det, state = ExtractionDetector(), DictState()
    t = warm(det, state, rng)
    feed(det, state, "thief", rng.uniform(0, 10, (300, 64)).round(3), lambda i: list(rng.dirichlet(np.ones(10))), t)
    sizes = {k: len(orjson.dumps(v)) for k, v in state.data.items()}
    assert max(sizes.values()) < 2048, max(sizes.items(), key=lambda kv: kv[1])


def test_shapiro_w_is_scipys_statistic_to_the_bit():
    # shapiro_w calls scipy's routine directly (the public wrapper costs ten times the test).
    from scipy.stats import shapiro

    rng = np.random.default_rng(5)
    for n in (3, 4, 17, 40, 48):
        for d in (rng.random(n), rng.exponential(size=n), np.round(rng.normal(size=n), 1)):
            d = d.astype(np.float32).astype(np.float64)
            assert shapiro_w(d) == float(shapiro(d).statistic)
    assert shapiro_w(np.ones(10)) == 0.0


def _mixed_traffic(rng: np.random.Generator) -> list[dict]:
    """Benign clients, a uniform-random prober and a line search, with rows of other shapes mixed in
    (a batch of rows, a binary score, text, a NaN, an event without a principal, one of another kind)."""
    events, t = [], T0
    for i in range(900):
        t += NS // 10
        c = i % 12
        if c < 9:
            events.append(event(f"benign-{c}", t, natural(rng, 1)[0], confident(rng)))
        elif c == 9:
            events.append(event("prober", t, rng.uniform(-50, 50, WIDTH).round(3), [0.5, 0.5]))
        elif c == 10:
            events.append(event("walker", t, np.full(WIDTH, 3.0) + i * 1e-3, confident(rng)))
        else:
            odd = [{"input": natural(rng, 3).tolist(), "output": [0.9, 0.2, 0.7]},
                   {"input": "a prompt", "output": "text"},
                   {"input": [[1.0, float("nan")] * (WIDTH // 2)], "output": [[0.5, 0.5]]},
                   {"principal": None}, {"kind": "request"}][i // 12 % 5]
            events.append({**event(f"odd-{i % 5}", t, natural(rng, 1)[0], confident(rng)), **odd})
    return events


def test_a_batch_of_columns_gives_the_alerts_and_state_of_the_same_dicts():
    from ramparts.events import columnar

    events = _mixed_traffic(np.random.default_rng(21))
    results = []
    for as_batch in (EventBatch, columnar):
        det, state = ExtractionDetector({"min_population": 60}), DictState()
        alerts = []
        for i in range(0, len(events), 25):
            alerts += det.update(as_batch(events[i:i + 25]), state)
        results.append((alerts, state.data))
    assert results[0][0], "the traffic raises alerts (else the comparison says little)"
    assert results[0] == results[1]


def test_project_is_the_per_row_product_to_the_bit():
    from ramparts.detectors.extraction import project, projection

    rng = np.random.default_rng(8)
    for width in (1, 3, 8, 16, 64):
        xs = rng.standard_normal((20_000, width)) * 10.0 ** rng.uniform(-3, 3, size=(20_000, 1))
        xs[::7, 0] *= 1e6  # rows whose products cancel: the bound is loose there
        want = np.array([(v @ projection(width)).astype(np.float32) for v in xs])
        assert np.array_equal(project(xs), want)
        assert np.array_equal(project(xs, slack=1e30), want)  # every row projected alone


# -- the rows of a prediction, against the reading before its one-pass shortcut (frozen copy) --------
def _read_rows_reference(inp, out):
    def row(v):
        return v if type(v) is list and v and frozenset((int, float)).issuperset(map(type, v)) else None

    one = row(inp)
    if one is not None:
        rows = [one]
    elif type(inp) is list and inp and type(inp[0]) is list:
        rows = [row(r) for r in inp]
    else:
        rows = [None]
    if type(out) is list and out and type(out[0]) is list:
        outs = out
    elif type(out) is list and len(rows) > 1 and len(out) == len(rows):
        outs = out
    elif type(out) is list and len(rows) == 1:
        outs = [out]
    elif type(out) in (int, float):
        outs = [out]
    else:
        outs = [None] * len(rows)
    result = []
    for i, r in enumerate(rows):
        o = outs[i] if i < len(outs) else None
        conf = cls = None
        if type(o) is list and len(o) >= 2 and frozenset((int, float)).issuperset(map(type, o)):
            k = max(range(len(o)), key=o.__getitem__)
            conf, cls = float(o[k]), k
        elif type(o) is list and len(o) == 1 and type(o[0]) in (int, float):
            o = o[0]
        if type(o) in (int, float) and 0.0 <= o <= 1.0:
            conf, cls = max(float(o), 1.0 - float(o)), int(o >= 0.5)
        result.append((r, conf, cls))
    return result


def _same_rows(a, b) -> bool:
    # NaN inputs and outputs compare as themselves: by repr, with the types
    return repr(a) == repr(b) and [type(x) for r in a for x in r] == [type(x) for r in b for x in r]


def test_read_rows_reads_every_shape_as_before():
    from hypothesis import given, settings
    from hypothesis import strategies as st

    from ramparts.detectors.extraction import _read_rows

    scalar = st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.floats(0, 1), st.integers(-2, 3),
                       st.booleans(), st.none(), st.text(max_size=2), st.just({"a": 1}))
    numbers = st.lists(st.one_of(st.floats(0, 1), st.integers(0, 1), st.floats(allow_nan=True)), max_size=4)
    value = st.one_of(scalar, numbers, st.lists(st.one_of(scalar, numbers), max_size=4),
                      st.lists(numbers, min_size=1, max_size=4))

    @settings(derandomize=True, max_examples=3000, deadline=None, database=None)
    @given(value, value)
    def check(inp, out):
        assert _same_rows(_read_rows(inp, out), _read_rows_reference(inp, out)), (inp, out)

    check()
    # the common shape, and its edges: one row, several, a score out of range or of another type
    for inp, out in [([[0.5, 1.0]], [0.7]), ([[1, 2], [3, 4]], [0.2, 1]), ([[1.0]], [2.0]), ([[1.0]], [True]),
                     ([[1.0], [2.0]], [0.3, [0.1, 0.9]]), ([[1.0], "x"], [0.3, [0.4]]), ([[1.0]], ["s"])]:
        got = _read_rows(inp, out)
        assert _same_rows(got, _read_rows_reference(inp, out)) and len(got) == len(inp), (inp, out)


# -- a batch's predictions read at once, against the event loop before it (frozen copy) ----------------
def _read_reference(det, ts_col, principal_col, src_col, model_col, input_col, output_col):
    """The reading of ExtractionDetector.update before _read_common (main e1d5517): the event loop,
    then _query_arrays with a numpy row per hash."""
    import zlib

    from ramparts.detectors.extraction import (N_ROW, PROJECTED_DIMS, R_CONF, R_HAS_CONF, R_HASH, R_OFF, R_POP,
                                               R_VEC, R_WIDTH, _finite, _read_rows, project)

    keys, first_ts, slot_of, streams_of, pop_of = [], [], {}, {}, {}
    vecs, confs, pop_rows, todo, ev_rows = [], [], [], [], []
    for ts, principal, src, model, inp, outp in zip(ts_col, principal_col, src_col, model_col, input_col,
                                                   output_col):
        if type(ts) is not int or (principal is None and src is None):
            continue
        model = model or "-"
        try:
            got = streams_of.get((principal, src, model))
        except TypeError:
            got = None
        if got is None:
            got = det._streams_of(principal, src, model, ts, keys, first_ts, slot_of)
            try:
                streams_of[(principal, src, model)] = got
            except TypeError:
                pass
        r0 = len(vecs)
        for vec, conf, _cls in _read_rows(inp, outp):
            if vec is not None and not _finite(vec):
                vec = None
            vecs.append(vec)
            confs.append(conf)
            if vec is None:
                pop_rows.append(-1)
            else:
                pk = (model, len(vec))
                p = pop_of.get(pk)
                if p is None:
                    p = pop_of[pk] = det._population(model, len(vec)).p
                pop_rows.append(p)
        slots, (a, b, source, code) = got
        ev_rows.append((a, b, r0, len(vecs), ts, source, code))
        todo.append((principal, src, model, slots))
    if not todo:
        return None
    ev = np.array(ev_rows, dtype=np.int64)
    n = len(vecs)
    rows = np.zeros((n, N_ROW))
    x = np.zeros((n, PROJECTED_DIMS), dtype=np.float32)
    rows[:, R_POP] = pop_rows
    rows[:, R_HAS_CONF] = [c is not None for c in confs]
    rows[:, R_CONF] = [0.0 if c is None else c for c in confs]
    by_width = {}
    for r, v in enumerate(vecs):
        if v is not None:
            by_width.setdefault(len(v), []).append(r)
    blocks, off = [], 0
    for width, members in by_width.items():
        xs = np.array([vecs[r] for r in members], dtype=np.float64)
        x[members] = project(xs)
        m = len(members)
        rows[members, R_VEC] = 1.0
        rows[members, R_HASH] = [zlib.crc32(v) ^ width for v in xs]
        rows[members, R_OFF] = np.arange(off, off + m * width, width)
        rows[members, R_WIDTH] = width
        blocks.append(xs.ravel())
        off += m * width
    vals = np.concatenate(blocks) if blocks else np.zeros(1)
    return keys, first_ts, todo, ev, rows, x, vals


def _detector_made(det):
    """What reading a batch creates in the detector: model codes, source ids, populations (in order)."""
    n = det._pops.n
    return (list(det._model_codes.items()), list(det._pops.source_ids.items()),
            [(k, p.p) for k, p in det.populations.items()],
            det._pops.st[:n].tobytes(), det._pops.mt[:n].tobytes())


def test_read_common_reads_a_batch_as_the_event_loop_did(monkeypatch):
    """Every batch of predictions: _read_common, when it reads the batch, gives the event loop's
    streams, rows and arrays to the bit and creates the same codes and populations in the same order;
    when it declines, nothing is created (the event loop then reads the batch)."""
    from hypothesis import given, settings
    from hypothesis import strategies as st

    from ramparts.detectors import extraction

    monkeypatch.setattr(extraction, "_COMMON_MIN", 1)  # batches of a prediction or two read at once too

    number = st.one_of(st.floats(-5, 5), st.integers(-3, 3), st.sampled_from([0.5, 1e308, -0.0, 2 ** 60]))
    odd = st.sampled_from([math.nan, math.inf, True, "1", None, 10 ** 400])
    row = st.one_of(st.lists(number, min_size=1, max_size=4).map(lambda r: r if len(r) != 3 else r + [0.0]),
                    st.lists(st.one_of(number, odd), min_size=0, max_size=3))
    common_row = st.sampled_from([2, 4, 5]).flatmap(lambda w: st.lists(number, min_size=w, max_size=w))
    score = st.one_of(st.floats(-0.5, 1.5), st.integers(-1, 2), st.sampled_from([0.5, 0.0, -0.0, 1.0, math.nan]))
    output = st.one_of(score, st.lists(st.floats(0, 1), min_size=1, max_size=3), st.sampled_from([True, None, "x"]))

    @st.composite
    def prediction(draw):
        common = draw(st.integers(0, 9)) > 0
        k = draw(st.integers(1, 3))
        inp = draw(st.lists(common_row if common else row, min_size=k, max_size=k))
        if common:
            out = draw(st.lists(score if draw(st.booleans()) else output, min_size=k, max_size=k))
        else:
            out = draw(st.one_of(output, st.lists(output, max_size=3)))
        ts = draw(st.one_of(st.integers(0, 10 ** 12), st.sampled_from([1.5, None, 2 ** 64]))) if not common \
            else draw(st.integers(0, 10 ** 12))
        principal = draw(st.sampled_from(["k1", "k2", None, 3] if not common else ["k1", "k2", "k3", 3]))
        src = draw(st.sampled_from(["10.0.0.1", "10.0.0.2", None, "-"]))
        model = draw(st.sampled_from(["m", "n", None, "", 0] if draw(st.booleans()) else ["m", "n"]))
        return ts, principal, src, model, inp, out

    taken = [0, 0]

    @settings(derandomize=True, max_examples=1500, deadline=None, database=None)
    @given(st.lists(prediction(), min_size=1, max_size=8), st.booleans())
    def check(events, hashable):
        columns = [list(c) for c in zip(*events)]
        if not hashable:
            columns[1][0] = ["a list"]
        new, ref = ExtractionDetector(), ExtractionDetector()
        for det in (new, ref):  # a population and a model known from an earlier batch
            det._population("m", 2)
            det._streams_of("k0", "10.0.0.9", "n", 0, [], [], {})
        before = _detector_made(new)

        def read():
            got = new._read_common(*columns)
            if got is None:
                assert _detector_made(new) == before
                return new._read_each(*columns)
            taken[0] += 1
            return got
        try:  # bad input the event loop fails on (a time beyond 64 bits, an unhashable source) fails alike
            want = _read_reference(ref, *columns)
        except (TypeError, OverflowError) as e:
            with pytest.raises(type(e)):
                read()
            assert _detector_made(new) == _detector_made(ref)
            return
        got = read()
        taken[1] += 1
        assert _detector_made(new) == _detector_made(ref)
        if want is None:
            assert got is None
            return
        keys, first_ts, todo, ev, rows, x, vals = got
        assert (keys, first_ts) == (want[0], want[1])
        assert [todo[i] for i in range(len(ev))] == want[2]
        for a, b in zip((ev, rows, x, vals), want[3:]):
            assert a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()

    check()
    assert taken[0] > 300, taken  # the batches read at once are many of them (else the test says little)


def test_rows_array_is_np_array_of_the_rows():
    """_read_common's conversion of a block of rows (``_rows_array``: the numbers one after the other)
    against ``np.array(rows, dtype=np.float64)``, to the bit, on ints and floats of every size; an int
    beyond a float's range raises OverflowError alike (the batch is then read event by event)."""
    from ramparts.detectors.extraction import _rows_array

    rng = np.random.default_rng(8)
    odd = [0, -0.0, 5e-324, 1e308, -1e308, 2 ** 53 + 1, -(2 ** 53) - 1, 2 ** 63 + 7, -(2 ** 70) + 3, 2 ** 1000,
           math.nan, math.inf, -math.inf, 1.5, 3]
    for trial in range(300):
        m, width = int(rng.integers(1, 20)), int(rng.integers(1, 9))
        rows = [[odd[int(rng.integers(0, len(odd)))] if rng.random() < 0.3 else
                 (float(rng.standard_normal() * 10.0 ** rng.integers(-300, 300)) if rng.random() < 0.6
                  else int(rng.integers(-2 ** 62, 2 ** 62))) for _ in range(width)] for _ in range(m)]
        want = np.array(rows, dtype=np.float64)
        for got in (_rows_array(rows, width, m), _rows_array(iter(rows), width, m)):
            assert got.dtype == want.dtype and got.shape == want.shape and got.tobytes() == want.tobytes(), trial
    for huge in (10 ** 400, -(10 ** 309)):
        rows = [[1.0, 2.0], [huge, 0.5]]
        with pytest.raises(OverflowError):
            np.array(rows, dtype=np.float64)
        with pytest.raises(OverflowError):
            _rows_array(rows, 2, 2)


def test_memories_decoded_at_once_are_a2b_base64s(monkeypatch):
    """``_load_memory`` (the texts of a full memory decoded in one compiled call) against
    ``_load_memory_each`` (``a2b_base64`` per text): the same placement, rows and counts, or the same
    error, on full, partial, empty and missing texts, and on texts of the full length that are not
    what ``b2a_base64`` writes (a character out of the alphabet, padding in the middle or missing, a
    newline, not ASCII): those send every text through ``a2b_base64``."""
    from ramparts.detectors import extraction
    from ramparts.detectors.extraction import (DISTANCES, HASHES, PROJECTED_DIMS, RESERVOIR, _load_memory,
                                               _load_memory_each, _pack)

    monkeypatch.setattr(extraction, "_B64_AT_ONCE", 0)  # two full texts are decoded at once too
    rng = np.random.default_rng(17)
    kinds = ((np.uint32, 1, HASHES, np.int64), (np.float32, PROJECTED_DIMS, RESERVOIR, np.float32),
             (np.float32, 1, DISTANCES, np.float64))
    fast = odd = 0
    for trial in range(400):
        dtype, width, cap, into = kinds[trial % 3]
        texts = []
        for _ in range(int(rng.integers(0, 12))):
            r = rng.random()
            rows = cap if r < 0.6 else int(rng.integers(0, cap + 4))
            a = (rng.integers(0, 2 ** 32, rows * width) if dtype is np.uint32
                 else rng.standard_normal(rows * width) * 10.0 ** rng.integers(-30, 30))
            texts.append(_pack(a, dtype) if rng.random() < 0.9 else rng.choice([None, ""]))
        full = [k for k, t in enumerate(texts) if t and len(t) == len(_pack(np.zeros(cap * width), dtype))]
        fast += len(full) >= 2
        if full and rng.random() < 0.25:  # one full-length text that is not b2a_base64's
            k = full[int(rng.integers(0, len(full)))]
            t = texts[k]
            at = int(rng.integers(0, len(t) - 4))
            texts[k] = t[:at] + str(rng.choice(["!", "=", "\n", "-", "\u00e9", " "])) + t[at + 1:]
            if rng.random() < 0.3:
                texts[k] = t[:-1] + "A"  # the padding missing (hashes) or a last character changed
            odd += 1
        shape = (len(texts), cap, width) if width > 1 else (len(texts), cap)
        want_t, got_t = np.zeros(shape, dtype=into), np.zeros(shape, dtype=into)
        try:
            want = _load_memory_each(want_t, list(texts), dtype, width, cap)
        except Exception as e:  # noqa: BLE001 - the same error either way
            with pytest.raises(type(e)):
                _load_memory(got_t, list(texts), dtype, width, cap)
            continue
        got = _load_memory(got_t, list(texts), dtype, width, cap)
        assert got == want, trial
        assert got_t.tobytes() == want_t.tobytes(), trial
    assert fast > 150 and odd > 40


def test_row_hashes_are_zlibs_crc32_of_each_row():
    from ramparts.detectors.extraction import _row_hashes

    rng = np.random.default_rng(5)
    for width in (1, 2, 6, 8, 13):
        xs = rng.standard_normal((500, width)) * 10.0 ** rng.integers(-300, 300, size=(500, 1))
        xs[::5, 0], xs[::7, -1], xs[::11, 0] = np.nan, -0.0, np.inf
        assert _row_hashes(xs, width).tolist() == [zlib.crc32(v) ^ width for v in xs]
        assert _row_hashes(xs[:0], width).tolist() == []


def test_row_crc32_kernels_are_zlibs_eight_bytes_and_one_byte_a_step():
    # _row_hashes takes eight bytes a step on a little-endian machine and a byte a step elsewhere:
    # both kernels against zlib on rows of any bits (every byte value, NaN payloads, -0.0), and
    # _row_hashes on a view that is not contiguous.
    from ramparts.detectors.extraction import _crc, _crc_words, _row_hashes
    from ramparts.detectors.extraction_stats import CRC_TABLE, CRC_TABLES8

    rng = np.random.default_rng(11)
    for width in (1, 2, 3, 6, 8, 16):
        words = rng.integers(0, 2**64, size=(300, width), dtype=np.uint64)
        words[::9] = 0
        words[::13] = np.uint64(2**64 - 1)
        words[::17, 0] = np.array([-0.0]).view(np.uint64)[0]
        want = [zlib.crc32(r.tobytes()) for r in words]
        by_word = np.empty(len(words), dtype=np.uint32)
        by_byte = np.empty(len(words), dtype=np.uint32)
        _crc_words()(words, CRC_TABLES8, by_word)
        _crc()(words.view(np.uint8).reshape(len(words), 8 * width), CRC_TABLE, by_byte)
        assert by_word.tolist() == want, width
        assert by_byte.tolist() == want, width
    xs = rng.standard_normal((200, 16))
    assert _row_hashes(xs[:, ::2], 8).tolist() == [zlib.crc32(np.ascontiguousarray(r)) ^ 8 for r in xs[:, ::2]]


def test_streams_loaded_at_once_are_the_streams_loaded_one_by_one():
    from ramparts.detectors.extraction import (DISTANCES, HASHES, PROJECTED_DIMS, RESERVOIR, ExtractionDetector,
                                               _pack, _Streams)

    rng = np.random.default_rng(9)
    states = []
    for k in range(60):
        s = ExtractionDetector._fresh(k)
        if k % 5:  # some streams fresh, the others with memories of every length, over capacity too
            nh, nr, nd = rng.integers(0, HASHES + 3), rng.integers(0, RESERVOIR + 3), rng.integers(0, DISTANCES + 3)
            if k % 5 == 1:  # memories at their capacity (a grown stream's), placed together
                nh, nr, nd = HASHES, RESERVOIR, DISTANCES
            elif k % 5 == 2:
                nh, nd = HASHES, DISTANCES
            scale = 10.0 ** rng.integers(-20, 20)
            s.update(n=int(rng.integers(0, 2 ** 40)), rep=3, nd=float(rng.uniform(0, 300)), ood=1.5, nj=2.0,
                     close=0.25, nc=7.0, low=0.5, inc={"first": 1, "sev": "medium"} if k % 3 == 0 else None,
                     h=_pack(rng.integers(0, 2 ** 32, nh), np.uint32),
                     r=_pack(rng.standard_normal((nr, PROJECTED_DIMS)) * scale, np.float32),
                     d=_pack(rng.uniform(0, 5, nd), np.float32))
            if k % 4 == 0:
                s["ep"] = 2
        states.append(s)
    for some in (states, states[1:2], [s for s in states if s["r"] and len(s["r"]) == len(states[1]["r"])], []):
        one, alln = _Streams(len(some)), _Streams(len(some))
        for slot, s in enumerate(some):
            one.load(slot, dict(s))
        alln.load_all([dict(s) for s in some])
        for name in ("counts", "hashes", "res", "res64", "sq", "pd", "dists", "tl"):
            a, b = getattr(one, name), getattr(alln, name)
            assert a.dtype == b.dtype and a.tobytes() == b.tobytes(), name
        assert one.dicts == alln.dicts
    assert sum(len(s["r"]) == len(states[1]["r"]) for s in states) > 5  # memories at capacity, with others


def _projection_safe_reference(out, f32, bound):
    # project's test in numpy before it was compiled (frozen copy)
    below = (f32.astype(np.float64) + np.nextafter(f32, np.float32(-np.inf)).astype(np.float64)) / 2.0
    above = (f32.astype(np.float64) + np.nextafter(f32, np.float32(np.inf)).astype(np.float64)) / 2.0
    with np.errstate(invalid="ignore"):
        return ((out - below > bound) & (above - out > bound)).all(axis=1)


def test_projection_safe_is_the_numpy_test_it_replaced():
    from ramparts.detectors.extraction_stats import projection_safe

    rng = np.random.default_rng(21)
    unsafe = safe = 0
    for trial in range(300):
        n, d = int(rng.integers(0, 60)), int(rng.integers(1, 14))
        out = rng.standard_normal((n, d)) * 10.0 ** rng.integers(-40, 40, size=(n, 1))
        f32 = out.astype(np.float32)
        # values on, next to and near the rounding boundaries (the midpoints of two float32s)
        mid = (f32.astype(np.float64) + np.nextafter(f32, np.float32(np.inf)).astype(np.float64)) / 2.0
        pick = rng.random((n, d))
        out = np.where(pick < 0.1, mid, out)
        out = np.where((pick >= 0.1) & (pick < 0.2), np.nextafter(mid, -np.inf), out)
        out = np.where((pick >= 0.2) & (pick < 0.25), mid * (1 + 1e-12), out)
        special = rng.random((n, d))
        out[special < 0.01] = np.nan
        out[(special >= 0.01) & (special < 0.02)] = np.inf
        out[(special >= 0.02) & (special < 0.03)] = -np.inf
        out[(special >= 0.03) & (special < 0.04)] = 0.0
        out[(special >= 0.04) & (special < 0.05)] = 1e39  # beyond float32: its float32 is inf
        with np.errstate(over="ignore"):
            f32 = out.astype(np.float32)
        scale = 10.0 ** rng.integers(-60, 5)
        bound = np.abs(out) * scale * rng.random((n, d))
        bound[rng.random((n, d)) < 0.02] = 0.0
        bound[rng.random((n, d)) < 0.01] = np.nan
        want = _projection_safe_reference(out, f32, bound)
        got = np.empty(n, dtype=np.bool_)
        projection_safe(out, f32, bound, got)
        assert got.tolist() == want.tolist(), trial
        unsafe += int((~want).sum())
        safe += int(want.sum())
    assert unsafe > 500 and safe > 500  # both answers, the boundaries reached


def test_streams_packed_at_once_are_the_streams_packed_one_by_one():
    from ramparts.detectors.extraction import (C_CHANGED, C_DISTS, C_EP, C_HASHES, C_RES, C_W, C_WSET, DISTANCES,
                                               HASHES, PROJECTED_DIMS, RESERVOIR, ExtractionDetector, _pack, _Streams)

    rng = np.random.default_rng(12)
    for trial in range(40):
        states = []
        for k in range(int(rng.integers(0, 30))):
            s = ExtractionDetector._fresh(int(rng.integers(0, 2 ** 62)))
            if k % 3:
                nh, nr, nd = rng.integers(0, HASHES + 3), rng.integers(0, RESERVOIR + 3), rng.integers(0, DISTANCES + 3)
                s.update(h=_pack(rng.integers(0, 2 ** 32, nh), np.uint32),
                         r=_pack(rng.standard_normal((nr, PROJECTED_DIMS)) * 10.0 ** rng.integers(-30, 30), np.float32),
                         d=_pack(rng.uniform(0, 5, nd), np.float32))
            if k % 4 == 0:
                del s["ep"]
            states.append(s)
        one, alln = _Streams(len(states)), _Streams(len(states))
        one.load_all([dict(s) for s in states])
        alln.load_all([dict(s) for s in states])
        # what a run leaves: memories changed or not, counts moved, hashes beyond 32 bits (wrapped as before),
        # distances that round to float32, W set or not, the stamp set or not
        for w in (one, alln):
            w.counts[:] = 0.0
            w.tl[:] = 0
        for slot in range(len(states)):
            c = rng.random(one.counts.shape[1]) * 1000.0
            c[C_CHANGED], c[C_WSET], c[C_EP] = rng.random() < 0.8, rng.random() < 0.5, float(rng.integers(0, 2) * 7)
            c[C_HASHES], c[C_RES], c[C_DISTS] = rng.integers(0, HASHES + 1), rng.integers(0, RESERVOIR + 1), \
                rng.integers(0, DISTANCES + 1)
            c[C_W] = rng.random()
            hashes = rng.integers(-2 ** 40, 2 ** 40, HASHES)
            res = (rng.standard_normal((RESERVOIR, PROJECTED_DIMS)) * 100).astype(np.float32)
            dists = rng.standard_normal(DISTANCES) * 10.0 ** rng.integers(-50, 50)
            tl = int(rng.integers(0, 2 ** 63))
            for w in (one, alln):
                w.counts[slot], w.hashes[slot], w.res[slot], w.dists[slot], w.tl[slot] = c, hashes, res, dists, tl
        with np.errstate(over="ignore"):
            want = [orjson_bytes(one.packed(slot)) for slot in range(len(states))]
            got = [orjson_bytes(s) for s in alln.packed_all()]
        assert got == want, trial


def orjson_bytes(s: dict) -> bytes:
    import orjson

    return orjson.dumps(s)  # the keys in their order, the values with their types
