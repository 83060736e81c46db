"""Falco alerts written with ``json_output: true`` (file, stdout or program output).

``{"hostname", "output", "priority", "rule", "source", "tags", "time", "output_fields": {...}}``
one per line. ``output_fields`` holds exactly the fields the rule's ``output`` names, with
DOTTED keys (``k8s.pod.name``, ``proc.aname[2]``), so any of them may be absent.

Quirks handled:

* ``time`` is RFC 3339 with nanoseconds (``2024-05-07T18:54:19.341081180Z``); when a
  forwarder dropped it, ``output_fields["evt.time"]`` (epoch nanoseconds as an integer, or
  ``evt.rawtime`` / ``evt.time.iso8601`` which Falco also emits as integers) is used.
* Falco writes ``<NA>`` (older versions) or ``null`` (newer) for a field it could not
  resolve; both become None. A host process has ``container.id`` / ``container.name`` ``host``,
  kept as is.
* ``priority`` is one of Emergency, Alert, Critical, Error, Warning, Notice, Informational,
  Debug: normalized to lowercase (``Info`` to ``informational``); an unknown spelling is kept
  lowercased and counted (``unknown_priority``) rather than losing a security alert.
* ``image`` is ``container.image.repository:container.image.tag``, else ``container.image``.
* Rules from the ``k8s_audit`` source carry ``ka.*`` fields instead: namespace, pod (when the
  target resource is pods), user and ``verb`` are read from them. For syscall alerts ``verb``
  is None.
* ``src_ip`` is the first of ``Options.src_ip_fields`` present (default ``fd.rip``, the remote
  end of the socket, then ``fd.cip``, ``fd.sip``).
* The ``output`` text and ``proc.cmdline`` can hold credentials typed on a command line
  (``curl -H "Authorization: Bearer ..."``): both go through ``Hasher.scrub_text``.

Fields: ``rule``, ``priority``, ``namespace`` (``k8s.ns.name``), ``pod`` (``k8s.pod.name``),
``container`` (``container.name``), ``image``, ``process`` (``proc.name``), ``user``
(``user.name``), ``src_ip``, ``verb``. Extra fields: ``node`` (``hostname``), ``tags`` (list,
MITRE ids among them), ``cmdline``, ``output`` (both scrubbed), ``parent`` (``proc.pname``),
``ancestors`` (``proc.aname[2]``... in order, present ones only, or None), ``container_id``,
``falco_source`` (``syscall``, ``k8s_audit``...; the event's own ``source`` is ``falco``).
"""

from __future__ import annotations

from typing import Any

from pydantic import Field

from ramparts.errors import ParseError
from ramparts.timeutil import from_epoch, parse_iso

from .base import Parser, as_object, as_str, load_json_object, sniff_json_lines

_PRIORITIES = {
    "emergency": "emergency", "alert": "alert", "critical": "critical", "error": "error",
    "warning": "warning", "notice": "notice", "informational": "informational",
    "info": "informational", "debug": "debug",
}
_NA = "<NA>"
_EPOCH_FIELDS = ("evt.time", "evt.rawtime", "evt.time.iso8601")


