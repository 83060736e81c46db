"""The store's columnar path: an EventBatch read by columns and inserted as Arrow stores exactly
the rows that the same events stored as dicts (JSON rows) do, bad values and all."""

import math
import random

import orjson

from ramparts.events import KIND_FIELDS, Columns, EventBatch, columnar
from ramparts.sinks.clickhouse import ClickHouseSink
from ramparts.sinks.clickhouse.encoding import ENCODERS, arrow_columns, event_columns
from ramparts.sinks.clickhouse.schema import EVENT_TABLES, TABLE_ORDER, TABLES

from .records import EVENTS, GPU, PREDICTION, REQUEST, RUNTIME, WORKLOAD


def _sink(backend, database):
    return ClickHouseSink(backend, database=database, flush_interval_seconds=3600)


def _contents(backend, database):
    """Every table's rows (all stored columns but ingested_at, and a dead letter's time of
    writing), ordered by all of them, and the row count before deduplication."""
    out = {}
    for table in TABLE_ORDER:
        cols = [r["name"] for r in backend.query(
            f"SELECT name FROM system.columns WHERE database = '{database}' AND table = '{table}' "
            "AND default_kind != 'EPHEMERAL' AND name != 'ingested_at' ORDER BY position")]
        if table == "dead_letters":
            cols.remove("ts")
        sel = ", ".join(f"`{c}`" for c in cols)
        out[table] = backend.query(f"SELECT {sel} FROM {database}.{table} ORDER BY {sel}")
    return out


def _arrow_spy(backend):
    """Tables whose inserts went as Arrow (the real insert runs)."""
    tables = []
    real = backend.insert_arrow

    def insert_arrow(table, data):
        tables.append(table)
        return real(table, data)

    backend.insert_arrow = insert_arrow
    return tables


_COUNTS = ("rows_received_total", "rows_written_total", "rows_dead_lettered_total", "rows_buffered")


def _same_as_dicts(backend, *batches: EventBatch):
    """Write ``batches`` as dicts into one database and as batches into another, each batch its
    own inserts: same rows, same counts."""
    with _sink(backend, "by_dicts") as a:
        for batch in batches:
            a.write_events([dict(e) for e in batch.events])
            a.flush()
    with _sink(backend, "by_columns") as b:
        for batch in batches:
            b.write_events(batch)
            b.flush()
    assert {k: a.metrics()[k] for k in _COUNTS} == {k: b.metrics()[k] for k in _COUNTS}
    by_dicts, by_columns = _contents(backend, "by_dicts"), _contents(backend, "by_columns")
    assert by_columns == by_dicts
    return by_columns, b.metrics()


def test_a_batch_of_columns_stores_what_its_dicts_store_every_kind_and_odd_values(backend):
    odd = [
        dict(REQUEST, id="r:nan", latency_ms=math.nan, tokens_in=None),
        dict(REQUEST, id="r:inf", latency_ms=math.inf, status=404),
        dict(REQUEST, id="r:int-latency", latency_ms=7, principal="clé:ü—☃", method="GET"),
        dict(REQUEST, id="r:brace", user_agent='say "},{" and },{ and \n and \u0000'),
        dict(PREDICTION, id="p:text", input="plain text", output=3),
        dict(PREDICTION, id="p:nested", input=[[1, 2], [3]], output={"a": [1, {"b": None}]}),
        dict(GPU, id="g:nulls", util_pct=None, processes=None, power_w=-math.inf),
    ]
    events = [dict(e, id=f"{e['id']}#{i}", ts=e["ts"] + i) for i in range(40) for e in EVENTS] + odd
    random.Random(3).shuffle(events)
    batch = columnar(events).sorted_by_time()
    assert {type(p) for p in batch.layout()[0]} == {Columns}
    spy = _arrow_spy(backend)
    rows, m = _same_as_dicts(backend, batch)
    assert m["rows_dead_lettered_total"]["requests"] == 0
    assert len(rows["requests"]) == 44 and len(rows["predictions"]) == 42 and len(rows["workloads"]) == 40
    # The values that JSON cannot carry are NULL on both paths; a string in a JSON column is its JSON text.
    by_id = {r["id"]: r for r in rows["requests"]}
    assert by_id["r:nan"]["latency_ms"] is None and by_id["r:inf"]["latency_ms"] is None
    assert orjson.loads(by_id["r:brace"]["extra"])["user_agent"] == odd[3]["user_agent"]
    p = {r["id"]: r for r in rows["predictions"]}
    assert p["p:text"]["input"] == '"plain text"' and p["p:text"]["output"] == "3"
    # The event tables' inserts went as Arrow, but the predictions' (a number in `output`: JSON).
    assert set(spy) >= {f"by_columns.{t}" for t in ("requests", "runtime", "gpu", "workloads")}
    assert "by_columns.predictions" not in spy


