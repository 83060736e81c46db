"""Extraction traffic: a victim that is right, query generators that do what their papers
describe, KServe records that parse to the right caller, and an ``extraction`` scenario whose
files parse clean with every thief inside its labelled interval."""

import json
from collections import Counter

import numpy as np
import pytest

from ramparts.events import check_event
from ramparts.streams.decode import parse_bytes
from ramparts.streams.simulate import extraction as ex
from ramparts.streams.simulate import simulate
from ramparts.timeutil import NS, parse_iso

START = "2026-03-02T09:00:00Z"
KINDS = ex.ATTACK_KINDS + ex.BENIGN_KINDS


@pytest.fixture(scope="module")
def v():
    return ex.victim()


def _parse(lines: bytes):
    events, dead, parser = parse_bytes("kserve", lines)
    assert dead == []
    return events, parser


def test_victim_is_cached_accurate_and_answers_ten_probabilities(v):
    assert ex.victim() is v
    assert (v.predict(v.natural) == v.natural_labels).mean() > 0.9
    assert v.train.shape[1] == v.natural.shape[1] == 64 and len(v.train) + len(v.natural) == 1797
    p = v.predict_proba(v.natural[:5])
    assert p.shape == (5, 10) and np.allclose(p.sum(axis=1), 1)
    with pytest.raises(ValueError):  # shared by every caller: read-only
        v.natural[0, 0] = 1.0


@pytest.mark.parametrize("kind", KINDS)
def test_each_kind_gives_rows_in_the_input_box_fixed_by_the_seed(kind, v):
    X = ex.queries(kind, np.random.default_rng(3), 120, v)
    assert X.shape == (120, 64)
    assert X.min() >= 0 and X.max() <= 16
    assert np.allclose(X * 100, np.round(X * 100))  # two decimals, as a client writes them
    assert np.array_equal(X, ex.queries(kind, np.random.default_rng(3), 120, v))
    assert not np.array_equal(X, ex.queries(kind, np.random.default_rng(4), 120, v))


def test_unknown_kind_and_empty_requests(v):
    with pytest.raises(ValueError, match="unknown query kind 'jbd'"):
        ex.queries("jbd", np.random.default_rng(0), 3, v)
    assert ex.queries("jbda", np.random.default_rng(0), 0, v).shape == (0, 64)


def _unique_rows(X):
    return len(np.unique(X, axis=0))


def test_repeats_resends_exact_rows_and_natural_clients_never_do(v):
    rng = np.random.default_rng(5)
    assert _unique_rows(ex.queries("repeats", rng, 200, v)) < 150
    for kind in ("natural", "batch"):
        X = ex.queries(kind, rng, 200, v)
        assert _unique_rows(X) == 200
        pool = {r.tobytes() for r in v.natural}
        assert all(r.tobytes() in pool for r in X)  # held-out digits as they are


def test_jbda_starts_from_one_natural_digit_per_class_and_doubles_along_signed_steps(v):
    X = ex.queries("jbda", np.random.default_rng(1), 80, v)
    seeds = X[:10]
    idx = [np.flatnonzero((v.natural == s).all(axis=1))[0] for s in seeds]
    assert sorted(v.natural_labels[idx]) == list(range(10))
    # Round r adds one point per point of the set so far: x + lambda*sign(J), clipped.
    for size in (10, 20, 40):
        parent, child = X[:size], X[size:2 * size]
        step = child - parent
        unclipped = (child > 0) & (child < 16)
        # Each pixel moved by exactly lambda, or not at all (zero gradient), or hit the box.
        assert np.all(np.isclose(np.abs(step), ex.JBDA_STEP) | np.isclose(step, 0) | ~unclipped)
        assert (np.abs(step) > 0).sum(axis=1).min() >= 10  # the substitute's gradient moves many pixels
    assert _unique_rows(X) == 80


