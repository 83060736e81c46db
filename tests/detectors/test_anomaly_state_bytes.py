"""SeriesModel's state bytes (the eighth session): ``_range_bytes`` and ``_log_bytes`` without
``np.clip``'s wrappers and ``np.errstate``, ``_log_floats`` read from a table of the 256 bytes'
values; each against a frozen copy of e1d5517's code, to the byte, on derandomized hypothesis
arrays (nan, infinities, values out of the range, any length)."""

from __future__ import annotations

import base64
import math
import warnings
from collections import deque

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from ramparts.detectors.anomaly import (
    HELD_STEPS, QUANTILE, P2Quantile, SeriesModel, _log_bytes, _log_floats, _r, _range_bytes,
)


# -- frozen copies of e1d5517 -----------------------------------------------------------------------
def frozen_range_bytes(v: np.ndarray, lo: float, span: float) -> bytes:
    return np.clip(np.rint((v - lo) / span * 255), 0, 255).astype(np.uint8).tobytes()


def frozen_log_bytes(d: np.ndarray) -> bytes:
    with np.errstate(divide="ignore", invalid="ignore"):
        b = np.clip(np.rint(240 + 16 * np.log2(np.maximum(d, 1e-12))), 1, 255)
    return np.where(np.isnan(d), 0, b).astype(np.uint8).tobytes()


def frozen_log_floats(b: np.ndarray) -> np.ndarray:
    return np.where(b == 0, math.nan, 2.0 ** ((b.astype(float) - 240) / 16))


_finite = st.floats(-1e6, 1e6, allow_nan=False, allow_infinity=False)


@settings(max_examples=500, derandomize=True, deadline=None)
@given(arrays(np.float64, st.integers(0, 600), elements=_finite), _finite, st.floats(1e-6, 1e6))
def test_range_bytes_equal_the_frozen_ones(v, lo, span):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # values far out of the range, cast as e1d5517 cast them
        assert _range_bytes(v, lo, span) == frozen_range_bytes(v, lo, span)


@settings(max_examples=500, derandomize=True, deadline=None)
@given(arrays(np.float64, st.integers(0, 600), elements=st.one_of(
    st.floats(0, 1), st.floats(0, 1e-9), st.just(math.nan), st.just(math.inf), st.floats(-1, 0), st.floats(1, 1e9))))
def test_log_bytes_equal_the_frozen_ones_and_warn_of_nothing(d):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        got = _log_bytes(d)
    assert got == frozen_log_bytes(d)


@settings(max_examples=300, derandomize=True, deadline=None)
@given(arrays(np.uint8, st.integers(0, 2000)))
def test_log_floats_equal_the_frozen_ones_at_any_length(b):
    np.testing.assert_array_equal(_log_floats(b), frozen_log_floats(b))  # nan where nan, else the same floats
    assert _log_floats(b).tobytes() == frozen_log_floats(b).tobytes()


def test_a_series_state_round_trip_is_unchanged():
    rng = np.random.default_rng(3)
    m = SeriesModel(learn_points=200, window=8, memory=560)
    for i in range(1500):
        m.score(50 + 10 * math.sin(i / 5) + rng.normal() + (40 if i > 1200 else 0))
    s = m.state()
    again = SeriesModel(learn_points=200, window=8, memory=560, state=s)
    assert again.state() == s
    assert np.isnan(again.memd).any() or len(again.memd) > 0


# -- SeriesModel.state and _load with a pass over the recent and remembered steps together (fourteenth
# session), against frozen copies of 55f1cc7's, which encoded and decoded each memory alone ----------
def frozen_state(m: SeriesModel) -> dict:
    span = (m.hi - m.lo) if m.hi > m.lo else 1.0
    lo = m.lo if math.isfinite(m.lo) else 0.0
    def b64(b: bytes) -> str:
        return base64.b64encode(b).decode()

    return {"n": m.n, "a": [m.acc[0], _r(m.acc[1]), _r(m.acc[2]), _r(m.acc[3])],
            "ma": _r(m.ma), "lo": _r(m.lo), "hi": _r(m.hi), "s": m.steps,
            "ds": b64(_range_bytes(np.fromiter(m.ds, float), lo, span)),
            "dq": b64(_log_bytes(np.fromiter(m.dq, float))), "m": b64(_range_bytes(m.hist, lo, span)),
            "o": b64(_log_bytes(m.memd)), "q": m.ref.state(),
            "r": _r(m.recent), "f": m.last_flag, "fr": _r(m.last_ratio),
            "h": [_r(v) for v in m.held], "hh": _r(m.held_hi), "hl": _r(m.held_lo)}


