"""The per-query statistics of ``extraction.queries`` in compiled code (numba).

For every distinct query row and each of its streams the detector needs the nearest-neighbour
distance of the query to the stream's reservoir (its last 16 projected queries), the median
pairwise distance of that reservoir (the stream's own spacing), and then the query pushed onto
the reservoir. In numpy that is a dozen calls on arrays of 16 x 12 numbers, each costing more
in call overhead than in arithmetic; :func:`observe` does all of it in one call.

The arithmetic is numpy's, operation for operation, so the numbers are the same to the bit:

* the squared distances to the query are float32 differences, squared, summed per row the way
  numpy's ``sum(axis=1)`` sums a row of 12 (its pairwise summation: 8 partial sums, combined
  as a tree, then the rest in order; :func:`_row_sum`); the root is float32 too;
* a reservoir row's squared norm likewise, in float64.

The one exception is the Gram matrix of the median pairwise distance: numpy hands ``p @ p.T``
to OpenBLAS, whose kernels (chosen per CPU at run time) use fused multiply-adds in an order of
their own, so its last bit already differs between machines. Here the dot products are summed
in order. The scale is only compared with the nearest-neighbour distance (``close_ratio``), so
a difference in its last bit changes a count only if the two are within an ulp of each other;
``tests/detectors/test_extraction_stats.py`` holds the kernel to numpy's figures.

Compiled functions are cached next to this module (``__pycache__``, numba's ``cache=True``); where
that is not writable numba falls back to its user-wide cache, and where neither is, functions
are compiled in each process (about a second at the first prediction) instead of failing.
"""

from __future__ import annotations

import numpy as np

from ramparts.detectors.extraction import (C_CHANGED, C_CLOSE, C_DISTS, C_EP, C_HASHES, C_LOW, C_N, C_NC, C_ND,
                                           C_NJ, C_OOD, C_REP, C_RES, P_CLOSE_RATIO, P_CLOSE_THR, P_LOW_CONF,
                                           P_LOW_THR, P_MIN_QUERIES, P_NORMALITY_EVERY, P_NORMALITY_MIN,
                                           P_OOD_THR, P_WINDOW, R_CONF, R_EPOCH, R_HAS_CONF, R_HASH, R_OUTSIDE,
                                           R_READY, R_VEC)
from ramparts.detectors.jit import jit as _jit


@_jit
def _row_sum(d, n):
    """``d[:n].sum()`` as numpy sums a contiguous run of 8 to 128 numbers (pairwise_sum in
    numpy/_core/src/umath/loops_utils.h.src): 8 running sums, a tree over them, then the tail."""
    if n < 8:
        s = d[0] * 0  # numpy starts a short sum at zero; n >= 1 here
        for i in range(n):
            s += d[i]
        return s
    r0, r1, r2, r3, r4, r5, r6, r7 = d[0], d[1], d[2], d[3], d[4], d[5], d[6], d[7]
    i = 8
    last = n - n % 8
    while i < last:
        r0 += d[i]
        r1 += d[i + 1]
        r2 += d[i + 2]
        r3 += d[i + 3]
        r4 += d[i + 4]
        r5 += d[i + 5]
        r6 += d[i + 6]
        r7 += d[i + 7]
        i += 8
    s = ((r0 + r1) + (r2 + r3)) + ((r4 + r5) + (r6 + r7))
    while i < n:
        s += d[i]
        i += 1
    return s


