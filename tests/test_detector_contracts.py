"""The contract every detector keeps (STYLE.md: river's estimator checks), run over the registry.

A new detector joins ``DETECTOR_CLASSES`` and adds an entry to ``ATTACKS`` below (events that
make it alert for one entity); every check here then runs against it. The checks are what the
runtime relies on: the worker keeps state in a changelog (JSON, small, per entity, on the
partition of the entity's events) and deduplicates on alert ids, whatever the batch cuts.
"""

from __future__ import annotations

import copy
import math
import pickle
import random

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ramparts.config import load_config
from ramparts.detectors import DETECTOR_CLASSES, DETECTORS, build_detectors
from ramparts.detectors.base import ENTITY_TYPES, SEVERITIES, DictState, merge_alerts
from ramparts.errors import ConfigError
from ramparts.events import KIND_FIELDS, EventBatch
from ramparts.streams.keys import route_key

from .recording import recorded

NS = 1_000_000_000
T0 = 1_795_000_000 * NS
PROPERTY = settings(max_examples=25, deadline=None, derandomize=True, database=None)


def stuffing(ip: str, t: int) -> dict:
    return {"kind": "request", "ts": t, "source": "envoy_json", "principal": f"key:{t % 977:x}", "src_ip": ip,
            "model": "llama-3-8b", "path": "/v1/chat/completions", "status": 401, "latency_ms": 1.5,
            "tokens_in": None, "tokens_out": None}


def falco(pod: str, t: int) -> dict:
    return {"kind": "runtime", "ts": t, "source": "falco", "rule": "Detect crypto miners using the Stratum protocol",
            "verb": None, "priority": "Critical", "namespace": "ml-sandbox", "pod": pod, "container": "c",
            "image": "jupyter/scipy-notebook", "process": "xmrig", "user": "root", "src_ip": None,
            "hostname": "gpu-node-3"}


def k8s_exec(pod: str, t: int) -> dict:
    return {"kind": "runtime", "ts": t, "source": "k8s_audit", "rule": None, "verb": "create",
            "priority": None, "namespace": "inference", "pod": pod, "container": None, "image": None,
            "process": None, "user": "contractor-7@example.com", "src_ip": "198.51.100.200",
            "resource": "pods", "subresource": "exec"}


