"""Versioned schema migrations, and retention reconciled with the configuration.

Migrations are the SQL files in ``migrations/`` named ``NNNN_name.sql``, applied in order of
their number. Each file may hold several statements, separated by a semicolon at the end of
a line; ``{db}`` stands for the database and ``{ttl}`` for the retention clause. The versions
applied are recorded in ``{db}.schema_migrations``.

Every statement of a migration must be idempotent (``IF NOT EXISTS``, ``IF EXISTS``): two
workers that start together may both apply the same version, and both must succeed. The
version row is written after the statements, so a migration that failed half-way is applied
again, whole, on the next start.

>>> render("CREATE TABLE {db}.t (x Int8) ENGINE = MergeTree ORDER BY x {ttl}", "ramparts", 30)
'CREATE TABLE ramparts.t (x Int8) ENGINE = MergeTree ORDER BY x TTL ingested_at + INTERVAL 30 DAY'
>>> split_statements("-- a comment\\nSELECT 1;\\nSELECT 2;\\n")
['SELECT 1', 'SELECT 2']
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from ramparts.errors import SinkError

from .backend import Backend
from .schema import TTL_TABLES, check_database_name

log = logging.getLogger("ramparts.sinks.clickhouse")

_FILE_RE = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")
_TTL_DAYS_RE = re.compile(r"\bTTL\s+ingested_at\s*\+\s*toIntervalDay\((\d+)\)")
_ANY_TTL_RE = re.compile(r"\bTTL\b")


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str  # with the {db} and {ttl} placeholders


def ttl_clause(retention_days: int) -> str:
    """The table TTL for a retention: rows are deleted this many days after they were stored."""
    if retention_days < 0:
        raise SinkError(f"retention_days must be 0 (keep rows) or a number of days, got {retention_days}")
    return f"TTL ingested_at + INTERVAL {retention_days} DAY" if retention_days else ""


def render(sql: str, database: str, retention_days: int) -> str:
    # Plain replacement, not str.format: a later migration with a Map or JSON literal must not
    # need its braces escaped.
    return sql.replace("{db}", database).replace("{ttl}", ttl_clause(retention_days))


def split_statements(sql: str) -> list[str]:
    body = "\n".join(line for line in sql.splitlines() if not line.lstrip().startswith("--"))
    return [s.strip() for s in re.split(r";\s*(?:\n|$)", body) if s.strip()]


def load_migrations(directory: str | Path | None = None) -> list[Migration]:
    """The migrations in ``directory`` (default: the ones shipped with Ramparts), in order."""
    if directory is None:
        files = [(f.name, f.read_text()) for f in resources.files(__package__).joinpath("migrations").iterdir()
                 if f.name.endswith(".sql")]
    else:
        files = [(p.name, p.read_text()) for p in Path(directory).glob("*.sql")]
    out = []
    for name, text in files:
        m = _FILE_RE.match(name)
        if not m:
            raise SinkError(f"migration file {name} is not named NNNN_name.sql (lower case); rename it")
        out.append(Migration(int(m.group(1)), m.group(2), text))
    out.sort(key=lambda m: m.version)
    versions = [m.version for m in out]
    if len(set(versions)) != len(versions):
        raise SinkError(f"two migration files share a version number: {sorted(versions)}; renumber one")
    return out


def applied_versions(backend: Backend, database: str) -> set[int]:
    rows = backend.query(f"SELECT version FROM {database}.schema_migrations FINAL")
    return {int(r["version"]) for r in rows}


def migrate(backend: Backend, database: str = "ramparts", retention_days: int = 90,
            migrations: list[Migration] | None = None) -> list[int]:
    """Bring the store up to date; the versions applied by this call, in order.

    Creates the database and the ``schema_migrations`` table if needed, applies every
    migration not yet recorded, then sets the TTL of every data table to ``retention_days``
    (0 removes it). Running it again is a no-op.
    """
    check_database_name(database)
    ttl_clause(retention_days)  # validates before anything is created
    if migrations is None:
        migrations = load_migrations()
    backend.command(f"CREATE DATABASE IF NOT EXISTS {database}")
    backend.command(
        f"CREATE TABLE IF NOT EXISTS {database}.schema_migrations "
        "(version UInt32, name String, applied_at DateTime DEFAULT now()) "
        "ENGINE = ReplacingMergeTree ORDER BY version")
    done = applied_versions(backend, database)
    applied = []
    for m in migrations:
        if m.version in done:
            continue
        for statement in split_statements(render(m.sql, database, retention_days)):
            try:
                backend.command(statement)
            except SinkError as e:
                raise SinkError(f"migration {m.version:04d}_{m.name} failed on {backend.where}: {e.message}") from e
        backend.insert_json(f"{database}.schema_migrations", [{"version": m.version, "name": m.name}])
        log.info("store %s: applied migration %04d_%s", backend.where, m.version, m.name)
        applied.append(m.version)
    reconcile_retention(backend, database, retention_days)
    return applied


def table_ttl_days(backend: Backend, database: str) -> dict[str, int | None]:
    """Each data table's retention in days as the store has it (None: no TTL)."""
    names = ", ".join(f"'{t}'" for t in TTL_TABLES)
    rows = backend.query(f"SELECT name, engine_full FROM system.tables WHERE database = '{database}' "
                         f"AND name IN ({names})")
    out: dict[str, int | None] = {}
    for r in rows:
        m = _TTL_DAYS_RE.search(r["engine_full"])
        if m:
            out[r["name"]] = int(m.group(1))
        elif _ANY_TTL_RE.search(r["engine_full"]):
            out[r["name"]] = -1  # a TTL someone set by hand: replaced by the configured one
        else:
            out[r["name"]] = None
    return out


def reconcile_retention(backend: Backend, database: str, retention_days: int) -> list[str]:
    """Set every data table's TTL to ``retention_days``; the tables that changed.

    ClickHouse rewrites the table's parts to apply a changed TTL (materialize_ttl_after_modify),
    which is what an operator who shortens retention expects; it costs a pass over the table.
    """
    changed = []
    for table, days in table_ttl_days(backend, database).items():
        want = retention_days or None
        if days == want:
            continue
        if want is None:
            backend.command(f"ALTER TABLE {database}.{table} REMOVE TTL")
        else:
            backend.command(f"ALTER TABLE {database}.{table} MODIFY TTL ingested_at + INTERVAL {want} DAY")
        log.info("store %s: retention of %s.%s set to %s", backend.where, database, table,
                 f"{want} days" if want else "keep")
        changed.append(table)
    return changed
