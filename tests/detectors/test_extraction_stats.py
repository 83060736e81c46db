"""extraction.queries' compiled statistics (detectors/extraction_stats.py) against the numpy they replace."""

from __future__ import annotations

import base64
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from ramparts.detectors import extraction_stats
from ramparts.detectors.base import DictState
from ramparts.detectors.extraction import PROJECTED_DIMS, RESERVOIR, ExtractionDetector, median_pairwise
from ramparts.events import EventBatch

from .test_extraction import NS, T0, confident, event, natural, warm


def numpy_observe(rows: np.ndarray, x: np.ndarray) -> tuple[float, float]:
    """What the detector computed with numpy before (commit 8de5141): nearest-neighbour distance and scale."""
    if len(rows) < 4:
        return -1.0, -1.0
    nn = float(np.sqrt(((rows - x) ** 2).sum(axis=1).min()))
    return nn, median_pairwise(rows)


def test_observe_gives_numpys_distances_and_keeps_the_last_rows_in_order():
    rng = np.random.default_rng(3)
    for trial in range(300):
        res = np.zeros((RESERVOIR, PROJECTED_DIMS), dtype=np.float32)
        res64, sq = np.zeros((RESERVOIR, PROJECTED_DIMS)), np.zeros(RESERVOIR)
        pd, covered = np.zeros((RESERVOIR, RESERVOIR)), 0
        scale_of_data = 10.0 ** rng.uniform(-3, 3)
        pushed: list[np.ndarray] = []
        n = 0
        for _ in range(int(rng.integers(1, 3 * RESERVOIR))):
            x = (rng.standard_normal(PROJECTED_DIMS) * scale_of_data).astype(np.float32)
            if rng.random() < 0.2 and pushed:  # a near copy of an earlier row: a tiny distance
                x = (pushed[-1] + np.float32(1e-6 * scale_of_data)).astype(np.float32)
            want_nn, want_scale = numpy_observe(np.array(pushed[-RESERVOIR:], dtype=np.float32).reshape(-1, 12), x)
            # the pairs kept from earlier calls give the median all of them computed afresh gives, to the bit
            afresh = extraction_stats.observe(res.copy(), res64.copy(), sq.copy(), np.zeros_like(pd), 0, n, x)
            nn, scale, n, covered = extraction_stats.observe(res, res64, sq, pd, covered, n, x)
            assert (nn, scale, n) == afresh[:3]
            pushed.append(x)
            # the nearest-neighbour distance is stored in the state: the same to the bit
            assert nn == want_nn
            # the scale is only compared with it; numpy's Gram matrix comes from OpenBLAS (fused
            # multiply-adds in a kernel's order), this one sums in order: the same to ~1e-12
            assert scale == pytest.approx(want_scale, rel=1e-12, abs=1e-300)
            kept = np.array(pushed[-RESERVOIR:], dtype=np.float32)
            assert n == len(kept)
            assert np.array_equal(res[:n], kept)
            assert np.array_equal(res64[:n], kept.astype(np.float64))
            assert np.array_equal(sq[:n], (kept.astype(np.float64) ** 2).sum(axis=1))


def test_row_sum_is_numpys_sum_to_the_bit():
    rng = np.random.default_rng(4)
    for n in (1, 5, 7, 8, 9, 12, 16, 17, 64, 127, 128):
        for dtype in (np.float32, np.float64):
            d = (rng.standard_normal(n) * 10.0 ** rng.uniform(-5, 5, n)).astype(dtype)
            assert extraction_stats._row_sum(d, n) == d.sum(), (n, dtype)


def test_a_stream_fed_in_one_batch_or_one_event_per_batch_ends_in_the_same_state():
    # The reservoir lives in fixed buffers for a batch and is packed at its end: the packed
    # state must not depend on where batches end.
    states = []
    for per_batch in (1, 7, 1000):
        det, state = ExtractionDetector(), DictState()
        t = warm(det, state, np.random.default_rng(13))
        rng = np.random.default_rng(12)
        events = []
        for i in range(150):
            t += NS
            x = natural(rng, 1)[0] if i % 3 else rng.uniform(0, 10, 16).round(2)
            events.append(event(f"client-{i % 4}", t, x, confident(rng), src="192.0.2.7"))
        alerts = []
        for k in range(0, len(events), per_batch):
            alerts += det.update(EventBatch(events[k:k + per_batch]), state)
        states.append((state.data, sorted({a["id"] for a in alerts})))  # a batch merges an incident's updates
    assert states[0] == states[1] == states[2]
    assert any(v["r"] for v in states[0][0].values())


