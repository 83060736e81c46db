"""Access abuse: stolen and guessed credentials at the gateway, and hands on the model pods.

From gateway requests:

* :class:`CredentialStuffing` (``access.stuffing``): bursts of 401/403 per source address
  (401s: the key presented identifies nobody, so the source is who tries) and per principal
  (403s of a real key probing what it may not use); the evidence counts the distinct keys tried.
* :class:`NewSource` (``access.new_source``): a principal used from a network (IPv4 /24, IPv6
  /48) it was not seen on while its habits were learned: a stolen key.
* :class:`NewModel` (``access.new_model``): a principal calling a model outside its usual set.

From the Kubernetes audit log and Falco:

* :class:`PodExec` (``access.k8s_exec``): ``exec`` / ``attach`` into a model-serving pod;
* :class:`SecretRead` (``access.secret_read``): a person (not a ``system:`` identity) reading
  secrets in a model namespace;
* :class:`PrivilegedPod` (``access.privileged_pod``): a new privileged pod outside the system
  namespaces, high severity on a GPU node;
* :class:`InferenceShell` (``access.shell``): a shell in a model-serving container (Falco).

A *model-serving pod* is one in ``model_namespaces`` or whose name says it serves
(``vllm``, ``tgi``, ``triton``, ``predictor`` ...). Habits are learned per principal for
``learn_requests`` successful requests and at least ``learn_seconds``; a principal seen on more
than ``max_networks`` networks (or models) while learning roams too much to judge and is left alone.

>>> from ramparts.detectors.base import DictState
>>> from ramparts.events import EventBatch
>>> d, state = NewSource({"learn_requests": 3, "learn_seconds": 1}), DictState()
>>> def req(t, ip):
...     return {"kind": "request", "ts": t * 10**9, "source": "envoy_json", "principal": "key:ab", "src_ip": ip,
...             "model": "m", "path": "/v1/chat/completions", "status": 200}
>>> d.update(EventBatch([req(t, "198.51.100.7") for t in range(5)]), state)
[]
>>> [(a["detector"], a["entity"]["id"], a["evidence"]["network"]) for a in
...  d.update(EventBatch([req(9, "203.0.113.50")]), state)]
[('access.new_source', 'key:ab', '203.0.113.0/24')]
"""

from __future__ import annotations

import re
import zlib
from itertools import compress
from typing import Any, Callable, ClassVar

import numpy as np
from pydantic import Field

from ramparts.events import EventBatch
from ramparts.streams.keys import entity_key

from .base import Detector, StateStore, make_alert
from .incident import IncidentRule, events_where, node_of, pod_id
from .kind_columns import kind_values
from .request_rows import MODEL, PRINCIPAL, SRC_IP, STATUS, TS, request_rows
from .typed_columns import TypedColumns

NS = 1_000_000_000
MAX_KEYS_TRIED = 48

MODEL_NAMESPACES = ("inference", "models", "model-serving", "serving", "kserve", "kserve-test", "triton", "vllm",
                    "llm", "ai-models")
SERVING_NAME = r"vllm|tgi|text-generation|triton|predictor|kserve|tei-|torchserve|ray-serve|sglang|ollama|llm|inference"
SYSTEM_NAMESPACES = ("kube-system", "kube-public", "kube-node-lease", "gpu-operator", "nvidia-gpu-operator",
                     "nvidia-device-plugin", "falco", "calico-system", "tigera-operator", "cilium")
SHELLS = frozenset(("sh", "bash", "dash", "zsh", "ash", "ksh", "csh", "tcsh", "fish", "busybox"))


class _ServingPods(Detector.Options):
    model_namespaces: tuple[str, ...] = Field(default=MODEL_NAMESPACES,
                                              description="Namespaces whose pods serve models.")
    serving_pod_pattern: str = Field(default=SERVING_NAME,
                                     description="Regular expression on pod names that marks a model-serving pod.")


