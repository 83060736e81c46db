"""Workers started together open one SQLite database at once: the alert outbox (tests/alerting/
test_worker_alerting.py's two workers did, and one failed at start-up with "database is locked" in a
CI run) and the playbook state."""

import multiprocessing
import sqlite3

import pytest

from ramparts.alerting.outbox import Outbox
from ramparts.playbooks.state import State
from ramparts.sqlitedb import when_unlocked

PROCESSES = 6
ROUNDS = 15  # before the retry, about one round in seven had a process fail: 6 of 40 rounds here


def _open(opener, directory, barrier, results):
    barrier.wait()  # every process opens the new database at the same moment
    try:
        opener(directory)
        results.put(None)
    except Exception as e:  # reported to the test, which names it
        results.put(repr(e))


@pytest.mark.parametrize("opener, filename", [(Outbox, "outbox.sqlite3"), (State, "playbooks.sqlite3")])
def test_processes_opening_a_new_database_at_once_all_open_it(tmp_path, opener, filename):
    ctx = multiprocessing.get_context("fork")  # the modules are imported already: no import per process
    for r in range(ROUNDS):
        directory = tmp_path / f"round-{r}"
        barrier, results = ctx.Barrier(PROCESSES), ctx.Queue()
        procs = [ctx.Process(target=_open, args=(opener, str(directory), barrier, results)) for _ in range(PROCESSES)]
        for p in procs:
            p.start()
        errors = [e for e in (results.get(timeout=60) for _ in procs) if e]
        for p in procs:
            p.join(timeout=60)
        assert not errors, f"round {r}: {errors}"
        mode = sqlite3.connect(directory / filename).execute("PRAGMA journal_mode").fetchone()[0]
        assert mode == "wal"


def test_a_lock_that_outlasts_the_timeout_is_raised_and_other_errors_at_once():
    calls = []

    def failing(message):
        def step():
            calls.append(message)
            raise sqlite3.OperationalError(message)
        return step

    with pytest.raises(sqlite3.OperationalError, match="locked"):
        when_unlocked(failing("database is locked"), timeout=0.05)
    assert len(calls) > 1  # tried again until the timeout
    with pytest.raises(sqlite3.OperationalError, match="no such table"):
        when_unlocked(failing("no such table: x"), timeout=5)
    assert calls.count("no such table: x") == 1  # other errors are not retried
