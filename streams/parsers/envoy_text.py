"""Envoy's default text access log (also Istio's variant of it).

Envoy's built-in format, used when an access logger has no ``log_format``::

    [%START_TIME%] "%REQ(:METHOD)% %REQ(X-ENVOY-ORIGINAL-PATH?:PATH)% %PROTOCOL%"
    %RESPONSE_CODE% %RESPONSE_FLAGS% %BYTES_RECEIVED% %BYTES_SENT% %DURATION%
    %RESP(X-ENVOY-UPSTREAM-SERVICE-TIME)% "%REQ(X-FORWARDED-FOR)%" "%REQ(USER-AGENT)%"
    "%REQ(X-REQUEST-ID)%" "%REQ(:AUTHORITY)%" "%UPSTREAM_HOST%"

Istio's default inserts ``%RESPONSE_CODE_DETAILS% %CONNECTION_TERMINATION_DETAILS%
"%UPSTREAM_TRANSPORT_FAILURE_REASON%"`` after the flags and appends unquoted fields
(upstream cluster, upstream local, downstream local and downstream remote address, SNI,
route name); both layouts are read.

Principal: the default format carries none. An operator who appends a field (say
``"%REQ(X-API-KEY)%"``) names its 0-based index among the fields after
``%UPSTREAM_HOST%`` in ``principal_field``; it is hashed unless ``principal_is_secret``
is turned off (for an identity such as a JWT subject).

Quirks handled: the line is positional and ``-`` means empty; ``%RESPONSE_CODE%`` is 0 when
the downstream went away before a response; ``%RESPONSE_FLAGS%`` can be a comma list
(``UF,URX``); ``X-Forwarded-For`` can hold a comma list, bracketed IPv6 and ports, so
``src_ip`` is its FIRST address without brackets or port (None without the header; for
Istio lines the downstream remote address is the fallback); Envoy does not escape ``"``
inside quoted values, so a quote only closes a field when a space or the end of the line
follows; newer Envoy and operators add trailing fields, which are tolerated.

Extra fields: ``method``, ``protocol``, ``response_flags`` (list of flag codes, or None),
``bytes_in``, ``bytes_out``, ``upstream_ms`` (``x-envoy-upstream-service-time``),
``user_agent``, ``request_id``, ``authority``, ``upstream_host``.
``latency_ms`` is ``%DURATION%``.
"""

from __future__ import annotations

import re

from pydantic import Field

from ramparts.errors import ParseError
from ramparts.timeutil import parse_iso

from .base import Parser

_HEAD = re.compile(
    r'\[([^\]]+)\] "(.*?)" (\d{1,3}) (\S+) '
    # Istio's three extra fields; the default format has digits here, so this never
    # swallows BYTES_RECEIVED/BYTES_SENT (a quote must follow two tokens).
    r'(?:(\S+) (\S+) "([^"]*)" )?'
    r'(\d+|-) (\d+|-) (\d+|-) (\d+|-) "'
)
# Fields operators append after %UPSTREAM_HOST%: quoted (a quote closes only before a space
# or the end of the line, Envoy does not escape quotes) or bare (Istio's trailing fields).
_FIELD = re.compile(r'"((?>[^"]+|"(?! |$))*)"(?: |$)|(\S+)(?: |$)')
_SNIFF = re.compile(rb'\[\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[^\]]*\] "[^"]*" \d{1,3} \S+ ')

# Index, among the unquoted fields after UPSTREAM_HOST, of Istio's %DOWNSTREAM_REMOTE_ADDRESS%.
_ISTIO_DOWNSTREAM_REMOTE = 3


def host_of(addr: str | None) -> str | None:
    """The host part of an address as Envoy prints it, port and IPv6 brackets removed.

    >>> [host_of(a) for a in ("172.27.0.3:80", "[::1]:80", "fe80::1", "10.0.0.1", "-")]
    ['172.27.0.3', '::1', 'fe80::1', '10.0.0.1', None]
    """
    if not addr:
        return None
    addr = addr.strip()
    if not addr or addr == "-":
        return None
    if addr[0] == "[":
        end = addr.find("]")
        return addr[1:end] if end > 1 else None
    if addr.count(":") == 1:  # IPv4 (or a name) with a port; bare IPv6 has several colons
        addr = addr.split(":", 1)[0]
    return addr or None