def test_bad_values_go_to_the_dead_letters_alike_and_parts_of_dicts_and_other_keys_mix(backend):
    good = [dict(REQUEST, id=f"gw.log:{i}", ts=REQUEST["ts"] + i) for i in range(30)]
    bad = [
        dict(REQUEST, id="gw.log:status", status="two hundred"),
        dict(REQUEST, id="gw.log:huge", tokens_in=1 << 70),
        dict(REQUEST, id="gw.log:bytes", path=b"/v1"),
        dict(REQUEST, id="gw.log:bool", status=True),
    ]
    no_model = [{k: v for k, v in dict(REQUEST, id=f"nm:{i}").items() if k != "model"} for i in range(5)]
    no_id = [{k: v for k, v in dict(REQUEST, principal=f"p{i}").items() if k not in ("id", "model")}
             for i in range(3)]
    mixed = EventBatch.concat([
        columnar(good[:20] + bad),  # requests: one part of one set of keys
        EventBatch([dict(PREDICTION, id=f"pl:{i}") for i in range(3)]),  # a list of dicts among columns
        columnar([RUNTIME, GPU, WORKLOAD]),
    ])
    mixed = mixed.select(list(range(len(mixed)))[::-1])  # an order over the parts
    # One kind from two formats (two sets of keys) and in dicts, interleaved by time.
    requests_three_ways = EventBatch.concat([
        columnar(good[20:]), EventBatch([dict(REQUEST, id="rl:1")]),
        columnar([dict(REQUEST, id=f"k:{i}", ts=REQUEST["ts"] + 2 * i, route=f"r{i}") for i in range(6)]),
    ]).sorted_by_time()
    _, m = _same_as_dicts(backend, mixed, columnar(no_model),  # a kind field absent: NULL
                          columnar(no_id),  # no ids: content ids, from the dicts
                          requests_three_ways)
    assert m["rows_dead_lettered_total"]["requests"] == 4
    with _sink(backend, "by_columns") as sink:
        reasons = {r["file"]: r["reason"] for r in sink.select("dead_letters", columns="file, reason")}
        assert sink.counts()["requests"] == 30 + 5 + 3 + 1 + 6
    assert "status has type str" in reasons["gw.log:status"] and "JSON" in reasons["gw.log:huge"]
    assert "JSON" in reasons["gw.log:bytes"] and "status has type bool" in reasons["gw.log:bool"]


def test_random_batches_store_the_same_rows_both_ways(backend):
    rng = random.Random(11)
    pool = ["a", "", "x,y", "},{", 0, -1, 1 << 62, 2.5, -0.0, math.nan, None, True, [1, "b"], {"k": [None]}]
    batches = []
    for round_ in range(8):
        events = []
        for kind in KIND_FIELDS:  # one set of keys per kind and batch: read by columns
            fields = [f for f in KIND_FIELDS[kind] if rng.random() > 0.15]
            extras = rng.sample(["method", "note", "n", "tags", "meta"], rng.randint(0, 3))
            odd = rng.random() < 0.5  # else every value is what its field holds
            for i in range(rng.randint(1, 40)):
                e = {"kind": kind, "ts": 1772442000000000000 + rng.randrange(10 ** 9), "source": f"s{round_}",
                     "id": f"{round_}:{kind}:{i}"}
                for f in fields + extras:
                    e[f] = rng.choice(pool) if odd and rng.random() < 0.1 else _typical(f, rng)
                events.append(e)
        rng.shuffle(events)
        batches.append(columnar(events).sorted_by_time())
    spy = _arrow_spy(backend)
    _same_as_dicts(backend, *batches)
    assert {t.split(".")[1] for t in spy if t.startswith("by_columns.")} == set(EVENT_TABLES.values())


def _typical(field, rng):
    types = {"status": int, "tokens_in": int, "tokens_out": int, "start": int, "end": int,
             "latency_ms": float, "util_pct": float, "mem_used_mib": float, "power_w": float}
    t = types.get(field)
    if t is int:
        return rng.randrange(1000) if field not in ("start", "end") else 1772442000000000000 + rng.randrange(10 ** 9)
    if t is float:
        return rng.random() * 100
    if field in ("input", "output", "processes"):
        return [rng.random(), {"p": rng.randrange(9)}]
    return rng.choice([None, f"{field}-{rng.randrange(50)}"])


def test_event_columns_are_the_rows_of_the_dict_path():
    # What write_events buffers from columns, row by row, is EventEncoder.row of each event.
    for e in EVENTS + [dict(PREDICTION, input="text")]:
        kind = e["kind"]
        enc = ENCODERS[kind]
        events = [dict(e, id=f"{e['id']}#{i}") for i in range(3)]
        part = columnar(events).layout()[0][0]
        cols = event_columns(enc, part.fields, part.values, 3)
        assert list(zip(*cols)) == [enc.row(x) for x in events]
    # Without ids, or with a kind field absent where an id is None: the per-event path.
    assert event_columns(ENCODERS["gpu"], ("kind", "ts"), lambda f: [None], 1) is None
    assert event_columns(ENCODERS["gpu"], ("kind", "ts", "id"), lambda f: [None], 1) is None


def test_blocks_of_other_types_are_left_to_the_json_path():
    table = EVENT_TABLES["request"]
    enc = ENCODERS["request"]
    base = list(enc.row(REQUEST))
    assert arrow_columns(table, [[v] for v in base]) is not None
    for i, col in enumerate(TABLES[table]):
        for odd in ("text", 1 << 64, True, b"x", 1.5):
            row = list(base)
            row[i] = odd
            got = arrow_columns(table, [[v] for v in row])
            # a string in a JSON column is its JSON text already (EventEncoder.fix_json)
            plain = {"str": (str,), "int": (int,), "time": (int,), "float": (int, float), "json": (str,)}[col.type]
            if type(odd) in plain and not (type(odd) is int and odd >= 1 << 63):
                assert got is not None, (col.name, odd)
            else:
                assert got is None, (col.name, odd)
