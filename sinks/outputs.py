"""Alert outputs: the registry, the shared sending code, and routing (which output gets what).

Every output type is one file in ``sinks/`` (``webhook.py``, ``slack.py``, ``pagerduty.py``,
``alertmanager.py``, ``grafana.py``) with a pure payload builder (tested against golden
payloads in ``tests/alerting/golden/``) and a class registered in :data:`OUTPUT_CLASSES`
below, the one place config refers to by ``type``. I/O is here: an HTTP POST with a timeout,
whose answer becomes an :class:`Outcome` (delivered, retry -- with the receiver's
``Retry-After`` when it sent one -- or give up).

Secrets (signing secrets, routing keys, tokens, a Slack URL) are resolved when an output is
built and never put into an outcome's error text: errors name the output, never its URL.
"""

from __future__ import annotations

import email.utils
import fnmatch
import http.client
import time
import urllib.parse
from dataclasses import dataclass, field
from typing import Any, ClassVar

import orjson

from ramparts.detectors.base import SEVERITIES

RANK = {s: i for i, s in enumerate(SEVERITIES)}
USER_AGENT = "ramparts-alerting/1"


@dataclass
class HttpRequest:
    method: str
    url: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Outcome:
    """One delivery attempt's result. ``permanent``: retrying cannot help (a 400, a 404)."""

    ok: bool
    status: int | None = None
    retry_after: float | None = None
    error: str | None = None
    permanent: bool = False


@dataclass
class Route:
    """Which notifications an output takes: severity, detector and entity filters (globs)."""

    min_severity: str = "info"
    detectors: list[str] = field(default_factory=list)
    exclude_detectors: list[str] = field(default_factory=list)
    entities: list[str] = field(default_factory=list)
    exclude_entities: list[str] = field(default_factory=list)

    def matches(self, alert: dict) -> bool:
        if RANK.get(alert["severity"], 0) < RANK[self.min_severity]:
            return False
        det = alert["detector"]
        if self.detectors and not any(fnmatch.fnmatchcase(det, p) for p in self.detectors):
            return False
        if any(fnmatch.fnmatchcase(det, p) for p in self.exclude_detectors):
            return False
        ent = f"{alert['entity']['type']}:{alert['entity']['id']}"
        if self.entities and not any(fnmatch.fnmatchcase(ent, p) for p in self.entities):
            return False
        return not any(fnmatch.fnmatchcase(ent, p) for p in self.exclude_entities)


class Output:
    """One configured output: builds the request of a notification and sends it."""

    type: ClassVar[str]
    # Notification events this output sends ("acknowledged" only where the receiver has the verb).
    events: ClassVar[frozenset[str]] = frozenset({"firing", "escalated", "renotify", "resolved"})

    def __init__(self, name: str, url: str, *, secrets: list[str] | None = None, route: Route | None = None,
                 dashboard_url: str = "", dashboard_uid: str | None = None, timeout_seconds: float = 10.0):
        self.name = name
        self.url = url
        self.secrets = secrets or []
        self.route = route or Route()
        self.dashboard_url = dashboard_url
        self.dashboard_uid = dashboard_uid
        self.timeout_seconds = timeout_seconds

    def __repr__(self) -> str:  # never the URL (a Slack URL is a credential) nor a secret
        return f"{type(self).__name__}(name={self.name!r})"

    def wants(self, note: dict) -> bool:
        return note["event"] in self.events and self.route.matches(note["alert"])

    def request(self, note: dict, attempt: int, now: float) -> HttpRequest:
        raise NotImplementedError

    def send(self, note: dict, attempt: int, now: float) -> Outcome:
        return post(self.request(note, attempt, now), self.timeout_seconds, self.name, self.secrets)


