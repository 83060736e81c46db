"""Numenta Anomaly Benchmark (NAB) scoring, reimplemented with numpy and without NAB itself.

NAB (Lavin and Ahmad, "Evaluating Real-time Anomaly Detection Algorithms -- the Numenta
Anomaly Benchmark", ICMLA 2015; github.com/numenta/NAB) scores a detector's anomaly scores
against labelled anomaly *windows*. This module follows NAB v1.x as its code does it
(``nab/sweeper.py``, ``nab/optimizer.py``, ``nab/scorer.py``, ``nab/runner.py``'s
``normalize``, ``config/profiles.json``), not the paper's prose where the two differ:

Per file (``Sweeper.calcSweepScore``):

- the first ``min(floor(0.15 * n), 0.15 * 5000)`` rows are the *probationary period*; they are
  left out of everything below, detections and windows alike;
- a row inside a window at index ``i``, for a window whose right edge is row ``r`` and which
  is ``w`` rows wide, is worth ``tpWeight * S(-(r - i + 1) / w) / S(-1)`` if detected. The
  window's first row is at position -1 and is worth exactly ``tpWeight``; the value falls
  along the sigmoid to ``S(-1/w) / S(-1)`` at the last row. ``S`` is the scaled sigmoid
  ``S(x) = 2 / (1 + exp(5 x)) - 1``, and ``S(x) = -1`` for ``x > 3``;
- a window counts once: its score is the best value among its detected rows (which is the
  first detection, the value falls along the window), or ``-fnWeight`` if none is detected;
- a detected row outside every window costs ``fpWeight * S((i - r) / (w - 1))`` where ``r``
  and ``w`` are the right edge and width of the last window that ended before it, so a
  detection just after a window costs little and one over three window-widths later costs
  ``fpWeight``; a detection before the file's first window costs ``fpWeight``.

Over the corpus (``Sweeper.calcScoreByThreshold`` and ``optimizer.optimizeThreshold``): a
row is detected when its anomaly score is ``>= threshold``. NAB sorts the rows of *all* files
by anomaly score, sweeps the threshold down through every distinct score (starting at 1.1,
where nothing is detected) and keeps the threshold with the largest corpus total; among equal
totals the highest threshold wins. One threshold per profile, for the whole corpus. Here the
sort is done once and the sweep is a cumulative sum: each row adds its false-positive cost,
or the amount by which it raises its window's best value so far.

Normalisation (``Runner.normalize``): ``100 * (raw - null) / (perfect - null)``, where
``raw`` is the sum of the files' scores at the chosen threshold, ``null`` is the score of
NAB's null detector (a constant anomaly score, put through the same threshold optimisation,
which on any real corpus means: nothing detected, ``-fnWeight`` per window that reaches past
the probationary period) and ``perfect`` is ``tpWeight`` times the number of labelled
windows.

Where this departs from NAB's code, only where NAB fails or the input is malformed:

- NAB's ``scoreDataSet`` finds no matching row, and crashes, when the corpus threshold lies
  below every anomaly score of a file; here every row of that file is then detected, which is
  what ``score >= threshold`` means.
- A window one row wide followed by a detection makes NAB divide by zero; here the detection
  is infinitely many widths away, so it costs the full ``fpWeight``.
- NAB's ``perfect`` counts the windows of the whole label file, whichever files were scored;
  here it counts the windows of the files in ``results``. The two agree when the whole corpus
  is scored, which is the only case NAB's runner produces.
- Windows whose start or end is not a timestamp of the file, and anomaly scores outside
  [0, 1] or not finite, are refused with ``ValueError`` (NAB would skip or mis-score them).

Duplicate and out-of-order timestamps (a few NAB files have them, around clock changes) are
handled as NAB does: rows are scored by position, a window starts at the first row equal to
its start (after the previous window) and its right edge is the first row equal to its end.

The three profiles and the published weights:

>>> for name, w in PROFILES.items():
...     print(f"{name:18} tp={w['tpWeight']} fp={w['fpWeight']} fn={w['fnWeight']}")
standard           tp=1.0 fp=0.11 fn=1.0
reward_low_FP_rate tp=1.0 fp=0.22 fn=1.0
reward_low_FN_rate tp=1.0 fp=0.11 fn=2.0

One file of 100 rows (timestamps as int nanoseconds), one window over rows 40..49, a
detector that fires at the window's first row only:

>>> ts = np.arange(100)
>>> scores = np.zeros(100)
>>> scores[40] = 1.0
>>> r = score_corpus({"f.csv": (ts, scores)}, {"f.csv": [(40, 49)]}, "standard")
>>> r["threshold"], r["raw"], r["null"], r["perfect"], r["normalized"]
(1.0, 1.0, -1.0, 1.0, 100.0)
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

#: NAB's ``config/profiles.json`` (v1.x): the cost matrix of each application profile.
PROFILES: dict[str, dict[str, float]] = {
    "standard": {"tpWeight": 1.0, "fpWeight": 0.11, "fnWeight": 1.0, "tnWeight": 1.0},
    "reward_low_FP_rate": {"tpWeight": 1.0, "fpWeight": 0.22, "fnWeight": 1.0, "tnWeight": 1.0},
    "reward_low_FN_rate": {"tpWeight": 1.0, "fpWeight": 0.11, "fnWeight": 2.0, "tnWeight": 1.0},
}

PROBATION_PERCENT = 0.15
_NO_DETECTION = 1.1  # the sweep's first threshold: above every score, nothing is detected


def _scaled_sigmoid(x: np.ndarray) -> np.ndarray:
    """NAB's ``scaledSigmoid``: ``2 * sigmoid(-5 x) - 1``, and -1 beyond 3 window-widths."""
    x = np.asarray(x, dtype=np.float64)
    inner = 2 * (1 / (1 + np.exp(5 * np.minimum(x, 3.0)))) - 1
    return np.where(x > 3.0, -1.0, inner)


