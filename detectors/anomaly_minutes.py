"""The per-minute sums of ``anomaly.model`` and ``anomaly.gpu`` in compiled code (numba).

Each series (an entity's metric) sums its points per minute; the first point of a later minute
closes the open one, which is then scored (in Python: a few series close a minute per batch),
and a point of an earlier minute is a straggler and dropped. That is a sequential update per
point: :func:`accumulate` runs it over a batch's points in event order on arrays indexed by a
small per-batch entity code, with the same additions in the same order as the loop it replaces
(``tests/detectors/test_anomaly.py`` holds it to that loop), and reports every close it makes,
in the order it makes them, for the detector to score.
"""

from __future__ import annotations

import numpy as np

from ramparts.detectors.jit import jit as _jit


@_jit
def first_points(codes, values, entities):
    """Per series ``[code, metric]``, ``i * metrics + j`` of its first point in the batch (event
    ``i``, metric ``j``; -1: none): which series the batch touches, and in which order.

    ``codes[i]``: the entity code of event ``i`` (-1: not an entity's event, no point);
    ``values[i, j]``: its point of metric ``j`` (NaN: none); ``entities``: how many codes."""
    k = values.shape[1]
    first = np.full((entities, k), -1, dtype=np.int64)
    for i in range(codes.shape[0]):
        c = codes[i]
        if c < 0:
            continue
        for j in range(k):
            if first[c, j] < 0 and values[i, j] == values[i, j]:
                first[c, j] = i * k + j
    return first


@_jit
def accumulate(codes, minutes, values, cur_m, cur_n, cur_v, fresh, closes, closed_v):
    """Add a batch's points to their series' open minutes, in event order.

    ``codes`` and ``values`` as for :func:`first_points`; ``minutes[i]``: the minute of event
    ``i``. Per series ``[code, metric]``: ``cur_m``, ``cur_n``, ``cur_v`` the open minute, its
    count and sum (updated in place); ``fresh`` true for a series without state (its open
    minute becomes the minute of its first point). Each close is written to ``closes`` (code,
    metric, minute closed, its count, the minute that closed it) and ``closed_v`` (its sum), in
    the order they happen; returns how many."""
    k = values.shape[1]
    done = 0
    for i in range(codes.shape[0]):
        c = codes[i]
        if c < 0:
            continue
        minute = minutes[i]
        for j in range(k):
            x = values[i, j]
            if x != x:
                continue
            if fresh[c, j]:
                fresh[c, j] = False
                cur_m[c, j] = minute
            if minute > cur_m[c, j]:
                closes[done, 0] = c
                closes[done, 1] = j
                closes[done, 2] = cur_m[c, j]
                closes[done, 3] = cur_n[c, j]
                closes[done, 4] = minute
                closed_v[done] = cur_v[c, j]
                done += 1
                cur_m[c, j] = minute
                cur_n[c, j] = 0
                cur_v[c, j] = 0.0
            elif minute < cur_m[c, j]:
                continue  # a straggler from a minute already scored
            cur_n[c, j] += 1
            cur_v[c, j] += x
    return done
