"""gpu.unauthorized, gpu.miner, gpu.anomaly and runtime.falco on hand-written records, and on the
real nvidia-smi captures (idle and under gpu_burn) with a registry that does or does not authorize them."""

from __future__ import annotations

import random
import subprocess
import sys
from pathlib import Path

import pytest

from ramparts.config import load_config
from ramparts.detectors import compute_model
from ramparts.detectors.base import DictState
from ramparts.detectors.compute import MinerSignature, UnauthorizedCompute
from ramparts.detectors.runtime import FalcoCritical
from ramparts.errors import ConfigError
from ramparts.events import EventBatch
from ramparts.streams.replay import Progress, replay

NS = 1_000_000_000
T0 = 1_795_000_000 * NS
CAPTURES = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "samples" / "nvidia-smi"
H100 = CAPTURES / "linux-x86_64__nvidia-h100-80gb-hbm3__590.48.01.txt"
RTX = CAPTURES / "linux-x86_64__nvidia-geforce-rtx-2080-super__595.71.05.txt"
MASKED_UUID = "GPU-00000000-0000-0000-0000-000000000000"


def sample(i: int, gpu: str = "GPU-a", node: str | None = "n1", util=100.0, pod=None, ns=None, **extra) -> dict:
    return {"kind": "gpu", "ts": T0 + i * 15 * NS, "source": "dcgm", "node": node, "gpu_uuid": gpu,
            "util_pct": util, "mem_used_mib": 2300.0, "power_w": 300.0, "processes": None,
            "namespace": ns, "pod": pod, **extra}


def workload(gpu=None, pod="train-0", ns="ml", node="n1", start=0, end=None, count=1) -> dict:
    return {"kind": "workload", "ts": T0 + start * NS, "source": "k8s_pods", "node": node, "gpu_uuid": gpu,
            "namespace": ns, "pod": pod, "start": T0 + start * NS,
            "end": None if end is None else T0 + end * NS, "gpu_count": count}


def run(detector, events, batch=None) -> dict[str, dict]:
    state, out = DictState(), {}
    size = batch or len(events)
    for i in range(0, len(events), size):
        for a in detector.update(EventBatch(events[i:i + size]), state):
            out[a["id"]] = a
    return out


def only(alerts: dict) -> dict:
    assert len(alerts) == 1, alerts
    return next(iter(alerts.values()))


# -- gpu.unauthorized -----------------------------------------------------------------------------
def test_a_busy_gpu_with_nothing_authorized_is_caught_at_its_second_sample():
    d = UnauthorizedCompute()
    assert run(d, [sample(1)]) == {}
    a = only(run(d, [sample(1), sample(2), sample(3)]))
    assert (a["detector"], a["entity"], a["event_count"]) == ("gpu.unauthorized", {"type": "gpu", "id": "GPU-a"}, 3)
    assert a["first_event_ts"] == sample(1)["ts"] and a["severity"] == "high"
    assert a["evidence"]["reason"] == "no workload is authorized on this GPU or its node"
    assert a["evidence"]["util_pct"] == 100.0 and a["evidence"]["busy_samples"] == 3


def test_an_idle_sample_resets_the_count_and_idle_gpus_never_alarm():
    d = UnauthorizedCompute()
    assert run(d, [sample(1), sample(2, util=0.0), sample(3), sample(4, util=3.0)]) == {}
    assert run(d, [sample(i, util=2.0) for i in range(50)]) == {}


def test_a_workload_naming_the_gpu_authorizes_it_from_its_start_until_its_end_and_grace():
    d = UnauthorizedCompute({"grace_seconds": 30})
    events = [workload(gpu="GPU-a", start=15 * 3, end=15 * 10)] + [sample(i) for i in range(3, 16)]
    a = only(run(d, sorted(events, key=lambda e: e["ts"])))
    # Samples 3-12 are covered (until the end plus 30 s of grace); 13 on are not.
    assert a["first_event_ts"] == sample(13)["ts"] and a["event_count"] == 3
    # Before its start, it covers nothing.
    early = [workload(gpu="GPU-a", start=15 * 3)] + [sample(i) for i in (1, 2)]
    assert only(run(UnauthorizedCompute(), sorted(early, key=lambda e: e["ts"])))["event_count"] == 2


def test_the_exporters_pod_label_joins_a_pod_that_names_no_gpu():
    d = UnauthorizedCompute()
    ok = [workload(pod="train-0", ns="ml")] + [sample(i, pod="train-0", ns="ml") for i in range(1, 5)]
    assert run(d, ok) == {}
    bad = [workload(pod="train-0", ns="ml")] + [sample(i, pod="miner-0", ns="ml") for i in range(1, 5)]
    a = only(run(d, bad))
    assert "pod ml/miner-0, which holds no authorization" in a["evidence"]["reason"]
    assert a["evidence"]["pod_label"] == "ml/miner-0" and a["evidence"]["authorized_on_node"] == ["ml/train-0"]


