"""``ramparts alerts list|show|ack`` over an outbox, and the outputs part of the config."""

from __future__ import annotations

import orjson
import pytest
import yaml

from ramparts.alerting.incidents import IncidentTracker
from ramparts.alerting.outbox import Outbox
from ramparts.cli import main
from ramparts.config import load_config
from ramparts.detectors.base import DictState
from ramparts.errors import ConfigError
from ramparts.sinks.outputs import build_outputs

from .test_incidents import alert


@pytest.fixture
def setup(tmp_path):
    cfg = tmp_path / "ramparts.yaml"
    cfg.write_text(yaml.safe_dump({
        "alerting": {"outbox_dir": str(tmp_path / "outbox")},
        "outputs": [{"type": "pagerduty", "url": "http://127.0.0.1:9/v2/enqueue", "secret_env": "PD_KEY_UNSET"},
                    {"type": "slack", "url_env": "SLACK_URL_UNSET", "min_severity": "critical"}]}))
    config = load_config(cfg)
    box = Outbox(config.alerting.outbox_dir)
    t, state = IncidentTracker(window_seconds=60), DictState()
    for batch in ([alert(1, entity="a"), alert(1, entity="b", sev="high")], [], []):
        out, notes = t.update(batch, state, now=alert(1)["ts"] if batch else alert(500)["ts"])
        box.accept(out, notes, build_outputs(config, resolve=False))
    return cfg, box


def test_list_show_and_ack(setup, capsys):
    cfg, box = setup
    assert main(["alerts", "list", "--config", str(cfg), "--json"]) == 0
    rows = [orjson.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert sorted(r["entity"]["id"] for r in rows) == ["a", "b"] and {r["status"] for r in rows} == {"resolved"}
    assert main(["alerts", "list", "--config", str(cfg), "--severity", "high"]) == 0
    table = capsys.readouterr().out
    assert "src_ip:b" in table and "src_ip:a" not in table
    inc = [r for r in rows if r["entity"]["id"] == "b"][0]["id"]
    assert main(["alerts", "show", inc, "--config", str(cfg)]) == 0
    shown = orjson.loads(capsys.readouterr().out)
    assert {(n["output"], n["event"]) for n in shown["notifications"]} == {("pagerduty", "firing"),
                                                                          ("pagerduty", "resolved")}
    assert shown["alert"]["ts"].endswith("Z")
    assert main(["alerts", "ack", inc, "--config", str(cfg), "--by", "oncall@example.com"]) == 0
    assert box.incident(inc)["acked_by"] == "oncall@example.com"
    assert ("pagerduty", "acknowledged") in {(n["output"], n["event"]) for n in box.notifications(inc)}
    assert main(["alerts", "ack", "nope", "--config", str(cfg)]) == 1
    assert "no incident 'nope'" in capsys.readouterr().err
    assert main(["alerts", "list", "--outbox", str(cfg.parent / "elsewhere")]) == 1
    assert "no outbox in" in capsys.readouterr().err


def test_pagerduty_defaults_to_the_public_events_endpoint(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text(yaml.safe_dump({"outputs": [{"type": "pagerduty", "secret": "k" * 32}]}))
    (out,) = build_outputs(load_config(p))
    assert out.url == "https://events.pagerduty.com/v2/enqueue" and out.secrets == ["k" * 32]


def test_sending_needs_the_secrets_and_says_which_is_missing(setup):
    cfg, _ = setup
    with pytest.raises(ConfigError, match="PD_KEY_UNSET"):
        build_outputs(load_config(cfg), env={})
    outs = build_outputs(load_config(cfg), env={"PD_KEY_UNSET": "k" * 32, "SLACK_URL_UNSET": "https://hooks.x/T/B/s"})
    assert [o.name for o in outs] == ["pagerduty", "slack"]
    assert "hooks.x" not in repr(outs) and "k" * 32 not in repr(outs)


def test_config_rejects_bad_outputs_with_a_hint(tmp_path):
    def load(outputs):
        p = tmp_path / "c.yaml"
        p.write_text(yaml.safe_dump({"outputs": outputs}))
        return load_config(p)

    with pytest.raises(ConfigError, match="did you mean 'min_severity'"):
        load([{"type": "webhook", "url": "http://x", "min_severty": "low"}])
    with pytest.raises(ConfigError, match="did you mean 'webhook'"):
        load([{"type": "webhok", "url": "http://x"}])
    with pytest.raises(ConfigError, match="routing key"):
        load([{"type": "pagerduty", "url": "http://x"}])
    with pytest.raises(ConfigError, match="distinct name"):
        load([{"type": "webhook", "url": "http://x"}, {"type": "webhook", "url": "http://y", "name": "webhook"}])
    c = load([{"type": "webhook", "url": "http://x", "secret": "whsec_abc"}, {"type": "webhook", "url": "http://y"}])
    assert c.output_names() == ["webhook", "webhook-2"]
    assert "whsec_abc" not in repr(c) and "whsec_abc" not in c.model_dump_json()
