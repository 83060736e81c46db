"""The ClickHouse store on embedded chdb: migrations, retention, round trips, idempotency, batching, bad input."""

import copy
import subprocess
import sys
import textwrap

import orjson
import pytest

from ramparts.config import StoreConfig
from ramparts.errors import SinkError
from ramparts.events import KIND_FIELDS
from ramparts.sinks.clickhouse import ChdbBackend, ClickHouseSink, migrate
from ramparts.sinks.clickhouse import sink as sink_module
from ramparts.sinks.clickhouse.migrate import load_migrations, table_ttl_days
from ramparts.sinks.clickhouse.schema import EVENT_TABLES, TABLE_ORDER, TABLES

from .records import ACTION, ALERT, DEAD, EVENTS, REQUEST


def _sink(backend, **kw):
    kw.setdefault("flush_interval_seconds", 3600)
    return ClickHouseSink(backend, database="rp", **kw)


# -- migrations and retention -------------------------------------------------------------

def test_migrations_from_empty_create_every_table_and_record_the_version(backend):
    assert migrate(backend, "rp", 90) == [m.version for m in load_migrations()]
    tables = {r["name"] for r in backend.query("SELECT name FROM system.tables WHERE database = 'rp'")}
    assert tables == set(TABLE_ORDER) | {"schema_migrations", "playbook_audit"}
    assert backend.query("SELECT version, name FROM rp.schema_migrations FINAL ORDER BY version") == [
        {"version": m.version, "name": m.name} for m in load_migrations()]


def test_migrating_again_is_a_no_op(backend):
    migrate(backend, "rp", 90)
    before = backend.query("SELECT name, create_table_query FROM system.tables WHERE database = 'rp' ORDER BY name")
    assert migrate(backend, "rp", 90) == []
    assert backend.query("SELECT count() AS n FROM rp.schema_migrations")[0]["n"] == len(load_migrations())
    assert backend.query("SELECT name, create_table_query FROM system.tables WHERE database = 'rp' ORDER BY name") == before


def test_a_later_migration_applies_on_an_existing_store(backend, tmp_path):
    shipped = load_migrations()
    migrate(backend, "rp", 90)
    sink = _sink(backend)
    sink.write_events([REQUEST])
    sink.flush()
    later = tmp_path / "migrations"
    later.mkdir()
    for m in shipped:
        (later / f"{m.version:04d}_{m.name}.sql").write_text(m.sql)
    next_version = shipped[-1].version + 1
    (later / f"{next_version:04d}_request_country.sql").write_text(
        "-- a column added later\nALTER TABLE {db}.requests ADD COLUMN IF NOT EXISTS country LowCardinality(String) DEFAULT '';\n")
    assert migrate(backend, "rp", 90, migrations=load_migrations(later)) == [next_version]
    assert backend.query("SELECT id, country FROM rp.requests FINAL") == [{"id": "gw.log:1", "country": ""}]
    assert migrate(backend, "rp", 90, migrations=load_migrations(later)) == []
    # The sink names its columns, so a table with more columns than it knows still takes its rows.
    sink.write_events([dict(REQUEST, id="gw.log:2")])
    sink.flush()
    assert sink.counts()["requests"] == 2


def test_retention_is_reconciled_with_the_configuration(backend):
    migrate(backend, "rp", 90)
    assert set(table_ttl_days(backend, "rp").values()) == {90}
    show = backend.query("SHOW CREATE TABLE rp.requests")[0]["statement"]
    assert "TTL ingested_at + toIntervalDay(90)" in show
    migrate(backend, "rp", 30)
    assert set(table_ttl_days(backend, "rp").values()) == {30}
    assert "toIntervalDay(30)" in backend.query("SHOW CREATE TABLE rp.alerts")[0]["statement"]
    migrate(backend, "rp", 0)
    assert set(table_ttl_days(backend, "rp").values()) == {None}
    assert "TTL" not in backend.query("SHOW CREATE TABLE rp.requests")[0]["statement"]
    migrate(backend, "rp", 0)  # removing a TTL that is not there is not an error
    migrate(backend, "rp", 7)
    assert set(table_ttl_days(backend, "rp").values()) == {7}


def test_retention_counts_from_storage_time_so_replayed_history_is_kept(backend):
    # Events from 2026-03-02 with a one-day retention: a TTL on event time would delete them
    # on the first merge; on ingested_at they stay.
    sink = _sink(backend, retention_days=1)
    sink.write_events(EVENTS)
    sink.flush()
    backend.command("OPTIMIZE TABLE rp.requests FINAL")
    assert sink.counts()["requests"] == 1


