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

Speed: rows are first decoded with msgspec into a Struct of the columns read, and the
metadata text into a Struct of the keys read (the rest is skipped in C, the common types
checked on the way); a row those types do not fit (a numeric string, metadata that is not an
object, a bad row of an array, text that is not UTF-8), or options they cannot read (a dotted
principal path), takes the general orjson path. Both end in the same ``_finish``, and
tests/parsers/test_litellm_fastpath.py checks that they agree.
"""

from __future__ import annotations

import re
from binascii import a2b_hex
from datetime import timezone
from operator import attrgetter, methodcaller
from typing import Annotated, Any, Literal

import msgspec
import orjson
from pydantic import Field, field_validator

from ramparts.errors import ParseError
from ramparts.redact import HASH_PREFIX
from ramparts.timeutil import NS, parse_iso, zone

from .base import Parser, as_str, dig, is_utf8, sniff_json_lines
from .envoy_json import opt_count, opt_float, opt_str
from .envoy_text import host_of

_MISS = object()
_BOOL_TEXT = {"true": True, "false": False}
# Postgres prints a whole-hour offset as "+00"; RFC 3339 wants "+00:00".
_SHORT_OFFSET = re.compile(r"(?<=\d)([+-]\d\d)$")
_STATUS_OK = ("success",)
_MAX_CACHE = 65536
_FRAC_SCALE = [10 ** (9 - i) for i in range(10)]
_NS_PER_MS = NS / 1000
_STATUS_FAIL = ("failure", "failed", "error")


def _looks_hashed(v: str) -> bool:
    # A SHA-256 in hex (64 hex digits; a2b_hex takes nothing else, and is faster than a regex).
    if len(v) == 64:
        try:
            a2b_hex(v)
            return True
        except ValueError:
            pass
    return v.startswith(HASH_PREFIX)


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


_EMPTY: dict = {}
# The event's fields in order: the fast path fills a copy.
_TEMPLATE: dict = dict.fromkeys((
    "kind", "ts", "source", "principal", "src_ip", "model", "path", "status", "latency_ms", "tokens_in",
    "tokens_out", "request_id", "call_type", "spend", "total_tokens", "model_group", "provider", "user",
    "end_user", "team_id", "key_alias", "error_class", "cache_hit"))
_TEMPLATE.update(kind="request", source="litellm")


# -- the fast path's schema ------------------------------------------------------------------
# A SpendLogs row has a fixed schema, so the fast path decodes it with msgspec into a Struct
# of the columns the event reads (the others are skipped in C), and the metadata text into a
# Struct of the keys it reads. The types are chosen so that a value they accept decodes to
# exactly what orjson gives (spend is the exception: msgspec turns 5 into 5.0, which is what
# opt_float does anyway); any value outside them fails the decode and the row takes the
# general path.
_STR = str | None
_COUNT = Annotated[int, msgspec.Meta(ge=0, le=2**63 - 1)] | None  # msgspec bounds are int64
_CACHE_HIT = bool | str | None


class _ErrorInfo(msgspec.Struct, gc=False):
    error_code: str | Annotated[int, msgspec.Meta(ge=-2**63, le=2**63 - 1)] | None = None
    error_class: str | None = None


# JSON key -> (attribute, type, same value as orjson's: a principal path or a model key may
# read it). The attributes of the fixed columns are the ones _fast_event reads.
_ROW = {
    "request_id": ("request_id", _STR, True), "call_type": ("call_type", _STR, True),
    "api_key": ("api_key", _STR, True), "spend": ("spend", float | None, False),
    "total_tokens": ("total_tokens", _COUNT, True), "prompt_tokens": ("prompt_tokens", _COUNT, True),
    "completion_tokens": ("completion_tokens", _COUNT, True),
    "startTime": ("startTime", _STR, True), "starttime": ("starttime", _STR, True),
    "start_time": ("start_time", _STR, True), "endTime": ("endTime", _STR, True),
    "endtime": ("endtime", _STR, True), "end_time": ("end_time", _STR, True),
    "model": ("model", _STR, True), "model_group": ("model_group", _STR, True),
    "custom_llm_provider": ("custom_llm_provider", _STR, True), "user": ("user", _STR, True),
    "end_user": ("end_user", _STR, True), "team_id": ("team_id", _STR, True),
    "requester_ip_address": ("requester_ip_address", _STR, True), "status": ("status", _STR, True),
    "cache_hit": ("cache_hit", _CACHE_HIT, True),
    "metadata": ("metadata", None, False),  # str (JSON text) | the metadata Struct | None
}
_META = {
    "status": ("status", _STR, True), "error_information": ("error_information", _ErrorInfo | None, False),
    "requester_ip_address": ("requester_ip_address", _STR, True),
    "user_api_key_request_route": ("user_api_key_request_route", _STR, True),
    "user_api_key_team_id": ("user_api_key_team_id", _STR, True),
    "user_api_key_alias": ("user_api_key_alias", _STR, True),
}
_NO_ERROR = _ErrorInfo()


def _compile_schema(principal_paths: tuple[str, ...], model_keys: tuple[str, ...]):
    """The fast path for these options, or None when they need the general path.

    Returns ``(decode, decode_meta, no_meta, principal, model)``: ``decode`` takes a line to a
    row Struct or a list of them, ``decode_meta`` the metadata text to its Struct (``no_meta``
    stands for absent metadata), ``principal`` holds ``(in metadata, getter)`` per principal
    path and ``model`` a getter per model key. A path or key is supported when it names a
    text or count column (or metadata key) or a new one (read as text); a dotted path other
    than ``metadata.KEY`` is left to the general path (dig tries the dotted key whole first).
    """
    row, meta = dict(_ROW), dict(_META)
    n = 0

    def leaf(table: dict, key: str):
        nonlocal n
        if not key:
            return None
        cur = table.get(key)
        if cur is None:
            cur = table[key] = (f"d{n}", _STR, True)
            n += 1
        return cur[0] if cur[2] else None

    principal, model = [], []
    for p in principal_paths:
        in_meta = p.startswith("metadata.")
        key = p[9:] if in_meta else p
        attr = None if "." in key else leaf(meta if in_meta else row, key)
        if attr is None:
            return None
        principal.append((in_meta, attrgetter(attr)))
    for k in model_keys:
        attr = leaf(row, k)
        if attr is None:
            return None
        model.append(attrgetter(attr))

    def struct(name: str, table: dict, **types):
        fields = [(attr, types.get(attr, typ), None) for attr, typ, _ in table.values()]
        rename = {attr: key for key, (attr, _, _) in table.items()}
        return msgspec.defstruct(name, fields, rename=rename, kw_only=True, gc=False)

    try:
        meta_struct = struct("SpendLogsMetadata", meta)
        row_struct = struct("SpendLogsRow", row, metadata=str | meta_struct | None)
    except (TypeError, ValueError):  # names msgspec cannot take: the general path only
        return None
    return (msgspec.json.Decoder(row_struct | list[row_struct]).decode, msgspec.json.Decoder(meta_struct).decode,
            meta_struct(), tuple(principal), tuple(model))


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
        # The general path's getters, (in metadata, getter, name) per principal path and
        # (getter, name) per model key; the fast path's (see _compile_schema) read the Structs.
        self._general = (
            tuple((p.startswith("metadata."), (lambda obj, k=p[9:]: dig(obj, k)) if p.startswith("metadata.")
                   else (lambda obj, k=p: dig(obj, k)), p) for p in self._principal_paths),
            tuple((methodcaller("get", f), f) for f in self._model_fields))
        self._pending: list[str] | None = None
        fast = self._compile()
        self._fast = None
        if fast is not None:
            self._fast, self._decode_meta, self._no_meta, principal, model = fast
            self._typed = (tuple((m, get, p) for (m, get), p in zip(principal, self._principal_paths)),
                           tuple(zip(model, self._model_fields)))

    def _compile(self):
        """The fast path (see _compile_schema), or None to use the general path only."""
        return _compile_schema(self._principal_paths, self._model_fields)

    @classmethod
    def sniff(cls, head: bytes, lines: list[bytes]) -> bool:
        sample = lines[:3]
        if not sample or sample[0].lstrip()[:1] not in (b"{", b"["):
            return False
        return sniff_json_lines(sample, _looks_like_row, first_of_array=True)

    def parse_record(self, raw: bytes) -> dict | list[dict] | None:
        decode = self._fast
        # msgspec does not check the UTF-8 of the fields it skips, orjson does: a line that is
        # not UTF-8 is left to the general path (which dead-letters it).
        if decode is not None and (raw.isascii() or is_utf8(raw)):
            # Notes are held until the whole line is through, so that a fallback to the
            # general path does not count them twice.
            pending = self._pending = []
            try:
                doc = decode(raw)
                if type(doc) is list:
                    out = [self._fast_event(r) for r in doc] or None
                else:
                    out = self._fast_event(doc)
            except Exception:
                pass  # a value outside the fast types, bad metadata, not JSON: the general path decides
            else:
                for name in pending:
                    self.note(name)
                return out
        return self.object_or_array(raw, self._event, "a SpendLogs row", "row")

    def _time(self, v: Any, what: str) -> int:
        if type(v) is not str:
            raise ParseError(f"{what}: expected a timestamp text, got {type(v).__name__}")
        # The usual export spelling, 'YYYY-MM-DD HH:MM:SS[.ffffff]' without offset: the second
        # is cached (the zone's offset comes with it), the fraction added. Only seconds of
        # that spelling are cached, so a cached one needs no more checks.
        n = len(v)
        head = v[:19]
        base = self._seconds.get(head)
        if base is None and n >= 19 and v[4] == "-" and v[10] in " T" and (
                n == 19 or v[19] == "." and v[20:].isdigit()):
            if len(self._seconds) >= _MAX_CACHE:
                self._seconds.clear()
            base = self._seconds[head] = parse_iso(head, self._tz)
        if base is not None:
            if n == 19:
                return base
            frac = v[20:]
            if v[19] == "." and frac.isdigit():
                if len(frac) > 9:
                    frac = frac[:9]
                return base + int(frac) * _FRAC_SCALE[len(frac)]
        if n > 19 and v[-3] in "+-":
            v = _SHORT_OFFSET.sub(r"\1:00", v)
        return parse_iso(v, self._tz)

    def _principal(self, v: Any, what: str) -> str | None:
        if type(v) is str:
            # Few keys, many rows: the decision (and the keyed hash) is remembered per value.
            cache = self._principals
            p = cache.get(v, _MISS)
            if p is not _MISS:
                return p
            if not v or v == "-":
                return None  # what as_str gives
            mode = self._mode
            if mode == "id" or (mode == "auto" and _looks_hashed(v)):
                p = v  # what principal(v, secret=False) gives for text
            else:
                p = self.principal(v, secret=True)
            if len(cache) >= _MAX_CACHE:
                cache.clear()
            cache[v] = p
            return p
        s = as_str(v, what)
        if s is None:
            return None
        if self._mode == "id" or (self._mode == "auto" and _looks_hashed(s)):
            return self.principal(s, secret=False)
        return self.principal(s, secret=True)

    def _fast_event(self, r) -> dict:
        """One row decoded into the fast path's Struct to its event."""
        m = r.metadata
        if type(m) is str:
            m = self._decode_meta(m) if m.strip() else self._no_meta
        elif m is None:
            m = self._no_meta
        err = m.error_information
        if err is None:
            err = _NO_ERROR
        return self._finish(
            r, m, r.startTime or r.starttime or r.start_time or None, r.endTime or r.endtime or r.end_time or None,
            r.status, m.status, err.error_code, err.error_class, r.requester_ip_address, m.requester_ip_address,
            m.user_api_key_request_route, r.prompt_tokens, r.completion_tokens, r.cache_hit, r.request_id,
            r.call_type, r.spend, r.total_tokens, r.model_group, r.custom_llm_provider, r.user, r.end_user,
            r.team_id, m.user_api_key_team_id, m.user_api_key_alias, True)

    def _event(self, rec: dict) -> dict:
        """One row decoded by orjson to its event (the general path)."""
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
        err = meta.get("error_information")
        if not isinstance(err, dict):
            err = _EMPTY
        return self._finish(
            rec, meta, _first(rec, "startTime", "starttime", "start_time"),
            _first(rec, "endTime", "endtime", "end_time"),
            rec.get("status"), meta.get("status"), err.get("error_code"), err.get("error_class"),
            rec.get("requester_ip_address"), meta.get("requester_ip_address"), meta.get("user_api_key_request_route"),
            rec.get("prompt_tokens"), rec.get("completion_tokens"), rec.get("cache_hit"), rec.get("request_id"),
            rec.get("call_type"), rec.get("spend"), rec.get("total_tokens"), rec.get("model_group"),
            rec.get("custom_llm_provider"), rec.get("user"), rec.get("end_user"), rec.get("team_id"),
            meta.get("user_api_key_team_id"), meta.get("user_api_key_alias"), False)

    def _finish(self, rec, meta, start, end, state, meta_state, error_code, error_class, ip, meta_ip, route,
                tokens_in, tokens_out, cache_hit, request_id, call_type, spend, total_tokens, model_group,
                provider, user, end_user, team_id, meta_team_id, key_alias, typed: bool) -> dict:
        """One row's raw values to its event; shared by both paths, so they cannot drift.

        ``rec`` and ``meta`` are the row and its metadata, as dicts (general path) or Structs
        (fast path), read by the principal paths and model keys through the getters of each
        path. ``typed``: the values come from the fast path's Structs, whose types msgspec has
        checked (text is str or None, counts ints in range, spend a float, cache_hit a bool
        or text, the error code text or an int), so the coercions that could only fail or
        change other types are skipped, and notes wait in ``_pending`` for the whole line.
        """
        if start is None:
            raise ParseError("missing field 'startTime'")
        ts = self._time(start, "startTime")
        latency = None
        if end is not None:
            latency = (self._time(end, "endTime") - ts) / _NS_PER_MS
            if latency < 0:
                if typed:
                    self._pending.append("negative_latency")
                else:
                    self.note("negative_latency")
                latency = None

        principals, models = self._typed if typed else self._general
        principal = None
        for in_meta, get, what in principals:
            principal = self._principal(get(meta if in_meta else rec), what)
            if principal is not None:
                break
        model = None
        for get, what in models:
            model = get(rec)
            if type(model) is str:  # what opt_str gives for text
                if model and model != "-":
                    break
                model = None
            else:
                model = opt_str(model, what)
                if model is not None:
                    break

        # Newer schemas have a top-level status column; older ones only metadata.status.
        if typed:  # opt_str of text
            state = state if state and state != "-" else meta_state if meta_state and meta_state != "-" else None
        else:
            state = opt_str(state, "status") or opt_str(meta_state, "metadata.status")
        status = None
        if state is not None:
            s = state.lower()
            if s in _STATUS_OK:
                status = 200
            elif s in _STATUS_FAIL:
                status = 500
                code = error_code
                if isinstance(code, str):
                    code = code.strip()
                    code = int(code) if code.isdigit() else None
                if isinstance(code, int) and not isinstance(code, bool) and 100 <= code <= 599:
                    status = code
            else:
                if typed:
                    self._pending.append("unknown_status")
                else:
                    self.note("unknown_status")

        if typed:  # opt_str of text
            ip = ip if ip and ip != "-" else meta_ip if meta_ip and meta_ip != "-" else None
            route = route if route and route != "-" else None
        else:
            ip = opt_str(ip, "requester_ip_address") or opt_str(meta_ip, "metadata.requester_ip_address")
            route = opt_str(route, "metadata.user_api_key_request_route")
        if ip is not None and (":" in ip or ip[0] == "[" or ip[0].isspace() or ip[-1].isspace()):
            ip = host_of(ip)  # else host_of(ip) is ip
        if not isinstance(cache_hit, bool):
            # A text column: "True", "False", "None" or "".
            cache_hit = _BOOL_TEXT.get(cache_hit.lower()) if isinstance(cache_hit, str) else None
        if typed:
            # Text is str or None, counts ints in range, spend a float.
            d = _TEMPLATE.copy()
            d["ts"] = ts
            d["principal"] = principal
            d["src_ip"] = ip
            d["model"] = model
            d["path"] = self.hasher.scrub_path(route) if route is not None else None
            d["status"] = status
            d["latency_ms"] = latency
            d["tokens_in"] = tokens_in
            d["tokens_out"] = tokens_out
            d["request_id"] = request_id if request_id and request_id != "-" else None
            d["call_type"] = call_type if call_type and call_type != "-" else None
            d["spend"] = spend
            d["total_tokens"] = total_tokens
            d["model_group"] = model_group if model_group and model_group != "-" else None
            d["provider"] = provider if provider and provider != "-" else None
            d["user"] = user if user and user != "-" else None
            d["end_user"] = end_user if end_user and end_user != "-" else None
            d["team_id"] = (team_id if team_id and team_id != "-" else
                            meta_team_id if meta_team_id and meta_team_id != "-" else None)
            d["key_alias"] = key_alias if key_alias and key_alias != "-" else None
            d["error_class"] = error_class if error_class and error_class != "-" else None
            d["cache_hit"] = cache_hit
            return d

        tokens_in = opt_count(tokens_in, "prompt_tokens")
        tokens_out = opt_count(tokens_out, "completion_tokens")
        # The coercions in the order of the fields, so that of several bad values the first
        # one is reported, as before.
        return {
            "kind": "request",
            "ts": ts,
            "source": "litellm",
            "principal": principal,
            "src_ip": ip,
            "model": model,
            "path": self.hasher.scrub_path(route) if route is not None else None,
            "status": status,
            "latency_ms": latency,
            "tokens_in": tokens_in,
            "tokens_out": tokens_out,
            "request_id": opt_str(request_id, "request_id"),
            "call_type": opt_str(call_type, "call_type"),
            "spend": opt_float(spend, "spend"),
            "total_tokens": opt_count(total_tokens, "total_tokens"),
            "model_group": opt_str(model_group, "model_group"),
            "provider": opt_str(provider, "custom_llm_provider"),
            "user": opt_str(user, "user"),
            "end_user": opt_str(end_user, "end_user"),
            "team_id": opt_str(team_id, "team_id") or opt_str(meta_team_id, "metadata.user_api_key_team_id"),
            "key_alias": opt_str(key_alias, "metadata.user_api_key_alias"),
            "error_class": opt_str(error_class, "error_information.error_class"),
            "cache_hit": cache_hit,
        }
