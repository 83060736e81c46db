"""Opening one SQLite database from several processes at once (the alert outbox, the playbook state)."""

from __future__ import annotations

import sqlite3
import time
from typing import Callable, TypeVar

T = TypeVar("T")

# How long a connection waits for another process's lock (sqlite3's busy timeout), and how long
# the set-up below retries a lock that SQLite refuses at once.
BUSY_TIMEOUT = 30.0


def when_unlocked(step: Callable[[], T], timeout: float = BUSY_TIMEOUT) -> T:
    """``step()``, tried again while SQLite says the database is locked, for up to ``timeout`` s.

    Workers started together open one database at once, and each one's first statements (the
    switch to WAL, the schema) read the database and then need to write it. When two hold the
    read lock and both ask for the write lock, SQLite refuses one at once, without waiting out
    the busy timeout (waiting could deadlock). The statement then has ended and released its
    lock, so trying again after a short sleep succeeds once the other one is done.
    """
    deadline = time.monotonic() + timeout
    delay = 0.005
    while True:
        try:
            return step()
        except sqlite3.OperationalError as e:
            if "locked" not in str(e) and "busy" not in str(e) or time.monotonic() + delay > deadline:
                raise
            time.sleep(delay)
            delay = min(delay * 2, 0.25)
