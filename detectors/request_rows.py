"""A batch's gateway requests read once for the detectors that count them per principal.

``extraction.volume``, ``access.new_source`` and ``access.new_model`` read the same few fields of
every request. Reading an event's dict costs more than anything done with what it holds (the
dicts and their values lie all over memory: each read is a cache miss), so the three share one
read per request, in C (``itemgetter`` over the requests), and one hash of each request's
(principal, status, source, model), and do the rest per distinct value, or on arrays.

>>> from ramparts.events import EventBatch
>>> b = EventBatch([{"kind": "request", "principal": "k", "status": 200, "src_ip": "a", "model": "m", "ts": 1},
...                 {"kind": "gpu", "ts": 2},
...                 {"kind": "request", "principal": "k", "status": 200, "src_ip": "a", "model": "m", "ts": 3}])
>>> r = request_rows(b)
>>> r.index, r.first.tolist(), r.distinct, r.counts.tolist()
([0, 2], [0, 0], {('k', 200, 'a', 'm'): 0}, [2, 0])
"""

from __future__ import annotations

from operator import itemgetter
from typing import NamedTuple

import numpy as np

from ramparts.events import EventBatch

FIELDS = ("principal", "status", "src_ip", "model", "ts", "tokens_in", "tokens_out")
PRINCIPAL, STATUS, SRC_IP, MODEL, TS, TOKENS_IN, TOKENS_OUT = range(len(FIELDS))

_ROW = itemgetter(*FIELDS)
_KEY = itemgetter(PRINCIPAL, STATUS, SRC_IP, MODEL)
_STATUS = itemgetter(STATUS)
# Statuses the counts by distinct value decide exactly: equal values of these types decide
# alike. A float 500.0 (kept: it is not an int) would count in a row of the int 500 (refused).
_PLAIN_STATUS = frozenset((int, type(None)))


class RequestRows(NamedTuple):
    """The requests of a batch: ``reqs`` (the dicts) at batch indices ``index``; ``rows``, the
    ``FIELDS`` of each; ``distinct``, each distinct (principal, status, src_ip, model) with the
    position of its first request, in the order of their first requests; ``first``, per
    request the position of the first request with its values; ``counts``, per position the
    number of requests whose first it is (0 elsewhere); ``plain_status``: every status is an
    int or None (else the counts by distinct value do not decide exactly)."""

    reqs: list[dict]
    index: list[int]
    rows: list[tuple]
    distinct: dict[tuple, int]
    first: np.ndarray
    counts: np.ndarray
    plain_status: bool


def request_rows(batch: EventBatch) -> RequestRows | None:
    """The batch's :class:`RequestRows`, built once per batch for every detector that asks;
    ``None`` when a request holds an unhashable value (bad input) in one of the four fields."""
    return batch.shared("detectors.request_rows", _request_rows)


def _request_rows(batch: EventBatch) -> RequestRows | None:
    ev = batch.events
    index = batch.indices_where("kind", "request")
    reqs = list(map(ev.__getitem__, index))
    try:
        rows = list(map(_ROW, reqs))
    except KeyError:  # a parser that leaves a field out
        rows = [tuple(map(e.get, FIELDS)) for e in reqs]
    distinct: dict[tuple, int] = {}
    try:
        first = list(map(distinct.setdefault, map(_KEY, rows), range(len(rows))))
    except TypeError:  # a list or an object where a value was expected
        return None
    first_arr = np.array(first, dtype=np.int64)
    counts = np.bincount(first_arr, minlength=len(rows))
    plain = _PLAIN_STATUS.issuperset(set(map(type, map(_STATUS, rows))))
    return RequestRows(reqs, index, rows, distinct, first_arr, counts, plain)