def _serving(options, event: dict) -> bool:
    ns = event.get("namespace")
    if isinstance(ns, str) and ns in options.model_namespaces:
        return True
    pod = event.get("pod")
    return isinstance(pod, str) and re.search(options.serving_pod_pattern, pod, re.I) is not None


# -- gateway --------------------------------------------------------------------------------------
class CredentialStuffing(IncidentRule):
    """Bursts of refused authentication: 401s per source address, 403s per principal."""

    name = "access.stuffing"
    kinds = ("request",)
    # What update reads of an event (the worker's events topic carries no other field of its kinds).
    event_fields = ("id", "kind", "principal", "src_ip", "status", "ts")
    entity_type = "src_ip"
    severity = "high"
    description = ">= min_count 401/403 within the window from one source (401) or for one principal (403)"

    class Options(IncidentRule.Options):
        min_count: int = Field(default=20, ge=1, description="Refusals within window_seconds that open an incident.")

    def matches(self, batch: EventBatch) -> list[int]:
        req = batch.indices_where("kind", "request")
        # The requests' statuses as anomaly.model and drift.model read them (made once per batch for
        # all): when every one is an int, compared as an int64 array (TypedColumns.ints; None when one
        # is beyond 64 bits).
        typed = TypedColumns(batch, ("request",))
        if _INT.issuperset(typed.types("status", _INT)):
            status = typed.ints("status")
            if status is not None:
                return [req[i] for i in np.flatnonzero((status == 401) | (status == 403)).tolist()]
        # ``in`` a tuple compares with ==, as before: a list for a status (bad input) matches nothing.
        return list(compress(req, map(_REFUSED.__contains__, kind_values(batch, ("request",), "status"))))

    def entity_type_of(self, event: dict) -> str:
        # As the worker keys requests (streams.keys): a 401 or a keyless request by its source.
        return "src_ip" if event.get("status") == 401 or event.get("principal") is None else "principal"

    def entity_of(self, event: dict) -> str | None:
        v = event.get("src_ip") if self.entity_type_of(event) == "src_ip" else event.get("principal")
        return v if isinstance(v, str) and v else None

    def observe(self, extra: dict, event: dict) -> None:
        p = event.get("principal")
        if isinstance(p, str):
            keys = extra.setdefault("keys", [])
            h = zlib.crc32(p.encode())
            if h not in keys and len(keys) < MAX_KEYS_TRIED:
                keys.append(h)
        extra["s403"] = extra.get("s403", 0) + (event.get("status") == 403)

    def extra_evidence(self, extra: dict) -> dict:
        keys = len(extra.get("keys", ()))
        return {"distinct_keys_tried": keys, "distinct_keys_capped_at": MAX_KEYS_TRIED,
                "refused_403": extra.get("s403", 0)}

    def describe(self, entity: str, count: int, event: dict) -> str:
        if self.entity_type_of(event) == "principal":
            return f"{count} requests of principal {entity} refused (HTTP 403): probing what the key may use"
        return f"{count} failed authentications (HTTP 401/403) from {entity}: credential stuffing or key guessing"


def network_of(ip: str) -> str:
    """The network a source address is judged by: IPv4 /24, IPv6 /48.

    >>> network_of("198.51.100.7"), network_of("2001:db8:1:2::5")
    ('198.51.100.0/24', '2001:db8:1::/48')
    """
    if ":" not in ip:
        head, _, _ = ip.rpartition(".")
        return f"{head}.0/24" if head else ip
    import ipaddress

    try:
        return str(ipaddress.ip_network(f"{ip}/48", strict=False))
    except ValueError:
        return ip


