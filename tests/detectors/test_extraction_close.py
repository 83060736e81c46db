"""extraction.queries' close test without the median (``extraction_stats.observe_close`` and
``_close``) against the selection it replaces: a frozen copy of ``observe`` as it was (commit
c8a4406), and ``_close_by_select`` on odd pair matrices (ties, negatives, infinities, NaN, a
distance exactly at the threshold and one ulp under it)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ramparts.detectors import extraction_stats
from ramparts.detectors.extraction import C_HEAD, N_COUNTS, PROJECTED_DIMS, RESERVOIR

_row_sum = extraction_stats._row_sum
_select = extraction_stats._select


def frozen_observe(res, res64, sq, pd, covered, n, x):
    """``extraction_stats.observe`` of commit c8a4406, run as Python (numpy scalars: the same
    float32 and float64 operations, in the same order)."""
    width = res.shape[1]
    nn = -1.0
    scale = -1.0
    if n >= 4:
        d = np.empty(width, dtype=np.float32)
        best = np.float32(np.inf)
        for a in range(n):
            for k in range(width):
                t = res[a, k] - x[k]
                d[k] = t * t
            s = _row_sum(d, width)
            if s < best:
                best = s
        nn = float(np.float32(np.sqrt(np.float64(best))))
        for b in range(covered, n):
            for a in range(b):
                g = 0.0
                for k in range(width):
                    g += res64[a, k] * res64[b, k]
                pd[a, b] = sq[a] + sq[b] - 2.0 * g
        covered = n
        m = n * (n - 1) // 2
        d2 = np.empty(m)
        c = 0
        for a in range(n):
            for b in range(a + 1, n):
                d2[c] = pd[a, b]
                c += 1
        mid = m // 2
        scale = np.sqrt(max(_select(d2, mid), 0.0))
    cap = res.shape[0]
    if n >= cap:
        for a in range(cap - 1):
            res[a] = res[a + 1]
            res64[a] = res64[a + 1]
            sq[a] = sq[a + 1]
            for b in range(a + 1, cap - 1):
                pd[a, b] = pd[a + 1, b + 1]
        n = cap - 1
        covered = max(covered - 1, 0)
    e = np.empty(width)
    for k in range(width):
        res[n, k] = x[k]
        v = np.float64(x[k])
        res64[n, k] = v
        e[k] = v * v
    sq[n] = _row_sum(e, width)
    return nn, scale, n + 1, covered


def _reservoir():
    res = np.zeros((RESERVOIR, PROJECTED_DIMS), dtype=np.float32)
    return [res, res.astype(np.float64), np.zeros(RESERVOIR), np.zeros((RESERVOIR, RESERVOIR))]


def test_observe_close_and_observe_are_the_frozen_observe_to_the_bit():
    rng = np.random.default_rng(21)
    closes = 0
    for trial in range(60):
        old, new, plain = _reservoir(), _reservoir(), _reservoir()
        n_old = n_new = n_plain = 0
        c_old = c_new = c_plain = 0
        ratio = float(rng.choice([0.15, 0.5, 0.9, 1e-3]))
        scale_of_data = 10.0 ** rng.uniform(-3, 3)
        last = None
        for _ in range(int(rng.integers(1, 3 * RESERVOIR))):
            x = (rng.standard_normal(PROJECTED_DIMS) * scale_of_data).astype(np.float32)
            if last is not None and rng.random() < 0.3:  # a near copy: a close query
                x = (last + np.float32(1e-3 * scale_of_data) * rng.standard_normal(PROJECTED_DIMS)).astype(np.float32)
            last = x
            nn0, scale0, n_old, c_old = frozen_observe(*old, c_old, n_old, x)
            nn1, close, n_new, c_new = extraction_stats.observe_close(*new, c_new, n_new, x, ratio)
            nn2, scale2, n_plain, c_plain = extraction_stats.observe(*plain, c_plain, n_plain, x)
            want = bool(scale0 > 0 and nn0 < ratio * scale0)
            closes += want
            assert (nn1, close, n_new, c_new) == (nn0, want, n_old, c_old)
            assert (nn2, scale2, n_plain, c_plain) == (nn0, scale0, n_old, c_old)
            for a, b, c in zip(old, new, plain):
                assert np.array_equal(a, b) and np.array_equal(a, c)
    assert closes > 50  # the close queries are there to be counted


_values = st.one_of(
    st.floats(-1e3, 1e6, allow_nan=False),
    st.sampled_from([0.0, -0.0, 1.0, 2.0, 1e-300, 5e-324, math.inf, -math.inf, 1e300]),
    st.integers(0, 4).map(float),  # ties
)


def _pairs(n: int, values: list[float]) -> np.ndarray:
    pd = np.full((RESERVOIR, RESERVOIR), np.nan)  # below the diagonal: never read
    c = 0
    for a in range(n):
        for b in range(a + 1, n):
            pd[a, b] = values[c % len(values)]
            c += 1
    return pd


def _median(pd: np.ndarray, n: int) -> float:
    d2 = np.array([pd[a, b] for a in range(n) for b in range(a + 1, n)])
    return float(np.partition(d2, len(d2) // 2)[len(d2) // 2])


@settings(derandomize=True, max_examples=1500, deadline=None, database=None)
@given(st.integers(4, RESERVOIR), st.lists(_values, min_size=1, max_size=120),
       st.sampled_from([0.15, 0.5, 0.999, 1e-3, 1e-200, 3.0]), st.floats(0, 1e4), st.integers(0, 4),
       st.booleans())
def test_close_without_the_median_is_close_by_select(n, values, ratio, nn, how, nan):
    pd = _pairs(n, values)
    if nan:  # a NaN among the pairs: the selection decides, as before
        pd[0, n - 1] = np.nan
    med = _median(pd, n)
    scale = math.sqrt(max(med, 0.0))
    if how == 1 and math.isfinite(scale):  # exactly at the threshold (False), and one ulp under it (True)
        nn = ratio * scale
    elif how == 2 and math.isfinite(scale):
        nn = math.nextafter(ratio * scale, -math.inf)
    elif how == 3:
        nn = float(np.float32(nn))
    elif how == 4:
        nn = float(np.random.default_rng(n).choice([0.0, math.inf, 5e-324]))
    want = extraction_stats._close_by_select(pd.copy(), n, nn, ratio)
    assert extraction_stats._close(pd.copy(), n, nn, ratio) == want
    if not nan:
        assert want == bool(scale > 0 and nn < ratio * scale)


def test_close_at_the_median_counts_the_right_number_of_values():
    # 6 rows: 15 pairs, the median the 8th smallest (index 7). A count off by one either way fails here.
    n, m = 6, 15
    for k in range(m + 1):  # k pairs far above the threshold, the rest far under
        values = [100.0] * k + [1.0] * (m - k)
        pd = _pairs(n, values)
        want = _median(pd, n) == 100.0
        assert extraction_stats._close(pd, n, 0.5 * 5.0, 0.5) == want == (k >= m - m // 2)


def test_state_packing_is_base64s():
    import base64
    import binascii

    from ramparts.detectors.extraction import _pack, _unpack

    rng = np.random.default_rng(5)
    for n in (0, 1, 5, 16, 48):
        for dtype, width in ((np.float32, PROJECTED_DIMS), (np.float32, 1), (np.uint32, 1)):
            a = (rng.standard_normal((n, width)) * 1e3).astype(dtype).reshape((n, width) if width > 1 else n)
            packed = _pack(a, dtype)
            assert packed == base64.b64encode(np.ascontiguousarray(a, dtype=dtype).tobytes()).decode("ascii")
            back = _unpack(packed, dtype, width)
            assert back.dtype == dtype and np.array_equal(back, a)
    for bad in ("abc", "ab\u00e9="):  # bad padding; not ASCII: base64.b64decode's errors
        with pytest.raises((binascii.Error, ValueError)) as got:
            _unpack(bad, np.float32)
        with pytest.raises(type(got.value)):
            base64.b64decode(bad)


def _logical(a: np.ndarray, head: int) -> np.ndarray:
    """A ring's rows oldest first (rows ``head``, ``head + 1``, ... wrapping)."""
    return np.roll(a, -head, axis=0)


