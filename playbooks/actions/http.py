"""A generic HTTP action: a request built from templates, and optionally one that undoes it.

Credentials come from the environment (``headers_env`` in the settings: header name ->
variable), never from the playbook; the error text of a failed call has them scrubbed.
"""

from __future__ import annotations

import http.client
import json
import urllib.parse
from typing import Any, Mapping

from pydantic import Field

from ramparts.errors import ActionError

from . import Action, Context, Params, Settings, secret_from_env


def call(method: str, url: str, *, body: Any = None, headers: Mapping[str, str] | None = None,
         timeout: float = 10.0, secrets: list[str] = (), ok_statuses: tuple[int, ...] = ()) -> tuple[int, Any]:
    """Send one request; returns (status, JSON or text). Non-2xx (except ``ok_statuses``) raises ActionError."""
    u = urllib.parse.urlsplit(url)
    if u.scheme not in ("http", "https") or not u.hostname:
        raise ActionError(f"{_scrub(url, secrets)} is not an http(s) URL")
    conn_cls = http.client.HTTPSConnection if u.scheme == "https" else http.client.HTTPConnection
    path = (u.path or "/") + (f"?{u.query}" if u.query else "")
    data = None if body is None else (body.encode() if isinstance(body, str) else json.dumps(body).encode())
    hdrs = {"User-Agent": "ramparts-playbooks", **({"Content-Type": "application/json"} if data is not None else {}),
            **(headers or {})}
    try:
        conn = conn_cls(u.hostname, u.port, timeout=timeout)
        try:
            conn.request(method, path, body=data, headers=hdrs)
            resp = conn.getresponse()
            raw = resp.read(1 << 20)
            status = resp.status
        finally:
            conn.close()
    except (OSError, http.client.HTTPException) as e:
        raise ActionError(_scrub(f"{method} {url}: {type(e).__name__}: {e}", secrets)) from None
    try:
        payload = json.loads(raw) if raw else None
    except ValueError:
        payload = raw.decode("utf-8", "replace")
    if not (200 <= status < 300) and status not in ok_statuses:
        text = raw.decode("utf-8", "replace").strip().replace("\n", " ")[:200]
        raise ActionError(_scrub(f"{method} {url}: HTTP {status}: {text}", secrets))
    return status, payload


def _scrub(text: str, secrets) -> str:
    for s in secrets:
        if s:
            text = text.replace(s, "***")
    return text


class HttpSettings(Settings):
    headers_env: dict[str, str] = Field(default_factory=dict,
                                        description="Header name -> environment variable holding its value.")
    timeout_seconds: float = Field(default=10.0, gt=0)


class RequestSpec(Params):
    method: str = Field(default="POST", pattern=r"^(GET|POST|PUT|PATCH|DELETE)$")
    url: str
    body: Any = None
    headers: dict[str, str] = Field(default_factory=dict)


class HttpParams(Params):
    method: str = Field(default="POST", pattern=r"^(GET|POST|PUT|PATCH|DELETE)$")
    url: str = Field(description="Where to send (templates allowed).")
    body: Any = Field(default=None, description="JSON body (templates allowed).")
    headers: dict[str, str] = Field(default_factory=dict, description="Extra headers (no secrets: use headers_env).")
    target: str | None = Field(default=None, description="What the per-target limit counts (default: the URL).")
    revert: RequestSpec | None = Field(default=None, description="The request that undoes this one.")


class HttpRequest(Action):
    name = "http.request"
    settings_key = "http"
    Params = HttpParams
    Settings = HttpSettings

    def target(self, p) -> str:
        return p.target or p.url

    def describe(self, p) -> str:
        return f"{p.method} {p.url}"

    def _headers(self, ctx: Context) -> tuple[dict, list[str]]:
        h = {k: secret_from_env(ctx.env, v, f"http header {k}") for k, v in self.settings.headers_env.items()}
        return h, list(h.values())

    def execute(self, p, ctx: Context) -> dict:
        h, secrets = self._headers(ctx)
        status, _ = call(p.method, p.url, body=p.body, headers={**p.headers, **h},
                         timeout=self.settings.timeout_seconds, secrets=secrets)
        return {"status": status}

    def revert(self, p, restore: dict, ctx: Context) -> dict:
        if p.revert is None:
            raise ActionError("this http.request step has no revert request")
        h, secrets = self._headers(ctx)
        status, _ = call(p.revert.method, p.revert.url, body=p.revert.body, headers={**p.revert.headers, **h},
                         timeout=self.settings.timeout_seconds, secrets=secrets)
        return {"status": status}