def first_forwarded(xff: str | None) -> str | None:
    """The client address of an ``X-Forwarded-For`` value: its first element.

    >>> first_forwarded("[2001:db8::7]:4711, 10.0.3.7")
    '2001:db8::7'
    """
    if not xff or xff == "-":
        return None
    return host_of(xff.split(",", 1)[0])


def _text(v: str) -> str | None:
    return v if v and v != "-" else None


class EnvoyTextParser(Parser):
    name = "envoy_text"
    kind = "request"
    description = "Envoy default text access log (and Istio's variant)"

    class Options(Parser.Options):
        principal_field: int | None = Field(
            default=None, ge=0,
            description="0-based index, among the fields after %UPSTREAM_HOST%, of a field "
                        "holding the principal (e.g. an appended \"%REQ(X-API-KEY)%\"). None: no principal.")
        principal_is_secret: bool = Field(
            default=True, description="Hash the principal field (it is a raw API key or token).")
        model_field: int | None = Field(
            default=None, ge=0, description="0-based index, among the fields after %UPSTREAM_HOST%, of a model name.")

    def __init__(self, options=None, hasher=None):
        super().__init__(options, hasher)
        o = self.options
        self._principal_idx = o.principal_field
        self._model_idx = o.model_field
        self._secret = o.principal_is_secret

    @classmethod
    def sniff(cls, head: bytes, lines: list[bytes]) -> bool:
        sample = lines[:3]
        return bool(sample) and 2 * sum(1 for l in sample if _SNIFF.match(l)) > len(sample)

    def parse_record(self, raw: bytes) -> dict:
        # Header values are logged as sent: undecodable bytes are kept visible, not fatal.
        line = raw.decode("utf-8", "backslashreplace")
        m = _HEAD.match(line)
        if m is None:
            raise ParseError("not an Envoy text access log line")
        time, request, status, flags, details, _term, _tfr, rx, tx, dur, ust = m.groups()
        # The five quoted fields are split on '" "' rather than tokenized: Envoy writes header
        # values verbatim, so a user agent may hold quotes; only '" "' inside one misaligns.
        quoted = line[m.end():].split('" "', 4)
        if len(quoted) < 5:
            raise ParseError(f"Envoy access log line has {len(quoted)} of the 5 quoted fields after the duration")
        xff, ua, rid, authority, last = quoted
        close = last.find('"')
        if close < 0:
            raise ParseError("unterminated quoted %UPSTREAM_HOST% field")
        upstream = last[:close]
        tail = last[close + 1:]
        trailing = [q if q or not b else b for q, b in _FIELD.findall(tail.lstrip(" "))] if tail.strip() else ()

        parts = request.split(" ")
        if len(parts) >= 3:
            method, proto, path = parts[0], parts[-1], " ".join(parts[1:-1]) if len(parts) > 3 else parts[1]
        else:  # TCP proxies and malformed requests log "-" or a fragment: keep it as the path
            method, proto, path = None, None, request
        path = _text(path)

        src_ip = first_forwarded(xff) if xff != "-" else None
        if src_ip is None and details is not None and len(trailing) > _ISTIO_DOWNSTREAM_REMOTE:
            src_ip = host_of(trailing[_ISTIO_DOWNSTREAM_REMOTE])

        principal = None
        if self._principal_idx is not None and self._principal_idx < len(trailing):
            principal = self.principal(_text(trailing[self._principal_idx]), self._secret)
        model = None
        if self._model_idx is not None and self._model_idx < len(trailing):
            model = _text(trailing[self._model_idx])

        return {
            "kind": "request",
            "ts": parse_iso(time),
            "source": "envoy_text",
            "principal": principal,
            "src_ip": src_ip,
            "model": model,
            "path": self.hasher.scrub_path(path) if path is not None else None,
            "status": int(status),
            "latency_ms": float(dur) if dur != "-" else None,
            "tokens_in": None,
            "tokens_out": None,
            "method": _text(method),
            "protocol": _text(proto),
            "response_flags": flags.split(",") if flags != "-" else None,
            "bytes_in": int(rx) if rx != "-" else None,
            "bytes_out": int(tx) if tx != "-" else None,
            "upstream_ms": float(ust) if ust != "-" else None,
            "user_agent": _text(ua),
            "request_id": _text(rid),
            "authority": _text(authority),
            "upstream_host": _text(upstream),
        }