_MAX_TP = float(_scaled_sigmoid(np.array(-1.0)))


def _to_ns(timestamps) -> np.ndarray:
    """Timestamps as int64 nanoseconds: ints are taken as nanoseconds, anything else is parsed."""
    arr = np.asarray(timestamps)
    if arr.dtype.kind in "iu":
        return arr.astype(np.int64)
    if arr.dtype.kind != "M":
        arr = np.array(arr.tolist() if arr.dtype.kind == "O" else arr, dtype="datetime64[ns]")
    return arr.astype("datetime64[ns]").view(np.int64)


def load_windows(path: str | Path) -> dict[str, list[tuple[int, int]]]:
    """Read NAB's ``combined_windows.json``: ``"folder/file.csv"`` to its windows, in file order.

    Each window is ``(start, end)`` in int nanoseconds since the epoch (the timestamps are
    naive, as in the data files), both ends inclusive.
    """
    with open(path, encoding="utf-8") as f:
        raw = json.load(f)
    out: dict[str, list[tuple[int, int]]] = {}
    for name, windows in raw.items():
        flat = _to_ns([t for window in windows for t in window]) if windows else np.empty(0, np.int64)
        out[name] = [(int(flat[2 * k]), int(flat[2 * k + 1])) for k in range(len(windows))]
    return out


def load_timestamps(data_dir: str | Path) -> dict[str, np.ndarray]:
    """The timestamps (int64 nanoseconds) of every ``<folder>/<file>.csv`` under NAB's ``data/``."""
    data_dir = Path(data_dir)
    out: dict[str, np.ndarray] = {}
    for path in sorted(data_dir.glob("*/*.csv")):
        with open(path, newline="", encoding="utf-8") as f:
            reader = csv.reader(f)
            header = next(reader)
            column = header.index("timestamp")
            stamps = [row[column] for row in reader if row]
        out[path.relative_to(data_dir).as_posix()] = _to_ns(np.array(stamps))
    return out


@dataclass
class _File:
    """One file's rows past the probationary period, with what each is worth if detected."""

    name: str
    scores: np.ndarray  # anomaly scores of the scorable rows
    value: np.ndarray  # unweighted worth: S(position) in a window, S(past) or -1 outside
    window: np.ndarray  # window number within the file, -1 outside every window
    n_windows: int  # windows labelled for the file (for ``perfect``)
    rows: int  # all rows, probationary ones included


def _first_at_or_after(hits: np.ndarray, i: int) -> int | None:
    k = int(np.searchsorted(hits, i))
    return int(hits[k]) if k < len(hits) else None


