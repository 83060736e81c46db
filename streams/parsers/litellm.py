"""LiteLLM proxy SpendLogs: rows of the ``LiteLLM_SpendLogs`` table exported as JSON lines.

One row per LLM call made through the LiteLLM proxy: ``request_id``, ``call_type``,
``api_key``, ``spend``, ``total_tokens``, ``prompt_tokens``, ``completion_tokens``,
``startTime``, ``endTime``, ``model``, ``model_group``, ``user``, ``team_id``, ``end_user``,
``requester_ip_address``, ``status`` (newer schemas) and ``metadata``, ``messages``,
``response``, ``request_tags`` (JSON columns). A line may also hold a JSON array of rows
(``json_agg`` exports); each row is then its own event and a bad row is dead-lettered alone.

Principal: the first non-empty of ``principal_fields`` (default ``api_key`` then
``metadata.user_api_key``). LiteLLM stores there the SHA-256 of the virtual key, not the key:
a 64-hex-digit value (or an id already hashed by Ramparts) is kept as it is, and anything else
(a raw ``sk-...`` key, a master key) is treated as a credential and replaced by its keyed hash
(``principal_mode`` ``auto``; ``id`` keeps any value, ``secret`` hashes every value).

Quirks handled: ``metadata`` (and ``messages``, ``response``) are JSON-ENCODED STRINGS in
LiteLLM's payload and in text exports, but real objects in ``row_to_json`` exports: both are
read, and only ``metadata`` is decoded (prompts and completions are never copied into the
event). ``startTime``/``endTime`` are Postgres ``timestamp without time zone``: no offset, read
in ``timezone`` (default UTC); an explicit offset is honoured, including Postgres' short
``+02``. ``status`` is 200 for ``success``; for ``failure`` it is
``metadata.error_information.error_code`` when that is an HTTP status (LiteLLM fills it from
the provider's exception; it can also be ``"None"``), else 500; None when the row says neither
(an unknown value is counted in the ``unknown_status`` note). ``latency_ms`` is
``endTime - startTime`` (None if negative, counted in the ``negative_latency`` note). ``model``
is the deployment's model name, else ``model_group`` (``model_keys``); ``path`` is the proxy
route (``metadata.user_api_key_request_route``) when logged; ``src_ip`` is
``requester_ip_address`` (column, else metadata). ``cache_hit`` is a text column
(``"True"``/``"False"``/``"None"``).

Extra fields: ``request_id``, ``call_type``, ``spend`` (USD), ``total_tokens``,
``model_group``, ``provider`` (``custom_llm_provider``), ``user``, ``end_user``, ``team_id``,
``key_alias`` (``metadata.user_api_key_alias``), ``error_class``, ``cache_hit``.
"""

from __future__ import annotations

import re
from datetime import timezone
from typing import Any, Literal

import orjson
from pydantic import Field, field_validator

from ramparts.errors import ParseError
from ramparts.redact import HASH_PREFIX
from ramparts.timeutil import NS, parse_iso, zone

from .base import Parser, as_str, describe, dig
from .envoy_json import opt_count, opt_float, opt_str
from .envoy_text import host_of

_SHA256_HEX = re.compile(r"[0-9a-fA-F]{64}")
_BOOL_TEXT = {"true": True, "false": False}
# Postgres prints a whole-hour offset as "+00"; RFC 3339 wants "+00:00".
_SHORT_OFFSET = re.compile(r"(?<=\d)([+-]\d\d)$")
_STATUS_OK = ("success",)
_MAX_CACHE = 65536
_FRAC_SCALE = [10 ** (9 - i) for i in range(10)]
_STATUS_FAIL = ("failure", "failed", "error")


def _looks_hashed(v: str) -> bool:
    return _SHA256_HEX.fullmatch(v) is not None or v.startswith(HASH_PREFIX)


def _looks_like_row(doc: Any) -> bool:
    return (isinstance(doc, dict) and "request_id" in doc and "call_type" in doc
            and ("startTime" in doc or "starttime" in doc or "start_time" in doc)
            and ("spend" in doc or "api_key" in doc))


def _first(rec: dict, *keys: str) -> Any:
    for k in keys:
        v = rec.get(k)
        if v is not None and v != "":
            return v
    return None


