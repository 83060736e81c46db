"""Incidents: one per detector and entity while alerts keep coming; few notifications; resolve when quiet."""

from __future__ import annotations

import random

from ramparts.alerting.incidents import IncidentTracker
from ramparts.detectors.base import SEVERITIES, DictState, make_alert
from ramparts.detectors.access import CredentialStuffing
from ramparts.streams.pipeline import Pipeline

NS = 1_000_000_000
T0 = 1_800_000_000 * NS


def alert(i: int, *, entity="198.51.100.7", sev="medium", first=None, count=None, det="access.stuffing"):
    ts = T0 + i * NS
    return make_alert(det, sev, ("src_ip", entity), score=float(i), summary=f"{i} failures", evidence={"n": i},
                      first_ts=T0 if first is None else first, last_ts=ts, count=count or i + 1)


def test_a_storm_of_10k_alerts_on_one_entity_is_one_incident_and_a_bounded_number_of_notifications():
    rng = random.Random(7)
    t = IncidentTracker(window_seconds=600, renotify_seconds=0)
    state = DictState()
    ids, notes = set(), []
    for start in range(0, 10_000, 250):  # batches of 250 alerts, severities at random
        batch = []
        for i in range(start, start + 250):
            # the detector closes and reopens its own incident now and then: new detector ids
            first = T0 + (i // 1000) * 1000 * NS
            batch.append(alert(i, sev=rng.choice(SEVERITIES), first=first, count=i % 1000 + 1))
        out, n = t.update(batch, state, now=batch[-1]["ts"])
        ids |= {a["id"] for a in out}
        notes += n
    assert len(ids) == 1
    assert [n["event"] for n in notes][0] == "firing"
    assert len(notes) <= 1 + (len(SEVERITIES) - 1)  # firing, then at most one escalation per severity step
    assert all(n["incident_id"] in ids for n in notes)
    (last,) = out[-1:]
    assert last["severity"] == "critical"
    assert last["event_count"] == 10_000  # summed over the detector's ten incidents of 1000 events


def test_different_entities_and_detectors_are_different_incidents():
    t = IncidentTracker(window_seconds=600)
    out, notes = t.update([alert(1, entity="a"), alert(1, entity="b"), alert(1, entity="a", det="access.k8s_exec")],
                          DictState(), now=T0 + NS)
    assert len({a["id"] for a in out}) == 3
    assert [n["event"] for n in notes] == ["firing"] * 3


def test_an_incident_resolves_after_the_quiet_window_and_the_next_alert_opens_a_new_one():
    t = IncidentTracker(window_seconds=60)
    state = DictState()
    (a1,), n1 = t.update([alert(0)], state, now=T0)
    _, quiet = t.update([], state, now=T0 + 30 * NS)
    assert quiet == []
    _, resolved = t.update([], state, now=T0 + 61 * NS)
    assert [(n["event"], n["incident_id"]) for n in resolved] == [("resolved", a1["id"])]
    (a2,), n2 = t.update([alert(100, first=T0 + 100 * NS)], state, now=T0 + 100 * NS)
    assert a2["id"] != a1["id"] and [n["event"] for n in n2] == ["firing"]


def test_renotify_after_the_period_and_notification_ids_count_up():
    t = IncidentTracker(window_seconds=3600, renotify_seconds=100)
    state = DictState()
    events = []
    for i in range(0, 500, 10):
        events += [n for n in t.update([alert(i)], state, now=T0 + i * NS)[1]]
    assert [n["event"] for n in events] == ["firing"] + ["renotify"] * 4
    assert [n["id"].split(".")[1] for n in events] == ["1", "2", "3", "4", "5"]


def test_batch_cuts_do_not_change_incidents_or_notifications():
    rng = random.Random(3)
    alerts = [alert(i, entity=rng.choice("abc"), sev=rng.choice(SEVERITIES)) for i in range(300)]
    alerts += [alert(i, entity="a") for i in range(2000, 2100)]  # after a gap: resolve and reopen

    def run(cut: int):
        t, state, out, notes = IncidentTracker(window_seconds=120), DictState(), [], []
        for s in range(0, len(alerts), cut):
            part = alerts[s:s + cut]
            o, n = t.update(part, state, now=part[-1]["ts"])
            out += o
            notes += n
        return {a["id"]: (a["event_count"], a["severity"]) for a in out}, [n["id"] for n in notes]

    assert run(1) == run(7) == run(300)


def test_incidents_hold_across_workers_because_state_moves_with_the_partition():
    """A second worker (a fresh tracker) taking over the partition's state continues the incident."""
    state = DictState()
    first = IncidentTracker(window_seconds=600)
    (a1,), n1 = first.update([alert(1)], state, now=T0 + NS, scope=3)
    second = IncidentTracker(window_seconds=600)  # another process: nothing in memory
    (a2,), n2 = second.update([alert(5, sev="high")], state, now=T0 + 5 * NS, scope=3)
    assert a2["id"] == a1["id"] and [n["event"] for n in n2] == ["escalated"]
    # and it knows the partition's open incidents without being told: it resolves them
    _, n3 = IncidentTracker(window_seconds=600).update([], state, now=T0 + 700 * NS, scope=3)
    assert [n["event"] for n in n3] == ["resolved"]
    # a worker holding another partition does not touch them
    assert IncidentTracker(window_seconds=600).update([], state, now=T0 + 700 * NS, scope=1)[1] == []


def test_incident_state_is_small_and_namespaced():
    state = DictState()
    IncidentTracker().update([alert(1, count=10**6)], state, now=T0)
    import orjson

    for k, v in state.data.items():
        assert k.startswith("incidents/")
        assert len(orjson.dumps(v)) < 2048


def test_the_pipeline_turns_a_401_storm_into_one_incident():
    p = Pipeline.from_config(None)
    state = DictState()
    ids = set()
    notes = 0
    for b in range(40):  # 10k failed logins from one address, in batches of 250
        events = [{"kind": "request", "ts": T0 + (b * 250 + i) * NS // 10, "source": "nginx", "status": 401,
                   "src_ip": "203.0.113.5", "principal": None, "id": f"f:{b}:{i}"} for i in range(250)]
        ids |= {a["id"] for a in p.process_batch(events, state)}
    notes = p.alerting.notifications
    assert len(ids) == 1 and notes == 1
    assert isinstance(p.detectors[0], CredentialStuffing)


def test_concurrent_incidents_of_one_detector_about_one_entity_count_the_same_in_any_order():
    """drift.model holds one incident per feature family for a model: their updates interleave."""
    fam = {"input": T0, "output": T0 + NS}
    updates = [alert(i, entity="model-a", first=fam[f], count=100 * i, det="drift.model")
               for i in range(1, 6) for f in ("input", "output")]
    # each family's alert ids differ (first_ts differs); counts grow per family
    results = set()
    for order in (updates, updates[::2] + updates[1::2], sorted(updates, key=lambda a: a["first_event_ts"])):
        t, state = IncidentTracker(window_seconds=3600), DictState()
        out = []
        for a in order:
            out += t.update([a], state, now=a["ts"])[0]
        results.add(max(a["event_count"] for a in out))
    assert results == {500 + 500}


def test_the_worker_state_finds_a_partitions_open_incidents_in_its_table():
    """``TableState.scan`` (the worker's state over a Faust table of orjson bytes) feeds the index."""
    import orjson

    from ramparts.streams.app import TableState

    table: dict[bytes, bytes] = {}
    state = TableState(table)
    IncidentTracker(window_seconds=60).update([alert(1, entity="a")], state, now=T0 + NS, scope=2)
    table.update({k.encode(): orjson.dumps(v) for k, v in state.dirty.items()})  # what write_back does
    restarted = TableState(table)
    t2 = IncidentTracker(window_seconds=60)
    _, notes = t2.update([], restarted, now=T0 + 100 * NS, scope=2)
    assert [n["event"] for n in notes] == ["resolved"]
    # what is left is a small tombstone (the id and the notifications counted: a reopening under
    # the same id goes on from there), then nothing once it is TOMBSTONE_WINDOWS windows old
    (tomb,) = restarted.dirty.values()
    assert list(restarted.dirty) == ["incidents/access.stuffing/src_ip:a"] and tomb["closed"] and tomb["n"] == 2
    assert t2.update([], restarted, now=T0 + 300 * NS, scope=2)[1] == []
    assert restarted.dirty == {"incidents/access.stuffing/src_ip:a": None}
