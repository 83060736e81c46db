"""Model extraction: who is copying a model through its prediction API.

A model is stolen one query at a time, so the detector reads ``prediction`` events (inputs and
outputs of a served model) and keeps, per *stream*, a few counts and a small memory of recent
queries. There are two kinds of stream for every model:

* a principal (API key, service account) from one source address, and
* a source address, pooling every principal behind it: an attack split over many keys
  (a Sybil split) stays under every per-key count but not under the pooled one.

Each query row is first checked against the stream's recent input hashes: an exact repeat
(retries, a cache miss, a batch job sending the same rows again) is counted as a repeat and
takes no further part. This is where PRADA (Juuti et al., 2019) fails: a repeat has distance
0 to the set, and a benign client whose queries repeat looks like an attack. The remaining
(distinct) queries feed these statistics:

``out_of_range``
    the share of queries with more than ``ood_features`` of their features outside the range
    the model's population of callers uses (per-feature quantiles of a reservoir of natural
    queries, learnt by the detector from every stream that is not under an incident). Uniform
    random probes, natural images of another domain (Knockoff nets) and synthetic
    augmentation (Papernot's JbDA steps every feature by lambda) all leave that range.
``close_queries``
    the share of queries whose nearest neighbour among the stream's last queries is much
    closer than the stream's own typical spacing (ratio below ``close_ratio`` of the median
    pairwise distance): a boundary search bisecting a segment, an attacker walking a line
    (Chen, Carlini and Wagner, 2020: k-nearest-neighbour query similarity). Scale-free: no
    population needed.
``low_confidence``
    the share of outputs whose top probability is under ``low_confidence`` (for a binary
    score, max(p, 1 - p)): queries placed on the decision boundary (Tramer et al., 2016).
``distance_normality``
    the PRADA statistic: Shapiro-Wilk W of the stream's recent nearest-neighbour distances
    (distinct queries only), with a threshold; natural queries give a smooth, roughly normal
    spread of distances, synthetic ones a spiky one. It corroborates only (it raises the
    severity of an alert another statistic raised): its threshold depends on the model and its
    data (PRADA tunes delta per model on benign traffic), and natural inputs of few features
    give skewed distances (W 0.70 for a benign batch client of the simulated 8-feature fraud
    model, against 0.80 here and PRADA's 0.95).

A share alerts when the stream has ``min_queries`` distinct queries in its window, the share
is at least ``min_ratio`` times the population's rate (floored), and the binomial tail
probability of seeing that many under the population's rate is below ``p_value``. Counts decay
(halve) every ``window`` distinct queries, so a long-lived benign stream is judged on its
recent behaviour, not on a lifetime in which a tiny excess becomes significant.

State per stream stays under 2 KB: counts, the last 32 input hashes, the last 16 queries
projected to 12 dimensions (a fixed random projection per input width: distances are roughly
kept) and the last 48 nearest-neighbour distances. The population profile per model is kept
in the detector (the worker process), learnt again after a restart (``min_population``
queries before ``out_of_range`` is judged); it is per worker when several share the
partitions.

Alerts: ``extraction.queries`` on the principal (or on the source address, for a split that
no single principal shows), with the statistic, its value, the threshold, the query counts and
the model in ``evidence``.
"""

from __future__ import annotations

import base64
import bisect
import math
import random
import zlib
from collections import OrderedDict, deque
from typing import Any

import numpy as np
from pydantic import Field

from ramparts.events import EventBatch

from .base import Detector, StateStore, make_alert, merge_alerts

PROJECTED_DIMS = 12
RESERVOIR = 16
HASHES = 32
DISTANCES = 48
POPULATION_ROWS = 1024
PEER_FLAGS = 32  # last out-of-range flags kept per source address, for the peer rate
PEER_MIN_FLAGS = 8  # a source with fewer recent flags is not a peer yet
MAX_PEERS = 512  # sources a population tracks (least recently seen dropped first)
PEER_EVERY = 16  # notes between two recomputations of the peers' shares
SHIFT_MIN_SOURCES = 3  # a population-wide shift needs at least this many sources (with PEER_FLAGS flags)
SHIFT_SHARE = 0.25  # ... and their median out-of-range share this high (4x it would be 1: nothing could alert)
SEVERITY_RANK = {"medium": 0, "high": 1}
NORMALITY_EVERY = 8  # distinct queries between two Shapiro-Wilk tests (the test costs ~100 us)