class LiteLLMParser(Parser):
    name = "litellm"
    kind = "request"
    description = "LiteLLM proxy SpendLogs rows (LiteLLM_SpendLogs export, JSON lines)"

    class Options(Parser.Options):
        timezone: str = Field(
            default="UTC",
            description="Zone of startTime/endTime, which carry no offset: 'UTC', 'local' or an IANA name.")
        principal_fields: list[str] = Field(
            default_factory=lambda: ["api_key", "metadata.user_api_key"],
            description="Dotted paths (metadata.* reads the decoded metadata) tried in order for the principal.")
        principal_mode: Literal["auto", "secret", "id"] = Field(
            default="auto",
            description="'auto': keep SHA-256 hex (LiteLLM's hashed key), hash anything else; "
                        "'secret': hash every value; 'id': keep every value readable.")
        model_keys: list[str] = Field(
            default_factory=lambda: ["model", "model_group"],
            description="Fields tried in order for the model ('model_group' is the public model name).")

        @field_validator("timezone")
        @classmethod
        def _known_zone(cls, v: str) -> str:
            try:
                zone(v)
            except Exception:
                raise ValueError(f"unknown time zone {v!r}") from None
            return v

    def __init__(self, options=None, hasher=None):
        super().__init__(options, hasher)
        o = self.options
        tz = zone(o.timezone)
        # parse_iso reads offset-less text as UTC by itself, faster than through a tzinfo.
        self._tz = None if tz is timezone.utc else tz
        self._principal_paths = tuple(o.principal_fields)
        self._model_fields = tuple(o.model_keys)
        self._mode = o.principal_mode
        self._seconds: dict[str, int] = {}
        self._principals: dict[str, str | None] = {}

    @classmethod
    def sniff(cls, head: bytes, lines: list[bytes]) -> bool:
        sample = lines[:3]
        if not sample or sample[0].lstrip()[:1] not in (b"{", b"["):
            return False
        hits = 0
        for line in sample:
            try:
                doc = orjson.loads(line)
            except orjson.JSONDecodeError:
                continue
            if isinstance(doc, list):
                doc = doc[0] if doc else None
            if _looks_like_row(doc):
                hits += 1
        return 2 * hits > len(sample)

    def parse_record(self, raw: bytes) -> dict | list[dict] | None:
        doc = orjson.loads(raw)
        if type(doc) is dict:
            return self._event(doc)
        if type(doc) is not list:
            raise ParseError(f"expected a SpendLogs row (JSON object), got a JSON {type(doc).__name__}")
        if not doc:
            return None
        out = []
        for i, item in enumerate(doc):
            try:
                if type(item) is not dict:
                    raise ParseError(f"row is a JSON {type(item).__name__}, not an object")
                out.append(self._event(item))
            except Exception as e:  # one bad row must not cost the rest of the array
                self.reject(orjson.dumps(item), describe(e), item=i)
        return out

    def _time(self, v: Any, what: str) -> int:
        if type(v) is not str:
            raise ParseError(f"{what}: expected a timestamp text, got {type(v).__name__}")
        # The usual export spelling, 'YYYY-MM-DD HH:MM:SS[.ffffff]' without offset: the second
        # is cached (the zone's offset comes with it), the fraction added.
        n = len(v)
        if n >= 19 and v[4] == "-" and v[10] in " T" and (n == 19 or v[19] == "." and v[20:].isdigit()):
            head = v[:19]
            base = self._seconds.get(head)
            if base is None:
                if len(self._seconds) >= _MAX_CACHE:
                    self._seconds.clear()
                base = self._seconds[head] = parse_iso(head, self._tz)
            if n == 19:
                return base
            frac = v[20:29]
            return base + int(frac) * _FRAC_SCALE[len(frac)]
        if n > 19 and v[-3] in "+-":
            v = _SHORT_OFFSET.sub(r"\1:00", v)
        return parse_iso(v, self._tz)

    def _principal(self, v: Any, what: str) -> str | None:
        if type(v) is str:
            # Few keys, many rows: the decision (and the keyed hash) is remembered per value.
            p = self._principals.get(v)
            if p is not None or v in self._principals:
                return p
        s = as_str(v, what)
        if s is None:
            return None
        if self._mode == "id" or (self._mode == "auto" and _looks_hashed(s)):
            p = self.principal(s, secret=False)
        else:
            p = self.principal(s, secret=True)
        if type(v) is str:
            if len(self._principals) >= _MAX_CACHE:
                self._principals.clear()
            self._principals[v] = p
        return p

    def _event(self, rec: dict) -> dict:
        meta = rec.get("metadata")
        if isinstance(meta, str):
            try:
                meta = orjson.loads(meta) if meta.strip() else None
            except orjson.JSONDecodeError as e:
                raise ParseError(f"metadata: not valid JSON text: {e}") from None
        if meta is None:
            meta = {}
        elif type(meta) is not dict:
            raise ParseError(f"metadata: expected a JSON object, got {type(meta).__name__}")

        start = _first(rec, "startTime", "starttime", "start_time")
        if start is None:
            raise ParseError("missing field 'startTime'")
        ts = self._time(start, "startTime")
        end = _first(rec, "endTime", "endtime", "end_time")
        latency = None
        if end is not None:
            latency = (self._time(end, "endTime") - ts) / (NS / 1000)
            if latency < 0:
                self.note("negative_latency")
                latency = None

        principal = None
        for p in self._principal_paths:
            v = dig(meta, p[9:]) if p.startswith("metadata.") else dig(rec, p)
            principal = self._principal(v, p)
            if principal is not None:
                break

        model = None
        for f in self._model_fields:
            model = opt_str(rec.get(f), f)
            if model is not None:
                break

        # Newer schemas have a top-level status column; older ones only metadata.status.
        state = opt_str(rec.get("status"), "status") or opt_str(meta.get("status"), "metadata.status")
        err = meta.get("error_information")
        if not isinstance(err, dict):
            err = {}
        status = None
        if state is not None:
            s = state.lower()
            if s in _STATUS_OK:
                status = 200
            elif s in _STATUS_FAIL:
                status = 500
                code = err.get("error_code")
                if isinstance(code, str):
                    code = code.strip()
                    code = int(code) if code.isdigit() else None
                if isinstance(code, int) and not isinstance(code, bool) and 100 <= code <= 599:
                    status = code
            else:
                self.note("unknown_status")

        ip = opt_str(rec.get("requester_ip_address"), "requester_ip_address") or \
            opt_str(meta.get("requester_ip_address"), "metadata.requester_ip_address")
        route = opt_str(meta.get("user_api_key_request_route"), "metadata.user_api_key_request_route")
        tokens_in = opt_count(rec.get("prompt_tokens"), "prompt_tokens")
        tokens_out = opt_count(rec.get("completion_tokens"), "completion_tokens")
        cache_hit = rec.get("cache_hit")
        if not isinstance(cache_hit, bool):
            # A text column: "True", "False", "None" or "".
            cache_hit = _BOOL_TEXT.get(cache_hit.lower()) if isinstance(cache_hit, str) else None
        return {
            "kind": "request",
            "ts": ts,
            "source": "litellm",
            "principal": principal,
            "src_ip": host_of(ip),
            "model": model,
            "path": self.hasher.scrub_path(route) if route is not None else None,
            "status": status,
            "latency_ms": latency,
            "tokens_in": tokens_in,
            "tokens_out": tokens_out,
            "request_id": opt_str(rec.get("request_id"), "request_id"),
            "call_type": opt_str(rec.get("call_type"), "call_type"),
            "spend": opt_float(rec.get("spend"), "spend"),
            "total_tokens": opt_count(rec.get("total_tokens"), "total_tokens"),
            "model_group": opt_str(rec.get("model_group"), "model_group"),
            "provider": opt_str(rec.get("custom_llm_provider"), "custom_llm_provider"),
            "user": opt_str(rec.get("user"), "user"),
            "end_user": opt_str(rec.get("end_user"), "end_user"),
            "team_id": opt_str(rec.get("team_id"), "team_id")
            or opt_str(meta.get("user_api_key_team_id"), "metadata.user_api_key_team_id"),
            "key_alias": opt_str(meta.get("user_api_key_alias"), "metadata.user_api_key_alias"),
            "error_class": opt_str(err.get("error_class"), "error_information.error_class"),
            "cache_hit": cache_hit,
        }
