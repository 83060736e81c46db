"""The dashboards as files: valid Grafana JSON, what export writes, what compose mounts, and push."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import yaml

from ramparts.cli import main
from ramparts.dashboards.build import DATASOURCE_TYPE, DATASOURCE_UID, FILE_NAMES, SCHEMA_VERSION, dashboards

from .grafana_macros import ALL, Request, expand

REPO = Path(__file__).resolve().parents[2]
COMMITTED = sorted(REPO.glob("dashboards/*.json"))


def test_export_writes_exactly_the_committed_files(tmp_path):
    assert main(["dashboards", "export", "--out", str(tmp_path)]) == 0
    written = {str(p.relative_to(tmp_path)): p.read_text() for p in tmp_path.rglob("*") if p.is_file()}
    committed = {rel: (REPO / "dashboards" / rel).read_text() for rel in written}
    assert written == committed, "run `ramparts dashboards export` and commit the result"
    assert sorted(p.name for p in COMMITTED) == sorted(FILE_NAMES.values())


@pytest.mark.parametrize("path", COMMITTED, ids=[p.name for p in COMMITTED])
def test_every_dashboard_is_valid_grafana_json(path):
    d = json.loads(path.read_text())
    assert d["schemaVersion"] == SCHEMA_VERSION and d["uid"] and d["title"]
    assert len(d["uid"]) <= 40  # Grafana's limit on uids
    ids = [p["id"] for p in d["panels"]]
    assert len(ids) == len(set(ids)) and all(isinstance(i, int) for i in ids)
    titles = [p["title"] for p in d["panels"]]
    assert len(titles) == len(set(titles))
    for p in d["panels"]:
        assert {"x", "y", "w", "h"} <= set(p["gridPos"]) and p["gridPos"]["x"] + p["gridPos"]["w"] <= 24
        refs = [p.get("datasource")] + [t.get("datasource") for t in p.get("targets", [])]
        for ref in filter(None, refs):
            assert ref == {"type": DATASOURCE_TYPE, "uid": DATASOURCE_UID}
        if p["type"] != "text":
            assert p["targets"] and p["fieldConfig"]["defaults"]["unit"]
            assert p["fieldConfig"]["defaults"]["thresholds"]["steps"][0]["value"] is None
    for v in d["templating"]["list"]:
        if v["type"] == "query":
            assert v["datasource"]["uid"] == DATASOURCE_UID


def test_the_datasource_uid_is_the_provisioned_one():
    provisioned = yaml.safe_load((REPO / "dashboards/provisioning/datasources/clickhouse.yaml").read_text())
    [ds] = provisioned["datasources"]
    assert (ds["uid"], ds["type"]) == (DATASOURCE_UID, DATASOURCE_TYPE)


def test_model_principal_and_node_are_variables_and_alerts_link_to_their_evidence():
    d = dashboards()
    soc = d["ramparts-alerts"]
    assert {"model", "principal", "node", "entity_type", "entity"} <= {v["name"] for v in soc["templating"]["list"]}
    assert {"node"} <= {v["name"] for v in d["ramparts-compute"]["templating"]["list"]}
    links = [prop["value"][0]["url"] for p in soc["panels"] for o in p["fieldConfig"]["overrides"]
             for prop in o["properties"] if prop["id"] == "links"]
    assert links and all(u.startswith("/d/ramparts-evidence/") and "var-alert_id=${__value.raw}" in u for u in links)
    # Slack's "Open in Grafana" (alerting.dashboard_url) names this uid.
    from ramparts.config import load_config
    assert load_config(None, env={}).alerting.dashboard_url.endswith("/d/" + soc["uid"])


def test_compose_mounts_the_provisioning_and_dashboards_that_exist():
    compose = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    mounts = {v.split(":")[1]: v.split(":")[0] for v in compose["services"]["grafana"]["volumes"] if v.startswith(".")}
    provider = yaml.safe_load((REPO / "dashboards/provisioning/dashboards/ramparts.yaml").read_text())
    path = provider["providers"][0]["options"]["path"]
    assert (REPO / mounts[path]).resolve() == (REPO / "dashboards").resolve()
    assert (REPO / mounts["/etc/grafana/provisioning"] / "datasources" / "clickhouse.yaml").is_file()
    assert all(p.parent == REPO / "dashboards" for p in COMMITTED)


# --- the macro expansion the panel tests rely on ------------------------------------------------

def test_conditional_all_drops_the_condition_for_all_and_empty_and_keeps_it_otherwise():
    sql = "WHERE $__conditionalAll(m IN (${model:sqlstring}), $model) AND $__conditionalAll(e = ${e:sqlstring}, $e)"
    every = Request(0, 1000, variables={"model": ALL, "e": ""}, options={"model": ["a", "b"]})
    assert expand(sql, every) == "WHERE 1=1 AND 1=1"
    one = Request(0, 1000, variables={"model": ["a", "it's"], "e": "x"})
    assert expand(sql, one) == "WHERE m IN ('a','it''s') AND e = 'x'"


def test_backend_macros_expand_as_the_plugin_does():
    req = Request(from_ms=1_700_000_000_123, to_ms=1_700_000_060_999, interval_s=30)
    assert expand("$__timeFilter(ts)", req) == "ts >= toDateTime(1700000000) AND ts <= toDateTime(1700000060)"
    assert expand("$__timeInterval(ts)", req) == "toStartOfInterval(toDateTime(ts), INTERVAL 30 second)"
    assert expand("$__fromTime $__toTime $__interval_s", req) == "toDateTime(1700000000) toDateTime(1700000060) 30"
    assert expand("$__timeFilter_ms(ts)", req) == (
        "ts >= fromUnixTimestamp64Milli(1700000000123) AND ts <= fromUnixTimestamp64Milli(1700000060999)")
    with pytest.raises(KeyError, match="undefined"):
        expand("WHERE x = $undefined", req)


# --- push, against a stand-in for Grafana's HTTP API ------------------------------------------------

class GrafanaStandIn(BaseHTTPRequestHandler):
    """A stand-in for Grafana's HTTP API (no Grafana server runs here): it records each request and
    answers the endpoints push calls as Grafana does: GET datasource/folder by uid (404 when
    absent), POST /api/datasources, PUT /api/datasources/uid/UID, POST /api/folders, POST
    /api/dashboards/db."""

    def _answer(self, status: int, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _record(self) -> dict | None:
        n = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(n)) if n else None
        self.server.requests.append((self.command, self.path, self.headers.get("Authorization"), body))
        return body

    def do_GET(self):
        self._record()
        state = self.server.state
        if self.path == f"/api/datasources/uid/{DATASOURCE_UID}":
            return self._answer(200, state["ds"]) if state.get("ds") else self._answer(404, {"message": "Data source not found"})
        if self.path == "/api/folders/ramparts":
            return self._answer(200, state["folder"]) if state.get("folder") else self._answer(404, {"message": "folder not found"})
        self._answer(404, {"message": "Not found"})

    def do_POST(self):
        body = self._record()
        if self.path == "/api/datasources":
            self.server.state["ds"] = body
            return self._answer(200, {"message": "Datasource added", "id": 1, "datasource": body})
        if self.path == "/api/folders":
            self.server.state["folder"] = body
            return self._answer(200, {"uid": body["uid"], "title": body["title"]})
        if self.path == "/api/dashboards/db":
            if self.server.state.get("folder") is None or body["folderUid"] != self.server.state["folder"]["uid"]:
                return self._answer(400, {"message": "folder not found"})
            uid = body["dashboard"]["uid"]
            return self._answer(200, {"status": "success", "uid": uid, "url": f"/d/{uid}/x", "version": 1})
        self._answer(404, {"message": "Not found"})

    def do_PUT(self):
        body = self._record()
        if self.path == f"/api/datasources/uid/{DATASOURCE_UID}":
            self.server.state["ds"] = body
            return self._answer(200, {"message": "Datasource updated"})
        self._answer(404, {"message": "Not found"})

    def log_message(self, *args):
        pass


@pytest.fixture
def grafana():
    server = ThreadingHTTPServer(("127.0.0.1", 0), GrafanaStandIn)
    server.requests, server.state = [], {}
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()
    thread.join()


def test_push_creates_the_datasource_folder_and_every_dashboard_then_updates(grafana, monkeypatch, capsys):
    url = f"http://127.0.0.1:{grafana.server_address[1]}"
    monkeypatch.setenv("CLICKHOUSE_PASSWORD", "s3cret")
    assert main(["dashboards", "push", "--url", url, "--token", "glsa_test"]) == 0
    calls = [(m, p) for m, p, _, _ in grafana.requests]
    assert calls[:4] == [("GET", f"/api/datasources/uid/{DATASOURCE_UID}"), ("POST", "/api/datasources"),
                         ("GET", "/api/folders/ramparts"), ("POST", "/api/folders")]
    uploaded = [b["dashboard"]["uid"] for m, p, _, b in grafana.requests if p == "/api/dashboards/db"]
    assert sorted(uploaded) == sorted(dashboards())
    assert all(a == "Bearer glsa_test" for _, _, a, _ in grafana.requests)
    ds = grafana.state["ds"]
    assert (ds["uid"], ds["type"], ds["jsonData"]["host"], ds["jsonData"]["port"]) == (
        DATASOURCE_UID, DATASOURCE_TYPE, "clickhouse", 9000)
    assert ds["secureJsonData"] == {"password": "s3cret"}
    assert all(b["overwrite"] and b["dashboard"]["id"] is None for _, p, _, b in grafana.requests if p == "/api/dashboards/db")
    assert "s3cret" not in capsys.readouterr().out
    # A second push updates the datasource in place and creates nothing.
    grafana.requests.clear()
    assert main(["dashboards", "push", "--url", url, "--token", "glsa_test"]) == 0
    calls = [(m, p) for m, p, _, _ in grafana.requests]
    assert ("PUT", f"/api/datasources/uid/{DATASOURCE_UID}") in calls
    assert ("POST", "/api/datasources") not in calls and ("POST", "/api/folders") not in calls


def test_push_without_a_token_or_to_a_refusing_grafana_fails_with_a_message(grafana, monkeypatch, capsys):
    monkeypatch.delenv("GRAFANA_TOKEN", raising=False)
    url = f"http://127.0.0.1:{grafana.server_address[1]}"
    assert main(["dashboards", "push", "--url", url]) == 1
    assert "no Grafana token" in capsys.readouterr().err
    # Dashboards into a folder that the stand-in does not have: Grafana answers 400.
    grafana.state["folder"] = {"uid": "elsewhere", "title": "x"}
    assert main(["dashboards", "push", "--url", url, "--token", "t", "--no-datasource"]) == 1
    err = capsys.readouterr().err
    assert "refused the upload (HTTP 400)" in err and "folder not found" in err
    assert not any(p.startswith("/api/datasources") for _, p, _, _ in grafana.requests)