def boundary_walk(principal: str, t: int) -> dict:
    # A line search: each query a small step from the last along one segment, each answered
    # near the decision boundary (Tramer et al.): close queries and low confidence.
    step = (t // 1_000_000) % 4096
    x = [round(1.0 + 0.001 * step * (j % 7), 4) for j in range(16)]
    return {"kind": "prediction", "ts": t, "source": "kserve", "principal": principal, "src_ip": f"10.0.0.{len(principal)}",
            "model": "digits", "model_version": "1", "input": [x], "output": [[0.52, 0.48]]}


def bulk_pull(principal: str, t: int) -> dict:
    # A key pulling answers in bulk: 20 rows a request, many requests a minute.
    return {"kind": "prediction", "ts": t, "source": "kserve", "principal": principal, "src_ip": "10.0.0.9",
            "model": "digits", "model_version": "1", "input": [[0.5] * 4] * 20, "output": [0.9] * 20}


def _spiky(t: int) -> float:
    # A value that keeps climbing: after the stream's quiet gaps, each minute is a new extreme.
    return 1.0 + (t - T0) / NS


def latency_spikes(model: str, t: int) -> dict:
    return {"kind": "request", "ts": t, "source": "envoy_json", "principal": "svc", "src_ip": "10.0.0.2",
            "model": model, "path": "/v1/chat/completions", "status": 200, "latency_ms": _spiky(t),
            "tokens_in": 10, "tokens_out": 20}


def power_spikes(gpu: str, t: int) -> dict:
    return {"kind": "gpu", "ts": t, "source": "dcgm", "node": "gpu-node-1", "gpu_uuid": gpu, "util_pct": 50.0,
            "mem_used_mib": 1000.0, "power_w": _spiky(t), "processes": [], "namespace": None, "pod": None}


def input_regimes(model: str, t: int) -> dict:
    # A model whose inputs jump between two regimes every 20 s (outputs steady): every other
    # regime is a drift of the inputs away from the model's first rows.
    phase = (t - T0) // (20 * NS) % 2
    rows = [[round(((t // 1_000_000 + 37 * k + 11 * j) % 97) / 97 + 3.0 * phase, 4) for j in range(4)]
            for k in range(5)]
    return {"kind": "prediction", "ts": t, "source": "kserve", "principal": "svc-a", "src_ip": "10.0.0.5",
            "model": model, "model_version": "2", "input": rows, "output": [0.9] * 5}


def falco_critical(pod: str, t: int) -> dict:
    return {**falco(pod, t), "rule": "Drop and execute new binary in container", "process": "payload"}


def new_networks(principal: str, t: int) -> dict:
    # A key whose source network changes every 20 s: after learning, each change is new.
    net = (t - T0) // (20 * NS) % 200
    return {"kind": "request", "ts": t, "source": "envoy_json", "principal": principal,
            "src_ip": f"198.51.{net}.7", "model": f"m-{net}", "path": "/v1/chat/completions", "status": 200,
            "latency_ms": 12.0, "tokens_in": 5, "tokens_out": 9}


def secret_read(user: str, t: int) -> dict:
    return {"kind": "runtime", "ts": t, "source": "k8s_audit", "rule": None, "verb": "get", "priority": None,
            "namespace": "inference", "pod": None, "container": None, "image": None, "process": None,
            "user": f"{user}@example.com", "src_ip": "198.51.100.9", "resource": "secrets", "name": "hf-token"}


def privileged(pod: str, t: int) -> dict:
    return {"kind": "runtime", "ts": t, "source": "falco", "rule": "Launch Privileged Container",
            "priority": "Informational", "namespace": "ml-sandbox", "pod": pod, "container": "c", "image": "x:1",
            "process": "sh", "user": "root", "src_ip": None, "hostname": "gpu-node-3"}


def shell(pod: str, t: int) -> dict:
    return {"kind": "runtime", "ts": t, "source": "falco", "rule": "Terminal shell in container",
            "priority": "Notice", "namespace": "inference", "pod": pod, "container": "vllm", "image": "vllm:1",
            "process": "bash", "user": "root", "src_ip": None, "hostname": "gpu-node-1"}


def busy_gpu(gpu: str, t: int) -> dict:
    # A GPU at full load on a node where nothing is authorized.
    return {"kind": "gpu", "ts": t, "source": "dcgm", "node": "gpu-node-3", "gpu_uuid": gpu, "util_pct": 100.0,
            "mem_used_mib": 2310.0, "mem_free_mib": 43758.0, "power_w": 293.0, "processes": None,
            "namespace": None, "pod": None, "tensor_active": 0.0, "pcie_tx_bytes": 21000.0,
            "pcie_rx_bytes": 34000.0, "mem_copy_util_pct": 0.0}


def serving_gpu(gpu: str, t: int, rng: random.Random) -> dict:
    util = rng.uniform(20, 90)
    return {"kind": "gpu", "ts": t, "source": "dcgm", "node": "gpu-node-1", "gpu_uuid": gpu, "util_pct": util,
            "mem_used_mib": 72000.0 + rng.uniform(-50, 50), "mem_free_mib": 9500.0, "power_w": 69 + 5.3 * util,
            "processes": None, "namespace": "inference", "pod": "vllm-0", "tensor_active": util / 100 * 0.4,
            "pcie_tx_bytes": util * 2.5e6, "pcie_rx_bytes": util * 5e6, "mem_copy_util_pct": util * 0.3}


def _contract_gpu_model() -> tuple[str, str]:
    """A gpu.anomaly model trained on serving-like telemetry (for the contract runs)."""
    import tempfile

    from ramparts.detectors import compute_model

    rng = random.Random(3)
    normal = [serving_gpu(f"GPU-{g}", T0 + i * 15 * NS, rng) for i in range(200) for g in range(4)]
    path = tempfile.mkdtemp(prefix="ramparts-contract-") + "/gpu.model"
    sha = compute_model.save(compute_model.train(normal, window=4, trees=30), path)
    return path, sha


# Per detector: events (entity, ts) -> an event that counts towards an alert for that entity.
ATTACKS = {"access.stuffing": stuffing, "runtime.falco": falco_critical, "access.k8s_exec": k8s_exec,
           "access.new_source": new_networks, "access.new_model": new_networks,
           "access.secret_read": secret_read, "access.privileged_pod": privileged, "access.shell": shell,
           "gpu.unauthorized": busy_gpu, "gpu.miner": falco, "gpu.anomaly": busy_gpu,
           "extraction.queries": boundary_walk, "extraction.volume": bulk_pull,
           "anomaly.model": latency_spikes, "anomaly.gpu": power_spikes,
           "drift.model": input_regimes}

# Options a detector runs the contract with, where its defaults need more time than the contract's
# streams span: extraction.volume judges a stream against its own history, 30 minutes of it by
# default; these streams last minutes, so it judges after one, a minute at or over its peak.
# The metric series learn 720 minutes by default; an entity's attack here fills a few minutes, so 2.
# drift.model judges windows of 500 rows at p 1e-6; a regime here lasts about 150 rows.
_MODEL_PATH, _MODEL_SHA = _contract_gpu_model()
CONTRACT_OPTIONS = {"extraction.volume": {"min_minutes": 1, "ratio": 1.0, "min_queries": 100},
                    "access.new_source": {"learn_requests": 5, "learn_seconds": 1},
                    "access.new_model": {"learn_requests": 5, "learn_seconds": 1},
                    "gpu.anomaly": {"model_path": _MODEL_PATH, "model_sha256": _MODEL_SHA},
                    "anomaly.model": {"learn_minutes": 2}, "anomaly.gpu": {"learn_minutes": 2},
                    "drift.model": {"window_rows": 40, "p_value": 0.01, "chunk_rows": 5}}


def make(cls):
    return cls(CONTRACT_OPTIONS.get(cls.name))


by_name = pytest.mark.parametrize("cls", DETECTOR_CLASSES, ids=lambda c: c.name)


def noise(rng: random.Random, t: int) -> dict:
    """A benign event of a random kind, with the fields of its kind (some None)."""
    kind = rng.choice(list(KIND_FIELDS))
    e = {"kind": kind, "ts": t, "source": rng.choice(["envoy_json", "falco", "k8s_audit", "dcgm", "k8s_pods"])}
    for f in KIND_FIELDS[kind]:
        e[f] = None if rng.random() < 0.2 else rng.choice(["a", "b", "inference", "vllm-0", "GPU-1"])
    if kind == "request":
        e["status"] = rng.choice([200, 200, 200, 403, 429, 500, None])
    if kind == "runtime":
        e["priority"] = rng.choice(["Notice", "Warning", "Error", None])
    return e


def stream(cls, seed: int = 7, n: int = 3000) -> list[dict]:
    """Benign traffic with bursts of ``cls``'s attack on three entities, in time order.

    The bursts are dense, then sparse, then dense again, so incidents open, stay open, close
    on a gap and open again: every path of an incident rule is walked.
    """
    rng = random.Random(seed)
    attack = ATTACKS[cls.name]
    events, t = [], T0
    for i in range(n):
        t += rng.randint(1, 200) * 1_000_000
        events.append(noise(rng, t))
        phase = (i * 4) // n
        rate = {0: 0.5, 1: 0.02, 2: 0.0, 3: 0.5}[phase]
        if rng.random() < rate:
            events.append(attack(f"ent-{rng.randint(0, 2)}", t))
        if phase == 2 and i % 200 == 0:  # a long quiet gap for every incident
            t += 600 * NS
    return events


def batches_of(events: list[dict], size: int) -> list[EventBatch]:
    return [EventBatch(events[i:i + size]) for i in range(0, len(events), size)]


def run(detector, batches, state=None) -> tuple[dict[str, dict], DictState]:
    """Feed batches; the final state of every incident (by id) and the state store."""
    state = state or DictState()
    final: dict[str, dict] = {}
    for b in batches:
        for a in detector.update(b, state):
            final[a["id"]] = a
    return final, state


def test_every_registered_detector_has_contract_inputs():
    assert sorted(ATTACKS) == sorted(DETECTORS), "add an ATTACKS entry for a new detector"


@by_name
def test_the_attack_stream_raises_alerts(cls):
    # Guards the other checks: a contract met by a detector that never alerts proves little.
    alerts, _ = run(make(cls), batches_of(stream(cls), 500))
    assert len(alerts) >= 2


@by_name
def test_update_is_deterministic(cls):
    events = stream(cls)
    a1, s1 = run(make(cls), batches_of(copy.deepcopy(events), 700))
    a2, s2 = run(make(cls), batches_of(copy.deepcopy(events), 700))
    assert a1 == a2
    assert s1.data == s2.data


@by_name
def test_update_does_not_mutate_its_input(cls):
    events = stream(cls)
    before = copy.deepcopy(events)
    run(make(cls), batches_of(events, 500))
    assert events == before


@by_name
def test_detector_pickles_and_the_copy_behaves_the_same(cls):
    d = make(cls)
    events = stream(cls)
    first, rest = batches_of(events[:1000], 1000), batches_of(events[1000:], 1000)
    _, state = run(d, first)
    twin, twin_state = pickle.loads(pickle.dumps(d)), DictState()
    twin_state.data = copy.deepcopy(state.data)
    assert run(d, rest, state)[0] == run(twin, rest, twin_state)[0]


@by_name
def test_state_round_trips_through_json(cls):
    _, state = run(make(cls), batches_of(stream(cls), 500))
    assert state.data
    for key, value in state.data.items():
        assert orjson.loads(orjson.dumps(value)) == value, key


@by_name
def test_state_keys_start_with_the_detector_name(cls):
    _, state = run(make(cls), batches_of(stream(cls), 500))
    assert all(k.startswith(cls.name + "/") for k in state.data)


@by_name
def test_state_per_entity_stays_under_2kb_after_100k_matching_events(cls):
    attack = ATTACKS[cls.name]
    d, state = make(cls), DictState()
    # 100k matches for one entity, 5 ms apart, in batches of 10k: one long open incident.
    for start in range(0, 100_000, 10_000):
        d.update(EventBatch([attack("victim", T0 + i * 5_000_000) for i in range(start, start + 10_000)]), state)
    assert state.data
    for key, value in state.data.items():
        assert len(orjson.dumps(value)) < 2048, (key, len(orjson.dumps(value)))


@by_name
def test_state_of_an_entity_lives_on_the_partition_of_its_events(cls):
    # The worker holds each partition's state in a table: every event that touches a state key
    # must be routed (streams.keys.route_key, by the detector's route) to the same key, or two
    # workers would share one state.
    d, state = make(cls), DictState()
    owners: dict[str, set[str]] = {}
    for e in stream(cls, n=1500):
        d.update(EventBatch([e]), state)
        for k in state.take_dirty():
            owners.setdefault(k, set()).add(route_key(e, cls.route))
    assert owners
    assert {k: v for k, v in owners.items() if len(v) > 1} == {}


MODEL_ROUTED = [c for c in DETECTOR_CLASSES if c.route == "model"]
DECLARING = [c for c in DETECTOR_CLASSES if c.event_fields is not None]


@pytest.mark.parametrize("cls", MODEL_ROUTED, ids=lambda c: c.name)
def test_a_model_routed_detector_declares_the_event_fields_it_reads(cls):
    # The worker sends a model-routed detector's events a second time, on events.model, with
    # only the fields the model-routed detectors declare (streams/topics.py model_route_fields);
    # one that declares none makes the route carry every field of every event again.
    fields = cls.event_fields
    assert isinstance(fields, tuple) and fields, f"{cls.name} must set event_fields"
    assert all(isinstance(f, str) and f for f in fields)
    assert {"kind", "ts"} <= set(fields)
    assert len(set(fields)) == len(fields)


@pytest.mark.parametrize("cls", DECLARING, ids=lambda c: c.name)
def test_a_detector_reads_only_the_event_fields_it_declares(cls):
    # Over its attack stream and the noise of every kind around it (whole events): every field
    # it reads, noted on the events themselves, is declared, and events cut to the declared
    # fields give the same alerts and the same state.
    events = stream(cls)
    read: set[str] = set()
    alerts, state = run(make(cls), [EventBatch(b) for b in recorded([b.events for b in batches_of(events, 500)],
                                                                  read)])
    assert read, "nothing was read"
    assert read <= set(cls.event_fields), f"{cls.name} reads undeclared fields {sorted(read - set(cls.event_fields))}"
    cut = [{k: e[k] for k in cls.event_fields if k in e} for e in events]
    cut_alerts, cut_state = run(make(cls), batches_of(cut, 500))
    assert cut_alerts == alerts
    assert cut_state.data == state.data


def _mangled(events: list[dict], rng: random.Random) -> list[dict]:
    out = []
    for e in events:
        e = dict(e)
        r = rng.random()
        if r < 0.25:  # fields the source did not carry
            for f in rng.sample(sorted(e), k=min(3, len(e))):
                if f not in ("kind", "ts"):
                    e.pop(f)
        elif r < 0.5:  # every field known but empty
            e = {k: (v if k in ("kind", "ts", "source") else None) for k, v in e.items()}
        elif r < 0.75:  # fields nobody has heard of
            e["x_new_field"] = {"nested": [1, None]}
            e["status_text"] = "weird"
        out.append(e)
    return out


@by_name
def test_tolerates_missing_none_and_unknown_fields(cls):
    events = _mangled(stream(cls), random.Random(11))
    alerts, state = run(make(cls), batches_of(events, 400))
    for key, value in state.data.items():
        assert orjson.loads(orjson.dumps(value)) == value, key
    for a in alerts.values():
        assert math.isfinite(a["score"])


@by_name
def test_alerts_have_the_spec_shape_and_finite_scores(cls):
    events = stream(cls)
    alerts, _ = run(make(cls), batches_of(events, 500))
    spec_fields = {"id", "ts", "detector", "severity", "entity", "score", "summary", "evidence", "window",
                   "first_event_ts", "event_count"}
    t_min, t_max = events[0]["ts"], events[-1]["ts"]
    for a in alerts.values():
        assert spec_fields <= set(a), spec_fields - set(a)
        assert a["detector"] == cls.name
        assert a["severity"] in SEVERITIES
        assert set(a["entity"]) == {"type", "id"}
        assert a["entity"]["type"] in ENTITY_TYPES and isinstance(a["entity"]["id"], str)
        assert isinstance(a["score"], float) and math.isfinite(a["score"])
        assert isinstance(a["summary"], str) and a["summary"] and "\n" not in a["summary"]
        assert isinstance(a["evidence"], dict) and a["evidence"]
        orjson.dumps(a["evidence"])  # evidence is stored and sent as JSON
        assert t_min <= a["first_event_ts"] == a["window"]["start"] <= a["window"]["end"] == a["ts"] <= t_max
        assert isinstance(a["event_count"], int) and a["event_count"] >= 1
        assert isinstance(a["id"], str) and a["id"]


@by_name
@PROPERTY
@given(cuts=st.lists(st.integers(min_value=1, max_value=3999), max_size=30))
def test_alert_ids_and_counts_do_not_depend_on_batch_cuts(cls, cuts):
    events = stream(cls, n=2000)
    whole, whole_state = run(make(cls), [EventBatch(events)])
    bounds = [0, *sorted(set(c for c in cuts if c < len(events))), len(events)]
    split, split_state = run(make(cls), [EventBatch(events[a:b]) for a, b in zip(bounds, bounds[1:])])
    assert {i: a["event_count"] for i, a in split.items()} == {i: a["event_count"] for i, a in whole.items()}
    assert split == whole
    assert split_state.data == whole_state.data


@by_name
def test_one_incident_updated_within_a_batch_is_returned_once(cls):
    attack = ATTACKS[cls.name]
    spacing = 60 * NS if cls.name.startswith("anomaly.") else NS  # per-minute series need minutes
    batch = EventBatch([attack("victim", T0 + i * spacing) for i in range(50)])
    raised = make(cls).update(batch, DictState())
    assert len(raised) == len(merge_alerts(raised)) == 1


# -- options through the config -------------------------------------------------------------

def _config(tmp_path, detectors: dict):
    path = tmp_path / "ramparts.yaml"
    path.write_bytes(orjson.dumps({"detectors": detectors}))  # JSON is YAML
    return load_config(path, env={})


@by_name
def test_an_unknown_option_is_a_config_error_that_names_the_option_meant(cls, tmp_path):
    options = list(cls.Options.model_fields)
    if not options:
        pytest.skip(f"{cls.name} has no options")
    typo = options[0][:-1] + options[0][-1] * 2 + "x"
    with pytest.raises(ConfigError) as err:
        _config(tmp_path, {cls.name: {typo: 1}})
    msg = str(err.value)
    assert f"detectors.{cls.name}.{typo}" in msg and f"did you mean '{options[0]}'" in msg
    assert "\n" not in msg


@by_name
def test_a_bad_option_value_is_a_config_error(cls, tmp_path):
    fields = cls.Options.model_fields
    numeric = [n for n, f in fields.items() if f.annotation in (int, float)]
    if not numeric:
        pytest.skip(f"{cls.name} has no numeric option")
    with pytest.raises(ConfigError, match=f"detectors.{cls.name}.{numeric[0]}"):
        _config(tmp_path, {cls.name: {numeric[0]: -5}})


def test_an_unknown_detector_is_a_config_error_with_a_suggestion(tmp_path):
    with pytest.raises(ConfigError, match=r"detectors\.access\.stufing: .*did you mean 'access\.stuffing'"):
        _config(tmp_path, {"access.stufing": {"min_count": 3}})


@by_name
def test_enabled_false_removes_the_detector_and_only_it(cls, tmp_path):
    built = [d.name for d in build_detectors(_config(tmp_path, {cls.name: {"enabled": False}}))]
    assert cls.name not in built
    assert built == [c.name for c in DETECTOR_CLASSES if c is not cls]


def test_without_a_config_every_detector_runs_with_defaults():
    built = build_detectors(None)
    assert [d.name for d in built] == [c.name for c in DETECTOR_CLASSES]
    assert all(d.options == type(d).Options() for d in built)


@by_name
def test_options_from_the_config_reach_the_detector(cls, tmp_path):
    fields = cls.Options.model_fields
    ints = [n for n, f in fields.items() if f.annotation is int and f.default != 7]
    if not ints:
        pytest.skip(f"{cls.name} has no integer option")
    (d,) = [d for d in build_detectors(_config(tmp_path, {cls.name: {ints[0]: 7}})) if d.name == cls.name]
    assert getattr(d.options, ints[0]) == 7
