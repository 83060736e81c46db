"""Anomalies in metric series: a model of each series' normal shapes, scored point by point.

The core is :class:`SeriesModel`, an online detector for one metric series (a model's
latency or error rate, a GPU's utilisation or power) that emits an anomaly score in [0, 1]
per point, in bounded time and memory. It is what ``ramparts bench nab`` scores on the
Numenta Anomaly Benchmark, and what the detectors :class:`ModelMetrics` (``anomaly.model``)
and :class:`GpuMetrics` (``anomaly.gpu``) run over per-minute aggregates of the event stream.

How a series is judged:

* **Learning.** The first ``learn_points`` points are learned and never scored (NAB's
  probationary period: 15% of a file, at most 750 points).
* **Shapes.** Points are downsampled in steps of ``learn_points / (window * 13)`` points:
  a step is represented by its mean, or by its extreme (the one further from a moving
  average of step means) when that lies more than 5% of the series' range from the mean,
  so a spike survives the downsampling, rounded to a 255th of the range (the precision
  the state keeps it at). The last ``window`` steps form a *shape*, a vector
  in the units of the series; a day of five-minute samples spans a few shapes, so a
  series' daily (and, with a long enough learning period, weekly) rhythm is what the
  memory of shapes holds.
* **Novelty.** A shape is compared with every remembered shape that does not overlap it
  (mean absolute difference, divided by the series' range): its distance to the nearest
  one is how new it is. Normal shapes recur, so their distances are small; a level shift,
  a flat stretch where the series always moves, a burst of spikes, a missing daily peak
  give a shape unlike any before.
* **Calibration.** Each series' distances are judged against its own: the 90th percentile
  of the distances of its unflagged shapes (estimated with the P-squared algorithm, five
  markers), 0.7 times the largest distance of the recent past (halving every 400 steps),
  and the nearest shape's own distance when it was new (a *local* reference, as in the
  local outlier factor), whichever is largest. The local reference makes a shape as new
  as its neighbour was normal: where shapes are always scattered (a noisy daily
  transition, a burst of spikes) a matching distance is expected, and a shape that
  resembles an earlier anomaly is not flagged twice. The novelty ratio is distance over
  that reference; a ratio
  above ``novelty`` (0.8) flags the point, scored ``ratio / (1 + ratio)``. A series that
  is always surprising has a high reference and flags only what surprises it more.
* **New extremes.** A point more than ``extreme`` (5%) of the learned range beyond the
  highest or lowest value seen is flagged at once, scored 0.9, without waiting for its
  step to end.
* **New held levels.** The level held over the last 3 steps (the lowest of their means; the
  highest, for a fall) more than 10% of the span of the levels held before past the highest
  (lowest) of them scores 0.9, once the series is twice its learning period long. One spike
  can widen the range tenfold, and with it every distance's denominator, so the shapes then
  miss a bump the size of a daily peak; a spike moves one step's mean, so it neither holds a
  level nor widens the levels held.
* **One flag per anomaly.** After a flag the series is masked for 1.5 windows of steps:
  only a ratio 1.5 times the last flagged one (an escalating anomaly) flags again inside
  it. Every other point scores 0.

Memory: the series keeps at most ``memory`` shapes (oldest forgotten first). Consecutive
shapes overlap, so they are kept as one history of steps (``memory + window - 1`` of them;
the shapes are its windows) with one number per shape, its own distance. The benchmark
runs with 4096; the detectors keep 560 per series so that a series' state stays under 2 KB
of JSON (a step stored as a byte, its place in the series' range; an own distance as a
byte on a log scale).
"""

from __future__ import annotations

import base64
import functools
import math
from collections import deque

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view
from pydantic import Field

from ramparts.events import EventBatch

from .base import Detector, StateStore, make_alert, merge_alerts
from .typed_columns import TypedColumns

STEPS_PER_LEARNING = 13  # downsampled steps of one window that fit in the learning period
EXTREME_SHARE = 0.05  # a step is represented by its extreme when it lies this share of the range off its mean
START = 0.5  # distances count towards the reference from halfway through the learning period
QUANTILE = 0.9  # the reference: this quantile of the unflagged distances ...
RECENT_SHARE = 0.7  # ... or this share of the largest recent distance, whichever is larger
RECENT_HALF_LIFE = 400  # steps over which the largest recent distance halves
MASK_WINDOWS = 1.5  # after a flag, this many windows of steps are masked
ESCALATION = 1.5  # inside the mask, a ratio this many times the last flagged one flags again
EXTREME_SCORE = 0.9  # the score of a new extreme
LOCAL_SHARE = 1.0  # the reference is at least this share of the nearest shape's own distance when it was new
HELD_STEPS = 3  # a level held this many steps (a spike moves one step's mean) can be a new held extreme ...
HELD_SHARE = 0.1  # ... when it passes the levels held before by this share of their span
HELD_AFTER = 2.0  # ... once the series is twice the learning period long (a chance record, 1/n, is half as likely)