def test_the_writer_columns_are_the_tables_columns(backend):
    migrate(backend, "rp", 90)
    for table, cols in TABLES.items():
        described = {r["name"]: r for r in backend.query(f"DESCRIBE TABLE rp.{table}")}
        for c in cols:
            assert c.name in described, (table, c.name)
            ch_type = described[c.name]["type"]
            assert ch_type.startswith("Nullable") or "(Nullable" in ch_type or not c.nullable, (table, c.name, ch_type)
            if c.name.endswith("_ns"):
                assert described[c.name]["default_type"] == "EPHEMERAL"
    for kind, table in EVENT_TABLES.items():
        fields = [c.field for c in TABLES[table]]
        assert fields == ["id", "ts", "source", *KIND_FIELDS[kind], "extra"]


# -- round trips ----------------------------------------------------------------------------

def _time_columns(table):
    return [c for c in TABLES[table] if c.type == "time"]


def _stored_events(sink, table):
    cols = TABLES[table]
    exprs = []
    for c in cols:
        if c.type == "time":
            stored = c.name[:-3]
            exprs.append(f"toUnixTimestamp64Nano(`{stored}`) AS `{c.field}`")
        else:
            exprs.append(f"`{c.name}`")
    return sink.select(table, columns=", ".join(exprs), order_by="id")


def test_events_of_every_kind_round_trip(backend):
    sink = _sink(backend)
    sink.write_events(copy.deepcopy(EVENTS))
    sink.flush()
    for event in EVENTS:
        table = EVENT_TABLES[event["kind"]]
        (row,) = _stored_events(sink, table)
        extra = orjson.loads(row.pop("extra")) if row["extra"] else {}
        for c in TABLES[table]:
            if c.type == "json" and c.field != "extra" and row[c.field] is not None:
                row[c.field] = orjson.loads(row[c.field])
        restored = {"kind": event["kind"], **row, **extra}
        assert restored == event


def test_json_fields_given_as_text_are_stored_as_json(backend):
    sink = _sink(backend)
    sink.write_events([dict(EVENTS[1], id="p:2", input="a free-text prompt", output=3)])
    sink.flush()
    (row,) = sink.select("predictions", columns="input, output")
    assert orjson.loads(row["input"]) == "a free-text prompt" and orjson.loads(row["output"]) == 3


def test_an_event_missing_fields_and_id_is_stored_under_a_content_id(backend):
    sink = _sink(backend)
    bare = {"kind": "request", "ts": 1772442000000000000, "source": "nginx_combined", "status": 404}
    sink.write_events([bare, dict(bare)])  # the same content twice: one row
    sink.flush()
    (row,) = sink.select("requests", columns="id, principal, status, extra")
    assert row["id"].startswith("h:") and row["principal"] is None and row["status"] == 404 and row["extra"] == ""


def test_alerts_actions_and_dead_letters_round_trip(backend):
    sink = _sink(backend)
    sink.write_alerts([ALERT])
    sink.write_actions([ACTION])
    sink.write_dead_letters([DEAD])
    sink.flush()
    (a,) = sink.select("alerts", columns="id, detector, severity, entity_type, entity_id, score, summary, evidence, "
                       "toUnixTimestamp64Nano(window_start) AS ws, toUnixTimestamp64Nano(window_end) AS we, "
                       "toUnixTimestamp64Nano(first_event_ts) AS fe, event_count, "
                       "toUnixTimestamp64Nano(updated_at) AS up, extra")
    assert a == {"id": ALERT["id"], "detector": "extraction.prada", "severity": "high", "entity_type": "principal",
                 "entity_id": "key:sk-abc", "score": 0.93, "summary": ALERT["summary"],
                 "evidence": orjson.dumps(ALERT["evidence"]).decode(), "ws": ALERT["window"]["start"],
                 "we": ALERT["window"]["end"], "fe": ALERT["first_event_ts"], "event_count": 120,
                 "up": ALERT["ts"], "extra": ""}
    (act,) = sink.select("actions", columns="id, alert_id, playbook, step, action, target, mode, status, detail")
    assert act == {"id": ACTION["id"], "alert_id": ALERT["id"], "playbook": "revoke-extraction", "step": "0",
                   "action": "revoke_principal", "target": "key:sk-abc", "mode": "dry-run", "status": "done",
                   "detail": '{"gateway":"nginx"}'}
    (d,) = sink.select("dead_letters", columns="id, source, file, line, item, reason, raw, extra")
    assert d == {"id": "access.log:7", "source": "nginx_combined", "file": "access.log", "line": 7, "item": None,
                 "reason": "no request line", "raw": "garbage", "extra": '{"raw_b64":"Z2FyYmFnZQ=="}'}


