"""The access detectors on hand-written records: what opens an incident, what never does."""

from __future__ import annotations

import pytest

from ramparts.detectors.access import (
    CredentialStuffing, InferenceShell, NewModel, NewSource, PodExec, PrivilegedPod, SecretRead, network_of,
)
from ramparts.detectors.base import DictState
from ramparts.detectors.request_rows import request_rows
from ramparts.events import EventBatch

NS = 1_000_000_000
T0 = 1_795_000_000 * NS


def req(t_s: float, status=200, principal="key:ab", ip="198.51.100.7", model="llama-3-8b") -> dict:
    return {"kind": "request", "ts": T0 + int(t_s * NS), "source": "envoy_json", "principal": principal,
            "src_ip": ip, "model": model, "path": "/v1/chat/completions", "status": status}


def audit(t_s: float, **f) -> dict:
    e = {"kind": "runtime", "ts": T0 + int(t_s * NS), "source": "k8s_audit", "verb": "create", "priority": None,
         "rule": None, "namespace": "inference", "pod": "vllm-llama-0", "user": "eve@example.com",
         "src_ip": "203.0.113.5", "resource": "pods", "subresource": "exec"}
    e.update(f)
    return e


def falco(t_s: float, **f) -> dict:
    e = {"kind": "runtime", "ts": T0 + int(t_s * NS), "source": "falco", "rule": "Terminal shell in container",
         "priority": "notice", "namespace": "inference", "pod": "vllm-llama-0", "process": "bash",
         "hostname": "gpu-node-1", "image": "vllm/vllm-openai:v0.6.4"}
    e.update(f)
    return e


def run(d, events) -> list[dict]:
    return d.update(EventBatch(sorted(events, key=lambda e: e["ts"])), DictState())


# -- access.stuffing ---------------------------------------------------------------------------------
def test_stuffing_counts_refusals_per_source_and_the_distinct_keys_tried():
    burst = [req(i * 0.1, status=401, principal=f"key:{i:04x}", ip="192.0.2.77") for i in range(25)]
    (a,) = run(CredentialStuffing(), burst)
    assert a["entity"] == {"type": "src_ip", "id": "192.0.2.77"} and a["event_count"] == 25
    assert a["evidence"]["distinct_keys_tried"] == 25 and a["severity"] == "high"


def test_a_revoked_key_retrying_slowly_and_a_burst_under_the_threshold_do_not_page():
    slow = [req(i * 30.0, status=401, principal="key:dead", ip="203.0.113.41") for i in range(40)]
    short = [req(i * 0.1, status=401, principal=f"key:{i}", ip="192.0.2.8") for i in range(19)]
    assert run(CredentialStuffing(), slow + short) == []


def test_403s_of_one_real_key_are_that_principals_incident():
    probing = [req(i * 0.5, status=403, principal="key:real", ip="198.51.100.9", model=f"m{i}") for i in range(20)]
    (a,) = run(CredentialStuffing(), probing)
    assert a["entity"] == {"type": "principal", "id": "key:real"} and a["evidence"]["refused_403"] == 20
    assert "HTTP 403" in a["summary"]


# -- access.new_source / access.new_model ---------------------------------------------------------
def test_a_key_used_from_a_new_network_after_learning_alerts_once_per_incident():
    d, state = NewSource({"learn_requests": 10, "learn_seconds": 60}), DictState()
    usual = [req(i, ip="198.51.100.7" if i % 2 else "203.0.113.9") for i in range(100)]
    assert d.update(EventBatch(usual), state) == []
    thief = [req(100 + i, ip=f"185.220.101.{30 + i % 3}") for i in range(5)]
    (a,) = d.update(EventBatch(thief), state)
    assert a["entity"] == {"type": "principal", "id": "key:ab"} and a["event_count"] == 5
    assert a["evidence"]["network"] == "185.220.101.0/24" and sorted(a["evidence"]["usual"]) == [
        "198.51.100.0/24", "203.0.113.0/24"]
    # The owner keeps working from home: nothing new.
    assert d.update(EventBatch([req(200, ip="198.51.100.7")]), state) == []


def test_no_judgement_while_learning_and_none_for_a_roaming_principal_or_refused_requests():
    d = NewSource({"learn_requests": 10, "learn_seconds": 60, "max_values": 4})
    learning = [req(i, ip=f"10.{i}.0.1") for i in range(4)]
    assert run(d, learning) == []
    roaming = [req(i, ip=f"10.{i}.0.1") for i in range(80)]
    assert run(NewSource({"learn_requests": 10, "learn_seconds": 60, "max_values": 4}), roaming) == []
    refused = [req(i, ip="198.51.100.7") for i in range(50)] + [req(60, status=401, ip="192.0.2.1"),
                                                                 req(61, status=403, ip="192.0.2.1")]
    assert run(NewSource({"learn_requests": 10, "learn_seconds": 10}), refused) == []