# Columns of a stream's counts in :func:`extraction_stats.feed`'s ``counts`` (float64: the stored
# counts are floats that halve, or integers well under 2**53).
C_N, C_REP, C_ND, C_OOD, C_NJ, C_CLOSE, C_NC, C_LOW, C_EP, C_RES, C_HASHES, C_DISTS, C_CHANGED = range(13)
N_COUNTS = 13
# Columns of a query row in ``rows``: has a vector (0/1), input hash, has a top confidence (0/1),
# that confidence, its population ready (0/1), that population's epoch, the row out of its range (0/1).
R_VEC, R_HASH, R_HAS_CONF, R_CONF, R_READY, R_EPOCH, R_OUTSIDE = range(7)
N_ROW = 7
# ``params``: min_queries, window, close_ratio, low_confidence, normality_min, normality_every,
# then the ratio tests' thresholds of this event's model (inf: that test cannot pass):
# out of range (min_ratio x the first ready population's rate, floored), close queries, low confidence.
P_MIN_QUERIES, P_WINDOW, P_CLOSE_RATIO, P_LOW_CONF, P_NORMALITY_MIN, P_NORMALITY_EVERY, P_OOD_THR, P_CLOSE_THR, \
    P_LOW_THR = range(9)


# -- query rows from an event ------------------------------------------------------------------
_NUMBER_TYPES = frozenset((int, float))


def _row(v: Any) -> list[float] | None:
    if type(v) is list and v and _NUMBER_TYPES.issuperset(map(type, v)):
        return v
    return None


def query_rows(event: dict) -> list[tuple[np.ndarray | None, float | None, int | None]]:
    """The rows of one prediction: (input vector or None, top confidence or None, predicted class).

    ``input`` is one row (a list of numbers) or a list of rows; ``output`` is per row a list of
    class probabilities or a single score (binary: confidence max(p, 1 - p)). Anything else
    (text, named features, images) gives rows without a vector, counted but not compared.
    """
    inp, out = event.get("input"), event.get("output")
    one = _row(inp)
    if one is not None:
        rows: list = [one]
    elif type(inp) is list and inp and type(inp[0]) is list:
        rows = [_row(r) for r in inp]
    else:
        rows = [None]
    if type(out) is list and out and type(out[0]) is list:
        outs: list = out
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
        if type(o) is list and len(o) >= 2 and _NUMBER_TYPES.issuperset(map(type, o)):
            k = max(range(len(o)), key=o.__getitem__)
            conf, cls = float(o[k]), k
        elif type(o) is list and len(o) == 1 and type(o[0]) in (int, float):
            o = o[0]
        if type(o) in (int, float) and 0.0 <= o <= 1.0:
            conf, cls = max(float(o), 1.0 - float(o)), int(o >= 0.5)
        vec = None
        if r is not None:
            vec = np.asarray(r, dtype=np.float64)
            if not np.isfinite(vec).all():
                vec = None
        result.append((vec, conf, cls))
    return result


# -- projections and packing -------------------------------------------------------------------
_PROJECTIONS: dict[int, np.ndarray] = {}


def projection(width: int) -> np.ndarray:
    """A fixed random projection of ``width`` features to PROJECTED_DIMS (the same in every process)."""
    p = _PROJECTIONS.get(width)
    if p is None:
        rng = np.random.default_rng(width)
        p = rng.standard_normal((width, PROJECTED_DIMS)) / math.sqrt(PROJECTED_DIMS)
        _PROJECTIONS[width] = p
    return p


def _pack(a: np.ndarray, dtype) -> str:
    return base64.b64encode(np.ascontiguousarray(a, dtype=dtype).tobytes()).decode("ascii")


def _unpack(s: str | None, dtype, width: int = 1) -> np.ndarray:
    if not s:
        return np.zeros((0, width) if width > 1 else 0, dtype=dtype)
    a = np.frombuffer(base64.b64decode(s), dtype=dtype)
    return a.reshape(-1, width) if width > 1 else a.copy()


_UPPER: dict[int, tuple[np.ndarray, np.ndarray]] = {}


def median_pairwise(points: np.ndarray) -> float:
    """The median distance between two of ``points`` (rows): the stream's own spacing."""
    p = points.astype(np.float64)
    return _median_pairwise(p, (p * p).sum(axis=1))