def test_pods_without_gpu_uuids_cover_as_many_busy_gpus_as_they_hold_first_busy_first():
    d = UnauthorizedCompute()
    events = [workload(count=2)]
    for i in range(1, 6):
        events += [sample(i, gpu="GPU-a"), sample(i, gpu="GPU-b")]
        if i >= 2:
            events.append(sample(i, gpu="GPU-c"))
    a = only(run(d, events))
    assert a["entity"]["id"] == "GPU-c" and "became busy last" in a["evidence"]["reason"]
    # When one of the covered GPUs goes idle, the third is covered again.
    d2, state = UnauthorizedCompute(), DictState()
    d2.update(EventBatch(events), state)
    later = [sample(6, gpu="GPU-a", util=0.0), sample(7, gpu="GPU-b"), sample(7, gpu="GPU-c"),
             sample(8, gpu="GPU-c")]
    assert d2.update(EventBatch(later), state) == []


def test_processes_on_a_gpu_nobody_may_use_are_the_evidence():
    d = UnauthorizedCompute()
    procs = [{"pid": 11, "name": "/opt/x/xmrig", "mem_mib": 2300.0}, {"pid": 9, "name": "Xorg", "mem_mib": 20.0}]
    events = [sample(1, util=None, processes=procs, source="nvidia_smi"),
              sample(2, util=None, processes=procs, source="nvidia_smi")]
    a = only(run(d, events))
    assert a["evidence"]["processes"] == ["xmrig"] and "processes xmrig" in a["summary"]
    # A display server alone does not make a GPU busy.
    xorg = [sample(i, util=None, processes=[procs[1]]) for i in range(1, 5)]
    assert run(d, xorg) == {}


def test_a_redelivered_sample_is_not_counted_twice():
    d = UnauthorizedCompute()
    s1 = {**sample(1), "id": "raw.gpu:0:5:1"}
    assert run(d, [s1, dict(s1)]) == {}
    assert only(run(d, [s1, dict(s1), {**sample(2), "id": "raw.gpu:0:6:1"}]))["event_count"] == 2


# -- the real nvidia-smi captures ---------------------------------------------------------------------
def _replay(paths, tmp_path) -> list[dict]:
    report = replay([str(p) for p in paths], config=load_config(None, env={}), progress=Progress(None, enabled=False),
                    dead_letter_path=str(tmp_path / "dead.jsonl"))
    assert not report.parse.failed_files and report.parse.dead_lettered == 0 if hasattr(report.parse, "dead_lettered") else True
    return sorted(report.alerts.values(), key=lambda a: a["first_event_ts"])


def _registry(tmp_path, pod: str, start: str) -> Path:
    p = tmp_path / "jobs.csv"
    p.write_text(f"gpu_uuid,namespace,pod,start,end\n{MASKED_UUID},lab,{pod},{start},\n")
    return p


@pytest.mark.skipif(not H100.exists(), reason="shared nvidia-smi captures not present")
def test_h100_under_gpu_burn_without_an_authorization_is_caught_and_names_the_processes(tmp_path):
    alerts = _replay([H100], tmp_path)
    assert [(a["detector"], a["entity"]["id"]) for a in alerts] == [("gpu.unauthorized", MASKED_UUID)]
    a = alerts[0]
    # The idle section (0 %, no processes) says nothing; the load section is the alert, within two samples.
    assert a["event_count"] == 2 and a["evidence"]["processes"] == ["memhog", "memhog", "gpu_burn"]
    assert a["first_event_ts"] == 1784016773353000000  # 2026-07-14T08:12:53.353Z, the first busy sample


@pytest.mark.skipif(not H100.exists(), reason="shared nvidia-smi captures not present")
def test_h100_under_gpu_burn_authorized_by_the_registry_is_quiet(tmp_path):
    assert _replay([H100, _registry(tmp_path, "gpu-burn", "2026-07-14T08:00:00Z")], tmp_path) == []
    # An authorization that starts after the load does not cover it.
    late = _replay([H100, _registry(tmp_path, "gpu-burn", "2026-07-14T09:00:00Z")], tmp_path)
    assert [a["detector"] for a in late] == ["gpu.unauthorized"]


@pytest.mark.skipif(not RTX.exists(), reason="shared nvidia-smi captures not present")
def test_rtx_2080_encoding_with_ffmpeg_is_busy_through_the_encoder_and_its_processes(tmp_path):
    alerts = _replay([RTX], tmp_path)
    (a,) = alerts
    assert a["detector"] == "gpu.unauthorized" and a["evidence"]["processes"] == ["ffmpeg", "ffmpeg"]
    assert a["evidence"]["enc_util_pct"] is None or a["evidence"]["enc_util_pct"] >= 0
    assert _replay([RTX, _registry(tmp_path, "transcoder", "2026-06-24T10:00:00Z")], tmp_path) == []


