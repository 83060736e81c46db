"""NAB scoring (bench/nab_score.py): hand-worked cases, a row-by-row reference, the shared corpus.

The corpus is read from ../shared/data/nab beside the repository and never copied into it.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from ramparts.bench.nab_score import (
    PROFILES,
    load_timestamps,
    load_windows,
    score_all_profiles,
    score_corpus,
)

NAB = Path(__file__).resolve().parents[2] / "shared" / "data" / "nab"
MINUTE = 60 * 10**9


def S(x: float) -> float:
    """NAB's scaled sigmoid, written out: 2 * sigmoid(-5x) - 1, and -1 beyond 3."""
    return -1.0 if x > 3.0 else 2.0 / (1.0 + math.exp(5.0 * x)) - 1.0


# ---------------------------------------------------------------- hand-worked, one file

N = 100  # rows; the probationary period is floor(0.15 * 100) = 15 rows
LEFT, RIGHT = 40, 49  # one window over rows 40..49, 10 rows wide
TS = 1_400_000_000 * 10**9 + np.arange(N, dtype=np.int64) * MINUTE
WINDOWS = {"f.csv": [(int(TS[LEFT]), int(TS[RIGHT]))]}


def fixed(fired_rows, profile, n=N, windows=WINDOWS, ts=None):
    """The raw score of a detector firing exactly at `fired_rows`, at threshold 0.5."""
    ts = TS if ts is None else ts
    scores = np.zeros(n)
    scores[list(fired_rows)] = 1.0
    return score_corpus({"f.csv": (ts, scores)}, windows, profile, threshold=0.5)


@pytest.mark.parametrize("profile", list(PROFILES))
def test_detection_at_window_start_earns_the_full_tp_weight(profile):
    tp, fn = PROFILES[profile]["tpWeight"], PROFILES[profile]["fnWeight"]
    # position -(49 - 40 + 1) / 10 = -1; NAB divides by S(-1) so the start is worth tpWeight
    expected = tp * S(-1.0) / S(-1.0)
    r = fixed([LEFT], profile)
    assert r["raw"] == pytest.approx(expected) == pytest.approx(tp)
    assert r["per_file"]["f.csv"]["tp"] == 1 and r["per_file"]["f.csv"]["fp"] == 0
    assert r["null"] == pytest.approx(-fn) and r["perfect"] == pytest.approx(tp)
    assert r["normalized"] == pytest.approx(100.0)


@pytest.mark.parametrize("profile", list(PROFILES))
def test_later_detections_in_a_window_earn_less_and_only_the_first_counts(profile):
    tp = PROFILES[profile]["tpWeight"]
    middle = tp * (2 / (1 + math.exp(5 * -0.5)) - 1) / (2 / (1 + math.exp(-5)) - 1)  # row 45: -(49-45+1)/10
    last = tp * (2 / (1 + math.exp(5 * -0.1)) - 1) / (2 / (1 + math.exp(-5)) - 1)  # row 49: -1/10
    assert middle == pytest.approx(0.84828 / 0.98661, abs=1e-5)  # NAB's docstring: S(-0.5), S(-1)
    assert fixed([45], profile)["raw"] == pytest.approx(middle)
    assert fixed([RIGHT], profile)["raw"] == pytest.approx(last)
    # a second detection in the same window adds nothing
    assert fixed([45, 47], profile)["raw"] == pytest.approx(middle)
    assert fixed([45, 46, 47, 48, 49], profile)["raw"] == pytest.approx(middle)


@pytest.mark.parametrize("profile", list(PROFILES))
def test_false_positives_after_a_window_are_weighted_by_distance(profile):
    fp, fn = PROFILES[profile]["fpWeight"], PROFILES[profile]["fnWeight"]
    # row 90 is (90 - 49) / (10 - 1) = 4.6 window-widths past the window: beyond 3, S = -1
    assert fixed([90], profile)["raw"] == pytest.approx(-fn - fp)
    # row 52 is 3/9 of a width past: S(1/3) = 2 / (1 + e^(5/3)) - 1 = -0.68226
    near = fp * (2 / (1 + math.exp(5 * 3 / 9)) - 1)
    assert near == pytest.approx(-0.68226 * fp, rel=1e-5)
    assert fixed([52], profile)["raw"] == pytest.approx(-fn + near)
    # a TP and a later FP add up
    assert fixed([LEFT, 52], profile)["raw"] == pytest.approx(PROFILES[profile]["tpWeight"] + near)


