"""The ClickHouse sink: events, alerts, playbook actions and dead letters, batched and idempotent.

Writes are buffered per table and sent as one insert when a table holds ``max_batch_rows``
rows, when ``flush_interval_seconds`` have passed since the oldest buffered row (checked on
every write: no background thread), or on :meth:`ClickHouseSink.flush`, which the streaming
worker calls before it commits its offsets. A flush that fails raises and keeps the rows
buffered; the worker then does not commit, and the batch comes again.

Redelivered records are written again under the same ids and collapse into one row (the
tables are ReplacingMergeTrees keyed by id), so counts read with ``FINAL`` do not double.

A record the store cannot take (an unknown kind, a value that does not fit its column) never
costs the rest of its batch: it goes to the ``dead_letters`` table with the reason, and is
counted.

Events come as an :class:`~ramparts.events.EventBatch` (the pipeline's) or as dicts. A batch is
read by columns: the events of a kind whose parts share one set of keys (a columnar parser's)
become one list per column with no dict per event (``extra`` still holds one small dict per
event). Buffers hold blocks of columns; an event table's insert is an Arrow stream
(``INSERT ... FORMAT ArrowStream``) when every value is of a plain type, else, and for alerts,
actions and dead letters, JSON rows (``JSONCompactEachRow``), whose path finds and sets aside
the values ClickHouse refuses. Both store the same rows (tests/sinks/test_columns.py).

>>> import tempfile
>>> with tempfile.TemporaryDirectory() as d, ClickHouseSink(d) as sink:
...     sink.write_events([{"kind": "request", "ts": 1772442000000000000, "source": "nginx_combined",
...                         "id": "access.log:1", "status": 200, "method": "GET"}])
...     sink.write_events([{"kind": "telepathy", "ts": 0, "source": "x", "id": "x:1"}])
...     sink.flush()
...     sink.counts()["requests"], sink.counts()["dead_letters"]
...     sink.select("requests", columns="id, status, extra")
(1, 1)
[{'id': 'access.log:1', 'status': 200, 'extra': '{"method":"GET"}'}]
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import numpy as np

from ramparts.errors import SinkError
from ramparts.events import Columns, EventBatch, values_of

from .backend import Backend, ClickHouseError, open_backend, parse_dsn, is_server_dsn
from .encoding import (ENCODERS, action_row, alert_row, arrow_columns, check_row, dead_letter_row, encode_rows,
                       event_columns, record_dead_letter)
from .migrate import migrate
from .schema import EVENT_TABLES, TABLE_ORDER, TABLES, check_database_name

log = logging.getLogger("ramparts.sinks.clickhouse")

_TS = 1  # every table's second column is its time, as int nanoseconds


class TableBuffer:
    """The rows buffered for one table, as blocks of columns (one list per column of the table):
    an ``EventBatch``'s columns are kept as they come, rows of records are turned into columns.
    The lists of a block may be shared with the batch they came from: never changed here."""

    __slots__ = ("width", "blocks", "n")

    def __init__(self, width: int):
        self.width = width
        self.blocks: list[list[list]] = []
        self.n = 0

    def __len__(self) -> int:
        return self.n

    def add_rows(self, rows: list[tuple]) -> None:
        if rows:
            self.blocks.append([list(c) for c in zip(*rows)])
            self.n += len(rows)

    def add_columns(self, cols: list[list], n: int) -> None:
        if n:
            self.blocks.append(cols)
            self.n += n

    def take(self, k: int) -> list[list]:
        """The first ``k`` rows as columns, removed from the buffer (:meth:`put_back` undoes it)."""
        blocks = self.blocks
        first = blocks[0]
        if len(first[0]) == k:
            del blocks[0]
            self.n -= k
            return first
        out: list[list] = [[] for _ in range(self.width)]
        got = 0
        while got < k:
            block = blocks[0]
            m = len(block[0])
            need = k - got
            if m <= need:
                for o, c in zip(out, block):
                    o.extend(c)
                del blocks[0]
                got += m
            else:
                for o, c in zip(out, block):
                    o.extend(c[:need])
                blocks[0] = [c[need:] for c in block]
                got += need
        self.n -= k
        return out

    def put_back(self, cols: list[list]) -> None:
        self.blocks.insert(0, cols)
        self.n += len(cols[0])


class ClickHouseSink:
    """Batched, idempotent writes of events, alerts, actions and dead letters to ClickHouse.

    Parameters
    ----------
    backend_or_dsn
        A :class:`~ramparts.sinks.clickhouse.backend.Backend`, or a store DSN: a directory
        (embedded chdb) or a ``clickhouse://`` / ``http(s)://`` server.
    database
        The database of the tables (created if missing).
    retention_days
        Rows are deleted this many days after they were stored; 0 keeps them.
    max_batch_rows, flush_interval_seconds
        An insert is sent when a table buffers this many rows, or this long after the oldest
        buffered row (checked on each write).
    password_env
        The environment variable read for a server password when the DSN has none.
    clock
        Seconds from a monotonic clock, for the flush interval (tests pass their own).
    """

    def __init__(self, backend_or_dsn: Backend | str, database: str = "ramparts", retention_days: int = 90,
                 max_batch_rows: int = 20000, flush_interval_seconds: float = 1.0,
                 password_env: str = "RAMPARTS_STORE_PASSWORD", clock: Callable[[], float] = time.monotonic):
        check_database_name(database)
        if max_batch_rows < 1:
            raise SinkError(f"max_batch_rows must be at least 1, got {max_batch_rows}")
        if not flush_interval_seconds > 0:
            raise SinkError(f"flush_interval_seconds must be more than 0, got {flush_interval_seconds}")
        self.database = database
        self.retention_days = retention_days
        self.max_batch_rows = max_batch_rows
        self.flush_interval_seconds = flush_interval_seconds
        self._clock = clock
        if isinstance(backend_or_dsn, str):
            self.backend: Backend = open_backend(backend_or_dsn, password_env)
            self._owns_backend = True
        else:
            self.backend = backend_or_dsn
            self._owns_backend = False
        try:
            migrate(self.backend, database, retention_days)
        except BaseException:
            self._close_backend()
            raise
        self._buffers: dict[str, TableBuffer] = {t: TableBuffer(len(TABLES[t])) for t in TABLE_ORDER}
        self._oldest: float | None = None  # monotonic time of the oldest buffered row
        self._closed = False
        # Telemetry, counted per batch (STYLE.md, Vector): rows per table, inserts, errors.
        self.rows_received_total: dict[str, int] = dict.fromkeys(TABLE_ORDER, 0)
        self.rows_written_total: dict[str, int] = dict.fromkeys(TABLE_ORDER, 0)
        self.rows_dead_lettered_total: dict[str, int] = dict.fromkeys(TABLE_ORDER, 0)
        self.inserts_total = 0
        self.errors_total = 0

    @classmethod
    def from_config(cls, store: Any, dsn_override: str | None = None) -> "ClickHouseSink":
        """A sink for the ``store`` section of the configuration (``StoreConfig``).

        ``dsn_override`` (``--store``) replaces ``store.dsn``. A server DSN that names a
        database (``clickhouse://host/db``) uses it instead of ``store.database``.
        """
        dsn = dsn_override or store.dsn
        database = store.database
        if is_server_dsn(dsn):
            database = parse_dsn(dsn, store.password_env).database or database
        return cls(dsn, database=database, retention_days=store.retention_days,
                   max_batch_rows=store.max_batch_rows, flush_interval_seconds=store.flush_interval_seconds,
                   password_env=store.password_env)

    def __repr__(self) -> str:
        return f"ClickHouseSink({self.backend!r}, database={self.database!r})"

    def __enter__(self) -> "ClickHouseSink":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- writes ----------------------------------------------------------------------------
    def write_events(self, events: EventBatch | Iterable[dict]) -> None:
        """Buffer normalized events, each into the table of its kind.

        An :class:`~ramparts.events.EventBatch` is read by columns (``values_where`` per kind):
        the events of a kind that come from parts of one set of keys (a columnar parser's)
        become columns without a dict per event (a kind in several sets: per set); events of
        lists of dicts, and events without an ``id`` key, are read as dicts.
        """
        self._check_open()
        if isinstance(events, EventBatch):
            self._write_batch(events)
        else:
            self._write_dicts(events)
        self._after_write()

    def _write_batch(self, batch: EventBatch) -> None:
        n = len(batch)
        if not n:
            return
        kinds = batch.kinds()
        if sum(kinds.values()) != n or any(k not in ENCODERS for k in kinds):
            self._write_dicts(batch.events)  # unknown kinds: dead letters, in the batch's order
            return
        parts, _ = batch.layout()
        for kind, count in kinds.items():
            fields = _fields_of(parts, kind)
            if fields is not None:  # the common case: one set of keys, the rows in batch order
                self._write_kind(kind, batch, fields, count)
                continue
            # Several sets of keys (formats), or dicts among them: each set its own block, its
            # rows in batch order (the rows of a kind are then not all in batch order: the
            # same rows, in another order within the insert).
            for sub, fields in _groups(batch, kind):
                self._write_kind(kind, sub, fields, len(sub))

    def _write_kind(self, kind: str, batch: EventBatch, fields: tuple[str, ...] | None, count: int) -> None:
        """The ``count`` events of ``kind`` in ``batch``, all from parts with the keys ``fields``
        (``None``: lists of dicts), as columns or else as dicts."""
        enc = ENCODERS[kind]
        cols = None
        if fields is not None:
            cols = event_columns(enc, fields, lambda f: batch.values_where(f, "kind", kind), count)
        if cols is None:
            self._write_dicts(batch.where("kind", kind))
            return
        self._buffers[enc.table].add_columns(cols, count)
        self.rows_received_total[enc.table] += count

    def _write_dicts(self, events: Iterable[dict]) -> None:
        rows: dict[str, list[tuple]] = {t: [] for t in EVENT_TABLES.values()}
        route = {kind: (enc, rows[enc.table].append) for kind, enc in ENCODERS.items()}
        rejected: list[tuple[Any, str]] = []
        # EventEncoder.row, inlined: this loop is the storage of events that come as dicts.
        for e in events:
            r = route.get(e.get("kind")) if type(e) is dict else None
            if r is None:
                rejected.append((e, f"unknown kind {e.get('kind')!r}" if isinstance(e, Mapping)
                                 else f"not an event object: {type(e).__name__}"))
                continue
            enc, append = r
            try:
                row = enc.get(e)
            except KeyError:
                append(enc.row_slow(e))
                continue
            n = len(e)
            if n == enc.plain:
                row += (None,)
            else:
                row += (enc.extras(e, n),)
            if enc.json_at:
                row = enc.fix_json(row)
            append(row)
        for table, got in rows.items():
            self._buffers[table].add_rows(got)
            self.rows_received_total[table] += len(got)
        if rejected:
            self._dead_letter_records(rejected, table=None)

    def write_alerts(self, alerts: Iterable[Mapping[str, Any]]) -> None:
        """Buffer alerts (SPEC.md "Alerts"); an update of an open incident replaces it (latest updated_at)."""
        self._write_checked("alerts", alerts, alert_row)

    def write_actions(self, actions: Iterable[Mapping[str, Any]]) -> None:
        """Buffer playbook action records (id, ts, alert_id, playbook, step, action, target, mode, status, detail)."""
        self._write_checked("actions", actions, action_row)

    def write_dead_letters(self, records: Iterable[Mapping[str, Any]]) -> None:
        """Buffer dead-letter records (``DeadLetter.to_dict``: raw already scrubbed by the caller)."""
        now = time.time_ns()
        self._write_checked("dead_letters", records, lambda d: dead_letter_row(d, now))

    def _write_checked(self, table: str, records: Iterable[Mapping[str, Any]], make_row) -> None:
        self._check_open()
        rows = []
        rejected = []
        n = 0
        for r in records:
            n += 1
            try:
                rows.append(make_row(r))
            except (ValueError, TypeError, AttributeError) as e:
                rejected.append((r, str(e)))
        self._buffers[table].add_rows(rows)
        self.rows_received_total[table] += n
        if rejected:
            self._dead_letter_records(rejected, table)
        self._after_write()

    def _dead_letter_records(self, rejected: list[tuple[Any, str]], table: str | None) -> None:
        """Buffer dead letters for records of ``table`` (None: events, each counted under its kind's table)."""
        now = time.time_ns()
        rows = []
        counts = self.rows_dead_lettered_total
        for record, reason in rejected:
            if not isinstance(record, Mapping):
                record = {"value": repr(record)}
            rows.append(dead_letter_row(record_dead_letter(record, reason, now), now))
            # An event of no known kind is counted under "unknown_kind".
            target = table or EVENT_TABLES.get(record.get("kind"), "unknown_kind")
            counts[target] = counts.get(target, 0) + 1
        self._buffers["dead_letters"].add_rows(rows)
        log.warning("store: %d record(s) sent to dead_letters, e.g. %s", len(rejected), rejected[0][1])

    def _after_write(self) -> None:
        buffered = False
        for table, buf in self._buffers.items():
            if len(buf) >= self.max_batch_rows:
                self._flush_table(table, full_batches_only=True)
            buffered = buffered or bool(buf)
        if not buffered:
            self._oldest = None
            return
        now = self._clock()
        if self._oldest is None:
            self._oldest = now
        elif now - self._oldest >= self.flush_interval_seconds:
            self.flush()

    # -- flushing --------------------------------------------------------------------------
    def flush(self) -> None:
        """Send everything buffered. Raises SinkError if the store fails; the rows stay buffered."""
        self._check_open()
        for table in TABLE_ORDER:
            self._flush_table(table)
        self._oldest = None

    def _flush_table(self, table: str, full_batches_only: bool = False) -> None:
        buf = self._buffers[table]
        least = self.max_batch_rows if full_batches_only else 1
        while len(buf) >= least:
            n = min(len(buf), self.max_batch_rows)
            cols = buf.take(n)
            try:
                self._send_columns(table, cols, n)
            except BaseException:
                buf.put_back(cols)  # a failed flush keeps its rows
                raise

    def _send_columns(self, table: str, cols: list[list], n: int) -> None:
        """Insert a block: events as Arrow columns when every value is of a plain type, else as JSON rows."""
        insert_arrow = getattr(self.backend, "insert_arrow", None)
        if table in _EVENT_TABLE_NAMES and insert_arrow is not None:
            data = arrow_columns(table, cols)
            if data is not None:
                try:
                    insert_arrow(f"{self.database}.{table}", data)
                except SinkError as e:
                    self.errors_total += 1
                    if not (isinstance(e, ClickHouseError) and e.is_data_error):
                        raise
                    # ClickHouse refused a value: the JSON path below finds the rows at fault.
                else:
                    self.inserts_total += 1
                    self.rows_written_total[table] += n
                    return
        self._send(table, list(zip(*cols)))

    def _send(self, table: str, rows: list[tuple]) -> None:
        bad = [(i, f"ts has type {type(r[_TS]).__name__}, expected int nanoseconds")
               for i, r in enumerate(rows) if type(r[_TS]) is not int]
        if bad:
            self._set_aside(table, rows, bad)
            skip = {i for i, _ in bad}
            rows = [r for i, r in enumerate(rows) if i not in skip]
        body, unencodable = encode_rows(rows)
        if unencodable:
            self._set_aside(table, rows, unencodable)
            skip = {i for i, _ in unencodable}
            rows = [r for i, r in enumerate(rows) if i not in skip]
        if not rows:
            return
        try:
            self._insert(table, body, len(rows))
        except ClickHouseError as e:
            if not e.is_data_error:
                raise
            self._insert_isolating(table, rows, e)

    def _insert(self, table: str, body: bytes, n: int) -> None:
        try:
            self.backend.insert_json(f"{self.database}.{table}", body, columns=[c.name for c in TABLES[table]],
                                     fmt="JSONCompactEachRow")
        except SinkError:
            self.errors_total += 1
            raise
        self.inserts_total += 1
        self.rows_written_total[table] += n

    def _insert_isolating(self, table: str, rows: list[tuple], error: ClickHouseError) -> None:
        """ClickHouse refused a value in a batch: find the rows at fault, set them aside, send the rest."""
        bad = [(i, p) for i, r in enumerate(rows) if (p := check_row(table, r))]
        if bad:
            self._set_aside(table, rows, bad)
            skip = {i for i, _ in bad}
            rest = [r for i, r in enumerate(rows) if i not in skip]
            if rest:
                self._send(table, rest)
            return
        # Nothing the checks know about: halve until the rows ClickHouse refuses stand alone.
        if len(rows) == 1:
            self._set_aside(table, rows, [(0, f"ClickHouse refused it: {error.message}")])
            return
        mid = len(rows) // 2
        for part in (rows[:mid], rows[mid:]):
            try:
                self._insert(table, encode_rows(part)[0], len(part))
            except ClickHouseError as e:
                if not e.is_data_error:
                    raise
                self._insert_isolating(table, part, e)

    def _set_aside(self, table: str, rows: list[tuple], bad: list[tuple[int, str]]) -> None:
        if table == "dead_letters":
            # A dead letter that cannot be stored has nowhere left to go: say so loudly.
            self.errors_total += len(bad)
            log.error("store: %d dead-letter record(s) could not be stored, e.g. %s", len(bad), bad[0][1])
            return
        enc = ENCODERS.get(next((k for k, t in EVENT_TABLES.items() if t == table), ""))
        records = []
        for i, reason in bad:
            row = rows[i]
            if enc is not None:
                record = enc.record(row)
            else:
                record = dict(zip((c.field for c in TABLES[table]), row))
            records.append((record, reason))
        self._dead_letter_records(records, table)

    # -- reads -----------------------------------------------------------------------------
    def query(self, sql: str) -> list[dict]:
        """Rows of any SQL (without a FORMAT clause) as dicts. Add FINAL for exact counts."""
        self._check_open()
        return self.backend.query(sql)

    def select(self, table: str, columns: str = "*", where: str | None = None, order_by: str | None = None,
               limit: int | None = None) -> list[dict]:
        """Rows of one table, deduplicated (FINAL): what a redelivery wrote twice appears once."""
        if table not in TABLES:
            raise SinkError(f"no table {table!r}; tables: {', '.join(TABLE_ORDER)}")
        sql = f"SELECT {columns} FROM {self.database}.{table} FINAL"
        if where:
            sql += f" WHERE {where}"
        if order_by:
            sql += f" ORDER BY {order_by}"
        if limit is not None:
            sql += f" LIMIT {int(limit)}"
        return self.query(sql)

    def counts(self) -> dict[str, int]:
        """Rows per table, deduplicated (FINAL)."""
        sql = " UNION ALL ".join(f"SELECT '{t}' AS t, count() AS n FROM {self.database}.{t} FINAL"
                                 for t in TABLE_ORDER)
        got = {r["t"]: int(r["n"]) for r in self.query(sql)}
        return {t: got.get(t, 0) for t in TABLE_ORDER}

    @property
    def rows_buffered(self) -> int:
        """Rows waiting for the next insert (the worker acknowledges its input only at 0)."""
        return sum(len(b) for b in self._buffers.values())

    @property
    def fullest_buffer(self) -> int:
        """Rows buffered for the table that has most: inserts pay off per table, not in total.

        Measured (docs/storage.md): ClickHouse's cost per row falls from 16.5 µs at 1,000 rows
        per insert to 8.0 at 5,000 and 4.7 at 20,000, so a flush waits for one table to fill.
        """
        return max((len(b) for b in self._buffers.values()), default=0)

    def metrics(self) -> dict[str, Any]:
        """Telemetry: rows received, written and dead-lettered per table, inserts, errors, rows buffered."""
        return {
            "rows_received_total": dict(self.rows_received_total),
            "rows_written_total": dict(self.rows_written_total),
            "rows_dead_lettered_total": dict(self.rows_dead_lettered_total),
            "inserts_total": self.inserts_total,
            "errors_total": self.errors_total,
            "rows_buffered": sum(len(b) for b in self._buffers.values()),
        }

    # -- lifecycle -------------------------------------------------------------------------
    def _check_open(self) -> None:
        if self._closed:
            raise SinkError("the ClickHouse sink is closed; create a new one")

    def close(self) -> None:
        """Flush, then close the backend if this sink opened it."""
        if self._closed:
            return
        try:
            self.flush()
        finally:
            self._closed = True
            self._close_backend()

    def _close_backend(self) -> None:
        if self._owns_backend:
            self.backend.close()


_EVENT_TABLE_NAMES = frozenset(EVENT_TABLES.values())


def _groups(batch: EventBatch, kind: str) -> list[tuple[EventBatch, tuple[str, ...] | None]]:
    """The events of ``kind`` per set of keys of the parts that hold them (``None``: lists of
    dicts), each a selection of ``batch`` in batch order, in the order of their parts."""
    idx = np.asarray(batch.indices_where("kind", kind), dtype=np.int64)
    parts, _ = batch.layout()
    which, _ = batch.part_map()
    w = which[idx]
    groups: dict[tuple[str, ...] | None, list[int]] = {}
    for k in np.unique(w).tolist():
        p = parts[k]
        groups.setdefault(p.fields if type(p) is Columns else None, []).append(k)
    return [(batch.select(idx[np.isin(w, ks)]), key) for key, ks in groups.items()]


def _fields_of(parts: list, kind: str) -> tuple[str, ...] | None:
    """The keys of every event of ``kind`` in ``parts`` when they are all :class:`Columns` of
    one set of keys, else ``None`` (a list of dicts holds some, or parts of other keys do).
    A part is counted when it may hold such an event (a superset is safe: it only costs the
    columnar path)."""
    found = None
    for p in parts:
        if not len(p):
            continue
        if type(p) is Columns:
            same = p.same("kind")
            if same is not None and same[0] != kind:
                continue
            if same is None and kind not in p.values("kind"):
                continue
            if found is None:
                found = p.fields
            elif p.fields != found:
                return None
        elif kind in values_of(p, "kind"):
            return None
    return found
