"""The model route carries only the fields its detectors read, and that changes nothing they do.

The worker sends the requests and predictions that name a model a second time, on
``events.model``, projected onto ``topics.model_route_fields(config)``: the ``event_fields``
the enabled model-routed detectors declare, and what the pipeline itself reads
(``pipeline.EVENT_FIELDS``). Here the model pipeline of the worker (``route="model"``,
``write_events=False``) runs over the same seeded scenarios twice, once over whole events and
once over projected ones, and must raise the same alerts and keep the same state; and every
field it reads, counted on the events themselves, must be one the projection keeps.
"""

from __future__ import annotations

import glob
import os

import orjson
import pytest

from ramparts.config import load_config
from ramparts.detectors.base import DictState
from ramparts.streams.keys import route_key
from ramparts.streams.pipeline import Pipeline, alert_to_wire
from ramparts.streams.replay import Progress, replay
from ramparts.streams.simulate import simulate
from ramparts.streams.topics import model_route_fields, model_routed_kinds, project

from ..recording import recorded

# The metric series learn 720 minutes by default, longer than a scenario lasts: 2 here, so
# anomaly.model scores minutes (and its alert paths run) inside the scenario too.
ENV = {"RAMPARTS_HASH_KEY": "route-fields-hash-key", "RAMPARTS_DETECTORS__ANOMALY_MODEL__LEARN_MINUTES": "2"}
SCENARIOS = ("mix", "drift", "extraction")


class _Capture(Pipeline):
    """Replay's batches, kept instead of detected (the merge in event time, as replay cuts them)."""

    def __init__(self) -> None:
        super().__init__([])
        self.batches: list[list[dict]] = []

    def process_batch(self, events, state, scope=None):
        self.batches.append(list(events))
        return []


def _config():
    return load_config(None, env=ENV)


@pytest.fixture(scope="module")
def routed_batches(tmp_path_factory) -> dict[str, list[list[dict]]]:
    """Per scenario, replay's batches cut to what ``events.model`` carries: the model-routed
    kinds, with a model key (whole events)."""
    config = _config()
    kinds = model_routed_kinds(config)
    out = {}
    for name in SCENARIOS:
        work = tmp_path_factory.mktemp(name)
        simulate(name, str(work / f"{name}.json"), seed=7, start="2026-11-01T00:00:00Z")
        files = sorted(glob.glob(str(work / f"{name}.*.log")))
        capture = _Capture()
        replay(files, config=config, pipeline=capture, progress=Progress(None, enabled=False),
               dead_letter_path=os.devnull)
        out[name] = [[e for e in b if e["kind"] in kinds and route_key(e, "model") is not None]
                     for b in capture.batches]
    return out


def _run(batches: list[list[dict]]) -> tuple[list[dict], dict]:
    """The worker's model pipeline over ``batches``: every alert update, and the final state."""
    pipe = Pipeline.from_config(_config(), route="model", write_events=False)
    state = DictState()
    alerts = []
    for b in batches:
        alerts += [alert_to_wire(a) for a in pipe.process_batch(b, state)]
    assert pipe.stats.detector_errors == 0, pipe.stats.last_detector_error
    return alerts, state.data


def test_the_route_keeps_what_its_detectors_declare():
    fields = model_route_fields(_config())
    assert fields is not None
    assert {"kind", "ts", "model"} <= set(fields)
    assert "id" not in fields and "principal" not in fields and "src_ip" not in fields


@pytest.mark.parametrize("name", SCENARIOS)
def test_projected_events_raise_the_same_alerts_and_state(name, routed_batches):
    batches = routed_batches[name]
    fields = model_route_fields(_config())
    whole_alerts, whole_state = _run(batches)
    projected = [orjson.loads(orjson.dumps(project(b, fields))) for b in batches]  # as the agent reads them
    assert sum(map(len, projected)) > 1000
    assert any(len(e) < len(w) for b, pb in zip(batches, projected) for e, w in zip(pb, b)), \
        "the projection must drop something for this test to mean something"
    proj_alerts, proj_state = _run(projected)
    assert proj_alerts == whole_alerts
    assert orjson.dumps(proj_state, option=orjson.OPT_SORT_KEYS) == orjson.dumps(whole_state,
                                                                                 option=orjson.OPT_SORT_KEYS)
    assert whole_state, "the model-routed detectors must keep state for this test to mean something"


def test_the_scenarios_raise_alerts_of_every_model_routed_detector(routed_batches):
    # Guards the comparison above: identical alerts prove more when there are alerts.
    raised = set()
    for batches in routed_batches.values():
        raised.update(a["detector"] for a in _run(batches)[0])
    expected = {d.name for d in Pipeline.from_config(_config(), route="model").detectors}
    assert raised == expected


@pytest.mark.parametrize("name", SCENARIOS)
def test_the_model_pipeline_reads_no_field_the_route_drops(name, routed_batches):
    fields = model_route_fields(_config())
    read: set[str] = set()
    _run(recorded(routed_batches[name], read))
    assert read, "the recording saw no read"
    assert read <= set(fields), sorted(read - set(fields))
