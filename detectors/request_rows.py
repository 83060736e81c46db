"""A batch's gateway requests read once for the detectors that count them per principal.

``extraction.volume``, ``access.new_source`` and ``access.new_model`` read the same few fields of
every request. They share one read of each field for the requests (``kind_values``, which the
model detectors read too: from the requests' parts only, in C; no event's dict is made, a batch of
columns hands its columns as they are) and one hash of each request's (principal, status, source,
model), and do the rest per distinct value, or on arrays. The requests' model codes that
``anomaly.model`` and ``drift.model`` read (:meth:`.TypedColumns.codes`) are numbered from the
distinct rows here too, not by a second dict lookup per request.

>>> from ramparts.events import EventBatch
>>> b = EventBatch([{"kind": "request", "principal": "k", "status": 200, "src_ip": "a", "model": "m", "ts": 1},
...                 {"kind": "gpu", "ts": 2},
...                 {"kind": "request", "principal": "k", "status": 200, "src_ip": "a", "model": "m", "ts": 3}])
>>> r = request_rows(b)
>>> r.index, r.cols[TS], r.first.tolist(), r.distinct, r.counts.tolist()
([0, 2], [1, 3], [0, 0], {('k', 200, 'a', 'm'): 0}, [2, 0])
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from ramparts.events import EventBatch

from .kind_columns import kind_values
from .typed_columns import TypedColumns

FIELDS = ("principal", "status", "src_ip", "model", "ts", "tokens_in", "tokens_out")
PRINCIPAL, STATUS, SRC_IP, MODEL, TS, TOKENS_IN, TOKENS_OUT = range(len(FIELDS))

# Statuses the counts by distinct value decide exactly: equal values of these types decide
# alike. A float 500.0 (kept: it is not an int) would count in a row of the int 500 (refused).
_PLAIN_STATUS = frozenset((int, type(None)))
_REQUEST = ("request",)


class RequestRows(NamedTuple):
    """The requests of a batch, at batch indices ``index``: ``cols``, per name of ``FIELDS`` (in
    its order: ``cols[TS]``) the list of that field of every request (``None`` where absent);
    ``distinct``, each distinct (principal, status, src_ip, model) with the position of its
    first request, in the order of their first requests; ``first``, per request the position of
    the first request with its values; ``counts``, per position the number of requests whose
    first it is (0 elsewhere); ``plain_status``: every status is an int or None (else the counts
    by distinct value do not decide exactly). The lists are shared: do not change them."""

    index: list[int]
    cols: tuple[list, ...]
    distinct: dict[tuple, int]
    first: np.ndarray
    counts: np.ndarray
    plain_status: bool


def request_rows(batch: EventBatch) -> RequestRows | None:
    """The batch's :class:`RequestRows`, built once per batch for every detector that asks;
    ``None`` when a request holds an unhashable value (bad input) in one of the four fields."""
    return batch.shared("detectors.request_rows", _request_rows)


def _request_rows(batch: EventBatch) -> RequestRows | None:
    index = batch.indices_where("kind", "request")
    # The requests' fields from their parts only, as anomaly.model and drift.model read them.
    cols = tuple(kind_values(batch, _REQUEST, f) for f in FIELDS)
    distinct: dict[tuple, int] = {}
    n = len(index)
    try:  # straight into an array (no list of n ints in between)
        first_arr = np.fromiter(map(distinct.setdefault, zip(cols[PRINCIPAL], cols[STATUS], cols[SRC_IP], cols[MODEL]),
                                    range(n)), dtype=np.int64, count=n)
    except TypeError:  # a list or an object where a value was expected
        return None
    counts = np.bincount(first_arr, minlength=n)
    # The statuses' types as anomaly.model and drift.model read them (made once per batch for all).
    typed = TypedColumns(batch, _REQUEST)
    plain = _PLAIN_STATUS.issuperset(typed.types("status", _PLAIN_STATUS))
    # The models' codes as TypedColumns.codes numbers them (in the order first met) from the distinct
    # rows, which are in the order of their first requests: no second dict lookup per request.
    typed.put_codes("model", *_model_codes(distinct, first_arr))
    return RequestRows(index, cols, distinct, first_arr, counts, plain)


def _model_codes(distinct: dict[tuple, int], first: np.ndarray) -> tuple[np.ndarray, list]:
    """Per request the code of its model, numbered in the order the models are first met, and the
    models by code (:meth:`TypedColumns.codes` of the requests' ``model``), from the distinct rows."""
    models: dict = {}
    of_row = np.fromiter((models.setdefault(key[MODEL], len(models)) for key in distinct), dtype=np.int64,
                         count=len(distinct))
    row_at = np.zeros(len(first), dtype=np.int64)  # a first request's position -> its distinct row
    row_at[np.fromiter(distinct.values(), dtype=np.int64, count=len(distinct))] = np.arange(len(distinct))
    return of_row[row_at[first]], list(models)