class _PrincipalHabit(Detector):
    """A principal's usual values of one field, learned, then judged (new_source, new_model)."""

    kinds = ("request",)
    # What update reads of an event (the worker's events topic carries no other field of its kinds).
    event_fields = ("kind", "model", "principal", "src_ip", "status", "tokens_in", "tokens_out", "ts")
    field: ClassVar[str]
    what: ClassVar[str]

    class Options(Detector.Options):
        learn_requests: int = Field(default=40, ge=1, description="Successful requests learned before judging.")
        learn_seconds: float = Field(default=300.0, ge=0, description="Time learned before judging, at least.")
        max_values: int = Field(default=8, ge=1, le=16,
                                description="More distinct values than this while learning: too varied to judge.")
        gap_seconds: float = Field(default=600.0, gt=0, description="An incident closes after this long without a new one.")

    def value_of(self, e: dict) -> str | None:
        return self.value_of_field(e.get(self.field))

    def value_of_field(self, v) -> str | None:
        """The habit value of the event's ``field`` value (None: the event says nothing)."""
        raise NotImplementedError

    def update(self, batch: EventBatch, state: StateStore) -> list[dict]:
        rr = request_rows(batch)
        if rr is None or not rr.plain_status:
            return self._update_per_principal(batch, state)
        # Per distinct (principal, status, source, model) of the batch, not per request: the
        # principals this detector reads, each with its rank (the order one pass over the batch
        # would meet them), the number of its requests with a value, and its set of values. The
        # rows a habit is learned from (a principal's, not refused nor failed) are picked once per
        # batch for both habit detectors (_habit_rows).
        fi = SRC_IP if self.field == "src_ip" else MODEL
        value_of_field = self.value_of_field
        values: dict = {}
        per: dict[str, list] = {}
        k = 3 if fi == SRC_IP else 4  # the row's source or model
        for row in batch.shared("access.habit_rows", _habit_rows):
            rank, p, count, raw = row[0], row[1], row[2], row[k]
            v = values[raw] if raw in values else values.setdefault(raw, value_of_field(raw))
            if v is None:
                continue
            got = per.get(p)
            if got is None:
                per[p] = [rank, count, {v}]
            else:
                got[1] += count
                got[2].add(v)
        # A principal whose values are all known, with no incident open, is only counted (a known
        # value neither learns nor alerts, whatever the phase); the others go through the
        # per-request loop, with their requests in batch order.
        todo = []  # (principal, state key, state or None, count, None: count only)
        slow = set()
        for p, (_, count, known) in sorted(per.items(), key=_rank):
            key = self.key(f"principal:{p}")
            st = state.get(key)
            if st is not None and st["inc"] is None and known.issubset(st["vals"]):
                todo.append((p, key, st, count, None))
            else:
                todo.append((p, key, st, count, True))
                slow.add(p)
        items_of: dict[str, list] = {}
        cols = rr.cols
        ps, ss, raws, ts = cols[PRINCIPAL], cols[STATUS], cols[fi], cols[TS]
        if slow:
            for j in compress(range(len(ps)), map(slow.__contains__, ps)):
                s = ss[j]
                if s in (401, 403) or (isinstance(s, int) and s >= 500):
                    continue
                v = values[raws[j]]
                if v is not None:
                    # (time, value, index): the request's dict is made only for an alert (event_at)
                    items_of.setdefault(ps[j], []).append((ts[j], v, j))

        def event_at(j: int) -> dict:
            """What the alert reads of request ``j`` (_REQUEST_READ), not its whole dict."""
            return {"ts": ts[j], "principal": ps[j], "src_ip": cols[SRC_IP][j], "model": cols[MODEL][j],
                    "status": ss[j]}
        alerts: list[dict] = []
        for p, key, st, count, judge in todo:
            if judge is None:
                state.set(key, {"vals": list(st["vals"]), "n": min(st["n"] + count, 1 << 40), "first": st["first"],
                                "inc": None, **({"roaming": True} if st.get("roaming", False) else {})})
            else:
                self._learn_and_judge(p, key, st, items_of[p], state, alerts, event_at)
        return alerts

    def _update_per_principal(self, batch: EventBatch, state: StateStore) -> list[dict]:
        """:meth:`update` for a batch whose requests cannot be summarised by distinct values
        (an unhashable field, or a status that equals another of a different type): per
        principal, from the requests grouped by :func:`_habit_requests`."""
        # A batch names few networks and models: each field value is turned into its habit
        # value once per batch (network_of and bounded cost more than the lookup).
        values: dict = {}
        value_of_field, field = self.value_of_field, self.field
        todo = []  # (index of the principal's first event with a value, principal, its events, values or None)
        for p, idx in batch.shared("access.habit_requests", _habit_requests).items():
            events = [{"ts": t, "principal": p, "src_ip": ip, "model": m, "status": s}
                      for t, ip, m, s in zip(*([vs[i] for i in idx] for vs in map(batch.values, _REQUEST_READ)))]
            try:
                raws = {e.get(field) for e in events}
            except TypeError:  # an unhashable value (bad input): no habit value, event by event
                items = [(i, e, v) for i, e in zip(idx, events) if (v := self.value_of(e)) is not None]
                if items:
                    todo.append((items[0][0], p, [(e["ts"], v, e) for _, e, v in items], None))
                continue
            for raw in raws:
                if raw not in values:
                    values[raw] = value_of_field(raw)
            known = {values[raw] for raw in raws}
            first = idx[0]
            if None in known:
                known.discard(None)
                kept = [(i, e) for i, e in zip(idx, events) if values[e.get(field)] is not None]
                if not kept:
                    continue  # nothing this detector reads: its state is not touched
                first, events = kept[0][0], [e for _, e in kept]
            todo.append((first, p, events, known))
        # Principals in the order of their first event with a value, as one pass over the batch
        # would meet them.
        todo.sort(key=_first_index)
        alerts: list[dict] = []
        for _, p, events, known in todo:
            key = self.key(f"principal:{p}")
            st = state.get(key)
            if known is None:
                items = events
            elif st is not None and st["inc"] is None and known.issubset(st["vals"]):
                st = {"vals": list(st["vals"]), "n": min(st["n"] + len(events), 1 << 40), "first": st["first"],
                      "inc": None, **({"roaming": True} if st.get("roaming", False) else {})}
                state.set(key, st)
                continue
            else:
                items = [(e["ts"], values[e.get(field)], e) for e in events]
            self._learn_and_judge(p, key, st, items, state, alerts, _itself)
        return alerts

    def _learn_and_judge(self, p: str, key: str, st: dict | None, items: list[tuple], state: StateStore,
                         alerts: list[dict], event_at: Callable[[Any], dict]) -> None:
        """One principal's requests of the batch, in order, as (time, habit value, handle; the
        request's dict is ``event_at(handle)``, made for an alert only): learn, judge, count."""
        o = self.options
        learn_ns, gap = int(o.learn_seconds * NS), int(o.gap_seconds * NS)
        learn_requests = o.learn_requests
        st = st or {"vals": [], "n": 0, "first": items[0][0], "inc": None}
        vals, n, first, inc = list(st["vals"]), st["n"], st["first"], st["inc"]
        roaming = st.get("roaming", False)
        hits: dict[int, tuple] = {}
        for t, v, h in items:
            if inc is not None and t - inc["last"] > gap:
                inc = None
            if v in vals:  # a known value: counted (learning or not), and an open incident's new one goes on
                n += 1
                if inc is not None and v in inc["new"]:
                    inc = {**inc, "last": t, "count": inc["count"] + 1}
                    hits[inc["first"]] = (h, v, inc, list(vals))
                continue
            learning = n < learn_requests or t - first < learn_ns
            n += 1
            if learning or roaming:
                vals.append(v)
                if len(vals) > o.max_values:
                    roaming, vals = True, vals[-o.max_values:]
                continue
            vals.append(v)
            del vals[:-o.max_values * 2]
            if inc is None:
                inc = {"first": t, "last": t, "count": 1, "new": [v]}
            else:
                inc = {**inc, "last": t, "count": inc["count"] + 1, "new": (inc["new"] + [v])[-4:]}
            hits[inc["first"]] = (h, v, inc, list(vals))
        st = {"vals": vals, "n": min(n, 1 << 40), "first": first, "inc": inc}
        if roaming:
            st["roaming"] = True
        state.set(key, st)
        for h, v, inc_then, seen_vals in hits.values():
            usual = [x for x in seen_vals if x not in inc_then["new"]][:8]
            alerts.append(self._alert(p, event_at(h), v, inc_then, usual))

    def _alert(self, principal: str, e: dict, v: str, inc: dict, usual: list[str]) -> dict:
        return make_alert(
            self.name, "high" if self.field == "src_ip" else "medium", ("principal", principal),
            score=float(inc["count"]),
            summary=f"principal {principal} {self.what} {v} (usual: {', '.join(usual) or 'none'})",
            evidence={self.evidence_name: v, "new": inc["new"], "usual": usual, "requests_from_new": inc["count"],
                      "src_ip": e.get("src_ip"), "model": e.get("model"), "status": e.get("status")},
            first_ts=inc["first"], last_ts=inc["last"], count=inc["count"])


