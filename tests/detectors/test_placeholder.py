"""The placeholder incident rules: when an incident opens, grows, closes and what counts."""

from __future__ import annotations

import pytest

from ramparts.detectors.base import DictState, alert_id
from ramparts.detectors.placeholder import AuthFailureBurst, FalcoCritical, PodExec
from ramparts.events import EventBatch

NS = 1_000_000_000
T0 = 1_795_000_000 * NS
IP = "198.51.100.7"


def req(t_s: float, status: int = 401, ip: str | None = IP) -> dict:
    return {"kind": "request", "ts": T0 + int(t_s * NS), "source": "nginx_combined", "principal": None,
            "src_ip": ip, "status": status}


def falco(t_s: float, priority, pod="jupyter-0", ns="ml-sandbox", source="falco", **extra) -> dict:
    return {"kind": "runtime", "ts": T0 + int(t_s * NS), "source": source, "rule": "Terminal shell in container",
            "priority": priority, "namespace": ns, "pod": pod, "process": "bash", "image": "img", **extra}


def audit(t_s: float, subresource, verb="create", resource="pods", pod="vllm-0") -> dict:
    return {"kind": "runtime", "ts": T0 + int(t_s * NS), "source": "k8s_audit", "verb": verb, "resource": resource,
            "subresource": subresource, "namespace": "inference", "pod": pod, "user": "eve@example.com",
            "src_ip": "203.0.113.5"}


def feed(rule, *batches) -> tuple[list[list[dict]], DictState]:
    state = DictState()
    return [rule.update(EventBatch(list(b)), state) for b in batches], state


def only(alerts: list[dict]) -> dict:
    assert len(alerts) == 1, alerts
    return alerts[0]


# -- access.stuffing ----------------------------------------------------------------------

def test_stuffing_opens_at_min_count_within_the_window():
    rule = AuthFailureBurst({"min_count": 5, "window_seconds": 10})
    (below, at), _ = feed(rule, [req(i) for i in range(4)], [req(4)])
    assert below == []
    a = only(at)
    assert (a["detector"], a["severity"], a["entity"]) == ("access.stuffing", "high", {"type": "src_ip", "id": IP})
    assert a["event_count"] == 5 and a["score"] == 5.0
    assert a["first_event_ts"] == a["window"]["start"] == T0 and a["window"]["end"] == a["ts"] == T0 + 4 * NS
    assert a["id"] == alert_id("access.stuffing", "src_ip", IP, T0)
    assert a["evidence"]["value"] == 5 and a["evidence"]["threshold"] == 5
    assert a["summary"] == f"5 failed authentications (HTTP 401) from {IP}"


def test_stuffing_does_not_open_when_min_count_is_spread_wider_than_the_window():
    rule = AuthFailureBurst({"min_count": 5, "window_seconds": 10})
    (alerts,), _ = feed(rule, [req(i * 3) for i in range(5)])  # 5 failures over 12 s
    assert alerts == []


def test_stuffing_window_slides_over_the_latest_failures():
    rule = AuthFailureBurst({"min_count": 5, "window_seconds": 10})
    (alerts,), _ = feed(rule, [req(t) for t in (0, 3, 6, 9, 12, 13)])
    a = only(alerts)  # 0 .. 12 spans 12 s; 3 .. 13 spans 10 s and opens the incident
    assert a["first_event_ts"] == T0 + 3 * NS and a["event_count"] == 5


def test_stuffing_incident_grows_under_the_same_id_across_batches():
    rule = AuthFailureBurst({"min_count": 3, "gap_seconds": 60})
    (first, second, third), _ = feed(rule, [req(0), req(1), req(2)], [req(30), req(31)], [req(85)])
    assert only(first)["id"] == only(second)["id"] == only(third)["id"]
    assert [only(x)["event_count"] for x in (first, second, third)] == [3, 5, 6]
    assert only(third)["window"] == {"start": T0, "end": T0 + 85 * NS}


def test_a_gap_closes_the_incident_and_the_next_burst_is_a_new_incident():
    rule = AuthFailureBurst({"min_count": 3, "gap_seconds": 60})
    (first, lone, again), _ = feed(rule, [req(0), req(1), req(2)], [req(100)], [req(101), req(102)])
    assert lone == []  # after the gap one failure is not a burst yet
    old, new = only(first), only(again)
    assert new["id"] != old["id"]
    assert new["first_event_ts"] == T0 + 100 * NS and new["event_count"] == 3


def test_stuffing_counts_401_only():
    rule = AuthFailureBurst({"min_count": 3})
    (alerts,), _ = feed(rule, [req(i, status=s) for i, s in enumerate([403, 403, 403, 200, 500, 429, 401, 401])])
    assert alerts == []
    (alerts,), _ = feed(rule, [req(i, status=s) for i, s in enumerate([401, 403, 401, 403, 401])])
    assert only(alerts)["event_count"] == 3


def test_stuffing_counts_per_source_address_and_ignores_failures_without_one():
    rule = AuthFailureBurst({"min_count": 3})
    events = [req(0, ip="192.0.2.1"), req(1, ip="192.0.2.2"), req(2, ip=None), req(3, ip="192.0.2.1"),
              req(4, ip=None), req(5, ip="192.0.2.2"), req(6, ip=None), req(7, ip="192.0.2.1")]
    (alerts,), state = feed(rule, events)
    assert [a["entity"]["id"] for a in alerts] == ["192.0.2.1"]
    assert sorted(state.data) == ["access.stuffing/192.0.2.1", "access.stuffing/192.0.2.2"]


