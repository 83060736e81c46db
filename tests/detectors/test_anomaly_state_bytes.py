"""SeriesModel's state bytes (the eighth session): ``_range_bytes`` and ``_log_bytes`` without
``np.clip``'s wrappers and ``np.errstate``, ``_log_floats`` read from a table of the 256 bytes'
values; each against a frozen copy of e1d5517's code, to the byte, on derandomized hypothesis
arrays (nan, infinities, values out of the range, any length)."""

from __future__ import annotations

import math
import warnings

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from ramparts.detectors.anomaly import SeriesModel, _log_bytes, _log_floats, _range_bytes


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
