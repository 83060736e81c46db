"""Kong Gateway http-log (and file-log / tcp-log / kafka-log) JSON entries.

Every Kong logging plugin sends the same serialized entry: ``request`` (``method``, ``uri``,
``url``, ``headers``, ``size``), ``response`` (``status``, ``size``), ``latencies``
(``request``, ``kong``, ``proxy``, all ms), ``started_at`` (epoch ms), ``client_ip``,
``route``, ``service``, ``consumer`` and ``authenticated_entity``. With the plugin's queue
batching (``queue.max_batch_size`` > 1) one POST body is a JSON ARRAY of entries; a line may
therefore be one object or an array, and each array item is its own event: a bad item is
dead-lettered on its own (with its index) and the others are kept.

Principal: the first non-empty of ``principal_fields`` (default ``consumer.username``, then
``consumer.id``, then ``authenticated_entity.id``). Those are Kong identities, not secrets, so
they stay readable. Credentials in request headers (``apikey``, ``authorization``; Kong
replaces ``authorization`` by ``REDACTED`` but logs ``apikey`` as sent unless key-auth's
``hide_credentials`` is on) are never copied into the event; ``key_headers`` can name headers
whose keyed hash becomes the principal when no identity is present (off by default).

Model and tokens: the AI Proxy plugins add an ``ai`` section (Kong AI Gateway audit log):
``ai.<plugin>.meta.request_model`` and ``ai.<plugin>.usage.prompt_tokens`` /
``completion_tokens`` (spelled ``prompt_token`` / ``completion_token`` in Kong's 3.6-3.9
documentation; both are read), where ``<plugin>`` is ``proxy``, ``ai-proxy`` or
``ai-proxy-advanced``; otherwise the model comes from a request header (``model_header``,
default ``x-model``). Header values may be arrays (repeated headers): the first is used.

Quirks handled: ``request.uri`` keeps its query string, whose secret parameters
(``?apikey=...``) are hashed by ``scrub_path``; ``request.url`` (full URL) is not copied;
``response.status`` and latencies may be absent for requests Kong itself rejected early, and
a latency of ``-1`` (a phase that did not happen, e.g. ``proxy`` when no upstream was tried)
becomes None; an empty batch ``[]`` is skipped.

Extra fields: ``method``, ``bytes_in`` (``request.size``), ``bytes_out`` (``response.size``),
``kong_ms`` and ``proxy_ms`` (``latencies.kong``/``proxy``), ``user_agent``, ``route``,
``service`` (names, else ids), ``consumer_id``, ``upstream_status``, ``provider``
(``ai.<plugin>.meta.provider_name``).

Speed: lines are first decoded with msgspec into Structs of the fields read (the rest of the
entry is skipped in C, the common types checked on the way); a line those types do not fit (a
numeric string, a null object, a bad batch item, text that is not UTF-8), or options they
cannot read (a principal path to a latency), takes the general orjson path. Both end in the
same ``_finish``, and tests/parsers/test_kong_fastpath.py checks that they agree.
"""

from __future__ import annotations

from operator import attrgetter
from typing import Annotated, Any

import msgspec
import orjson
from pydantic import Field

from ramparts.errors import ParseError
from ramparts.timeutil import MAX_NS, MIN_NS, from_epoch

from .base import Parser, as_float, as_int, is_utf8
from .envoy_json import check_status, opt_count, opt_str

# Plugin keys of the ai section, most specific first: "proxy" in current Kong,
# "ai-proxy"/"ai-proxy-advanced" in the 3.6-3.8 audit log format.
_AI_PLUGINS = ("proxy", "ai-proxy", "ai-proxy-advanced")
_MAX_CACHE = 65536


def _ai_plugin(ai: Any) -> dict | None:
    if not isinstance(ai, dict):
        return None
    for k in _AI_PLUGINS:
        v = ai.get(k)
        if isinstance(v, dict):
            return v
    for k, v in ai.items():
        if k != "payload" and isinstance(v, dict) and ("meta" in v or "usage" in v):
            return v
    return None


