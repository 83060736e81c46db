"""Every panel query of every dashboard, run against chdb filled by replaying simulated attacks.

Each query is expanded the way Grafana and the ClickHouse plugin expand it
(``grafana_macros.py``), run in chdb, and its result checked against what the panel type
draws: a time series needs a time column and numbers, a stat one row of numbers, a pie or bar
gauge a label and numbers, a table with evidence links an ``id`` column. With the dashboard
on 'All', every panel the scenarios feed returns rows.
"""

from __future__ import annotations

import re

import pytest

from ramparts.dashboards.build import dashboards
from ramparts.sinks.clickhouse import ClickHouseSink
from ramparts.streams.replay import Progress, replay
from ramparts.streams.simulate import simulate
from ramparts.timeutil import parse_iso

from .grafana_macros import ALL, Request, expand

HASH_KEY = "5d1e0c3b9a8f7e6d5c4b3a291807f6e5"
EXTRACTION_START, COMPUTE_START = "2026-11-20T10:00:00Z", "2026-11-20T10:30:00Z"
FROM_MS = parse_iso("2026-11-20T09:30:00Z") // 10**6
TO_MS = parse_iso("2026-11-20T11:00:00Z") // 10**6

NUMERIC = re.compile(r"^(Nullable\()?(U?Int\d+|Float\d+|Decimal.*)\)?$")
TIME = re.compile(r"^(Nullable\()?DateTime(64)?\b")
TEXT = re.compile(r"^(LowCardinality\()?(Nullable\()?String\)?\)?$")


@pytest.fixture(scope="module")
def store(tmp_path_factory, monkeypatch_module):
    """extraction and compute replayed into one chdb store, plus playbook actions on their alerts.

    The action rows stand in for the playbook engine's runs (one of each status its
    ``_record_action`` writes, on real alert ids); the audit records go through the real
    hash-chained ``AuditLog`` into ``playbook_audit``.
    """
    from ramparts.playbooks.audit import AuditLog
    from ramparts.config import load_config

    root = tmp_path_factory.mktemp("dashboards")
    monkeypatch_module.setenv("RAMPARTS_HASH_KEY", HASH_KEY)
    config = load_config(None, env={"RAMPARTS_HASH_KEY": HASH_KEY})
    sink = ClickHouseSink(str(root / "store"))
    alerts = {}
    try:
        for name, start, seconds in [("extraction", EXTRACTION_START, None), ("compute", COMPUTE_START, 360)]:
            simulate(name, root / name / f"{name}.json", seed=7, start=start, duration_seconds=seconds)
            files = sorted(str(p) for p in (root / name).glob(f"{name}.*.log"))
            report = replay(files, config=config, sink=sink, progress=Progress(None, enabled=False),
                            dead_letter_path=str(root / f"{name}.dead.jsonl"))
            alerts.update(report.alerts)
        principal = next(a for a in alerts.values() if a["entity"]["type"] == "principal")
        gpu = next(a for a in alerts.values() if a["detector"] == "gpu.unauthorized")
        ts = parse_iso(COMPUTE_START)
        actions = [
            {"id": f"act-{status}-{mode}", "ts": ts + i * 10**9, "alert_id": (gpu if i % 2 else principal)["id"],
             "playbook": "revoke-extraction",
             "step": "revoke", "action": "gateway.revoke", "target": principal["entity"]["id"], "mode": mode,
             "status": status, "detail": {"gateway": "nginx"},
             "updated_at": ts + (i + 600) * 10**9}
            for i, (status, mode) in enumerate([("done", "auto"), ("awaiting_approval", "approve"),
                                                ("failed", "auto"), ("reverted", "auto"), ("denied", "approve"),
                                                ("dry_run", "dry-run"), ("limited", "auto")])]
        sink.write_actions(actions)
        sink.flush()
        audit = AuditLog(sink.backend, sink.database, _AuditHead())
        audit.append([{"ts_ns": a["ts"], "run_id": a["id"], "incident_id": a["alert_id"], "playbook": a["playbook"],
                       "step": a["step"], "action": a["action"], "target": a["target"], "mode": a["mode"],
                       "decision": a["status"], "actor": "engine", "detail": {}} for a in actions])
        assert audit.verify() == []
        yield sink, alerts
    finally:
        sink.close()


class _AuditHead:
    """The audit log's anchor (the engine keeps it in its SQLite state; here, in memory)."""

    def __init__(self):
        self.seq, self.hash = 0, "0" * 64

    def audit_head(self):
        return self.seq, self.hash

    def set_audit_head(self, seq, h):
        self.seq, self.hash = seq, h


@pytest.fixture(scope="module")
def monkeypatch_module():
    mp = pytest.MonkeyPatch()
    yield mp
    mp.undo()


def _options(sink) -> dict[str, list[str]]:
    """What 'All' stands for: every value of each variable's own query."""
    out = {}
    for d in dashboards().values():
        for v in d["templating"]["list"]:
            if v["type"] == "query" and v["name"] not in out:
                sql = expand(v["query"], Request(FROM_MS, TO_MS))
                out[v["name"]] = [next(iter(r.values())) for r in sink.backend.query(sql)]
    return out


def _queries():
    """(dashboard uid, what, panel type, rawSql) of every query: panels, variables, annotations."""
    for uid, d in dashboards().items():
        for p in d["panels"]:
            for t in p.get("targets", []):
                yield uid, p["title"], p["type"], t["rawSql"], p
        for v in d["templating"]["list"]:
            if v["type"] == "query":
                yield uid, f"variable {v['name']}", "variable", v["query"], v
        for a in d["annotations"]["list"]:
            if "target" in a:
                yield uid, f"annotation {a['name']}", "annotation", a["target"]["rawSql"], a


