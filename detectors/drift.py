"""Drift of a model version's inputs and outputs: PSI and KS on binned windows, and river's
ADWIN, KSWIN and PageHinkley on per-minute statistics of the outputs.

Per model version (a ``prediction``'s ``model`` and ``model_version``; a gateway ``request``
names a model and, usually, no version) the detector follows a few features:

* predictions: the first ``MAX_INPUTS`` (8) numeric input features (``x0``.., or the keys of
  dict rows), and the output: ``score`` for one number per row (a probability, a regression
  value or a class id), ``confidence`` (the top probability) and ``top_class`` for a vector
  of class probabilities per row;
* requests: ``tokens_in`` (prompt length: the input), ``tokens_out`` (of answered requests)
  and ``error`` (the model failed or rejected the request: 5xx, and 4xx other than
  authentication, 404/405 and rate limiting, which never reached the model).

A version's first ``window_rows`` rows (a prediction row, or a request) are its
**reference**; the first ``EDGE_ROWS`` (20) of them set ``bins`` quantile bin edges per
feature (they are kept only until then: the state of a version stays under 2 KB). Then every
``window_rows`` rows form a **current window** (tumbling; a window also ends when the version
has been idle for ``gap_seconds``), judged against the reference per feature by

* the population stability index, PSI = sum((q - p) ln(q / p)) over the bins;
* the two-sample Kolmogorov-Smirnov statistic on the binned CDFs (the largest CDF gap at a
  bin edge: a lower bound of the unbinned statistic).

A feature drifted when PSI reaches ``psi_threshold`` or KS ``ks_min_statistic``, and the
finding is significant: p-value at most ``p_value`` (KS: scipy's ``kstwo`` at the effective
sample size, as ``ks_2samp(method="asymp")``; PSI: ``n m / (n + m)`` PSI is about
chi-square with bins - 1 degrees of freedom when nothing changed). A new version starts a
new reference (a new state key): a deploy changes outputs by design.

The output statistics that matter as a stream (mean confidence, or mean score of a
regression; mean log output length; error rate) are also cut into **chunks**: a chunk closes
at the first row of a new minute once it holds ``chunk_rows`` values, and its mean, in
reference standard deviations from the reference mean, is one point for river's ``ADWIN``,
``KSWIN`` and ``PageHinkley``. river 0.26's ADWIN lives in Rust with no access to its buckets
and no pickling, so the state keeps the last ``POINTS`` (24) points since each detector's
last alarm, and at every point a fresh ADWIN is fed them, each point as ``chunk_rows`` values
(at most 64) around its mean with the reference's spread (ADWIN's bounds need many values;
two dozen means would never convince it), and a fresh KSWIN (seeded by the point count) is
fed the means: their answer is a function of the JSON state, the same after a worker
restart. PageHinkley's six numbers are stored and put back. A river alarm counts only when
the points since the change it found moved at least ``min_effect`` reference standard
deviations (with thousands of rows, every detector finds changes too small to matter).

Alerts (``drift.model`` on ``("model", "<model>:<version>")``, or ``("model", "<model>")``
when the events name no version): one incident per model version and feature family
(``input`` or ``output``), open while findings keep coming (a finding after
``clear_windows`` windows of rows without one opens a new incident). The evidence names the
feature, statistic, value and threshold of the strongest finding, every finding of the
judgement, the reference window, the current window and ``since`` (the first event of the
incident's first drifted window). Severity by the strongest finding's value over its
threshold: under 2 low, under 4 medium, else high.

Every sum over values is exact (integer counts; stream values quantised to 1e-4 and summed
as integers), so state and alerts do not depend on how the events were cut into batches.
"""

from __future__ import annotations

import math
from functools import cache, lru_cache
from itertools import count, repeat
from typing import Any, Callable

import numpy as np
import orjson
from pydantic import Field
from river.drift import ADWIN, KSWIN, PageHinkley

from ramparts.events import EventBatch
from ramparts.timeutil import format_rfc3339

from .base import Detector, StateStore, alert_id, make_alert, merge_alerts
from .jit import jit
from .kind_columns import kind_values
from .typed_columns import TypedColumns

NS = 1_000_000_000
MINUTE = 60 * NS
EDGE_ROWS = 20  # rows whose quantiles set the bin edges (kept in the state until then)
MAX_INPUTS = 8  # input features followed per version
MAX_NAME = 16  # characters kept of a dict row's feature name
POINTS = 24  # chunk points kept per stream for ADWIN and KSWIN
KSWIN_STAT = 8  # KSWIN's most recent points, tested against as many older ones
ADWIN_VALUES = 64  # values a point stands for in ADWIN at most (its replay cost)
Q = 10_000  # stream values are summed as integers of 1e-4: exact whatever the batch cuts
MAX_FINDINGS = 8  # findings listed in one alert's evidence
MAX_REFERENCES = 4096  # versions whose phase-2 arrays a detector keeps between batches (then it starts over)
# Requests that never reached the model: they say nothing about its outputs.
NOT_THE_MODEL = frozenset({401, 403, 404, 405, 407, 429})
SEVERITY_STEPS = ((2.0, "low"), (4.0, "medium"))
SEVERITIES = ("info", "low", "medium", "high", "critical")

REQUEST_FEATURES = ("tokens_in", "tokens_out", "error")
REQUEST_INPUTS = 1  # tokens_in
REQUEST_STREAMS = ("tokens_out", "error")
STATISTIC_NAMES = {"psi": "PSI", "ks": "KS statistic", "adwin": "ADWIN", "kswin": "KSWIN",
                   "page_hinkley": "PageHinkley"}


# -- the statistics -------------------------------------------------------------------------------
def quantile_edges(values: np.ndarray, bins: int) -> list[float] | None:
    """Bin edges at the ``bins``-quantiles of ``values`` (4 significant digits, distinct).

    Bins are right-closed: value ``v`` falls in bin ``i`` when ``edges[i-1] < v <= edges[i]``,
    so a discrete feature keeps its levels apart.

    >>> quantile_edges(np.arange(1.0, 21.0), 4)
    [5.75, 10.5, 15.25]
    >>> quantile_edges(np.array([0.0] * 18 + [1.0] * 2), 10)
    [0.0, 0.1]
    """
    v = values[np.isfinite(values)]
    if len(v) == 0:
        return None
    qs = np.quantile(v, np.arange(1, bins) / bins)
    return sorted({float(f"{q:.4g}") for q in qs.tolist()})


def histogram(edges: list[float], values: np.ndarray) -> np.ndarray:
    """Counts of the finite ``values`` per right-closed bin of ``edges`` (``len(edges) + 1`` bins).

    >>> histogram([0.0, 0.1], np.array([0.0, 0.0, 1.0, np.nan])).tolist()
    [2, 0, 1]
    """
    v = values[np.isfinite(values)]
    return np.bincount(np.searchsorted(np.asarray(edges), v, side="left"), minlength=len(edges) + 1)


def psi(reference, current, smoothing: float = 0.5) -> float:
    """Population stability index of two histograms on the same bins.

    ``sum((q - p) * ln(q / p))`` over the bins either histogram uses, ``smoothing`` added to
    each such bin's count so that an empty bin does not make it infinite. 0 for equal
    proportions; by convention over 0.1 a moderate shift, over 0.25 a major one.

    >>> round(psi([50, 50], [50, 50]), 6)
    0.0
    >>> round(psi([80, 20], [50, 50]), 4)
    0.4063
    """
    r = np.asarray(reference, dtype=float)
    c = np.asarray(current, dtype=float)
    used = (r > 0) | (c > 0)
    r, c = r[used] + smoothing, c[used] + smoothing
    p, q = r / r.sum(), c / c.sum()
    return float(np.sum((q - p) * np.log(q / p)))