def _ai_parts(ai: Any) -> tuple[tuple | None, tuple | None]:
    """The ai section (as decoded by orjson) to its raw (meta, usage) values, each None if absent."""
    plugin = _ai_plugin(ai)
    if plugin is None:
        return None, None
    meta = plugin.get("meta")
    if isinstance(meta, dict):
        meta = (meta.get("request_model"), meta.get("response_model"), meta.get("provider_name"))
    else:
        meta = None
    usage = plugin.get("usage")
    if isinstance(usage, dict):
        usage = (usage.get("prompt_tokens", usage.get("prompt_token")),
                 usage.get("completion_tokens", usage.get("completion_token")))
    else:
        usage = None
    return meta, usage


def _latency(v: Any, what: str) -> float | None:
    # Kong logs -1 for a phase that did not happen (latencies.proxy of a request an auth
    # plugin rejected before any upstream was tried).
    f = float(v) if type(v) is int else as_float(v, what)
    return f if f is None or f >= 0 else None


_EMPTY: dict = {}
# The event's fields in order: the fast path fills a copy.
_TEMPLATE: dict = dict.fromkeys((
    "kind", "ts", "source", "principal", "src_ip", "model", "path", "status", "latency_ms", "tokens_in",
    "tokens_out", "method", "bytes_in", "bytes_out", "kong_ms", "proxy_ms", "user_agent", "route", "service",
    "consumer_id", "upstream_status", "provider"))
_TEMPLATE.update(kind="request", source="kong")


def _obj(v: Any, what: str) -> dict:
    if type(v) is dict:
        return v
    if v is None:
        return _EMPTY
    raise ParseError(f"{what}: expected a JSON object, got {type(v).__name__}")


def _looks_like_entry(doc: Any) -> bool:
    return (isinstance(doc, dict) and isinstance(doc.get("latencies"), dict) and "started_at" in doc
            and ("client_ip" in doc or isinstance(doc.get("request"), dict)))


# -- the fast path's schema ------------------------------------------------------------------
# Kong's entry has a fixed schema, so the fast path decodes it with msgspec into Structs that
# hold only the fields the event reads (unknown fields are skipped in C). The types are
# chosen so that a value they accept decodes to exactly what orjson gives (a latency is the
# exception: msgspec turns 5 into 5.0, which is what _latency does anyway); any value outside
# them fails the decode and the line takes the general path.
class _Leaf:
    __slots__ = ("type", "same_value")

    def __init__(self, type_: Any, same_value: bool = True):
        self.type = type_
        self.same_value = same_value  # decodes to orjson's value: a principal path may read it