class P2Quantile:
    """The P-squared estimate of one quantile (Jain and Chlamtac, 1985): five markers, O(1).

    >>> q = P2Quantile(0.9)
    >>> for x in range(1, 1001):
    ...     q.add(float(x))
    >>> round(q.value())
    900
    """

    def __init__(self, p: float, state: list | None = None):
        self.p = p
        if state is None:
            self.n = 0
            self.q: list[float] = []
            self.pos = [1.0, 2.0, 3.0, 4.0, 5.0]
        else:
            self.n, self.q, self.pos = int(state[0]), list(state[1]), list(state[2])

    def state(self) -> list:
        return [self.n, [float(f"{v:.6g}") for v in self.q], self.pos]

    def add(self, x: float) -> None:
        self.n += 1
        q = self.q
        if self.n <= 5:
            q.append(x)
            q.sort()
            return
        if x < q[0]:
            q[0] = x
            k = 0
        elif x >= q[4]:
            q[4] = x
            k = 3
        else:
            k = 0
            while k < 3 and x >= q[k + 1]:
                k += 1
        pos = self.pos
        for i in range(k + 1, 5):
            pos[i] += 1
        p, n = self.p, self.n
        want = (1.0, 1 + (n - 1) * p / 2, 1 + (n - 1) * p, 1 + (n - 1) * (1 + p) / 2, float(n))
        for i in (1, 2, 3):
            d = want[i] - pos[i]
            if (d >= 1 and pos[i + 1] - pos[i] > 1) or (d <= -1 and pos[i - 1] - pos[i] < -1):
                s = 1.0 if d > 0 else -1.0
                # the parabolic prediction, or the linear one when that leaves the neighbours' range
                qp = q[i] + s / (pos[i + 1] - pos[i - 1]) * (
                    (pos[i] - pos[i - 1] + s) * (q[i + 1] - q[i]) / (pos[i + 1] - pos[i])
                    + (pos[i + 1] - pos[i] - s) * (q[i] - q[i - 1]) / (pos[i] - pos[i - 1]))
                if not q[i - 1] < qp < q[i + 1]:
                    j = i + int(s)
                    qp = q[i] + s * (q[j] - q[i]) / (pos[j] - pos[i])
                q[i] = qp
                pos[i] += s

    def value(self) -> float:
        if not self.q:
            return 0.0
        if self.n <= 5:
            return float(np.quantile(self.q, self.p))
        return self.q[2]


