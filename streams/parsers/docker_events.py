"""Docker engine events: ``docker events --format '{{json .}}'``, one JSON object per line.

``{"Type": "container", "Action": "exec_start: bash -c ls", "Actor": {"ID": "...",
"Attributes": {"image": "...", "name": "...", "execID": "...", <container labels>...}},
"scope": "local", "time": 1712345678, "timeNano": 1712345678123456789}``; engines before
API 1.22 (and, deprecated, up to Docker 25) also write ``status`` / ``id`` / ``from``, and
the oldest write only those.

Quirks handled:

* ``timeNano`` exceeds 2^53: it is read as an exact integer (orjson keeps integers exact;
  a float would round ``1712345678123456789`` to ``...456768``) and never passes through a
  float. ``time`` (seconds) is the fallback when ``timeNano`` is absent or not an integer.
* exec actions carry the command in the action: ``exec_create: bash -c ls``,
  ``exec_start: bash``. ``verb`` is the part before ``": "`` (``exec_start``); the command
  goes to ``cmdline`` (scrubbed of credentials) and its executable's basename to
  ``process`` (``bash``), the same split as Falco's ``proc.name`` / ``proc.cmdline``. Other
  actions with a detail (``health_status: healthy``) keep it in ``action_detail``.
* Kubernetes (dockershim / cri-dockerd) labels every container:
  ``io.kubernetes.pod.name``, ``io.kubernetes.pod.namespace`` and
  ``io.kubernetes.container.name`` give ``pod``, ``namespace`` and ``container``; without
  them ``container`` is the Docker container name (``Actor.Attributes.name``).
* ``image`` is ``Actor.Attributes.image`` (or the legacy ``from``); for ``Type`` image events
  it is the image itself (``Attributes.name``, else ``Actor.ID``).

Fields: ``verb``, ``container``, ``image``, ``pod``, ``namespace``, ``process``; ``rule``,
``priority``, ``user`` and ``src_ip`` are None (the engine does not know them). Extra
fields: ``type`` (container, image, network, volume...), ``actor_id``, ``cmdline``,
``action_detail``, ``exec_id``, ``exit_code`` (int, ``die`` events).
"""

from __future__ import annotations

from typing import Any


from ramparts.errors import ParseError
from ramparts.timeutil import from_epoch

from .base import Parser, as_int, as_object, load_json_object, sniff_json_lines

_EMPTY: dict = {}


class DockerEventsParser(Parser):
    name = "docker_events"
    kind = "runtime"
    description = "Docker engine events (docker events --format '{{json .}}')"

    @classmethod
    def sniff(cls, head: bytes, lines: list[bytes]) -> bool:
        if b'"Action"' not in head and b'"status"' not in head:
            return False
        return sniff_json_lines(lines, lambda doc: (
            (isinstance(doc.get("Action"), str) and ("Actor" in doc or "Type" in doc) and "time" in doc)
            or ("status" in doc and "id" in doc and "from" in doc and isinstance(doc.get("time"), int))))

    def parse_record(self, raw: bytes) -> dict:
        doc = load_json_object(raw)
        action = doc.get("Action")
        if action is None:
            action = doc.get("status")
        if not isinstance(action, str) or not action:
            raise ParseError("missing field 'Action'" if action is None
                             else f"Action: expected text, got {type(action).__name__}")

        ts = _ts(doc)

        actor = doc.get("Actor")
        actor = _EMPTY if actor is None else as_object(actor, "Actor")
        attrs = actor.get("Attributes")
        attrs = _EMPTY if attrs is None else as_object(attrs, "Actor.Attributes")
        actor_id = _s(actor.get("ID"), "Actor.ID") or _s(doc.get("id"), "id")
        typ = _s(doc.get("Type"), "Type")
        if typ is None and "from" in doc:
            typ = "container"  # pre-1.22 engines only reported container events with `from`

        verb, sep, detail = action.partition(": ")
        detail = detail.strip() if sep else None
        cmdline = process = action_detail = None
        if verb.startswith("exec_"):
            if detail:
                cmdline = self.hasher.scrub_text(detail)
                process = detail.split(None, 1)[0].rsplit("/", 1)[-1] or None
        elif detail:
            action_detail = detail

        get = attrs.get
        if typ == "image":
            image = _s(get("name"), "name") or actor_id
            container = None
        else:
            image = _s(get("image"), "image") or _s(doc.get("from"), "from")
            container = (_s(get("io.kubernetes.container.name"), "io.kubernetes.container.name")
                         or _s(get("name"), "name")) if typ in (None, "container") else None
        exit_code = get("exitCode")
        return {
            "kind": "runtime",
            "ts": ts,
            "source": "docker_events",
            "rule": None,
            "verb": verb,
            "priority": None,
            "namespace": _s(get("io.kubernetes.pod.namespace"), "io.kubernetes.pod.namespace"),
            "pod": _s(get("io.kubernetes.pod.name"), "io.kubernetes.pod.name"),
            "container": container,
            "image": image,
            "process": process,
            "user": None,
            "src_ip": None,
            "type": typ,
            "actor_id": actor_id,
            "cmdline": cmdline,
            "action_detail": action_detail,
            "exec_id": _s(get("execID"), "execID"),
            "exit_code": as_int(exit_code, "exitCode") if exit_code is not None else None,
        }


def _ts(doc: dict) -> int:
    tn = doc.get("timeNano")
    if isinstance(tn, int) and not isinstance(tn, bool):
        return from_epoch(tn, "ns")
    if isinstance(tn, str) and tn.isdigit():
        return from_epoch(int(tn), "ns")
    if tn is not None and not isinstance(tn, float):
        raise ParseError(f"timeNano: expected an integer, got {type(tn).__name__}")
    # A float timeNano was rounded by whoever re-encoded the line: `time` is exact to the second.
    t = doc.get("time")
    if t is None:
        raise ParseError("missing field 'time'")
    if isinstance(t, bool) or not isinstance(t, int):
        if isinstance(t, str) and t.isdigit():
            return from_epoch(int(t), "s")
        raise ParseError(f"time: expected epoch seconds, got {type(t).__name__}")
    return from_epoch(t, "s")


def _s(v: Any, what: str) -> str | None:
    if v is None or v == "":
        return None
    if isinstance(v, str):
        return v
    raise ParseError(f"{what}: expected text, got {type(v).__name__}")