_STR = _Leaf(str | None)
_COUNT = _Leaf(Annotated[int, msgspec.Meta(ge=0, le=2**63 - 1)] | None)  # msgspec bounds are int64
_STATUS = _Leaf(Annotated[int, msgspec.Meta(ge=0, le=999)] | None)
_LATENCY = _Leaf(float | None, same_value=False)  # an integer latency becomes a float in C
_HEADER = _Leaf(str | list[str] | None)
# started_at in epoch ms, bounded so that from_epoch(v, "ms") cannot fail: v * 1e6 is the time.
_STARTED = _Leaf(Annotated[int, msgspec.Meta(ge=-(-MIN_NS // 1_000_000), le=(MAX_NS - 1) // 1_000_000)])


class _AIMeta(msgspec.Struct, gc=False):
    request_model: str | None = None
    response_model: str | None = None
    provider_name: str | None = None


_TOKENS = Annotated[int, msgspec.Meta(ge=0, le=2**63 - 1)] | None | msgspec.UnsetType


class _AIUsage(msgspec.Struct, gc=False):
    # UNSET tells an absent key from a null one: usage.get("prompt_tokens", usage.get("prompt_token")).
    prompt_tokens: _TOKENS = msgspec.UNSET
    prompt_token: _TOKENS = msgspec.UNSET
    completion_tokens: _TOKENS = msgspec.UNSET
    completion_token: _TOKENS = msgspec.UNSET


class _AIPlugin(msgspec.Struct, gc=False):
    # Any object under ai decodes as this ("payload" too); UNSET: the key is absent.
    meta: _AIMeta | None | msgspec.UnsetType = msgspec.UNSET
    usage: _AIUsage | None | msgspec.UnsetType = msgspec.UNSET


# An ai value that is not an object is never read, only told apart from objects.
_AI = _Leaf(dict[str, _AIPlugin | None | bool | int | float | str | list] | None, same_value=False)
_UNSET = msgspec.UNSET


def _ai_parts_fast(ai: dict) -> tuple[tuple | None, tuple | None]:
    """_ai_parts for the fast path's ai section (objects decoded as _AIPlugin)."""
    plugin = None
    for k in _AI_PLUGINS:
        v = ai.get(k)
        if type(v) is _AIPlugin:
            plugin = v
            break
    else:
        for k, v in ai.items():
            if k != "payload" and type(v) is _AIPlugin and (v.meta is not _UNSET or v.usage is not _UNSET):
                plugin = v
                break
        else:
            return None, None
    meta = plugin.meta
    meta = (meta.request_model, meta.response_model, meta.provider_name) if type(meta) is _AIMeta else None
    usage = plugin.usage
    if type(usage) is _AIUsage:
        pt = usage.prompt_tokens
        if pt is _UNSET:
            pt = usage.prompt_token
        ct = usage.completion_tokens
        if ct is _UNSET:
            ct = usage.completion_token
        usage = (None if pt is _UNSET else pt, None if ct is _UNSET else ct)
    else:
        usage = None
    return meta, usage


def _base_schema() -> dict:
    """The fields the event reads: JSON key -> (attribute, leaf or sub-schema)."""
    return {
        "request": ("request", {"method": ("method", _STR), "uri": ("uri", _STR), "size": ("size", _COUNT),
                                "headers": ("headers", {"user-agent": ("user_agent", _HEADER)})}),
        "response": ("response", {"status": ("status", _STATUS), "size": ("size", _COUNT)}),
        "latencies": ("latencies", {"request": ("request", _LATENCY), "kong": ("kong", _LATENCY),
                                    "proxy": ("proxy", _LATENCY)}),
        "consumer": ("consumer", {"id": ("id", _STR)}),
        "route": ("route", {"name": ("name", _STR), "id": ("id", _STR)}),
        "service": ("service", {"name": ("name", _STR), "id": ("id", _STR)}),
        "client_ip": ("client_ip", _STR), "started_at": ("started_at", _STARTED),
        "upstream_status": ("upstream_status", _STR), "ai": ("ai", _AI),
    }


def _compile_schema(principal_paths: tuple[tuple[str, ...], ...], headers: tuple[str, ...]):
    """The fast path for these options, or None when they need the general path.

    Returns ``(decode, principal, header)``: ``decode`` takes a line to an entry Struct (with
    the attributes of _base_schema) or a list of them; ``principal`` holds one getter per
    principal path, taking an entry to the path's value; ``header`` one per name of
    ``headers``, taking the request's headers Struct to the header's value. A principal path
    is supported when it ends on a text, count or header field of the schema, or on a new
    field (read as text).
    """
    tree = _base_schema()
    n = 0
    for path in principal_paths:
        node = tree
        for i, part in enumerate(path):
            if not part:
                return None
            cur = node.get(part)
            if i == len(path) - 1:
                if cur is None:
                    node[part] = (f"d{n}", _STR)
                    n += 1
                elif not (isinstance(cur[1], _Leaf) and cur[1].same_value):
                    return None  # a latency, the ai section or an object: the general path reads it
            else:
                if cur is None:
                    cur = node[part] = (f"d{n}", {})
                    n += 1
                elif not isinstance(cur[1], dict):
                    return None  # a path through a value
                node = cur[1]
    hdrs = tree["request"][1]["headers"][1]
    for h in headers:
        if h not in hdrs:
            hdrs[h] = (f"d{n}", _HEADER)
            n += 1
        elif hdrs[h][1] is not _HEADER:
            return None  # a header that is also a principal path's leaf, read as text there

    attrs: dict[tuple, str] = {}

    def build(node: dict, prefix: tuple, name: str):
        fields, rename = [], {}
        for key, (attr, sub) in node.items():
            rename[attr] = key
            path = prefix + (key,)
            attrs[path] = (attrs[prefix] + "." if prefix else "") + attr
            if isinstance(sub, dict):
                struct = build(sub, path, f"{name}_{attr}")
                # An absent object reads as an empty one (every field None), like the general
                # path's _EMPTY; a JSON null gives None, which the fast path cannot cross, so
                # such a line takes the general path.
                fields.append((attr, struct | None, msgspec.field(default_factory=struct)))
            elif sub is _STARTED:
                fields.append((attr, sub.type))  # required: without it, the general path
            else:
                fields.append((attr, sub.type, None))
        return msgspec.defstruct(name, fields, rename=rename, kw_only=True, gc=False)

    try:
        entry = build(tree, (), "KongEntry")
    except (TypeError, ValueError):  # names msgspec cannot take: the general path only
        return None
    return (msgspec.json.Decoder(entry | list[entry]).decode,
            tuple(attrgetter(attrs[p]) for p in principal_paths),
            tuple(attrgetter(hdrs[h][0]) for h in headers))


class KongParser(Parser):
    name = "kong"
    kind = "request"
    description = "Kong http-log JSON entries (single objects or batched arrays)"

    class Options(Parser.Options):
        principal_fields: list[str] = Field(
            default_factory=lambda: ["consumer.username", "consumer.id", "authenticated_entity.id"],
            description="Dotted paths tried in order for the principal (identities, kept readable); "
                        "e.g. add 'consumer.custom_id'.")
        key_headers: list[str] = Field(
            default_factory=list,
            description="Request headers holding a raw API key, hashed into the principal "
                        "when no principal field is set, e.g. ['apikey']. Empty: never.")
        model_header: str | None = Field(
            default="x-model",
            description="Request header naming the model when there is no AI Proxy 'ai' section; None: never.")

    def __init__(self, options=None, hasher=None):
        super().__init__(options, hasher)
        o = self.options
        self._principal_paths = tuple(tuple(p.split(".")) for p in o.principal_fields)
        self._principal_names = tuple(o.principal_fields)
        self._key_headers = tuple(h.lower() for h in o.key_headers)
        self._model_header = o.model_header.lower() if o.model_header else None
        self._hashes: dict[str, str] = {}
        fast = self._compile()
        self._fast = None
        if fast is not None:
            decode, principal, headers = fast
            self._fast = decode
            self._fast_principal = tuple(zip(principal, self._principal_names))
            if self._model_header:
                self._fast_model, *self._fast_keys = headers
            else:
                self._fast_model, self._fast_keys = None, headers

    def _compile(self):
        """The fast path (see _compile_schema), or None to use the general path only."""
        headers = ((self._model_header,) if self._model_header else ()) + self._key_headers
        return _compile_schema(self._principal_paths, headers)

    @classmethod
    def sniff(cls, head: bytes, lines: list[bytes]) -> bool:
        start = head.lstrip()[:1]
        if start not in (b"{", b"["):
            return False
        sample = lines[:3]
        hits = parsed = 0
        for line in sample:
            try:
                doc = orjson.loads(line)
            except orjson.JSONDecodeError:
                continue
            parsed += 1
            if isinstance(doc, list):
                doc = doc[0] if doc else None
            if _looks_like_entry(doc):
                hits += 1
        if parsed:
            return 2 * hits > len(sample)
        # A batch line can be longer than the head, so that no whole line is available: look
        # for the keys every Kong entry has in the head instead.
        return (b'"latencies"' in head and b'"started_at"' in head
                and (b'"client_ip"' in head or b'"request"' in head))

    def parse_record(self, raw: bytes) -> dict | list[dict] | None:
        decode = self._fast
        # msgspec does not check the UTF-8 of the fields it skips, orjson does: a line that is
        # not UTF-8 is left to the general path (which dead-letters it).
        if decode is not None and (raw.isascii() or is_utf8(raw)):
            try:
                doc = decode(raw)
                if type(doc) is list:
                    return [self._fast_event(e) for e in doc] or None
                return self._fast_event(doc)
            except Exception:
                pass  # a value outside the fast types, a null object, not JSON: the general path decides
        return self.object_or_array(raw, self._event, "a Kong log entry", "batch item")

    def _fast_event(self, e) -> dict:
        """One entry decoded into the fast path's Structs to its event."""
        principal = None
        for get, what in self._fast_principal:
            v = get(e)
            if v is not None and v != "" and v != "-":
                principal = v if type(v) is str else self._principal_of(v, what)
                break
        r, s, lat, c, ro, sv = e.request, e.response, e.latencies, e.consumer, e.route, e.service
        h = r.headers
        keys = [get(h) for get in self._fast_keys] if principal is None and self._fast_keys else ()
        model_header = self._fast_model
        return self._finish(
            e.started_at * 1_000_000, principal, keys, e.ai, None if model_header is None else model_header(h),
            r.method, r.uri, r.size, h.user_agent, s.status, s.size, lat.request, lat.kong, lat.proxy,
            c.id, ro.name, ro.id, sv.name, sv.id, e.client_ip, e.upstream_status, True)

    def _event(self, rec: dict) -> dict:
        """One entry decoded by orjson to its event (the general path)."""
        started = rec.get("started_at")
        if type(started) is not int:
            if started is None:
                raise ParseError("missing field 'started_at'")
            if isinstance(started, str) and started.isdigit():
                started = int(started)
        try:
            ts = from_epoch(started, "ms")
        except ValueError as e:
            raise ParseError(f"started_at: {e}") from None

        request = _obj(rec.get("request"), "request")
        response = _obj(rec.get("response"), "response")
        latencies = _obj(rec.get("latencies"), "latencies")
        headers = request.get("headers")
        if type(headers) is not dict:
            headers = _EMPTY
        principal = None
        for path, what in zip(self._principal_paths, self._principal_names):
            v = rec
            for part in path:
                v = v.get(part) if type(v) is dict else None
            if v is not None and v != "" and v != "-":
                principal = v if type(v) is str else self._principal_of(v, what)
                break
        keys = [headers.get(h) for h in self._key_headers] if principal is None else ()
        consumer, route, service = rec.get("consumer"), rec.get("route"), rec.get("service")
        if type(consumer) is not dict:
            consumer = _EMPTY
        if type(route) is not dict:
            route = _EMPTY
        if type(service) is not dict:
            service = _EMPTY
        return self._finish(
            ts, principal, keys, rec.get("ai"), headers.get(self._model_header) if self._model_header else None,
            request.get("method"), request.get("uri"), request.get("size"), headers.get("user-agent"),
            response.get("status"), response.get("size"),
            latencies.get("request"), latencies.get("kong"), latencies.get("proxy"),
            consumer.get("id"), route.get("name"), route.get("id"), service.get("name"), service.get("id"),
            rec.get("client_ip"), rec.get("upstream_status"), False)

    def _principal_of(self, v: Any, what: str) -> str | None:
        """A principal path's value that is not text (a number; anything else raises)."""
        return self.principal(opt_str(v, what), secret=False)

    def _finish(self, ts: int, principal: str | None, keys, ai, model_header, method, uri, size_in, ua,
                status, size_out, lat, kong, proxy, consumer_id, route_name, route_id, service_name,
                service_id, ip, upstream, typed: bool) -> dict:
        """One entry's raw values to its event; shared by both paths, so they cannot drift.

        ``principal``: from the principal paths (the first value that is not None, "" or "-";
        text is taken as it is, which is what principal(opt_str(v), secret=False) gives).
        ``keys``: the key headers' values, read only when there is no principal. ``typed``:
        the values come from the fast path's Structs, whose types msgspec has checked (text
        is str or None, counts and the status ints in range, latencies floats, headers str or
        list of str, ai objects _AIPlugin), so the coercions that could only fail or change
        other types are skipped.
        """
        if principal is None and keys:
            for v, h in zip(keys, self._key_headers):
                if type(v) is list:
                    v = v[0] if v else None
                v = opt_str(v, h)
                if v is not None and v != "REDACTED":
                    principal = self._hashes.get(v)
                    if principal is None:
                        if len(self._hashes) >= _MAX_CACHE:
                            self._hashes.clear()
                        principal = self._hashes[v] = self.principal(v, secret=True)
                    break

        model = tokens_in = tokens_out = provider = None
        if ai is not None:
            meta, usage = _ai_parts_fast(ai) if typed else _ai_parts(ai)
            if meta is not None:
                model = opt_str(meta[0], "ai.meta.request_model") or opt_str(meta[1], "ai.meta.response_model")
                provider = opt_str(meta[2], "ai.meta.provider_name")
            if usage is not None:
                tokens_in = opt_count(usage[0], "ai.usage.prompt_tokens")
                tokens_out = opt_count(usage[1], "ai.usage.completion_tokens")
        if model is None and model_header is not None:
            if type(model_header) is list:
                model_header = model_header[0] if model_header else None
            if type(model_header) is str:
                model = model_header if model_header and model_header != "-" else None
            else:
                model = opt_str(model_header, self._model_header)

        if type(ua) is list:
            ua = ua[0] if ua else None
        route = route_name or route_id
        if type(route) is not str or not route:
            route = None
        service = service_name or service_id
        if type(service) is not str or not service:
            service = None
        if typed:
            # Text is str or None, counts and the status ints in range, latencies floats.
            if uri is not None:
                if not uri or uri == "-":
                    uri = None
                elif "?" in uri:
                    uri = self.hasher.scrub_path(uri)
            # Copying a template and setting its values is about twice as fast as a literal.
            d = _TEMPLATE.copy()
            d["ts"] = ts
            d["principal"] = principal
            d["src_ip"] = ip if ip and ip != "-" else None
            d["model"] = model
            d["path"] = uri
            d["status"] = status
            d["latency_ms"] = lat if lat is None or lat >= 0 else None
            d["tokens_in"] = tokens_in
            d["tokens_out"] = tokens_out
            d["method"] = method if method and method != "-" else None
            d["bytes_in"] = size_in
            d["bytes_out"] = size_out
            d["kong_ms"] = kong if kong is None or kong >= 0 else None
            d["proxy_ms"] = proxy if proxy is None or proxy >= 0 else None
            d["user_agent"] = ua if ua and ua != "-" else None
            d["route"] = route
            d["service"] = service
            d["consumer_id"] = consumer_id if consumer_id and consumer_id != "-" else None
            d["upstream_status"] = upstream if upstream and upstream != "-" else None
            d["provider"] = provider
            return d

        uri = opt_str(uri, "request.uri")
        if type(status) is not int or not 0 <= status <= 999:
            status = check_status(as_int(status, "response.status"))
        # The coercions in the order of the fields, so that of several bad values the first
        # one is reported, as before.
        return {
            "kind": "request",
            "ts": ts,
            "source": "kong",
            "principal": principal,
            "src_ip": opt_str(ip, "client_ip"),
            "model": model,
            "path": self.hasher.scrub_path(uri) if uri is not None else None,
            "status": status,
            "latency_ms": _latency(lat, "latencies.request"),
            "tokens_in": tokens_in,
            "tokens_out": tokens_out,
            "method": opt_str(method, "request.method"),
            "bytes_in": opt_count(size_in, "request.size"),
            "bytes_out": opt_count(size_out, "response.size"),
            "kong_ms": _latency(kong, "latencies.kong"),
            "proxy_ms": _latency(proxy, "latencies.proxy"),
            "user_agent": opt_str(ua, "user-agent"),
            "route": route,
            "service": service,
            "consumer_id": opt_str(consumer_id, "consumer.id"),
            "upstream_status": opt_str(upstream, "upstream_status"),
            "provider": provider,
        }