MAX_VALUE = 48


def bounded(v: str) -> str:
    """A habit value as kept in state: up to MAX_VALUE characters, a long one cut with a checksum
    of the whole (two long names that share a prefix stay apart; the state stays under 2 KB).

    >>> bounded("m"), bounded("x" * 100)
    ('m', 'xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx~5e0e5d8f')
    """
    if len(v) <= MAX_VALUE:
        return v
    return f"{v[:MAX_VALUE - 9]}~{zlib.crc32(v.encode()):08x}"


_REFUSED = (401, 403)
_INT = frozenset((int,))  # not bool
# The fields of a request the habit detectors' per-request loop and their alerts read: the
# requests they judge one by one are handed on as dicts of these alone, made from the columns.
_REQUEST_READ = ("ts", "src_ip", "model", "status")


def _rank(item: tuple) -> int:
    return item[1][0]


def _itself(e: dict) -> dict:
    return e


def _habit_rows(batch: EventBatch) -> list[tuple]:
    """The distinct request rows a habit is learned from (a principal's, not refused, 401/403,
    nor failed upstream, 5xx), as (rank among all distinct rows, principal, number of requests,
    source, model), in the order of their first requests. Shared by the habit detectors."""
    rr = request_rows(batch)
    counts = rr.counts.tolist()
    out = []
    for rank, (row, at) in enumerate(rr.distinct.items()):
        p, s = row[0], row[1]
        if not isinstance(p, str) or s in (401, 403) or (isinstance(s, int) and s >= 500):
            continue
        out.append((rank, p, counts[at], row[SRC_IP], row[MODEL]))
    return out