# -- gpu.miner ---------------------------------------------------------------------------------------
def miner(i: int, gpu="GPU-m", pod="notebook-0", rng=random.Random(1), **over) -> dict:
    e = sample(i, gpu=gpu, pod=pod, ns="research", util=100.0, power_w=293.0 + rng.uniform(-3, 3),
               tensor_active=0.000001, pcie_tx_bytes=21_000.0, pcie_rx_bytes=34_000.0, mem_free_mib=43_758.0,
               mem_copy_util_pct=0.0)
    e["mem_used_mib"] = 2310.0
    e.update(over)
    return e


def test_the_miner_signature_inside_an_authorized_pod_is_caught_after_startup_and_one_window():
    d = MinerSignature()
    events = [miner(i) for i in range(1, 30)]
    a = only(run(d, events, batch=7))
    assert a["detector"] == "gpu.miner" and a["severity"] == "critical" and a["entity"]["id"] == "GPU-m"
    # 2 start-up samples skipped, then a window of 8: the 10th sample is the first judged.
    assert a["first_event_ts"] == events[9]["ts"] and a["event_count"] == 20
    ev = a["evidence"]
    assert ev["util_min"] == 100.0 and ev["tensor_active_max"] < 0.01 and ev["pcie_bytes_per_s_max"] < 1e5
    assert ev["pod_label"] == "research/notebook-0" and ev["power_cv"] < 0.03
    assert "tensor pipes idle" in a["summary"] and "near-zero PCIe" in a["summary"]


def test_a_miner_seen_without_profiling_counters_is_high_and_its_summary_claims_only_what_was_measured():
    """nvidia-smi has no tensor or PCIe counters: those columns do not vote, and the summary must
    not say they were idle."""
    d = MinerSignature()
    events = [miner(i, tensor_active=None, pcie_tx_bytes=None, pcie_rx_bytes=None, source="nvidia_smi")
              for i in range(1, 30)]
    a = only(run(d, events, batch=7))
    assert a["severity"] == "high" and a["evidence"]["tensor_active_max"] is None
    assert "tensor" not in a["summary"] and "PCIe" not in a["summary"]
    assert "utilisation flat at 100% or more" in a["summary"] and "constant power" in a["summary"]


def test_training_inference_and_a_memory_heavy_stress_test_do_not_look_like_a_miner():
    d = MinerSignature()
    training = [miner(i, tensor_active=0.58, pcie_tx_bytes=2.3e9, pcie_rx_bytes=2.2e9, mem_used_mib=71_800.0,
                      mem_free_mib=9_759.0) for i in range(1, 40)]
    rng = random.Random(4)
    serving = [miner(i, util_pct=rng.uniform(30, 95), tensor_active=0.3) for i in range(1, 40)]
    stress = [miner(i, tensor_active=0.0, mem_used_mib=73_400.0, mem_free_mib=8_159.0, mem_copy_util_pct=42.0)
              for i in range(1, 40)]
    assert run(d, training) == {} and run(d, serving) == {} and run(d, stress) == {}
    # Utilisation that wanders is not the flat line of a miner.
    wobbly = [miner(i, util_pct=100.0 if i % 3 else 88.0) for i in range(1, 40)]
    assert run(d, wobbly) == {}


def test_a_miner_process_or_a_falco_miner_rule_is_gpu_miner_and_not_runtime_falco():
    procs = [{"pid": 4, "name": "./t-rex", "mem_mib": 3000.0}]
    a = only(run(MinerSignature(), [sample(1, util=None, processes=procs)]))
    assert a["entity"] == {"type": "gpu", "id": "GPU-a"} and "t-rex" in a["summary"]
    falco = {"kind": "runtime", "ts": T0, "source": "falco", "rule": "Detect crypto miners using the Stratum protocol",
             "priority": "critical", "namespace": "ml-sandbox", "pod": "jupyter-0", "process": "xmrig",
             "hostname": "gpu-node-3", "tags": ["T1496"], "cmdline": "xmrig -o stratum+tcp://pool:3333"}
    b = only(run(MinerSignature(), [falco]))
    assert b["entity"] == {"type": "pod", "id": "ml-sandbox/jupyter-0"} and b["evidence"]["node"] == "gpu-node-3"
    assert run(FalcoCritical(), [falco]) == {}
    other = {**falco, "rule": "Drop and execute new binary in container", "process": "payload", "tags": [],
             "cmdline": "./payload"}
    assert only(run(FalcoCritical(), [other]))["detector"] == "runtime.falco"


