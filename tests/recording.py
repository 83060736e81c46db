"""Events that note which of their fields are read: what a detector's ``event_fields`` must hold."""

from __future__ import annotations

ALL = "*"  # noted for a read of every field (iteration, items, a copy)


class Recording(dict):
    """An event (a dict) that adds every field read of it to ``read`` (:data:`ALL`: all of them).

    >>> read = set()
    >>> e = Recording({"kind": "request", "ts": 1, "path": "/"}, read)
    >>> e.get("kind"), e["ts"], "model" in e, sorted(read)
    ('request', 1, False, ['kind', 'model', 'ts'])
    """

    def __init__(self, event: dict, read: set[str]):
        super().__init__(event)
        self.read = read

    def get(self, key, default=None):
        self.read.add(key)
        return super().get(key, default)

    def __getitem__(self, key):
        self.read.add(key)
        return super().__getitem__(key)

    def __contains__(self, key):
        self.read.add(key)
        return super().__contains__(key)

    def keys(self):
        self.read.add(ALL)
        return super().keys()

    def items(self):
        self.read.add(ALL)
        return super().items()

    def values(self):
        self.read.add(ALL)
        return super().values()

    def __iter__(self):
        self.read.add(ALL)
        return super().__iter__()

    def copy(self):
        self.read.add(ALL)
        return super().copy()


def recorded(batches: list[list[dict]], read: set[str]) -> list[list[dict]]:
    """``batches`` with every event a :class:`Recording` into ``read``."""
    return [[Recording(e, read) for e in b] for b in batches]