def _habit_requests(batch: EventBatch) -> dict[str, list[int]]:
    """The requests whose habits are learned and judged (a principal's successful ones: not
    refused, 401/403, nor failed upstream, 5xx), as batch indices per principal. Shared by the
    habit detectors of a batch."""
    per: dict[str, list[int]] = {}
    principals, statuses = batch.values("principal"), batch.values("status")
    for i in batch.indices_where("kind", "request"):
        p, s = principals[i], statuses[i]
        if not isinstance(p, str) or s in (401, 403) or (isinstance(s, int) and s >= 500):
            continue
        got = per.get(p)
        if got is None:
            per[p] = [i]
        else:
            got.append(i)
    return per


def _first_index(item: tuple) -> int:
    return item[0]


class NewSource(_PrincipalHabit):
    """A principal used from a network it was never seen on: a key used by someone else."""

    name = "access.new_source"
    field = "src_ip"
    what = "used from a new network"
    evidence_name = "network"
    description = "a principal's successful request from a source network outside its learned set"

    def value_of_field(self, ip) -> str | None:
        return bounded(network_of(ip)) if isinstance(ip, str) and ip else None


class NewModel(_PrincipalHabit):
    """A principal calling a model outside its usual set."""

    name = "access.new_model"
    field = "model"
    what = "called a model outside its usual set:"
    evidence_name = "model_called"
    description = "a principal's request to a model outside its learned set"

    def value_of_field(self, m) -> str | None:
        return bounded(m) if isinstance(m, str) and m else None