def test_alert_times_may_be_rfc3339_text(backend):
    sink = _sink(backend)
    sink.write_alerts([dict(ALERT, ts="2026-03-02T09:01:00Z", window={"start": "2026-03-02T09:00:00.5Z", "end": None})])
    sink.flush()
    (a,) = sink.select("alerts", columns="toUnixTimestamp64Nano(ts) AS ts, toUnixTimestamp64Nano(window_start) AS ws, "
                       "window_end")
    assert a == {"ts": 1772442060000000000, "ws": 1772442000500000000, "window_end": None}


# -- idempotency ------------------------------------------------------------------------------

def test_a_redelivered_batch_does_not_double_the_counts(backend):
    sink = _sink(backend)
    for _ in range(2):
        sink.write_events(copy.deepcopy(EVENTS))
        sink.write_alerts([ALERT])
        sink.write_actions([ACTION])
        sink.write_dead_letters([DEAD])
        sink.flush()
    assert sink.metrics()["rows_written_total"]["requests"] == 2  # written twice...
    assert sink.counts() == dict.fromkeys(TABLE_ORDER, 1)  # ...stored once


def test_an_alert_update_replaces_it_and_a_stale_redelivery_does_not(backend):
    sink = _sink(backend)
    first = dict(ALERT, event_count=120, updated_at=1772442060000000000)
    grown = dict(ALERT, event_count=500, severity="critical", updated_at=1772442120000000000)
    sink.write_alerts([first])
    sink.flush()
    sink.write_alerts([grown])
    sink.flush()
    sink.write_alerts([first])  # the first version, delivered again after the update
    sink.flush()
    assert sink.select("alerts", columns="event_count, severity") == [{"event_count": 500, "severity": "critical"}]


# -- batching ---------------------------------------------------------------------------------

def test_rows_are_not_sent_before_max_batch_rows_unless_flushed(backend):
    sink = _sink(backend, max_batch_rows=10)
    events = [dict(REQUEST, id=f"gw.log:{i}") for i in range(25)]
    sink.write_events(events[:9])
    assert sink.counts()["requests"] == 0 and sink.metrics()["inserts_total"] == 0
    sink.write_events(events[9:10])
    assert sink.counts()["requests"] == 10 and sink.metrics()["inserts_total"] == 1
    sink.write_events(events[10:25])  # 15 buffered: one insert of 10, 5 wait
    assert sink.counts()["requests"] == 20 and sink.metrics()["rows_buffered"] == 5
    sink.flush()
    assert sink.counts()["requests"] == 25 and sink.metrics()["rows_buffered"] == 0


def test_rows_are_sent_once_the_flush_interval_has_passed(backend):
    now = [100.0]
    sink = _sink(backend, flush_interval_seconds=1.0, clock=lambda: now[0])
    sink.write_events([dict(REQUEST, id="a")])
    now[0] += 0.5
    sink.write_events([dict(REQUEST, id="b")])
    assert sink.counts()["requests"] == 0
    now[0] += 0.5  # one second since the oldest buffered row
    sink.write_events([dict(REQUEST, id="c")])
    assert sink.counts()["requests"] == 3


def test_close_flushes_and_the_rows_are_there_when_reopened(tmp_path):
    with ClickHouseSink(str(tmp_path / "s"), database="rp") as sink:
        sink.write_events(copy.deepcopy(EVENTS))
    with ClickHouseSink(str(tmp_path / "s"), database="rp") as again:
        assert again.counts()["gpu"] == 1
    with pytest.raises(SinkError, match="closed"):
        sink.write_events(EVENTS)


def test_a_failed_flush_raises_and_keeps_the_rows(backend):
    sink = _sink(backend)
    sink.write_events([REQUEST])
    backend.command("RENAME TABLE rp.requests TO rp.requests_away")
    with pytest.raises(SinkError, match="requests"):
        sink.flush()
    assert sink.metrics()["rows_buffered"] == 1 and sink.metrics()["errors_total"] == 1
    backend.command("RENAME TABLE rp.requests_away TO rp.requests")
    sink.flush()
    assert sink.counts()["requests"] == 1


# -- bad input ----------------------------------------------------------------------------------