@pytest.mark.parametrize("profile", list(PROFILES))
def test_false_positive_before_any_window_costs_the_full_fp_weight(profile):
    fp, fn = PROFILES[profile]["fpWeight"], PROFILES[profile]["fnWeight"]
    assert fixed([20], profile)["raw"] == pytest.approx(-fn - fp)
    assert fixed([20, 25, 30], profile)["raw"] == pytest.approx(-fn - 3 * fp)


@pytest.mark.parametrize("profile", list(PROFILES))
def test_no_detection_costs_the_fn_weight_per_window(profile):
    fn = PROFILES[profile]["fnWeight"]
    r = fixed([], profile)
    assert r["raw"] == pytest.approx(-fn)
    assert r["normalized"] == pytest.approx(0.0)
    two = {"f.csv": [(int(TS[30]), int(TS[34])), (int(TS[60]), int(TS[64]))]}
    assert fixed([], profile, windows=two)["raw"] == pytest.approx(-2 * fn)


@pytest.mark.parametrize("profile", list(PROFILES))
def test_detections_in_the_probationary_period_are_ignored(profile):
    fp, fn = PROFILES[profile]["fpWeight"], PROFILES[profile]["fnWeight"]
    # rows 0..14 are probationary (floor(0.15 * 100) = 15); row 15 is the first scored
    assert fixed([0, 5, 14], profile)["raw"] == pytest.approx(-fn)
    assert fixed([0, 5, 14], profile)["per_file"]["f.csv"]["total"] == N - 15
    assert fixed([15], profile)["raw"] == pytest.approx(-fn - fp)
    # past 5000 rows the period stops growing: 0.15 * 5000 = 750 rows, not 0.15 * 10000
    n = 10_000
    ts = np.arange(n, dtype=np.int64) * MINUTE
    windows = {"f.csv": [(int(ts[9000]), int(ts[9099]))]}
    assert fixed([749], profile, n=n, windows=windows, ts=ts)["raw"] == pytest.approx(-fn)
    assert fixed([750], profile, n=n, windows=windows, ts=ts)["raw"] == pytest.approx(-fn - fp)


def test_equal_best_totals_pick_the_highest_threshold():
    # the second detection, later in the same window, adds nothing: thresholds 0.9 and 0.8 tie
    scores = np.zeros(N)
    scores[LEFT], scores[45] = 0.9, 0.8
    r = score_corpus({"f.csv": (TS, scores)}, WINDOWS, "standard")
    assert r["raw"] == pytest.approx(1.0)
    assert r["threshold"] == 0.9


@pytest.mark.parametrize("profile", list(PROFILES))
def test_a_repeated_timestamp_is_scored_by_row_position(profile):
    tp, fp, fn = (PROFILES[profile][k] for k in ("tpWeight", "fpWeight", "fnWeight"))
    ts = TS.copy()
    ts[55] = ts[RIGHT]  # the clock steps back: the window's end stamp comes again at row 55
    middle = tp * S(-0.5) / S(-1.0)  # the right edge is the first row with the end stamp, 49
    assert fixed([45], profile, ts=ts)["raw"] == pytest.approx(middle)
    # row 55 lies after the window (it was left at row 49): 6 rows past a 10-row window
    assert fixed([55], profile, ts=ts)["raw"] == pytest.approx(-fn + fp * S(6 / 9))


def test_overlapping_windows_follow_the_reference():
    # the second window starts inside the first: NAB moves into the second there
    windows = [(int(TS[30]), int(TS[45])), (int(TS[40]), int(TS[60]))]
    scores = np.round(np.random.default_rng(3).random(N), 2)
    files = {"f.csv": (TS.tolist(), scores.tolist(), windows)}
    for profile in PROFILES:
        for threshold, score in reference_sweep(files, PROFILES[profile]):
            r = score_corpus({"f.csv": (TS, scores)}, {"f.csv": windows}, profile, threshold=threshold)
            assert r["raw"] == pytest.approx(score, abs=1e-9)


def test_a_window_inside_the_probationary_period_is_not_scored():
    windows = {"f.csv": [(int(TS[2]), int(TS[6]))]}
    r = fixed([3], "standard", windows=windows)
    assert r["raw"] == 0.0 and r["null"] == 0.0
    assert r["perfect"] == 1.0  # NAB's perfect counts every labelled window


