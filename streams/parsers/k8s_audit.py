"""Kubernetes API server audit log: ``audit.k8s.io/v1`` ``Event`` objects, one per line.

The log backend (``--audit-log-path``) writes one line per request *stage*: RequestReceived,
ResponseStarted (long-running requests only: exec, attach, port-forward, watch),
ResponseComplete, Panic. This parser emits ONE event per ``auditID``, at the first of
ResponseStarted / ResponseComplete / Panic, so an ``exec`` into a pod is reported when the
stream opens, not when the shell exits hours later. Emitted auditIDs are remembered in a
bounded LRU (``Options.max_pending``) and their later stages are dropped (counted as
``stages_merged``, as is a RequestReceived folded into its later stage). A RequestReceived
with no later stage yet is held (bounded; the oldest is emitted when full, counted as
``request_only``) and emitted at the end of the input with ``stage`` RequestReceived and
``status`` None. A line holding an ``EventList`` (what the webhook backend posts) is read
item by item. Older ``audit.k8s.io/v1beta1`` lines, with ``timestamp`` instead of
``requestReceivedTimestamp`` (as in audit2rbac's demo log), are read the same way.

Fields: ``verb``; ``user`` is ``user.username``, or, when the request was impersonated
(``kubectl --as``), the impersonated ``impersonatedUser.username``, with the real
authenticated user in ``auth_user``; ``src_ip`` is ``sourceIPs[0]``; ``namespace``,
``pod`` (``objectRef.name`` when the resource is pods, or the created pod's
``metadata.name``); ``container`` from the ``container=`` query parameter of exec / attach /
log URIs; ``process`` is the executable of an exec (first ``command=`` parameter, basename);
``image`` is the first container image of a created pod (or pod template) when the audit
level recorded the ``requestObject``. ``rule`` and ``priority`` are None.

Extra fields: ``auth_user``, ``resource``, ``subresource``, ``name``, ``status``
(``responseStatus.code``; 101 for an exec/attach emitted at ResponseStarted), ``request_uri``
(secret query parameters hashed, exec commands scrubbed), ``cmdline`` (the exec command,
scrubbed), ``audit_id``, ``stage`` (the stage the event was emitted at), ``user_agent``,
``privileged`` (for a created or updated pod / pod template whose ``requestObject`` is
recorded: whether any container asks for ``securityContext.privileged``; None when unknown),
``node`` (``spec.nodeName`` of that pod, or the target node of a ``pods/binding``).
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any
from urllib.parse import parse_qsl, quote_plus, unquote_plus

from pydantic import Field

from ramparts.errors import ParseError
from ramparts.timeutil import parse_iso

from .base import (
    DEFAULT_MAX_PENDING, Parser, as_int, as_object, as_str, load_json_object, sniff_json_lines,
)

_FINAL_STAGES = frozenset(("ResponseStarted", "ResponseComplete", "Panic"))
_STAGES = _FINAL_STAGES | {"RequestReceived"}
_TIME_KEYS = ("requestReceivedTimestamp", "timestamp", "stageTimestamp")
_QUERY_SUBRESOURCES = frozenset(("exec", "attach", "log", "portforward"))
_POD_SPEC_VERBS = frozenset(("create", "update"))


class K8sAuditParser(Parser):
    name = "k8s_audit"
    kind = "runtime"
    description = "Kubernetes audit.k8s.io Event lines, one event per auditID"

    class Options(Parser.Options):
        max_pending: int = Field(
            default=DEFAULT_MAX_PENDING, ge=1,
            description="Most auditIDs remembered (emitted ones, and RequestReceived stages waiting).")

    def __init__(self, options=None, hasher=None):
        super().__init__(options, hasher)
        self._emitted: OrderedDict[str, None] = OrderedDict()
        self._held: OrderedDict[str, dict] = OrderedDict()

    @classmethod
    def sniff(cls, head: bytes, lines: list[bytes]) -> bool:
        if b"audit.k8s.io/" not in head and b'"auditID"' not in head:
            return False
        return sniff_json_lines(lines, lambda doc: (
            (str(doc.get("apiVersion")).startswith("audit.k8s.io/") and doc.get("kind") in ("Event", "EventList"))
            or ("auditID" in doc and "stage" in doc and "requestURI" in doc)))

    def parse_record(self, raw: bytes) -> dict | list[dict]:
        doc = load_json_object(raw)
        if doc.get("kind") == "EventList":
            items = doc.get("items")
            if not isinstance(items, list):
                raise ParseError("EventList without an items list")
            return self.each_item(items, lambda item: self._one(as_object(item, "item")))
        return self._one(doc)

    def _one(self, doc: dict) -> list[dict]:
        stage = doc.get("stage")
        if stage is not None and (type(stage) is not str or stage not in _STAGES):
            raise ParseError(f"stage: unknown audit stage {str(stage)[:40]!r}")
        audit_id = as_str(doc.get("auditID"), "auditID")
        ev = self._event(doc, stage, audit_id)  # validated now, so a bad line dead-letters at its own place
        if audit_id is None:
            self.note("missing_audit_id")
            return [ev]
        emitted = self._emitted
        if audit_id in emitted:
            emitted.move_to_end(audit_id)
            self.note("stages_merged")
            return []
        if stage == "RequestReceived":
            held = self._held
            if audit_id in held:
                self.note("stages_merged")
                return []
            held[audit_id] = ev
            if len(held) > self.options.max_pending:
                old_id, old = held.popitem(last=False)
                self.note("request_only")
                self._remember(old_id)
                return [old]
            return []
        early = self._held.pop(audit_id, None)
        if early is not None:
            self.note("stages_merged")
            for k, v in early.items():  # a field only RequestReceived carried
                if ev.get(k) is None and v is not None:
                    ev[k] = v
        self._remember(audit_id)
        return [ev]

    def _remember(self, audit_id: str) -> None:
        emitted = self._emitted
        emitted[audit_id] = None
        if len(emitted) > self.options.max_pending:
            emitted.popitem(last=False)

    def holds_state(self) -> bool:
        return bool(self._held)

    def event_key(self, event: dict) -> str | None:
        # One request, one auditID, over up to four stage lines: which of them emits the
        # event depends on the stages the parser has seen (a restart forgets them).
        return event["audit_id"]

    def finish(self) -> list[dict]:
        out = list(self._held.values())
        if out:
            self.note("request_only", len(out))
        self._held.clear()
        return out

    # -- one audit Event to a runtime event ------------------------------------------------
    def _event(self, doc: dict, stage: str | None, audit_id: str | None) -> dict:
        ts = None
        for key in _TIME_KEYS:
            t = doc.get(key)
            if t is not None:
                if not isinstance(t, str):
                    raise ParseError(f"{key}: expected RFC 3339 text, got {type(t).__name__}")
                ts = parse_iso(t)
                break
        if ts is None:
            meta = doc.get("metadata")
            t = meta.get("creationTimestamp") if isinstance(meta, dict) else None
            if not isinstance(t, str):
                raise ParseError("audit event has no timestamp (requestReceivedTimestamp or timestamp)")
            ts = parse_iso(t)

        user_obj = doc.get("user")
        username = None
        if user_obj is not None:
            username = as_str(as_object(user_obj, "user").get("username"), "user.username")
        auth_user = None
        imp = doc.get("impersonatedUser")
        if imp is not None:
            imp_name = as_str(as_object(imp, "impersonatedUser").get("username"), "impersonatedUser.username")
            if imp_name is not None:
                auth_user, username = username, imp_name

        ips = doc.get("sourceIPs")
        if ips is None:
            src_ip = None
        elif isinstance(ips, list):
            src_ip = as_str(ips[0], "sourceIPs[0]") if ips else None
        else:
            raise ParseError(f"sourceIPs: expected a list, got {type(ips).__name__}")

        ref = doc.get("objectRef")
        ref = {} if ref is None else as_object(ref, "objectRef")
        resource = as_str(ref.get("resource"), "objectRef.resource")
        subresource = as_str(ref.get("subresource"), "objectRef.subresource")
        name = as_str(ref.get("name"), "objectRef.name")
        namespace = as_str(ref.get("namespace"), "objectRef.namespace")
        verb = as_str(doc.get("verb"), "verb")

        rs = doc.get("responseStatus")
        status = as_int(as_object(rs, "responseStatus").get("code"), "responseStatus.code") if rs is not None else None

        uri = as_str(doc.get("requestURI"), "requestURI")
        container = process = cmdline = None
        request_uri = None
        if uri is not None:
            request_uri = self.hasher.scrub_path(uri)
            if subresource in _QUERY_SUBRESOURCES and "?" in uri:
                params = parse_qsl(uri.split("?", 1)[1], keep_blank_values=True)
                commands = [v for k, v in params if k == "command"]
                for k, v in params:
                    if k == "container":
                        container = v or None
                        break
                if commands:
                    process = commands[0].rsplit("/", 1)[-1] or None
                    cmdline = self.hasher.scrub_text(" ".join(commands))
                    request_uri = self._scrub_commands(request_uri)

        pod = name if resource == "pods" else None
        image = node = privileged = None
        req_obj = doc.get("requestObject")
        if isinstance(req_obj, dict):
            if resource == "pods" and subresource == "binding":
                target = req_obj.get("target")
                if isinstance(target, dict):
                    node = as_str(target.get("name"), "requestObject.target.name")
            elif verb in _POD_SPEC_VERBS and subresource is None:
                spec = _pod_spec(req_obj, resource)
                if spec is not None:
                    image, privileged = _images_and_privilege(spec)
                    node = as_str(spec.get("nodeName"), "spec.nodeName")
                    if pod is None and resource == "pods":
                        pod = _meta_name(req_obj) or _meta_name(doc.get("responseObject"))

        ua = doc.get("userAgent")
        return {
            "kind": "runtime",
            "ts": ts,
            "source": "k8s_audit",
            "rule": None,
            "verb": verb,
            "priority": None,
            "namespace": namespace,
            "pod": pod,
            "container": container,
            "image": image,
            "process": process,
            "user": username,
            "src_ip": src_ip,
            "auth_user": auth_user,
            "resource": resource,
            "subresource": subresource,
            "name": name,
            "status": status,
            "request_uri": request_uri,
            "cmdline": cmdline,
            "audit_id": audit_id,
            "stage": stage,
            "user_agent": ua if isinstance(ua, str) else None,
            "privileged": privileged,
            "node": node,
        }

    def _scrub_commands(self, uri: str) -> str:
        # An exec command line can carry a token (`command=curl&command=-H&command=Authorization:
        # Bearer ...`); scrub_path only knows secret parameter *names*, so each command value
        # is decoded, scrubbed as text, and re-encoded when something was replaced.
        path, _, query = uri.partition("?")
        parts = query.split("&")
        for i, part in enumerate(parts):
            k, eq, v = part.partition("=")
            if k == "command" and eq:
                text = unquote_plus(v)
                scrubbed = self.hasher.scrub_text(text)
                if scrubbed != text:
                    parts[i] = f"command={quote_plus(scrubbed)}"
        return f"{path}?{'&'.join(parts)}"


def _pod_spec(obj: dict, resource: str | None) -> dict | None:
    spec = obj.get("spec")
    if not isinstance(spec, dict):
        return None
    if resource == "pods" or obj.get("kind") == "Pod":
        return spec
    # Deployments, ReplicaSets, StatefulSets, DaemonSets, Jobs: spec.template.spec;
    # CronJobs: spec.jobTemplate.spec.template.spec.
    job = spec.get("jobTemplate")
    if isinstance(job, dict) and isinstance(job.get("spec"), dict):
        spec = job["spec"]
    tmpl = spec.get("template")
    if isinstance(tmpl, dict) and isinstance(tmpl.get("spec"), dict):
        return tmpl["spec"]
    return None


def _images_and_privilege(spec: dict) -> tuple[str | None, bool]:
    image = None
    privileged = False
    for key in ("containers", "initContainers", "ephemeralContainers"):
        cs = spec.get(key)
        if not isinstance(cs, list):
            continue
        for c in cs:
            if not isinstance(c, dict):
                continue
            if image is None and key == "containers":
                img = c.get("image")
                image = img if isinstance(img, str) and img else None
            sc = c.get("securityContext")
            if isinstance(sc, dict) and sc.get("privileged") is True:
                privileged = True
    return image, privileged


def _meta_name(obj: Any) -> str | None:
    if isinstance(obj, dict):
        meta = obj.get("metadata")
        if isinstance(meta, dict):
            n = meta.get("name")
            if isinstance(n, str) and n:
                return n
    return None
