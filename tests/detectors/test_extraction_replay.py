"""End to end: the simulated extraction scenario through `ramparts replay` raises one alert per
attack, on the labelled entity and within its interval, with its evidence, and none on benign
callers."""

from __future__ import annotations

import json
import subprocess
import sys

from ramparts.streams.simulate import simulate
from ramparts.timeutil import parse_iso


def test_replay_of_the_extraction_scenario_finds_every_attack_with_its_evidence(tmp_path):
    manifest = simulate("extraction", str(tmp_path / "ex.json"), seed=3, start="2026-11-20T09:00:00Z")
    files = [str(tmp_path / name) for name in manifest.files.values()]
    alerts_out = tmp_path / "alerts.jsonl"
    run = subprocess.run([sys.executable, "-m", "ramparts.cli", "replay", *files, "--alerts-out", str(alerts_out),
                          "--store", str(tmp_path / "store")], capture_output=True, text=True, timeout=600,
                         env={"RAMPARTS_HASH_KEY": "extraction-e2e-hash-key-0123456789", "PATH": "/usr/bin:/bin"})
    assert run.returncode == 0, run.stderr[-2000:]
    alerts = [json.loads(l) for l in alerts_out.read_text().splitlines()]
    extraction = [a for a in alerts if a["detector"] == "extraction.queries"]
    labels = [l for l in manifest.attacks if l.detector == "extraction.queries"]
    assert len(labels) == 5
    by_entity = {(a["entity"]["type"], a["entity"]["id"]): a for a in extraction}
    for label in labels:
        a = by_entity.get((label.entity_type, label.entity_id))
        assert a is not None, f"{label.name} was not caught"
        assert label.start <= parse_iso(a["first_event_ts"]) <= label.end + 60 * 10**9, label.name
        ev = a["evidence"]
        assert {"statistic", "value", "threshold", "queries", "model"} <= set(ev), ev
        assert ev["model"] == "digits-mlp" and ev["queries"] >= 20
        assert ev["value"] >= ev["threshold"] if ev["statistic"] != "distance_normality" else True
    # Nothing else: the benign digits clients (natural, repeating, batch) and the baseline's
    # KServe callers raise no extraction alert.
    assert len(extraction) == len(labels), sorted(by_entity)


def test_a_day_on_which_every_caller_sends_other_inputs_raises_no_extraction_alert(tmp_path):
    """Two days of the mix scenario, the second simulated with another seed: every KServe
    caller's feature means move at once (drift, not theft). The peers move with each caller,
    and the ranges are learnt again."""
    from ramparts.config import load_config
    from ramparts.streams.pipeline import Pipeline
    from ramparts.streams.replay import Progress, replay

    files = []
    for day, seed in (("2026-11-20", 7), ("2026-11-21", 8)):
        manifest = simulate("mix", str(tmp_path / f"{day}.json"), seed=seed, start=f"{day}T10:00:00Z")
        files += [str(tmp_path / name) for name in manifest.files.values()]
    config = load_config(None, env={"RAMPARTS_HASH_KEY": "extraction-shift-hash-key-0123456789"})
    pipeline = Pipeline.from_config(config)
    report = replay(files, config=config, progress=Progress(None, enabled=False),
                    dead_letter_path=str(tmp_path / "dead.jsonl"), pipeline=pipeline)
    assert [a for a in report.alerts.values() if a["detector"] == "extraction.queries"] == []
    detector = next(d for d in pipeline.detectors if d.name == "extraction.queries")
    epochs = {model: p.epoch for (model, _w), p in detector.populations.items()}
    assert epochs == {"fraud-xgb": 1, "churn-lgbm": 1}, epochs