class SeriesModel:
    """One metric series: ``score(value) -> float`` in [0, 1], learning as it goes.

    ``learn_points``: points learned before any is scored; ``window``: steps per shape;
    ``memory``: shapes kept; ``novelty``: the novelty ratio that flags; ``extreme``: how far
    past the learned range (as a share of it) a new extreme must go.

    >>> m = SeriesModel(learn_points=200, window=8)
    >>> rng = np.random.default_rng(1)
    >>> calm = [m.score(50 + 10 * math.sin(i / 5) + rng.normal()) for i in range(600)]
    >>> max(calm[:200]), sum(s >= 0.6 for s in calm[200:])  # nothing while learning, no alert after
    (0.0, 0)
    >>> m.score(400.0)  # far past anything seen: a new extreme
    0.9
    """

    def __init__(self, learn_points: int = 750, window: int = 8, memory: int = 4096, novelty: float = 0.8,
                 extreme: float = 0.05, state: dict | None = None):
        self.learn = int(learn_points)
        self.window = int(window)
        self.memory = int(memory)
        self.novelty = float(novelty)
        self.extreme = float(extreme)
        self.step = max(1, round(self.learn / (self.window * STEPS_PER_LEARNING)))
        self.mask = int(self.window * MASK_WINDOWS)
        self.decay = 0.5 ** (1 / RECENT_HALF_LIFE)
        self.kind = ""  # what the last score flagged: "new extreme", "new held level", "new shape" or ""
        self._step_kind = ""
        if state is None:
            self.n = 0  # points seen
            self.acc = [0, 0.0, math.inf, -math.inf]  # the open step: count, sum, min, max
            self.ma: float | None = None
            self.lo, self.hi = math.inf, -math.inf
            self.ds: deque[float] = deque(maxlen=2 * self.window + 1)
            self.steps = 0
            self.hist = np.empty(0)  # the remembered steps, in the units of the series: shapes are its windows
            self.memd = np.empty(0)  # per remembered shape, its own distance when it was new (nan: none)
            self.dq: deque[float] = deque(maxlen=self.window + 2)  # the distances of the latest shapes
            self.ref = P2Quantile(QUANTILE)
            self.recent = 0.0
            self.last_flag = -(10 ** 9)
            self.last_ratio = 0.0
            self.held: deque[float] = deque(maxlen=HELD_STEPS)  # the latest step means
            self.held_hi, self.held_lo = -math.inf, math.inf  # the highest and lowest level held so far
        else:
            self._load(state)

    # -- scoring ---------------------------------------------------------------------------

    def score(self, x: float) -> float:
        """The anomaly score of the next point (0 while learning, and for unremarkable points)."""
        x = float(x)
        self.n += 1
        flag = 0.0
        self.kind = ""
        if self.n > self.learn and self.hi > self.lo:
            span = self.hi - self.lo
            beyond = max(x - self.hi, self.lo - x) / span
            if beyond > self.extreme and (self.steps - self.last_flag > self.mask or beyond > self.last_ratio):
                flag = EXTREME_SCORE
                self.kind = "new extreme"
                self.last_flag = self.steps
                self.last_ratio = max(self.last_ratio, 1.0)
        if x < self.lo:
            self.lo = x
        if x > self.hi:
            self.hi = x
        acc = self.acc
        acc[0] += 1
        acc[1] += x
        acc[2] = min(acc[2], x)
        acc[3] = max(acc[3], x)
        if acc[0] < self.step:
            return flag
        step = self._end_step()
        if step > flag:
            self.kind = self._step_kind
            return step
        return flag

    def _end_step(self) -> float:
        count, total, low, high = self.acc
        self.acc = [0, 0.0, math.inf, -math.inf]
        mean = total / count
        self.ma = mean if self.ma is None else (self.ma + mean) / 2
        extreme = high if abs(high - self.ma) >= abs(low - self.ma) else low
        span = (self.hi - self.lo) or 1.0
        value = extreme if abs(extreme - mean) >= EXTREME_SHARE * span else mean
        # kept at the precision the state stores it (a 255th of the range), so the current
        # shape and the remembered ones are compared alike, reloaded or not
        self.ds.append(self.lo + round((value - self.lo) / span * 255) / 255 * span)
        self.steps += 1
        w = self.window
        if len(self.ds) > 2 * w:  # the shape ending w + 1 steps ago no longer overlaps the current one
            new = [self.ds[i] for i in range(w)] if len(self.hist) == 0 else [self.ds[w - 1]]
            self.hist = np.append(self.hist, new)[-(self.memory + w - 1):]
            own = self.dq[0] if len(self.dq) == self.dq.maxlen else math.nan
            self.memd = np.append(self.memd, own)[-self.memory:]
        if len(self.ds) < w or len(self.hist) < w:
            return 0.0
        shape = np.fromiter((self.ds[i] for i in range(len(self.ds) - w, len(self.ds))), float, w)
        dist = np.abs(sliding_window_view(self.hist, w) - shape).mean(axis=1)
        nearest = int(dist.argmin())
        d = float(dist[nearest]) / span
        self.dq.append(d)
        score = 0.0
        if self.n > self.learn and self.ref.n > 10:
            reference = max(self.ref.value(), RECENT_SHARE * self.recent)
            own = self.memd[nearest]
            if own == own:  # the nearest shape's own distance: as new as that is normal here
                reference = max(reference, LOCAL_SHARE * own)
            ratio = d / (reference + 1e-9)
            if ratio > self.novelty and (self.steps - self.last_flag > self.mask
                                         or ratio > self.last_ratio * ESCALATION):
                score = min(1.0, ratio / (1 + ratio))
                self.last_flag = self.steps
                self.last_ratio = ratio
        self._step_kind = "new shape" if score else ""
        if self.n > self.learn * START and score == 0.0:
            self.ref.add(d)
        if self.n > self.learn:
            self.recent = max(self.recent * self.decay, d)
        held = self._held(mean)
        if held > score:
            score, self._step_kind = held, "new held level"
        return float(score)  # a Python float, whichever numpy scalars went into it

    def _held(self, mean: float) -> float:
        """EXTREME_SCORE when the level of the last HELD_STEPS step means is a new held extreme.

        The level held is the lowest of the last HELD_STEPS step means (the highest, for a low):
        one spike moves one step's mean, so it cannot hold a level. A new extreme of held levels
        is judged against the range of the levels held before, not the range of the points, which
        one spike can widen tenfold and with it every distance's denominator.
        """
        self.held.append(mean)
        if len(self.held) < self.held.maxlen:
            return 0.0
        up, down = min(self.held), max(self.held)
        score = 0.0
        span = self.held_hi - self.held_lo
        if self.n > self.learn * HELD_AFTER and span > 0 and self.steps - self.last_flag > self.mask:
            if max(up - self.held_hi, self.held_lo - down) / span > HELD_SHARE:
                score = EXTREME_SCORE
                self.last_flag = self.steps
                self.last_ratio = max(self.last_ratio, 1.0)
        self.held_hi, self.held_lo = max(self.held_hi, up), min(self.held_lo, down)
        return score

    def explain(self) -> dict:
        """The numbers behind the last score: range, levels held, reference distance, last ratio, points seen."""
        return {"learned_low": _r(self.lo), "learned_high": _r(self.hi), "held_low": _r(self.held_lo),
                "held_high": _r(self.held_hi), "reference_distance": _r(self.ref.value()),
                "novelty_ratio": _r(self.last_ratio), "points": self.n, "learn_points": self.learn}

    # -- state -------------------------------------------------------------------------------

    def state(self) -> dict:
        """Plain JSON: scalars, the recent steps, the P-squared markers and the shapes.

        Steps lie inside the series' range (they are means and extremes of its points), so
        each remembered and recent step is stored as a byte, its place in the range in
        255ths, and each shape's own distance and each recent distance as a byte on a log
        scale (:func:`_log_bytes`), all base64: 560 shapes of 8 steps take 1.5 KB, the whole
        state at most about 1.85 KB. The range's 255th is the precision lost by a round trip.
        """
        span = (self.hi - self.lo) if self.hi > self.lo else 1.0
        lo = self.lo if math.isfinite(self.lo) else 0.0
        # The recent and the remembered steps in one pass (the same operations on each value as a
        # pass each: a dozen numpy calls fewer per minute scored, which is what this costs on a
        # series' few steps; the remembered ones are none while it learns).
        ds = np.fromiter(self.ds, float)
        steps = _range_bytes(np.concatenate((ds, self.hist)) if len(self.hist) else ds, lo, span)
        return {"n": self.n, "a": [self.acc[0], _r(self.acc[1]), _r(self.acc[2]), _r(self.acc[3])],
                "ma": _r(self.ma), "lo": _r(self.lo), "hi": _r(self.hi), "s": self.steps,
                "ds": _b64(steps[:len(ds)]),
                "dq": _b64(_log_bytes(np.fromiter(self.dq, float))), "m": _b64(steps[len(ds):]),
                "o": _b64(_log_bytes(self.memd)) if len(self.memd) else "", "q": self.ref.state(),
                "r": _r(self.recent), "f": self.last_flag, "fr": _r(self.last_ratio),
                "h": [_r(v) for v in self.held], "hh": _r(self.held_hi), "hl": _r(self.held_lo)}

    def _load(self, s: dict) -> None:
        self.n = int(s["n"])
        a = s["a"]
        self.acc = [int(a[0]), float(a[1]), _f(a[2], math.inf), _f(a[3], -math.inf)]
        self.ma = None if s["ma"] is None else float(s["ma"])
        self.lo, self.hi = _f(s["lo"], math.inf), _f(s["hi"], -math.inf)
        self.steps = int(s["s"])
        span = (self.hi - self.lo) if self.hi > self.lo else 1.0
        lo = self.lo if math.isfinite(self.lo) else 0.0
        # The recent and the remembered steps decoded in one pass, as state() wrote them (the same
        # operations on each value as a pass each); the remembered ones and their distances are none
        # while the series learns.
        ds_bytes, m_text = base64.b64decode(s["ds"]), s["m"]
        steps = _range_floats_of(ds_bytes + base64.b64decode(m_text) if m_text else ds_bytes, lo, span)
        self.ds = deque(steps[:len(ds_bytes)].tolist(), maxlen=2 * self.window + 1)
        self.hist = steps[len(ds_bytes):][-(self.memory + self.window - 1):]
        o = s["o"]
        self.memd = (_log_floats(np.frombuffer(base64.b64decode(o), dtype=np.uint8))[-self.memory:] if o
                     else np.empty(0))
        self.dq = deque(_log_floats(np.frombuffer(base64.b64decode(s["dq"]), dtype=np.uint8)).tolist(),
                        maxlen=self.window + 2)
        self.ref = P2Quantile(QUANTILE, s["q"])
        self.recent = float(s["r"])
        self.last_flag = int(s["f"])
        self.last_ratio = float(s["fr"])
        self.held = deque((float(v) for v in s.get("h", ())), maxlen=HELD_STEPS)
        self.held_hi, self.held_lo = _f(s.get("hh"), -math.inf), _f(s.get("hl"), math.inf)


