"""A field of a batch's events of some kinds as numpy arrays, converted once per batch for every
detector that reads it.

``anomaly.model`` and ``drift.model`` read the same fields of every request (``model``, ``ts``,
``status``, ``tokens_out``) and each turned the same lists (:func:`.kind_columns.kind_values`)
into arrays: a scan of the values' types, ``np.array`` of the list, a dict lookup per event to
number the models. :class:`TypedColumns` does each of these once per batch
(:meth:`EventBatch.shared`); what a detector then makes of them (which types it accepts, what
it does with the others) stays its own. Where another array of the batch holds the same numbers
the conversion is not made again: the floats of an all-int field are its int64 array cast, the
requests' model codes those :mod:`.request_rows` numbers from its distinct rows
(:meth:`TypedColumns.put_codes`).

Over plain lists (:meth:`TypedColumns.of_lists`: tests and callers without a batch) the same
conversions are made, not shared.

>>> from ramparts.events import columnar
>>> b = columnar([{"kind": "request", "ts": 1, "model": "m", "status": 200},
...               {"kind": "gpu", "ts": 2},
...               {"kind": "request", "ts": 3, "model": "n", "status": "x"}])
>>> c = TypedColumns(b, ("request",))
>>> sorted(t.__name__ for t in c.types("status")), c.floats("status"), c.ints("ts").tolist()
(['int', 'str'], None, [1, 3])
>>> codes, keys = c.codes("model")
>>> codes.tolist(), keys
([0, 1], ['m', 'n'])
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

from ramparts.events import EventBatch

from .kind_columns import kind_values

_FLOAT_TYPES = frozenset((int, float, type(None)))  # what np.array(..., float64) reads as Python reads them
_INT_TYPES = frozenset((int, bool))  # what np.array(..., int64) reads exactly
_INT_ONLY = frozenset((int,))


class _Codes(dict):
    """Value -> a small code, numbered in the order the values are met."""

    def __missing__(self, key):
        code = self[key] = len(self)
        return code


class TypedColumns:
    """The fields of a batch's events of ``kinds``, as arrays shared by the batch's detectors.

    Every result is shared: do not change it (copy it first)."""

    def __init__(self, batch: EventBatch | None, kinds: tuple[str, ...], lists: dict[str, list] | None = None):
        self.batch = batch
        self.kinds = kinds
        self._lists = lists
        self._local: dict[str, Any] = {}
        self._prefix = f"typed/{'/'.join(kinds)}/"

    @classmethod
    def of_lists(cls, lists: dict[str, list]) -> "TypedColumns":
        """The same conversions of plain lists (one per field, equally long), kept by this object only."""
        return cls(None, (), lists)

    def _get(self, name: str, build: Callable[[], Any]) -> Any:
        if self.batch is None:
            try:
                return self._local[name]
            except KeyError:
                got = self._local[name] = build()
                return got
        return self.batch.shared(self._prefix + name, lambda _b: build())

    def values(self, field: str) -> list:
        """The field of each event (``None`` where absent), in batch order."""
        if self.batch is None:
            return self._lists[field]
        return kind_values(self.batch, self.kinds, field)

    def types(self, field: str) -> frozenset:
        """The types of the field's values (``NoneType`` for an absent one)."""
        return self._get(f"{field}/types", lambda: frozenset(map(type, self.values(field))))

    def floats(self, field: str) -> np.ndarray | None:
        """``np.array(values, float64)`` (``None`` read as nan) when every value is an int, a float or
        ``None`` (bool is not read: it is a type of its own) and none overflows a float; else ``None``."""
        return self._array(field, "floats", _FLOAT_TYPES, np.float64)

    def ints(self, field: str) -> np.ndarray | None:
        """``np.array(values, int64)`` when every value is an int or a bool and none is beyond
        int64; else ``None``."""
        return self._array(field, "ints", _INT_TYPES, np.int64)

    def _array(self, field: str, name: str, types: frozenset, dtype: type) -> np.ndarray | None:
        """``np.array(values, dtype)`` when every value's type is one of ``types`` and none
        overflows it; else ``None``.

        The floats of ints only are their ``int64`` array cast (exact: ``int64`` to ``float64``
        rounds to nearest as Python's ``float(int)`` does; cheaper than converting the list again,
        and the status's ints are read first anyway)."""
        def build():
            found = self.types(field)
            if not types.issuperset(found):
                return None
            if dtype is np.float64 and found == _INT_ONLY:
                ints = self.ints(field)
                if ints is not None:
                    return ints.astype(np.float64)
            try:
                return np.array(self.values(field), dtype=dtype)
            except OverflowError:
                return None
        return self._get(f"{field}/{name}", build)

    def put_codes(self, field: str, codes: np.ndarray, values: list) -> None:
        """Share ``codes(field)`` made elsewhere (it must be what :meth:`codes` makes); kept only
        when it is not made yet."""
        self._get(f"{field}/codes", lambda: (codes, values))

    def codes(self, field: str) -> tuple[np.ndarray, list] | None:
        """Per event a code of its value, numbered in the order the values are first met, and the
        values by code; ``None`` when a value cannot be a dict key."""
        def build():
            code = _Codes()
            values = self.values(field)
            try:
                codes = np.fromiter(map(code.__getitem__, values), dtype=np.int64, count=len(values))
            except TypeError:  # an unhashable value
                return None
            return codes, list(code)
        return self._get(f"{field}/codes", build)
