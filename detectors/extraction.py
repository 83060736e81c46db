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

Implementation: the per-event loop (streams fed, populations noted and taught) is one
compiled call per batch, ``extraction_stats.run``, which stops for the Python parts (a stream
idle past the gap, the judging); Shapiro-Wilk's W and the populations' ranges are computed in it
too (``extraction_stats.shapiro_w``, ``refresh_ranges``: scipy's W and numpy's quantiles to the
bit), and each stream's reservoir is a ring while it runs (``extraction_stats.observe_ring``: no
rows shifted when one is dropped; put back oldest first at its end); see docs/benchmarks.md,
"2026-11-23 (fourth session)", "(sixth session)" and "2026-11-24 (thirteenth session)". The
predictions' fields are read as columns of the batch
(``EventBatch.values``): a batch of columns makes no event dict here; a batch's rows of one
width are converted and projected at once (:func:`project`) and hashed in compiled code, a
value's eight bytes a step (:func:`_row_hashes`). A batch whose every prediction has the common
shape (rows of numbers, one output per row) is read per column (:meth:`ExtractionDetector._read_common`: one hash per
prediction of its streams, the types of all its numbers in one pass, each width's rows converted
from their numbers one after the other), others event by event (``_read_each``), with the same
results (docs/benchmarks.md, "(eighth session)"). The streams' memories are base64 texts in the
state; those at capacity are decoded together in compiled code (``_load_memory``), the others, and
any text not as ``b2a_base64`` writes it, by ``a2b_base64``.

Alerts: ``extraction.queries`` on the principal (or on the source address, for a split that
no single principal shows), with the statistic, its value, the threshold, the query counts and
the model in ``evidence``.
"""

from __future__ import annotations

import bisect
import functools
import math
import random
import sys
from binascii import a2b_base64, b2a_base64
from itertools import chain
from typing import Any

import numpy as np
from pydantic import Field

from ramparts.events import EventBatch

from .base import Detector, StateStore, make_alert, merge_alerts
from .kind_columns import kind_values

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

# The layout of the arrays of :func:`extraction_stats.run` (float64 unless said).
# A stream's counts (the stored counts are floats that halve, or integers well under 2**53), its
# packed memories' lengths, whether they changed, whether it has an open incident, the reservoir's rows
# whose pairwise distances are kept (``_Streams.pd``), the Shapiro-Wilk W last computed (compiled, in
# ``extraction_stats.run``), whether there is one since the stream was loaded (0/1) and the reservoir's
# oldest row (a ring during a run: ``extraction_stats.observe_ring``; 0 before and after it):
C_N, C_REP, C_ND, C_OOD, C_NJ, C_CLOSE, C_NC, C_LOW, C_EP, C_RES, C_HASHES, C_DISTS, C_CHANGED, C_INC, \
    C_PAIRS, C_W, C_WSET, C_HEAD = range(18)
N_COUNTS = 18
# A query row: has a vector (0/1), its input hash, has a top confidence (0/1), that confidence,
# its population ready (0/1), that population's epoch, the row out of its range (0/1), the
# population (-1: no vector), the vector's offset in the batch's values and its width.
R_VEC, R_HASH, R_HAS_CONF, R_CONF, R_READY, R_EPOCH, R_OUTSIDE, R_POP, R_OFF, R_WIDTH = range(10)
N_ROW = 10
# The options, then the ratio tests' thresholds of the event's model (inf: that test cannot
# pass): out of range (min_ratio x the first ready population's rate, floored), close queries,
# low confidence.
P_MIN_QUERIES, P_WINDOW, P_CLOSE_RATIO, P_LOW_CONF, P_NORMALITY_MIN, P_NORMALITY_EVERY, P_OOD_THR, P_CLOSE_THR, \
    P_LOW_THR, P_OOD_FEATURES, P_MIN_RATIO, P_BASE_FLOOR, P_MIN_POPULATION, P_GAP, P_GAP_NS, P_RANGE_Q, \
    P_RANGE_MARGIN = range(17)
N_PARAMS = 17
# A population's scalars (``nan``: no out-of-range rate yet; the Mersenne twister's position):
S_WIDTH, S_FILLED, S_SEEN, S_SINCE, S_READY, S_OOD_RATE, S_OUTPUTS, S_LOW, S_EPOCH, S_VERSION, S_NOTES, \
    S_NPEERS, S_STAMP, S_NSNAP, S_MT_POS = range(15)
N_POP = 15
# A peer of a population (int64): source id, last time, last noted (LRU order), taught it (0/1),
# number of flags, their sum, the ring's head.
Q_SRC, Q_LAST, Q_STAMP, Q_KNOWN, Q_LEN, Q_SUM, Q_HEAD = range(7)
N_PEER = 7


# -- query rows from an event ------------------------------------------------------------------
_NUMBER_TYPES = frozenset((int, float))
_SCORE_TYPES = _NUMBER_TYPES
_INTS = frozenset((int,))  # not bool
_LIST = {list}
_COMMON_MIN = 8  # fewer predictions in a batch are read event by event (a few numpy calls cost more)


def _row(v: Any) -> list[float] | None:
    if type(v) is list and v and _NUMBER_TYPES.issuperset(map(type, v)):
        return v
    return None


def query_rows(event: dict) -> list[tuple[np.ndarray | None, float | None, int | None]]:
    """The rows of one prediction: (input vector or None, top confidence or None, predicted class).

    ``input`` is one row (a list of numbers) or a list of rows; ``output`` is per row a list of
    class probabilities or a single score (binary: confidence max(p, 1 - p)). Anything else
    (text, named features, images) gives rows without a vector, counted but not compared; so
    does a row with a number that is not finite.
    """
    result = []
    for r, conf, cls in _read_rows(event.get("input"), event.get("output")):
        vec = None
        if r is not None:
            vec = np.asarray(r, dtype=np.float64)
            if not np.isfinite(vec).all():
                vec = None
        result.append((vec, conf, cls))
    return result


def _read_rows(inp: Any, out: Any) -> list[tuple[list | None, float | None, int | None]]:
    """:func:`query_rows` of an event's ``input`` and ``output``, the inputs left as the lists
    of numbers they are (finite or not): the detector converts a batch's rows at once."""
    if type(inp) is list and inp and type(inp[0]) is list and type(out) is list and len(out) == len(inp) \
            and type(out[0]) is not list:
        # The common shape (rows of numbers, one score per row), read in one pass: what the
        # general reading below gives for it (one row: the score list is the row's output,
        # unwrapped; several: one output each).
        result = []
        for r, o in zip(inp, out):
            r = _row(r)
            t = type(o)
            if t is float or t is int:
                if 0.0 <= o <= 1.0:
                    f = float(o)
                    result.append((r, max(f, 1.0 - f), int(o >= 0.5)))
                else:
                    result.append((r, None, None))
            elif t is list:
                result.append((r, *_confidence(o)))
            else:
                result.append((r, None, None))
        return result
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
        result.append((r, *_confidence(outs[i] if i < len(outs) else None)))
    return result


