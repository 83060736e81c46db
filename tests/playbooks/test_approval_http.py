"""The approval endpoint: a real HTTP server on loopback, bearer token required."""

import json
import urllib.error
import urllib.request

import pytest

from ramparts.playbooks.approval import make_server, serve_in_thread

from .helpers import incident
from .test_engine import hook, posts

TOKEN = "approve-token-abc123"


def call(url, token=None, body=None, method="POST"):
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    req = urllib.request.Request(url, method=method, headers=headers,
                                 data=json.dumps(body).encode() if body is not None else None)
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


@pytest.fixture
def endpoint(harness, api):
    a = api()
    hook(harness, a.url, mode="approve")
    eng = harness.open()
    server = make_server(eng, TOKEN)
    serve_in_thread(server)
    yield eng, a, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_approve_over_http_needs_the_token(endpoint):
    eng, a, base = endpoint
    rid = eng.handle(incident())[0]
    assert call(f"{base}/runs/{rid}/approve")[0] == 401
    assert call(f"{base}/runs/{rid}/approve", token="wrong")[0] == 401
    assert a.requests == []
    status, body = call(f"{base}/runs?status=awaiting_approval", token=TOKEN, method="GET")
    assert status == 200 and [r["id"] for r in body["runs"]] == [rid]
    status, body = call(f"{base}/runs/{rid}/approve", token=TOKEN, body={"by": "alice@soc"})
    assert status == 200 and body["run"]["status"] == "done" and body["run"]["approved_by"] == "alice@soc"
    assert len(posts(a)) == 1
    assert call(f"{base}/runs/{rid}/approve", token=TOKEN)[0] == 409  # decided once
    assert all(TOKEN not in str(r) for r in eng.audit.records())


def test_deny_over_http(endpoint):
    eng, a, base = endpoint
    rid = eng.handle(incident())[0]
    assert call(f"{base}/runs/{rid}/deny", token=TOKEN)[0] == 200
    assert a.requests == [] and eng.state.run(rid)["status"] == "denied"
    assert call(f"{base}/runs/run-0000000000000000/approve", token=TOKEN)[0] == 404
