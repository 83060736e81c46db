"""Replay's alerts and detector state on seeded scenarios, against a golden file.

The golden file (``tests/golden/replay_detectors.json``) was written by the code *before*
the throughput work of issue 3 (commit 4239558: per-event extraction, per-event volume
counting), so this test says that making the pipeline fast did not change what it detects:
every alert of the covered detectors (id, severity, score, summary, evidence, window, counts)
and a digest of every state value they keep, after replaying the whole scenario.

It covers the detectors whose code was rewritten for speed. A change that is *meant* to
change what one of them detects must write the file again, and say so in its commit:

    .venv/bin/python -m tests.test_replay_golden --write
"""

from __future__ import annotations

import glob
import hashlib
import os
import sys
import tempfile
from pathlib import Path

import orjson
import pytest

from ramparts.config import load_config
from ramparts.detectors import build_detectors
from ramparts.detectors.base import DictState
from ramparts.streams.pipeline import Pipeline, alert_to_wire
from ramparts.streams.replay import Progress, replay
from ramparts.streams.simulate import simulate

GOLDEN = Path(__file__).parent / "golden" / "replay_detectors.json"
SCENARIOS = ("mix", "extraction", "drift")
COVERED = ("extraction.queries", "extraction.volume", "drift.model")
HASH_KEY = "golden-hash-key"


def replay_scenario(name: str, work: Path) -> dict:
    """The covered detectors' alerts (wire form, first-event order) and state digests."""
    simulate(name, str(work / f"{name}.json"), seed=7, start="2026-11-01T00:00:00Z")
    files = sorted(glob.glob(str(work / f"{name}.*.log")))
    config = load_config(None, env={"RAMPARTS_HASH_KEY": HASH_KEY})
    state = DictState()
    # The detectors' own alerts, before the incident layer of issue 7 (which merges and counts
    # them per incident): what this file guards is what the detectors raise.
    pipeline = Pipeline(build_detectors(config))
    process = pipeline.process_batch
    pipeline.process_batch = lambda events, _state: process(events, state)  # keep the state to digest it
    report = replay(files, config=config, pipeline=pipeline, progress=Progress(None, enabled=False),
                    dead_letter_path=os.devnull)
    alerts = sorted((alert_to_wire(a) for a in report.alerts.values() if a["detector"] in COVERED),
                    key=lambda a: (a["first_event_ts"], a["id"]))
    digests = {}
    for det in COVERED:
        items = sorted((k, v) for k, v in state.data.items() if k.startswith(det + "/"))
        digests[det] = [len(items), hashlib.sha256(orjson.dumps(items, option=orjson.OPT_SORT_KEYS)).hexdigest()]
    return {"alerts": alerts, "state": digests}


@pytest.mark.parametrize("name", SCENARIOS)
def test_replay_detects_what_it_did_before_the_throughput_work(name, tmp_path):
    golden = orjson.loads(GOLDEN.read_bytes())[name]
    got = replay_scenario(name, tmp_path)
    assert [(a["detector"], a["id"], a["event_count"], a["severity"]) for a in got["alerts"]] == \
        [(a["detector"], a["id"], a["event_count"], a["severity"]) for a in golden["alerts"]]
    assert got["alerts"] == golden["alerts"]
    assert got["state"] == golden["state"]
    assert golden["alerts"] or name == "mix", "the golden file must hold alerts to compare"


if __name__ == "__main__":
    if sys.argv[1:] != ["--write"]:
        sys.exit("usage: python -m tests.test_replay_golden --write")
    with tempfile.TemporaryDirectory() as tmp:
        out = {name: replay_scenario(name, Path(tmp)) for name in SCENARIOS}
    GOLDEN.write_bytes(orjson.dumps(out, option=orjson.OPT_SORT_KEYS | orjson.OPT_INDENT_2) + b"\n")
    print(f"wrote {GOLDEN}")