def frozen_load(m: SeriesModel, s: dict) -> None:
    def range_floats(text, lo, span):
        return np.frombuffer(base64.b64decode(text), dtype=np.uint8).astype(float) / 255 * span + lo

    def f(v, default: float) -> float:
        return default if v is None else float(v)

    m.n = int(s["n"])
    a = s["a"]
    m.acc = [int(a[0]), float(a[1]), f(a[2], math.inf), f(a[3], -math.inf)]
    m.ma = None if s["ma"] is None else float(s["ma"])
    m.lo, m.hi = f(s["lo"], math.inf), f(s["hi"], -math.inf)
    m.steps = int(s["s"])
    span = (m.hi - m.lo) if m.hi > m.lo else 1.0
    lo = m.lo if math.isfinite(m.lo) else 0.0
    m.ds = deque(range_floats(s["ds"], lo, span).tolist(), maxlen=2 * m.window + 1)
    m.hist = range_floats(s["m"], lo, span)[-(m.memory + m.window - 1):]
    m.memd = _log_floats(np.frombuffer(base64.b64decode(s["o"]), dtype=np.uint8))[-m.memory:]
    m.dq = deque(_log_floats(np.frombuffer(base64.b64decode(s["dq"]), dtype=np.uint8)).tolist(), maxlen=m.window + 2)
    m.ref = P2Quantile(QUANTILE, s["q"])
    m.recent = float(s["r"])
    m.last_flag = int(s["f"])
    m.last_ratio = float(s["fr"])
    m.held = deque((float(v) for v in s.get("h", ())), maxlen=HELD_STEPS)
    m.held_hi, m.held_lo = f(s.get("hh"), -math.inf), f(s.get("hl"), math.inf)


def _same_memories(a: SeriesModel, b: SeriesModel) -> None:
    for name in ("hist", "memd"):
        x, y = getattr(a, name), getattr(b, name)
        assert x.dtype == y.dtype == np.float64 and x.tobytes() == y.tobytes(), name
    for name in ("ds", "dq"):
        x, y = np.array(getattr(a, name), dtype=float), np.array(getattr(b, name), dtype=float)
        assert len(x) == len(y) and x.tobytes() == y.tobytes(), name


def test_state_and_load_equal_the_frozen_ones_minute_by_minute():
    # Series learning (no remembered steps: their texts are empty) and past learning (memories full,
    # distances with nan), flat ones (an empty range), huge and tiny levels, jumps; each minute as
    # _MetricSeries._close does it: load, score, state; the new and the frozen code side by side.
    rng = np.random.default_rng(14)
    seen_full = seen_empty = 0
    for trial in range(40):
        learn, window, memory = int(rng.integers(10, 120)), int(rng.integers(2, 9)), int(rng.integers(8, 90))
        level, scale = float(rng.choice([0.0, 1e-6, 50.0, 3e5, -2e3])), float(rng.choice([0.0, 1e-3, 1.0, 40.0]))
        new = old = None
        for i in range(int(rng.integers(5, 400))):
            x = level + scale * (math.sin(i / rng.uniform(2, 9)) + rng.normal())
            x += scale * 30 if rng.random() < 0.01 else 0.0
            m_new = SeriesModel(learn_points=learn, window=window, memory=memory, state=new)
            m_old = SeriesModel(learn_points=learn, window=window, memory=memory)
            if old is not None:
                frozen_load(m_old, old)
            _same_memories(m_new, m_old)
            assert m_new.score(x) == m_old.score(x), (trial, i)
            new, old = m_new.state(), frozen_state(m_old)
            assert new == old, (trial, i)
            seen_full += len(m_new.memd) > 0
            seen_empty += new["m"] == ""
    assert seen_full > 500 and seen_empty > 500