def _r(v: float | None) -> float | None:
    """Six significant digits for state and evidence; infinities (an empty range) as None."""
    if v is None or not math.isfinite(v):
        return None
    return float(f"{v:.6g}")


def _f(v, default: float) -> float:
    return default if v is None else float(v)


def _b64(b: bytes) -> str:
    return base64.b64encode(b).decode()


def _range_bytes(v: np.ndarray, lo: float, span: float) -> bytes:
    """Values inside the series' range as bytes, their place in it in 255ths."""
    # np.minimum(np.maximum(...)) is np.clip's arithmetic (nan stays nan) without its Python wrappers
    return np.minimum(np.maximum(np.rint((v - lo) / span * 255), 0), 255).astype(np.uint8).tobytes()


def _range_floats_of(b: bytes, lo: float, span: float) -> np.ndarray:
    """The values that bytes of :func:`_range_bytes` stand for."""
    return np.frombuffer(b, dtype=np.uint8).astype(float) / 255 * span + lo


def _log_bytes(d: np.ndarray) -> bytes:
    """Distances (shares of the range, at most 1) as bytes on a log scale: 16 to an octave, 0 for none.

    240 is 1, 1 is 2**-14.9 or less; a round trip keeps a distance within 2.2%.
    """
    # log2 of at least 1e-12 (nan stays nan, quietly) raises no floating-point warning: no errstate needed
    b = np.minimum(np.maximum(np.rint(240 + 16 * np.log2(np.maximum(d, 1e-12))), 1), 255)
    return np.where(np.isnan(d), 0, b).astype(np.uint8).tobytes()