def _confidence(o: Any) -> tuple[float | None, int | None]:
    """A row's output ``o`` as (top confidence, predicted class), or (None, None)."""
    conf = cls = None
    if type(o) is list and len(o) >= 2 and _NUMBER_TYPES.issuperset(map(type, o)):
        k = max(range(len(o)), key=o.__getitem__)
        conf, cls = float(o[k]), k
    elif type(o) is list and len(o) == 1 and type(o[0]) in (int, float):
        o = o[0]
    if type(o) in (int, float) and 0.0 <= o <= 1.0:
        conf, cls = max(float(o), 1.0 - float(o)), int(o >= 0.5)
    return conf, cls


def _finite(row: list) -> bool:
    """Whether every number of ``row`` (ints and floats) is finite: a finite sum says so at
    once (a NaN or an infinity makes the sum one); an infinite sum of finite numbers (an
    overflow) is checked number by number, as numpy would."""
    total = sum(row)
    if type(total) is int or -math.inf < total < math.inf:
        return True
    return bool(np.isfinite(np.asarray(row, dtype=np.float64)).all())


def _query_arrays(vecs: list[list | None], confs: list[float | None],
                  pops: list[int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The query rows of a batch as :func:`extraction_stats.run` reads them: the rows (``R_*``),
    their projections (float32) and their inputs' numbers one after the other (``R_OFF`` is
    where a row's start). The rows of one width are converted and projected at once
    (:func:`project`) and each is hashed alone: the same bits as one ``np.asarray`` per row
    gave (a row of a 2-D array is the same contiguous float64 numbers)."""
    n = len(vecs)
    rows = np.zeros((n, N_ROW))
    x = np.zeros((n, PROJECTED_DIMS), dtype=np.float32)
    rows[:, R_POP] = pops
    rows[:, R_HAS_CONF] = [c is not None for c in confs]
    rows[:, R_CONF] = [0.0 if c is None else c for c in confs]
    by_width: dict[int, list[int]] = {}
    for r, v in enumerate(vecs):
        if v is not None:
            by_width.setdefault(len(v), []).append(r)
    blocks = []
    off = 0
    for width, members in by_width.items():
        xs = np.array([vecs[r] for r in members], dtype=np.float64)
        x[members] = project(xs)
        m = len(members)
        rows[members, R_VEC] = 1.0
        rows[members, R_HASH] = _row_hashes(xs, width)
        rows[members, R_OFF] = np.arange(off, off + m * width, width)
        rows[members, R_WIDTH] = width
        blocks.append(xs.ravel())
        off += m * width
    vals = np.concatenate(blocks) if blocks else np.zeros(1)
    return rows, x, vals


def _rows_array(rows, width: int, m: int) -> np.ndarray:
    """``np.array(list(rows), dtype=np.float64)`` of ``m`` rows of ``width`` numbers (ints and floats,
    checked by the caller): their numbers one after the other into an (m, width) array, each
    converted as ``np.array`` converts it (the same float64 item conversion; an int beyond a float's
    range raises ``OverflowError`` alike), without ``np.array``'s discovery of the nesting (about 8 ns a
    number less; tests/detectors/test_extraction.py compares them)."""
    return np.fromiter(chain.from_iterable(rows), dtype=np.float64, count=m * width).reshape(m, width)


def _row_hashes(xs: np.ndarray, width: int) -> np.ndarray:
    """Per row of ``xs`` (float64, ``width`` wide) the CRC-32 of its bytes xor its width,
    ``zlib.crc32(row) ^ width``, computed in compiled code rather than a call per row: eight bytes
    (a value) a step (:func:`extraction_stats.row_crc32_words`) on a little-endian machine, where a
    value's 64-bit word holds its bytes in memory order; else a byte a step
    (:func:`extraction_stats.row_crc32`). The same CRC-32 as zlib's either way."""
    from .extraction_stats import CRC_TABLE, CRC_TABLES8

    out = np.empty(len(xs), dtype=np.uint32)
    data = np.ascontiguousarray(xs, dtype=np.float64)
    if _LITTLE_ENDIAN:
        _crc_words()(data.view(np.uint64).reshape(len(xs), width), CRC_TABLES8, out)
    else:
        _crc()(data.view(np.uint8).reshape(len(xs), 8 * width), CRC_TABLE, out)
    return out ^ np.uint32(width)


_LITTLE_ENDIAN = sys.byteorder == "little"


@functools.cache
def _crc():
    """:func:`extraction_stats.row_crc32`, loaded (from numba's cache, else compiled) by a first
    call: see :func:`_observe`."""
    from .extraction_stats import CRC_TABLE, row_crc32

    row_crc32(np.zeros((1, 8), dtype=np.uint8), CRC_TABLE, np.zeros(1, dtype=np.uint32))
    return row_crc32


@functools.cache
def _crc_words():
    """:func:`extraction_stats.row_crc32_words`, loaded as :func:`_crc` is."""
    from .extraction_stats import CRC_TABLES8, row_crc32_words

    row_crc32_words(np.zeros((1, 1), dtype=np.uint64), CRC_TABLES8, np.zeros(1, dtype=np.uint32))
    return row_crc32_words


def _first_codes(first: np.ndarray, distinct: dict) -> np.ndarray:
    """Per item its number among ``distinct`` (value -> position of its first item, in the order
    of their first items), from ``first``, per item the position of the first item like it."""
    number = np.zeros(len(first), dtype=np.int64)
    number[np.fromiter(distinct.values(), dtype=np.int64, count=len(distinct))] = np.arange(len(distinct))
    return number[first]


class _Todo:
    """What the judging reads of event ``i`` of a batch read by :meth:`ExtractionDetector._read_common`:
    (principal, source, model, the slots of its streams), as the event loop's list holds it."""

    __slots__ = ("principal", "src", "model", "code", "slots")

    def __init__(self, principal: list, src: list, model: list, code: np.ndarray, slots: list[list[int]]):
        self.principal, self.src, self.model, self.code, self.slots = principal, src, model, code, slots

    def __getitem__(self, i: int) -> tuple:
        return self.principal[i], self.src[i], self.model[i], self.slots[int(self.code[i])]


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


def project(xs: np.ndarray, slack: float = 4.0) -> np.ndarray:
    """The float32 projections of the rows ``xs`` (float64, one width): per row
    ``(row @ projection(width)).astype(np.float32)``, to the bit, for the price of one product.

    One matrix product and one vector product per row may round differently in float64 (BLAS
    sums in orders of its own), but each is within ``width * 2**-53 * sum |row_k p_k|`` of the
    exact value, so the float32 they round to can differ only where a value lies that close to
    a float32 rounding boundary (the midpoint of two float32s). Rows with a value within
    ``slack`` times that bound of one (about one in 10**6) are projected alone, as before."""
    width = xs.shape[1]
    p = projection(width)
    out = xs @ p
    f32 = out.astype(np.float32)
    bound = slack * width * 2.0 ** -53 * (np.abs(xs) @ np.abs(p))
    # Per row whether every value is that far from both float32 rounding boundaries (the midpoints
    # with the float32's neighbours), in one compiled pass (extraction_stats.projection_safe).
    safe = np.empty(len(xs), dtype=np.bool_)
    _projection_safe()(out, f32, bound, safe)
    for i in np.flatnonzero(~safe).tolist():
        f32[i] = (xs[i] @ p).astype(np.float32)
    return f32


def _pack(a: np.ndarray, dtype) -> str:
    # base64.b64encode without its Python wrapper (three per stream and batch)
    return b2a_base64(np.ascontiguousarray(a, dtype=dtype).tobytes(), newline=False).decode("ascii")


def _unpack(s: str | None, dtype, width: int = 1) -> np.ndarray:
    if not s:
        return np.zeros((0, width) if width > 1 else 0, dtype=dtype)
    a = np.frombuffer(a2b_base64(s), dtype=dtype)  # base64.b64decode(s) without its Python wrapper
    return a.reshape(-1, width) if width > 1 else a.copy()


def _load_memory(target: np.ndarray, texts: list, dtype, width: int, cap: int) -> list[int]:
    """:func:`_load_memory_each`, with the texts that hold exactly ``cap`` rows as ``b2a_base64``
    writes them (a grown stream's: most of them) decoded in one compiled call
    (:func:`extraction_stats.b64_decode_texts`, about three times faster than a call of
    ``a2b_base64`` per text) and placed together. Any other text goes through ``a2b_base64`` as
    before; when a text of that length is not such a text, all of them do (the same placement and
    the same errors, whatever the text)."""
    full = np.dtype(dtype).itemsize * width * cap
    chars = 4 * ((full + 2) // 3)
    picked = [slot for slot, text in enumerate(texts) if type(text) is str and len(text) == chars]
    if len(picked) * chars < _B64_AT_ONCE:  # a few texts: the call's fixed cost (about 2 us) is more than it saves
        return _load_memory_each(target, texts, dtype, width, cap)
    try:
        data = "".join([texts[slot] for slot in picked]).encode("ascii")
    except UnicodeEncodeError:  # not ASCII: a2b_base64's error, from the loop
        return _load_memory_each(target, texts, dtype, width, cap)
    out = np.empty(len(picked) * full, dtype=np.uint8)
    from .extraction_stats import B64_TABLE

    if not _b64()(np.frombuffer(data, dtype=np.uint8), chars, full, B64_TABLE, out):
        return _load_memory_each(target, texts, dtype, width, cap)
    rows = out.view(dtype).reshape(len(picked), *target.shape[1:])
    if len(picked) == len(target):
        target[:] = rows
    else:
        target[picked] = rows
    if len(picked) == len(texts):
        return [cap] * len(texts)
    rest = list(texts)
    for slot in picked:
        rest[slot] = None
    placed = _load_memory_each(target, rest, dtype, width, cap)
    for slot in picked:
        placed[slot] = cap
    return placed


_B64_AT_ONCE = 4096  # characters: 4 reservoirs, 16 distances' or 24 hashes' texts (about where both cost the same)


def _load_memory_each(target: np.ndarray, texts: list, dtype, width: int, cap: int) -> list[int]:
    """Each slot's memory (``texts[slot]``: base64 of ``dtype`` values, ``width`` a row; ``None`` or
    empty: none) placed as :meth:`_Streams.load` places it, its last ``cap`` rows at the start of
    ``target[slot]`` (``target`` zeroed, its dtype), and the rows placed per slot. The texts that
    hold exactly ``cap`` rows are placed together, one assignment for all of them; the others one
    by one as :func:`_unpack` reads them (and raises on a text of no whole rows)."""
    full = np.dtype(dtype).itemsize * width * cap
    placed = []
    full_slots: list[int] = []
    full_raw: list[bytes] = []
    for slot, text in enumerate(texts):
        if not text:
            placed.append(0)
            continue
        raw = a2b_base64(text)
        if len(raw) == full:
            full_slots.append(slot)
            full_raw.append(raw)
            placed.append(cap)
            continue
        a = np.frombuffer(raw, dtype=dtype)
        a = (a.reshape(-1, width) if width > 1 else a)[-cap:]
        target[slot, :len(a)] = a
        placed.append(len(a))
    if full_slots:
        rows = np.frombuffer(b"".join(full_raw), dtype=dtype).reshape(len(full_slots), *target.shape[1:])
        if len(full_slots) == len(target):
            target[:] = rows
        else:
            target[full_slots] = rows
    return placed


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
    (tests/detectors/test_extraction.py checks it against the public function). Constant data
    (``np.ptp`` 0, read off the sorted copy: numpy's ptp costs more than the test) gives 0.
    """
    x = np.asarray(d, dtype=np.float64).ravel()
    n = len(x)
    if n < 3:
        return 0.0
    y = np.sort(x)
    if y[-1] - y[0] == 0.0:
        return 0.0
    y -= x[n // 2]
    w, _pw, _ifault = _swilk()(y, np.zeros(n // 2, dtype=np.float64), 0)
    return float(w)


@functools.cache
def _observe():
    """:func:`extraction_stats.observe`, loaded (from numba's cache, else compiled) by a first call.

    The detector calls this when it is built, so that a worker loads numba before it freezes
    what start-up made out of the garbage collector's walks (``streams/app.py``), and its first
    prediction does not wait for the load (0.5 s) or a compilation (3.5 s without a cache)."""
    from .extraction_stats import observe

    res = np.zeros((RESERVOIR, PROJECTED_DIMS), dtype=np.float32)
    observe(res, res.astype(np.float64), np.zeros(RESERVOIR), np.zeros((RESERVOIR, RESERVOIR)), 0, 0,
            np.zeros(PROJECTED_DIMS, dtype=np.float32))
    return observe


@functools.cache
def _b64():
    """:func:`extraction_stats.b64_decode_texts`, loaded (from numba's cache, else compiled) by a first
    call: see :func:`_observe`."""
    from .extraction_stats import B64_TABLE, b64_decode_texts

    b64_decode_texts(np.frombuffer(b"AAAA", dtype=np.uint8), 4, 3, B64_TABLE, np.zeros(3, dtype=np.uint8))
    return b64_decode_texts


@functools.cache
def _projection_safe():
    """:func:`extraction_stats.projection_safe`, loaded (from numba's cache, else compiled) by a first
    call: see :func:`_observe`."""
    from .extraction_stats import projection_safe

    projection_safe(np.zeros((1, 1)), np.zeros((1, 1), dtype=np.float32), np.zeros((1, 1)),
                    np.zeros(1, dtype=np.bool_))
    return projection_safe


@functools.cache
def _run():
    """:func:`extraction_stats.run`, loaded (from numba's cache, else compiled) by a first call:
    see :func:`_observe`."""
    from .extraction_stats import run

    w, pops = _Streams(1), _Populations()
    run(0, 0, 0, np.zeros((0, 7), dtype=np.int64), w.tl, w.counts, w.hashes, w.res, w.res64, w.sq, w.pd, w.dists,
        np.zeros((1, PROJECTED_DIMS), dtype=np.float32), np.zeros((1, N_ROW)), np.zeros(1), np.zeros(N_PARAMS),
        np.zeros((2, DISTANCES)), np.zeros(4, dtype=np.int64), pops.st, pops.rows, pops.lo, pops.hi, pops.mt,
        pops.peers, pops.flags, pops.snap, np.zeros((1, 1), dtype=np.int64), swilk_coefficients())
    return run


@functools.cache
def swilk_coefficients() -> np.ndarray:
    """Row ``n`` (3 to DISTANCES): the ``n // 2`` coefficients scipy's ``swilk`` computes for a
    sample of ``n`` values before it computes W (they depend on ``n`` alone), computed by that
    routine itself; the compiled test (``extraction_stats.shapiro_w``) reads them."""
    table = np.zeros((DISTANCES + 1, max(DISTANCES // 2, 1)))
    for n in range(3, DISTANCES + 1):
        a = np.zeros(n // 2, dtype=np.float64)
        _swilk()(np.arange(n, dtype=np.float64), a, 0)
        table[n, :n // 2] = a
    return table


@functools.cache
def _swilk():
    from scipy.stats._ansari_swilk_statistics import swilk

    return swilk


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

    def __init__(self, model: str, width: int, options, arrays: "_Populations", index: int):
        self.width, self.o, self._a, self.p = width, options, arrays, index
        st = arrays.st[index]
        st[:] = 0.0
        st[S_WIDTH], st[S_OOD_RATE] = width, math.nan
        # the reservoir's generator: random.Random's, stepped in compiled code (extraction_stats.randbelow)
        words = random.Random(f"extraction-population:{model}:{width}").getstate()[1]
        arrays.mt[index] = words[:624]
        st[S_MT_POS] = words[624]

    # The population's numbers live in the detector's arrays (``_Populations``), which
    # extraction_stats.run updates; these read them.
    def _get(self, column: int) -> int:
        return int(self._a.st[self.p, column])

    filled = property(lambda self: self._get(S_FILLED))
    seen = property(lambda self: self._get(S_SEEN))
    outputs = property(lambda self: self._get(S_OUTPUTS))
    low = property(lambda self: self._get(S_LOW))
    epoch = property(lambda self: self._get(S_EPOCH))
    version = property(lambda self: self._get(S_VERSION))

    @property
    def rows(self) -> np.ndarray:
        return self._a.rows[self.p, :, :self.width]

    @property
    def ood_rate(self) -> float | None:
        r = float(self._a.st[self.p, S_OOD_RATE])
        return None if math.isnan(r) else r

    @property
    def lo(self) -> np.ndarray | None:
        return self._a.lo[self.p, :self.width] if self.ready else None

    @property
    def hi(self) -> np.ndarray | None:
        return self._a.hi[self.p, :self.width] if self.ready else None

    @property
    def ready(self) -> bool:
        return bool(self._a.st[self.p, S_READY])

    def low_rate(self) -> float | None:
        return self.low / self.outputs if self.outputs >= self.o.min_population else None

    # -- peers ---------------------------------------------------------------------------------
    def peer_rate(self, source: str | None) -> float | None:
        """Median out-of-range share of the other sources active lately (None: no such peer),
        as of the last recomputation of the peers' shares (every ``PEER_EVERY`` notes)."""
        snap = self._a.snap[self.p, :int(self._a.st[self.p, S_NSNAP])]
        shares = sorted(snap[:, 1].tolist())
        sid = self._a.source_ids.get(source)
        if sid is not None:
            own = snap[snap[:, 0] == sid, 1]
            if len(own):
                shares.pop(bisect.bisect_left(shares, float(own[0])))
        return _median_of_sorted(shares) if shares else None


class _Populations:
    """The numbers of every population of a detector, in arrays for ``extraction_stats.run``
    (grown as populations appear): scalars (``S_*``), reservoir rows, ranges, the generators'
    states, the peers (``Q_*``) with their flags, the peers' shares at the last recomputation
    (source id, share); and the ids of the sources they note."""

    def __init__(self):
        self.n = 0
        self.width = 1
        self._alloc(4, 1)
        self.source_ids: dict[str, int] = {}

    def _alloc(self, cap: int, width: int) -> None:
        old = self.__dict__.copy() if self.n else None
        self.st = np.zeros((cap, N_POP))
        self.rows = np.zeros((cap, POPULATION_ROWS, width))
        self.lo, self.hi = np.zeros((cap, width)), np.zeros((cap, width))
        self.mt = np.zeros((cap, 624), dtype=np.uint32)
        self.peers = np.zeros((cap, MAX_PEERS + 1, N_PEER), dtype=np.int64)
        self.flags = np.zeros((cap, MAX_PEERS + 1, PEER_FLAGS), dtype=np.int64)
        self.snap = np.zeros((cap, MAX_PEERS + 1, 2))
        if old is not None:
            n, w = self.n, old["width"]
            for name in ("st", "mt", "peers", "flags", "snap"):
                getattr(self, name)[:n] = old[name][:n]
            self.rows[:n, :, :w] = old["rows"][:n]
            self.lo[:n, :w], self.hi[:n, :w] = old["lo"][:n], old["hi"][:n]
        self.width = width

    def new(self, width: int) -> int:
        if self.n == len(self.st) or width > self.width:
            self._alloc(max(len(self.st), 2 * self.n), max(width, self.width))
        self.n += 1
        return self.n - 1

    def source_id(self, source: str) -> int:
        sid = self.source_ids.get(source)
        if sid is None:
            sid = self.source_ids[source] = len(self.source_ids)
        return sid


# -- per batch: the streams' unpacked memories -------------------------------------
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
        self.pd = np.zeros((n, RESERVOIR, RESERVOIR))  # pairwise squared distances (extraction_stats.observe)
        self.dists = np.zeros((n, DISTANCES))
        self.dicts: list[dict] = [{}] * n
        self.tl = np.zeros(n, dtype=np.int64)

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
                len(packed), len(h), len(d), 0.0, s["inc"] is not None, 0.0, 0.0, 0.0, 0.0)

    def load_all(self, states: list[dict]) -> None:
        """:meth:`load` of every slot of a fresh ``_Streams`` (``states[slot]``), the numbers that
        follow from the reservoirs (their float64 copy, their rows' squared norms) computed for
        all at once: the same arrays, to the bit. A memory at its capacity (a grown stream's, the
        most common) is placed with the others at capacity in one assignment (:func:`_load_memory`)."""
        self.dicts[:len(states)] = states
        self.tl[:len(states)] = [s["tl"] for s in states]
        nh = _load_memory(self.hashes, [s["h"] for s in states], np.uint32, 1, HASHES)
        nr = _load_memory(self.res, [s["r"] for s in states], np.float32, PROJECTED_DIMS, RESERVOIR)
        nd = _load_memory(self.dists, [s["d"] for s in states], np.float32, 1, DISTANCES)
        if states:
            self.counts[:] = [(s["n"], s["rep"], s["nd"], s["ood"], s["nj"], s["close"], s["nc"], s["low"],
                               s.get("ep", 0), r, h, d, 0.0, s["inc"] is not None, 0.0, 0.0, 0.0, 0.0)
                              for s, h, r, d in zip(states, nh, nr, nd)]
        self.res64[:] = self.res
        self.sq[:] = (self.res64 * self.res64).sum(axis=2)

    def sync(self, slot: int) -> None:
        """The counts written back into the stream's dict (for the judging, and at the batch's end)."""
        _sync(self.dicts[slot], self.counts[slot].tolist())

    def packed(self, slot: int) -> dict:
        self.sync(slot)
        s, c = self.dicts[slot], self.counts[slot]
        s["tl"] = int(self.tl[slot])
        if c[C_CHANGED]:
            s["h"] = _pack(self.hashes[slot, :int(c[C_HASHES])].astype(np.uint32), np.uint32)
            s["r"] = _pack(self.res[slot, :int(c[C_RES])], np.float32)
            s["d"] = _pack(self.dists[slot, :int(c[C_DISTS])], np.float32)
        return s

    def packed_all(self) -> list[dict]:
        """:meth:`packed` of every slot, in slot order: the same dicts, written in the same order.
        Each memory is converted (hashes to uint32, distances to float32) and made bytes once for
        every slot; a slot's text is encoded from its stretch of those bytes, not from a slice,
        a conversion and a copy of its own."""
        counts = self.counts.tolist()
        tls = self.tl.tolist()
        h_bytes = self.hashes.astype(np.uint32).tobytes()
        r_bytes = self.res.tobytes()
        d_bytes = self.dists.astype(np.float32).tobytes()
        h_row, r_row, d_row = 4 * HASHES, 4 * RESERVOIR * PROJECTED_DIMS, 4 * DISTANCES
        out = []
        for slot, (s, c, tl) in enumerate(zip(self.dicts, counts, tls)):
            _sync(s, c)
            s["tl"] = tl
            if c[C_CHANGED]:
                a = slot * h_row
                s["h"] = b2a_base64(h_bytes[a:a + 4 * min(int(c[C_HASHES]), HASHES)], newline=False).decode("ascii")
                a = slot * r_row
                end = a + 4 * PROJECTED_DIMS * min(int(c[C_RES]), RESERVOIR)
                s["r"] = b2a_base64(r_bytes[a:end], newline=False).decode("ascii")
                a = slot * d_row
                s["d"] = b2a_base64(d_bytes[a:a + 4 * min(int(c[C_DISTS]), DISTANCES)], newline=False).decode("ascii")
            out.append(s)
        return out


def _sync(s: dict, c: list[float]) -> None:
    """A stream's counts (``c``, a row of :attr:`_Streams.counts`) written back into its dict."""
    s["n"], s["rep"] = int(c[C_N]), int(c[C_REP])
    s["nd"], s["ood"], s["nj"], s["close"], s["nc"], s["low"] = c[C_ND], c[C_OOD], c[C_NJ], c[C_CLOSE], c[C_NC], c[C_LOW]
    if c[C_EP] or "ep" in s:
        s["ep"] = int(c[C_EP])
    if c[C_WSET]:
        s["w"] = round(c[C_W], 4)


def _share_of(k: float, n: float) -> float:
    return k / n if n else 0.0


# -- the detector ------------------------------------------------------------------------------
class ExtractionDetector(Detector):
    name = "extraction.queries"
    kinds = ("prediction",)
    # What update reads of an event (the worker's events topic carries no other field of its kinds).
    event_fields = ("input", "kind", "model", "output", "principal", "src_ip", "ts")
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
        _run()
        _crc_words() if _LITTLE_ENDIAN else _crc()
        _b64()
        _projection_safe()
        self.populations: dict[tuple[str, int], Population] = {}
        self._model_populations: dict[str, list[Population]] = {}  # model -> its populations, in creation order
        self._pops = _Populations()  # their numbers, in arrays
        self._pop_list: list[Population] = []  # by index in those arrays
        self._model_codes: dict[str, int] = {}  # model -> its index in the arrays of a batch

    # -- state -------------------------------------------------------------------------------
    @staticmethod
    def _fresh(ts: int) -> dict:
        return {"tl": ts, "n": 0, "rep": 0, "nd": 0.0, "ood": 0.0, "nj": 0.0, "close": 0.0,
                "nc": 0.0, "low": 0.0, "h": "", "r": "", "d": "", "w": None, "inc": None, "ep": 0}

    def update(self, batch: EventBatch, state: StateStore) -> list[dict]:
        # Events are taken in event order, and every computation in it: the population a stream
        # is judged against changes from one query to the next. Per batch in Python: reading the
        # predictions' fields as columns (no event dict), their query rows (per width at once:
        # conversion, projection; a hash per row), unpacking the streams' state into
        # arrays (``_Streams``) and packing it back. Per event in compiled code
        # (``extraction_stats.run``): the streams fed, Shapiro-Wilk when due, the population's notes,
        # learning and ranges learnt again. It stops for what stays in Python: a stream idle past
        # the gap, the judging when a ratio test passes.
        o = self.options
        gap = int(o.gap_seconds * 1e9)
        out: list[dict] = []
        idx = batch.indices_where("kind", "prediction")
        if not idx:
            return out
        # The fields of the predictions, read as columns (a batch of columns makes no dict) from
        # the predictions' parts only (kind_values: not a field of every event of the batch).
        columns = [kind_values(batch, ("prediction",), f)
                   for f in ("ts", "principal", "src_ip", "model", "input", "output")]
        # The batch's streams, the events' rows of ``ev`` and their query rows: read at once when
        # every prediction has the common shape (_read_common), else event by event.
        read = self._read_common(*columns)
        if read is None:
            read = self._read_each(*columns)
            if read is None:
                return out
        keys, first_ts, todo, ev, rows, x, vals = read

        w = _Streams(len(keys))
        loaded = []
        for slot, key in enumerate(keys):
            s = state.get(key)
            s = dict(s) if s is not None else None
            if s is None or first_ts[slot] - s["tl"] > gap:
                s = self._fresh(first_ts[slot])
            loaded.append(s)
        w.load_all(loaded)
        model_codes = self._model_codes
        pops = self._pops
        most = max((len(v) for v in self._model_populations.values()), default=0)
        model_pops = np.zeros((len(model_codes), 1 + most), dtype=np.int64)
        for model, code in model_codes.items():
            ps = self._model_populations.get(model, ())
            model_pops[code, 0] = len(ps)
            model_pops[code, 1:1 + len(ps)] = [p.p for p in ps]
        params = np.array([o.min_queries, o.window, o.close_ratio, o.low_confidence, o.normality_min,
                           NORMALITY_EVERY, 0.0, o.min_ratio * o.close_base, 0.0, o.ood_features, o.min_ratio,
                           o.base_floor, o.min_population, o.gap_seconds * 1e9, gap, o.range_quantile,
                           o.range_margin])
        snap = np.zeros((2, DISTANCES))
        fed = np.zeros(4, dtype=np.int64)
        run = _run()
        swilk_a = swilk_coefficients()
        counts, dicts = w.counts, w.dicts
        i, phase, j = 0, 0, 0
        while True:
            code, i, j, which = run(i, phase, j, ev, w.tl, counts, w.hashes, w.res, w.res64, w.sq, w.pd, w.dists, x,
                                    rows, vals, params, snap, fed, pops.st, pops.rows, pops.lo, pops.hi, pops.mt,
                                    pops.peers, pops.flags, pops.snap, model_pops, swilk_a)
            if code == 0:
                break
            if code == 1:  # a stream idle past the gap starts afresh
                w.load(which, self._fresh(int(ev[i, 4])))
                phase = 0
            else:  # code 2: the judging (W, when a test was due, is in the counts: w.sync writes it)
                principal, src, model, slots = todo[i]
                ts = int(ev[i, 4])
                flagged = False
                for k, slot in enumerate(slots):
                    s = dicts[slot]
                    # The pooled source stream speaks only for what no principal of it shows alone.
                    if fed[2 * k + 1] and (not flagged or s["inc"] is not None):
                        etype, eid = ("principal", principal) if k == 0 and principal is not None else ("src_ip", src)
                        w.sync(slot)
                        alert = self._judge(s, model, ts, etype, eid, src, src or principal)
                        if alert is not None:
                            out.append(alert)
                        counts[slot, C_INC] = s["inc"] is not None
                    if s["inc"] is not None:
                        flagged = True
                phase = 1
        for key, s in zip(keys, w.packed_all()):
            state.set(key, s)
        return merge_alerts(out)

    def _read_each(self, ts_col: list, principal_col: list, src_col: list, model_col: list, input_col: list,
                   output_col: list) -> tuple | None:
        """The batch's streams and rows event by event (any shape of input and output): the keys
        of its streams by slot and the time of each one's first event, per event (principal,
        source, model, slots), ``ev`` and the query rows (:func:`_query_arrays`); ``None`` when no
        prediction counts. Streams, model codes, source ids and populations are created in the
        order the events meet them."""
        keys: list[str] = []  # the batch's streams, by slot
        first_ts: list[int] = []
        slot_of: dict[str, int] = {}
        streams_of: dict[tuple, tuple] = {}  # (principal, source, model) -> (its slots, event's row of ev)
        pop_of: dict[tuple[str, int], int] = {}
        vecs: list[list | None] = []  # per query row: its input (numbers, all finite) or None
        confs: list[float | None] = []
        pop_rows: list[int] = []
        todo = []  # per event: (principal, source, model, slots)
        ev_rows = []  # per event: the row of ``ev`` (run's layout) but its rows' span
        for ts, principal, src, model, inp, outp in zip(ts_col, principal_col, src_col, model_col, input_col,
                                                       output_col):
            if type(ts) is not int or (principal is None and src is None):
                continue
            model = model or "-"
            try:
                got = streams_of.get((principal, src, model))
            except TypeError:  # a value that cannot be a key (a list): the streams are found afresh
                got = None
            if got is None:
                got = self._streams_of(principal, src, model, ts, keys, first_ts, slot_of)
                try:
                    streams_of[(principal, src, model)] = got
                except TypeError:
                    pass
            r0 = len(vecs)
            for vec, conf, _cls in _read_rows(inp, outp):
                if vec is not None and not _finite(vec):
                    vec = None
                vecs.append(vec)
                confs.append(conf)
                if vec is None:
                    pop_rows.append(-1)
                else:  # the populations this event teaches, created in the order the learning reaches them
                    pk = (model, len(vec))
                    p = pop_of.get(pk)
                    if p is None:
                        p = pop_of[pk] = self._population(model, len(vec)).p
                    pop_rows.append(p)
            slots, (a, b, source, code) = got
            ev_rows.append((a, b, r0, len(vecs), ts, source, code))
            todo.append((principal, src, model, slots))
        if not todo:
            return None
        ev = np.array(ev_rows, dtype=np.int64)
        return (keys, first_ts, todo, ev, *_query_arrays(vecs, confs, pop_rows))

    def _read_common(self, ts_col: list, principal_col: list, src_col: list, model_col: list, input_col: list,
                     output_col: list) -> tuple | None:
        """:meth:`_read_each` for a batch whose every prediction counts (an int time, a principal)
        and has the common shape (``input`` a list of rows of numbers, all finite, ``output`` a list
        of as many outputs, one per row): the same streams, rows and arrays, to the bit, and the same
        streams, model codes, source ids and populations created in the same order; read per
        column, in C where it can be (one hash per prediction of its (principal, source, model),
        the types of all the rows' numbers in one pass, the rows of a width converted at once, the
        scores' confidences in numpy). ``None`` (nothing created yet) for any other batch."""
        n = len(ts_col)
        if n < _COMMON_MIN or not _INTS.issuperset(set(map(type, ts_col))) or None in principal_col:
            return None
        if set(map(type, input_col)) != _LIST or set(map(type, output_col)) != _LIST:
            return None
        per_event = list(map(len, input_col))
        if per_event != list(map(len, output_col)) or not all(per_event):
            return None
        inputs = list(chain.from_iterable(input_col))
        if set(map(type, inputs)) != _LIST:
            return None
        widths = list(map(len, inputs))
        if not all(widths) or not _NUMBER_TYPES.issuperset(set(map(type, chain.from_iterable(inputs)))):
            return None
        outputs = list(chain.from_iterable(output_col))
        models = model_col if all(model_col) else [m or "-" for m in model_col]
        try:
            ts = np.fromiter(ts_col, dtype=np.int64, count=n)
            triples: dict[tuple, int] = {}
            first = np.fromiter(map(triples.setdefault, zip(principal_col, src_col, models), range(n)),
                                dtype=np.int64, count=n)
            # The rows of one width at once (np.array of the lists, as _query_arrays converts them),
            # in the order their widths first come; every row must be finite (else event by event).
            blocks = []
            order = dict.fromkeys(widths)
            if len(order) == 1:
                blocks.append((widths[0], slice(None), _rows_array(inputs, widths[0], len(inputs))))
            else:
                width_of = np.array(widths, dtype=np.int64)
                for width in order:
                    members = np.flatnonzero(width_of == width)
                    blocks.append((width, members, _rows_array(map(inputs.__getitem__, members.tolist()), width,
                                                               len(members))))
            for _width, _members, xs in blocks:
                if not np.isfinite(xs).all():
                    return None
            if _SCORE_TYPES.issuperset(set(map(type, outputs))):
                # One score per row: max(p, 1 - p) for a score in [0, 1] (_confidence's reading of it).
                o = np.array(outputs, dtype=np.float64)
                has_conf = (o >= 0.0) & (o <= 1.0)
                conf = np.where(has_conf, np.maximum(o, 1.0 - o), 0.0)
            else:
                confs = [_confidence(o)[0] for o in outputs]
                has_conf = np.array([c is not None for c in confs], dtype=np.bool_)
                conf = np.array([0.0 if c is None else c for c in confs], dtype=np.float64)
        except (TypeError, OverflowError):  # an unhashable value; a time, or a number, beyond 64 bits
            return None
        # Nothing can fail from here: the batch's streams, in the order of their first events.
        keys: list[str] = []
        first_ts: list[int] = []
        slot_of: dict[str, int] = {}
        slots_of = []
        at = np.empty((len(triples), 4), dtype=np.int64)
        for k, ((principal, src, model), i) in enumerate(triples.items()):
            slots, at[k] = self._streams_of(principal, src, model, ts_col[i], keys, first_ts, slot_of)
            slots_of.append(slots)
        code = _first_codes(first, triples)  # per event, its triple's number
        # The populations, created in the order of their first rows (the order the event loop meets them).
        n_rows = len(inputs)
        pairs: dict[tuple, int] = {}
        row_models = map(models.__getitem__, np.repeat(np.arange(n), per_event).tolist())
        pair_first = np.fromiter(map(pairs.setdefault, zip(row_models, widths), range(n_rows)), dtype=np.int64,
                                 count=n_rows)
        pop_at = np.array([self._population(model, width).p for model, width in pairs], dtype=np.int64)
        rows = np.zeros((n_rows, N_ROW))
        x = np.zeros((n_rows, PROJECTED_DIMS), dtype=np.float32)
        rows[:, R_POP] = pop_at[_first_codes(pair_first, pairs)]
        rows[:, R_HAS_CONF] = has_conf
        rows[:, R_CONF] = conf
        rows[:, R_VEC] = 1.0
        off = 0
        vals = []
        for width, members, xs in blocks:
            m = len(xs)
            x[members] = project(xs)
            rows[members, R_HASH] = _row_hashes(xs, width)
            rows[members, R_OFF] = np.arange(off, off + m * width, width)
            rows[members, R_WIDTH] = width
            vals.append(xs.ravel())
            off += m * width
        counts = np.array(per_event, dtype=np.int64)
        ends = np.cumsum(counts)
        ev = np.empty((n, 7), dtype=np.int64)
        got = at[code]
        ev[:, 0], ev[:, 1], ev[:, 5], ev[:, 6] = got[:, 0], got[:, 1], got[:, 2], got[:, 3]
        ev[:, 2], ev[:, 3], ev[:, 4] = ends - counts, ends, ts
        todo = _Todo(principal_col, src_col, models, code, slots_of)
        return keys, first_ts, todo, ev, rows, x, np.concatenate(vals)

    def _streams_of(self, principal: Any, src: Any, model: str, ts: int, keys: list[str], first_ts: list[int],
                    slot_of: dict[str, int]) -> tuple[list[int], tuple[int, int, int, int]]:
        """The slots of an event's streams (principal, pooled source), numbered in the order the
        batch first meets them, and what ``ev`` holds of them: both slots (-1: none), the source's
        id, the model's code."""
        name = self.name
        slots = []
        for key in ((f"{name}/p|{src or '-'}|{principal}|{model}" if principal is not None else None),
                    (f"{name}/s|{src}|{model}" if src is not None else None)):
            if key is None:
                continue
            slot = slot_of.get(key)
            if slot is None:
                slot = slot_of[key] = len(keys)
                keys.append(key)
                first_ts.append(ts)
            slots.append(slot)
        code = self._model_codes.get(model)
        if code is None:
            code = self._model_codes[model] = len(self._model_codes)
        return slots, (slots[0], slots[1] if len(slots) > 1 else -1, self._pops.source_id(src or principal), code)

    def _population(self, model: str, width: int) -> Population:
        p = self.populations.get((model, width))
        if p is None:
            p = self.populations[(model, width)] = Population(model, width, self.options, self._pops,
                                                              self._pops.new(width))
            self._pop_list.append(p)
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

    def _judge(self, s: dict, model: str, ts: int, etype: str, eid: str, src_ip: Any, source: Any) -> dict | None:
        if not self._could_hit(s, model):
            return None
        o = self.options
        findings = []
        pops = self._model_populations.get(model, [])
        pop = next((p for p in pops if p.ready), None)
        if pop is not None and s["nj"] >= o.min_queries:
            peers = pop.peer_rate(source)
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
            evidence["src_ip"] = src_ip
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
