"""`ramparts playbook ...` end to end, in-process: run, approve, revert, audit --verify."""

import json

from ramparts.cli import main

from .helpers import incident
from .test_engine import hook, posts


def test_cli_run_approve_revert_and_verify(harness, api, capsys, tmp_path):
    a = api()
    hook(harness, a.url, mode="approve")
    cfg = str(tmp_path / "ramparts.yaml")
    harness.config()  # writes the config file
    (tmp_path / "inc.jsonl").write_text(json.dumps(incident()) + "\n" + json.dumps(incident()) + "\n")
    assert main(["playbook", "list", "--config", cfg]) == 0
    assert "hook" in capsys.readouterr().out
    assert main(["playbook", "run", "--config", cfg, "--incident", str(tmp_path / "inc.jsonl")]) == 0
    out = capsys.readouterr().out
    rid = out.split()[0]
    assert "awaiting_approval" in out and a.requests == []
    assert main(["playbook", "list", "--runs", "--config", cfg, "--status", "awaiting_approval"]) == 0
    assert rid in capsys.readouterr().out
    assert main(["playbook", "approve", rid, "--by", "bob", "--config", cfg]) == 0
    assert len(posts(a)) == 1
    assert main(["playbook", "revert", rid, "--by", "bob", "--config", cfg]) == 0
    assert [r["method"] for r in a.requests] == ["POST", "DELETE"]
    capsys.readouterr()
    assert main(["playbook", "audit", "--verify", "--config", cfg]) == 0
    assert "intact" in capsys.readouterr().out
    assert main(["playbook", "audit", "--json", "--config", cfg]) == 0
    decisions = [json.loads(line)["decision"] for line in capsys.readouterr().out.splitlines()]
    assert decisions == ["matched", "approval_requested", "approved", "executed", "reverted"]
    # tamper: edit one record directly in the store
    eng = harness.open()
    eng.audit.backend.command(f"ALTER TABLE {eng.audit.table} UPDATE actor = 'mallory' WHERE seq = 3 "
                              "SETTINGS mutations_sync = 1")
    harness.close()
    assert main(["playbook", "audit", "--verify", "--config", cfg]) == 1
    assert "TAMPERED: record 3" in capsys.readouterr().out


def test_cli_bad_playbook_is_one_clear_line(harness, capsys, tmp_path):
    harness.playbook("bad", "name: bad\ntrigger: {}\nsteps:\n  - action: nginx.revoke\n    params: {principle: x}\n")
    harness.config()
    assert main(["playbook", "list", "--config", str(tmp_path / "ramparts.yaml")]) == 1
    err = capsys.readouterr().err
    assert "bad.yaml:5:" in err and "unknown parameter 'principle'" in err and "did you mean 'principal'" in err