def _log_floats_of(b: np.ndarray) -> np.ndarray:
    """The distances that bytes of :func:`_log_bytes` stand for (nan for 0)."""
    return np.where(b == 0, math.nan, 2.0 ** ((b.astype(float) - 240) / 16))


_LOG_FLOATS = _log_floats_of(np.arange(256, dtype=np.uint8))  # every byte's distance, worked out once


def _log_floats(b: np.ndarray) -> np.ndarray:
    """:func:`_log_floats_of` of ``b`` (uint8), read from the table of the 256 bytes' values."""
    return _LOG_FLOATS[b]


# -- the detectors: per-minute series of the event stream --------------------------------------

MINUTE = 60 * 1_000_000_000

_NUMBER_TYPES = frozenset((float, int, type(None)))  # values numpy reads as _num does (bool is not one)
_TIME_TYPES = frozenset((int, bool))  # what ``isinstance(ts, int)`` accepts


def _num(v) -> float | None:
    """A finite number, or None (a missing field, a string where a number belongs)."""
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return None
    v = float(v)
    return v if math.isfinite(v) else None


def _numbers(values, types: frozenset | None = None, floats: np.ndarray | None = None) -> np.ndarray:
    """:func:`_num` of each value as float64, NaN where it is None. ``types`` and ``floats``: the
    values' types and ``np.array(values, float64)`` when already made
    (:class:`.typed_columns.TypedColumns`; shared: copied here).

    >>> _numbers([1, 2.5, None, float("inf"), "3", True]).tolist()
    [1.0, 2.5, nan, nan, nan, nan]
    """
    if _NUMBER_TYPES.issuperset(map(type, values) if types is None else types):
        if floats is not None:
            a = floats.copy()
        else:
            try:
                a = np.array(values, dtype=np.float64)  # None reads as NaN; an int as float() rounds it
            except OverflowError:  # an int past float's range: _num raises it below, as it always did
                a = None
        if a is not None:
            a[np.isinf(a)] = np.nan
            return a
    return np.array([math.nan if v is None else v for v in map(_num, values)], dtype=np.float64)


