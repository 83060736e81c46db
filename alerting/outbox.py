"""The durable outbox: notifications accepted here are delivered, whatever crashes in between.

One SQLite database (``<outbox_dir>/outbox.sqlite3``) in WAL mode with ``synchronous=FULL``:
a transaction that returned is on disk. The worker calls :meth:`Outbox.accept` once per batch
(never per event) before it acknowledges the batch's input, so a notification is either in
the outbox or its input is read again. Delivery (``alerting.delivery``) reads it from there,
in other threads or another process (``ramparts alerts deliver``): SQLite's locking lets both
share the file.

Tables:

``notifications``
    one row per (notification id, output): the notification JSON (never a secret: requests
    are built and signed when sent), when it was queued, the next attempt, the attempts so
    far (counted *before* each attempt, so an attempt cut by a crash still counts and the next
    one is marked a redelivery), its status (``pending``, ``delivered``, ``dead``,
    ``suppressed``) and the last error. ``INSERT OR IGNORE`` on the key: a batch processed
    again after a crash queues nothing twice.
``incidents``
    the latest state of every incident (what ``ramparts alerts list|show`` print), and who
    acknowledged it.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any, Iterable

import orjson

from ramparts.sqlitedb import BUSY_TIMEOUT, when_unlocked

FILENAME = "outbox.sqlite3"

SCHEMA = """
CREATE TABLE IF NOT EXISTS notifications (
    id TEXT NOT NULL,
    output TEXT NOT NULL,
    incident_id TEXT NOT NULL,
    event TEXT NOT NULL,
    body BLOB NOT NULL,
    enqueued_at REAL NOT NULL,
    next_at REAL NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    status TEXT NOT NULL DEFAULT 'pending',
    last_error TEXT,
    last_status INTEGER,
    done_at REAL,
    claimed_by TEXT,
    PRIMARY KEY (id, output)
);
CREATE INDEX IF NOT EXISTS notifications_due ON notifications (status, output, next_at);
CREATE INDEX IF NOT EXISTS notifications_incident ON notifications (incident_id);
CREATE TABLE IF NOT EXISTS incidents (
    id TEXT PRIMARY KEY,
    detector TEXT NOT NULL,
    entity_type TEXT NOT NULL,
    entity_id TEXT NOT NULL,
    severity TEXT NOT NULL,
    status TEXT NOT NULL,
    event_count INTEGER NOT NULL,
    first_ts INTEGER,
    last_ts INTEGER,
    alert BLOB NOT NULL,
    updated_at REAL NOT NULL,
    acked_at REAL,
    acked_by TEXT
);
CREATE INDEX IF NOT EXISTS incidents_updated ON incidents (updated_at);
"""


class Outbox:
    """The outbox database; one connection per thread (``sqlite3`` connections are not shared)."""

    def __init__(self, directory: str | os.PathLike):
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.path = self.directory / FILENAME
        self._local = threading.local()
        conn = self._conn()
        when_unlocked(lambda: conn.executescript(SCHEMA))  # idempotent (IF NOT EXISTS): several processes may open it

    def _conn(self) -> sqlite3.Connection:
        c = getattr(self._local, "conn", None)
        if c is None:
            c = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT, isolation_level=None)
            when_unlocked(lambda: c.execute("PRAGMA journal_mode=WAL"))
            c.execute("PRAGMA synchronous=FULL")
            c.row_factory = sqlite3.Row
            self._local.conn = c
        return c

    class _Tx:
        def __init__(self, conn):
            self.conn = conn

        def __enter__(self):
            self.conn.execute("BEGIN IMMEDIATE")
            return self.conn

        def __exit__(self, exc_type, *rest):
            self.conn.execute("ROLLBACK" if exc_type else "COMMIT")

    def _tx(self) -> "_Tx":
        return self._Tx(self._conn())

    def close(self) -> None:
        c = getattr(self._local, "conn", None)
        if c is not None:
            c.close()
            self._local.conn = None

    # -- writing (the worker, per batch) ------------------------------------------------------

    def accept(self, alerts: Iterable[dict], notes: Iterable[dict], outputs: Iterable[Any],
               now: float | None = None) -> int:
        """Record incident updates and queue each notification for every output that wants it.

        One transaction: on return, everything is on disk. Returns the rows queued.
        """
        now = time.time() if now is None else now
        outputs = list(outputs)
        queued = 0
        with self._tx() as c:
            for a in alerts:
                self._upsert_incident(c, a, "open", now)
            for n in notes:
                if n["event"] == "resolved":
                    self._upsert_incident(c, n["alert"], "resolved", now)
                body = orjson.dumps(n)
                for o in outputs:
                    if o.wants(n):
                        cur = c.execute(
                            "INSERT OR IGNORE INTO notifications (id, output, incident_id, event, body, enqueued_at,"
                            " next_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                            (n["id"], o.name, n["incident_id"], n["event"], body, now, now))
                        queued += cur.rowcount
        return queued

    @staticmethod
    def _upsert_incident(c, a: dict, status: str, now: float) -> None:
        w = a.get("window") or {}
        c.execute(
            "INSERT INTO incidents (id, detector, entity_type, entity_id, severity, status, event_count, first_ts,"
            " last_ts, alert, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
            " ON CONFLICT(id) DO UPDATE SET severity=excluded.severity, status=excluded.status,"
            " event_count=excluded.event_count, last_ts=excluded.last_ts, alert=excluded.alert,"
            " updated_at=excluded.updated_at,"
            # an incident reopened under its id (incidents.py's tombstone) is not acknowledged any more
            " acked_at=CASE WHEN incidents.status = 'resolved' AND excluded.status = 'open' THEN NULL ELSE acked_at END,"
            " acked_by=CASE WHEN incidents.status = 'resolved' AND excluded.status = 'open' THEN NULL ELSE acked_by END",
            (a["id"], a["detector"], a["entity"]["type"], str(a["entity"]["id"]), a["severity"], status,
             a.get("event_count") or 0, w.get("start", a.get("first_event_ts")), w.get("end", a.get("ts")),
             orjson.dumps(a), now))

    def ack(self, incident_id: str, by: str, outputs: Iterable[Any], now: float | None = None) -> dict | None:
        """Mark an incident acknowledged and queue an ``acknowledged`` notification; None if unknown."""
        now = time.time() if now is None else now
        with self._tx() as c:
            row = c.execute("SELECT * FROM incidents WHERE id = ?", (incident_id,)).fetchone()
            if row is None:
                return None
            c.execute("UPDATE incidents SET acked_at = ?, acked_by = ? WHERE id = ?", (now, by, incident_id))
            alert = orjson.loads(row["alert"])
            note = {"id": f"{incident_id}.ack", "incident_id": incident_id, "event": "acknowledged", "seq": 0,
                    "alert": alert, "acked_by": by}
            body = orjson.dumps(note)
            for o in outputs:
                if o.wants(note):
                    c.execute("INSERT OR IGNORE INTO notifications (id, output, incident_id, event, body,"
                              " enqueued_at, next_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                              (note["id"], o.name, incident_id, "acknowledged", body, now, now))
        return self.incident(incident_id)

    # -- delivering ---------------------------------------------------------------------------

    def claim(self, output: str, now: float, limit: int, lease_seconds: float, owner: str) -> list[tuple[dict, int]]:
        """Claim up to ``limit`` due rows of ``output`` for one attempt each, counting the attempts.

        One transaction for the lot (one fsync, not one per notification). Each row is counted
        before it is sent, so an attempt cut by a crash still counts and the next one is marked
        a redelivery. A claim moves ``next_at`` by ``lease_seconds`` (it must cover the sends
        of the whole claim): another deliverer on this outbox (a second worker) leaves the row
        alone until then, or until :meth:`release_dead_claims` sees that ``owner`` died.
        Returns (row, attempt number) pairs, earliest due first.
        """
        with self._tx() as c:
            rows = c.execute("SELECT * FROM notifications WHERE status = 'pending' AND output = ? AND next_at <= ?"
                             " ORDER BY next_at, enqueued_at LIMIT ?", (output, now, limit)).fetchall()
            out = []
            for r in rows:
                c.execute("UPDATE notifications SET attempts = attempts + 1, next_at = ?, claimed_by = ?"
                          " WHERE id = ? AND output = ?", (now + lease_seconds, owner, r["id"], r["output"]))
                out.append((dict(r), r["attempts"] + 1))
        return out

    def next_at(self, output: str) -> float | None:
        row = self._conn().execute("SELECT MIN(next_at) AS t FROM notifications WHERE status = 'pending' AND output = ?",
                                   (output,)).fetchone()
        return row["t"]

    def finish_many(self, results: list[tuple], now: float) -> None:
        """Record attempts' results in one transaction: (row, attempt, status, next_at, error, http status).

        A row is updated only while its attempt count is still ``attempt`` (another deliverer
        that took it over after the lease has the say). ``status`` "unsent" hands a claimed row
        back untried: its attempt is uncounted and it is due at ``next_at``.
        """
        with self._tx() as c:
            for row, attempt, status, next_at, error, http_status in results:
                if status == "unsent":
                    c.execute("UPDATE notifications SET attempts = attempts - 1, next_at = ?, claimed_by = NULL"
                              " WHERE id = ? AND output = ? AND attempts = ?", (next_at, row["id"], row["output"], attempt))
                    continue
                c.execute("UPDATE notifications SET status = ?, next_at = COALESCE(?, next_at), last_error = ?,"
                          " last_status = ?, claimed_by = NULL, done_at = CASE WHEN ? = 'pending' THEN NULL ELSE ? END"
                          " WHERE id = ? AND output = ? AND attempts = ?",
                          (status, next_at, error, http_status, status, now, row["id"], row["output"], attempt))

    def finish(self, row, status: str, now: float, *, next_at: float | None = None, error: str | None = None,
               http_status: int | None = None) -> None:
        """Set one row's outcome outright (tests and tools; delivery uses :meth:`finish_many`)."""
        with self._tx() as c:
            c.execute("UPDATE notifications SET status = ?, next_at = COALESCE(?, next_at), last_error = ?,"
                      " last_status = ?, claimed_by = NULL, done_at = CASE WHEN ? = 'pending' THEN NULL ELSE ? END"
                      " WHERE id = ? AND output = ?",
                      (status, next_at, error, http_status, status, now, row["id"], row["output"]))

    def release_dead_claims(self, host: str, alive, now: float) -> int:
        """Make the claims of dead deliverers on this host due now (``alive(pid)`` says who lives).

        A restarted worker takes over what its predecessor had claimed without waiting out the
        lease; those attempts were counted, so they go out marked as redeliveries.
        """
        rows = self._conn().execute("SELECT DISTINCT claimed_by FROM notifications WHERE status = 'pending'"
                                    " AND claimed_by LIKE ?", (f"{host}:%",)).fetchall()
        dead = [r["claimed_by"] for r in rows if not alive(int(r["claimed_by"].rsplit(":", 1)[1]))]
        n = 0
        with self._tx() as c:
            for owner in dead:
                n += c.execute("UPDATE notifications SET next_at = ?, claimed_by = NULL WHERE status = 'pending'"
                               " AND claimed_by = ?", (now, owner)).rowcount
        return n

    def acked(self, incident_id: str) -> bool:
        row = self._conn().execute("SELECT acked_at FROM incidents WHERE id = ?", (incident_id,)).fetchone()
        return row is not None and row["acked_at"] is not None

    def purge(self, before: float) -> int:
        """Forget delivered and suppressed rows finished before ``before`` (dead ones stay)."""
        with self._tx() as c:
            return c.execute("DELETE FROM notifications WHERE status IN ('delivered', 'suppressed') AND done_at < ?",
                             (before,)).rowcount

    # -- reading ------------------------------------------------------------------------------

    def depth(self) -> dict[str, int]:
        rows = self._conn().execute(
            "SELECT output, COUNT(*) AS n FROM notifications WHERE status = 'pending' GROUP BY output").fetchall()
        return {r["output"]: r["n"] for r in rows}

    def counts(self) -> dict[str, int]:
        rows = self._conn().execute("SELECT status, COUNT(*) AS n FROM notifications GROUP BY status").fetchall()
        return {r["status"]: r["n"] for r in rows}

    def notifications(self, incident_id: str | None = None, status: str | None = None) -> list[dict]:
        sql, args = "SELECT * FROM notifications WHERE 1=1", []
        if incident_id is not None:
            sql += " AND incident_id = ?"
            args.append(incident_id)
        if status is not None:
            sql += " AND status = ?"
            args.append(status)
        rows = self._conn().execute(sql + " ORDER BY enqueued_at, id, output", args).fetchall()
        return [{k: r[k] for k in r.keys() if k != "body"} for r in rows]

    def incidents(self, *, status: str | None = None, severity: str | None = None, detector: str | None = None,
                  limit: int = 100) -> list[dict]:
        sql, args = "SELECT * FROM incidents WHERE 1=1", []
        if status == "acked":
            sql += " AND acked_at IS NOT NULL"
        elif status is not None:
            sql += " AND status = ?"
            args.append(status)
        if severity is not None:
            from ramparts.detectors.base import SEVERITIES

            wanted = SEVERITIES[SEVERITIES.index(severity):]
            sql += f" AND severity IN ({','.join('?' * len(wanted))})"
            args.extend(wanted)
        if detector is not None:
            sql += " AND detector GLOB ?"
            args.append(detector)
        rows = self._conn().execute(sql + " ORDER BY updated_at DESC, id LIMIT ?", (*args, limit)).fetchall()
        return [_incident(r) for r in rows]

    def incident(self, incident_id: str) -> dict | None:
        row = self._conn().execute("SELECT * FROM incidents WHERE id = ?", (incident_id,)).fetchone()
        return None if row is None else _incident(row)


def _incident(r: sqlite3.Row) -> dict:
    d = {k: r[k] for k in r.keys()}
    d["alert"] = orjson.loads(d["alert"])
    return d
