"""The tables as the writer sees them: which record field feeds which column, and its type.

The SQL in ``migrations/`` is the schema; this module is the writer's view of it (the
columns an insert names, in order) and a test checks that the two agree.

>>> EVENT_TABLES["request"], [c.name for c in TABLES["workloads"]][-4:]
('requests', ['pod', 'start_ns', 'end_ns', 'extra'])
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ramparts.errors import SinkError
from ramparts.events import KIND_FIELDS


@dataclass(frozen=True)
class Column:
    name: str  # the column an insert names (the EPHEMERAL *_ns column for a time)
    field: str  # the record field it is read from
    type: str  # str | int | float | json | time
    nullable: bool = True


# The table of each event kind.
EVENT_TABLES: dict[str, str] = {
    "request": "requests", "prediction": "predictions", "runtime": "runtime", "gpu": "gpu",
    "workload": "workloads",
}

_FIELD_TYPES = {
    "status": "int", "tokens_in": "int", "tokens_out": "int",
    "latency_ms": "float", "util_pct": "float", "mem_used_mib": "float", "power_w": "float",
    "input": "json", "output": "json", "processes": "json",
    "start": "time", "end": "time",
}


def _event_columns(kind: str) -> tuple[Column, ...]:
    cols = [Column("id", "id", "str", False), Column("ts_ns", "ts", "time", False),
            Column("source", "source", "str", False)]
    for f in KIND_FIELDS[kind]:
        t = _FIELD_TYPES.get(f, "str")
        cols.append(Column(f"{f}_ns" if t == "time" else f, f, t))
    cols.append(Column("extra", "extra", "json", False))
    return tuple(cols)


TABLES: dict[str, tuple[Column, ...]] = {table: _event_columns(kind) for kind, table in EVENT_TABLES.items()}
TABLES["alerts"] = (
    Column("id", "id", "str", False), Column("ts_ns", "ts", "time", False),
    Column("detector", "detector", "str", False), Column("severity", "severity", "str", False),
    Column("entity_type", "entity_type", "str", False), Column("entity_id", "entity_id", "str", False),
    Column("score", "score", "float"), Column("summary", "summary", "str", False),
    Column("evidence", "evidence", "json", False),
    Column("window_start_ns", "window_start", "time"), Column("window_end_ns", "window_end", "time"),
    Column("first_event_ts_ns", "first_event_ts", "time"), Column("event_count", "event_count", "int", False),
    Column("updated_at_ns", "updated_at", "time", False), Column("extra", "extra", "json", False),
)
TABLES["actions"] = (
    Column("id", "id", "str", False), Column("ts_ns", "ts", "time", False),
    Column("alert_id", "alert_id", "str", False), Column("playbook", "playbook", "str", False),
    Column("step", "step", "str", False), Column("action", "action", "str", False),
    Column("target", "target", "str", False), Column("mode", "mode", "str", False),
    Column("status", "status", "str", False), Column("detail", "detail", "json", False),
    Column("updated_at_ns", "updated_at", "time", False), Column("extra", "extra", "json", False),
)
TABLES["dead_letters"] = (
    Column("id", "id", "str", False), Column("ts_ns", "ts", "time", False),
    Column("source", "source", "str", False), Column("file", "file", "str", False),
    Column("line", "line", "int"), Column("item", "item", "int"),
    Column("reason", "reason", "str", False), Column("raw", "raw", "str", False),
    Column("extra", "extra", "json", False),
)

# Tables in the order a flush writes them: dead letters last, because writing the others
# may add to them.
TABLE_ORDER = (*EVENT_TABLES.values(), "alerts", "actions", "dead_letters")
# Tables whose rows expire after the configured retention.
TTL_TABLES = TABLE_ORDER

SEVERITIES = ("info", "low", "medium", "high", "critical")

_DATABASE_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def check_database_name(database: str) -> str:
    # The name is written into SQL text: only a plain identifier may get there.
    if not isinstance(database, str) or not _DATABASE_RE.match(database):
        raise SinkError(f"database name {database!r} is not a plain identifier (letters, digits, _); "
                        "set store.database to one")
    return database
