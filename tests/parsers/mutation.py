"""Mutating a record's keys for the fast-path property tests: a hypothesis strategy that draws,
per key, either a value of its domain or no change, and the edit that applies such a draw."""

from __future__ import annotations

from hypothesis import strategies as st

DROP = object()  # a drawn value that removes the key
KEEP = object()  # a draw that leaves the key as it is


def changes(domains: dict, keep: int):
    """Per key of ``domains``, one of its values once in ``keep + 1`` draws, else KEEP."""
    return st.fixed_dictionaries({
        key: st.tuples(st.integers(0, keep), st.sampled_from(values)).map(lambda t: t[1] if t[0] == 0 else KEEP)
        for key, values in domains.items()})


def apply(table: dict, drawn: dict) -> None:
    """Apply a draw of :func:`changes` to ``table`` in place."""
    for key, value in drawn.items():
        if value is DROP:
            table.pop(key, None)
        elif value is not KEEP:
            table[key] = value