def test_a_state_packed_before_the_compiled_statistics_loads_and_goes_on():
    # A stream state written by the numpy version (commit 8de5141): 16 reservoir rows, 48 distances.
    rng = np.random.default_rng(21)
    rows = rng.standard_normal((RESERVOIR, PROJECTED_DIMS)).astype(np.float32)
    def pack(a, dtype):
        return base64.b64encode(np.ascontiguousarray(a, dtype=dtype).tobytes()).decode("ascii")

    old = {"tl": T0, "n": 60, "rep": 0, "nd": 60.0, "ood": 0.0, "nj": 0.0, "close": 1.0, "nc": 60.0, "low": 0.0,
           "h": pack(np.arange(32), np.uint32), "r": pack(rows, np.float32),
           "d": pack(rng.random(48), np.float32), "w": 0.95, "inc": None, "ep": 0}
    key = "extraction.queries/s|192.0.2.9|m"
    det, state = ExtractionDetector(), DictState()
    state.set(key, dict(old))
    x = rng.standard_normal(16).round(2)
    det.update(EventBatch([event("p", T0 + NS, x, [0.9, 0.1], src="192.0.2.9")]), state)
    s = state.data[key]
    new_rows = np.frombuffer(base64.b64decode(s["r"]), dtype=np.float32).reshape(-1, PROJECTED_DIMS)
    assert np.array_equal(new_rows[:-1], rows[1:])  # the oldest row dropped, the new query last
    assert s["nd"] == 61.0 and len(np.frombuffer(base64.b64decode(s["d"]), dtype=np.float32)) == 48


