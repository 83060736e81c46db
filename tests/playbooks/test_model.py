"""Playbook files: the shipped defaults load; bad files fail with file, line, field and what was meant."""

import pytest

from ramparts.playbooks.actions import action_params
from ramparts.playbooks.model import PlaybookError, load_playbooks, parse_playbook

GOOD = """\
name: t
trigger: {detectors: ["extraction.*"], min_severity: medium, entity_types: [principal]}
mode: auto
revert_after: 15m
steps:
  - action: nginx.revoke
    params: {principal: "${entity.id}"}
"""


def parse(text):
    return parse_playbook(text, "pb.yaml", action_params())


def test_shipped_playbooks_load_with_the_defaults_the_issue_asks_for():
    pbs = {p.name: p for p in load_playbooks(None, action_params())}
    ex = pbs["extraction-response"]
    assert [s.action for s in ex.steps][:2] == ["nginx.rate_limit", "nginx.revoke"]
    assert ex.steps[1].when.min_severity == "high" and ex.mode == "auto"
    assert [s.action for s in pbs["stuffing-response"].steps] == ["nginx.revoke"]
    gpu = pbs["gpu-unauthorized-response"]
    assert gpu.mode == "approve" and gpu.step_mode(0) == "auto" and gpu.steps[0].action == "notify"
    drift = pbs["drift-response"]
    assert drift.mode == "approve" and drift.steps[1].action == "mlflow.quarantine" and drift.step_mode(0) == "auto"


def test_good_playbook_parses_durations_and_defaults():
    pb = parse(GOOD)
    assert pb.revert_after == 900.0 and pb.step_name(0) == "1-nginx.revoke"
    assert parse(GOOD.replace("mode: auto\n", "")).mode == "dry-run"  # the safe default


@pytest.mark.parametrize("bad, line, words", [
    (GOOD.replace("mode: auto", "mdoe: auto"), 3, ["unknown field 'mdoe'", "did you mean 'mode'"]),
    (GOOD.replace("min_severity: medium", "min_severity: severe"), 2, ["trigger.min_severity", "'severe' is not a severity"]),
    (GOOD.replace("nginx.revoke", "nginx.revok"), 6, ["unknown action 'nginx.revok'", "did you mean 'nginx.revoke'"]),
    (GOOD.replace("${entity.id}", "${entity_id}"), 7, ["unknown variable 'entity_id'"]),
    (GOOD.replace("principal: ", "princpal: "), 7, ["unknown parameter 'princpal'", "did you mean 'principal'"]),
    (GOOD.replace("{principal: \"${entity.id}\"}", "{}"), 6, ["needs parameter 'principal'"]),
    (GOOD.replace("revert_after: 15m", "revert_after: soon"), 4, ["revert_after", "not a duration"]),
    (GOOD.replace("mode: auto", "mode: yolo"), 3, ["'yolo' is not a mode", "auto, approve, dry-run"]),
    (GOOD + "  - action: [\n", 9, ["not valid YAML"]),
])
def test_bad_playbooks_name_file_line_and_field(bad, line, words):
    with pytest.raises(PlaybookError) as e:
        parse(bad)
    msg = str(e.value)
    assert msg.startswith(f"pb.yaml:{line}:"), msg
    for w in words:
        assert w in msg, msg


def test_duplicate_names_across_files(tmp_path):
    (tmp_path / "a.yaml").write_text(GOOD)
    (tmp_path / "b.yaml").write_text(GOOD)
    with pytest.raises(PlaybookError, match="also defined in"):
        load_playbooks(tmp_path, action_params())
