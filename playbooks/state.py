"""The engine's durable state: runs, steps, the per-target counts, revert timers, the audit anchor.

SQLite in WAL mode with ``synchronous=FULL`` under ``playbooks.state_dir``: a step is recorded
as acting before the action runs and done after, so a restart knows what was done, what is
waiting for approval, and which reverts are due (the timers are rows, not threads).
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
from pathlib import Path

from ramparts.sqlitedb import BUSY_TIMEOUT, when_unlocked

FILENAME = "playbooks.sqlite3"

SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    id TEXT PRIMARY KEY, incident_id TEXT NOT NULL, playbook TEXT NOT NULL, status TEXT NOT NULL,
    approval TEXT, approved_by TEXT, incident TEXT NOT NULL, created REAL NOT NULL, updated REAL NOT NULL);
CREATE TABLE IF NOT EXISTS steps (
    run_id TEXT NOT NULL, idx INTEGER NOT NULL, name TEXT NOT NULL, action TEXT NOT NULL, target TEXT,
    mode TEXT NOT NULL, status TEXT NOT NULL, params TEXT, restore TEXT, error TEXT,
    acted_at REAL, revert_due REAL, updated REAL NOT NULL, PRIMARY KEY (run_id, idx));
CREATE INDEX IF NOT EXISTS steps_due ON steps (status, revert_due);
CREATE TABLE IF NOT EXISTS acts (target TEXT NOT NULL, at REAL NOT NULL);
CREATE INDEX IF NOT EXISTS acts_target ON acts (target, at);
CREATE TABLE IF NOT EXISTS audit_head (id INTEGER PRIMARY KEY CHECK (id = 1), seq INTEGER NOT NULL, hash TEXT NOT NULL);
"""


class State:
    def __init__(self, directory: str | os.PathLike):
        Path(directory).mkdir(parents=True, exist_ok=True)
        self.path = Path(directory) / FILENAME
        self._db = db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=BUSY_TIMEOUT)
        db.row_factory = sqlite3.Row
        # Workers started together open one state at once (ramparts.sqlitedb.when_unlocked).
        when_unlocked(lambda: db.execute("PRAGMA journal_mode=WAL"))
        db.execute("PRAGMA synchronous=FULL")
        when_unlocked(lambda: db.executescript(SCHEMA))
        self._lock = threading.RLock()

    def close(self) -> None:
        self._db.close()

    def _x(self, sql: str, args=()) -> list[sqlite3.Row]:
        with self._lock:
            return self._db.execute(sql, args).fetchall()

    # -- runs ----------------------------------------------------------------------------
    def run(self, run_id: str) -> dict | None:
        rows = self._x("SELECT * FROM runs WHERE id = ?", (run_id,))
        if not rows:
            return None
        r = dict(rows[0])
        r["incident"] = json.loads(r["incident"])
        return r

    def runs(self, status: str | None = None) -> list[dict]:
        sql = "SELECT id, incident_id, playbook, status, approval, approved_by, created, updated FROM runs"
        rows = self._x(sql + (" WHERE status = ?" if status else "") + " ORDER BY created", (status,) if status else ())
        return [dict(r) for r in rows]

    def create_run(self, run_id: str, incident: dict, playbook: str, now: float) -> None:
        self._x("INSERT OR IGNORE INTO runs (id, incident_id, playbook, status, incident, created, updated) "
                "VALUES (?, ?, ?, 'open', ?, ?, ?)", (run_id, incident.get("id", ""), playbook,
                                                       json.dumps(incident, default=str), now, now))

    def update_run(self, run_id: str, now: float, **fields) -> None:
        if "incident" in fields:
            fields["incident"] = json.dumps(fields["incident"], default=str)
        sets = ", ".join(f"{k} = ?" for k in fields)
        self._x(f"UPDATE runs SET {sets}, updated = ? WHERE id = ?", (*fields.values(), now, run_id))

    # -- steps ---------------------------------------------------------------------------
    def step(self, run_id: str, idx: int) -> dict | None:
        rows = self._x("SELECT * FROM steps WHERE run_id = ? AND idx = ?", (run_id, idx))
        return _step(rows[0]) if rows else None

    def steps(self, run_id: str) -> list[dict]:
        return [_step(r) for r in self._x("SELECT * FROM steps WHERE run_id = ? ORDER BY idx", (run_id,))]

    def put_step(self, run_id: str, idx: int, now: float, **f) -> None:
        for k in ("params", "restore"):
            if k in f and f[k] is not None:
                f[k] = json.dumps(f[k], sort_keys=True, default=str)
        cur = self.step(run_id, idx)
        if cur is None:
            cols = ["run_id", "idx", "updated", *f]
            self._x(f"INSERT INTO steps ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})",
                    (run_id, idx, now, *f.values()))
        else:
            sets = ", ".join(f"{k} = ?" for k in f)
            self._x(f"UPDATE steps SET {sets}, updated = ? WHERE run_id = ? AND idx = ?", (*f.values(), now, run_id, idx))

    def due_reverts(self, now: float) -> list[dict]:
        return [_step(r) for r in self._x(
            "SELECT * FROM steps WHERE status = 'done' AND revert_due IS NOT NULL AND revert_due <= ? "
            "ORDER BY revert_due, run_id, idx DESC", (now,))]

    # -- per-target limit ----------------------------------------------------------------
    def acts_since(self, target: str, since: float) -> int:
        return self._x("SELECT count(*) AS n FROM acts WHERE target = ? AND at > ?", (target, since))[0]["n"]

    def record_act(self, target: str, at: float) -> None:
        self._x("INSERT INTO acts (target, at) VALUES (?, ?)", (target, at))
        self._x("DELETE FROM acts WHERE at < ?", (at - 86400,))

    # -- audit anchor --------------------------------------------------------------------
    def audit_head(self) -> tuple[int, str]:
        rows = self._x("SELECT seq, hash FROM audit_head WHERE id = 1")
        from .audit import GENESIS
        return (int(rows[0]["seq"]), rows[0]["hash"]) if rows else (0, GENESIS)

    def set_audit_head(self, seq: int, hash_: str) -> None:
        self._x("INSERT INTO audit_head (id, seq, hash) VALUES (1, ?, ?) "
                "ON CONFLICT (id) DO UPDATE SET seq = excluded.seq, hash = excluded.hash", (seq, hash_))


def _step(r: sqlite3.Row) -> dict:
    d = dict(r)
    for k in ("params", "restore"):
        d[k] = json.loads(d[k]) if d.get(k) else None
    return d
