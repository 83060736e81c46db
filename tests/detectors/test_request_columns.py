"""The request, access, runtime and GPU detectors read a batch of columns as they read its dicts.

Each detector runs twice over the same seeded stream, once on batches of dicts and once on
the same events as :func:`ramparts.events.columnar` batches (``Columns`` parts, one per key
set, sorted by time as ``process_batch`` sorts them: a selection over the parts), with a fresh
state each time: the alerts and the states must be the same, and the columnar batches must
never have had every event's dict made. The stream mixes what the detectors' own tests use:
requests and predictions with odd values (unhashable sources, float and text statuses, a bool
time, token counts beyond 64 bits, missing fields), bursts of 401/403, audit and Falco events
(with odd values too), GPU samples with miner processes and signatures, and workloads.
"""

from __future__ import annotations

import copy
import random

import pytest

from ramparts.detectors import compute_model
from ramparts.detectors.access import (
    CredentialStuffing, InferenceShell, NewModel, NewSource, PodExec, PrivilegedPod, SecretRead,
)
from ramparts.detectors.base import DictState
from ramparts.detectors.compute import MinerSignature, UnauthorizedCompute
from ramparts.detectors.compute_model import GpuWindowModel
from ramparts.detectors.incident import events_at
from ramparts.detectors.request_rows import request_rows
from ramparts.detectors.runtime import FalcoCritical
from ramparts.detectors.volume import VolumeDetector
from ramparts.events import EventBatch, columnar

from .test_compute import _serving, miner, sample, workload
from .test_volume import MIN, T0, _mixed_stream

NS = 1_000_000_000


def _runtime(rng: random.Random, t: int) -> dict:
    """An audit or Falco event, now and then with a value of the wrong type or a field left out."""
    if rng.random() < 0.5:
        e = {"kind": "runtime", "ts": t, "source": "k8s_audit", "verb": rng.choice(["create", "get", "list", "watch"]),
             "priority": None, "rule": None, "namespace": rng.choice(["inference", "kube-system", "ml", None]),
             "pod": rng.choice(["vllm-llama-0", "batch-0", None]), "user": rng.choice(
                 ["eve@example.com", "system:serviceaccount:x", None]),
             "src_ip": "203.0.113.5", "resource": rng.choice(["pods", "secrets", "configmaps"]),
             "subresource": rng.choice(["exec", "attach", None]), "privileged": rng.choice([True, False, None]),
             "status": rng.choice([200, 201, 403, None]), "name": "api-keys", "node": "gpu-node-1"}
    else:
        e = {"kind": "runtime", "ts": t, "source": "falco",
             "rule": rng.choice(["Terminal shell in container", "Drop and execute new binary in container",
                                 "Launch Privileged Container", "Detect crypto miners using the Stratum protocol"]),
             "priority": rng.choice(["notice", "critical", "Critical", "emergency", None]),
             "namespace": rng.choice(["inference", "ml"]), "pod": rng.choice(["vllm-llama-0", "nb-0", None]),
             "process": rng.choice(["bash", "/usr/bin/xmrig", "python", None]), "hostname": "gpu-node-1",
             "image": "vllm/vllm-openai:v0.6.4", "tags": rng.choice([["T1496"], [], None]),
             "cmdline": rng.choice(["xmrig -o stratum+tcp://pool:3333", "python serve.py", None])}
    odd = rng.random()
    if odd < 0.05:
        e[rng.choice(["resource", "priority", "process", "rule", "namespace"])] = rng.choice([["x"], 7, {"a": 1}])
    elif odd < 0.1:
        del e[rng.choice(["pod", "priority", "privileged" if "privileged" in e else "tags"])]
    return e


def _stream(seed: int) -> list[list[dict]]:
    rng = random.Random(seed)
    # requests and predictions of a dozen principals over 40 minutes, odd values in some batches
    events = [e for b in _mixed_stream(seed, odd=True) for e in b]
    for e in rng.sample(events, 60):  # more odd values, and fields left out
        e.update(rng.choice([{"src_ip": ["x"]}, {"status": 403.0}, {"model": ["m"]}, {"principal": 7}]))
    for e in rng.sample(events, 60):
        e.pop(rng.choice(["status", "src_ip", "tokens_in", "model"]), None)
    # bursts of refused requests, from one source and for one key
    for k in range(60):
        t = T0 + 7 * MIN + k * NS // 2
        events.append({"kind": "request", "ts": t, "source": "envoy_json", "principal": f"key:{k:03x}",
                       "src_ip": "192.0.2.77", "model": "llama", "status": 401})
        events.append({"kind": "request", "ts": t, "source": "envoy_json", "principal": "key:real",
                       "src_ip": "198.51.100.9", "model": f"m{k % 5}", "status": 403})
    # a principal's habits learned, then a new network and a new model
    for k in range(120):
        late = k >= 100
        events.append({"kind": "request", "ts": T0 + (k if not late else 200 + k) * 6 * NS, "source": "envoy_json",
                       "principal": "key:habit", "src_ip": "203.0.113.50" if late else "198.51.100.7",
                       "model": "mistral" if late and k % 2 else "llama", "status": 200})
    # audit and Falco events
    for _ in range(400):
        events.append(_runtime(rng, T0 + rng.randrange(40 * MIN)))
    events.append({"kind": "runtime", "ts": T0 + 9 * MIN, "source": "k8s_audit", "verb": "get", "namespace": "inference",
                   "user": "eve@example.com", "resource": "secrets", "name": "api-keys", "status": 200})
    # GPU samples: ordinary work, a miner's signature, miner processes; and the workloads
    gpu = _serving(150, gpus=2, seed=seed)
    gpu += [miner(i, gpu="GPU-m", rng=rng) for i in range(1, 60)]
    gpu += [sample(i, gpu="GPU-p", processes=[{"pid": 4, "name": "./t-rex", "mem_mib": 3000.0}]) for i in range(5)]
    gpu += [sample(i, gpu="GPU-q", util=rng.choice([None, "x", 100.0])) for i in range(20)]
    gpu += [workload(gpu="GPU-0"), workload(pod="notebook-0", ns="research", count=1)]
    for e in gpu:
        e["ts"] = T0 + (e["ts"] - T0) % (40 * MIN)
    events += gpu
    events.sort(key=lambda e: e["ts"])
    cuts = sorted(rng.sample(range(1, len(events)), 50))
    batches = [events[a:b] for a, b in zip([0, *cuts], [*cuts, len(events)])]
    for b in batches:  # each batch as it is read, before process_batch sorts it
        rng.shuffle(b)
    return batches


