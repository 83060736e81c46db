"""NGINX ``combined`` access log.

``$remote_addr - $remote_user [$time_local] "$request" $status $body_bytes_sent
"$http_referer" "$http_user_agent"``, optionally followed by extra fields that operators
append (``$request_time``, ``$upstream_response_time``, a quoted API key header); those are
read by position through :class:`Options`.

Quirks: ``%d/%b/%Y:%H:%M:%S %z`` timestamps; ``-`` for empty; the request line can be
garbage (``"\\x16\\x03\\x01"`` from TLS on a plain port, or ``"-"``) and is kept as-is in
``path`` with no method; ``$remote_user`` is the principal by default (HTTP basic auth or an
``auth_request`` module that sets it).
"""

from __future__ import annotations

import re

from pydantic import Field

from ramparts.timeutil import parse_clf

from .base import Parser, as_float

# A quoted field is `[^"\\]*(?:\\.[^"\\]*)*` (escapes allowed), unrolled rather than an
# alternation per character: the same language, several times faster in Python's re.
_Q = r'"([^"\\]*(?:\\.[^"\\]*)*)"'
_LINE = re.compile(
    r"(\S+) \S+ (\S+) \[([^\]]+)\] " + _Q + r" (\d{3}) (\d+|-) " + _Q.replace("(", "(?:", 1) + " " + _Q + r"(.*)$"
)
_EXTRA = re.compile(_Q + r"|(\S+)")


class NginxCombinedParser(Parser):
    name = "nginx_combined"
    kind = "request"
    description = "NGINX combined access log (plus optional trailing fields)"

    class Options(Parser.Options):
        principal_field: str = Field(
            default="remote_user",
            description="'remote_user', or 'extra:N' for the N-th (0-based) field after the user agent.")
        principal_is_secret: bool = Field(
            default=False, description="Hash the principal (set when it is a raw API key).")
        request_time_field: int | None = Field(
            default=None, description="0-based index of $request_time (seconds) among the trailing fields.")
        model_field: int | None = Field(
            default=None, description="0-based index of a model name among the trailing fields.")

    def __init__(self, options=None, hasher=None):
        super().__init__(options, hasher)
        o = self.options
        self._principal_extra = int(o.principal_field.split(":", 1)[1]) if o.principal_field.startswith("extra:") else None
        self._wants_extra = (self._principal_extra is not None or o.request_time_field is not None
                             or o.model_field is not None)

    @classmethod
    def sniff(cls, head: bytes, lines: list[bytes]) -> bool:
        sample = [l.decode("utf-8", "replace") for l in lines[:3]]
        return bool(sample) and 2 * sum(1 for l in sample if _LINE.match(l)) > len(sample)

    def parse_record(self, raw: bytes) -> dict:
        # Decoded once, leniently: NGINX escapes bytes it does not trust as \xHH, and a
        # stray invalid byte in a user agent must not cost the whole line.
        m = _LINE.match(raw.decode("utf-8", "backslashreplace"))
        if m is None:
            raise ValueError("not an NGINX combined log line")
        ip, user, time, request, status, nbytes, ua, extra = m.groups()
        parts = request.split(" ")
        if len(parts) == 3:
            method, path = parts[0], parts[1]
        else:
            method, path = None, request
        if "?" in path:
            path = self.hasher.scrub_path(path)
        ev = {
            "kind": "request",
            "ts": parse_clf(time),
            "source": "nginx_combined",
            "principal": None if user == "-" or self._principal_extra is not None else (
                self.hasher.principal(user) if self.options.principal_is_secret else user),
            "src_ip": ip,
            "model": None,
            "method": method,
            "path": path,
            "status": int(status),
            "bytes_out": int(nbytes) if nbytes != "-" else None,
            "user_agent": ua if ua != "-" else None,
            "latency_ms": None,
            "tokens_in": None,
            "tokens_out": None,
        }
        if self._wants_extra and extra:
            fields = [q if q or not b else b for q, b in _EXTRA.findall(extra)]
            o = self.options
            if self._principal_extra is not None and self._principal_extra < len(fields):
                ev["principal"] = self.principal(fields[self._principal_extra], o.principal_is_secret)
            if o.request_time_field is not None and o.request_time_field < len(fields):
                secs = as_float(fields[o.request_time_field], "request_time")
                ev["latency_ms"] = secs * 1000.0 if secs is not None else None
            if o.model_field is not None and o.model_field < len(fields):
                ev["model"] = fields[o.model_field] if fields[o.model_field] != "-" else None
        return ev