class FalcoParser(Parser):
    name = "falco"
    kind = "runtime"
    description = "Falco alerts (json_output: true)"

    class Options(Parser.Options):
        src_ip_fields: list[str] = Field(
            default=["fd.rip", "fd.cip", "fd.sip"],
            description="output_fields tried in order for src_ip.")

    def __init__(self, options=None, hasher=None):
        super().__init__(options, hasher)
        self._ip_fields = tuple(self.options.src_ip_fields)

    @classmethod
    def sniff(cls, head: bytes, lines: list[bytes]) -> bool:
        if b'"rule"' not in head or b'"priority"' not in head:
            return False
        return sniff_json_lines(lines, lambda doc: (
            isinstance(doc.get("rule"), str) and "priority" in doc and ("output" in doc or "output_fields" in doc)))

    def parse_record(self, raw: bytes) -> dict:
        doc = load_json_object(raw)
        rule = doc.get("rule")
        if not isinstance(rule, str) or not rule:
            raise ParseError("missing field 'rule'" if rule is None
                             else f"rule: expected text, got {type(rule).__name__}")
        f = doc.get("output_fields")
        f = {} if f is None else as_object(f, "output_fields")

        t = doc.get("time")
        if t is not None:
            if not isinstance(t, str):
                raise ParseError(f"time: expected RFC 3339 text, got {type(t).__name__}")
            ts = parse_iso(t)
        else:
            ts = _epoch_field(f)

        pri = doc.get("priority")
        if pri is not None:
            if not isinstance(pri, str):
                raise ParseError(f"priority: expected text, got {type(pri).__name__}")
            low = pri.strip().lower()
            norm = _PRIORITIES.get(low)
            if norm is None:
                self.note("unknown_priority")
                norm = low or None
            pri = norm

        get = f.get
        repo = _s(get("container.image.repository"), "container.image.repository")
        if repo is not None:
            tag = _s(get("container.image.tag"), "container.image.tag")
            image = f"{repo}:{tag}" if tag else repo
        else:
            image = _s(get("container.image"), "container.image")

        namespace = _s(get("k8s.ns.name"), "k8s.ns.name")
        pod = _s(get("k8s.pod.name"), "k8s.pod.name")
        user = _s(get("user.name"), "user.name")
        verb = _s(get("ka.verb"), "ka.verb")
        if namespace is None:
            namespace = _s(get("ka.target.namespace"), "ka.target.namespace")
        if pod is None and get("ka.target.resource") == "pods":
            pod = _s(get("ka.target.name"), "ka.target.name")
        if user is None:
            user = _s(get("ka.user.name"), "ka.user.name")

        src_ip = None
        for name in self._ip_fields:
            src_ip = _s(get(name), name)
            if src_ip is not None:
                break

        cmdline = _s(get("proc.cmdline"), "proc.cmdline")
        output = doc.get("output")
        if output is not None and not isinstance(output, str):
            raise ParseError(f"output: expected text, got {type(output).__name__}")
        tags = doc.get("tags")
        if tags is not None and not (isinstance(tags, list) and all(isinstance(x, str) for x in tags)):
            raise ParseError("tags: expected a list of text")
        hostname = doc.get("hostname")
        scrub = self._scrub
        return {
            "kind": "runtime",
            "ts": ts,
            "source": "falco",
            "rule": rule,
            "verb": verb,
            "priority": pri,
            "namespace": namespace,
            "pod": pod,
            "container": _s(get("container.name"), "container.name"),
            "image": image,
            "process": _s(get("proc.name"), "proc.name"),
            "user": user,
            "src_ip": src_ip,
            "node": _s(hostname, "hostname"),
            "tags": tags,
            "cmdline": scrub(cmdline) if cmdline else cmdline,
            "output": scrub(output) if output else output,
            "parent": _s(get("proc.pname"), "proc.pname"),
            "ancestors": _ancestors(f),
            "container_id": _s(get("container.id"), "container.id"),
            "falco_source": _s(doc.get("source"), "source"),
        }


    def _scrub(self, text: str) -> str:
        # Hasher.scrub_text runs case-insensitive regexes (~25 us on a typical 300-character
        # output); every spelling they can match contains one of these lowercase fragments,
        # so text without any of them is returned as is (~1 us).
        low = text.lower()
        for frag in _SECRET_FRAGMENTS:
            if frag in low:
                return self.hasher.scrub_text(text)
        return text


_SECRET_FRAGMENTS = ("auth", "key", "token", "secret", "passw", "bearer", "k-")


_FALCO_ABSENT = (_NA, "")


def _s(v: Any, what: str) -> str | None:
    return as_str(v, what, _FALCO_ABSENT)


def _epoch_field(f: dict) -> int:
    for name in _EPOCH_FIELDS:
        v = f.get(name)
        if isinstance(v, int) and not isinstance(v, bool):
            return from_epoch(v, "ns")
        if isinstance(v, str) and v.isdigit():
            return from_epoch(int(v), "ns")
    raise ParseError("alert has no time (neither 'time' nor an integer output_fields['evt.time'])")


def _ancestors(f: dict) -> list[str] | None:
    if "proc.aname[2]" not in f:
        return None
    out = []
    for i in range(2, 10):
        v = f.get(f"proc.aname[{i}]")
        if isinstance(v, str) and v and v != _NA:
            out.append(v)
    return out or None