QUERIES = list(_queries())


def _request(sink, alerts, **variables) -> Request:
    unauthorized = next(a for a in alerts.values() if a["detector"] == "gpu.unauthorized")
    base = {"model": ALL, "principal": ALL, "node": ALL, "entity_type": ALL, "entity": "",
            "alert_id": unauthorized["id"]}
    return Request(FROM_MS, TO_MS, interval_s=60, variables={**base, **variables}, options=_options(sink))


def _run(sink, sql: str) -> tuple[list[dict], list[tuple[str, str]]]:
    types = [(r["name"], r["type"]) for r in sink.backend.query(f"DESCRIBE TABLE ({sql})")]
    return sink.backend.query(sql), types


def _shape_problems(kind: str, panel: dict, rows: list[dict], types: list[tuple[str, str]]) -> list[str]:
    names = [n for n, _ in types]
    numeric = [n for n, t in types if NUMERIC.match(t)]
    problems = []
    if kind == "timeseries":
        if not (types and types[0][0] == "time" and TIME.match(types[0][1])):
            problems.append(f"the first column is not a time called time: {types[:1]}")
        if not numeric:
            problems.append("no numeric column")
        problems += [f"{n} is {t}: a label must be text" for n, t in types[1:]
                     if not NUMERIC.match(t) and not TEXT.match(t)]
    elif kind == "stat":
        if len(rows) != 1 or len(numeric) != len(types):
            problems.append(f"a stat needs one row of numbers: {len(rows)} rows of {types}")
    elif kind in ("piechart", "bargauge"):
        if not TEXT.match(types[0][1]) or len(numeric) != len(types) - 1:
            problems.append(f"needs a label then numbers: {types}")
    elif kind == "variable":
        if len(types) != 1 or not TEXT.match(types[0][1]):
            problems.append(f"a variable needs one text column: {types}")
    elif kind == "annotation":
        if names[:4] != ["time", "timeEnd", "text", "tags"] or not TIME.match(types[0][1]):
            problems.append(f"an annotation needs time, timeEnd, text, tags: {types}")
    links = [o for o in panel.get("fieldConfig", {}).get("overrides", [])
             if any(p["id"] == "links" for p in o["properties"])]
    for o in links:
        field = o["matcher"]["options"]
        if field not in names:
            problems.append(f"the evidence link is on {field}, which the query does not return")
    return problems


@pytest.mark.parametrize("uid,what,kind,sql,panel", QUERIES, ids=[f"{q[0]}:{q[1]}" for q in QUERIES])
def test_every_query_returns_rows_of_the_types_its_panel_draws(store, uid, what, kind, sql, panel):
    sink, alerts = store
    expanded = expand(sql, _request(sink, alerts))
    assert "$" not in expanded.replace("'$", ""), f"unexpanded macro or variable left in:\n{expanded}"
    rows, types = _run(sink, expanded)
    assert _shape_problems(kind, panel, rows, types) == []
    # extraction and compute raise alerts of every family the dashboards show (extraction,
    # drift, gpu), the stand-in actions cover every status, and the evidence dashboard is
    # opened on a gpu.unauthorized alert whose GPU also has a gpu.miner incident.
    assert rows, f"{uid} {what} is empty on the replayed attacks:\n{expanded}"


@pytest.mark.parametrize("uid,what,kind,sql,panel", QUERIES, ids=[f"{q[0]}:{q[1]}" for q in QUERIES])
def test_every_query_runs_with_one_value_selected_in_every_variable(store, uid, what, kind, sql, panel):
    sink, alerts = store
    extraction = next(a for a in alerts.values() if a["detector"] == "extraction.queries")
    gpu = next(a for a in alerts.values() if a["detector"] == "gpu.unauthorized")
    req = _request(sink, alerts, model=[extraction["evidence"]["model"]], principal=[extraction["entity"]["id"]],
                   node=[gpu["evidence"]["node"]], entity_type=["principal"], entity=extraction["entity"]["id"])
    rows, types = _run(sink, expand(sql, req))
    assert _shape_problems(kind, panel, rows, types) == []


def test_filters_narrow_the_soc_overview_to_the_selected_principal(store):
    sink, alerts = store
    table = next(p for p in dashboards()["ramparts-alerts"]["panels"] if p["title"] == "Incidents in range")
    sql = table["targets"][0]["rawSql"]
    every = sink.backend.query(expand(sql, _request(sink, alerts)))
    principal = next(a for a in alerts.values() if a["entity"]["type"] == "principal")["entity"]["id"]
    one = sink.backend.query(expand(sql, _request(sink, alerts, principal=[principal])))
    assert one and len(one) < len(every)
    assert {r["entity_id"] for r in one} == {principal}
    # The Slack link's variables (entity_type, entity) select the same.
    linked = sink.backend.query(expand(sql, _request(sink, alerts, entity_type=["principal"], entity=principal)))
    assert {r["id"] for r in linked} == {r["id"] for r in one}


def test_the_gpu_panel_shows_busy_gpus_beyond_the_authorized_ones(store):
    sink, alerts = store
    panel = next(p for p in dashboards()["ramparts-compute"]["panels"]
                 if p["title"] == "Busy GPUs against authorized GPUs per node")
    rows = sink.backend.query(expand(panel["targets"][0]["rawSql"], _request(sink, alerts)))
    node = next(a for a in alerts.values() if a["detector"] == "gpu.unauthorized")["evidence"]["node"]
    assert any(r["node"] == node and r["busy_gpus"] > r["authorized_gpus"] for r in rows)