def test_records_the_store_cannot_take_go_to_dead_letters_and_the_rest_is_stored(backend):
    sink = _sink(backend)
    good = [dict(REQUEST, id=f"gw.log:{i}") for i in range(5)]
    bad = [
        {"kind": "telepathy", "ts": 1, "source": "x", "id": "x:1"},
        dict(REQUEST, id="gw.log:status", status="two hundred"),
        dict(REQUEST, id="gw.log:ts", ts=None),
        dict(REQUEST, id="gw.log:huge", tokens_in=1 << 70),
        dict(REQUEST, id="gw.log:set", tags={"a", "b"}),
    ]
    sink.write_events(good[:2] + bad + good[2:])
    sink.write_alerts([dict(ALERT, severity="apocalyptic"), ALERT])
    sink.flush()
    counts = sink.counts()
    assert counts["requests"] == 5 and counts["alerts"] == 1 and counts["dead_letters"] == 6
    reasons = {r["file"]: r["reason"] for r in sink.select("dead_letters", columns="file, reason")}
    assert reasons["x:1"] == "store: unknown kind 'telepathy'"
    assert "status has type str" in reasons["gw.log:status"]
    assert "ts has type NoneType" in reasons["gw.log:ts"]
    assert "JSON" in reasons["gw.log:huge"] and "JSON" in reasons["gw.log:set"]
    assert "severity 'apocalyptic'" in reasons[ALERT["id"]]
    (raw,) = sink.select("dead_letters", columns="raw", where="file = 'gw.log:status'")
    assert orjson.loads(raw["raw"])["status"] == "two hundred"
    m = sink.metrics()
    assert m["rows_dead_lettered_total"]["requests"] == 4 and m["rows_dead_lettered_total"]["unknown_kind"] == 1


def test_rows_clickhouse_refuses_that_the_checks_miss_are_found_by_halving(backend, monkeypatch):
    monkeypatch.setattr(sink_module, "check_row", lambda table, row: None)
    sink = _sink(backend)
    events = [dict(REQUEST, id=f"gw.log:{i}") for i in range(16)]
    events[11] = dict(events[11], latency_ms="slow")
    sink.write_events(events)
    sink.flush()
    assert sink.counts()["requests"] == 15
    (d,) = sink.select("dead_letters", columns="file, reason")
    assert d["file"] == "gw.log:11" and "ClickHouse refused it" in d["reason"]


# -- opening the store ----------------------------------------------------------------------------

def test_a_second_process_on_the_same_directory_gets_a_clear_error(tmp_path):
    path = tmp_path / "shared"
    holder = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(f"""
            import sys
            from ramparts.sinks.clickhouse import ChdbBackend
            b = ChdbBackend({str(path)!r})
            print("open", flush=True)
            sys.stdin.readline()
            b.close()
        """)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "open"
        with pytest.raises(SinkError, match="in use by another process.*server with a clickhouse://"):
            ChdbBackend(path)
    finally:
        holder.communicate("done\n", timeout=60)
    assert holder.returncode == 0


def test_one_process_opens_one_directory_at_a_time(tmp_path):
    first = ChdbBackend(tmp_path / "a")
    try:
        with pytest.raises(SinkError, match="already has the chdb store .* open"):
            ChdbBackend(tmp_path / "b")
        same = ChdbBackend(tmp_path / "a")  # the same directory again is fine
        same.close()
    finally:
        first.close()
    ChdbBackend(tmp_path / "b").close()  # and another one once the first is closed


def test_from_config_uses_the_store_section_and_the_override(tmp_path):
    store = StoreConfig(dsn=str(tmp_path / "cfg"), database="cfgdb", retention_days=7, max_batch_rows=3)
    with ClickHouseSink.from_config(store) as sink:
        assert sink.database == "cfgdb" and sink.max_batch_rows == 3
        assert set(table_ttl_days(sink.backend, "cfgdb").values()) == {7}
        assert sink.backend.where == str((tmp_path / "cfg").resolve())
    with ClickHouseSink.from_config(store, dsn_override=str(tmp_path / "other")) as sink:
        assert sink.backend.where == str((tmp_path / "other").resolve())


def test_bad_settings_are_refused_with_what_to_do(backend):
    with pytest.raises(SinkError, match="plain identifier"):
        ClickHouseSink(backend, database="x; DROP TABLE y")
    with pytest.raises(SinkError, match="retention_days"):
        ClickHouseSink(backend, retention_days=-1)


def test_extras_are_exact_when_events_of_one_size_carry_different_keys(backend):
    sink = _sink(backend)
    first = dict(REQUEST, id="a", color="red")
    second = dict(REQUEST, id="b", shape="round")  # as many keys as the first, another extra
    third = dict(REQUEST, id="c", color="blue")  # the first's keys again
    assert len(first) == len(second)
    sink.write_events([first, second, third])
    sink.flush()
    extras = {r["id"]: orjson.loads(r["extra"]) for r in sink.select("requests", columns="id, extra")}
    base = {k: v for k, v in REQUEST.items() if k not in {c.field for c in TABLES["requests"]} | {"kind"}}
    assert extras == {"a": {**base, "color": "red"}, "b": {**base, "shape": "round"}, "c": {**base, "color": "blue"}}