def test_no_cache_location_at_all_falls_back_to_compiling_in_process(tmp_path: Path):
    # Root ignores file permissions, so the cache locations are made unusable another way: the
    # module's source is run from memory (``__file__`` '<memory>'), which no locator of numba's
    # cache accepts: njit(cache=True) raises, and _jit compiles without the cache.
    code = (
        "import numpy as np, types, sys\n"
        f"src = open({str(Path(extraction_stats.__file__))!r}).read()\n"
        "mod = types.ModuleType('compiled_elsewhere')\n"
        "mod.__file__ = '<memory>'\n"
        "sys.modules['compiled_elsewhere'] = mod\n"
        "exec(compile(src, '<memory>', 'exec'), mod.__dict__)\n"
        "res = np.zeros((16, 12), np.float32); res64 = np.zeros((16, 12)); sq = np.zeros(16); n = c = 0\n"
        "pd = np.zeros((16, 16))\n"
        "for i in range(6):\n"
        "    nn, scale, n, c = mod.observe(res, res64, sq, pd, c, n, np.full(12, i, np.float32))\n"
        "print(nn, n)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                         env={**os.environ, "NUMBA_CACHE_DIR": str(tmp_path / "unused")})
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == [str(float(np.sqrt(np.float32(12.0)))), "6"]


def test_select_is_numpys_partition():
    rng = np.random.default_rng(6)
    for n in (1, 2, 3, 6, 15, 120):
        for a in (rng.standard_normal(n), rng.integers(0, 3, n).astype(np.float64), np.ones(n)):
            for k in {0, n // 2, n - 1}:
                assert extraction_stats._select(a.copy(), k) == np.partition(a, k)[k]


def test_randbelow_draws_what_random_randrange_draws():
    # The populations' reservoirs replace rows at rng.randrange(seen): the compiled generator
    # must step CPython's Mersenne twister word for word, from the state getstate() gives.
    import random

    from ramparts.detectors.extraction import N_POP, S_MT_POS

    rng = random.Random("extraction-population:m:16")
    words = rng.getstate()[1]
    mt = np.zeros((1, 624), dtype=np.uint32)
    mt[0] = words[:624]
    pst = np.zeros((1, N_POP))
    pst[0, S_MT_POS] = words[624]
    for n in [1, 2, 3, 1000, 1025, 2**31 + 5, 2**32 - 1, 2**32, 2**40 + 7, 2**62 + 3] + list(range(1024, 2500)):
        assert extraction_stats.randbelow(mt, 0, pst, np.int64(n)) == rng.randrange(n), n


def test_compiled_shapiro_w_is_the_python_one_to_the_bit():
    # run computes W in compiled code; extraction.shapiro_w (scipy's routine, itself tested against
    # scipy.stats.shapiro) is the reference: normal, skewed, float32-rounded, tied, tiny and huge
    # distances, every sample size the detector can test, constant data.
    from ramparts.detectors.extraction import DISTANCES, shapiro_w, swilk_coefficients

    a = swilk_coefficients()
    rng = np.random.default_rng(5)
    for t in range(4000):
        n = int(rng.integers(3, DISTANCES + 1))
        kind = t % 5
        if kind == 0:
            d = rng.normal(size=n)
        elif kind == 1:
            d = rng.exponential(size=n).astype(np.float32).astype(np.float64)
        elif kind == 2:
            d = np.round(rng.exponential(size=n), 1)
        elif kind == 3:
            d = rng.random(n) * 10.0 ** rng.uniform(-20, 6)
        else:
            d = np.r_[np.zeros(n - 2), rng.random(2)]
        buf = np.zeros(DISTANCES)
        buf[:n] = d
        assert extraction_stats.shapiro_w(buf, n, a[n]) == shapiro_w(d)
    for n in (3, 10, DISTANCES):
        assert extraction_stats.shapiro_w(np.full(DISTANCES, 2.5), n, a[n]) == shapiro_w(np.full(n, 2.5)) == 0.0
    assert extraction_stats.shapiro_w(np.ones(DISTANCES), 2, a[2]) == 0.0


def numpy_refresh(rows: np.ndarray, q: float, margin: float, ood_features: float):
    """Population._refresh as it was (commit c7170a5): lo, hi and the out-of-range share."""
    width = rows.shape[1]
    lo, hi = np.quantile(rows, [q, 1 - q], axis=0)
    span = float(np.max(hi) - np.min(lo)) or 1.0
    lo, hi = lo - margin * span, hi + margin * span
    outside = np.count_nonzero((rows < lo) | (rows > hi), axis=1) > ood_features * width
    return lo, hi, float(np.mean(outside))


def test_refresh_ranges_is_the_numpy_refresh_to_the_bit():
    # Every reservoir size from min_population's floor to full, widths 1 to 40, quantiles near the
    # ends (selected in one pass) and in the middle (sorted), ties, a constant feature, a zero span.
    rng = np.random.default_rng(9)
    cap = 1024
    for t in range(300):
        width = int(rng.integers(1, 41))
        n = int(rng.integers(50, cap + 1)) if t % 3 else cap
        kind = t % 4
        if kind == 0:
            rows = rng.normal(size=(n, width))
        elif kind == 1:
            rows = np.round(rng.normal(size=(n, width)), 1)
        elif kind == 2:
            rows = rng.exponential(size=(n, width)) * 10.0 ** rng.uniform(-5, 5)
            rows[:, 0] = 3.0
        else:
            rows = np.full((n, width), 7.0)
        q = [0.002, 0.0, 0.01, 0.05, 0.3, 0.4999][t % 6]
        margin, ood = [0.02, 0.0, 0.5][t % 3], [0.05, 0.2, 0.9][t % 3]
        st = np.zeros((2, extraction_stats.S_MT_POS + 1))
        prows = np.zeros((2, cap, 41))
        prows[1, :n, :width] = rows
        st[1, extraction_stats.S_FILLED] = n
        st[1, extraction_stats.S_VERSION] = 4
        plo, phi = np.zeros((2, 41)), np.zeros((2, 41))
        extraction_stats.refresh_ranges(1, st, prows, plo, phi, width, q, margin, ood)
        lo, hi, rate = numpy_refresh(rows, q, margin, ood)
        assert plo[1, :width].tolist() == lo.tolist() and phi[1, :width].tolist() == hi.tolist()
        assert st[1, extraction_stats.S_OOD_RATE] == rate
        assert st[1, extraction_stats.S_READY] == 1.0 and st[1, extraction_stats.S_VERSION] == 5
        assert not plo[0].any() and not st[0].any()