# ---------------------------------------------------------------- a row-by-row reference


def reference_sweep(files, cost, probation=0.15):
    """NAB's sweep written out row by row, slow and plain: [(threshold, corpus score)], falling.

    `files` maps a name to (timestamps list, scores list, windows list). A window is entered
    at the row equal to its start, its right edge is the first row equal to its end, and it is
    left after the row equal to its end; after it, rows are false positives weighted by their
    distance from it; rows inside the probationary period are dropped.
    """
    tp, fp, fn = cost["tpWeight"], cost["fpWeight"], cost["fnWeight"]
    rows = []  # (anomaly score, worth if detected, window key or None)
    for name, (t, s, windows) in files.items():
        t, pending = list(t), list(windows)
        current, previous = None, None
        probation = min(math.floor(0.15 * len(t)), 0.15 * 5000)
        for i, (stamp, score) in enumerate(zip(t, s)):
            if pending and stamp == pending[0][0]:
                current = pending.pop(0)
                right = t.index(current[1])
                width = right - t.index(current[0]) + 1
            if current is not None:
                worth, key = S(-(right - i + 1) / width) * tp / S(-1.0), (name, current[0])
            elif previous is None:
                worth, key = -1.0 * fp, None
            else:
                worth, key = S(abs(previous[0] - i) / (previous[1] - 1)) * fp, None
            if i >= probation:
                rows.append((score, worth, key))
            if current is not None and stamp == current[1]:
                previous, current = (i, width), None
    rows.sort(key=lambda r: -r[0])
    best = {key: -fn for _, _, key in rows if key is not None}
    fp_total, windows_total = 0.0, sum(best.values())
    out, threshold = [], 1.1
    for score, worth, key in rows:
        if score != threshold:
            out.append((threshold, fp_total + windows_total))
            threshold = score
        if key is None:
            fp_total += worth
        elif worth > best[key]:
            windows_total += worth - best[key]
            best[key] = worth
    out.append((threshold, fp_total + windows_total))
    return out


