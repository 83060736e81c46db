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
"""

from __future__ import annotations

from typing import Any

import orjson
from pydantic import Field

from ramparts.errors import ParseError
from ramparts.timeutil import from_epoch

from .base import Parser, as_float, as_int, describe
from .envoy_json import check_status, opt_count, opt_str

# Plugin keys of the ai section, most specific first: "proxy" in current Kong,
# "ai-proxy"/"ai-proxy-advanced" in the 3.6-3.8 audit log format.
_AI_PLUGINS = ("proxy", "ai-proxy", "ai-proxy-advanced")


def _header(headers: dict, name: str) -> Any:
    v = headers.get(name)
    if isinstance(v, list):
        v = v[0] if v else None
    return v


def _name_or_id(obj: Any) -> str | None:
    if not isinstance(obj, dict):
        return None
    v = obj.get("name") or obj.get("id")
    return v if isinstance(v, str) and v else None


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


def _latency(v: Any, what: str) -> float | None:
    # Kong logs -1 for a phase that did not happen (latencies.proxy of a request an auth
    # plugin rejected before any upstream was tried).
    f = float(v) if type(v) is int else as_float(v, what)
    return f if f is None or f >= 0 else None


_EMPTY: dict = {}


def _obj(v: Any, what: str) -> dict:
    if type(v) is dict:
        return v
    if v is None:
        return _EMPTY
    raise ParseError(f"{what}: expected a JSON object, got {type(v).__name__}")


def _looks_like_entry(doc: Any) -> bool:
    return (isinstance(doc, dict) and isinstance(doc.get("latencies"), dict) and "started_at" in doc
            and ("client_ip" in doc or isinstance(doc.get("request"), dict)))


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
        self._key_headers = tuple(h.lower() for h in o.key_headers)
        self._model_header = o.model_header.lower() if o.model_header else None

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
        doc = orjson.loads(raw)
        if type(doc) is dict:
            return self._event(doc)
        if type(doc) is not list:
            raise ParseError(f"expected a Kong log entry (JSON object) or a batch (array), got a JSON {type(doc).__name__}")
        if not doc:
            return None
        out = []
        for i, item in enumerate(doc):
            try:
                if type(item) is not dict:
                    raise ParseError(f"batch item is a JSON {type(item).__name__}, not an object")
                out.append(self._event(item))
            except Exception as e:  # one bad entry must not cost the rest of the batch
                self.reject(orjson.dumps(item), describe(e), item=i)
        return out

    def _event(self, rec: dict) -> dict:
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
        for path in self._principal_paths:
            v = rec
            for part in path:
                v = v.get(part) if type(v) is dict else None
            if v is not None and v != "":
                principal = self.principal(opt_str(v, ".".join(path)), secret=False)
                if principal is not None:
                    break
        if principal is None:
            for h in self._key_headers:
                v = opt_str(_header(headers, h), h)
                if v is not None and v != "REDACTED":
                    principal = self.principal(v, secret=True)
                    break

        model = None
        tokens_in = tokens_out = None
        provider = None
        ai = rec.get("ai")
        if ai is not None:
            ai = _ai_plugin(ai)
        if ai is not None:
            meta = ai.get("meta")
            if isinstance(meta, dict):
                model = opt_str(meta.get("request_model"), "ai.meta.request_model") or \
                    opt_str(meta.get("response_model"), "ai.meta.response_model")
                provider = opt_str(meta.get("provider_name"), "ai.meta.provider_name")
            usage = ai.get("usage")
            if isinstance(usage, dict):
                pt = usage.get("prompt_tokens", usage.get("prompt_token"))
                ct = usage.get("completion_tokens", usage.get("completion_token"))
                tokens_in = opt_count(pt, "ai.usage.prompt_tokens")
                tokens_out = opt_count(ct, "ai.usage.completion_tokens")
        if model is None and self._model_header:
            model = opt_str(_header(headers, self._model_header), self._model_header)

        uri = opt_str(request.get("uri"), "request.uri")
        status = response.get("status")
        if type(status) is not int or not 0 <= status <= 999:
            status = check_status(as_int(status, "response.status"))
        consumer = rec.get("consumer")
        return {
            "kind": "request",
            "ts": ts,
            "source": "kong",
            "principal": principal,
            "src_ip": opt_str(rec.get("client_ip"), "client_ip"),
            "model": model,
            "path": self.hasher.scrub_path(uri) if uri is not None else None,
            "status": status,
            "latency_ms": _latency(latencies.get("request"), "latencies.request"),
            "tokens_in": tokens_in,
            "tokens_out": tokens_out,
            "method": opt_str(request.get("method"), "request.method"),
            "bytes_in": opt_count(request.get("size"), "request.size"),
            "bytes_out": opt_count(response.get("size"), "response.size"),
            "kong_ms": _latency(latencies.get("kong"), "latencies.kong"),
            "proxy_ms": _latency(latencies.get("proxy"), "latencies.proxy"),
            "user_agent": opt_str(_header(headers, "user-agent"), "user-agent"),
            "route": _name_or_id(rec.get("route")),
            "service": _name_or_id(rec.get("service")),
            "consumer_id": opt_str(consumer.get("id"), "consumer.id") if type(consumer) is dict else None,
            "upstream_status": opt_str(rec.get("upstream_status"), "upstream_status"),
            "provider": provider,
        }
