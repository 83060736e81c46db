"""The engine against real loopback HTTP receivers and a real chdb audit log.

Shows: a redelivered incident does not act twice; an approval-mode playbook does nothing
until approved (and nothing when denied); dry-run acts on nothing; the per-target limit
stops loops; an escalation lets a `when` step run; a revert timer fires after a restart;
a tampered audit record is detected; secrets reach neither the audit log nor the state.
"""

from ramparts.playbooks.engine import run_id_of

from .helpers import incident

HTTP_PB = """\
name: hook
trigger: {{detectors: ["extraction.*"], min_severity: medium, entity_types: [principal]}}
mode: {mode}
{extra}
steps:
  - action: http.request
    params:
      url: "{url}/block/${{entity.id}}"
      body: {{incident: "${{id}}", severity: "${{severity}}"}}
      target: "principal:${{entity.id}}"
      revert: {{method: DELETE, url: "{url}/block/${{entity.id}}"}}
"""


def hook(h, api_url, mode="auto", extra=""):
    h.playbook("hook", HTTP_PB.format(mode=mode, url=api_url, extra=extra))


def posts(api):
    return [r for r in api.requests if r["method"] == "POST"]


def test_redelivered_incident_does_not_act_twice(harness, api):
    a = api()
    hook(harness, a.url)
    eng = harness.open()
    inc = incident()
    assert eng.handle(inc) == [run_id_of("inc-1", "hook")]
    eng.handle(inc)
    eng.handle({**inc, "event_count": 99})  # an update of the same incident
    assert len(posts(a)) == 1 and posts(a)[0]["path"] == "/block/key-alice"
    assert posts(a)[0]["body"] == {"incident": "inc-1", "severity": "medium"}
    # ... also across a restart of the engine (the steps are on disk).
    harness.close()
    harness.open().handle(inc)
    assert len(posts(a)) == 1


def test_trigger_filters_detector_severity_and_entity(harness, api):
    a = api()
    hook(harness, a.url)
    eng = harness.open()
    assert eng.handle(incident(detector="drift.psi")) == []
    assert eng.handle(incident(severity="low")) == []
    assert eng.handle(incident(etype="model", eid="m:1")) == []
    assert a.requests == []


def test_approval_mode_waits_until_approved(harness, api):
    a = api()
    hook(harness, a.url, mode="approve")
    eng = harness.open()
    rid = eng.handle(incident())[0]
    eng.handle(incident())
    assert a.requests == [] and eng.state.run(rid)["status"] == "awaiting_approval"
    # a restart keeps the request waiting; approval from the new process acts once
    harness.close()
    eng = harness.open()
    assert a.requests == []
    eng.approve(rid, "oncall-bob")
    assert len(posts(a)) == 1 and eng.state.run(rid)["status"] == "done"
    decisions = [(r["decision"], r["actor"]) for r in eng.audit.records(rid)]
    assert decisions == [("matched", "engine"), ("approval_requested", "engine"), ("approved", "oncall-bob"),
                         ("executed", "engine")]


def test_denied_run_never_acts(harness, api):
    a = api()
    hook(harness, a.url, mode="approve")
    eng = harness.open()
    rid = eng.handle(incident())[0]
    eng.deny(rid, "oncall-bob")
    eng.handle(incident(severity="critical"))
    assert a.requests == [] and eng.state.run(rid)["status"] == "denied"
    # the actions table (what the playbooks dashboard counts as pending) settles too
    rows = eng.sink.query("SELECT status, detail FROM ramparts.actions FINAL")
    assert [r["status"] for r in rows] == ["denied"] and "oncall-bob" in rows[0]["detail"]


def test_dry_run_records_what_it_would_do_and_does_nothing(harness, api):
    a = api()
    hook(harness, a.url, mode="dry-run")
    eng = harness.open()
    rid = eng.handle(incident())[0]
    assert a.requests == []
    rec = [r for r in eng.audit.records(rid) if r["decision"] == "dry_run"]
    assert len(rec) == 1 and "/block/key-alice" in rec[0]["detail"]


def test_per_target_limit_stops_loops(harness, api):
    a = api()
    hook(harness, a.url)
    harness.extra = {"max_actions_per_target_per_hour": 2}
    eng = harness.open()
    for n in range(5):  # five incidents about one principal: a loop, say, re-alerting on its own revocation
        eng.handle(incident(iid=f"inc-{n}"))
        harness.clock.advance(60)
    assert len(posts(a)) == 2
    limited = [r for r in eng.audit.records() if r["decision"] == "limited"]
    assert len(limited) == 3 and limited[0]["target"] == "principal:key-alice"
    harness.clock.advance(3600)  # an hour later the budget is back
    eng.handle(incident(iid="inc-later"))
    assert len(posts(a)) == 3