def test_stuffing_ignores_401_of_other_kinds():
    rule = AuthFailureBurst({"min_count": 1})
    (alerts,), _ = feed(rule, [{**req(0), "kind": "prediction"}])
    assert alerts == []


def test_min_count_of_one_opens_on_the_first_match():
    (alerts,), _ = feed(AuthFailureBurst({"min_count": 1}), [req(0)])
    assert only(alerts)["event_count"] == 1


# -- runtime.falco ------------------------------------------------------------------------

@pytest.mark.parametrize("priority", ["Critical", "CRITICAL", "critical", "Alert", "ALERT", "Emergency", "emergency"])
def test_falco_critical_and_above_match_whatever_the_case(priority):
    (alerts,), _ = feed(FalcoCritical(), [falco(0, priority)])
    a = only(alerts)
    assert (a["detector"], a["severity"]) == ("runtime.falco", "critical")
    assert a["entity"] == {"type": "pod", "id": "ml-sandbox/jupyter-0"}
    assert a["evidence"]["priority"] == priority and a["evidence"]["process"] == "bash"


@pytest.mark.parametrize("priority", ["Error", "Warning", "Notice", "Informational", "Debug", "", None, 3])
def test_falco_below_critical_does_not_match(priority):
    (alerts,), _ = feed(FalcoCritical(), [falco(0, priority)])
    assert alerts == []


def test_a_critical_priority_from_another_source_is_not_a_falco_alert():
    (alerts,), _ = feed(FalcoCritical(), [falco(0, "Critical", source="k8s_audit")])
    assert alerts == []


def test_falco_counts_per_pod_and_the_summary_names_rule_and_count():
    events = [falco(0, "Critical"), falco(1, "Critical", pod="other"), falco(2, "Critical")]
    (alerts,), _ = feed(FalcoCritical(), events)
    by_pod = {a["entity"]["id"]: a for a in alerts}
    assert {k: a["event_count"] for k, a in by_pod.items()} == {"ml-sandbox/jupyter-0": 2, "ml-sandbox/other": 1}
    assert by_pod["ml-sandbox/jupyter-0"]["summary"] == \
        "Falco: Terminal shell in container (2 alerts) in ml-sandbox/jupyter-0"
    assert by_pod["ml-sandbox/other"]["summary"].endswith("(1 alert) in ml-sandbox/other")


def test_a_falco_alert_outside_a_pod_is_about_its_node():
    (alerts,), _ = feed(FalcoCritical(), [falco(0, "Critical", pod=None, ns=None, hostname="gpu-node-3")])
    assert only(alerts)["entity"] == {"type": "node", "id": "gpu-node-3"}


# -- access.k8s_exec ----------------------------------------------------------------------

@pytest.mark.parametrize("subresource", ["exec", "attach"])
@pytest.mark.parametrize("verb", ["create", "get"])
def test_exec_and_attach_into_a_pod_alert(subresource, verb):
    (alerts,), _ = feed(PodExec(), [audit(0, subresource, verb=verb)])
    a = only(alerts)
    assert (a["detector"], a["severity"], a["entity"]) == \
        ("access.k8s_exec", "medium", {"type": "pod", "id": "inference/vllm-0"})
    assert a["summary"] == f"eve@example.com ran {subresource} into pod inference/vllm-0 (1x)"
    assert a["evidence"]["user"] == "eve@example.com" and a["evidence"]["src_ip"] == "203.0.113.5"


@pytest.mark.parametrize("subresource,verb,resource", [
    ("log", "get", "pods"), ("portforward", "create", "pods"), ("proxy", "get", "pods"), (None, "create", "pods"),
    ("status", "patch", "pods"), ("exec", "delete", "pods"), ("exec", "create", "deployments"),
])
def test_other_subresources_verbs_and_resources_do_not_alert(subresource, verb, resource):
    (alerts,), _ = feed(PodExec(), [audit(0, subresource, verb=verb, resource=resource)])
    assert alerts == []


def test_exec_from_a_source_other_than_the_audit_log_does_not_alert():
    (alerts,), _ = feed(PodExec(), [{**audit(0, "exec"), "source": "falco"}])
    assert alerts == []


def test_repeated_exec_into_one_pod_is_one_incident():
    (first, second), _ = feed(PodExec(), [audit(0, "exec"), audit(5, "attach")], [audit(60, "exec")])
    assert only(first)["id"] == only(second)["id"]
    assert only(second)["event_count"] == 3


def test_a_node_and_a_pod_of_one_name_are_separate_incidents():
    events = [falco(0, "Critical", pod="gpu-node-3", ns=None), falco(1, "Critical", pod=None, ns=None,
                                                                      hostname="gpu-node-3")]
    (alerts,), state = feed(FalcoCritical(), events)
    assert sorted((a["entity"]["type"], a["entity"]["id"], a["event_count"]) for a in alerts) == \
        [("node", "gpu-node-3", 1), ("pod", "gpu-node-3", 1)]
    assert len(state.data) == 2


def test_a_redelivered_event_is_not_counted_twice():
    # At-least-once: a restarted worker redoes its predecessor's tail with the same position ids.
    events = [{**req(i), "id": f"raw:0:{i}:1"} for i in range(12)]
    rule = AuthFailureBurst({"min_count": 20})
    alerts, state = feed(rule, EventBatch(events), EventBatch(events[4:]), EventBatch(events))
    assert alerts == [[], [], []]  # 12 distinct failures stay under 20, however often they arrive
    fresh = [{**req(12 + i), "id": f"raw:0:{12 + i}:1"} for i in range(8)]
    alerts, _ = feed(rule, EventBatch(events + fresh))
    assert only(alerts[0])["event_count"] == 20
