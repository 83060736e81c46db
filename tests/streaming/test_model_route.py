"""Model-routed detectors in real workers (Tansu, chdb): two workers raise what replay raises.

Detectors with ``route = "model"`` judge every request and prediction of one model, so the
worker sends those events a second time, keyed by model, to ``events.model``, where a second
detect agent runs them (docs/streaming.md, "Routes"). Two workers in one group split the
entity partitions and the model partitions; together they must store exactly replay's alerts
and every event once.

The first test runs ``ModelCalls`` (tests/streaming/harness.py), a model-routed test detector
whose alerts do not depend on event order, registered in the workers by a prelude; it checks
the routing whatever detectors the registry holds. The second runs the registry's own
model-routed detectors on the ``drift`` scenario (a broken canary and slowly drifting traffic).
"""

from __future__ import annotations

from pathlib import Path


from ramparts import detectors
from ramparts.detectors import build_detectors
from ramparts.sinks.clickhouse.schema import EVENT_TABLES
from ramparts.streams.replay import Progress, replay
from ramparts.streams.simulate import simulate
from ramparts.streams.topics import consumed_topics

from .harness import (REGISTER_MODEL_CALLS, ModelCalls, Stack, latest_alerts, open_store, replay_alerts,
                      scenario_files, stored_alerts)

TABLE_OF_KIND = dict(EVENT_TABLES)


def _replay(stack: Stack, files: list[str], tmp: Path):
    from ramparts.streams.pipeline import Pipeline

    p = Pipeline.from_config(stack.config)
    report = replay(files, config=stack.config, progress=Progress(None, enabled=False),
                    dead_letter_path=str(tmp / "replay-dead.jsonl"), pipeline=p)
    return report, {TABLE_OF_KIND[k]: n for k, n in p.stats.events_by_kind.items()}


def _two_workers_agree_with_replay(stack: Stack, files: list[str], tmp: Path, model_detectors: set[str]) -> None:
    report, expected = _replay(stack, files, tmp)
    expected_alerts = replay_alerts(report)
    assert {a[1] for a in expected_alerts} & model_detectors, \
        f"the input must raise alerts of {sorted(model_detectors)} for this comparison to mean something"

    a = stack.worker("a").start()
    b = stack.worker("b").start()
    # Pod lists first, consumed before the rest (as `ramparts dev` does): the workers read their
    # raw topics in no guaranteed order, and a GPU sample judged before its node's pod list is a
    # `gpu.unauthorized` false alarm that replay, applying pod lists from their start, never raises.
    shipped = stack.ship(files, alive=lambda: a.alive() and b.alive())
    assert shipped.records > 0
    assert stack.wait_consumed(alive=lambda: a.alive() and b.alive()), a.log_tail() + b.log_tail()
    assert a.stop() == 0, a.log_tail()
    assert b.stop() == 0, b.log_tail()

    stats = [a.stats(), b.stats()]
    assert sum(s.get("model_events", 0) for s in stats) > 0, stats  # the model agent ran
    for w, s in zip((a, b), stats):
        # Every event the parse stage made was handed to the store once, and none by the detect
        # agents (they write only alerts): rows received by the event tables = the events parsed.
        rows = s.get("rows_received", {})
        assert sum(rows.get(t, 0) for t in EVENT_TABLES.values()) == s.get("parsed_events", 0), (w.store, s)

    counts, ids, alerts = [], {t: set() for t in expected}, []
    for w in (a, b):  # one chdb store open at a time: chdb opens one directory per process
        store = open_store(w.store)
        try:
            counts.append(store.counts())
            for table in expected:
                ids[table].update(r["id"] for r in store.query(f"SELECT id FROM ramparts.{table} FINAL"))
            alerts.append(stored_alerts(store))
        finally:
            store.close()
    # Both detect agents had events (a worker's store holds what its parse stage made: the raw
    # partitions it owned, perhaps not the gateway log's).
    assert all(s.get("events", 0) > 0 for s in stats), ("both workers must have owned partitions", stats)
    for table, n in expected.items():
        assert sum(c[table] for c in counts) == n, (table, counts)
        assert len(ids[table]) == n, table
    assert latest_alerts(alerts) == expected_alerts


def test_two_workers_with_a_model_routed_test_detector_store_replays_alerts_and_each_event_once(
        broker, tmp_path, monkeypatch):
    # The registry's own model-routed detectors are the next test's: off here, so that this
    # one checks the routing alone, with a detector whose alerts do not depend on event order.
    others = {f"RAMPARTS_DETECTORS__{c.name.replace('.', '_').upper()}__ENABLED": "false"
              for c in detectors.DETECTOR_CLASSES if c.route == "model"}
    monkeypatch.setattr(detectors, "DETECTOR_CLASSES", [*detectors.DETECTOR_CLASSES, ModelCalls])
    monkeypatch.setitem(detectors.DETECTORS, ModelCalls.name, ModelCalls)
    stack = Stack(broker.bootstrap, tmp_path, prelude=REGISTER_MODEL_CALLS, env=others)
    assert [d.name for d in build_detectors(stack.config) if d.route == "model"] == [ModelCalls.name]
    try:
        assert stack.names.events_model in consumed_topics(stack.config)  # waited on, as the workers read it
        out = tmp_path / "sim" / "mix.json"
        simulate("mix", str(out), seed=7, start="2026-11-20T10:00:00Z")
        _two_workers_agree_with_replay(stack, scenario_files(out), tmp_path, {ModelCalls.name})
    finally:
        stack.stop_all()


def test_two_workers_with_the_registered_model_routed_detectors_store_replays_alerts(broker, tmp_path):
    model_detectors = {c.name for c in detectors.DETECTOR_CLASSES if c.route == "model"}
    assert model_detectors, ("no registered detector has route = 'model' yet (detectors/__init__.py): "
                             "this test cannot exercise one")
    stack = Stack(broker.bootstrap, tmp_path)
    try:
        out = tmp_path / "sim" / "drift.json"
        simulate("drift", str(out), seed=7, start="2026-11-20T10:00:00Z")
        _two_workers_agree_with_replay(stack, scenario_files(out), tmp_path, model_detectors)
    finally:
        stack.stop_all()
