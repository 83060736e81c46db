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

The types of a field's values are not scanned where the parsers vouch for them
(:meth:`EventBatch.vouched`: the Envoy parser's numbers, from its structs' types): a vouch is a
superset of the values' types, so it answers the decisions it can answer exactly and no other.
:meth:`types` stays the exact set: the vouch when it is one type (and there are values: a
non-empty subset of one type is that type), else a scan. ``types(field, within)`` gives the vouch
itself when ``within`` holds it (``within.issuperset`` of it then answers as of the exact set:
true), else the exact set: for a reader whose only test is ``within.issuperset(types)``. The
arrays' decisions are made so (:meth:`_array`).

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

    def vouched(self, field: str) -> frozenset | None:
        """The types the parsers vouch the field's values are among (a superset of :meth:`types`;
        :meth:`EventBatch.vouched`), or ``None``: no vouch (a part of dicts, plain lists)."""
        if self.batch is None:
            return None
        return self._get(f"{field}/vouched", lambda: self.batch.vouched(field, self.kinds))

    def types(self, field: str, within: frozenset | None = None) -> frozenset:
        """The types of the field's values (``NoneType`` for an absent one): exact, from the
        parsers' vouch when that is one type, else from a scan of the values.

        With ``within``: the vouch when ``within`` holds every type of it (no scan: a superset of
        the exact set, for which ``within.issuperset`` is true as it is of the exact set), else the
        exact set. Only for a test ``within.issuperset(...)`` of the result."""
        if within is not None:
            vouch = self.vouched(field)
            if vouch is not None and within.issuperset(vouch):
                return vouch
        return self._get(f"{field}/types", lambda: self._exact(field))

    def _exact(self, field: str) -> frozenset:
        values = self.values(field)
        vouch = self.vouched(field)
        if vouch is not None and len(vouch) == 1:
            return vouch if values else frozenset()
        return frozenset(map(type, values))

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
        and the status's ints are read first anyway). The types are the vouch when ``types`` holds it
        (:meth:`types`): a vouch of ints and ``None`` is not "ints only", and the list is converted
        (the same floats as the cast, bit for bit)."""
        def build():
            found = self.types(field, types)
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