def test_a_principal_calling_a_model_outside_its_set():
    usual = [req(i, model=("llama-3-8b", "bge-m3")[i % 2]) for i in range(60)]
    (a,) = run(NewModel({"learn_requests": 20, "learn_seconds": 30}), usual + [req(70, model="qwen2.5-32b")])
    assert a["evidence"]["model_called"] == "qwen2.5-32b" and a["severity"] == "medium"
    assert sorted(a["evidence"]["usual"]) == ["bge-m3", "llama-3-8b"]


def test_networks_are_ipv4_24_and_ipv6_48():
    assert network_of("10.1.2.3") == "10.1.2.0/24" and network_of("2001:db8:aa:bb::1") == "2001:db8:aa::/48"


# -- cluster ----------------------------------------------------------------------------------------
def test_exec_into_a_model_serving_pod_alerts_and_into_another_pod_only_when_asked():
    (a,) = run(PodExec(), [audit(1)])
    assert a["entity"] == {"type": "pod", "id": "inference/vllm-llama-0"} and a["evidence"]["user"] == "eve@example.com"
    batch_pod = audit(1, namespace="etl", pod="spark-driver-0")
    assert run(PodExec(), [batch_pod]) == []
    assert len(run(PodExec({"all_pods": True}), [batch_pod])) == 1
    assert run(PodExec(), [audit(1, subresource="log", verb="get")]) == []


def test_secret_reads_in_model_namespaces_by_people_not_by_system_identities():
    read = audit(1, resource="secrets", subresource=None, verb="get", pod=None, name="hf-token")
    (a,) = run(SecretRead(), [read])
    assert a["entity"] == {"type": "principal", "id": "eve@example.com"} and a["evidence"]["secret"] == "hf-token"
    assert run(SecretRead(), [{**read, "user": "system:serviceaccount:inference:vllm"}]) == []
    assert run(SecretRead(), [{**read, "namespace": "default"}]) == []
    assert run(SecretRead(), [{**read, "status": 403}]) == []


def test_privileged_pods_outside_system_namespaces_and_higher_on_gpu_nodes():
    created = audit(1, subresource=None, verb="create", namespace="ml-sandbox", pod="jupyter-0", privileged=True,
                    node=None, status=201)
    (a,) = run(PrivilegedPod(), [created])
    assert a["evidence"]["gpu_node"] is False and a["evidence"]["seen_by"] == "k8s_audit"
    started = falco(2, rule="Launch Privileged Container", namespace="ml-sandbox", pod="jupyter-0",
                    hostname="gpu-node-3")
    (b,) = run(PrivilegedPod(), [started])
    assert b["evidence"]["gpu_node"] is True and "GPU node gpu-node-3" in b["summary"]
    device_plugin = falco(2, rule="Launch Privileged Container", namespace="kube-system", pod="nvidia-device-plugin-x")
    assert run(PrivilegedPod(), [device_plugin, {**created, "privileged": False}]) == []


def test_a_shell_in_a_serving_container_but_not_in_a_batch_job():
    (a,) = run(InferenceShell(), [falco(1)])
    assert a["detector"] == "access.shell" and a["evidence"]["process"] == "bash"
    assert run(InferenceShell(), [falco(1, namespace="etl", pod="spark-0")]) == []
    assert run(InferenceShell(), [falco(1, rule="Read sensitive file untrusted", process="python")]) == []


# -- the habit detectors' shortcuts against the per-event loop they stand for -------------------------
def _habit_reference(d, batches) -> tuple[list[list[dict]], dict]:
    """What access.new_source / access.new_model decide, written as one pass over each batch's
    events (the detector groups requests per principal once per batch, shares the grouping
    between the two, and counts a principal with only known values without this loop)."""
    o, state, out = d.options, {}, []
    learn_ns, gap = int(o.learn_seconds * NS), int(o.gap_seconds * NS)
    for events in batches:
        per: dict[str, list] = {}
        for e in events:
            p, s = e.get("principal"), e.get("status")
            if e.get("kind") != "request" or not isinstance(p, str) or s in (401, 403) or (
                    isinstance(s, int) and s >= 500):
                continue
            v = d.value_of(e)
            if v is not None:
                per.setdefault(p, []).append((e, v))
        alerts = []
        for p, items in per.items():
            key = d.key(f"principal:{p}")
            st = state.get(key) or {"vals": [], "n": 0, "first": items[0][0]["ts"], "inc": None}
            vals, n, first, inc, roaming = list(st["vals"]), st["n"], st["first"], st["inc"], st.get("roaming", False)
            hits = {}
            for e, v in items:
                t = e["ts"]
                if inc is not None and t - inc["last"] > gap:
                    inc = None
                learning = n < o.learn_requests or t - first < learn_ns
                n += 1
                if v in vals:
                    if inc is not None and v in inc["new"]:
                        inc = {**inc, "last": t, "count": inc["count"] + 1}
                        hits[inc["first"]] = (e, v, inc, list(vals))
                    continue
                if learning or roaming:
                    vals.append(v)
                    if len(vals) > o.max_values:
                        roaming, vals = True, vals[-o.max_values:]
                    continue
                vals.append(v)
                del vals[:-o.max_values * 2]
                inc = ({"first": t, "last": t, "count": 1, "new": [v]} if inc is None else
                       {**inc, "last": t, "count": inc["count"] + 1, "new": (inc["new"] + [v])[-4:]})
                hits[inc["first"]] = (e, v, inc, list(vals))
            st = {"vals": vals, "n": min(n, 1 << 40), "first": first, "inc": inc}
            if roaming:
                st["roaming"] = True
            state[key] = st
            for e, v, inc_then, seen in hits.values():
                alerts.append(d._alert(p, e, v, inc_then, [x for x in seen if x not in inc_then["new"]][:8]))
        out.append(alerts)
    return out, state


