"""One field of a batch's events of some kinds, as a list, shared by the detectors that read it.

``anomaly.model`` and ``drift.model`` read the same fields of every request (``model``, ``ts``,
``status``, ``tokens_out``): :func:`kind_values` reads a field once per batch with
:meth:`EventBatch.values_where` (from the columns of the parts that hold those kinds: no event's
dict is made, no other event is read; where those events lie is worked out once per batch for
every field), and every later detector of the batch gets the same list.

>>> from ramparts.events import columnar
>>> b = columnar([{"kind": "request", "ts": 1, "model": "m"}, {"kind": "gpu", "ts": 2}, {"kind": "request", "ts": 3}])
>>> kind_values(b, ("request",), "model"), kind_values(b, ("request",), "ts"), kind_values(b, ("gpu",), "model")
(['m', None], [1, 3], [None])
"""

from __future__ import annotations

from ramparts.events import EventBatch, _getter, values_of


def kind_values(batch: EventBatch, kinds: tuple[str, ...], field: str) -> list:
    """``field`` of each event of ``kinds`` (``None`` where absent), in batch order; shared: do not change it."""
    return batch.shared(f"kind_values/{'/'.join(kinds)}/{field}", lambda b: _pick(b, kinds, field))


def _pick(batch: EventBatch, kinds: tuple[str, ...], field: str) -> list:
    if batch.holds_dicts:  # a batch of dicts (or one whose dicts were made): read the kinds' events only
        idx = batch.indices_where("kind", *kinds)
        events = batch.shared(f"kind_values/{'/'.join(kinds)}", lambda b: _getter(idx)(b.events))
        return values_of(events, field)
    return batch.values_where(field, "kind", *kinds)  # from the kinds' parts only
