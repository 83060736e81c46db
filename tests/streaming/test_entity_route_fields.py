"""The entity route (``ramparts.events``) carries only what the entity-routed detectors read.

The parse stage stores the events whole, then sends each one on ``events`` with the fields the
enabled entity-routed detectors of its kind declare (``Detector.event_fields``, by
``Detector.kinds``) and those the pipeline reads: ``topics.entity_route_fields``. Nothing after
the hop reads another field: these tests replay seeded scenarios through the entity pipeline with
events cut that way (through the wire) and with whole events, and require a detector to read,
of events of the kinds it does not declare, no more than their kind.
"""

from __future__ import annotations

import glob

import pytest

from ramparts.config import load_config
from ramparts.detectors import build_detectors
from ramparts.detectors.base import DictState
from ramparts.events import EventBatch
from ramparts.streams import wire
from ramparts.streams.decode import decode_file
from ramparts.streams.pipeline import Pipeline
from ramparts.streams.simulate import simulate
from ramparts.streams.topics import SELECTED_BY, entity_route_fields
from tests.test_detector_contracts import DETECTOR_CLASSES, batches_of, make, run, stream

ENTITY_ROUTED = [c for c in DETECTOR_CLASSES if c.route == "entity"]
HASH_KEY = "golden-hash-key"


@pytest.mark.parametrize("cls", ENTITY_ROUTED, ids=lambda c: c.name)
def test_an_entity_routed_detector_declares_the_event_fields_it_reads(cls):
    # What it reads is checked by test_detector_contracts (test_a_detector_reads_only_the_event_fields_it_declares).
    fields = cls.event_fields
    assert isinstance(fields, tuple) and fields, f"{cls.name} must set event_fields"
    assert {"kind", "ts"} <= set(fields)
    assert len(set(fields)) == len(fields)


# The source each kind comes from (the contracts' noise draws kind and source apart).
SOURCE_OF = {"request": "envoy_json", "prediction": "kserve", "gpu": "dcgm", "workload": "k8s_pods"}


@pytest.mark.parametrize("cls", ENTITY_ROUTED, ids=lambda c: c.name)
def test_events_of_other_kinds_cut_to_what_every_event_keeps_change_nothing(cls):
    # The route keeps an event's fields by its kind: of an event of another kind than its own,
    # a detector gets only SELECTED_BY (kind, source, ts). Over its attack stream and the noise
    # around it, cut that way (its own kinds cut to its own fields), it raises the same alerts
    # and keeps the same state. (Which fields it reads: test_detector_contracts.)
    events = [e if e["kind"] in cls.kinds or e["kind"] not in SOURCE_OF else {**e, "source": SOURCE_OF[e["kind"]]}
              for e in stream(cls)]
    own = set(cls.event_fields) | set(SELECTED_BY)
    cut = [{k: v for k, v in e.items() if k in (own if e["kind"] in cls.kinds else SELECTED_BY)} for e in events]
    alerts, state = run(make(cls), batches_of(events, 500))
    cut_alerts, cut_state = run(make(cls), batches_of(cut, 500))
    assert cut_alerts == alerts
    assert cut_state.data == state.data
    assert any(e["kind"] not in cls.kinds for e in events)


def _events(name: str, work) -> list[EventBatch]:
    """The scenario's events as the parse stage has them: each file's chunks, ids stamped."""
    simulate(name, str(work / f"{name}.json"), seed=7, start="2026-11-01T00:00:00Z")
    config = load_config(None, env={"RAMPARTS_HASH_KEY": HASH_KEY})
    out = []
    for path in sorted(glob.glob(str(work / f"{name}.*.log"))):
        _, chunks = decode_file(path, config=config, stamp_ids=True)
        out.extend(c.events for c in chunks)
    return out


def _through_the_wire(batch: EventBatch, fields) -> EventBatch:
    msgs = wire.messages(batch, 1, 2000, "entity", fields)
    return EventBatch.concat([wire.decode(m) for ms in msgs.values() for m in ms])


def _detect(batch: EventBatch) -> tuple[list[dict], dict]:
    config = load_config(None, env={"RAMPARTS_HASH_KEY": HASH_KEY})
    pipeline = Pipeline([d for d in build_detectors(config) if d.route == "entity"])
    state = DictState()
    batch = batch.sorted_by_time()
    alerts = []
    for i in range(0, len(batch), 8192):
        alerts.extend(pipeline.process_batch(batch.select(list(range(i, min(i + 8192, len(batch))))), state))
    assert pipeline.stats.detector_errors == 0
    return alerts, state.data


@pytest.mark.parametrize("name", ("mix", "extraction", "drift"))
def test_the_entity_detectors_raise_the_same_alerts_over_the_cut_events(name, tmp_path):
    fields = entity_route_fields(None)
    assert fields is not None
    chunks = _events(name, tmp_path)
    whole = EventBatch.concat([_through_the_wire(c, None) for c in chunks])
    cut = EventBatch.concat([_through_the_wire(c, fields) for c in chunks])
    assert len(cut) == len(whole) > 1000
    # The cut is real: requests keep few of their fields.
    req = next(e for e in cut.events if e["kind"] == "request")
    assert set(req) <= set(fields.of("request")) and "path" not in req
    alerts, state = _detect(whole)
    cut_alerts, cut_state = _detect(cut)
    assert cut_alerts == alerts
    assert cut_state == state
    assert alerts or name == "drift", "the scenario must raise entity alerts to compare"