def test_boundary_bisects_between_two_differently_labelled_digits(v):
    X = ex.queries("boundary", np.random.default_rng(2), 40, v)
    a, b = X[0], X[1]
    la, lb = v.predict(np.vstack([a, b]))
    assert la != lb
    probes = X[2:10]
    t = (probes - a) @ (b - a) / ((b - a) @ (b - a))
    assert np.allclose(probes, a + t[:, None] * (b - a), atol=0.011)  # on the segment, up to rounding
    assert t[0] == pytest.approx(0.5, abs=0.01)
    assert np.all(np.abs(np.diff(t)) <= 0.26)  # halving steps: 1/4, 1/8, ...
    assert abs(t[-1] - t[-2]) < 0.01


def test_random_and_knockoff_lie_outside_the_digits(v):
    rng = np.random.default_rng(6)
    # Digits have a blank left column (features 0, 8, ..., 56); noise and photos do not.
    left = list(range(0, 64, 8))
    assert v.natural[:, left].mean() < 0.5
    for kind in ("random", "knockoff"):
        X = ex.queries(kind, rng, 100, v)
        assert X[:, left].mean() > 3, kind
    photo = ex.queries("knockoff", rng, 100, v)
    # Photos are smooth: neighbouring pixels differ far less than in uniform noise.
    noise = ex.queries("random", rng, 100, v)
    assert np.abs(np.diff(photo, axis=1)).mean() < 0.5 * np.abs(np.diff(noise, axis=1)).mean()


def test_kserve_records_parse_to_predictions_of_the_caller(v):
    X = ex.queries("natural", np.random.default_rng(0), 12, v)
    start = parse_iso(START)
    recs = ex.kserve_records(v, principal="svc-ocr", src_ip="10.9.8.7", X=X, start_ns=start, rate_per_s=0.5,
                             rng=np.random.default_rng(0), rows_per_request=5)
    assert len(recs) == 6 and [t for t, _ in recs] == sorted(t for t, _ in recs)
    events, parser = _parse(b"\n".join(line for _, line in recs))
    assert "unjoined_requests" not in parser.stats.notes
    assert [len(e["input"]) for e in events] == [5, 5, 2]
    assert events[0]["ts"] == start
    for e in events:
        assert (e["kind"], e["principal"], e["src_ip"], e["model"]) == ("prediction", "svc-ocr", "10.9.8.7",
                                                                       ex.VICTIM_MODEL)
        assert check_event(e) == []
        assert all(len(p) == 10 and abs(sum(p) - 1) < 1e-3 for p in e["output"])
    assert np.array_equal(np.array([r for e in events for r in e["input"]]), X)
    assert np.argmax(events[0]["output"][0]) == v.predict(X[:1])[0]


def test_bursty_clients_send_back_to_back_then_sleep_for_minutes():
    ts = ex.schedule(np.random.default_rng(1), 600, start_ns=0, rate_per_s=0.3, rows_per_request=20, bursty=True)
    req = np.unique(ts)
    gaps = np.diff(req) / NS
    assert len(req) == 30 and (ts[:20] == 0).all()
    assert (gaps <= 2).sum() > 10 and (gaps >= 60).sum() >= 5 and not ((gaps > 2) & (gaps < 60)).any()
    assert 600 / 0.3 * 0.5 < req[-1] / NS < 600 / 0.3 * 1.5  # the mean rate holds


@pytest.fixture(scope="module")
def traffic():
    return ex.extraction_traffic(11, n_benign=9, queries_per_benign=40, attack_queries=96)