# -- cluster --------------------------------------------------------------------------------------
class PodExec(IncidentRule):
    """``kubectl exec`` / ``attach`` into a model-serving pod, from the Kubernetes audit log."""

    name = "access.k8s_exec"
    kinds = ("runtime",)
    # What update reads of an event (the worker's events topic carries no other field of its kinds).
    event_fields = ("cmdline", "container", "id", "kind", "namespace", "pod", "process", "resource", "source", "src_ip",
                    "subresource", "ts", "user", "verb")
    entity_type = "pod"
    severity = "high"
    description = "exec or attach into a model-serving pod (Kubernetes audit)"

    class Options(IncidentRule.Options, _ServingPods):
        all_pods: bool = Field(default=False, description="Alert on exec into any pod, not only model-serving ones.")

    def matches(self, batch: EventBatch) -> list[int]:
        o = self.options
        return [i for i, e in zip(*events_where(batch, "source", "k8s_audit"))
                if e.get("resource") == "pods" and e.get("subresource") in ("exec", "attach")
                and e.get("verb") in ("create", "get") and (o.all_pods or _serving(o, e))]

    def entity_of(self, event: dict) -> str | None:
        return pod_id(event)

    def describe(self, entity: str, count: int, event: dict) -> str:
        return (f"{event.get('user') or 'someone'} ran {event.get('subresource')} into model-serving pod {entity} "
                f"({count}x)")

    def evidence(self, inc: dict, event: dict) -> dict:
        return {**super().evidence(inc, event), "user": event.get("user"), "src_ip": event.get("src_ip"),
                "command": event.get("cmdline") or event.get("process"), "container": event.get("container")}


class SecretRead(IncidentRule):
    """A person reading secrets in a model namespace (API keys, registry tokens, weights' buckets)."""

    name = "access.secret_read"
    kinds = ("runtime",)
    # What update reads of an event (the worker's events topic carries no other field of its kinds).
    event_fields = ("hostname", "id", "kind", "name", "namespace", "node", "pod", "resource", "source", "src_ip",
                    "status", "ts", "user", "user_agent", "verb")
    entity_type = "principal"
    severity = "medium"
    description = "get/list/watch of secrets in a model namespace by a non-system identity (Kubernetes audit)"

    class Options(IncidentRule.Options, _ServingPods):
        pass

    def matches(self, batch: EventBatch) -> list[int]:
        o = self.options
        out = []
        for i, e in zip(*events_where(batch, "source", "k8s_audit")):
            if e.get("resource") != "secrets":
                continue
            user = e.get("user")
            if e.get("verb") in ("get", "list", "watch") and isinstance(user, str) and not user.startswith("system:") \
                    and e.get("namespace") in o.model_namespaces and e.get("status") not in (401, 403):
                out.append(i)
        return out

    def entity_of(self, event: dict) -> str | None:
        return event.get("user")

    def state_key(self, etype: str, entity: str, event: dict) -> str:
        return f"{self.name}/{entity_key(event)}/{entity}"

    def describe(self, entity: str, count: int, event: dict) -> str:
        what = event.get("name") or "all secrets"
        return f"{entity} read secret {what} in model namespace {event.get('namespace')} ({count}x)"

    def evidence(self, inc: dict, event: dict) -> dict:
        return {**super().evidence(inc, event), "namespace": event.get("namespace"), "secret": event.get("name"),
                "verb": event.get("verb"), "src_ip": event.get("src_ip"), "user_agent": event.get("user_agent")}