@pytest.mark.parametrize("odd", [False, True])
def test_the_ring_is_the_frozen_observe_to_the_bit(odd):
    """``observe_ring`` (the run's reservoir, no rows shifted) against ``observe_close`` (the shifting
    reservoir the run used before) and the frozen observe: the same distance and close answer, the
    same rows, norms and pairs read oldest first, and
    ``unroll`` putting the rows back in the frozen order. ``odd`` adds queries with infinities
    (NaN pairs: the selection in the pairs' order decides) and repeated rows (ties)."""
    rng = np.random.default_rng(34 + odd)
    cap = RESERVOIR
    moved = nans = closes = 0
    for trial in range(80):
        old, ring, shifted = _reservoir(), _reservoir(), _reservoir()
        n_old = n_ring = c_old = c_ring = head = n_sh = c_sh = 0
        ratio = float(rng.choice([0.15, 0.5, 0.9, 1e-3]))
        scale_of_data = 10.0 ** rng.uniform(-3, 3)
        last = None
        for _ in range(int(rng.integers(1, 4 * cap))):
            x = (rng.standard_normal(PROJECTED_DIMS) * scale_of_data).astype(np.float32)
            if last is not None and rng.random() < 0.3:  # a near copy: a close query
                x = (last + np.float32(1e-3 * scale_of_data) * rng.standard_normal(PROJECTED_DIMS)).astype(np.float32)
            if odd and rng.random() < 0.1:
                x[int(rng.integers(0, PROJECTED_DIMS))] = np.float32(rng.choice([np.inf, -np.inf]))
            if odd and last is not None and rng.random() < 0.15:
                x = last.copy()
            last = x
            with np.errstate(all="ignore"):
                nn0, scale0, n_old, c_old = frozen_observe(*old, c_old, n_old, x)
                nn1, close, n_ring, c_ring, head = extraction_stats.observe_ring(*ring, c_ring, n_ring, head, x,
                                                                                 ratio)
                nn2, close2, n_sh, c_sh = extraction_stats.observe_close(*shifted, c_sh, n_sh, x, ratio)
            # The run's answer before the ring (observe_close): the frozen observe's but where a NaN pair
            # lies past the point where the count decides (it stops there; the frozen one selects).
            want = close2
            closes += want
            nans += bool(np.isnan(old[3][:n_old, :n_old][np.triu_indices(n_old, 1)]).any())
            moved += head != 0
            assert (nn1 == nn0 or (math.isnan(nn1) and math.isnan(nn0))) and close == want, trial
            assert (nn2 == nn0 or (math.isnan(nn2) and math.isnan(nn0))) and (n_sh, c_sh) == (n_old, c_old)
            if not odd:
                assert want == bool(scale0 > 0 and nn0 < ratio * scale0)
            assert (n_ring, c_ring) == (n_old, c_old), trial
            assert head == 0 or n_ring == cap  # the ring turns only once full
            for a, b in zip(old[:3], ring[:3]):  # rows, float64 rows, norms
                assert np.array_equal(a[:n_old], _logical(b, head)[:n_old], equal_nan=True), trial
            pd_old, pd_ring = old[3], ring[3]
            for a in range(c_ring):
                for b in range(a + 1, c_ring):
                    pa, pb = (head + a) % cap, (head + b) % cap
                    assert pd_ring[pa, pb] == pd_old[a, b] or np.isnan(pd_ring[pa, pb]) and np.isnan(pd_old[a, b])
                    assert pd_ring[pb, pa] == pd_ring[pa, pb] or np.isnan(pd_ring[pb, pa]) and np.isnan(pd_ring[pa, pb])
        # unroll: the rows back oldest first from 0, the head back to 0
        counts = np.zeros((2, N_COUNTS))
        counts[1, C_HEAD] = head
        res = np.stack([ring[0], ring[0]])
        extraction_stats.unroll(counts, res)
        assert counts[1, C_HEAD] == 0.0 and np.array_equal(res[1], _logical(ring[0], head), equal_nan=True)
        assert np.array_equal(res[0], ring[0], equal_nan=True)  # head 0: left as it is
        assert np.array_equal(res[1][:n_old], old[0][:n_old], equal_nan=True)
    assert moved > 500 and closes > 50
    if odd:
        assert nans > 50