def post(req: HttpRequest, timeout: float, name: str, secrets: list[str] = ()) -> Outcome:
    """Send ``req``; 2xx is delivered, 408/425/429/5xx and network errors are retried, other 4xx given up."""
    u = urllib.parse.urlsplit(req.url)
    conn_cls = http.client.HTTPSConnection if u.scheme == "https" else http.client.HTTPConnection
    path = (u.path or "/") + (f"?{u.query}" if u.query else "")
    headers = {"Content-Type": "application/json", "User-Agent": USER_AGENT, **req.headers}
    try:
        conn = conn_cls(u.hostname, u.port, timeout=timeout)
        try:
            conn.request(req.method, path, body=req.body, headers=headers)
            resp = conn.getresponse()
            body = resp.read(512)
            status = resp.status
            retry_after = parse_retry_after(resp.getheader("Retry-After"))
        finally:
            conn.close()
    except (OSError, http.client.HTTPException) as e:
        return Outcome(False, error=scrub(f"{name}: {type(e).__name__}: {e}", [*url_secrets(req.url), *secrets]))
    if 200 <= status < 300:
        return Outcome(True, status)
    text = body.decode("utf-8", "replace").strip().replace("\n", " ")[:200]
    error = scrub(f"{name}: HTTP {status}" + (f": {text}" if text else ""), [*url_secrets(req.url), *secrets])
    permanent = 400 <= status < 500 and status not in (408, 425, 429)
    return Outcome(False, status, retry_after, error, permanent)


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header: delay-seconds or an HTTP date (RFC 9110 10.2.3).

    >>> parse_retry_after("7"), parse_retry_after(None), parse_retry_after("soon")
    (7.0, None, None)
    >>> parse_retry_after("Wed, 21 Oct 2015 07:28:10 GMT", now=1445412480.0)
    10.0
    """
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    now = time.time() if now is None else now
    return max(0.0, when.timestamp() - now)


def url_secrets(url: str) -> list[str]:
    """The parts of ``url`` that may be a credential, longest first: the URL, its path and
    query (a Slack or Discord webhook's path is its token; receivers echo the path back in a
    404 body, "Cannot POST /services/..."), the query, each query value, long path segments
    and the password of ``user:password@``.

    >>> scrub("404: Cannot POST /services/T0/B0/xOxB7hGq2ZpL9wRt4kYs1NcV?k=tok1",
    ...       url_secrets("https://u:pw12@h/services/T0/B0/xOxB7hGq2ZpL9wRt4kYs1NcV?k=tok1"))
    '404: Cannot POST ***'
    >>> scrub("auth failed for pw12; token tok1", url_secrets("https://u:pw12@h/x?k=tok1"))
    'auth failed for ***; token ***'

    """
    if not url:
        return []
    u = urllib.parse.urlsplit(url)
    parts = [url, u.path + (f"?{u.query}" if u.query else ""), u.query, u.password or ""]
    parts += [v for _, v in urllib.parse.parse_qsl(u.query, keep_blank_values=True)]
    parts += [seg for seg in u.path.split("/") if len(seg) >= 16]
    if u.path.count("/") > 2:  # a path of several segments past the host: as a whole too
        parts.append(u.path)
    out = []
    for p in sorted({p for p in parts if p and p != "/"}, key=len, reverse=True):
        out.append(p)
        q = urllib.parse.quote(p, safe="/")
        if q != p:
            out.append(q)
    return out


def scrub(text: str, secrets) -> str:
    """``text`` with every secret (and URL, whose path or query may be one) replaced by ``***``."""
    for s in sorted((s for s in secrets if s), key=len, reverse=True):  # a secret's parts after it
        if len(s) >= 4:
            text = text.replace(s, "***")
    return text


def body_json(payload: Any) -> bytes:
    return orjson.dumps(payload, option=orjson.OPT_SORT_KEYS)


def output_classes() -> dict[str, type[Output]]:
    from . import alertmanager, grafana, pagerduty, slack, webhook

    return {c.type: c for c in (webhook.WebhookOutput, slack.SlackOutput, pagerduty.PagerDutyOutput,
                                alertmanager.AlertmanagerOutput, grafana.GrafanaOutput)}


def build_outputs(config, env=None, *, resolve: bool = True) -> list[Output]:
    """The configured outputs (``outputs:``), secrets resolved; a missing one is a ConfigError.

    ``resolve=False`` leaves URL and secrets out: enough to route (``ramparts alerts ack``), not to send.
    """
    classes = output_classes()
    out = []
    for name, oc in zip(config.output_names(), config.outputs):
        route = Route(oc.min_severity, list(oc.detectors), list(oc.exclude_detectors), list(oc.entities),
                      list(oc.exclude_entities))
        url, secrets = (oc.resolved_url(env), oc.resolved_secrets(env)) if resolve else ("", [])
        out.append(classes[oc.type](name, url, secrets=secrets, route=route,
                                    dashboard_url=oc.dashboard_url or config.alerting.dashboard_url,
                                    dashboard_uid=oc.dashboard_uid, timeout_seconds=oc.timeout_seconds))
    return out


def dashboard_link(base: str, alert: dict) -> str:
    """The dashboard, filtered to the alert's entity and time range (Grafana URL variables)."""
    w = alert.get("window") or {}
    start, end = _ms(w.get("start") or alert.get("first_event_ts")), _ms(w.get("end") or alert.get("ts"))
    q = {"var-entity_type": alert["entity"]["type"], "var-entity": alert["entity"]["id"]}
    if start is not None and end is not None:
        q["from"], q["to"] = str(start - 300_000), str(end + 300_000)
    sep = "&" if "?" in base else "?"
    return base + sep + urllib.parse.urlencode(q)


def _ms(t: Any) -> int | None:
    """Milliseconds since the epoch of an int-ns or RFC 3339 time."""
    if t is None:
        return None
    if isinstance(t, int):
        return t // 1_000_000
    from ramparts.timeutil import parse_iso

    return parse_iso(t) // 1_000_000


def wire(alert: dict) -> dict:
    """The alert as SPEC.md's JSON (times as RFC 3339)."""
    from ramparts.streams.pipeline import alert_to_wire

    return alert_to_wire(alert)