def _model(tmp_path_factory) -> dict:
    path = tmp_path_factory.mktemp("gpu-model") / "m.model"
    sha = compute_model.save(compute_model.train(_serving(200), window=8, trees=20), path)
    return {"model_path": str(path), "model_sha256": sha}


DETECTORS = {
    "extraction.volume": lambda: VolumeDetector({"min_minutes": 3, "min_queries": 40, "min_tokens": 60_000,
                                                 "ratio": 2.0, "gap_seconds": 90.0, "half_life_hours": 0.5}),
    "access.stuffing": lambda: CredentialStuffing({"min_count": 10}),
    "access.new_source": lambda: NewSource({"learn_requests": 30, "learn_seconds": 20, "max_values": 3,
                                            "gap_seconds": 30}),
    "access.new_model": lambda: NewModel({"learn_requests": 30, "learn_seconds": 20, "max_values": 3,
                                          "gap_seconds": 30}),
    "access.k8s_exec": lambda: PodExec(),
    "access.secret_read": lambda: SecretRead(),
    "access.privileged_pod": lambda: PrivilegedPod(),
    "access.shell": lambda: InferenceShell(),
    "runtime.falco": lambda: FalcoCritical(),
    "gpu.unauthorized": lambda: UnauthorizedCompute(),
    "gpu.miner": lambda: MinerSignature(),
}


def _run(detector, batches: list[EventBatch]) -> tuple[list[list[dict]], DictState, list[EventBatch]]:
    """Alerts per batch, the state, and the batches as the detector got them (sorted by time)."""
    state, handed = DictState(), [b.sorted_by_time() for b in batches]
    return [detector.update(b, state) for b in handed], state, handed


@pytest.mark.parametrize("seed", [1, 2])
@pytest.mark.parametrize("name", [*DETECTORS, "gpu.anomaly"])
def test_a_batch_of_columns_gives_the_alerts_and_states_of_its_dicts(name, seed, tmp_path_factory):
    batches = _stream(seed)
    make = DETECTORS.get(name) or (lambda: GpuWindowModel(_model(tmp_path_factory)))
    want, want_state, _ = _run(make(), [EventBatch(b) for b in copy.deepcopy(batches)])
    got, got_state, cols = _run(make(), [columnar(b) for b in copy.deepcopy(batches)])
    assert got == want
    assert list(got_state.data.items()) == list(want_state.data.items())  # the same states, in the same order
    # Every event's dict would be made by ``batch.events``; a detector makes a few (events_at).
    assert all(not b.holds_dicts for b in cols)
    assert sum(len(b.layout()[0]) > 1 and b.layout()[1] is not None for b in cols) > len(cols) // 2  # shapes, sorted
    assert any(want), name  # the stream makes every detector alert: the comparison is not of empty lists


def test_request_rows_of_columns_are_those_of_dicts():
    for b in _stream(3):
        want, got = request_rows(EventBatch(b).sorted_by_time()), request_rows(columnar(b).sorted_by_time())
        if want is None:
            assert got is None
            continue
        assert got.index == want.index and got.distinct == want.distinct and got.plain_status == want.plain_status
        assert list(map(list, got.cols)) == list(map(list, want.cols))
        assert got.first.tolist() == want.first.tolist() and got.counts.tolist() == want.counts.tolist()


def test_events_at_makes_the_dicts_of_the_events_asked_for_in_batch_order():
    events = [{"kind": "gpu", "ts": 3}, {"kind": "request", "ts": 1, "status": 200}, {"kind": "gpu", "ts": 2}]
    b = columnar(events).sorted_by_time()
    assert events_at(b, [2, 0]) == [events[0], events[1]] and events_at(b, []) == []
    assert not b.holds_dicts
    d = EventBatch(events)
    assert all(x is y for x, y in zip(events_at(d, [2, 0]), [events[2], events[0]]))  # a batch of dicts: its own
