"""End-to-end: each compute and access scenario simulated, replayed through the whole pipeline,
and its alerts checked against the ground truth, with their evidence; and the benchmark's output."""

from __future__ import annotations

import pytest

from ramparts.bench import compute as bench
from ramparts.config import load_config
from ramparts.streams.replay import Progress, replay
from ramparts.streams.simulate import simulate

HASH_KEY = "scenario-test-key-0123456789abcdef"
START = "2026-03-02T09:00:00Z"


@pytest.fixture(scope="module")
def replayed(tmp_path_factory):
    mp = pytest.MonkeyPatch()
    mp.setenv("RAMPARTS_HASH_KEY", HASH_KEY)
    config = load_config(None, env={"RAMPARTS_HASH_KEY": HASH_KEY})
    out = {}
    try:
        for name in ("compute-benign", "compute", "access"):
            d = tmp_path_factory.mktemp(name)
            m = simulate(name, d / f"{name}.json", seed=5, start=START, rate=3.0)
            report = replay([str(m.file(f)) for f in m.files], config=config, progress=Progress(None, enabled=False),
                            dead_letter_path=str(d / "dead.jsonl"))
            assert not report.parse.failed_files and not report.detector_errors
            out[name] = (m, report.alerts)
    finally:
        mp.undo()
    return out


def _found(alerts) -> set:
    return {(a["detector"], a["entity"]["type"], a["entity"]["id"]) for a in alerts.values()}


def _expected(m) -> set:
    return {(x.detector, x.entity_type, x.entity_id) for x in m.attacks if x.detector != "none"}


def _one(alerts, detector, entity_id):
    (a,) = [a for a in alerts.values() if a["detector"] == detector and a["entity"]["id"] == entity_id]
    return a


def test_authorized_training_bursty_inference_idle_gpus_and_a_stress_test_raise_nothing(replayed):
    m, alerts = replayed["compute-benign"]
    assert {x.name for x in m.attacks} == {"inference-burst", "stress-test"}
    assert alerts == {}


def test_the_miners_are_caught_by_the_rules_meant_for_them_and_nothing_else_alarms(replayed):
    m, alerts = replayed["compute"]
    assert _found(alerts) == _expected(m)
    idle = next(x for x in m.attacks if x.name == "crypto-miner" and x.detector == "gpu.unauthorized")
    a = _one(alerts, "gpu.unauthorized", idle.entity_id)
    ev = a["evidence"]
    assert ev["node"] == "gpu-node-3" and ev["util_pct"] == 100.0 and ev["pod_label"] is None
    assert ev["reason"] == "no authorized workload names this GPU" and ev["busy_samples"] >= 2
    assert idle.start <= a["first_event_ts"] <= idle.start + 15 * 10**9  # its first sample
    in_pod = next(x for x in m.attacks if x.name == "miner-in-pod")
    s = _one(alerts, "gpu.miner", in_pod.entity_id)
    assert s["evidence"]["pod_label"] == "research/notebook-ravi-7f9c4d-0"
    assert s["evidence"]["tensor_active_max"] < 0.01 and s["evidence"]["pcie_bytes_per_s_max"] < 2e6
    # Within a few minutes of telemetry: start-up and one window of samples.
    assert s["first_event_ts"] - in_pod.start <= 3 * 60 * 10**9
    assert ("gpu.unauthorized", "gpu", in_pod.entity_id) not in _found(alerts)  # it is authorized


def test_stuffing_a_stolen_key_and_an_exec_are_caught_with_their_evidence(replayed):
    m, alerts = replayed["access"]
    assert _found(alerts) == _expected(m)
    stolen = next(x for x in m.attacks if x.detector == "access.new_source")
    a = _one(alerts, "access.new_source", stolen.entity_id)
    assert a["evidence"]["network"] == "185.220.101.0/24" and a["evidence"]["usual"]
    stuffing = _one(alerts, "access.stuffing", "192.0.2.77")
    assert stuffing["evidence"]["distinct_keys_tried"] >= 40
    ex = next(x for x in m.attacks if x.detector == "access.k8s_exec")
    assert _one(alerts, "access.k8s_exec", ex.entity_id)["evidence"]["user"] == "contractor-7@example.com"


def test_bench_compute_reports_delay_in_samples_and_false_alarms(tmp_path):
    config = bench._config(None)
    r = bench.run_scenario("compute", tmp_path, config, seed=5, rate=2.0)
    rows = {(a["attack"], a["detector"], a["entity"]): a for a in r["attacks"]}
    unauth = rows[("crypto-miner", "gpu.unauthorized", "gpu")]
    assert unauth["caught"] and unauth["delay_samples"] == 2
    assert rows[("miner-in-pod", "gpu.miner", "gpu")]["delay_samples"] == 10
    assert r["false_alarms"] == [] and r["benign_placements"] == ["inference-burst", "stress-test"]
    table = bench.render([r])
    assert table.startswith("| scenario | attack | detector | caught | delay (GPU samples) | delay (s) |\n")
    assert "| compute | crypto-miner | `gpu.unauthorized` (gpu) | yes | 2 |" in table
    assert "| compute | 26," not in table and "| false alarms |" in table