def _median_pairwise(p: np.ndarray, sq: np.ndarray) -> float:
    """:func:`median_pairwise` of float64 rows ``p`` whose squared norms ``sq`` are known: only the
    upper triangle of the distance matrix is formed, with the same operations per element.

    The detector computes this in compiled code (``extraction_stats.observe``, with the
    nearest neighbour and the reservoir's push); this numpy version is the reference it is
    tested against (tests/detectors/test_extraction_stats.py)."""
    n = len(p)
    iu = _UPPER.get(n)
    if iu is None:
        iu = _UPPER[n] = np.triu_indices(n, 1)
    i, j = iu
    d2 = sq[i] + sq[j] - 2.0 * (p @ p.T)[i, j]
    mid = len(d2) // 2
    return math.sqrt(max(float(np.partition(d2, mid)[mid]), 0.0))


def binomial_tail(k: float, n: float, p: float) -> float:
    """P(X >= k) for X ~ Binomial(n, p), for real-valued (decayed) counts (regularized beta)."""
    if k <= 0:
        return 1.0
    if k > n:
        return 0.0
    from scipy.special import betainc

    return float(betainc(k, n - k + 1, p))


def shapiro_w(d: np.ndarray) -> float:
    """Shapiro-Wilk W of ``d``: what ``scipy.stats.shapiro(d).statistic`` gives, without its wrapper.

    The public function spends ~70 us per call checking and reshaping its arguments, ten times
    the test itself; this repeats its preparation (sort, subtract the middle value, see
    scipy gh-15777) and calls the same routine, so W is the same to the bit
    (tests/detectors/test_extraction.py checks it against the public function).
    """
    if len(d) < 3 or float(np.ptp(d)) == 0.0:
        return 0.0
    x = np.asarray(d, dtype=np.float64).ravel()
    y = np.sort(x)
    y -= x[len(x) // 2]
    w, _pw, _ifault = _swilk()(y, np.zeros(len(x) // 2, dtype=np.float64), 0)
    return float(w)


_SWILK = None
_OBSERVE = None


def _observe():
    """:func:`extraction_stats.observe`, loaded (from numba's cache, else compiled) by a first call.

    The detector calls this when it is built, so that a worker loads numba before it freezes
    what start-up made out of the garbage collector's walks (``streams/app.py``), and its first
    prediction does not wait for the load (0.5 s) or a compilation (3.5 s without a cache)."""
    global _OBSERVE
    if _OBSERVE is None:
        from .extraction_stats import observe

        res = np.zeros((RESERVOIR, PROJECTED_DIMS), dtype=np.float32)
        observe(res, res.astype(np.float64), np.zeros(RESERVOIR), 0, np.zeros(PROJECTED_DIMS, dtype=np.float32))
        _OBSERVE = observe
    return _OBSERVE


_FEED = None
_COUNT_OUTSIDE = None


def _feed():
    """:func:`extraction_stats.feed`, loaded (from numba's cache, else compiled) by a first call:
    see :func:`_observe`."""
    global _FEED, _COUNT_OUTSIDE
    if _FEED is None:
        from .extraction_stats import count_outside, feed

        w = _Streams(1)
        rows = np.zeros((1, N_ROW))
        params = np.array([20, 200, 0.15, 0.6, 40, NORMALITY_EVERY, math.inf, math.inf, math.inf])
        feed(0, -1, w.counts, w.hashes, w.res, w.res64, w.sq, w.dists,
             np.zeros((1, PROJECTED_DIMS), dtype=np.float32), rows, 0, 1, params, np.zeros((2, DISTANCES)))
        count_outside(params, params, params)
        _FEED, _COUNT_OUTSIDE = feed, count_outside
    return _FEED


def _swilk():
    global _SWILK
    if _SWILK is None:
        from scipy.stats._ansari_swilk_statistics import swilk

        _SWILK = swilk
    return _SWILK


def _median_of_sorted(values: list[float]) -> float:
    """``float(np.median(values))`` for a sorted, non-empty list, without numpy's overhead
    (the same arithmetic: the middle value, or the mean of the two middle ones)."""
    n = len(values)
    mid = n // 2
    if n % 2:
        return float(values[mid])
    return (values[mid - 1] + values[mid]) / 2.0


# -- the population profile of a model -------------------------------------------------------------
class Population:
    """What a model's callers send, learnt from the queries of streams not under an incident.

    A reservoir of rows (deterministic: seeded by the model's name) gives per-feature ranges
    (quantiles), refreshed every 128 rows; counts of low-confidence outputs give the base rate
    of ``low_confidence``.

    It also keeps, per source address, whether its last ``PEER_FLAGS`` queries were out of
    range. A stream is judged against its *peers*: the median share of the other sources that
    have taught the population (judged clean: a thief or a short-lived prober never has) and
    were active within ``gap_seconds``. When the inputs of the whole population move (a new
    upstream feature pipeline: drift, which ``detectors/drift`` reports), every source goes out
    of range at once, the peer rate rises with them and none of them stands out. When the
    median share of such sources with full memories (at least ``SHIFT_MIN_SOURCES`` of them)
    reaches ``SHIFT_SHARE``, the ranges are stale: the reservoir is emptied and learnt again,
    and ``epoch`` counts up so that streams drop the out-of-range counts they gathered against
    the old ranges. A thief would have to control half of a model's active, judged source
    addresses to pass for such a shift; a Sybil split from one address is one source.
    """

    def __init__(self, model: str, width: int, options):
        self.width = width
        self.rows = np.zeros((POPULATION_ROWS, width))
        self.filled = 0
        self.seen = 0
        self.rng = random.Random(f"extraction-population:{model}:{width}")
        self.lo = self.hi = None
        self.ood_rate = None
        self.outputs = 0
        self.low = 0
        self.o = options
        self._since = 0
        self.epoch = 0
        self.peers: OrderedDict[str, list] = OrderedDict()  # source -> [last ts, 0/1 flags, their sum]
        self._notes = 0
        self._shares: dict[str, float] = {}  # the active peers' shares, recomputed every PEER_EVERY notes
        self._sorted: list[float] = []
        self.version = 0  # counts every change of the ranges (refresh or reset): cached outside() flags check it

    def add(self, vec: np.ndarray | None, conf: float | None) -> None:
        if conf is not None:
            self.outputs += 1
            self.low += conf < self.o.low_confidence
        if vec is None or len(vec) != self.width:
            return
        self.seen += 1
        if self.filled < POPULATION_ROWS:
            self.rows[self.filled] = vec
            self.filled += 1
        else:
            j = self.rng.randrange(self.seen)
            if j < POPULATION_ROWS:
                self.rows[j] = vec
        self._since += 1
        if self.filled >= self.o.min_population and (self.lo is None or self._since >= 128):
            self._refresh()

    def _refresh(self) -> None:
        rows = self.rows[:self.filled]
        q = self.o.range_quantile
        lo, hi = np.quantile(rows, q, axis=0), np.quantile(rows, 1 - q, axis=0)
        span = float(np.max(hi) - np.min(lo)) or 1.0
        self.lo, self.hi = lo - self.o.range_margin * span, hi + self.o.range_margin * span
        outside = np.count_nonzero((rows < self.lo) | (rows > self.hi), axis=1) > self.o.ood_features * self.width
        self.ood_rate = float(np.mean(outside))
        self._since = 0
        self.version += 1

    def outside(self, vec: np.ndarray) -> bool:
        if _COUNT_OUTSIDE is None:
            _feed()
        return _COUNT_OUTSIDE(vec, self.lo, self.hi) > self.o.ood_features * self.width

    @property
    def ready(self) -> bool:
        return self.lo is not None

    def low_rate(self) -> float | None:
        return self.low / self.outputs if self.outputs >= self.o.min_population else None

    # -- peers ---------------------------------------------------------------------------------
    def note(self, source: str, ts: int, ood: bool, taught: bool) -> None:
        """One judged query of ``source`` (``taught``: it went into the population); resets the
        ranges on a population-wide shift."""
        entry = self.peers.get(source)
        if entry is None:
            entry = self.peers[source] = [ts, deque(maxlen=PEER_FLAGS), 0, False]
            if len(self.peers) > MAX_PEERS:
                self.peers.popitem(last=False)
        else:
            self.peers.move_to_end(source)
            if ts - entry[0] > self.o.gap_seconds * 1e9:  # idle: its old flags say nothing of now
                entry[1].clear()
                entry[2] = 0
        flags = entry[1]
        if len(flags) == PEER_FLAGS:
            entry[2] -= flags[0]
        flags.append(1 if ood else 0)
        entry[0], entry[2] = ts, entry[2] + (1 if ood else 0)
        entry[3] = entry[3] or taught
        self._notes += 1
        if self._notes % PEER_EVERY == 0:
            since = ts - int(self.o.gap_seconds * 1e9)
            self._shares = {src: n / len(f) for src, (last, f, n, known) in self.peers.items()
                            if known and last >= since and len(f) >= PEER_MIN_FLAGS}
            self._sorted = sorted(self._shares.values())
            # A shift is decided on full memories only: 8 flags are too few (2 of 8 is 0.25).
            full = [self._shares[src] for src, e in self.peers.items()
                    if src in self._shares and len(e[1]) == PEER_FLAGS]
            if len(full) >= SHIFT_MIN_SOURCES and float(np.median(full)) >= SHIFT_SHARE:
                self._reset()

    def peer_rate(self, source: str | None) -> float | None:
        """Median out-of-range share of the other sources active lately (None: no such peer)."""
        shares = self._sorted
        own = self._shares.get(source)
        if own is not None:
            shares = shares.copy()
            shares.pop(bisect.bisect_left(shares, own))
        return _median_of_sorted(shares) if shares else None

    def _reset(self) -> None:
        self.filled = self.seen = self._since = 0
        self.lo = self.hi = self.ood_rate = None
        self.peers.clear()
        self._shares, self._sorted = {}, []
        self.epoch += 1
        self.version += 1


# -- per batch: a query row, and a stream's unpacked memories -------------------------------------
class _Row:
    """One query row of an event, with what both of its streams need computed once: the hash of
    its input, its projection, and whether it is out of a population's range (cached for one
    version of that population's ranges)."""

    __slots__ = ("vec", "conf", "width", "hash", "_x", "_pop", "_version", "_outside")

    def __init__(self, vec: np.ndarray | None, conf: float | None):
        self.vec, self.conf = vec, conf
        self.width = len(vec) if vec is not None else 0
        self.hash = zlib.crc32(vec.tobytes()) ^ self.width if vec is not None else None
        self._x = self._pop = self._version = self._outside = None

    def projected(self) -> np.ndarray:
        if self._x is None:
            self._x = (self.vec @ projection(self.width)).astype(np.float32)
        return self._x

    def outside(self, pop: "Population") -> bool:
        if self._pop is not pop or self._version != pop.version:
            self._pop, self._version, self._outside = pop, pop.version, pop.outside(self.vec)
        return self._outside


class _Streams:
    """The streams of one batch, unpacked into arrays indexed by a stream's slot for
    :func:`extraction_stats.feed`: counts (``extraction_stats.C_*``), the last input hashes and
    distances (oldest first), the reservoir (float32 rows oldest first, their float64 copy and
    squared norms); beside them the stored dicts and the time of each stream's last event."""

    def __init__(self, n: int):
        self.counts = np.zeros((n, N_COUNTS))
        self.hashes = np.zeros((n, HASHES), dtype=np.int64)
        self.res = np.zeros((n, RESERVOIR, PROJECTED_DIMS), dtype=np.float32)
        self.res64 = np.zeros((n, RESERVOIR, PROJECTED_DIMS))
        self.sq = np.zeros((n, RESERVOIR))
        self.dists = np.zeros((n, DISTANCES))
        self.dicts: list[dict] = [{}] * n
        self.tl: list[int] = [0] * n

    def load(self, slot: int, s: dict) -> None:
        self.dicts[slot], self.tl[slot] = s, s["tl"]
        h = _unpack(s["h"], np.uint32)[-HASHES:]
        packed = _unpack(s["r"], np.float32, PROJECTED_DIMS)[-RESERVOIR:]
        d = _unpack(s["d"], np.float32)[-DISTANCES:]
        self.hashes[slot] = 0
        self.hashes[slot, :len(h)] = h
        res = self.res[slot]
        res[:] = 0.0
        res[:len(packed)] = packed
        self.res64[slot] = res  # the reservoir as the median pairwise distance reads it
        self.sq[slot] = (self.res64[slot] * self.res64[slot]).sum(axis=1)  # and its rows' squared norms
        self.dists[slot] = 0.0
        self.dists[slot, :len(d)] = d
        c = self.counts[slot]
        c[:] = (s["n"], s["rep"], s["nd"], s["ood"], s["nj"], s["close"], s["nc"], s["low"], s.get("ep", 0),
                len(packed), len(h), len(d), 0.0)

    def sync(self, slot: int) -> None:
        """The counts written back into the stream's dict (for the judging, and at the batch's end)."""
        s, c = self.dicts[slot], self.counts[slot].tolist()
        s["n"], s["rep"] = int(c[C_N]), int(c[C_REP])
        s["nd"], s["ood"], s["nj"], s["close"], s["nc"], s["low"] = (c[C_ND], c[C_OOD], c[C_NJ], c[C_CLOSE],
                                                                     c[C_NC], c[C_LOW])
        if c[C_EP] or "ep" in s:
            s["ep"] = int(c[C_EP])

    def packed(self, slot: int) -> dict:
        self.sync(slot)
        s, c = self.dicts[slot], self.counts[slot]
        s["tl"] = self.tl[slot]
        if c[C_CHANGED]:
            s["h"] = _pack(self.hashes[slot, :int(c[C_HASHES])].astype(np.uint32), np.uint32)
            s["r"] = _pack(self.res[slot, :int(c[C_RES])], np.float32)
            s["d"] = _pack(self.dists[slot, :int(c[C_DISTS])], np.float32)
        return s


def _share_of(k: float, n: float) -> float:
    return k / n if n else 0.0


# -- the detector ------------------------------------------------------------------------------
class ExtractionDetector(Detector):
    name = "extraction.queries"
    kinds = ("prediction",)
    description = ("model extraction through the prediction API: out-of-range, clustered or boundary queries "
                   "and PRADA's distance test, per principal and pooled per source address, repeats excluded")

    class Options(Detector.Options):
        min_queries: int = Field(default=20, ge=5, description="Distinct queries in a stream before it is judged.")
        window: int = Field(default=200, ge=20, description="Distinct queries after which a stream's counts halve.")
        p_value: float = Field(default=1e-6, gt=0, lt=1, description="Binomial tail probability that alerts.")
        min_ratio: float = Field(default=4.0, ge=1, description="A share must be this many times the base rate.")
        ood_features: float = Field(default=0.05, gt=0, lt=1,
                                    description="A query is out of range when more than this share of its "
                                                "features is outside the population's range.")
        range_quantile: float = Field(default=0.002, ge=0, lt=0.5, description="Quantiles of the population's range.")
        range_margin: float = Field(default=0.02, ge=0, description="Margin around that range, as a share of its span.")
        close_ratio: float = Field(default=0.15, gt=0, lt=1,
                                   description="Nearest-neighbour distance under this share of the stream's "
                                               "median pairwise distance makes a close query.")
        low_confidence: float = Field(default=0.6, gt=0, lt=1, description="Top probability under this is low.")
        min_population: int = Field(default=300, ge=50, description="Queries a model's population needs before "
                                                                   "out-of-range and low-confidence are judged.")
        base_floor: float = Field(default=0.02, gt=0, lt=1, description="Floor of every base rate.")
        close_base: float = Field(default=0.03, gt=0, lt=1, description="Base rate of close queries.")
        normality_w: float = Field(default=0.80, gt=0, lt=1,
                                   description="PRADA: Shapiro-Wilk W of the distances under this alerts.")
        normality_min: int = Field(default=40, ge=10, description="Distances before the normality test runs.")
        gap_seconds: float = Field(default=3600.0, gt=0, description="A stream idle this long starts afresh.")

    def __init__(self, options=None):
        super().__init__(options)
        _observe()
        _feed()
        self.populations: dict[tuple[str, int], Population] = {}
        self._model_populations: dict[str, list[Population]] = {}  # model -> its populations, in creation order

    # -- state -------------------------------------------------------------------------------
    @staticmethod
    def _fresh(ts: int) -> dict:
        return {"tl": ts, "n": 0, "rep": 0, "nd": 0.0, "ood": 0.0, "nj": 0.0, "close": 0.0,
                "nc": 0.0, "low": 0.0, "h": "", "r": "", "d": "", "w": None, "inc": None, "ep": 0}

    def update(self, batch: EventBatch, state: StateStore) -> list[dict]:
        # The order of every computation is the per-event order: the population a stream is
        # judged against changes from one query to the next, so events are not batched across
        # streams. What is per batch: the streams' state, unpacked once into arrays indexed by a
        # stream's slot and packed once at the end, and every query row's hash, projection and
        # confidence. What is per event: one compiled call per stream (``extraction_stats.feed``:
        # every row's counts, repeats, reservoir and distances), then the Python that needs the
        # population: Shapiro-Wilk when due, the judging when a ratio test passes, the learning.
        o = self.options
        gap = int(o.gap_seconds * 1e9)
        name = self.name
        out: list[dict] = []
        todo = []
        keys: list[str] = []
        first_ts: list[int] = []
        slot_of: dict[str, int] = {}
        all_rows: list[_Row] = []
        for e in batch.where("kind", "prediction"):
            ts = e.get("ts")
            if type(ts) is not int:
                continue
            principal, src, model = e.get("principal"), e.get("src_ip"), e.get("model") or "-"
            if principal is None and src is None:
                continue
            r0 = len(all_rows)
            all_rows.extend([_Row(vec, conf) for vec, conf, _cls in query_rows(e)])
            streams = []
            if principal is not None:
                key = f"{name}/p|{src or '-'}|{principal}|{model}"
                slot = slot_of.get(key)
                if slot is None:
                    slot = slot_of[key] = len(keys)
                    keys.append(key)
                    first_ts.append(ts)
                streams.append(("principal", principal, slot))
            if src is not None:
                key = f"{name}/s|{src}|{model}"
                slot = slot_of.get(key)
                if slot is None:
                    slot = slot_of[key] = len(keys)
                    keys.append(key)
                    first_ts.append(ts)
                streams.append(("src_ip", src, slot))
            todo.append((e, ts, src, principal, model, r0, len(all_rows), streams))
        if not todo:
            return out

        w = _Streams(len(keys))
        for slot, key in enumerate(keys):
            s = state.get(key)
            s = dict(s) if s is not None else None
            if s is None or first_ts[slot] - s["tl"] > gap:
                s = self._fresh(first_ts[slot])
            w.load(slot, s)
        rows = np.zeros((len(all_rows), N_ROW))
        x = np.zeros((len(all_rows), PROJECTED_DIMS), dtype=np.float32)
        for i, row in enumerate(all_rows):
            if row.vec is not None:
                rows[i, R_VEC] = 1.0
                rows[i, R_HASH] = row.hash
                x[i] = row.projected()
            if row.conf is not None:
                rows[i, R_HAS_CONF] = 1.0
                rows[i, R_CONF] = row.conf
        params = np.array([o.min_queries, o.window, o.close_ratio, o.low_confidence, o.normality_min,
                           NORMALITY_EVERY, 0.0, o.min_ratio * o.close_base, 0.0])
        snap = np.zeros((2, DISTANCES))
        feed = _feed()
        populations, model_populations = self.populations, self._model_populations
        counts, tl, dicts = w.counts, w.tl, w.dicts
        for e, ts, src, principal, model, r0, r1, streams in todo:
            # the rows' populations and the ratio tests' thresholds as they stand at this event
            for i in range(r0, r1):
                row = all_rows[i]
                if row.vec is not None:
                    pop = populations.get((model, row.width))
                    if pop is not None and pop.ready:
                        rows[i, R_READY] = 1.0
                        rows[i, R_EPOCH] = pop.epoch
                        rows[i, R_OUTSIDE] = row.outside(pop)
            pops = model_populations.get(model, ())
            ready = next((p for p in pops if p.ready), None)
            params[P_OOD_THR] = math.inf if ready is None else o.min_ratio * max(ready.ood_rate or 0.0, o.base_floor)
            low_base = pops[0].low_rate() if pops else None
            params[P_LOW_THR] = math.inf if low_base is None else o.min_ratio * max(low_base, o.base_floor)
            for _etype, _eid, slot in streams:
                if ts - tl[slot] > gap:
                    w.load(slot, self._fresh(ts))
                tl[slot] = ts
            fed = feed(streams[0][2], streams[1][2] if len(streams) > 1 else -1, counts, w.hashes, w.res, w.res64,
                       w.sq, w.dists, x, rows, r0, r1, params, snap)
            flagged = False
            seasoned = True
            for k, (etype, eid, slot) in enumerate(streams):
                due, hit = fed[2 * k], fed[2 * k + 1]
                s = dicts[slot]
                if due:
                    s["w"] = round(shapiro_w(snap[k, :due].copy()), 4)
                # The pooled source stream speaks only for what no principal of it shows alone.
                if hit and (not flagged or s["inc"] is not None):
                    w.sync(slot)
                    alert = self._judge(s, model, ts, etype, eid, e)
                    if alert is not None:
                        out.append(alert)
                if s["inc"] is not None:
                    flagged = True
                seasoned = seasoned and counts[slot, C_ND] >= o.min_queries
            # What the population learns from: streams judged (min_queries) and found clean. A
            # thief's first queries, before it can be judged, would otherwise widen the ranges
            # for every other thief (two rows at a range's end are enough to move a quantile).
            learn = seasoned and not flagged
            for i in range(r0, r1):
                row = all_rows[i]
                if row.vec is None:
                    continue
                pop = self._population(model, row.width)
                if pop.ready:
                    pop.note(src or principal, ts, row.outside(pop), learn)
                if learn:
                    pop.add(row.vec, row.conf)
        for slot, key in enumerate(keys):
            state.set(key, w.packed(slot))
        return merge_alerts(out)

    def _population(self, model: str, width: int) -> Population:
        p = self.populations.get((model, width))
        if p is None:
            p = self.populations[(model, width)] = Population(model, width, self.options)
            self._model_populations.setdefault(model, []).append(p)
        return p

    def _could_hit(self, s: dict, model: str) -> bool:
        """Whether any share statistic passes its ratio test: without one, :meth:`_judge` raises
        nothing, so the p-values, the peers' median and the evidence need not be computed.

        The out-of-range base here leaves out the peers' rate, which can only raise it."""
        o = self.options
        pops = self._model_populations.get(model, ())
        if s["nj"] >= o.min_queries:
            pop = next((p for p in pops if p.ready), None)
            if pop is not None and _share_of(s["ood"], s["nj"]) >= o.min_ratio * max(pop.ood_rate or 0.0,
                                                                                     o.base_floor):
                return True
        if s["nd"] >= o.min_queries and _share_of(s["close"], max(s["nd"] - 4, 1.0)) >= o.min_ratio * o.close_base:
            return True
        if pops and s["nc"] >= o.min_queries:
            low_base = pops[0].low_rate()
            if low_base is not None and _share_of(s["low"], s["nc"]) >= o.min_ratio * max(low_base, o.base_floor):
                return True
        return False

    def _judge(self, s: dict, model: str, ts: int, etype: str, eid: str, event: dict) -> dict | None:
        if not self._could_hit(s, model):
            return None
        o = self.options
        findings = []
        pops = self._model_populations.get(model, [])
        pop = next((p for p in pops if p.ready), None)
        if pop is not None and s["nj"] >= o.min_queries:
            peers = pop.peer_rate(event.get("src_ip") or event.get("principal"))
            base = max(pop.ood_rate or 0.0, peers or 0.0, o.base_floor)
            findings.append(self._share("out_of_range", s["ood"], s["nj"], base))
        if s["nd"] >= o.min_queries:
            findings.append(self._share("close_queries", s["close"], max(s["nd"] - 4, 1.0), o.close_base))
        low_base = pops[0].low_rate() if pops else None
        if low_base is not None and s["nc"] >= o.min_queries:
            findings.append(self._share("low_confidence", s["low"], s["nc"], max(low_base, o.base_floor)))
        w = s.get("w")
        if w is not None:
            if w < o.normality_w:
                findings.append({"statistic": "distance_normality", "value": round(w, 4),
                                 "threshold": o.normality_w, "hit": True, "strength": (o.normality_w - w) * 100})
        hits = [f for f in findings if f and f.get("hit")]
        if all(f["statistic"] == "distance_normality" for f in hits):
            hits = []  # corroborates only: see the module doc
        if not hits and s["inc"] is None:
            return None
        if hits:
            best = max(hits, key=lambda f: f["strength"])
            severity = "high" if len(hits) >= 2 or s["n"] >= 500 else "medium"
            inc = s["inc"]
            if inc is None:
                inc = s["inc"] = {"first": ts, "sev": severity}
            elif SEVERITY_RANK[severity] > SEVERITY_RANK[inc["sev"]]:
                inc = s["inc"] = {"first": inc["first"], "sev": severity}
        else:
            return None  # still open; its last alert stands until new evidence
        inc = s["inc"]
        evidence = {
            "statistic": best["statistic"], "value": best["value"], "threshold": best["threshold"],
            "queries": s["n"], "distinct_queries": int(round(s["nd"])), "repeats": s["rep"], "model": model,
            "statistics": [{k: v for k, v in f.items() if k not in ("hit", "strength")} for f in findings if f],
        }
        if etype == "principal":
            evidence["src_ip"] = event.get("src_ip")
            who = f"principal {eid}"
        else:
            who = f"source {eid} (pooled over its principals)"
        summary = (f"Possible model extraction of {model} by {who}: {best['statistic']} = {best['value']} "
                   f"(threshold {best['threshold']}) after {s['n']} queries")
        score = min(float(best["strength"]), 1000.0)
        return make_alert(self.name, inc["sev"], (etype, eid), score=score, summary=summary, evidence=evidence,
                          first_ts=inc["first"], last_ts=ts, count=s["n"])

    def _share(self, statistic: str, k: float, n: float, base: float) -> dict:
        o = self.options
        share = k / n if n else 0.0
        p = binomial_tail(k, n, base)
        hit = share >= o.min_ratio * base and p < o.p_value  # the first half is _could_hit's test
        return {"statistic": statistic, "value": round(share, 4), "threshold": round(o.min_ratio * base, 4),
                "base_rate": round(base, 4), "p_value": float(f"{p:.3g}"), "hit": hit,
                "strength": -math.log10(max(p, 1e-300))}