def _segment(name: str, t: np.ndarray, windows: Sequence[tuple[int, int]]):
    """Walk the rows as ``Sweeper.calcSweepScore`` does: which window each row is in, and its worth.

    Returns ``window`` (window number or -1) and ``value`` (the unweighted score of a
    detection: ``S(position)`` inside a window, ``S(past)`` after one, -1 before any).
    The loop runs once per window, the rows are filled by slices.
    """
    n = len(t)
    idx = np.arange(n)
    window = np.full(n, -1, dtype=np.int64)
    value = np.empty(n, dtype=np.float64)
    starts = [np.flatnonzero(t == s) for s, _ in windows]
    ends = [np.flatnonzero(t == e) for _, e in windows]
    for k, (s, e) in enumerate(windows):
        if len(starts[k]) == 0 or len(ends[k]) == 0:
            raise ValueError(f"{name}: window {k} ({s}, {e}) does not start and end on timestamps of the file")

    def enter(k: int) -> tuple[int, float]:
        right = int(ends[k][0])  # timestamps.index(end): the first equal row in the file
        width = right - int(starts[k][0]) + 1
        if width < 1:
            raise ValueError(f"{name}: window {k} ends before it starts")
        return right, float(width)

    def fill_outside(lo: int, hi: int, prev: tuple[int, float] | None) -> None:
        if prev is None:
            value[lo:hi] = -1.0
            return
        right, width = prev
        with np.errstate(divide="ignore"):
            past = np.abs(right - idx[lo:hi]) / (width - 1)  # width 1: inf, the full fpWeight
        value[lo:hi] = _scaled_sigmoid(past)

    def fill_window(lo: int, hi: int, k: int, right: int, width: float) -> None:
        window[lo:hi] = k
        value[lo:hi] = _scaled_sigmoid(-(right - idx[lo:hi] + 1) / width)

    i, k, prev = 0, 0, None
    while i < n:
        entry = _first_at_or_after(starts[k], i) if k < len(windows) else None
        fill_outside(i, n if entry is None else entry, prev)
        if entry is None:
            break
        i, cur = entry, k
        k += 1
        right, width = enter(cur)
        while True:  # inside window `cur` from row i
            exit_ = _first_at_or_after(ends[cur], i)
            switch = _first_at_or_after(starts[k], i + 1) if k < len(windows) else None
            if switch is not None and (exit_ is None or switch <= exit_):
                # the next window starts before this one ends: NAB moves into it
                fill_window(i, switch, cur, right, width)
                i, cur = switch, k
                k += 1
                right, width = enter(cur)
                continue
            stop = n if exit_ is None else exit_ + 1
            fill_window(i, stop, cur, right, width)
            prev = None if exit_ is None else (exit_, width)
            i = stop
            break
    return window, value


def _probation_length(rows: int, percent: float) -> float:
    return min(math.floor(percent * rows), percent * 5000)


def _prepare(results, windows, probation_percent: float) -> list[_File]:
    files = []
    for name in sorted(results):
        if name not in windows:
            raise KeyError(f"{name}: no entry in the windows (combined_windows.json)")
        stamps, scores = results[name]
        t = _to_ns(stamps)
        s = np.asarray(scores, dtype=np.float64)
        if t.ndim != 1 or s.shape != t.shape:
            raise ValueError(f"{name}: timestamps and scores must be 1-d and of the same length")
        if not np.all(np.isfinite(s)) or np.any(s < 0) or np.any(s > 1):
            raise ValueError(f"{name}: anomaly scores must be finite and in [0, 1]")
        win, val = _segment(name, t, list(windows[name]))
        keep = np.arange(len(t)) >= _probation_length(len(t), probation_percent)
        files.append(_File(name, s[keep], val[keep], win[keep], len(windows[name]), len(t)))
    return files


def _cost_matrix(profile: str | Mapping[str, float]) -> tuple[str | None, float, float, float]:
    if isinstance(profile, str):
        if profile not in PROFILES:
            raise KeyError(f"unknown profile {profile!r}; NAB's are {sorted(PROFILES)}")
        name, cost = profile, PROFILES[profile]
    else:
        name, cost = None, profile
    return name, float(cost["tpWeight"]), float(cost["fpWeight"]), float(cost["fnWeight"])


def _worth(f: _File, tp: float, fp: float) -> np.ndarray:
    """The weighted sweep score of each scorable row (``AnomalyPoint.sweepScore``)."""
    return np.where(f.window >= 0, f.value * tp / _MAX_TP, f.value * fp)


def _sweep(files: list[_File], tp: float, fp: float, fn: float, scores: list[np.ndarray]):
    """``calcScoreByThreshold`` over the whole corpus: (thresholds, totals), thresholds falling.

    The first row is threshold 1.1 (nothing detected); then one row per distinct anomaly
    score, where every row scoring at least that much is detected.
    """
    s_all = np.concatenate(scores) if files else np.empty(0)
    worth = np.concatenate([_worth(f, tp, fp) for f in files]) if files else np.empty(0)
    offsets = np.cumsum([0] + [f.n_windows for f in files])
    gwin = np.concatenate([np.where(f.window >= 0, f.window + o, -1) for f, o in zip(files, offsets)]) \
        if files else np.empty(0, np.int64)
    scorable_windows = np.unique(gwin[gwin >= 0])
    base = 0.0 - fn * len(scorable_windows)  # every window still missed

    order = np.argsort(-s_all, kind="stable")
    s_sorted, w_sorted, g_sorted = s_all[order], worth[order], gwin[order]
    step = np.where(g_sorted < 0, w_sorted, 0.0)  # a false positive adds its cost

    # a window row adds what it raises its window's best value by (its first detection)
    in_win = np.flatnonzero(g_sorted >= 0)
    by_window = in_win[np.argsort(g_sorted[in_win], kind="stable")]
    bounds = np.flatnonzero(np.diff(g_sorted[by_window])) + 1
    for rows in np.split(by_window, bounds):
        if len(rows) == 0:
            continue
        best = np.maximum.accumulate(np.concatenate([[-fn], w_sorted[rows]]))
        step[rows] = np.diff(best)

    total = base + np.cumsum(step)
    last_of_score = np.flatnonzero(np.append(s_sorted[1:] != s_sorted[:-1], True)) if len(s_sorted) else []
    thresholds = np.concatenate([[_NO_DETECTION], s_sorted[last_of_score]])
    totals = np.concatenate([[base], total[last_of_score]])
    return thresholds, totals