def test_escalation_runs_the_high_severity_step(harness, api):
    a = api()
    harness.playbook("esc", f"""\
name: esc
trigger: {{detectors: ["extraction.*"], min_severity: medium}}
mode: auto
steps:
  - action: http.request
    params: {{url: "{a.url}/limit/${{entity.id}}"}}
  - action: http.request
    when: {{min_severity: high}}
    params: {{url: "{a.url}/revoke/${{entity.id}}"}}
""")
    eng = harness.open()
    eng.handle(incident(severity="medium"))
    assert [r["path"] for r in a.requests] == ["/limit/key-alice"]
    eng.handle(incident(severity="high"))
    eng.handle(incident(severity="medium"))  # a later, milder update does not undo the escalation
    assert [r["path"] for r in a.requests] == ["/limit/key-alice", "/revoke/key-alice"]


def test_revert_timer_fires_after_a_restart(harness, api):
    a = api()
    hook(harness, a.url, extra="revert_after: 30m")
    eng = harness.open()
    rid = eng.handle(incident())[0]
    assert eng.tick() == []
    harness.close()  # the process goes away with the timer pending
    harness.clock.advance(29 * 60)
    eng = harness.open()
    assert eng.tick() == [] and [r["method"] for r in a.requests] == ["POST"]
    harness.clock.advance(61)
    assert [r["status"] for r in eng.tick()] == ["reverted"]
    assert [(r["method"], r["path"]) for r in a.requests] == [("POST", "/block/key-alice"), ("DELETE", "/block/key-alice")]
    assert eng.tick() == []  # reverted once
    assert eng.state.steps(rid)[0]["status"] == "reverted"


def test_tampered_audit_records_are_detected(harness, api):
    a = api()
    hook(harness, a.url)
    eng = harness.open()
    for n in range(3):
        eng.handle(incident(iid=f"inc-{n}", eid=f"key-{n}"))
    assert eng.audit.verify() == []
    b = eng.audit.backend
    table = eng.audit.table
    b.command(f"ALTER TABLE {table} UPDATE target = 'principal:someone-else' WHERE seq = 2 SETTINGS mutations_sync = 1")
    problems = eng.audit.verify()
    assert any("record 2" in p and "edited" in p for p in problems), problems
    b.command(f"ALTER TABLE {table} DELETE WHERE seq = 2 SETTINGS mutations_sync = 1")
    assert any("records 2..2 are missing" in p for p in eng.audit.verify())
    # a deleted tail is caught by the anchor
    harness.close()
    eng = harness.open()
    b = eng.audit.backend
    last = eng.audit.head.audit_head()[0]
    b.command(f"ALTER TABLE {table} DELETE WHERE seq = {last} SETTINGS mutations_sync = 1")
    assert any(f"records {last}..{last} are missing" in p for p in eng.audit.verify())


def test_secrets_reach_neither_the_audit_log_nor_the_state(harness, api):
    secret = "sk-live-very-secret-token-123"
    a = api(lambda m, p, h, b: (500, {"echo": h.get("authorization")}))  # a receiver that echoes the secret back
    hook(harness, a.url)
    harness.settings = {"http": {"headers_env": {"Authorization": "HOOK_TOKEN"}}}
    harness.env = {"HOOK_TOKEN": secret}
    eng = harness.open()
    rid = eng.handle(incident())[0]
    assert a.requests[0]["headers"]["authorization"] == secret
    assert eng.state.run(rid)["status"] == "failed"
    records = eng.audit.records()
    failed = [r for r in records if r["decision"] == "failed"]
    assert failed and "HTTP 500" in failed[0]["detail"] and "***" in failed[0]["detail"]
    assert all(secret not in str(r) for r in records)
    harness.close()
    raw = b"".join(p.read_bytes() for p in (harness.tmp / "state").iterdir())
    assert secret.encode() not in raw


def test_incident_without_id_acts_on_nothing(harness, api):
    a = api()
    hook(harness, a.url)
    eng = harness.open()
    assert eng.handle({**incident(), "id": ""}) == []
    assert a.requests == []
