"""Ramparts' native prediction log: one JSON object per line.

``{"ts", "principal", "model", "model_version", "src_ip", "input": [...], "output": [...]}``
is the shape a model server (or a sidecar) writes when it logs straight for Ramparts; it maps
one to one onto the ``prediction`` kind.

* ``ts``: RFC 3339 text, or an epoch number whose unit follows from its size: seconds below
  1e11 (until year 5138), milliseconds below 1e14, microseconds below 1e17, nanoseconds above.
  (Reading microseconds as nanoseconds would put the event in January 1970 without error,
  so the microsecond band is recognised too.) A string of digits is read as such a number.
* ``principal``: kept as written (an API key id, a user); a value that is plainly a raw
  credential (``Bearer ...``, ``sk-...``) or any value when ``Options.principal_is_secret``
  is set is replaced by its keyed hash.
* ``input`` must be a list (or null / absent). ``output`` must be a list (or null / absent);
  a scalar output (one label, one score) is wrapped into a one-element list when
  ``Options.wrap_scalar_output`` is on (the default), since single-label classifiers often
  log just the label. An object where a list is expected dead-letters: detectors compare
  inputs as vectors and would otherwise silently compare apples with dicts.
* ``model_version`` may be a number (``3``): it becomes the text ``"3"``.

Extra fields, passed through when present: ``request_id`` (text), ``latency_ms`` (number).
"""

from __future__ import annotations

from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any

from pydantic import Field

from ramparts.errors import ParseError
from ramparts.timeutil import check_range, parse_iso

from .base import Parser, as_float, as_str, load_json_object, sniff_json_lines


class NativePredictionParser(Parser):
    name = "native"
    kind = "prediction"
    description = "Ramparts native prediction JSON lines {ts, principal, model, model_version, src_ip, input, output}"

    class Options(Parser.Options):
        principal_is_secret: bool = Field(
            default=False, description="Hash every principal (set when the field holds raw API keys).")
        wrap_scalar_output: bool = Field(
            default=True, description="Turn a scalar output (a label, a score) into a one-element list.")

    @classmethod
    def sniff(cls, head: bytes, lines: list[bytes]) -> bool:
        if b'"input"' not in head and b'"output"' not in head:
            return False
        return sniff_json_lines(lines, lambda doc: (
            "ts" in doc and ("input" in doc or "output" in doc) and ("model" in doc or "principal" in doc)))

    def parse_record(self, raw: bytes) -> dict:
        doc = load_json_object(raw)
        if "ts" not in doc:
            raise ParseError("missing field 'ts'")
        ts = parse_ts(doc["ts"])

        principal = doc.get("principal")
        if principal is not None:
            if isinstance(principal, (int, float)) and not isinstance(principal, bool):
                principal = str(principal)
            elif not isinstance(principal, str):
                raise ParseError(f"principal: expected text, got {type(principal).__name__}")
            principal = principal.strip()
            principal = self.principal(principal, self.options.principal_is_secret or _looks_secret(principal))

        inp = doc.get("input")
        if inp is not None and type(inp) is not list:
            raise ParseError(f"input: expected a list, got {type(inp).__name__}")
        out = doc.get("output")
        if out is not None and type(out) is not list:
            if isinstance(out, (dict, list)) or not self.options.wrap_scalar_output:
                raise ParseError(f"output: expected a list, got {type(out).__name__}")
            out = [out]

        latency = doc.get("latency_ms")
        return {
            "kind": "prediction",
            "ts": ts,
            "source": "native",
            "principal": principal,
            "src_ip": as_str(doc.get("src_ip"), "src_ip"),
            "model": as_str(doc.get("model"), "model"),
            "model_version": as_str(doc.get("model_version"), "model_version"),
            "input": inp,
            "output": out,
            "request_id": as_str(doc.get("request_id"), "request_id"),
            "latency_ms": as_float(latency, "latency_ms") if latency is not None else None,
        }


def parse_ts(v: Any) -> int:
    """RFC 3339 text or an epoch number (unit by magnitude) to epoch nanoseconds."""
    if type(v) is str:
        if "-" in v:  # RFC 3339 (the common case) never lacks its dashes; an epoch has none
            return parse_iso(v)
        s = v.strip()
        if s and (s.isdigit() or _is_decimal(s)):
            return _epoch(Decimal(s))
        return parse_iso(s)
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise ParseError(f"ts: expected RFC 3339 text or an epoch number, got {type(v).__name__}")
    if isinstance(v, float):
        if v != v or v in (float("inf"), float("-inf")):
            raise ParseError(f"ts: not a time: {v}")
        # The float's shortest repr is what the writer meant (1712344878.25, 1712344878.123);
        # multiplying the float itself by 1e9 would land a few hundred ns off.
        return _epoch(Decimal(repr(v)))
    return _epoch(v)


def _epoch(v: int | Decimal) -> int:
    a = abs(v)
    if a < 100_000_000_000:
        scale = 1_000_000_000  # seconds
    elif a < 100_000_000_000_000:
        scale = 1_000_000  # milliseconds
    elif a < 100_000_000_000_000_000:
        scale = 1_000  # microseconds
    else:
        scale = 1  # nanoseconds
    return check_range(int((v * scale).to_integral_value(ROUND_HALF_EVEN)) if isinstance(v, Decimal) else v * scale)


def _is_decimal(s: str) -> bool:
    head, dot, tail = s.partition(".")
    return bool(dot) and head.isdigit() and tail.isdigit()


def _looks_secret(v: str) -> bool:
    low = v[:7].lower()
    if low.startswith(("bearer ", "basic ", "token ")):
        return True
    return v[:3] in ("sk-", "pk-", "rk-") and len(v) >= 19