def psi_rows(reference: np.ndarray, current: np.ndarray, smoothing: float = 0.5) -> np.ndarray:
    """:func:`psi` of each row pair of two (features, bins) count arrays (zero-padded bins are unused)."""
    used = (reference > 0) | (current > 0)
    r = np.where(used, reference + smoothing, 0.0)
    c = np.where(used, current + smoothing, 0.0)
    p = r / r.sum(axis=1, keepdims=True)
    q = c / c.sum(axis=1, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(used, (q - p) * np.log(q / p), 0.0)
    return terms.sum(axis=1)


def ks_rows(reference: np.ndarray, current: np.ndarray) -> np.ndarray:
    """:func:`ks_statistic` of each row pair of two (features, bins) count arrays."""
    if reference.shape[1] < 2:
        return np.zeros(len(reference))
    fr = np.cumsum(reference, axis=1)[:, :-1] / np.maximum(reference.sum(axis=1, keepdims=True), 1)
    fc = np.cumsum(current, axis=1)[:, :-1] / np.maximum(current.sum(axis=1, keepdims=True), 1)
    return np.abs(fr - fc).max(axis=1)


def psi_p_value(value: float, reference, current) -> float:
    """How likely a PSI this large is when nothing changed: ``n m / (n + m)`` PSI against
    chi-square with (bins used - 1) degrees of freedom (PSI is close to the chi-square
    divergence for small shifts)."""
    from scipy.special import chdtrc

    r = np.asarray(reference, dtype=float)
    c = np.asarray(current, dtype=float)
    n, m = r.sum(), c.sum()
    k = int(((r > 0) | (c > 0)).sum())
    if n == 0 or m == 0 or k < 2:
        return 1.0
    return float(chdtrc(k - 1, value * n * m / (n + m)))


def ks_binned(reference, current) -> tuple[float, float]:
    """Two-sample Kolmogorov-Smirnov statistic of two histograms on the same bins, and its p-value.

    The statistic is the largest gap between the two empirical CDFs at a bin edge: the
    statistic of the unbinned samples when every value sits on an edge, a lower bound of it
    otherwise. The p-value is scipy's asymptotic two-sided one (``kstwo`` at the effective
    sample size ``n m / (n + m)``, as ``scipy.stats.ks_2samp(..., method="asymp")``).

    >>> d, p = ks_binned([50, 50, 0], [0, 50, 50])
    >>> d, p < 1e-10
    (0.5, True)
    """
    d = ks_statistic(reference, current)
    return d, ks_p_value(d, float(np.sum(reference)), float(np.sum(current)))


def ks_statistic(reference, current) -> float:
    r = np.asarray(reference, dtype=float)
    c = np.asarray(current, dtype=float)
    n, m = r.sum(), c.sum()
    if n == 0 or m == 0:
        return 0.0
    return float(np.max(np.abs(np.cumsum(r)[:-1] / n - np.cumsum(c)[:-1] / m), initial=0.0))


def ks_p_value(d: float, n: float, m: float) -> float:
    from scipy.stats import kstwo

    if n == 0 or m == 0:
        return 1.0
    return float(np.clip(kstwo.sf(d, np.round(n * m / (n + m))), 0.0, 1.0))


def ks_p_values(d, n, m) -> np.ndarray:
    """:func:`ks_p_value` of arrays of statistics and sample sizes, in one call."""
    from scipy.stats import kstwo

    n, m = np.asarray(n, dtype=float), np.asarray(m, dtype=float)
    return np.clip(kstwo.sf(np.asarray(d, dtype=float), np.round(n * m / (n + m))), 0.0, 1.0)


def ks_threshold(p_value: float, n: float, m: float) -> float:
    """The KS statistic whose asymptotic p-value is ``p_value`` at these sample sizes."""
    return _ks_threshold(p_value, int(np.round(n * m / (n + m))))


@lru_cache(maxsize=1024)
def _ks_threshold(p_value: float, en: int) -> float:
    from scipy.stats import kstwo

    return float(kstwo.isf(p_value, en))


# -- the per-row loops, compiled ------------------------------------------------------------------
@jit
def count_bins(x, edges, n_edges, counts):  # pragma: no cover - compiled (tested against histogram)
    """Add each finite ``x[i, j]`` to ``counts[j]`` at its right-closed bin of ``edges[j, :n_edges[j]]``
    (:func:`histogram`'s bins: the first edge at or above the value); features with
    ``n_edges[j] < 0`` (no edges) are skipped."""
    n, f = x.shape
    for i in range(n):
        for j in range(f):
            m = n_edges[j]
            if m < 0:
                continue
            v = x[i, j]
            if not np.isfinite(v):
                continue
            b = 0
            while b < m and edges[j, b] < v:
                b += 1
            counts[j, b] += 1


@jit
def chunk_closes(minutes, q, chunk, chunk_rows):  # pragma: no cover - compiled (tested against a Python walk)
    """Walk one output stream's rows (``minutes`` from the version's first minute, ``q`` the
    quantised values, rows whose value is not a number already left out) through its open
    chunk ``chunk`` = [values, sum, first minute, last minute], changed in place. A chunk
    closes at the first row of a new minute once it holds ``chunk_rows`` values; returns, per
    close, the row that closed it and the chunk as it was then (values, sum, first minute)."""
    n = len(q)
    at = np.empty(n, dtype=np.int64)
    closed = np.empty((n, 3), dtype=np.int64)
    k = 0
    for i in range(n):
        m = minutes[i]
        if chunk[0] >= chunk_rows and m > chunk[3]:
            at[k] = i
            closed[k, 0], closed[k, 1], closed[k, 2] = chunk[0], chunk[1], chunk[2]
            k += 1
            chunk[0], chunk[1], chunk[2], chunk[3] = 0, 0, 0, 0
        if chunk[0] == 0:
            chunk[2] = m
        chunk[0] += 1
        chunk[1] += q[i]
        chunk[3] = m
    return at[:k], closed[:k]


@jit
def streams_closes(minutes, q, finite, use, chunks, chunk_rows):  # pragma: no cover - compiled (tested)
    """:func:`chunk_closes` of every output stream ``k`` with ``use[k]`` in one call: stream ``k``'s
    rows are those with ``finite[i, k]`` (its value ``q[i, k]``), its open chunk ``chunks[k]``
    (changed in place). Returns per close, streams in order and each one's closes in order, the
    stream, the row that closed it and the chunk as it was then (values, sum, first minute); and
    per stream whether it had a row."""
    n, f = q.shape
    ks = np.empty(n * f, dtype=np.int64)
    at = np.empty(n * f, dtype=np.int64)
    closed = np.empty((n * f, 3), dtype=np.int64)
    seen = np.zeros(f, dtype=np.bool_)
    c = 0
    for k in range(f):
        if not use[k]:
            continue
        for i in range(n):
            if not finite[i, k]:
                continue
            seen[k] = True
            m = minutes[i]
            if chunks[k, 0] >= chunk_rows and m > chunks[k, 3]:
                ks[c] = k
                at[c] = i
                closed[c, 0], closed[c, 1], closed[c, 2] = chunks[k, 0], chunks[k, 1], chunks[k, 2]
                c += 1
                chunks[k, 0], chunks[k, 1], chunks[k, 2], chunks[k, 3] = 0, 0, 0, 0
            if chunks[k, 0] == 0:
                chunks[k, 2] = m
            chunks[k, 0] += 1
            chunks[k, 1] += q[i, k]
            chunks[k, 3] = m
    return ks[:c], at[:c], closed[:c], seen


@jit
def may_drift(ref, cur, judged, min_rows, psi_threshold, ks_threshold):  # pragma: no cover - compiled (tested)
    """Whether a feature ``j`` (``judged[j]``, its window holding at least ``min_rows`` rows) of the
    (features, bins) counts ``ref`` and ``cur`` (zero-padded) may have a PSI (smoothing 0.5) or
    KS statistic at or above its threshold: :func:`psi_rows` and :func:`ks_rows` worked out
    here with other rounding (libm's log, another order of the sums), so each is compared with
    its threshold less a relative 1e-9, far more than their few ulps of difference. ``False``
    means no feature reaches either threshold, what :meth:`DriftDetector._judge` needs to know
    of most windows."""
    f, w = ref.shape
    for j in range(f):
        if not judged[j]:
            continue
        nr = 0
        nc = 0
        for b in range(w):
            nr += ref[j, b]
            nc += cur[j, b]
        if nc < min_rows:
            continue
        sr = 0.0
        sc = 0.0
        for b in range(w):
            if ref[j, b] > 0 or cur[j, b] > 0:
                sr += ref[j, b] + 0.5
                sc += cur[j, b] + 0.5
        value = 0.0
        for b in range(w):
            if ref[j, b] > 0 or cur[j, b] > 0:
                p = (ref[j, b] + 0.5) / sr
                q = (cur[j, b] + 0.5) / sc
                value += (q - p) * np.log(q / p)
        if value >= psi_threshold * (1.0 - 1e-9):
            return True
        cr = 0
        cc = 0
        for b in range(w - 1):
            cr += ref[j, b]
            cc += cur[j, b]
            if abs(cr / max(nr, 1) - cc / max(nc, 1)) >= ks_threshold * (1.0 - 1e-9):
                return True
    return False


@cache
def _load_compiled() -> None:
    """Load :func:`count_bins`, :func:`chunk_closes`, :func:`streams_closes` and :func:`may_drift` (from
    numba's cache, else compiled) with one call each on the types the detector passes, as the other
    compiled detectors do when they are built: a worker then loads them before it freezes start-up's objects out of the
    collector's walks, and its first batch does not wait for them."""
    count_bins(np.zeros((1, 1)), np.zeros((1, 1)), np.full(1, -1, dtype=np.int64), np.zeros((1, 1), dtype=np.int64))
    chunk_closes(np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64), np.zeros(4, dtype=np.int64), 1)
    streams_closes(np.zeros(0, dtype=np.int64), np.zeros((0, 1), dtype=np.int64), np.zeros((0, 1), dtype=bool),
                   np.zeros(1, dtype=bool), np.zeros((1, 4), dtype=np.int64), 1)
    may_drift(np.zeros((1, 1), dtype=np.int64), np.zeros((1, 1), dtype=np.int64), np.zeros(1, dtype=bool), 1, 0.25, 0.1)