# -- gpu.anomaly -------------------------------------------------------------------------------------
def _serving(n: int, gpus: int = 4, seed: int = 3) -> list[dict]:
    rng = random.Random(seed)
    out = []
    for i in range(n):
        for g in range(gpus):
            u = rng.uniform(20, 90)
            out.append(sample(i, gpu=f"GPU-{g}", util=u, power_w=69 + 5.3 * u, tensor_active=u / 250,
                              pcie_tx_bytes=u * 2.5e6, pcie_rx_bytes=u * 5e6, mem_free_mib=9_500.0,
                              mem_copy_util_pct=u * 0.3) | {"mem_used_mib": 72_000.0})
    return out


def test_gpu_anomaly_is_off_without_a_model_and_says_so():
    from ramparts.detectors.compute_model import GpuWindowModel

    d = GpuWindowModel()
    assert d.bundle is None and "no model" in d.note and "ramparts train compute" in d.note
    assert d.update(EventBatch([miner(i) for i in range(40)]), DictState()) == []


def test_a_trained_model_flags_miner_windows_and_not_more_normal_work(tmp_path):
    from ramparts.detectors.compute_model import GpuWindowModel

    path = tmp_path / "m.model"
    sha = compute_model.save(compute_model.train(_serving(200), window=8, trees=50), path)
    d = GpuWindowModel({"model_path": str(path), "model_sha256": sha})
    assert run(d, _serving(80, seed=9)) == {}
    a = only(run(d, [miner(i, gpu="GPU-x") for i in range(1, 40)]))
    assert a["detector"] == "gpu.anomaly"
    assert a["evidence"]["features"]["util_mean"] == 100.0
    assert "util_mean" in a["evidence"]["outside_trained_range"]


def test_a_model_file_whose_hash_is_not_the_pinned_one_is_refused(tmp_path):
    from ramparts.detectors.compute_model import GpuWindowModel

    path = tmp_path / "m.model"
    sha = compute_model.save(compute_model.train(_serving(100), window=8, trees=10), path)
    with pytest.raises(ConfigError, match="model_sha256 is required"):
        GpuWindowModel({"model_path": str(path)})
    path.write_bytes(path.read_bytes() + b"\0")
    with pytest.raises(ConfigError, match="refusing to load it"):
        GpuWindowModel({"model_path": str(path), "model_sha256": sha})


def test_train_compute_writes_a_model_and_prints_the_config_that_loads_it(tmp_path):
    from ramparts.streams.simulate import simulate

    m = simulate("baseline", tmp_path / "b.json", seed=5, start="2026-03-02T09:00:00Z", duration_seconds=600, rate=1)
    out = tmp_path / "gpu.model"
    r = subprocess.run([sys.executable, "-m", "ramparts.cli", "train", "compute", "--from", str(m.file("dcgm")),
                        "--out", str(out)], capture_output=True, text=True, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "windows of 8 samples" in r.stderr
    cfg = tmp_path / "ramparts.yaml"
    cfg.write_text(r.stdout)
    config = load_config(cfg, env={})
    assert config.detector_options("gpu.anomaly").model_sha256 == compute_model.file_sha256(out)
    too_little = subprocess.run([sys.executable, "-m", "ramparts.cli", "train", "compute", "--from",
                                 str(m.file("k8s_pods")), "--out", str(tmp_path / "x")],
                                capture_output=True, text=True, cwd=tmp_path)
    assert too_little.returncode == 1 and "at least 20 are needed" in too_little.stderr


@pytest.mark.parametrize("size", [1, 2, 5])
def test_the_signature_skipped_without_a_long_enough_busy_run_gives_what_one_batch_gives(size):
    # A batch whose new samples hold no busy run of window + start-up samples does not judge its
    # windows (none could hit): in small batches most are skipped; in one batch all are judged.
    # Idle dips restart the run at odd places, so hits begin one sample after the run is long enough.
    dips = {4, 17, 18, 31, 45, 52}
    events = [miner(i, util_pct=20.0) if i in dips else miner(i) for i in range(1, 70)]
    whole, state_whole = MinerSignature(), DictState()
    want = whole.update(EventBatch(events), state_whole)
    # one incident; runs of 12, 12, 13 and 17 busy samples hit from their 10th: 3 + 3 + 4 + 8 (the runs
    # of 3 and 6 never do)
    assert len(want) == 1 and want[0]["event_count"] == 18, want
    parts, state_parts, got = MinerSignature(), DictState(), {}
    for i in range(0, len(events), size):
        for a in parts.update(EventBatch(events[i:i + size]), state_parts):
            got[a["id"]] = a
    assert sorted(got) == sorted(a["id"] for a in want)
    assert {k: (a["event_count"], a["first_event_ts"], a["ts"]) for k, a in got.items()} == \
        {a["id"]: (a["event_count"], a["first_event_ts"], a["ts"]) for a in want}
    assert state_parts.data == state_whole.data