def _score_file(f: _File, scores: np.ndarray, threshold: float, tp: float, fp: float, fn: float) -> dict:
    """``Sweeper.scoreDataSet`` for one file at a fixed threshold (rows with score >= it fire)."""
    worth = _worth(f, tp, fp)
    fired = scores >= threshold
    inside = f.window >= 0
    score = float(np.sum(worth[fired & ~inside]))
    for k in np.unique(f.window[inside]):
        hit = fired & (f.window == k)
        score += max(-fn, float(np.max(worth[hit]))) if hit.any() else -fn
    counts = {
        "tp": int(np.sum(fired & inside)),
        "tn": int(np.sum(~fired & ~inside)),
        "fp": int(np.sum(fired & ~inside)),
        "fn": int(np.sum(~fired & inside)),
    }
    return {"score": score, **counts, "total": len(scores)}


def _score(files: list[_File], profile, threshold: float | None) -> dict:
    name, tp, fp, fn = _cost_matrix(profile)
    scores = [f.scores for f in files]
    if threshold is None:
        thresholds, totals = _sweep(files, tp, fp, fn, scores)
        threshold = float(thresholds[int(np.argmax(totals))])  # first maximum: highest threshold
    per_file = {f.name: _score_file(f, s, threshold, tp, fp, fn) for f, s in zip(files, scores)}
    raw = sum((r["score"] for r in per_file.values()), 0.0)

    # NAB's null detector: one constant score everywhere, through the same optimisation
    constant = [np.zeros_like(f.scores) for f in files]
    null = float(np.max(_sweep(files, tp, fp, fn, constant)[1]))
    n_windows = sum(f.n_windows for f in files)
    perfect = tp * n_windows
    normalized = 100 * (raw - null) / (perfect - null) if perfect != null else float("nan")
    return {
        "profile": name,
        "threshold": threshold,
        "raw": raw,
        "null": null,
        "perfect": perfect,
        "normalized": normalized,
        "windows": n_windows,
        "per_file": per_file,
    }


def score_corpus(
    results: Mapping[str, tuple[Sequence, Sequence[float]]],
    windows: Mapping[str, Sequence[tuple[int, int]]],
    profile: str | Mapping[str, float],
    threshold: float | None = None,
    probation_percent: float = PROBATION_PERCENT,
) -> dict:
    """Score a detector on a corpus under one profile, as NAB's optimise + score + normalise.

    ``results`` maps ``"folder/file.csv"`` to ``(timestamps, anomaly_scores)``: timestamps as
    int nanoseconds, ``datetime64`` or parseable strings, scores in [0, 1], one per row of the
    file. ``windows`` is :func:`load_windows`'s mapping and must have an entry for every file
    scored. ``profile`` is a name in :data:`PROFILES` or a cost matrix with ``tpWeight``,
    ``fpWeight`` and ``fnWeight``. ``threshold=None`` optimises it over the corpus as NAB does;
    a number scores at that threshold instead (rows with a score ``>=`` it are detections).

    Returns ``threshold``, ``raw`` (the sum of the files' scores), ``null``, ``perfect``,
    ``normalized`` (``nan`` when perfect equals null, e.g. a corpus without windows),
    ``windows`` (how many) and ``per_file``: each file's ``score`` and NAB's row counts
    ``tp``, ``tn``, ``fp``, ``fn`` and ``total`` (probationary rows excluded).
    """
    return _score(_prepare(results, windows, probation_percent), profile, threshold)


def score_all_profiles(
    results: Mapping[str, tuple[Sequence, Sequence[float]]],
    windows: Mapping[str, Sequence[tuple[int, int]]],
    probation_percent: float = PROBATION_PERCENT,
) -> dict[str, float]:
    """The normalised NAB score under each of :data:`PROFILES`, each with its own threshold."""
    files = _prepare(results, windows, probation_percent)
    return {name: _score(files, name, None)["normalized"] for name in PROFILES}
