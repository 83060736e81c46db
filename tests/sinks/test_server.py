"""The server path: DSNs and passwords, and ServerBackend against a stand-in ClickHouse HTTP server.

The stand-in (tests/sinks/chdb_http.py) runs each statement in chdb; what these tests prove is
that ServerBackend sends the same migrations, inserts and queries over clickhouse-connect as
ChdbBackend runs in-process, and gets the same results.
"""

import copy
import socket

import pytest

from ramparts.config import StoreConfig
from ramparts.errors import SinkError
from ramparts.events import columnar
from ramparts.sinks.clickhouse import ChdbBackend, ClickHouseSink, ServerBackend, open_backend, parse_dsn
from ramparts.sinks.clickhouse.backend import mask_dsn
from ramparts.sinks.clickhouse.schema import TABLE_ORDER, TABLES

from .chdb_http import ChdbHttpServer
from .records import ACTION, ALERT, DEAD, EVENTS, REQUEST


# -- DSNs -----------------------------------------------------------------------------------------

def test_dsn_forms():
    d = parse_dsn("clickhouse://ops:p%40ss@ch.internal:9123/telemetry", env={})
    assert (d.interface, d.host, d.port, d.user, d.password, d.database) == (
        "http", "ch.internal", 9123, "ops", "p@ss", "telemetry")
    assert parse_dsn("clickhouse://ch", env={}).port == 8123
    assert parse_dsn("clickhouse://ch", env={}).user == "default"
    assert parse_dsn("clickhouse://ch/?secure=true", env={}).url == "https://ch:8443"
    assert parse_dsn("clickhouses://ch", env={}).interface == "https"
    assert parse_dsn("https://ch.example.com", env={}).url == "https://ch.example.com:8443"
    assert parse_dsn("http://ch:8123", env={}).database is None


def test_the_password_comes_from_the_environment_when_the_dsn_has_none():
    env = {"RAMPARTS_STORE_PASSWORD": "from-env", "OTHER": "other"}
    assert parse_dsn("clickhouse://ops@ch", env=env).password == "from-env"
    assert parse_dsn("clickhouse://ops@ch", password_env="OTHER", env=env).password == "other"
    assert parse_dsn("clickhouse://ops:in-dsn@ch", env=env).password == "in-dsn"


def test_the_password_never_shows():
    d = parse_dsn("clickhouse://ops:hunter2@ch:8123/db", env={})
    assert "hunter2" not in repr(d) and "hunter2" not in str(d) and "hunter2" not in d.url
    assert mask_dsn("clickhouse://ops:hunter2@ch:8123/db") == "clickhouse://ops:***@ch:8123/db"
    with pytest.raises(SinkError) as e:
        parse_dsn("clickhouse://ops:hunter2@ch:notaport/db", env={})
    assert "hunter2" not in str(e.value) and "***" in str(e.value)


def test_unsupported_and_incomplete_dsns_say_what_is_expected():
    with pytest.raises(SinkError, match="scheme 'postgres' is not supported; use a directory"):
        open_backend("postgres://db:5432")
    with pytest.raises(SinkError, match="names no host"):
        parse_dsn("clickhouse:///db", env={})


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_an_unreachable_server_is_a_clear_error_without_the_password():
    with pytest.raises(SinkError) as e:
        ServerBackend(f"clickhouse://ops:hunter2@127.0.0.1:{_free_port()}/db", connect_timeout=2)
    assert "cannot connect to the ClickHouse server at http://127.0.0.1" in str(e.value)
    assert "hunter2" not in str(e.value)


# -- against the stand-in server -------------------------------------------------------------

def test_credentials_reach_the_server_and_a_wrong_password_is_refused(tmp_path, monkeypatch):
    with ChdbHttpServer(str(tmp_path / "srv"), user="ops", password="s3cret") as srv:
        monkeypatch.setenv("RAMPARTS_STORE_PASSWORD", "s3cret")
        b = ServerBackend(f"clickhouse://ops@127.0.0.1:{srv.port}")
        assert b.query("SELECT 1 AS one") == [{"one": 1}]
        assert "s3cret" not in repr(b)
        b.close()
        with pytest.raises(SinkError, match="516") as e:
            ServerBackend(f"clickhouse://ops:wrong-one@127.0.0.1:{srv.port}")
        assert "wrong-one" not in str(e.value)