def test_traffic_has_every_kind_a_shared_nat_and_one_sybil_address(traffic):
    t = traffic
    kinds = Counter(t.principals.values())
    assert kinds == {"benign:natural": 3, "benign:repeats": 3, "benign:batch": 3, "attack:jbda": 1,
                     "attack:boundary": 1, "attack:random": 1, "attack:knockoff": 1, "attack:sybil": 16}
    sybils = t.of_kind("attack:sybil")
    assert sorted(sybils) == ex.sybil_principals(16)
    assert {t.src_ips[p] for p in sybils} == {ex.SYBIL_SRC_IP}
    assert sum(len(t.queries[p]) for p in sybils) == 96
    assert max(len(t.queries[p]) for p in sybils) == 6  # dealt round-robin: 96 / 16
    others = Counter(ip for p, ip in t.src_ips.items() if p not in sybils)
    assert sorted(others.values(), reverse=True)[:2] == [2, 1]  # one NAT pair, else each its own


def test_traffic_parses_and_the_query_times_are_the_requests(traffic):
    t = traffic
    events, _ = _parse(t.lines)
    assert t.lines.count(b"\n") + 1 == 2 * len(events)
    times = [json.loads(line)["time"] for line in t.lines.split(b"\n")]
    assert times == sorted(times)  # merged in time order (one format of timestamp: text order is time order)
    by = {}
    for e in events:
        by.setdefault(e["principal"], []).extend([e["ts"]] * len(e["input"]))
    assert set(by) == set(t.principals)
    for p, ts in by.items():
        # (events come out as responses complete, so two quick requests may swap)
        assert sorted(ts) == t.query_ts[p].tolist() and len(ts) == len(t.queries[p])
        assert t.src_ips[p] == next(e["src_ip"] for e in events if e["principal"] == p)
    # Thieves come after the benign clients have run a while, a few queries a second.
    benign_first = min(ts[0] for p, ts in by.items() if t.principals[p].startswith("benign"))
    for p in t.of_kind("attack:"):
        assert by[p][0] >= t.attack_start_ns > benign_first
    jbda = t.of_kind("attack:jbda")[0]
    assert 1.5 < 95 / ((by[jbda][-1] - by[jbda][0]) / NS) < 6


def test_traffic_is_fixed_by_the_seed(traffic):
    again = ex.extraction_traffic(11, n_benign=9, queries_per_benign=40, attack_queries=96)
    assert again.lines == traffic.lines
    other = ex.extraction_traffic(12, n_benign=9, queries_per_benign=40, attack_queries=96)
    assert other.lines != traffic.lines


def test_scenario_files_parse_clean_and_each_thief_lies_in_its_interval(tmp_path):
    m = simulate("extraction", tmp_path / "ex.json", seed=7, start=START)
    for fmt in m.files:
        _events, dead, _p = parse_bytes(fmt, m.file(fmt).read_bytes())
        assert dead == [], fmt
    events, _ = _parse(m.file("kserve").read_bytes())
    digits = [e for e in events if e["model"] == ex.VICTIM_MODEL]
    labels = json.loads(m.path.read_text())["attacks"]
    assert [a["name"] for a in labels] == ["extraction-jbda", "extraction-boundary", "extraction-random",
                                           "extraction-knockoff", "extraction-sybil"]
    for a in labels:
        assert a["detector"] == "extraction.queries"
        key = "src_ip" if a["entity"]["type"] == "src_ip" else "principal"
        mine = [e["ts"] for e in digits if e[key] == a["entity"]["id"]]
        assert 100 <= len(mine) <= 300, a["name"]
        assert parse_iso(a["start"]) <= min(mine) and max(mine) <= parse_iso(a["end"])
    sybil = [e for e in digits if e["src_ip"] == labels[-1]["entity"]["id"]]
    assert len({e["principal"] for e in sybil}) == 16
    thieves = {a["entity"]["id"] for a in labels} | {e["principal"] for e in sybil}
    honest = {e["principal"] for e in digits if e["principal"] not in thieves and e["src_ip"] not in thieves}
    assert len(honest) == 12  # the benign callers run the whole way through
    assert min(e["ts"] for e in digits if e["principal"] in honest) < parse_iso(labels[0]["start"])
    # The other formats are the baseline's.
    assert m.records["dcgm"] > 0 and m.records["envoy_json"] > 0