def _column_numbers(columns: TypedColumns, field: str) -> np.ndarray:
    """:func:`_numbers` of a field, from its conversions shared with the batch's other detectors."""
    return _numbers(columns.values(field), columns.types(field, _NUMBER_TYPES), columns.floats(field))


class _Codes(dict):
    """Entity -> a small code, numbered in the order the entities are met."""

    def __missing__(self, key):
        code = self[key] = len(self)
        return code


def _entity_codes(entities, times, coded: tuple[np.ndarray, list] | None = None,
                  time_types: frozenset | None = None, time_ints: np.ndarray | None = None
                  ) -> tuple[np.ndarray, list[str], np.ndarray]:
    """Per event, a small code of its entity (-1 where the entity is not a string or the time
    not an int: the event is skipped), the entities by code, and each event's minute.
    ``coded``, ``time_types``, ``time_ints``: the entities' codes (numbered as met) and values by
    code, the times' types and ``np.array(times, int64)``, when already made
    (:class:`.typed_columns.TypedColumns`; shared: not changed here)."""
    if coded is not None:
        codes, names = coded
    else:
        code = _Codes()
        try:
            codes = np.fromiter(map(code.__getitem__, entities), dtype=np.int64, count=len(entities))
        except TypeError:  # an unhashable value where the entity belongs
            code = _Codes()
            codes = np.fromiter((code[v] if isinstance(v, str) else -1 for v in entities), dtype=np.int64,
                                count=len(entities))
        names = list(code)
    if not all(isinstance(v, str) for v in names):  # None or a number where the entity belongs
        renumber = np.full(len(names) + 1, -1, dtype=np.int64)  # the last one: -1 stays -1
        kept = [i for i, v in enumerate(names) if isinstance(v, str)]
        renumber[kept] = np.arange(len(kept))
        codes = renumber[codes]
        names = [names[i] for i in kept]
    minutes = None
    if _TIME_TYPES.issuperset(map(type, times) if time_types is None else time_types):
        if time_ints is not None:
            minutes = time_ints // MINUTE
        else:
            try:
                minutes = np.array(times, dtype=np.int64) // MINUTE
            except OverflowError:  # a time past int64's nanoseconds (year 2262): the slow way below
                pass
    if minutes is None:
        low, high = np.iinfo(np.int64).min, np.iinfo(np.int64).max
        # a minute past int64 (a time of 10**29 years) cannot be kept in the series' state
        whole = [t // MINUTE if isinstance(t, int) else None for t in times]
        bad = [m is None or not low <= m <= high for m in whole]
        minutes = np.array([0 if b else m for m, b in zip(whole, bad)], dtype=np.int64)
        codes = np.where(np.array(bad, dtype=bool), -1, codes)  # a new array: codes may be shared
    return codes, names, minutes


@functools.cache
def _kernels():
    """:mod:`.anomaly_minutes`' two functions, loaded (from numba's cache, else compiled) by a first
    call when the detector is built, as ``extraction.queries`` loads its own (detectors/extraction.py)."""
    from .anomaly_minutes import accumulate, first_points

    codes, one = np.zeros(1, dtype=np.int64), np.zeros((1, 1), dtype=np.int64)
    first_points(codes, np.zeros((1, 1)), 1)
    accumulate(codes, codes.copy(), np.zeros((1, 1)), one, one.copy(), np.zeros((1, 1)),
               np.zeros((1, 1), dtype=np.bool_), np.zeros((1, 5), dtype=np.int64), np.zeros(1))
    return first_points, accumulate


class _MetricSeries(Detector):
    """Per entity and metric: a value per minute, scored by a :class:`SeriesModel`.

    Subclasses say which field of their events names the entity (``entity_field``), which
    fields they read (``fields``), and which point each event adds to which series
    (:meth:`points`: a column per metric of ``METRICS``, NaN for none), and how a minute
    aggregates (``MEAN`` metrics average their points, ``SUM`` metrics add them and count an
    empty minute as 0, up to ``fill_minutes``).

    A batch's fields are read as columns (:func:`.kind_columns.kind_values`: the batch's column of
    each field, its events of ``kinds`` picked in one C-level pass; no event's dict is made) and
    turned into arrays once per batch for every detector that reads them (:mod:`.typed_columns`:
    the values' types, their floats, the entities' codes; ``drift.model`` reads the same fields of
    the requests), its points built as numpy columns, and the per-minute sums updated in compiled
    code (:mod:`.anomaly_minutes`), in event order, on arrays indexed by a per-batch entity code; a
    series' state is read once and written once per batch, and only a closed minute (a few per
    batch) goes through Python.
    """

    entity_type: str = "model"
    entity_field: str = "model"
    fields: tuple[str, ...] = ()
    METRICS: tuple[str, ...] = ()
    MEAN: tuple[str, ...] = ()
    SUM: tuple[str, ...] = ()

    class Options(Detector.Options):
        learn_minutes: int = Field(default=720, ge=2, description="Minutes a series is learned before it is "
                                                                  "scored (NAB's probationary period: 750 points).")
        window: int = Field(default=8, ge=2, le=32, description="Downsampled steps per shape.")
        memory: int = Field(default=560, ge=1, le=560, description="Shapes kept per series (560 keep its state "
                                                                   "under 2 KB).")
        novelty: float = Field(default=0.8, gt=0, description="Novelty ratio (distance to the nearest known shape "
                                                              "over the series' reference) that flags a minute.")
        extreme: float = Field(default=0.05, ge=0, description="A minute this share of the learned range beyond "
                                                               "its highest or lowest value is flagged at once.")
        alert_score: float = Field(default=0.6, gt=0, le=1, description="Scores from here alert (0.55 was NAB's "
                                                                        "best threshold for the standard profile).")
        fill_minutes: int = Field(default=60, ge=0, description="Empty minutes of a counted series scored as 0 "
                                                                "before a longer silence is taken as downtime.")
        gap_seconds: float = Field(default=3600.0, gt=0, description="An incident closes after this long without "
                                                                     "a flagged minute.")

    def points(self, columns: TypedColumns) -> np.ndarray:
        """The points of the batch's events of ``kinds`` (their ``fields`` in ``columns``): shape (events,
        len(METRICS)), NaN for none."""
        raise NotImplementedError

    def __init__(self, options=None):
        super().__init__(options)
        _kernels()

    def _model(self, s: dict | None) -> SeriesModel:
        o = self.options
        return SeriesModel(learn_points=o.learn_minutes, window=o.window, memory=o.memory, novelty=o.novelty,
                           extreme=o.extreme, state=s)

    def update(self, batch: EventBatch, state: StateStore) -> list[dict]:
        if not batch.indices_where("kind", *self.kinds):
            return []
        # a column per field from the batch's columns (no event's dict is made), and its arrays (types,
        # floats, codes), shared with the other detectors of the batch that read the same field of the
        # same kinds
        cols = TypedColumns(batch, self.kinds)
        codes, names, minutes = _entity_codes(cols.values(self.entity_field), cols.values("ts"),
                                              cols.codes(self.entity_field), cols.types("ts", _TIME_TYPES), cols.ints("ts"))
        points = self.points(cols)
        metrics, k = self.METRICS, len(self.METRICS)
        first_points, accumulate = _kernels()
        first = first_points(codes, points, len(names)).ravel()  # per series (code * k + metric)
        touched = np.flatnonzero(first >= 0)
        shape = (len(names), k)
        cur_m, cur_n = np.zeros(shape, dtype=np.int64), np.zeros(shape, dtype=np.int64)
        cur_v, fresh = np.zeros(shape), np.zeros(shape, dtype=np.bool_)
        # the series with a point in the batch (stragglers included), in the order they meet
        # their first one, as the per-event loop met them: their state read once here, written
        # once at the end
        series: dict[tuple[int, int], dict] = {}
        for c, j in (divmod(s, k) for s in touched[np.argsort(first[touched])].tolist()):
            st = state.get(f"{self.name}/{names[c]}/{metrics[j]}")
            if st is None:
                st = {"m": 0, "n": 0, "v": 0.0, "sm": None, "inc": None}
                fresh[c, j] = True
            else:
                cur_m[c, j], cur_n[c, j], cur_v[c, j] = st["m"], st["n"], st["v"]
            series[c, j] = st
        closes = np.empty((len(codes) * k, 5), dtype=np.int64)
        closed_v = np.empty(len(codes) * k)
        done = accumulate(codes, minutes, points, cur_m, cur_n, cur_v, fresh, closes, closed_v)
        out: list[dict] = []
        for (c, j, minute, n, to), v in zip(closes[:done].tolist(), closed_v[:done].tolist()):
            st = series[c, j]
            st["m"], st["n"], st["v"] = minute, n, v
            out.extend(self._close(st, names[c], metrics[j], to))
        for (c, j), st in series.items():
            st["m"], st["n"], st["v"] = int(cur_m[c, j]), int(cur_n[c, j]), float(cur_v[c, j])
            state.set(f"{self.name}/{names[c]}/{metrics[j]}", st)
        return merge_alerts(out)

    def _close(self, st: dict, entity: str, metric: str, minute: int) -> list[dict]:
        """Score the minute ``st`` holds (and empty ones up to ``minute`` for counted series).

        The series model is loaded from its state and stored again around every minute, so
        what it remembers is the same whichever batches the minutes came in.
        """
        done = [(st["m"], st["v"] / st["n"] if metric in self.MEAN else st["v"])] if st["n"] else []
        if metric in self.SUM and minute - st["m"] - 1 <= self.options.fill_minutes:
            done.extend((k, 0.0) for k in range(st["m"] + 1, minute))
        st["m"], st["n"], st["v"] = minute, 0, 0.0
        out = []
        for k, value in done:
            m = self._model(st["sm"])
            score = m.score(value)
            st["sm"] = m.state()
            ts = k * MINUTE
            inc = st["inc"]
            if inc is not None and ts - inc[1] > self.options.gap_seconds * 1e9:
                inc = st["inc"] = None
            if score < self.options.alert_score:
                continue
            if inc is None:
                inc = st["inc"] = [ts, ts, 0, 0.0]
            inc[1] = ts
            inc[2] += 1
            inc[3] = max(inc[3], score)  # an incident's severity follows its worst minute
            kind = m.kind or "new shape"
            evidence = {"metric": metric, "value": _r(value), "minute": ts, "statistic": kind, "score": _r(score),
                        "threshold": self.options.alert_score, **m.explain()}
            out.append(make_alert(self.name, "high" if inc[3] >= 0.85 else "medium", (self.entity_type, entity),
                                  score=score, evidence=evidence, first_ts=inc[0], last_ts=ts + MINUTE - 1,
                                  count=inc[2], summary=f"{metric} of {self.entity_type} {entity}: {kind} "
                                  f"({_r(value)} in the minute, anomaly score {score:.2f})"))
        return out


class ModelMetrics(_MetricSeries):
    """Latency, server error rate, output tokens and requests per minute of each model.

    Every request is a point of ``requests`` (1); ``latency_ms`` and ``tokens_out`` where they
    are finite numbers, and ``error_rate`` (1 for a status from 500, else 0) where the status is.
    """

    name = "anomaly.model"
    kinds = ("request",)
    route = "model"
    event_fields = ("kind", "ts", "model", "latency_ms", "status", "tokens_out")
    description = "anomalies in a model's per-minute latency, server error rate, output tokens and request count"
    fields = ("latency_ms", "status", "tokens_out")
    METRICS = ("requests", "latency_ms", "error_rate", "tokens_out")
    MEAN = ("latency_ms", "error_rate")
    SUM = ("tokens_out", "requests")

    def points(self, columns: TypedColumns) -> np.ndarray:
        p = np.empty((len(columns.values("latency_ms")), 4))
        p[:, 0] = 1.0
        p[:, 1] = _column_numbers(columns, "latency_ms")
        s = _column_numbers(columns, "status")
        p[:, 2] = s >= 500
        p[np.isnan(s), 2] = np.nan
        p[:, 3] = _column_numbers(columns, "tokens_out")
        return p


class GpuMetrics(_MetricSeries):
    """Utilisation and power per minute of each GPU."""

    name = "anomaly.gpu"
    kinds = ("gpu",)
    # What update reads of an event (the worker's events topic carries no other field of its kinds).
    event_fields = ("gpu_uuid", "kind", "power_w", "ts", "util_pct")
    entity_type = "gpu"
    entity_field = "gpu_uuid"
    description = "anomalies in a GPU's per-minute utilisation and power"
    fields = ("util_pct", "power_w")
    METRICS = ("util_pct", "power_w")
    MEAN = ("util_pct", "power_w")

    def points(self, columns: TypedColumns) -> np.ndarray:
        p = np.empty((len(columns.values("util_pct")), 2))
        p[:, 0] = _column_numbers(columns, "util_pct")
        p[:, 1] = _column_numbers(columns, "power_w")
        return p