@pytest.mark.parametrize("odd", ["unhashable", "float-status", "plain"])
def test_habit_detectors_decide_what_one_pass_per_event_decides(odd):
    # "plain": every batch is decided per distinct (principal, status, source, model) of
    # detectors/request_rows.py; "unhashable" (a list for a source) and "float-status": the batches
    # holding one go per principal (_update_per_principal), the others per distinct value (a
    # status that is text takes the per-principal path too, so only the "unhashable" stream has one).
    import random

    rng = random.Random(5)
    ips = ["198.51.100.7", "198.51.100.9", "203.0.113.50", "192.0.2.1", "2001:db8:1:2::5", "", None]
    ips += [["x"]] if odd == "unhashable" else []
    models = ["m1", "m2", "m3", "x" * 80, "", None]
    principals = [f"key:{i}" for i in range(6)] + [None, 7]
    events, t = [], 0.0
    for _ in range(6000):
        t += rng.expovariate(8.0)
        e = req(t, status=rng.choice([200] * 12 + [401, 403, 500, 503, 404, None] + (["200"] if odd == "unhashable" else [])),
                principal=rng.choice(principals), ip=rng.choice(ips[:4] * 8 + ips),
                model=rng.choice(models[:2] * 10 + models))
        if rng.random() < 0.02:
            e["kind"] = "prediction"
        if odd == "float-status" and rng.random() < 0.002:
            e["status"] = rng.choice([500.0, 200.0])
        events.append(e)
    cuts = sorted(rng.sample(range(1, len(events)), 40))
    batches = [events[a:b] for a, b in zip([0, *cuts], [*cuts, len(events)])]
    for cls in (NewSource, NewModel):
        opts = {"learn_requests": 30, "learn_seconds": 20, "max_values": 3, "gap_seconds": 30}
        want_alerts, want_state = _habit_reference(cls(opts), batches)
        d, state = cls(opts), DictState()
        got_alerts = [d.update(EventBatch(b), state) for b in batches]
        plain = sum(r is not None and r.plain_status for r in (request_rows(EventBatch(b)) for b in batches))
        assert plain == (len(batches) if odd == "plain" else plain) and (odd == "unhashable" or plain > 30)
        assert got_alerts == want_alerts
        assert any(got_alerts) and any(s.get("roaming") for s in want_state.values())
        assert list(state.data.items()) == list(want_state.items())  # the same states, written in the same order


def test_stuffing_matches_read_from_int_statuses_are_those_of_the_per_request_test():
    """access.stuffing's refused requests from the shared int64 statuses (every status an int) are
    the per-request ``status in (401, 403)`` of before (frozen copy), for any statuses: ints near
    and beyond 64 bits, bools, floats, texts, None, lists (the per-request test then decides)."""
    from itertools import compress

    from hypothesis import given, settings
    from hypothesis import strategies as st

    from ramparts.events import columnar

    status = st.one_of(st.sampled_from([200, 401, 403, 429, 500, 401 + 2 ** 64, -401, 2 ** 63 - 1]),
                       st.sampled_from([401.0, True, "401", None, [401]]))

    @settings(derandomize=True, max_examples=600, deadline=None, database=None)
    @given(st.lists(st.tuples(st.booleans(), st.one_of(status, st.sampled_from([401, 403, 200]))), max_size=30),
           st.booleans())
    def check(rows, as_columns):
        events = [{"kind": "request" if req else "gpu", "ts": i, "status": s} for i, (req, s) in enumerate(rows)]
        batch = (columnar if as_columns else EventBatch)(events)
        want = list(compress([i for i, e in enumerate(events) if e["kind"] == "request"],
                             map((401, 403).__contains__, [e["status"] for e in events if e["kind"] == "request"])))
        assert CredentialStuffing().matches(batch) == want

    check()