class PrivilegedPod(IncidentRule):
    """A new privileged pod outside the system namespaces; high on a GPU node."""

    name = "access.privileged_pod"
    kinds = ("runtime",)
    # What update reads of an event (the worker's events topic carries no other field of its kinds).
    event_fields = ("hostname", "id", "image", "kind", "namespace", "node", "pod", "privileged", "rule", "source", "ts",
                    "user")
    entity_type = "pod"
    severity = "high"
    description = "a privileged pod created (audit) or started (Falco) outside the system namespaces"

    class Options(IncidentRule.Options):
        system_namespaces: tuple[str, ...] = Field(default=SYSTEM_NAMESPACES,
                                                   description="Namespaces whose privileged pods are expected.")
        gpu_node_pattern: str = Field(default=r"gpu|dgx|a100|h100|h200|l40",
                                      description="Regular expression on node names that marks a GPU node.")

    def _privileged(self, e: dict) -> bool:
        if e.get("namespace") in self.options.system_namespaces:
            return False
        if e.get("source") == "k8s_audit":
            return e.get("privileged") is True and e.get("verb") == "create" and e.get("status") in (None, 200, 201)
        if e.get("source") == "falco":
            return isinstance(e.get("rule"), str) and "privileged container" in e["rule"].lower()
        return False

    def matches(self, batch: EventBatch) -> list[int]:
        return [i for i, e in zip(*events_where(batch, "kind", "runtime")) if self._privileged(e)]

    def entity_of(self, event: dict) -> str | None:
        return pod_id(event)

    def _gpu_node(self, event: dict) -> bool:
        node = node_of(event)
        return isinstance(node, str) and re.search(self.options.gpu_node_pattern, node, re.I) is not None

    def describe(self, entity: str, count: int, event: dict) -> str:
        node = node_of(event)
        where = f" on GPU node {node}" if self._gpu_node(event) else (f" on {node}" if node else "")
        return f"privileged pod {entity}{where} (image {event.get('image') or 'unknown'})"

    def evidence(self, inc: dict, event: dict) -> dict:
        return {**super().evidence(inc, event), "node": node_of(event),
                "gpu_node": self._gpu_node(event), "image": event.get("image"), "user": event.get("user"),
                "seen_by": event.get("source"), "rule": event.get("rule")}


class InferenceShell(IncidentRule):
    """A shell in a model-serving container (Falco)."""

    name = "access.shell"
    kinds = ("runtime",)
    # What update reads of an event (the worker's events topic carries no other field of its kinds).
    event_fields = ("container", "hostname", "id", "kind", "namespace", "node", "parent", "pod", "process", "rule",
                    "source", "ts", "user")
    entity_type = "pod"
    severity = "high"
    description = "a shell process in a model-serving container (Falco)"

    class Options(IncidentRule.Options, _ServingPods):
        pass

    def matches(self, batch: EventBatch) -> list[int]:
        o = self.options
        out = []
        for i, e in zip(*events_where(batch, "source", "falco")):
            if e.get("kind") != "runtime":
                continue
            rule = e.get("rule") if isinstance(e.get("rule"), str) else ""
            proc = e.get("process") if isinstance(e.get("process"), str) else ""
            if ("shell" in rule.lower() or proc.rsplit("/", 1)[-1] in SHELLS) and _serving(o, e):
                out.append(i)
        return out

    def entity_of(self, event: dict) -> str | None:
        return pod_id(event)

    def describe(self, entity: str, count: int, event: dict) -> str:
        return f"shell {event.get('process') or ''} in model-serving pod {entity}: {event.get('rule')}".replace("  ", " ")

    def evidence(self, inc: dict, event: dict) -> dict:
        return {**super().evidence(inc, event), "rule": event.get("rule"), "process": event.get("process"),
                "user": event.get("user"), "container": event.get("container"), "parent": event.get("parent")}