def _workload():
    events = copy.deepcopy(EVENTS) + [dict(REQUEST, id=f"gw.log:{i}", status=200 + i % 3) for i in range(2, 40)]
    bad = [dict(REQUEST, id="gw.log:bad", latency_ms="slow"), {"kind": "nope", "ts": 1, "source": "x", "id": "x:1"}]
    return events, bad


def _run(sink):
    """The same writes on any backend, twice (a redelivery), and everything read back."""
    events, bad = _workload()
    for _ in range(2):
        sink.write_events(events[:20])
        sink.write_events(bad)
        sink.write_events(events[20:])
        sink.write_alerts([ALERT, dict(ALERT, id="drift.psi:fraud-xgb", detector="drift.psi", severity="low",
                                       entity={"type": "model", "id": "fraud-xgb"})])
        sink.write_actions([ACTION])
        sink.write_dead_letters([DEAD])
        sink.flush()
    sink.write_events(columnar(copy.deepcopy(events)))  # the same events as columns: Arrow inserts
    sink.flush()
    out = {"counts": sink.counts()}
    for table in TABLE_ORDER:
        cols = ", ".join(f"`{c.name[:-3]}`" if c.type == "time" else f"`{c.name}`" for c in TABLES[table])
        rows = sink.select(table, columns=cols, order_by="id")
        if table == "dead_letters":  # written at different times on the two stores
            for r in rows:
                r.pop("ts")
        out[table] = rows
    out["migrations"] = sink.query(f"SELECT version, name FROM {sink.database}.schema_migrations FINAL "
                                   "ORDER BY version")
    out["ttl"] = sink.query(f"SELECT name, engine_full FROM system.tables WHERE database = '{sink.database}' "
                            "ORDER BY name")
    return out


def test_the_server_path_runs_the_same_sql_and_stores_the_same_rows_as_chdb(tmp_path):
    with ChdbHttpServer(str(tmp_path / "server")) as srv:
        with ClickHouseSink(f"clickhouse://default@127.0.0.1:{srv.port}/rp", database="rp",
                            flush_interval_seconds=3600) as sink:
            assert sink.backend.kind == "server"
            over_http = _run(sink)
            # The ClickHouse data error came back over HTTP with its code, and was isolated.
            assert sink.metrics()["rows_dead_lettered_total"]["requests"] == 2
        statements = [sql for sql, _ in srv.requests]
    assert any(s.startswith("CREATE TABLE IF NOT EXISTS rp.requests") for s in statements)
    assert any(s.startswith("INSERT INTO rp.requests (`id`, `ts_ns`") for s in statements)
    # Events of plain types went as Arrow streams, the rest as JSON rows.
    assert any(s.startswith("INSERT INTO rp.requests (") and s.endswith("FORMAT ArrowStream") for s in statements)
    assert any(s.startswith("INSERT INTO rp.requests (") and s.endswith("FORMAT JSONCompactEachRow")
               for s in statements)

    chdb = ChdbBackend(tmp_path / "embedded")
    try:
        with ClickHouseSink(chdb, database="rp", flush_interval_seconds=3600) as sink:
            embedded = _run(sink)
    finally:
        chdb.close()

    assert over_http["counts"] == embedded["counts"]
    assert over_http["counts"]["requests"] == 39 and over_http["counts"]["dead_letters"] == 3
    assert over_http == embedded


def test_from_config_takes_the_database_from_a_server_dsn(tmp_path):
    with ChdbHttpServer(str(tmp_path / "server")) as srv:
        store = StoreConfig(dsn=f"http://127.0.0.1:{srv.port}/fromdsn", database="fromconfig")
        with ClickHouseSink.from_config(store) as sink:
            assert sink.database == "fromdsn"
        store = StoreConfig(dsn=f"http://127.0.0.1:{srv.port}", database="fromconfig")
        with ClickHouseSink.from_config(store) as sink:
            assert sink.database == "fromconfig"
            assert {"requests", "alerts"} <= {r["name"] for r in sink.query(
                "SELECT name FROM system.tables WHERE database = 'fromconfig'")}