def synthetic_file(rng, n, n_windows, duplicates):
    t = np.arange(n, dtype=np.int64) * MINUTE
    if duplicates:  # a few repeated stamps, as around the clock changes in NAB's data
        for i in rng.choice(np.arange(20, n - 1), size=5, replace=False):
            t[i] = t[i - 1]
    edges = np.sort(rng.choice(np.arange(n // 5, n), size=2 * n_windows, replace=False))
    windows = [(int(t[a]), int(t[b])) for a, b in zip(edges[::2], edges[1::2])]
    windows = [(a, b) for a, b in windows if np.count_nonzero(t == a) == 1 and np.count_nonzero(t == b) == 1]
    scores = np.round(rng.random(n), 2)  # rounded: many ties between rows
    return t, scores, windows


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("profile", list(PROFILES))
def test_matches_the_row_by_row_reference_at_every_threshold(seed, profile):
    rng = np.random.default_rng(seed)
    files = {f"s/{k}.csv": synthetic_file(rng, int(rng.integers(60, 400)), int(rng.integers(0, 4)), k % 2 == 1)
             for k in range(4)}
    results = {name: (t, s) for name, (t, s, _) in files.items()}
    windows = {name: w for name, (_, _, w) in files.items()}
    ref = reference_sweep(files, PROFILES[profile])
    best_threshold, best_score = max(ref, key=lambda r: r[1])  # max keeps the first: highest threshold
    r = score_corpus(results, windows, profile)
    assert r["threshold"] == best_threshold
    assert r["raw"] == pytest.approx(best_score, abs=1e-9)
    for threshold, score in ref[1:: max(1, len(ref) // 15)]:
        assert score_corpus(results, windows, profile, threshold=threshold)["raw"] == pytest.approx(score, abs=1e-9)


def test_refuses_windows_off_the_timestamps_and_scores_outside_0_1():
    scores = np.zeros(N)
    with pytest.raises(ValueError, match="timestamps"):
        score_corpus({"f.csv": (TS, scores)}, {"f.csv": [(int(TS[40]) + 1, int(TS[49]))]}, "standard")
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        score_corpus({"f.csv": (TS, scores + 2)}, WINDOWS, "standard")
    with pytest.raises(KeyError):
        score_corpus({"g.csv": (TS, scores)}, WINDOWS, "standard")


# ---------------------------------------------------------------- the shared NAB corpus


@pytest.fixture(scope="module")
def corpus():
    labels, data = NAB / "combined_windows.json", NAB / "data"
    if not labels.is_file() or not data.is_dir():
        pytest.fail(f"the NAB corpus is expected at {NAB} (combined_windows.json and data/), "
                    "in ../shared beside the repository; it is not part of the repository")
    windows, stamps = load_windows(labels), load_timestamps(data)
    missing = sorted(set(windows) - set(stamps))
    if missing or not stamps:
        pytest.fail(f"the NAB corpus at {NAB} lacks data files named in combined_windows.json: {missing}")
    return windows, stamps


def perfect_detector(windows, stamps):
    out = {}
    for name, t in stamps.items():
        s = np.zeros(len(t))
        for start, _ in windows[name]:
            s[np.flatnonzero(t == start)[0]] = 1.0
        out[name] = (t, s)
    return out


def random_detector(stamps, seed=0):
    rng = np.random.default_rng(seed)
    return {name: (t, rng.random(len(t))) for name, t in stamps.items()}


def test_corpus_loads_with_every_window_on_its_file(corpus):
    windows, stamps = corpus
    n_windows = sum(len(w) for w in windows.values())
    assert n_windows > 0 and len(stamps) == len(windows)
    for name, ws in windows.items():
        for start, end in ws:
            assert np.count_nonzero(stamps[name] == start) == 1 and np.count_nonzero(stamps[name] == end) == 1


@pytest.mark.parametrize("profile", list(PROFILES))
def test_corpus_perfect_detector_scores_100(corpus, profile):
    windows, stamps = corpus
    n_windows = sum(len(w) for w in windows.values())
    r = score_corpus(perfect_detector(windows, stamps), windows, profile)
    assert r["raw"] == pytest.approx(r["perfect"]) == pytest.approx(PROFILES[profile]["tpWeight"] * n_windows)
    assert r["threshold"] == 1.0
    assert r["normalized"] == pytest.approx(100.0)


@pytest.mark.parametrize("profile", list(PROFILES))
def test_corpus_null_detector_scores_0(corpus, profile):
    windows, stamps = corpus
    n_windows = sum(len(w) for w in windows.values())
    r = score_corpus({name: (t, np.zeros(len(t))) for name, t in stamps.items()}, windows, profile)
    # no window of this corpus lies inside a probationary period, so every one is missed
    assert r["raw"] == pytest.approx(r["null"]) == pytest.approx(-PROFILES[profile]["fnWeight"] * n_windows)
    assert r["normalized"] == pytest.approx(0.0)


def test_corpus_random_detector_scores_far_below_perfect(corpus):
    windows, stamps = corpus
    scores = score_all_profiles(random_detector(stamps), windows)
    assert set(scores) == set(PROFILES)
    for profile, score in scores.items():
        assert -50.0 < score < 50.0, (profile, score)


def test_corpus_random_detector_matches_the_row_by_row_reference(corpus):
    windows, stamps = corpus
    results = random_detector(stamps, seed=1)
    files = {name: (t.tolist(), s.tolist(), windows[name]) for name, (t, s) in results.items()}
    best_threshold, best_score = max(reference_sweep(files, PROFILES["standard"]), key=lambda r: r[1])
    r = score_corpus(results, windows, "standard")
    assert r["threshold"] == best_threshold
    assert r["raw"] == pytest.approx(best_score, abs=1e-8)


@pytest.mark.parametrize("profile", list(PROFILES))
def test_optimised_threshold_beats_other_thresholds(corpus, profile):
    windows, stamps = corpus
    results = random_detector(stamps)
    best = score_corpus(results, windows, profile)
    others = [0.5, 0.99, 0.999, best["threshold"] - 1e-4, min(1.0, best["threshold"] + 1e-5)]
    for threshold in others:
        other = score_corpus(results, windows, profile, threshold=threshold)
        assert other["threshold"] == threshold
        assert best["raw"] >= other["raw"], (threshold, other["raw"], best["raw"])
    # and the optimum is a real trade-off here: a lower threshold does strictly worse
    assert score_corpus(results, windows, profile, threshold=0.5)["raw"] < best["raw"]
