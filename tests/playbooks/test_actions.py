"""The other actions: filesystem model repository, LiteLLM and Kong (loopback stand-ins built
from their documented admin APIs), and notify through a configured webhook output."""


from ramparts.playbooks.actions.model_repo import checksum

from .helpers import incident

REPO_PB = """\
name: repo
trigger: {detectors: ["drift.*"], min_severity: high, entity_types: [model]}
mode: auto
steps:
  - action: model_repo.quarantine
    params: {model: "${entity.id}"}
"""


def test_model_repo_moves_aside_with_checksum_and_restores(harness, tmp_path):
    root = tmp_path / "models"
    (root / "fraud" / "3").mkdir(parents=True)
    (root / "fraud" / "3" / "model.onnx").write_bytes(b"weights" * 100)
    (root / "fraud" / "3" / "config.pbtxt").write_text("name: fraud\n")
    digest = checksum(root / "fraud" / "3")
    harness.playbook("repo", REPO_PB)
    harness.settings = {"model_repo": {"root": str(root)}}
    eng = harness.open()
    rid = eng.handle(incident(detector="drift.ks", severity="high", etype="model", eid="fraud:3"))[0]
    assert not (root / "fraud" / "3").exists()
    aside = root / ".quarantine" / "fraud" / "3"
    assert (aside / "model.onnx").read_bytes() == b"weights" * 100
    restore = eng.state.steps(rid)[0]["restore"]
    assert restore["sha256"] == digest
    assert [r["status"] for r in eng.revert(rid)] == ["reverted"]
    assert checksum(root / "fraud" / "3") == digest and not aside.exists()


def test_model_repo_refuses_to_restore_a_changed_copy(harness, tmp_path):
    root = tmp_path / "models"
    (root / "fraud").mkdir(parents=True)
    (root / "fraud" / "4").write_bytes(b"v4")
    harness.playbook("repo", REPO_PB)
    harness.settings = {"model_repo": {"root": str(root)}}
    eng = harness.open()
    rid = eng.handle(incident(detector="drift.ks", severity="high", etype="model", eid="fraud:4"))[0]
    (root / ".quarantine" / "fraud" / "4").write_bytes(b"tampered")
    r = eng.revert(rid)
    assert r[0]["status"] == "revert_failed" and "changed while in quarantine" in r[0]["error"]
    assert not (root / "fraud" / "4").exists()


def litellm_standin():
    """LiteLLM proxy stand-in: /key/block and /key/unblock, master key required (LiteLLM's documented shape)."""
    blocked = set()

    def route(method, path, headers, body):
        if headers.get("authorization") != "Bearer sk-master-1":
            return 401, {"error": {"message": "Authentication Error"}}
        if method == "POST" and path in ("/key/block", "/key/unblock"):
            (blocked.add if path == "/key/block" else blocked.discard)(body["key"])
            return 200, {"token": body["key"], "blocked": path == "/key/block"}
        return 404, {"detail": "Not Found"}
    return route, blocked


def test_litellm_block_and_unblock(harness, api):
    route, blocked = litellm_standin()
    a = api(route)
    harness.playbook("ll", """\
name: ll
trigger: {detectors: ["access.*"], min_severity: medium}
mode: auto
steps:
  - action: litellm.revoke
    params: {key: "${entity.id}"}
""")
    harness.settings = {"litellm": {"url": a.url, "master_key_env": "LITELLM_MASTER"}}
    harness.env = {"LITELLM_MASTER": "sk-master-1"}
    eng = harness.open()
    rid = eng.handle(incident(detector="access.stuffing", eid="hashed-token-9"))[0]
    assert blocked == {"hashed-token-9"}
    eng.revert(rid)
    assert blocked == set() and [r["path"] for r in a.requests] == ["/key/block", "/key/unblock"]
    assert all("sk-master-1" not in str(r) for r in eng.audit.records())


def kong_standin():
    """Kong Admin API stand-in: consumer ACL groups (POST/DELETE /consumers/{c}/acls[/{group}])."""
    groups: dict[str, set] = {}

    def route(method, path, headers, body):
        parts = path.strip("/").split("/")
        if parts[:1] != ["consumers"] or len(parts) < 3 or parts[2] != "acls":
            return 404, {"message": "Not found"}
        c = parts[1]
        if method == "POST" and len(parts) == 3:
            if body["group"] in groups.setdefault(c, set()):
                return 409, {"message": "UNIQUE violation detected"}
            groups[c].add(body["group"])
            return 201, {"group": body["group"], "consumer": {"id": c}}
        if method == "DELETE" and len(parts) == 4:
            if parts[3] not in groups.get(c, set()):
                return 404, {"message": "Not found"}
            groups[c].discard(parts[3])
            return 204, {}
        return 405, {"message": "Method not allowed"}
    return route, groups


def test_kong_acl_group_revoke_and_revert(harness, api):
    route, groups = kong_standin()
    a = api(route)
    harness.playbook("kong", """\
name: kong
trigger: {detectors: ["access.*"], min_severity: medium}
mode: auto
steps:
  - action: kong.revoke
    params: {consumer: "${entity.id}"}
""")
    harness.settings = {"kong": {"admin_url": a.url}}
    eng = harness.open()
    rid = eng.handle(incident(detector="access.stuffing", eid="consumer-7"))[0]
    assert groups == {"consumer-7": {"ramparts-revoked"}}
    eng.revert(rid)
    assert groups == {"consumer-7": set()}


def test_notify_goes_through_a_configured_webhook_output(harness, api):
    a = api()
    harness.playbook("gpu", """\
name: gpu
trigger: {detectors: ["gpu.*"], min_severity: medium}
mode: approve
steps:
  - action: notify
    mode: auto
    params: {message: "approve ${run_id} to cordon ${entity.id}"}
  - action: http.request
    params: {url: "http://127.0.0.1:9/never"}
""")
    harness.outputs = [{"type": "webhook", "url": a.url + "/hook", "secret_env": "HOOK_SECRET"}]
    harness.env = {"HOOK_SECRET": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"}
    eng = harness.open()
    rid = eng.handle(incident(detector="gpu.unauthorized", etype="gpu", eid="GPU-1"))[0]
    assert eng.state.run(rid)["status"] == "awaiting_approval"
    assert len(a.requests) == 1
    req = a.requests[0]
    assert req["path"] == "/hook" and "webhook-signature" in req["headers"]
    assert f"approve {rid} to cordon GPU-1" in req["body"]["data"]["alert"]["summary"]
    eng.handle(incident(detector="gpu.unauthorized", etype="gpu", eid="GPU-1"))
    assert len(a.requests) == 1  # notified once per run
