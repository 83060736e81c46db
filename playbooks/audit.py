"""The audit log: every decision and outcome of the engine, append-only and hash-chained.

Rows live in ClickHouse (``{db}.playbook_audit``, migration 0002). Each row's ``hash`` is
SHA-256 over the previous row's hash and the row's canonical JSON; the last ``(seq, hash)`` is
also kept in the engine's state database (the anchor). :meth:`AuditLog.verify` recomputes the
chain and reports an edited row (its hash no longer matches), a deleted row (a gap in ``seq``,
or a ``prev_hash`` that does not match), and a deleted tail (the anchor is past the last row).

>>> r = {"seq": 1, "ts_ns": 0, "run_id": "r", "incident_id": "i", "playbook": "p", "step": "s", "action": "a",
...      "target": "t", "mode": "auto", "decision": "executed", "actor": "engine", "detail": "{}"}
>>> h = record_hash(GENESIS, r)
>>> len(h), h == record_hash(GENESIS, dict(r)), h == record_hash(GENESIS, {**r, "target": "u"})
(64, True, False)
"""

from __future__ import annotations

import hashlib
import json
import threading

from ramparts.errors import SinkError

GENESIS = "0" * 64
FIELDS = ("seq", "ts_ns", "run_id", "incident_id", "playbook", "step", "action", "target", "mode", "decision",
          "actor", "detail")


def record_hash(prev_hash: str, record: dict) -> str:
    body = json.dumps({k: record[k] for k in FIELDS}, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256((prev_hash + "\n" + body).encode()).hexdigest()


class AuditLog:
    """Append and verify; ``head`` is a state object with ``audit_head()`` / ``set_audit_head(seq, hash)``."""

    def __init__(self, backend, database: str, head):
        self.backend = backend
        self.table = f"{database}.playbook_audit"
        self.head = head
        self._lock = threading.Lock()
        self._adopt()

    def _adopt(self) -> None:
        # A crash between the insert and the anchor's update leaves rows past the anchor; they
        # are chained on it, so take them (verify still checks them).
        seq, _ = self.head.audit_head()
        rows = self.backend.query(f"SELECT seq, hash FROM {self.table} WHERE seq > {int(seq)} ORDER BY seq")
        if rows:
            self.head.set_audit_head(int(rows[-1]["seq"]), rows[-1]["hash"])

    def append(self, records: list[dict]) -> list[dict]:
        with self._lock:
            seq, prev = self.head.audit_head()
            rows = []
            for r in records:
                seq += 1
                row = {"seq": seq, **{k: r.get(k, "") for k in FIELDS if k != "seq"}}
                row["ts_ns"] = int(row["ts_ns"] or 0)
                if not isinstance(row["detail"], str):
                    row["detail"] = json.dumps(row["detail"], sort_keys=True, default=str)
                row["prev_hash"] = prev
                row["hash"] = prev = record_hash(prev, row)
                rows.append(row)
            if rows:
                self.backend.insert_json(self.table, rows, columns=[*FIELDS, "prev_hash", "hash"])
                self.head.set_audit_head(seq, prev)
            return rows

    def records(self, run_id: str | None = None) -> list[dict]:
        where = f" WHERE run_id = '{_q(run_id)}'" if run_id else ""
        return self.backend.query(f"SELECT {', '.join(FIELDS)}, prev_hash, hash FROM {self.table}{where} ORDER BY seq")

    def verify(self) -> list[str]:
        """Problems found (empty: the chain is intact and reaches the anchor)."""
        problems = []
        prev, expect = GENESIS, 1
        for r in self.records():
            seq = int(r["seq"])
            if seq != expect:
                problems.append(f"records {expect}..{seq - 1} are missing (deleted)" if seq > expect
                                else f"record {seq} appears more than once")
            if r["prev_hash"] != prev:
                problems.append(f"record {seq}: prev_hash does not match record {seq - 1}'s hash "
                                "(a record before it was edited or deleted)")
            if record_hash(r["prev_hash"], r) != r["hash"]:
                problems.append(f"record {seq}: its content does not match its hash (edited)")
            prev, expect = r["hash"], seq + 1
        head_seq, head_hash = self.head.audit_head()
        if head_seq >= expect:
            problems.append(f"records {expect}..{head_seq} are missing: the log ends before its anchor (deleted)")
        elif head_seq == expect - 1 and head_seq > 0 and head_hash != prev:
            problems.append(f"record {head_seq}: hash differs from the anchor (edited or replaced)")
        return problems


def _q(s: str) -> str:
    return s.replace("\\", "\\\\").replace("'", "\\'")


def check_backend(backend) -> None:
    if backend is None:
        raise SinkError("the playbook audit log needs a store (store.dsn or --store); it cannot be 'none'")