# -- river's detectors over the JSON state ----------------------------------------------------
def adwin_check(points: list[float], delta: float, values_per_point: int) -> tuple[bool, int]:
    """river's ADWIN fed ``points`` (oldest first), each as ``values_per_point`` values around
    it (+1 and -1 in turn: the reference's spread, in its standard deviations). Did it alarm,
    and where is the most likely change (the index of the first point after it)?

    The state keeps the points since ADWIN's last alarm; river resets ADWIN entirely after
    an alarm, so this is the window it would hold.
    """
    # The values go straight to river's window (ADWIN's ``_helper``, in Rust: its ``update`` says
    # whether ADWIN alarmed, what ``ADWIN.update`` stores as ``drift_detected``), in C (``any``
    # over ``map``), and stop at the first alarm: it decides the answer (ADWIN.update would then
    # reset the window, and no later value could take the alarm back).
    half = values_per_point // 2
    odd = values_per_point % 2
    values = [v for u in points for v in ((u + 1.0, u - 1.0) * half + ((u,) if odd else ()))]
    hit = any(map(ADWIN(delta=delta)._helper.update, values))
    return hit, (_best_split(points) if hit else len(points) - 1)


def _best_split(points: list[float]) -> int:
    """The split of ``points`` whose two sides' means differ most, in standard errors."""
    x = np.asarray(points, dtype=float)
    n = len(x)
    if n < 2:
        return 0
    k = np.arange(1, n)
    left = np.cumsum(x)[:-1] / k
    right = (x.sum() - np.cumsum(x)[:-1]) / (n - k)
    return int(k[np.argmax(np.abs(left - right) * np.sqrt(k * (n - k) / n))])


def kswin_check(points: list[float], alpha: float, seed: int) -> tuple[bool, float]:
    """river's KSWIN holding ``points[:-1]``, updated with the last point: did it alarm, and
    its test's p-value (1 until the window holds ``POINTS`` points)."""
    k = KSWIN(alpha=alpha, window_size=POINTS, stat_size=KSWIN_STAT, seed=seed, window=points[:-1] or None)
    k.update(points[-1])
    return k.drift_detected, (float(k.p_value) if len(points) >= POINTS else 1.0)


def page_hinkley_step(saved: list | None, x: float, *, delta: float, threshold: float,
                      min_instances: int) -> tuple[bool, list | None, int]:
    """One update of river's PageHinkley whose state was ``saved`` (``None``: a fresh one).

    Returns whether it alarmed, the state to save (``None`` after an alarm: river resets it
    then), and which way the stream moved (+1 up, -1 down, 0 no alarm). The state is river's
    own six numbers (its running mean's count and value, the two cumulative sums, their
    extremes), rounded to 1e-6.
    """
    ph = PageHinkley(min_instances=min_instances, delta=delta, threshold=threshold)
    if saved is not None:
        n, mean, s_inc, s_dec, min_inc, max_dec = saved
        ph._x_mean.n, ph._x_mean._mean = float(n), mean
        ph._sum_increase, ph._sum_decrease = s_inc, s_dec
        ph._min_increase = math.inf if min_inc is None else min_inc
        ph._max_decrease = max_dec
    ph.update(x)
    if ph.drift_detected:
        return True, None, (1 if ph._sum_increase - ph._min_increase > threshold else -1)
    r6 = lambda v: round(v, 6)  # noqa: E731
    return False, [int(ph._x_mean.n), r6(ph._x_mean.get()), r6(ph._sum_increase), r6(ph._sum_decrease),
                   None if math.isinf(ph._min_increase) else r6(ph._min_increase), r6(ph._max_decrease)], 0


