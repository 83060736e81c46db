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
``tests/detectors/test_extraction_stats.py`` holds the kernel to numpy's figures. The detector
does not select the median at all (:func:`observe_close`): the comparison is monotonic in it,
so counting the pairs on either side of the threshold gives the same answer
(:func:`_close`; tests/detectors/test_extraction_close.py). And during a run each stream's
reservoir is a ring (:func:`observe_ring`): a query pushed when it is full takes the oldest row's
place instead of every row moving up one (with its float64 copy, norm and pairs), the pairs are
read oldest first as before, and :func:`unroll` puts the rows back oldest first at the run's end.

Compiled functions are cached next to this module (``__pycache__``, numba's ``cache=True``); where
that is not writable numba falls back to its user-wide cache, and where neither is, functions
are compiled in each process (about a second at the first prediction) instead of failing.
"""

from __future__ import annotations

import numpy as np

from ramparts.detectors.extraction import (C_CHANGED, C_CLOSE, C_DISTS, C_EP, C_HASHES, C_HEAD, C_INC, C_LOW, C_N, C_NC,
                                           C_ND, C_NJ, C_OOD, C_PAIRS, C_REP, C_RES, C_W, C_WSET, MAX_PEERS,
                                           P_BASE_FLOOR, P_CLOSE_RATIO,
                                           P_CLOSE_THR, P_GAP, P_GAP_NS, P_LOW_CONF, P_LOW_THR, P_MIN_POPULATION,
                                           P_MIN_QUERIES, P_MIN_RATIO, P_NORMALITY_EVERY, P_NORMALITY_MIN,
                                           P_OOD_FEATURES, P_OOD_THR, P_RANGE_MARGIN, P_RANGE_Q, P_WINDOW, PEER_EVERY,
                                           PEER_MIN_FLAGS,
                                           Q_HEAD, Q_KNOWN, Q_LAST, Q_LEN, Q_SRC, Q_STAMP, Q_SUM, R_CONF, R_EPOCH,
                                           R_HAS_CONF, R_HASH, R_OFF, R_OUTSIDE, R_POP, R_READY, R_VEC, R_WIDTH,
                                           S_EPOCH, S_FILLED, S_LOW, S_MT_POS, S_NOTES, S_NPEERS, S_NSNAP,
                                           S_OOD_RATE, S_OUTPUTS, S_READY, S_SEEN, S_SINCE, S_STAMP, S_VERSION,
                                           SHIFT_MIN_SOURCES, SHIFT_SHARE)
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
def observe(res, res64, sq, pd, covered, n, x):
    """The nearest-neighbour distance of ``x`` to the first ``n`` rows of the reservoir and the
    median pairwise distance of those rows (both -1.0 under 4 rows); then ``x`` pushed (the
    oldest row dropped when the reservoir is full).

    ``res`` is the reservoir (float32, rows oldest first, capacity its length), ``res64`` its
    float64 copy and ``sq`` its rows' squared norms, all updated in place; ``x`` the projected
    query (float32). Rows are up to 128 wide (:func:`_row_sum`; the detector's are 12).
    ``pd[a, b]`` (a < b) keeps the squared distance of rows a and b for the first ``covered``
    rows, across calls: a query adds the pairs of the rows since (15 once full, instead of all
    120), each computed as it was when all were (``sq_a + sq_b - 2 p_a.p_b``, the dot product
    summed in order), so the median is the same to the bit; ``covered`` 0 computes all.
    Returns (distance, scale, rows now, rows covered now). The detector calls
    :func:`observe_close`, which says only whether the distance is under ``close_ratio`` times
    the scale, without selecting the median."""
    nn = -1.0
    scale = -1.0
    if n >= 4:
        nn = _nearest(res, n, x)
        covered = _pairs(res64, sq, pd, covered, n)
        scale = _median_scale(pd, n)
    n, covered = _push(res, res64, sq, pd, covered, n, x)
    return nn, scale, n, covered


@_jit
def observe_close(res, res64, sq, pd, covered, n, x, close_ratio):
    """:func:`observe` for the detector: (distance, close, rows now, rows covered now), where
    close is what ``scale > 0 and nn < close_ratio * scale`` gives with observe's distance and
    scale (:func:`_close`: the same answer without selecting the median); the reservoir, its
    pairs and the distance the same to the bit. False under 4 rows."""
    nn = -1.0
    close = False
    if n >= 4:
        nn = _nearest(res, n, x)
        covered = _pairs(res64, sq, pd, covered, n)
        close = _close(pd, n, nn, close_ratio)
    n, covered = _push(res, res64, sq, pd, covered, n, x)
    return nn, close, n, covered


@_jit
def _nearest(res, n, x):
    """The float32 distance of ``x`` to the nearest of the first ``n`` rows of ``res``, as a float.
    Rows of 12 (the projected queries) are summed in registers, as :func:`_row_sum` sums 12."""
    width = res.shape[1]
    best = np.float32(np.inf)
    if width == 12:
        for a in range(n):
            r = res[a]
            t0, t1, t2, t3 = r[0] - x[0], r[1] - x[1], r[2] - x[2], r[3] - x[3]
            t4, t5, t6, t7 = r[4] - x[4], r[5] - x[5], r[6] - x[6], r[7] - x[7]
            s = ((t0 * t0 + t1 * t1) + (t2 * t2 + t3 * t3)) + ((t4 * t4 + t5 * t5) + (t6 * t6 + t7 * t7))
            t = r[8] - x[8]
            s += t * t
            t = r[9] - x[9]
            s += t * t
            t = r[10] - x[10]
            s += t * t
            t = r[11] - x[11]
            s += t * t
            if s < best:
                best = s
        return float(np.float32(np.sqrt(np.float64(best))))
    d = np.empty(width, dtype=np.float32)
    for a in range(n):
        for k in range(width):
            t = res[a, k] - x[k]
            d[k] = t * t
        s = _row_sum(d, width)
        if s < best:
            best = s
    # float32's root, as numpy takes it (the float64 root of a float32, rounded, is the same)
    return float(np.float32(np.sqrt(np.float64(best))))


@_jit
def _pairs(res64, sq, pd, covered, n):
    """``pd[a, b] = sq[a] + sq[b] - 2 p_a.p_b`` for the rows ``b`` from ``covered`` to ``n`` and
    every ``a < b``, the dot product summed in order; returns ``n`` (the rows covered now)."""
    width = res64.shape[1]
    for b in range(covered, n):
        for a in range(b):
            g = 0.0
            for k in range(width):
                g += res64[a, k] * res64[b, k]
            pd[a, b] = sq[a] + sq[b] - 2.0 * g
    return n


@_jit
def _median_scale(pd, n):
    """The root of the median (numpy's ``partition`` at ``m // 2``) of the ``m`` pairs' squared
    distances ``pd[a, b]``, a < b < n, the negative ones as 0."""
    m = n * (n - 1) // 2
    d2 = np.empty(m)
    c = 0
    for a in range(n):
        for b in range(a + 1, n):
            d2[c] = pd[a, b]
            c += 1
    return np.sqrt(max(_select(d2, m // 2), 0.0))


@_jit
def _is_close(v, nn, close_ratio):
    """``scale > 0 and nn < close_ratio * scale`` for the scale a median ``v`` gives."""
    scale = np.sqrt(max(v, 0.0))
    return scale > 0 and nn < close_ratio * scale


@_jit
def _close(pd, n, nn, close_ratio):
    """``_is_close(median, nn, close_ratio)`` of the pairs' median (:func:`_median_scale`)
    without selecting it. ``_is_close(v)`` can only go from False to True as ``v`` grows (a
    root, a product with a positive number and the comparisons are monotonic, rounding
    included), so it holds at the ``m // 2``-th smallest of the ``m`` values exactly when it
    holds for at least ``m - m // 2`` of them: one pass that counts, stopped as soon as either
    side is decided. Far from the threshold ``(nn / close_ratio)**2`` (a relative 1e-9 on either
    side, a million times the rounding of the float arithmetic) a value is classed by one
    comparison; near it, and wherever that threshold is not a normal number or nn is not a
    positive finite number, by ``_is_close`` itself. A NaN among the values (where select's answer depends on the
    order) makes it select the median as before."""
    return _close_ring(pd, n, 0, nn, close_ratio)  # a ring whose oldest row is the first: the same pairs, in order


@_jit
def _close_by_select(pd, n, nn, close_ratio):
    """``scale > 0 and nn < close_ratio * scale`` with the scale selected (:func:`_median_scale`)."""
    scale = _median_scale(pd, n)
    return scale > 0 and nn < close_ratio * scale


@_jit
def _push(res, res64, sq, pd, covered, n, x):
    """``x`` pushed onto the reservoir (the oldest row, and its pairs, dropped when it is full);
    returns (rows now, rows covered now)."""
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
    _put_row(res, res64, sq, n, x)
    return n + 1, covered


@_jit
def _put_row(res, res64, sq, at, x):
    """``x`` written into row ``at`` of the reservoir (its float64 copy and its squared norm too)."""
    width = res.shape[1]
    e = np.empty(width)
    for k in range(width):
        res[at, k] = x[k]
        v = np.float64(x[k])
        res64[at, k] = v
        e[k] = v * v
    sq[at] = _row_sum(e, width)


@_jit
def observe_ring(res, res64, sq, pd, covered, n, head, x, close_ratio):
    """:func:`observe_close` on a reservoir kept as a ring: the same distance, the same answer and
    the same rows, to the bit, without shifting the rows when one is dropped. The reservoir's
    ``n`` rows, oldest first, are at ``(head + k) % cap`` (``head`` is 0 until it is full and
    only moves once it is); ``pd`` is kept by those positions, both ways (``pd[a, b]`` and
    ``pd[b, a]``: each pair's value is what observe computes for it, a product and a sum being
    the same either way round). Returns (distance, close, rows now, rows covered now, head now).
    The nearest distance is a minimum (the same whatever the rows' order); the pairs are read
    in observe's order (oldest first), so a NaN among them is met where it was
    (:func:`_close_ring`). :func:`unroll` puts the rows back oldest first.
    (tests/detectors/test_extraction_close.py: against the frozen observe.)"""
    nn = -1.0
    close = False
    if n >= 4:
        nn = _nearest(res, n, x)  # the first n rows: all of them once full, else the rows from 0 (head is 0)
        covered = _pairs_ring(res64, sq, pd, covered, n, head)
        close = _close_ring(pd, n, head, nn, close_ratio)
    n, covered, head = _push_ring(res, res64, sq, covered, n, head, x)
    return nn, close, n, covered, head


@_jit
def _pairs_ring(res64, sq, pd, covered, n, head):
    """:func:`_pairs` on the ring: the pairs of the rows from ``covered`` to ``n`` (oldest first)
    with every older row, each computed as there (the older row first), kept both ways."""
    width = res64.shape[1]
    cap = res64.shape[0]
    for b in range(covered, n):
        pb = head + b
        if pb >= cap:
            pb -= cap
        for a in range(b):
            pa = head + a
            if pa >= cap:
                pa -= cap
            g = 0.0
            for k in range(width):
                g += res64[pa, k] * res64[pb, k]
            v = sq[pa] + sq[pb] - 2.0 * g
            pd[pa, pb] = v
            pd[pb, pa] = v
    return n


@_jit
def _close_ring(pd, n, head, nn, close_ratio):
    """:func:`_close` on the ring: the pairs read in the same order (rows oldest first); a NaN
    among them selects the median of them in that order, as :func:`_close_by_select` does."""
    cap = pd.shape[0]
    m = n * (n - 1) // 2
    need = m - m // 2
    fail_max = m // 2
    t = (nn / close_ratio) ** 2 if close_ratio > 0 else np.inf
    screen = 0.0 < nn < np.inf and 1e-250 < t < 1e250
    hi = t * (1.0 + 1e-9)
    lo = t * (1.0 - 1e-9)
    ok = 0
    bad = 0
    for a in range(n):
        pa = head + a
        if pa >= cap:
            pa -= cap
        for b in range(a + 1, n):
            pb = head + b
            if pb >= cap:
                pb -= cap
            v = pd[pa, pb]
            if v != v:
                return _close_by_select_ring(pd, n, head, nn, close_ratio)
            if screen and v > hi:
                passed = True
            elif screen and v < lo:
                passed = False
            else:
                passed = _is_close(v, nn, close_ratio)
            if passed:
                ok += 1
                if ok >= need:
                    return True
            else:
                bad += 1
                if bad > fail_max:
                    return False
    return ok >= need


@_jit
def _close_by_select_ring(pd, n, head, nn, close_ratio):
    """:func:`_close_by_select` on the ring: the pairs gathered oldest first, as there."""
    cap = pd.shape[0]
    m = n * (n - 1) // 2
    d2 = np.empty(m)
    c = 0
    for a in range(n):
        pa = head + a
        if pa >= cap:
            pa -= cap
        for b in range(a + 1, n):
            pb = head + b
            if pb >= cap:
                pb -= cap
            d2[c] = pd[pa, pb]
            c += 1
    scale = np.sqrt(max(_select(d2, m // 2), 0.0))
    return scale > 0 and nn < close_ratio * scale


@_jit
def _push_ring(res, res64, sq, covered, n, head, x):
    """``x`` pushed onto the ring: into the oldest row's place when it is full (that row and its
    pairs dropped, the head moved on), else after the last row; returns (rows now, rows covered
    now, head now). The row's numbers are :func:`_push`'s (:func:`_put_row`)."""
    cap = res.shape[0]
    if n >= cap:
        at = head
        head += 1
        if head == cap:
            head = 0
        n = cap - 1
        covered = max(covered - 1, 0)
    else:
        at = head + n
        if at >= cap:
            at -= cap
    _put_row(res, res64, sq, at, x)
    return n + 1, covered, head


@_jit
def unroll(counts, res):
    """Every stream's reservoir rows put back oldest first from 0 (its ``C_HEAD`` back to 0), as
    the packing reads them; the other arrays of the ring (float64 copy, norms, pairs) are the
    batch's scratch and are not read after the run."""
    cap = res.shape[1]
    width = res.shape[2]
    tmp = np.empty((cap, width), dtype=res.dtype)
    for slot in range(counts.shape[0]):
        head = int(counts[slot, C_HEAD])
        if head == 0:
            continue
        for k in range(cap):
            src = head + k
            if src >= cap:
                src -= cap
            for j in range(width):
                tmp[k, j] = res[slot, src, j]
        for k in range(cap):
            for j in range(width):
                res[slot, k, j] = tmp[k, j]
        counts[slot, C_HEAD] = 0.0


@_jit
def feed_stream(slot, counts, hashes, res, res64, sq, pd, dists, x, rows, r0, r1, params, snap):
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
        nn, close, n, covered, head = observe_ring(res[slot], res64[slot], sq[slot], pd[slot], int(c[C_PAIRS]),
                                                   int(c[C_RES]), int(c[C_HEAD]), x[r], close_ratio)
        c[C_RES] = n
        c[C_PAIRS] = covered
        c[C_HEAD] = head
        if nn >= 0.0:
            if close:
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


# -- Shapiro-Wilk ----------------------------------------------------------------------------------
@_jit
def shapiro_w(d, n, a):
    """``extraction.shapiro_w(d[:n])`` (scipy's W) in compiled code, to the bit: the same
    preparation (sort, subtract the middle value of the unsorted data, constant data gives 0)
    and scipy's ``swilk`` (Royston's AS R94, as translated in ``_ansari_swilk_statistics.pyx``)
    from its ``RANGE`` on, operation for operation, with ``a`` the coefficients it computes for
    ``n`` values (:func:`extraction.swilk_coefficients`). Only W: the p-value is not used.
    Tested against the Python function in tests/detectors/test_extraction_stats.py."""
    if n < 3:
        return 0.0
    y = np.sort(d[:n])
    if y[n - 1] - y[0] == 0.0:
        return 0.0
    mid = d[n // 2]
    for i in range(n):
        y[i] -= mid
    rng = y[n - 1] - y[0]
    if rng < 1e-19:
        return 1.0
    sx = y[0] / rng
    sa = -a[0]
    ind2 = n - 2
    for ind1 in range(1, n):
        sx += y[ind1] / rng
        if ind1 != ind2:
            if ind1 < ind2:
                sa += -1.0 * a[ind1]
            else:
                sa += 1.0 * a[ind2]
        ind2 -= 1
    sa /= n
    sx /= n
    ssa = 0.0
    ssx = 0.0
    sax = 0.0
    ind2 = n - 1
    for ind1 in range(n):
        if ind1 != ind2:
            if ind1 < ind2:
                asa = -1.0 * a[ind1] - sa
            else:
                asa = 1.0 * a[ind2] - sa
        else:
            asa = -sa
        xsx = y[ind1] / rng - sx
        ssa += asa * asa
        ssx += xsx * xsx
        sax += asa * xsx
        ind2 -= 1
    ssassx = np.sqrt(ssa * ssx)
    w1 = (ssassx - sax) * (ssassx + sax) / (ssa * ssx)
    w = 1.0 - w1
    if n == 3 and w < 0.75:
        return 0.75
    return w


# -- the populations -------------------------------------------------------------------------------
@_jit
def _genrand(mt, p, pst):
    """The next 32-bit word of population ``p``'s Mersenne twister: CPython's ``genrand_uint32``
    (Modules/_randommodule.c), on the state ``random.Random.getstate()`` gives (624 words, then
    the position, kept in ``pst[p, S_MT_POS]``). In uint64 throughout (numba would type a mix
    of uint32 and int64 as float64), masked to 32 bits."""
    m = mt[p]
    i = int(pst[p, S_MT_POS])
    upper, lower, mag = np.uint64(0x80000000), np.uint64(0x7fffffff), np.uint64(0x9908b0df)
    one = np.uint64(1)
    if i >= 624:
        for kk in range(624):
            y = (np.uint64(m[kk]) & upper) | (np.uint64(m[(kk + 1) % 624]) & lower)
            v = np.uint64(m[(kk + 397) % 624]) ^ (y >> one)
            if y & one:
                v ^= mag
            m[kk] = np.uint32(v)
        i = 0
    y = np.uint64(m[i])
    pst[p, S_MT_POS] = i + 1
    y ^= y >> np.uint64(11)
    y ^= (y << np.uint64(7)) & np.uint64(0x9d2c5680)
    y ^= (y << np.uint64(15)) & np.uint64(0xefc60000)
    y ^= y >> np.uint64(18)
    return y & np.uint64(0xffffffff)


@_jit
def randbelow(mt, p, pst, n):
    """``random.Random.randrange(n)`` (n >= 1, under 2**64) of population ``p``'s generator:
    CPython's ``_randbelow_with_getrandbits``, k = n.bit_length() bits a draw, redrawn until
    under n (``getrandbits`` fills a wider number with 32-bit words, least significant first)."""
    k = 0
    t = n
    while t:
        k += 1
        t >>= 1
    while True:
        if k <= 32:
            r = np.int64(_genrand(mt, p, pst) >> np.uint64(32 - k))
        else:
            low = np.int64(_genrand(mt, p, pst))
            r = (np.int64(_genrand(mt, p, pst) >> np.uint64(64 - k)) << 32) | low
        if r < n:
            return r


@_jit
def _note(p, pst, pint, pflags, psnap, src, ts, ood, taught, params):
    """``Population.note`` (commit fbccdbf) on arrays: the source's last PEER_FLAGS flags in a
    ring, least recently noted peers dropped first; every PEER_EVERY notes the active peers'
    shares recomputed into ``psnap`` and a shift (reset) decided. Returns whether it reset."""
    peers = pint[p]
    n = int(pst[p, S_NPEERS])
    at = -1
    for i in range(n):
        if peers[i, Q_SRC] == src:
            at = i
            break
    stamp = pst[p, S_STAMP] + 1
    pst[p, S_STAMP] = stamp
    if at < 0:
        at = n
        peers[at, Q_SRC] = src
        peers[at, Q_LAST] = ts
        peers[at, Q_LEN] = 0
        peers[at, Q_SUM] = 0
        peers[at, Q_HEAD] = 0
        peers[at, Q_KNOWN] = 0
        peers[at, Q_STAMP] = stamp
        n += 1
        if n > MAX_PEERS:  # the least recently noted source is dropped
            old = 0
            for i in range(1, n):
                if peers[i, Q_STAMP] < peers[old, Q_STAMP]:
                    old = i
            n -= 1
            if old != n:
                peers[old] = peers[n]
                pflags[p, old] = pflags[p, n]
                if at == n:
                    at = old
        pst[p, S_NPEERS] = n
    else:
        peers[at, Q_STAMP] = stamp
        if ts - peers[at, Q_LAST] > params[P_GAP]:  # idle: its old flags say nothing of now
            peers[at, Q_LEN] = 0
            peers[at, Q_SUM] = 0
            peers[at, Q_HEAD] = 0
    flags = pflags[p, at]
    cap = flags.shape[0]
    ln = peers[at, Q_LEN]
    head = peers[at, Q_HEAD]
    if ln == cap:
        peers[at, Q_SUM] -= flags[head]
        flags[head] = ood
        peers[at, Q_HEAD] = (head + 1) % cap
    else:
        flags[(head + ln) % cap] = ood
        peers[at, Q_LEN] = ln + 1
    peers[at, Q_LAST] = ts
    peers[at, Q_SUM] += ood
    if taught:
        peers[at, Q_KNOWN] = 1
    notes = pst[p, S_NOTES] + 1
    pst[p, S_NOTES] = notes
    if int(notes) % PEER_EVERY != 0:
        return False
    since = ts - np.int64(params[P_GAP_NS])  # int(gap_seconds * 1e9)
    m = 0
    nfull = 0
    full = np.empty(n)
    for i in range(n):
        if peers[i, Q_KNOWN] and peers[i, Q_LAST] >= since and peers[i, Q_LEN] >= PEER_MIN_FLAGS:
            share = peers[i, Q_SUM] / peers[i, Q_LEN]
            psnap[p, m, 0] = peers[i, Q_SRC]
            psnap[p, m, 1] = share
            m += 1
            if peers[i, Q_LEN] == cap:
                full[nfull] = share
                nfull += 1
    pst[p, S_NSNAP] = m
    if nfull >= SHIFT_MIN_SOURCES:
        f = np.sort(full[:nfull])
        mid = nfull // 2
        med = f[mid] if nfull % 2 else (f[mid - 1] + f[mid]) / 2.0
        if med >= SHIFT_SHARE:
            pst[p, S_FILLED] = 0
            pst[p, S_SEEN] = 0
            pst[p, S_SINCE] = 0
            pst[p, S_READY] = 0
            pst[p, S_OOD_RATE] = np.nan
            pst[p, S_NPEERS] = 0
            pst[p, S_NSNAP] = 0
            pst[p, S_EPOCH] += 1
            pst[p, S_VERSION] += 1
            return True
    return False


@_jit
def _outside(vals, off, width, lo, hi, share):
    n = 0
    for k in range(width):
        v = vals[off + k]
        if v < lo[k] or v > hi[k]:
            n += 1
    return 1 if n > share * width else 0


SELECT_MAX = 64  # order statistics this close to either end are selected in one pass, else a column is sorted


@_jit
def _order_stats(col, n, lo_k, hi_k, small, large):
    """The ``lo_k`` smallest values of ``col[:n]`` into ``small`` (ascending) and the ``hi_k``
    largest into ``large`` (``large[0]`` the largest), in one pass with an insertion each."""
    ns = 0
    nl = 0
    for t in range(n):
        v = col[t]
        if lo_k > 0 and (ns < lo_k or v < small[ns - 1]):
            k = ns if ns < lo_k else lo_k - 1
            while k > 0 and small[k - 1] > v:
                small[k] = small[k - 1]
                k -= 1
            small[k] = v
            if ns < lo_k:
                ns += 1
        if hi_k > 0 and (nl < hi_k or v > large[nl - 1]):
            k = nl if nl < hi_k else hi_k - 1
            while k > 0 and large[k - 1] < v:
                large[k] = large[k - 1]
                k -= 1
            large[k] = v
            if nl < hi_k:
                nl += 1


@_jit
def _lerp(a, b, t):
    """numpy's ``_lerp`` (of ``np.quantile``) for one value."""
    diff = b - a
    if t >= 0.5:
        return b - diff * (1.0 - t)
    return a + diff * t


@_jit
def refresh_ranges(p, pst, prows, plo, phi, width, q, margin, ood_features):
    """``Population._refresh`` as it was in numpy (commit c7170a5): ``np.quantile(rows, [q, 1 - q],
    axis=0)`` of the population's ``filled`` rows (linear interpolation: virtual index
    ``(n - 1) * q``, its floor and the next order statistic, numpy's ``_lerp``; the order
    statistics selected, not sorted, when near an end), the span, the margins, the share of rows
    with more than ``ood_features`` of their features outside; then ready, a new version.
    Tested against that numpy code in tests/detectors/test_extraction_stats.py."""
    n = int(pst[p, S_FILLED])
    rows = prows[p]
    lo = plo[p]
    hi = phi[p]
    qs = np.array([q, 1.0 - q])
    prev = np.zeros(2, dtype=np.int64)
    nxt = np.zeros(2, dtype=np.int64)
    gamma = np.zeros(2)
    for k in range(2):
        vi = (n - 1) * qs[k]
        f = np.floor(vi)
        pi = int(f)
        ni = pi + 1
        if vi >= n - 1:
            pi = n - 1
            ni = n - 1
        if vi < 0:
            pi = 0
            ni = 0
        prev[k] = pi
        nxt[k] = ni
        gamma[k] = vi - f
    lo_k = 0  # the order statistics needed from the bottom (small[j] is statistic j) ...
    hi_k = 0  # ... and from the top (large[j] is statistic n - 1 - j)
    for k in range(2):
        for j in (prev[k], nxt[k]):
            if j < n - j:
                lo_k = max(lo_k, j + 1)
            else:
                hi_k = max(hi_k, n - j)
    select = lo_k <= SELECT_MAX and hi_k <= SELECT_MAX
    small = np.empty(SELECT_MAX)
    large = np.empty(SELECT_MAX)
    col = np.empty(n)
    out = np.empty((2, width))
    for c in range(width):
        for t in range(n):
            col[t] = rows[t, c]
        if select:
            _order_stats(col, n, lo_k, hi_k, small, large)
            for k in range(2):
                a = small[prev[k]] if prev[k] < lo_k else large[n - 1 - prev[k]]
                b = small[nxt[k]] if nxt[k] < lo_k else large[n - 1 - nxt[k]]
                out[k, c] = _lerp(a, b, gamma[k])
        else:
            srt = np.sort(col)
            for k in range(2):
                out[k, c] = _lerp(srt[prev[k]], srt[nxt[k]], gamma[k])
    top = out[1, 0]
    bottom = out[0, 0]
    for c in range(1, width):
        top = max(top, out[1, c])
        bottom = min(bottom, out[0, c])
    span = top - bottom
    if span == 0.0:
        span = 1.0
    for c in range(width):
        lo[c] = out[0, c] - margin * span
        hi[c] = out[1, c] + margin * span
    share = ood_features * width
    outside = 0
    for t in range(n):
        m = 0
        for c in range(width):
            v = rows[t, c]
            if v < lo[c] or v > hi[c]:
                m += 1
        if m > share:
            outside += 1
    pst[p, S_OOD_RATE] = outside / n
    pst[p, S_READY] = 1.0
    pst[p, S_SINCE] = 0.0
    pst[p, S_VERSION] += 1


@_jit
def run(i, phase, j, ev, tls, counts, hashes, res, res64, sq, pd, dists, x, rows, vals, params, snap, out,
        pst, prows, plo, phi, mt, pint, pflags, psnap, model_pops, swilk_a):
    """The detector's per-event loop over events ``i`` on (``ev``: slot of the principal's stream,
    of the source's (-1: none), first and last row, time, source id, model), from ``phase``:
    0 an event's start, 1 after its judging, 2 its learning from row ``j``. Per event: the streams
    fed (:func:`feed_stream`), a Shapiro-Wilk test due on a stream (:func:`shapiro_w`, with
    ``swilk_a`` the coefficients per sample size; W kept in the stream's ``C_W``, ``C_WSET``
    set), the judging (in Python), then the population's notes and learning per row
    (``Population.note``, ``Population.add``). Stops for Python and returns (code, event, row,
    population): 0 all done; 1 a stream of the event is idle past the gap (start it afresh, then
    resume at phase 0); 2 its streams fed and a ratio test passed (``out``: per stream the
    Shapiro-Wilk test done, the ratio test passed; resume at phase 1). A population's ranges due
    to be learnt again after a row are learnt here (:func:`refresh_ranges`); phase 2 with row
    ``j`` resumes an event's learning at that row."""
    n_events = ev.shape[0]
    gap_ns = np.int64(params[P_GAP_NS])
    mq = params[P_MIN_QUERIES]
    ood_share = params[P_OOD_FEATURES]
    low_conf = params[P_LOW_CONF]
    while i < n_events:
        sa, sb, r0, r1, ts, src, model = ev[i, 0], ev[i, 1], ev[i, 2], ev[i, 3], ev[i, 4], ev[i, 5], ev[i, 6]
        if phase == 0:
            if ts - tls[sa] > gap_ns:
                return 1, i, 0, sa
            if sb >= 0 and ts - tls[sb] > gap_ns:
                return 1, i, 0, sb
            tls[sa] = ts
            if sb >= 0:
                tls[sb] = ts
            # the rows' populations and the ratio tests' thresholds as they stand at this event
            for r in range(r0, r1):
                p = int(rows[r, R_POP])
                if p >= 0 and pst[p, S_READY] != 0.0:
                    rows[r, R_READY] = 1.0
                    rows[r, R_EPOCH] = pst[p, S_EPOCH]
                    rows[r, R_OUTSIDE] = _outside(vals, int(rows[r, R_OFF]), int(rows[r, R_WIDTH]), plo[p], phi[p],
                                                  ood_share)
                else:
                    rows[r, R_READY] = 0.0
            npops = model_pops[model, 0]
            thr = np.inf
            for k in range(npops):
                p = model_pops[model, 1 + k]
                if pst[p, S_READY] != 0.0:
                    rate = pst[p, S_OOD_RATE]
                    if np.isnan(rate):
                        rate = 0.0
                    thr = params[P_MIN_RATIO] * max(rate, params[P_BASE_FLOOR])
                    break
            params[P_OOD_THR] = thr
            thr = np.inf
            if npops:
                p = model_pops[model, 1]
                if pst[p, S_OUTPUTS] >= params[P_MIN_POPULATION]:
                    thr = params[P_MIN_RATIO] * max(pst[p, S_LOW] / pst[p, S_OUTPUTS], params[P_BASE_FLOOR])
            params[P_LOW_THR] = thr
            due_a, hit_a = feed_stream(sa, counts, hashes, res, res64, sq, pd, dists, x, rows, r0, r1, params, snap[0])
            due_b, hit_b = 0, False
            if sb >= 0:
                due_b, hit_b = feed_stream(sb, counts, hashes, res, res64, sq, pd, dists, x, rows, r0, r1, params,
                                           snap[1])
            if due_a:
                counts[sa, C_W] = shapiro_w(snap[0], due_a, swilk_a[due_a])
                counts[sa, C_WSET] = 1.0
            if due_b:
                counts[sb, C_W] = shapiro_w(snap[1], due_b, swilk_a[due_b])
                counts[sb, C_WSET] = 1.0
            if hit_a or hit_b:
                out[0], out[1], out[2], out[3] = due_a, 1 if hit_a else 0, due_b, 1 if hit_b else 0
                return 2, i, 0, -1
            phase = 1
        if phase == 1:
            j = r0
            phase = 2
        # What the population learns from: streams judged (min_queries) and found clean.
        learn = counts[sa, C_ND] >= mq and counts[sa, C_INC] == 0.0
        if sb >= 0:
            learn = learn and counts[sb, C_ND] >= mq and counts[sb, C_INC] == 0.0
        for r in range(j, r1):
            p = int(rows[r, R_POP])
            if p < 0:
                continue
            off, width = int(rows[r, R_OFF]), int(rows[r, R_WIDTH])
            if pst[p, S_READY] != 0.0:
                _note(p, pst, pint, pflags, psnap, src, ts, _outside(vals, off, width, plo[p], phi[p], ood_share),
                      learn, params)
            if learn:
                if rows[r, R_HAS_CONF] != 0.0:
                    pst[p, S_OUTPUTS] += 1
                    if rows[r, R_CONF] < low_conf:
                        pst[p, S_LOW] += 1
                seen = pst[p, S_SEEN] + 1
                pst[p, S_SEEN] = seen
                filled = int(pst[p, S_FILLED])
                cap = prows.shape[1]
                if filled < cap:
                    prows[p, filled, :width] = vals[off:off + width]
                    filled += 1
                    pst[p, S_FILLED] = filled
                else:
                    at = randbelow(mt, p, pst, np.int64(seen))
                    if at < cap:
                        prows[p, at, :width] = vals[off:off + width]
                pst[p, S_SINCE] += 1
                if filled >= params[P_MIN_POPULATION] and (pst[p, S_READY] == 0.0 or pst[p, S_SINCE] >= 128):
                    refresh_ranges(p, pst, prows, plo, phi, width, params[P_RANGE_Q], params[P_RANGE_MARGIN],
                                   ood_share)
        i += 1
        phase = 0
    unroll(counts, res)
    return 0, i, 0, -1


def _crc_table() -> np.ndarray:
    """CRC-32's byte table (the reflected polynomial 0xEDB88320: zlib's, and gzip's)."""
    table = np.zeros(256, dtype=np.uint32)
    for b in range(256):
        c = b
        for _ in range(8):
            c = (c >> 1) ^ 0xEDB88320 if c & 1 else c >> 1
        table[b] = c
    return table


CRC_TABLE = _crc_table()


def _crc_tables8(t0: np.ndarray) -> np.ndarray:
    """The eight tables of CRC-32 "slicing by 8" (Intel's method, zlib's own for little-endian
    words): ``t[0]`` is the byte table, ``t[k][b]`` the CRC-32 state after byte ``b`` is followed
    by ``k`` zero bytes, so that eight bytes are taken with eight independent lookups."""
    t = np.zeros((8, 256), dtype=np.uint32)
    t[0] = t0
    for k in range(1, 8):
        t[k] = (t[k - 1] >> np.uint32(8)) ^ t0[t[k - 1] & np.uint32(0xFF)]
    return t


CRC_TABLES8 = _crc_tables8(CRC_TABLE)


@_jit
def projection_safe(out, f32, bound, safe):
    """``safe[i]``: every value ``out[i, j]`` (float64) lies farther than ``bound[i, j]`` from both
    rounding boundaries of its float32 ``f32[i, j]`` (the midpoints with its two float32
    neighbours), as :func:`extraction.project` tested it in numpy: the same float64 operations
    in the same order, so the same answer (a NaN makes a row unsafe, as numpy's comparisons
    do); one call per block of rows instead of a dozen numpy calls."""
    down = np.float32(-np.inf)
    up = np.float32(np.inf)
    for i in range(out.shape[0]):
        ok = True
        for j in range(out.shape[1]):
            f = f32[i, j]
            below = (np.float64(f) + np.float64(np.nextafter(f, down))) / 2.0
            above = (np.float64(f) + np.float64(np.nextafter(f, up))) / 2.0
            if not (out[i, j] - below > bound[i, j] and above - out[i, j] > bound[i, j]):
                ok = False
                break
        safe[i] = ok


@_jit
def row_crc32(data, table, out):
    """``out[i] = zlib.crc32(data[i])`` for each row of ``data`` (uint8, rows of one length): the
    same CRC-32 as zlib's, a byte at a time from its table (``CRC_TABLE``)."""
    for i in range(data.shape[0]):
        c = np.uint32(0xFFFFFFFF)
        for k in range(data.shape[1]):
            c = table[(c ^ data[i, k]) & np.uint32(0xFF)] ^ (c >> np.uint32(8))
        out[i] = c ^ np.uint32(0xFFFFFFFF)


@_jit
def row_crc32_words(words, tables, out):
    """:func:`row_crc32` of rows given as 64-bit words (``words``: uint64, the rows' float64 values
    as their bits; the caller checks the machine is little-endian, so that a word's low byte is
    the first of its eight bytes in memory), eight bytes a step by slicing (``tables``:
    ``CRC_TABLES8``): the same CRC-32 as zlib's (about 5 times faster than a byte a step: the
    byte loop waits on each lookup before the next; here the eight lookups of a word are
    independent)."""
    m8 = np.uint64(0xFF)
    for i in range(words.shape[0]):
        c = np.uint64(0xFFFFFFFF)
        for k in range(words.shape[1]):
            v = words[i, k] ^ c
            c = np.uint64(tables[7, v & m8] ^ tables[6, (v >> np.uint64(8)) & m8]
                          ^ tables[5, (v >> np.uint64(16)) & m8] ^ tables[4, (v >> np.uint64(24)) & m8]
                          ^ tables[3, (v >> np.uint64(32)) & m8] ^ tables[2, (v >> np.uint64(40)) & m8]
                          ^ tables[1, (v >> np.uint64(48)) & m8] ^ tables[0, v >> np.uint64(56)])
        out[i] = np.uint32(c ^ np.uint64(0xFFFFFFFF))


def _b64_table() -> np.ndarray:
    """Each byte's value in base64's standard alphabet (``A-Z a-z 0-9 + /``), 255 for any other."""
    table = np.full(256, 255, dtype=np.uint8)
    alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
    for k, c in enumerate(alphabet):
        table[c] = k
    return table


B64_TABLE = _b64_table()


@_jit
def b64_decode_texts(data, chars, size, table, out):
    """Texts of ``chars`` base64 characters each, one after the other in ``data`` (uint8), each
    decoded into ``size`` bytes of ``out``, one after the other: what ``binascii.a2b_base64`` gives
    for a text that is ``size`` bytes exactly as ``b2a_base64`` writes them (only the alphabet, the
    padding only at the end: ``=`` when ``size % 3 == 2``, ``==`` when 1). Returns False, leaving
    ``out`` undefined, as soon as a text is not such a text (a character out of the alphabet, padding
    elsewhere or missing, a wrong length): the caller then decodes every text with ``a2b_base64``
    as before, so the result never depends on how this reads odd text."""
    if chars != 4 * ((size + 2) // 3) or data.shape[0] % chars != 0:
        return False
    tail = size % 3
    pad = 0 if tail == 0 else 3 - tail  # '=' at the end of each text
    whole = size // 3  # full groups of 3 bytes
    n = data.shape[0] // chars
    for t in range(n):
        a = t * chars
        o = t * size
        for g in range(whole):
            v0 = table[data[a]]
            v1 = table[data[a + 1]]
            v2 = table[data[a + 2]]
            v3 = table[data[a + 3]]
            if (v0 | v1 | v2 | v3) > 63:
                return False
            out[o] = (v0 << 2) | (v1 >> 4)
            out[o + 1] = ((v1 & 15) << 4) | (v2 >> 2)
            out[o + 2] = ((v2 & 3) << 6) | v3
            a += 4
            o += 3
        if pad:
            v0 = table[data[a]]
            v1 = table[data[a + 1]]
            if (v0 | v1) > 63 or data[a + 3] != 61:  # 61: '='
                return False
            out[o] = (v0 << 2) | (v1 >> 4)
            if pad == 1:
                v2 = table[data[a + 2]]
                if v2 > 63:
                    return False
                out[o + 1] = ((v1 & 15) << 4) | (v2 >> 2)
            elif data[a + 2] != 61:
                return False
    return True