@_jit
def _select(a, k):
    """The ``k``-th smallest of ``a`` (reordered in place): ``np.partition(a, k)[k]``. Hoare's
    selection, written out because numba's ``np.partition`` takes 5 s to compile."""
    lo, hi = 0, len(a) - 1
    while lo < hi:
        pivot = a[(lo + hi) // 2]
        i, j = lo, hi
        while i <= j:
            while a[i] < pivot:
                i += 1
            while a[j] > pivot:
                j -= 1
            if i <= j:
                a[i], a[j] = a[j], a[i]
                i += 1
                j -= 1
        if k <= j:
            hi = j
        elif k >= i:
            lo = i
        else:
            break
    return a[k]


@_jit
def observe(res, res64, sq, n, x):
    """The nearest-neighbour distance of ``x`` to the first ``n`` rows of the reservoir and the
    median pairwise distance of those rows (both -1.0 under 4 rows); then ``x`` pushed (the
    oldest row dropped when the reservoir is full).

    ``res`` is the reservoir (float32, rows oldest first, capacity its length), ``res64`` its
    float64 copy and ``sq`` its rows' squared norms, all updated in place; ``x`` the projected
    query (float32). Rows are up to 128 wide (:func:`_row_sum`; the detector's are 12).
    Returns (distance, scale, rows now)."""
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
        # float32's root, as numpy takes it (the float64 root of a float32, rounded, is the same)
        nn = float(np.float32(np.sqrt(np.float64(best))))
        # the median of the upper triangle of the squared distance matrix (sq_i + sq_j - 2 p_i.p_j)
        m = n * (n - 1) // 2
        d2 = np.empty(m)
        c = 0
        for a in range(n):
            for b in range(a + 1, n):
                g = 0.0
                for k in range(width):
                    g += res64[a, k] * res64[b, k]
                d2[c] = sq[a] + sq[b] - 2.0 * g
                c += 1
        mid = m // 2
        scale = np.sqrt(max(_select(d2, mid), 0.0))
    cap = res.shape[0]
    if n >= cap:
        for a in range(cap - 1):
            res[a] = res[a + 1]
            res64[a] = res64[a + 1]
            sq[a] = sq[a + 1]
        n = cap - 1
    e = np.empty(width)
    for k in range(width):
        res[n, k] = x[k]
        v = np.float64(x[k])
        res64[n, k] = v
        e[k] = v * v
    sq[n] = _row_sum(e, width)
    return nn, scale, n + 1


@_jit
def feed(slot_a, slot_b, counts, hashes, res, res64, sq, dists, x, rows, r0, r1, params, snap):
    """:func:`feed_stream` for the streams of one event in order: ``slot_a``, then ``slot_b``
    (-1: none), with ``snap[0]`` and ``snap[1]``. One call for both: a call costs about 2.5 us.
    Returns (due, hit) of each (0, False for none)."""
    due_a, hit_a = feed_stream(slot_a, counts, hashes, res, res64, sq, dists, x, rows, r0, r1, params, snap[0])
    due_b, hit_b = 0, False
    if slot_b >= 0:
        due_b, hit_b = feed_stream(slot_b, counts, hashes, res, res64, sq, dists, x, rows, r0, r1, params, snap[1])
    return due_a, hit_a, due_b, hit_b


@_jit
def count_outside(vec, lo, hi):
    """``np.count_nonzero((vec < lo) | (vec > hi))``: a population's out-of-range test of a row."""
    n = 0
    for k in range(len(vec)):
        if vec[k] < lo[k] or vec[k] > hi[k]:
            n += 1
    return n


@_jit
def feed_stream(slot, counts, hashes, res, res64, sq, dists, x, rows, r0, r1, params, snap):
    """Feed the query rows ``r0:r1`` of one event to the stream in ``slot``, in order: what the
    detector's ``_feed`` did row by row in Python (commit fbccdbf), with the same arithmetic.

    Per row: counted; a row without a vector stops there; an exact repeat of one of the last
    ``hashes.shape[1]`` input hashes counts as a repeat and stops there; else the distinct counts,
    the out-of-range count against the row's population (its counts restart at a new epoch),
    the low-confidence count, :func:`observe` on the reservoir, the close count, the distance
    pushed, and the halving at twice the window. ``dists[slot]`` keeps the last distances
    (oldest first); when a Shapiro-Wilk test is due its distances are copied to ``snap`` (the
    last due test of the event wins, as the stored W did). Returns (test due: number of
    distances in ``snap``, else 0; whether a share statistic passes its ratio test:
    ``_could_hit``)."""
    c = counts[slot]
    h = hashes[slot]
    d = dists[slot]
    nh_cap = h.shape[0]
    nd_cap = d.shape[0]
    window2 = 2.0 * params[P_WINDOW]
    close_ratio = params[P_CLOSE_RATIO]
    low_conf = params[P_LOW_CONF]
    normality_min = params[P_NORMALITY_MIN]
    every = int(params[P_NORMALITY_EVERY])
    due = 0
    for r in range(r0, r1):
        c[C_N] += 1
        if rows[r, R_VEC] == 0.0:
            continue
        hv = np.int64(rows[r, R_HASH])
        nh = int(c[C_HASHES])
        seen = False
        for i in range(nh):
            if h[i] == hv:
                seen = True
                break
        if seen:
            c[C_REP] += 1
            continue
        if nh == nh_cap:
            for i in range(nh_cap - 1):
                h[i] = h[i + 1]
            nh -= 1
        h[nh] = hv
        c[C_HASHES] = nh + 1
        c[C_CHANGED] = 1.0
        c[C_ND] += 1
        if rows[r, R_READY] != 0.0:
            if c[C_EP] != rows[r, R_EPOCH]:  # counts against ranges since learnt again
                c[C_EP] = rows[r, R_EPOCH]
                c[C_NJ] = 0.0
                c[C_OOD] = 0.0
            c[C_NJ] += 1
            c[C_OOD] += rows[r, R_OUTSIDE]
        if rows[r, R_HAS_CONF] != 0.0:
            c[C_NC] += 1
            if rows[r, R_CONF] < low_conf:
                c[C_LOW] += 1
        nn, scale, n = observe(res[slot], res64[slot], sq[slot], int(c[C_RES]), x[r])
        c[C_RES] = n
        if nn >= 0.0:
            if scale > 0 and nn < close_ratio * scale:
                c[C_CLOSE] += 1
            nd = int(c[C_DISTS])
            if nd == nd_cap:
                for i in range(nd_cap - 1):
                    d[i] = d[i + 1]
                nd -= 1
            d[nd] = nn
            nd += 1
            c[C_DISTS] = nd
            if nd >= normality_min and int(c[C_ND]) % every == 0:
                for i in range(nd):
                    snap[i] = d[i]
                due = nd
        if c[C_ND] >= window2:
            c[C_ND] /= 2.0
            c[C_NJ] /= 2.0
            c[C_OOD] /= 2.0
            c[C_CLOSE] /= 2.0
            c[C_NC] /= 2.0
            c[C_LOW] /= 2.0
    mq = params[P_MIN_QUERIES]
    hit = False
    if c[C_NJ] >= mq and c[C_OOD] / c[C_NJ] >= params[P_OOD_THR]:
        hit = True
    elif c[C_ND] >= mq and c[C_CLOSE] / max(c[C_ND] - 4.0, 1.0) >= params[P_CLOSE_THR]:
        hit = True
    elif c[C_NC] >= mq and c[C_LOW] / c[C_NC] >= params[P_LOW_THR]:
        hit = True
    return due, hit