# -- reading events ------------------------------------------------------------------------------
def request_groups(events: list[dict]) -> dict[tuple, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """The requests that reached a model, as columns per ``(model, version)`` (in order of first
    appearance; rows in event order): times, the features (``tokens_in``, ``tokens_out`` of
    answered requests, ``error``; nan where absent or not a count) and the output streams'
    values (``log1p(tokens_out)``, ``error``).

    Each field is read once per event into a list (``map(dict.get, ...)``: no object made per
    event) and checked and converted per batch; only a batch holding a value of an unexpected
    type checks that field value by value.

    >>> g = request_groups([{"ts": 5, "model": "m", "status": 200, "tokens_in": 7, "tokens_out": 3},
    ...                     {"ts": 6, "model": "m", "status": 429, "tokens_in": 9},
    ...                     {"ts": 7, "model": "m", "status": 500, "tokens_in": -1, "tokens_out": 4}])
    >>> ts, x, sv = g[("m", None)]
    >>> ts.tolist(), x.tolist()
    ([5, 7], [[7.0, 3.0, 0.0], [nan, nan, 1.0]])
    """
    get = dict.get
    return request_column_groups(*[list(map(get, events, repeat(f))) for f in REQUEST_FIELDS])


# What :func:`request_column_groups` reads of each request, in the order it takes them.
REQUEST_FIELDS = ("model", "model_version", "ts", "status", "tokens_in", "tokens_out")


def request_column_groups(models: list, versions: list, times: list, status: list, tokens_in: list,
                          tokens_out: list, *, columns: TypedColumns | None = None
                          ) -> dict[tuple, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """:func:`request_groups` of requests given as one list per field of ``REQUEST_FIELDS``
    (``None`` where absent): what the detector reads from a batch's columns, no dict made.
    ``columns``: the same fields' conversions shared with the batch's other detectors (a
    :class:`.typed_columns.TypedColumns` of the requests), else made here."""
    n = len(models)
    if n == 0:
        return {}
    if columns is None:
        columns = TypedColumns.of_lists(dict(zip(REQUEST_FIELDS, (models, versions, times, status, tokens_in,
                                                                  tokens_out))))
    code, ok = _ints(status, columns.types("status"), columns.ints("status"))
    ok &= ~_NOT_THE_MODEL_TABLE[np.clip(code, 0, len(_NOT_THE_MODEL_TABLE) - 1)]
    ts, ts_ok = _ints(times, columns.types("ts"), columns.ints("ts"))
    ok &= ts_ok
    coded = columns.codes("model") if versions.count(None) == n else None
    if coded is not None:  # the models numbered in order of first appearance
        ids, distinct = coded
        first: dict = {k: i for i, k in enumerate(distinct)}
    else:
        keys: list = models
        if versions.count(None) != n:
            keys = list(zip(models, [v if type(v) is str and v else None for v in versions]))
        first = {}  # key -> its number (the row where it first appears)
        try:
            ids = np.fromiter(map(first.setdefault, keys, count()), dtype=np.int64, count=n)
        except TypeError:  # an unhashable model: not a model
            keys = [(k if type(k) is str else None) if keys is models
                    else (k[0] if type(k[0]) is str else None, k[1]) for k in keys]
            first = {}
            ids = np.fromiter(map(first.setdefault, keys, count()), dtype=np.int64, count=n)
    bad = [i for k, i in first.items() if not (type(k) is str and k) and not (type(k) is tuple and type(k[0]) is str
                                                                            and k[0])]
    if bad:
        ok &= ~np.isin(ids, bad)
    if not ok.all():
        rows = np.flatnonzero(ok)
        ids, code, ts = ids[rows], code[rows], ts[rows]
    else:
        rows = slice(None)
    if len(ids) == 0:
        return {}
    failed = code >= 400
    x = np.empty((len(ids), 3))
    x[:, 0] = _counts(tokens_in, columns.types("tokens_in", _COUNT_TYPES), columns.floats("tokens_in"))[rows]
    x[:, 1] = np.where(failed, math.nan, _counts(tokens_out, columns.types("tokens_out", _COUNT_TYPES),
                                                 columns.floats("tokens_out"))[rows])
    x[:, 2] = failed
    sv = np.column_stack([np.log1p(x[:, 1]), x[:, 2]])
    if len(first) - len(bad) == 1:
        groups = [(int(ids[0]), slice(None))]
    else:  # the groups in order of their first row, each with its rows in event order
        order = np.argsort(ids, kind="stable")
        starts = np.concatenate([[0], np.flatnonzero(np.diff(ids[order])) + 1])
        groups = sorted(zip(order[starts].tolist(), np.split(order, starts[1:])))
        groups = [(int(ids[at]), r) for at, r in groups]
    key_of = {i: k for k, i in first.items()}
    out = {}
    for i, r in groups:
        k = key_of[i]
        out[(k, None) if type(k) is str else k] = (ts[r], x[r], sv[r])
    return out


# status -> whether the request never reached the model (a status past the table is not one of them)
_NOT_THE_MODEL_TABLE = np.zeros(max(NOT_THE_MODEL) + 2, dtype=bool)
_NOT_THE_MODEL_TABLE[sorted(NOT_THE_MODEL)] = True
# Values kept apart by the comparisons made on integers here (a status, a time in ns) when an
# integer is beyond int64: it is clamped to these, which compare alike.
_INT_RANGE = (-(2 ** 62), 2 ** 62)


def _ints(values: list, types: frozenset | None = None, array: np.ndarray | None = None
          ) -> tuple[np.ndarray, np.ndarray]:
    """``values`` as int64 (0 where not an ``int``; ``bool`` is not one) and where they were ints.
    ``types`` and ``array``: the values' types and ``np.array(values, int64)`` when already made
    (:class:`.typed_columns.TypedColumns`; shared: not changed here)."""
    n = len(values)
    if types is None:
        types = frozenset(map(type, values))
    if types == {int}:
        if array is not None:
            return array, np.ones(n, dtype=bool)
        try:
            return np.array(values, dtype=np.int64), np.ones(n, dtype=bool)
        except OverflowError:
            pass
    lo, hi = _INT_RANGE
    ok = np.fromiter((type(v) is int for v in values), dtype=bool, count=n)
    return np.fromiter((min(max(v, lo), hi) if type(v) is int else 0 for v in values), dtype=np.int64,
                       count=n), ok


_COUNT_TYPES = frozenset((int, type(None)))  # the types _counts reads in one conversion (TypedColumns.types' within)


def _counts(values: list, types: frozenset | None = None, floats: np.ndarray | None = None) -> np.ndarray:
    """``values`` as floats where they are non-negative ``int``s, nan elsewhere. ``types`` and
    ``floats``: the values' types and ``np.array(values, float64)`` when already made (shared:
    copied here)."""
    if types is None:
        types = frozenset(map(type, values))
    if types <= {int, type(None)}:
        x = floats.copy() if floats is not None else np.array(values, dtype=float)  # None: nan
    else:
        x = np.fromiter((v if type(v) is int else math.nan for v in values), dtype=float, count=len(values))
    x[x < 0] = math.nan
    return x


def _num(v: Any) -> float:
    if type(v) is float or type(v) is int:
        return float(v)
    return math.nan


_SCORE_TYPES = frozenset((float, int))


def _scores(outs: list) -> np.ndarray:
    """``_num`` of each output, as a float64 array: in one conversion when every output is a float
    or an int (not a bool: ``_num`` reads it as nan) and none overflows a float, else one by one
    (where ``float`` of a huge int raises as before)."""
    if _SCORE_TYPES.issuperset(map(type, outs)):
        try:
            return np.array(outs, dtype=np.float64)
        except OverflowError:
            pass
    return np.fromiter((_num(v) for v in outs), dtype=np.float64, count=len(outs))


def prediction_rows(e: dict, names: list[str] | None) -> tuple[list[list], list | None, list[str] | None]:
    """The input rows of a prediction, its per-row outputs (``None`` unless they line up with
    the rows) and the feature names when rows are dicts (``names``, once known, are kept).

    >>> prediction_rows({"input": [[1, 2], [3, 4]], "output": [0.1, 0.9]}, None)
    ([[1, 2], [3, 4]], [0.1, 0.9], None)
    >>> prediction_rows({"input": [{"b": 2, "a": 1, "s": "x"}], "output": [[0.2, 0.8]]}, None)
    ([[1, 2]], [[0.2, 0.8]], ['a', 'b'])
    >>> prediction_rows({"input": {"age": [30, 41], "income": [5.0, 7.5]}, "output": [1, 0]}, None)
    ([[30, 5.0], [41, 7.5]], [1, 0], ['age', 'income'])
    """
    return prediction_rows_of(e.get("input"), e.get("input_names"), e.get("output"), names)


def prediction_rows_of(inp: Any, tensors: Any, out: Any, names: list[str] | None
                       ) -> tuple[list[list], list | None, list[str] | None]:
    """:func:`prediction_rows` of a prediction's ``input``, ``input_names`` and ``output`` values."""
    rows: list = []
    if type(inp) is list and inp:
        first = inp[0]
        if type(tensors) is list and len(tensors) > 1 and type(first) is list:
            inp = first  # several tensors: the first one
            first = inp[0] if inp else None
        if type(first) is list:
            rows = inp
        elif type(first) is dict:
            if names is None:
                names = sorted(short_name(k) for k, v in first.items() if type(v) in (int, float))[:MAX_INPUTS]
            rows = [_pick(r, names) if type(r) is dict else [] for r in inp]
        elif type(first) in (int, float):
            rows = [inp]
    elif type(inp) is dict and inp:
        if names is None:
            names = sorted(short_name(k) for k, v in inp.items() if type(v) in (int, float, list))[:MAX_INPUTS]
        cols = _pick(inp, names)
        if cols and all(type(c) is list for c in cols):
            rows = [list(r) for r in zip(*cols)]
        else:
            rows = [[c if type(c) in (int, float) else None for c in cols]]
    if type(out) in (int, float) and len(rows) == 1:
        out = [out]
    if type(out) is not list or len(out) != len(rows):
        out = None
    return rows, out, names


def short_name(name: str) -> str:
    """A feature name as the state keeps it: at most ``MAX_NAME`` characters, its start and end.

    >>> short_name("income"), short_name("customer_lifetime_value_usd")
    ('income', 'customer~lue_usd')
    """
    return name if len(name) <= MAX_NAME else f"{name[:8]}~{name[9 - MAX_NAME:]}"


def _pick(d: dict, names: list[str]) -> list:
    if any(len(n) == MAX_NAME and "~" in n for n in names):
        d = {short_name(k): v for k, v in d.items()}
    return [d.get(n) for n in names]


def _matrix(rows: list, width: int) -> np.ndarray:
    """Rows as an (n, width) float array: the first ``width`` values of each, nan where missing."""
    try:
        x = np.asarray(rows, dtype=np.float64)
        if x.ndim > 2:
            x = x.reshape(len(x), -1)
        if x.ndim == 2:
            if x.shape[1] >= width:
                return x[:, :width]
            return np.hstack([x, np.full((len(x), width - x.shape[1]), np.nan)])
    except (ValueError, TypeError):
        pass
    out = np.full((len(rows), width), np.nan)
    for i, r in enumerate(rows):
        if type(r) is list:
            for j, v in enumerate(r[:width]):
                out[i, j] = _num(v)
    return out


def _vector_outputs(out: list) -> np.ndarray:
    """(top probability, its class) per row of probability vectors; nan where not one."""
    cols = np.full((len(out), 2), np.nan)
    for i, v in enumerate(out):
        if type(v) is list and v:
            p = [_num(x) for x in v]
            j = max(range(len(p)), key=lambda k: -math.inf if p[k] != p[k] else p[k])
            cols[i, 0], cols[i, 1] = p[j], j
    return cols


def feature_names(s: dict) -> list[str]:
    """The features a version's state follows, inputs first."""
    if s["k"] == "r":
        return list(REQUEST_FEATURES)
    inputs = list(s["dn"]) if s.get("dn") is not None else [f"x{j}" for j in range(s["ni"])]
    return inputs + {0: [], 1: ["score"], 2: ["confidence", "top_class"]}[s["om"]]


class _Windows:
    """A version's counts while its rows are judged (phase 2), as arrays for one batch: the
    reference's and the current window's counts per feature and bin (int64, zero-padded to the
    widest feature), which features the reference lets be judged (counts, at least
    ``EDGE_ROWS`` rows) and each one's number of bins. The state's lists (``c``) are written
    back by :meth:`save`; the reference's do not change in phase 2."""

    def __init__(self, s: dict, edges: tuple[np.ndarray, np.ndarray],
                 reference: tuple[list[int], np.ndarray, np.ndarray] | None = None) -> None:
        # The reference's part (widths, counts, judged) does not change in phase 2: the detector
        # keeps it from batch to batch (DriftDetector._reference); shared, never written here.
        self.widths, self.ref, self.judged = reference if reference is not None else self.reference(s, edges)
        self.cur = np.zeros(self.ref.shape, dtype=np.int64)
        for j, c in enumerate(s["c"]):
            if c is not None:
                self.cur[j, :len(c)] = c

    @staticmethod
    def reference(s: dict, edges: tuple[np.ndarray, np.ndarray]) -> tuple[list[int], np.ndarray, np.ndarray]:
        """Each feature's number of bins, the reference's counts per feature and bin, which features
        may be judged."""
        widths = [0 if h is None else len(h) for h in s["h"]]
        ref = np.zeros((len(widths), edges[0].shape[1] + 1), dtype=np.int64)
        for j, h in enumerate(s["h"]):
            if h is not None:
                ref[j, :len(h)] = h
        return widths, ref, np.array([h is not None for h in s["h"]]) & (ref.sum(axis=1) >= EDGE_ROWS)

    def new_window(self, s: dict) -> None:
        s["n"] = 0
        self.cur[:] = 0

    def save(self, s: dict) -> None:
        s["c"] = [None if c is None else self.cur[j, :len(c)].tolist() for j, c in enumerate(s["c"])]


_REQUEST, _PREDICTION = ("request",), ("prediction",)
_LO, _HI = -(2 ** 63), 2 ** 63 - 1
PREDICTION_FIELDS = ("model", "model_version", "ts", "input", "input_names", "output")


def prediction_groups(columns: list[list], stored: Callable[[tuple], dict | None]
                      ) -> tuple[dict[tuple, list], dict[tuple, list[str] | None]]:
    """The predictions of a batch by (model, version): per version a list of (ts, rows, outputs)
    of :func:`prediction_rows_of` (predictions of no rows left out; ``version`` ``None`` where
    not a non-empty str), and per version its feature names (a dict-row version's, from
    ``stored(version)``'s state first, then as :func:`prediction_rows_of` finds them).
    ``columns``: the predictions' ``PREDICTION_FIELDS``. Predictions of no model or of no time
    that an int64 holds are left out.

    The common prediction, rows of values (a list of lists, one tensor) with a list of one
    output per row, is :func:`prediction_rows_of`'s answer as it is: taken without the call.
    """
    predictions: dict[tuple, list] = {}
    names: dict[tuple, list[str] | None] = {}
    for model, version, ts, inp, tensors, out in zip(*columns):
        if type(model) is not str or not model or type(ts) is not int or not _LO <= ts <= _HI:
            continue  # no model, or no time (one past int64's nanoseconds cannot be a column's)
        gk = (model, version if type(version) is str and version else None)
        g = predictions.get(gk)
        if g is None:
            g = predictions[gk] = []
            s = stored(gk)
            names[gk] = s.get("dn") if s is not None else None
        if (type(inp) is list and inp and type(inp[0]) is list and type(out) is list
                and len(out) == len(inp) and (type(tensors) is not list or len(tensors) < 2)):
            g.append((ts, inp, out))
            continue
        rows, out, names[gk] = prediction_rows_of(inp, tensors, out, names[gk])
        if rows:
            g.append((ts, rows, out))
    return predictions, names


def _private(s: dict) -> dict:
    """A copy of a version's stored state that :meth:`DriftDetector._advance` may change without
    changing the stored value. Before the judged windows (phases 0 and 1, where the first rows,
    the edges, the reference's counts and the streams' sums change in place) every list and dict
    is new (orjson's round trip). In phase 2 (a version's usual state) the edges (``e``), the
    reference's counts (``h``), the window's counts (``c``: replaced whole, never written in
    place) and the names stay what they are there and are shared with the stored value; only
    what the windows and the output streams change in place is copied: the dict itself, each
    stream's list (its chunk, points and their minutes) and the incidents' dicts."""
    if s["p"] != 2:
        return orjson.loads(orjson.dumps(s))
    c = dict(s)
    c["st"] = [None if st is None else [st[0], st[1], list(st[2]), list(st[3]), list(st[4]), *st[5:]]
               for st in s["st"]]
    c["i"] = {family: dict(inc) for family, inc in s["i"].items()}
    return c


class DriftDetector(Detector):
    name = "drift.model"
    kinds = ("prediction", "request")
    route = "model"
    event_fields = ("kind", "ts", "model", "model_version", "status", "tokens_in", "tokens_out",
                    "input", "input_names", "output")
    description = ("distribution drift of a model version's inputs and outputs: PSI and KS per feature against "
                   "the version's first rows, river's ADWIN, KSWIN and PageHinkley on per-minute output statistics")

    class Options(Detector.Options):
        bins: int = Field(default=10, ge=2, le=10, description=(
            "Quantile bins per feature (edges from the version's first 20 rows)."))
        window_rows: int = Field(default=500, ge=EDGE_ROWS, le=1_000_000, description=(
            "Rows in the reference (a version's first rows) and in each current window judged against it (a "
            "prediction row, or a request)."))
        psi_threshold: float = Field(default=0.25, gt=0, description=(
            "PSI at or above which a feature drifted (0.25: the usual 'major shift')."))
        ks_min_statistic: float = Field(default=0.1, gt=0, le=1, description=(
            "KS statistic (largest CDF gap) at or above which a feature drifted."))
        p_value: float = Field(default=1e-6, gt=0, lt=1, description=(
            "A PSI or KS finding must also be this unlikely without a change (many windows and features are "
            "judged every day)."))
        gap_seconds: float = Field(default=3600.0, gt=0, description=(
            "A current window ends early when its version has been idle this long (judged if it holds a "
            "quarter of window_rows), so a drift is dated from after the gap."))
        chunk_rows: int = Field(default=50, ge=1, description=(
            "Values in a point of the output streams at least; a point closes at the first row of a new minute."))
        min_effect: float = Field(default=0.5, gt=0, description=(
            "A river alarm counts when the stream moved at least this many reference standard deviations."))
        adwin_delta: float = Field(default=0.002, gt=0, lt=1, description="ADWIN's confidence (river's default).")
        kswin_alpha: float = Field(default=0.001, gt=0, lt=1, description=(
            "KSWIN's p-value threshold (its last 8 points against 8 of the 16 before)."))
        ph_threshold: float = Field(default=2.0, gt=0, description=(
            "PageHinkley's threshold in reference standard deviations (its delta is min_effect / 2)."))
        ph_min_points: int = Field(default=10, ge=1, description="Points before PageHinkley may alarm.")
        clear_windows: int = Field(default=2, ge=1, description=(
            "A finding after this many windows of rows without one opens a new incident."))

    def __init__(self, options=None):
        super().__init__(options)
        _load_compiled()
        # When a list, every finding (whether or not it opened an incident) is appended: the
        # benchmark scores each statistic alone. Nothing the detector decides reads it.
        self.trace: list[dict] | None = None
        # (kind, model, version) -> the state's edges and reference counts, and their arrays
        # (_reference): a cache of what the state says, never a source of it.
        self._references: dict[tuple, tuple] = {}

    # -- the batch ---------------------------------------------------------------------------------
    def update(self, batch: EventBatch, state: StateStore) -> list[dict]:
        # The fields as columns of the batch (kind_values: no event's dict is made), the requests'
        # shared with anomaly.model, which reads four of the same fields.
        requests = {}
        if batch.indices_where("kind", "request"):
            requests = request_column_groups(*[kind_values(batch, _REQUEST, f) for f in REQUEST_FIELDS],
                                             columns=TypedColumns(batch, _REQUEST))
        predictions: dict[tuple, list] = {}
        names: dict[tuple, list[str] | None] = {}
        if batch.indices_where("kind", "prediction"):
            predictions, names = prediction_groups([kind_values(batch, _PREDICTION, f) for f in PREDICTION_FIELDS],
                                                   lambda gk: state.get(self._key("p", *gk)))
        alerts: list[dict] = []
        for (model, version), (ts, x, sv) in requests.items():
            key = self._key("r", model, version)
            s = state.get(key)
            s = self._fresh_request(int(ts[0])) if s is None else _private(s)
            alerts += self._advance(s, model, version, ts, x, sv)
            state.set(key, s)
        for (model, version), g in predictions.items():
            if not g:
                continue
            key = self._key("p", model, version)
            s = state.get(key)
            if s is None:
                s = self._fresh_prediction(g[0][0], g[0][1], g[0][2], names[(model, version)])
            else:
                s = _private(s)  # never change the stored value in place
            ts, x, sv = self._prediction_columns(g, s)
            alerts += self._advance(s, model, version, ts, x, sv)
            state.set(key, s)
        return merge_alerts(alerts)

    def _key(self, kind: str, model: str, version: Any) -> str:
        return f"{self.name}/{kind}|{model}|{version if type(version) is str and version else '-'}"

    # -- state ---------------------------------------------------------------------------------------
    @staticmethod
    def _fresh(kind: str, ts: int, n_features: int, n_inputs: int, streams: list[str]) -> dict:
        # k kind, ni inputs, sn streams, p phase (0 edges, 1 reference, 2 judged windows), n rows
        # in the phase or window, r rows ever, t0 first row (the reference's start), re the
        # reference's end, ws the window's start, lt the last row, b the first rows (phase 0),
        # e edges, h reference counts, c window counts, w stream sums (phases 0-1), st streams
        # (phase 2), i incidents by family.
        return {"k": kind, "ni": n_inputs, "sn": streams, "p": 0, "n": 0, "r": 0, "t0": ts, "re": None, "ws": None,
                "lt": ts, "b": [[] for _ in range(n_features)], "e": None, "h": None, "c": None,
                "w": [[0, 0, 0] for _ in streams], "st": None, "i": {}}

    def _fresh_request(self, ts: int) -> dict:
        return self._fresh("r", ts, len(REQUEST_FEATURES), REQUEST_INPUTS, list(REQUEST_STREAMS))

    def _fresh_prediction(self, ts: int, rows: list, out: list | None, names: list[str] | None) -> dict:
        if names is not None:
            width = len(names)
        else:
            width = min(MAX_INPUTS, max((len(r) for r in rows if type(r) is list), default=0))
        mode, stream = 0, None
        if out:
            first = out[0]
            if type(first) in (int, float):
                mode, stream = 1, ("confidence" if 0.0 <= first <= 1.0 else "score")
            elif type(first) is list and first and all(type(v) in (int, float) for v in first):
                mode, stream = 2, "confidence"
        s = self._fresh("p", ts, width + (0, 1, 2)[mode], width, [stream] if stream else [])
        s["om"] = mode
        if names is not None:
            s["dn"] = names
        return s

    # -- columns ----------------------------------------------------------------------------------------
    @staticmethod
    def _prediction_columns(g: list, s: dict) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        mode = s["om"]
        rows_all: list = []
        outs: list = []
        counts = []
        for _ts, rows, out in g:
            rows_all.extend(rows)
            counts.append(len(rows))
            if mode:
                outs.extend(out if out is not None else (None,) * len(rows))
        n = len(rows_all)
        ts = np.repeat(np.fromiter((r[0] for r in g), dtype=np.int64, count=len(g)), counts)
        parts = [_matrix(rows_all, s["ni"])]
        sv = np.empty((n, 0))
        if mode == 1:
            score = _scores(outs)
            parts.append(score[:, None])
            if s["sn"][0] == "confidence":
                score = np.where((score >= 0.0) & (score <= 1.0), np.maximum(score, 1.0 - score), np.nan)
            sv = score[:, None]
        elif mode == 2:
            vec = _vector_outputs(outs)
            parts.append(vec)
            sv = vec[:, :1]
        x = np.hstack(parts) if len(parts) > 1 else parts[0]
        x = np.where(np.isfinite(x), x, np.nan)
        return ts, x, np.where(np.isfinite(sv), sv, np.nan)

    # -- one version's rows ---------------------------------------------------------------------------
    def _advance(self, s: dict, model: str, version: str | None, ts: np.ndarray, x: np.ndarray,
                 sv: np.ndarray) -> list[dict]:
        o = self.options
        W = o.window_rows
        n = len(ts)
        svq = np.where(np.isfinite(sv), np.round(sv * Q), np.nan)
        prev = np.concatenate([[s["lt"]], ts[:-1]])
        gaps = np.flatnonzero(ts - prev > o.gap_seconds * NS)  # rows that come after an idle gap
        alerts: list[dict] = []
        edges = None  # once the bin edges are set
        win = closes = None  # once in phase 2
        i = 0
        while i < n:
            if s["p"] == 0:  # the first rows, kept until their quantiles set the bin edges
                take = min(n - i, EDGE_ROWS - s["n"])
                for j, buf in enumerate(s["b"]):
                    col = x[i:i + take, j]
                    buf.extend(float(f"{v:.4g}") for v in col[np.isfinite(col)].tolist())
                self._stream_sums(s, svq[i:i + take])
                s["n"] += take
                if s["n"] == EDGE_ROWS:
                    bufs = [np.asarray(buf, dtype=float) for buf in s.pop("b")]
                    s["e"] = [quantile_edges(v, o.bins) for v in bufs]
                    s["h"] = [None if e is None else histogram(e, v).tolist() for e, v in zip(s["e"], bufs)]
                    s["p"] = 1
                    if s["n"] == W:
                        self._end_reference(s, int(ts[i + take - 1]))
            elif s["p"] == 1:  # the rest of the reference
                take = min(n - i, W - s["n"])
                edges = edges or self._edges(s)
                self._count(s, "h", x[i:i + take], edges)
                self._stream_sums(s, svq[i:i + take])
                s["n"] += take
                if s["n"] == W:
                    self._end_reference(s, int(ts[i + take - 1]))
            else:  # judged windows
                if win is None:  # phase 2's rows of this batch, read once: counts as arrays, the streams' closes
                    edges, reference = self._reference(s, model, version)
                    win = _Windows(s, edges, reference)
                    closes = self._stream_closes(s, ts, svq, i)
                at = np.searchsorted(gaps, i)
                if at < len(gaps) and gaps[at] == i and s["n"] > 0:  # idle since the last row: the window ends
                    alerts += self._judge(s, model, version, s["lt"], s["r"], win)
                    win.new_window(s)
                next_gap = int(gaps[at + 1]) if at + 1 < len(gaps) and gaps[at] == i else (
                    int(gaps[at]) if at < len(gaps) and gaps[at] > i else n)
                take = min(n - i, W - s["n"], next_gap - i)
                if s["n"] == 0:
                    s["ws"] = int(ts[i])
                count_bins(x[i:i + take], edges[0], edges[1], win.cur)
                for k, ck in enumerate(closes):  # the chunks of stream k that close in these rows, in order
                    while ck is not None and ck[3] < len(ck[0]) and ck[0][ck[3]] < i + take:
                        r, (values, total, first) = ck[0][ck[3]], ck[1][ck[3]]
                        s["st"][k][2] = [values, total, first, 0]
                        alerts += self._point(s, k, model, version, int(ts[r]), s["r"] + 1 + r - i)
                        ck[3] += 1
                s["n"] += take
                if s["n"] == W:
                    alerts += self._judge(s, model, version, int(ts[i + take - 1]), s["r"] + take, win)
                    win.new_window(s)
            s["r"] += take
            s["lt"] = int(ts[i + take - 1])
            i += take
        if win is not None:
            win.save(s)
            for k, ck in enumerate(closes):
                if ck is not None:
                    s["st"][k][2] = ck[2]
        return alerts

    def _end_reference(self, s: dict, ts: int) -> None:
        s["re"] = ts
        s["p"], s["n"] = 2, 0
        s["c"] = [None if h is None else [0] * len(h) for h in s["h"]]
        s["st"] = [self._stream_reference(name, w) for name, w in zip(s["sn"], s.pop("w"))]

    @staticmethod
    def _count(s: dict, field: str, x: np.ndarray, edges: tuple[np.ndarray, np.ndarray]) -> None:
        counts = s[field]
        width = edges[0].shape[1] + 1
        c = np.zeros((len(counts), width), dtype=np.int64)
        for j, cj in enumerate(counts):
            if cj is not None:
                c[j, :len(cj)] = cj
        count_bins(x, edges[0], edges[1], c)
        for j, cj in enumerate(counts):
            if cj is not None:
                counts[j] = c[j, :len(cj)].tolist()

    def _reference(self, s: dict, model: str, version: str | None
                   ) -> tuple[tuple[np.ndarray, np.ndarray], tuple[list[int], np.ndarray, np.ndarray]]:
        """A version's :meth:`_edges` and :meth:`_Windows.reference` in phase 2, where neither its
        edges (``e``) nor its reference's counts (``h``) change: made once and kept while the
        state's ``e`` and ``h`` equal those they were made of (a list comparison, in C), not
        once per batch. The arrays are shared: read only."""
        key = (s["k"], model, version)
        got = self._references.get(key)
        if got is not None and got[0] == s["e"] and got[1] == s["h"]:
            return got[2], got[3]
        edges = self._edges(s)
        reference = _Windows.reference(s, edges)
        if len(self._references) >= MAX_REFERENCES:
            self._references.clear()
        copy = lambda lists: [None if v is None else list(v) for v in lists]  # noqa: E731
        self._references[key] = (copy(s["e"]), copy(s["h"]), edges, reference)
        return edges, reference

    @staticmethod
    def _edges(s: dict) -> tuple[np.ndarray, np.ndarray]:
        """A version's bin edges as one padded array, and how many each feature has (-1: none)."""
        es = s["e"]
        width = max((len(e) for e in es if e is not None), default=0)
        edges = np.full((len(es), max(width, 1)), np.inf)
        n_edges = np.full(len(es), -1, dtype=np.int64)
        for j, e in enumerate(es):
            if e is not None:
                edges[j, :len(e)] = e
                n_edges[j] = len(e)
        return edges, n_edges

    @staticmethod
    def _stream_sums(s: dict, svq: np.ndarray) -> None:
        for k, w in enumerate(s["w"]):
            col = svq[:, k]
            col = col[np.isfinite(col)].astype(np.int64)
            w[0] += int(len(col))
            w[1] += int(col.sum())
            w[2] += int((col * col).sum())

    @staticmethod
    def _stream_reference(name: str, w: list[int]) -> list | None:
        n, s1, s2 = w
        if n < 2:
            return None
        mean = s1 / n / Q
        var = max(s2 / n - (s1 / n) ** 2, 0.0) / (Q * Q)
        if name == "error":  # a reference with few or no errors: the spread of a Laplace-smoothed rate
            p = (s1 / Q + 1) / (n + 2)
            var = max(var, p * (1 - p))
        sd = max(math.sqrt(var), 1e-3)
        # [reference mean, sd, chunk [values, sum, first minute (offset from t0's), last minute],
        #  points, their first minutes (offsets), points since ADWIN's alarm, since KSWIN's,
        #  PageHinkley, points so far]
        return [round(mean, 6), round(sd, 6), [0, 0, 0, 0], [], [], 0, 0, None, 0]

    # -- the output streams --------------------------------------------------------------------------
    def _stream_closes(self, s: dict, ts: np.ndarray, svq: np.ndarray, i0: int) -> list[list | None]:
        """Each output stream's values of the rows ``i0``.. (``svq[:, k]``: rows whose value is not a
        number left out) through its open chunk, in one call of :func:`streams_closes` for all of
        them (what :func:`chunk_closes` does per stream): per stream, ``[rows where a chunk
        closed, the chunks as they were then (values, sum, first minute), the open chunk after
        the last row, how many of the closes were taken]`` (``None``: a stream without a
        reference, or no value in these rows). The stored chunk is not changed."""
        streams = s["st"]
        use = [st is not None for st in streams]
        if not any(use):
            return [None] * len(streams)
        q = svq[i0:]
        finite = np.isfinite(q)
        # Each value as chunk_closes gets it (q[ok].astype(int64), the rows' own conversions); the
        # others are never read.
        qi = np.where(finite, q, 0.0).astype(np.int64)
        chunks = np.array([st[2] if st is not None else (0, 0, 0, 0) for st in streams], dtype=np.int64)
        ks, at, closed, seen = streams_closes(ts[i0:] // MINUTE - s["t0"] // MINUTE, qi, finite,
                                              np.array(use), chunks, self.options.chunk_rows)
        ks, rows, closed, chunks = ks.tolist(), (at + i0).tolist(), closed.tolist(), chunks.tolist()
        out: list[list | None] = []
        a = 0
        for k in range(len(streams)):
            if not (use[k] and seen[k]):
                out.append(None)
                continue
            b = a
            while b < len(ks) and ks[b] == k:
                b += 1
            out.append([rows[a:b], closed[a:b], chunks[k], 0])
            a = b
        return out

    def _point(self, s: dict, k: int, model: str, version: str | None, ts: int, row: int) -> list[dict]:
        """A chunk closed (at the event at ``ts``): its point through ADWIN, KSWIN and PageHinkley."""
        o = self.options
        st = s["st"][k]
        mean, sd, chunk, pts, mins = st[0], st[1], st[2], st[3], st[4]
        u = round((chunk[1] / chunk[0] / Q - mean) / sd, 3)
        pts.append(u)
        mins.append(chunk[2])
        if len(pts) > POINTS:
            del pts[0], mins[0]
        st[5] = min(st[5] + 1, POINTS)
        st[6] = min(st[6] + 1, POINTS)
        st[8] += 1
        found = []
        hit, split = adwin_check(pts[-st[5]:], o.adwin_delta, min(o.chunk_rows, ADWIN_VALUES))
        if hit:
            found.append(("adwin", len(pts) - st[5] + split))
            st[5] = 0
        hit, _p = kswin_check(pts[-st[6]:], o.kswin_alpha, seed=st[8])
        if hit:
            found.append(("kswin", len(pts) - KSWIN_STAT))
            st[6] = 0
        hit, st[7], side = page_hinkley_step(st[7], u, delta=o.min_effect / 2, threshold=o.ph_threshold,
                                             min_instances=o.ph_min_points)
        if hit:  # the change began where the run of points on the side that moved began
            start = len(pts) - 1
            while start > 0 and pts[start - 1] != 0 and (pts[start - 1] > 0) == (side > 0):
                start -= 1
            found.append(("page_hinkley", start))
        findings = []
        for statistic, start in found:
            recent = pts[start:] or pts[-1:]
            effect = sum(recent) / len(recent)
            if abs(effect) < o.min_effect:
                continue
            findings.append({"feature": s["sn"][k], "statistic": statistic, "value": round(abs(effect), 3),
                             "threshold": o.min_effect, "direction": "up" if effect > 0 else "down",
                             "mean": round(mean + effect * sd, 4), "reference_mean": mean, "points": len(recent),
                             "_since": max((s["t0"] // MINUTE + mins[min(start, len(mins) - 1)]) * MINUTE,
                                           s["t0"])})
        if not findings:
            return []
        return self._raise(s, model, version, "output", findings, ts, row, rows_judged=o.chunk_rows)

    # -- the windows -----------------------------------------------------------------------------------
    def _judge(self, s: dict, model: str, version: str | None, ts: int, row: int, win: _Windows) -> list[dict]:
        o = self.options
        min_rows = max(EDGE_ROWS, o.window_rows // 4)
        if not may_drift(win.ref, win.cur, win.judged, min_rows, o.psi_threshold, o.ks_min_statistic):
            return []  # no feature reaches either threshold: no finding (most windows)
        which = np.flatnonzero(win.judged & (win.cur.sum(axis=1) >= min_rows)).tolist()
        if not which:
            return []
        width = max(win.widths[j] for j in which)
        # (judged features, bins used by the widest of them) as float: the rows' sums run over the same elements
        ref = np.ascontiguousarray(win.ref[which, :width], dtype=float)
        cur = np.ascontiguousarray(win.cur[which, :width], dtype=float)
        psis, ds = psi_rows(ref, cur), ks_rows(ref, cur)
        found: dict[int, list] = {}
        ks_found = []
        for r in np.flatnonzero((psis >= o.psi_threshold) | (ds >= o.ks_min_statistic)).tolist():
            nr, nc = float(ref[r].sum()), float(cur[r].sum())
            if psis[r] >= o.psi_threshold:
                p = psi_p_value(float(psis[r]), ref[r], cur[r])
                if p <= o.p_value:
                    found.setdefault(r, []).append({"statistic": "psi", "value": round(float(psis[r]), 4),
                                                    "threshold": o.psi_threshold, "p_value": float(f"{p:.3g}")})
            # p <= p_value exactly when the statistic reaches the one whose p-value is p_value
            threshold = max(o.ks_min_statistic, ks_threshold(o.p_value, nr, nc))
            if ds[r] >= threshold:
                ks_found.append((r, nr, nc))
                found.setdefault(r, []).append({"statistic": "ks", "value": round(float(ds[r]), 4),
                                                "threshold": round(threshold, 4)})
        if ks_found:  # their p-values in one call (scipy's kstwo costs about 0.2 ms a call)
            rs = [r for r, _n, _m in ks_found]
            for r, p in zip(rs, ks_p_values(ds[rs], [n for _r, n, _m in ks_found], [m for _r, _n, m in ks_found])):
                found[r][-1]["p_value"] = float(f"{p:.3g}")
        names = feature_names(s) if found else None
        by_family: dict[str, list] = {}
        for r, fs in found.items():
            j = which[r]
            family = "input" if j < s["ni"] else "output"
            nc = int(cur[r].sum())
            by_family.setdefault(family, []).extend({"feature": names[j], **f, "rows": nc, "_since": s["ws"]}
                                                    for f in fs)
        alerts = []
        for family, findings in by_family.items():
            alerts += self._raise(s, model, version, family, findings, ts, row, rows_judged=s["n"])
        return alerts

    # -- incidents ---------------------------------------------------------------------------------------
    def _raise(self, s: dict, model: str, version: str | None, family: str, findings: list[dict], ts: int,
               row: int, *, rows_judged: int) -> list[dict]:
        o = self.options
        since = min(f.pop("_since") for f in findings)
        findings.sort(key=lambda f: -f["value"] / f["threshold"])
        best = findings[0]
        ratio = best["value"] / best["threshold"]
        severity = next((sev for limit, sev in SEVERITY_STEPS if ratio < limit), "high")
        inc = s["i"].get(family)
        if inc is None or row - inc["lr"] > o.clear_windows * o.window_rows:
            inc = s["i"][family] = {"f": since, "sev": severity, "n": rows_judged, "lr": row}
        else:
            inc["n"] += row - inc["lr"]
            inc["lr"] = row
            if SEVERITIES.index(severity) > SEVERITIES.index(inc["sev"]):
                inc["sev"] = severity
        entity = f"{model}:{version}" if version else model
        unit = "" if best["statistic"] in ("psi", "ks") else " reference sd"
        summary = (f"{family.capitalize()} drift on model {entity}: {best['feature']} "
                   f"{STATISTIC_NAMES[best['statistic']]} {best['value']:g}{unit} (threshold {best['threshold']:g}), "
                   f"since {format_rfc3339(inc['f'])}")
        evidence = {"model": model, "version": version, "family": family,
                    **{k: best[k] for k in ("feature", "statistic", "value", "threshold")},
                    "since": format_rfc3339(inc["f"]),
                    "reference": {"start": format_rfc3339(s["t0"]), "end": format_rfc3339(s["re"]),
                                  "rows": o.window_rows},
                    "current": {"start": format_rfc3339(since), "end": format_rfc3339(ts)},
                    "findings": findings[:MAX_FINDINGS]}
        alert = make_alert(self.name, inc["sev"], ("model", entity), score=ratio, summary=summary,
                           evidence=evidence, first_ts=inc["f"], last_ts=ts, count=inc["n"])
        # One incident per version and family: the family is part of the incident's identity.
        alert["id"] = alert_id(f"{self.name}:{family}", "model", entity, inc["f"])
        if self.trace is not None:
            self.trace.extend({"model": model, "version": version, "family": family, "ts": ts, "since": since,
                               "incident": alert["id"], **f} for f in findings)
        return [alert]
