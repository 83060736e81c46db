"""mlflow.quarantine against a real MLflow tracking/registry server on loopback (sqlite backend).

A registered model version loses its serving alias and gains the quarantine tag; revert
puts both back. The server starts once for this module (it takes seconds) and is stopped
with its whole process group.
"""

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from ramparts.playbooks.actions.mlflow import RESTORE_TAG, TAG
from ramparts.streams.broker import free_port

from .helpers import incident

mlflow = pytest.importorskip("mlflow", reason="mlflow is in the test extras: pip install -e '.[test]'")


@pytest.fixture(scope="module")
def mlflow_server(tmp_path_factory):
    d = tmp_path_factory.mktemp("mlflow")
    port = free_port()
    exe = Path(sys.executable).with_name("mlflow")
    log = open(d / "server.log", "wb")
    proc = subprocess.Popen([str(exe), "server", "--backend-store-uri", f"sqlite:///{d}/mlflow.db",
                             "--artifacts-destination", str(d / "artifacts"), "--host", "127.0.0.1",
                             "--port", str(port), "--workers", "1"],
                            cwd=d, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(240):  # bounded: up to ~2 min on a loaded machine
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if proc.poll() is not None:
                raise RuntimeError((d / "server.log").read_text()[-2000:])
            time.sleep(0.5)
        else:
            raise RuntimeError("the MLflow server did not come up")
        yield url
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        log.close()


def api(url, method, path, body=None, query=""):
    req = urllib.request.Request(f"{url}/api/2.0/mlflow/{path}{query}", method=method,
                                 data=json.dumps(body).encode() if body is not None else None,
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as r:
        return json.loads(r.read() or b"{}")


def version(url, name, v):
    return api(url, "GET", "model-versions/get", query=f"?name={name}&version={v}")["model_version"]


DRIFT = """\
name: drift
trigger: {detectors: ["drift.*"], min_severity: high, entity_types: [model]}
mode: approve
steps:
  - action: mlflow.quarantine
    params: {model: "${entity.id}"}
"""


def test_quarantine_removes_alias_tags_and_revert_restores(harness, mlflow_server):
    url = mlflow_server
    api(url, "POST", "registered-models/create", {"name": "fraud"})
    for _ in range(2):
        api(url, "POST", "model-versions/create", {"name": "fraud", "source": "s3://models/fraud"})
    api(url, "POST", "registered-models/alias", {"name": "fraud", "alias": "champion", "version": "2"})
    api(url, "POST", "registered-models/alias", {"name": "fraud", "alias": "canary", "version": "1"})
    harness.playbook("drift", DRIFT)
    harness.settings = {"mlflow": {"tracking_uri": url}}
    eng = harness.open()
    rid = eng.handle(incident(detector="drift.psi", severity="high", etype="model", eid="fraud:2", iid="inc-d"))[0]
    assert version(url, "fraud", "2")["aliases"] == ["champion"]  # waiting for approval: untouched
    eng.approve(rid, "ml-oncall")
    v2 = version(url, "fraud", "2")
    tags = {t["key"]: t["value"] for t in v2.get("tags", [])}
    assert "aliases" not in v2 or v2["aliases"] == []
    assert tags[TAG] == "inc-d" and json.loads(tags[RESTORE_TAG]) == ["champion"]
    assert version(url, "fraud", "1")["aliases"] == ["canary"]  # another version is left alone
    executed = [r for r in eng.audit.records(rid) if r["decision"] == "executed"][0]
    assert json.loads(executed["detail"])["restore"]["aliases"] == ["champion"]

    assert [r["status"] for r in eng.revert(rid, "ml-oncall")] == ["reverted"]
    v2 = version(url, "fraud", "2")
    assert v2["aliases"] == ["champion"]
    assert not {TAG, RESTORE_TAG} & {t["key"] for t in v2.get("tags", [])}
