"""KServe payload logging: CloudEvents of inference requests and responses, joined on ``id``.

KServe's logger (``spec.predictor.logger``, ``pkg/logger`` upstream) sends every request body
and every 200 response body as a CloudEvent of type ``org.kubeflow.serving.inference.request``
/ ``.response``. The two share the CloudEvent ``id`` (the client's ``Ce-Id`` header if it sent
one, else a fresh UUID), and this parser joins them into ONE ``prediction`` event. One JSON
object per line, in either spelling:

* structured mode: ``{"specversion", "id", "type", "source", "time", "data" | "data_base64",
  <extension attributes>...}``;
* a binary-mode dump (what an HTTP sink records): the CloudEvent attributes as ``ce-id`` /
  ``Ce-Id`` / ``ce_type`` keys, either at the top level or under a ``headers`` object, and
  the body under ``body`` or ``data``. Header values may be lists (Go's ``http.Header``);
* a JSON array of structured events on one line (CloudEvents batch mode); a bad item is
  dead-lettered alone.

Bodies: v1 ``{"instances": [...]}`` -> ``{"predictions": [...]}`` (the TF-style columnar
``{"inputs": ...}`` / ``{"outputs": ...}`` is read the same way); v2 / Open Inference
Protocol ``{"inputs": [{"name","shape","datatype","data"}]}`` ->
``{"model_name","model_version","id","outputs": [...]}``. ``input``/``output`` are the list
of instances/predictions (v1), or the tensor data (v2): a flat ``data`` is reshaped by its
``shape`` into nested lists (so a ``[2, 4]`` FP32 input becomes two rows of four, the same
shape a v1 client would send); with several tensors, ``input`` is the list of the reshaped
arrays in tensor order and ``input_names`` says which is which. A ``data`` whose length does
not match its ``shape`` is kept flat (counted as ``tensor_shape_mismatch``). A body that is
not JSON (binary tensors, images) leaves ``input``/``output`` None (``opaque_bodies``).

Model: the v2 response's ``model_name`` (the model actually served, also right for
multi-model servers), else the ``inferenceservicename`` extension KServe sets, else the first
DNS label of ``source`` minus KServe's ``-predictor[-default]`` suffix (recent KServe sets
``source`` to ``http://localhost:9081/``, which is ignored). Version: the v2
``model_version``, else the ``endpoint`` extension (``default`` / ``canary``: the only version
hint a v1 payload carries).

Principal and source IP: the CloudEvent attribute named by ``Options.principal_attribute``
(default ``principal``), then ``Options.principal_fallbacks`` in order. Each name is looked up
among the CloudEvent attributes, then in KServe's ``metadata`` extension (a JSON-encoded
``{"Header-Name": ["value"]}`` of the request headers listed in the logger's
``metadataHeaders``), then among the plain HTTP headers of a binary-mode dump, case-insensitively.
Values of ``Options.secret_attributes`` (``authorization``, ``x-api-key``...), and any value
that looks like a bearer token or an ``sk-`` key, are replaced by their keyed hash.
``src_ip`` likewise (``x-forwarded-for`` keeps its first hop).

Join: KServe's logger sends from a pool of workers, so a response can arrive before its
request: whichever half comes first waits in a bounded map (``Options.max_pending``, default
``DEFAULT_MAX_PENDING``; the oldest is flushed unjoined when full). Unmatched requests are
emitted at the end with ``output`` None (``unjoined_requests``), unmatched responses with
``input`` None (``orphan_responses``). A second half of the same kind under an id already
waiting (clients may reuse ``Ce-Id``) flushes the first one (``duplicate_ids``). CloudEvents of
other types are skipped (``other_event_types``).

``ts`` is the request's ``time`` (RFC 3339; the response's when there is no request).

Extra fields: ``request_id`` (the CloudEvent id), ``inference_service``, ``namespace``,
``component``, ``endpoint``, ``protocol`` (``v1`` / ``v2``), ``input_names`` /
``output_names`` (v2 tensor names), ``latency_ms`` (response time minus request time, as
the logger stamped each event when it sent it: an approximation of the model's latency;
None unless joined, or when the response was stamped first).

Speed: a structured-mode line is first decoded with msgspec into Structs of exactly the
attributes and body keys read (``_compile_fast``; tensors' data straight to lists of scalars),
and the principal and source address are remembered per ``metadata`` text. Before that plain
decoder, the learned one (:class:`_Learned`) is tried: the same Structs with the text fields of few
values (event type, spec version, content type, source, the service's attributes, the body's model
name and version, the tensors' names and datatypes) read as Literals of the values seen, and the
principal and address attributes not read until a line had one; a line it does not take goes to
the plain decoder, which teaches it (tests/parsers/test_kserve_learned.py). Anything those
types do not fit (another key, a value of another type, a binary-mode dump, a batch, an
integer orjson would read differently, bad JSON) goes to the general path, orjson and dicts,
which decides; tests/parsers/test_kserve_fastpath.py checks that both give the same events,
dead letters and counts. ``_parse_rows`` runs the fast path's decode and the join inline (no call
per line to ``_fast_half_of`` and ``_pair``, which ``parse_record`` still uses), a time in
KServe's spelling (``...T00:00:00.035923Z``) is read through parse_iso's cache of seconds without
a call (and, in the second of the last one read, without a look-up: ``startswith``), and the
service's attributes (``inferenceservicename``, ``namespace``, ``component``, ``endpoint``) with the
model a ``source`` names are remembered per their texts (one look-up per line, and one str per
distinct value kept by the events: fewer objects to free); tests/parsers/test_kserve_loop.py
holds that loop to a frozen copy of the one before it (e1d5517).

Columns: ``parse_batch`` (what files and replay read) makes no dict per prediction. The join
gives each prediction as a row, a tuple in ``FIELDS`` order (``STAMPED_FIELDS``, with the
stamped ``id`` last, when ``stamp_ids``); the chunk's rows are turned into one
:class:`~ramparts.events.Columns` at its end (``input`` and ``output`` stay the lists they were
decoded to; the ids, ``<origin>:<line>.0`` unless a line made several predictions, are kept as their
line numbers and made when first read, a lazy field of the Columns). ``parse_chunk`` (the worker's
raw stage) and ``parse_record`` make the dicts from the same rows, so both give the same events,
ids, dead letters and counts (checked in tests/parsers/test_kserve_fastpath.py over chunks the join
spans). The flush (``finish``) gives
dicts: it runs once per input. The lists of tensor names are shared by the events that name the
same tensors (two tracked lists fewer per prediction for the garbage collector; events are not
changed once made).
"""

from __future__ import annotations

import base64
import binascii
from functools import lru_cache
from operator import attrgetter
from typing import Annotated, Any
from urllib.parse import urlsplit

import msgspec
import orjson
from pydantic import Field

from ramparts.errors import ParseError
from ramparts.events import EventBatch, LineIds
from ramparts.timeutil import _UTC_SECONDS, parse_iso

from .base import (DEFAULT_MAX_PENDING, DeadLetter, Parser, as_object, as_str, describe, is_utf8,
                   literal_of, load_json_object, sniff_json_lines)

REQUEST_TYPE = "org.kubeflow.serving.inference.request"
RESPONSE_TYPE = "org.kubeflow.serving.inference.response"
_TYPE_PREFIX = "org.kubeflow.serving.inference."

_BODY_KEYS = ("body", "data", "data_base64", "headers")
# A prediction's fields, in its dict's order (a row of the join is a tuple of these), and with
# the id the streaming pipeline stamps (``stamp_ids``), last as ``Parser.parse_chunk`` adds it.
FIELDS = ("kind", "ts", "source", "principal", "src_ip", "model", "model_version", "input", "output",
          "request_id", "inference_service", "namespace", "component", "endpoint", "protocol", "input_names",
          "output_names", "latency_ms")
STAMPED_FIELDS = FIELDS + ("id",)
_ONE = {"kind": "prediction", "source": "kserve"}  # what every row holds there (parse_batch)
# The types parse_batch vouches for (Columns' ``types``): every time is an int (_fast_half's inline reading,
# parse_iso); the other fields are texts or None, or the tensors' values as read, which no one reads by type.
_TYPES = {"ts": frozenset((int,))}
_NO_ROWS = ()  # a line whose half now waits for its partner
_TOKEN_PREFIXES = ("bearer ", "basic ", "token ")


class KServeParser(Parser):
    name = "kserve"
    kind = "prediction"
    description = "KServe payload logging CloudEvents (v1 and v2 protocol), request and response joined on id"

    class Options(Parser.Options):
        principal_attribute: str = Field(
            default="principal",
            description="CloudEvent attribute (or logged request header) that names the caller.")
        principal_fallbacks: list[str] = Field(
            default=["user", "userid", "x-user", "x-user-id", "x-api-key", "authorization"],
            description="Attributes or headers tried in order when principal_attribute is absent.")
        secret_attributes: list[str] = Field(
            default=["authorization", "proxy-authorization", "x-api-key", "api-key", "apikey"],
            description="Attributes or headers whose value is a credential: hashed, never kept.")
        src_ip_attribute: str = Field(
            default="srcip", description="CloudEvent attribute (or logged header) with the client IP.")
        src_ip_fallbacks: list[str] = Field(
            default=["sourceip", "clientip", "x-forwarded-for", "x-real-ip"],
            description="Attributes or headers tried in order when src_ip_attribute is absent.")
        max_pending: int = Field(
            default=DEFAULT_MAX_PENDING, ge=1,
            description="Most request/response halves kept waiting for their partner.")

    def __init__(self, options=None, hasher=None):
        super().__init__(options, hasher)
        o = self.options
        self._principal_names = tuple(n.lower() for n in (o.principal_attribute, *o.principal_fallbacks))
        self._secret_names = frozenset(n.lower() for n in o.secret_attributes)
        self._ip_names = tuple(n.lower() for n in (o.src_ip_attribute, *o.src_ip_fallbacks))
        self._max_pending = o.max_pending
        # The fast path (None: the general path only), and the principal and source address
        # per metadata text (and per principal/address attributes, for lines that carry some).
        self._fast, self._fast_attrs, self._attr_names = _compile_fast(
            dict.fromkeys(self._principal_names + self._ip_names))
        self._no_attrs = (None,) * len(self._attr_names)
        # The fast path's first try: the same Structs with the text fields of few values read as Literals of the
        # values seen (_Learned); None until it is built, and never without the fast path.
        self._learned = _Learned(self._attr_names) if self._fast is not None else None
        self._idents: dict[Any, tuple[str | None, str | None]] = {}
        self._names: dict[Any, list] = {}  # tensor name(s) -> the list of them events share
        # (source, inferenceservicename, namespace, component, endpoint) texts -> _context of them
        self._contexts: dict[tuple, tuple] = {}
        # The last second of a time read (_fast_half): at first 28 characters, the prefix of no 27-character time.
        self._last_head, self._last_base = "\0" * 28, 0
        # id -> half: whichever half of a pair came first, oldest first (a plain
        # dict keeps insertion order, and a popped id put back goes to the end).
        self._pending: dict[str, tuple] = {}

    # -- detection ----------------------------------------------------------------------
    @classmethod
    def sniff(cls, head: bytes, lines: list[bytes]) -> bool:
        if _TYPE_PREFIX.encode() not in head:
            return False

        def accepts(doc: dict) -> bool:
            attrs, _headers = _split_envelope(doc)
            t = _first(attrs.get("type")) if attrs else None
            return isinstance(t, str) and t.startswith(_TYPE_PREFIX)

        return sniff_json_lines(lines, accepts, first_of_array=True)

    # -- parsing ------------------------------------------------------------------------
    def parse_batch(self, records: list[bytes], origin: str, first_line: int,
                    dead: list[DeadLetter]) -> EventBatch:
        """The chunk's predictions as one :class:`~ramparts.events.Columns` part: a row tuple per
        prediction, turned into columns at the end; no dict is made for any of them."""
        rows, ids, ks = self._parse_rows(records, origin, first_line, dead)
        if not rows:
            return EventBatch()
        cols = dict(zip(FIELDS, map(list, zip(*rows))))
        # Every row is ("prediction", ts, "kserve", ...) (_parse_rows): the batch's indices take kind and
        # source so, without reading their columns.
        if ids is None:
            return EventBatch.from_columns(FIELDS, cols, len(rows), one=_ONE, types=_TYPES)
        if ks:
            cols["id"] = _ids(origin, ids, ks)
            return EventBatch.from_columns(STAMPED_FIELDS, cols, len(rows), one=_ONE, types=_TYPES)
        # Every id "<origin>:<line>.0": made when first read (a lazy field of the Columns; replay reads few).
        return EventBatch.from_columns(STAMPED_FIELDS, cols, len(rows), {"id": (LineIds(origin, ".0"), ids)},
                                      one=_ONE, types=_TYPES)

    def parse_chunk(self, records: list[bytes], origin: str, first_line: int,
                    events: list[dict], dead: list[DeadLetter]) -> None:
        """:meth:`parse_batch`'s predictions as dicts (what the worker's raw stage reads)."""
        rows, ids, ks = self._parse_rows(records, origin, first_line, dead)
        if ids is None:
            events.extend([dict(zip(FIELDS, r)) for r in rows])
        else:
            events.extend([dict(zip(STAMPED_FIELDS, (*r, i))) for r, i in zip(rows, _ids(origin, ids, ks))])

    def _parse_rows(self, records: list[bytes], origin: str, first_line: int,
                    dead: list[DeadLetter]) -> tuple[list[tuple], list[int] | None, dict[int, int]]:
        """The loop of :meth:`Parser.parse_chunk`, over rows (tuples in ``FIELDS`` order) instead of
        dicts: (the rows, in record order; when ``stamp_ids`` the line of each, else None; the rows
        whose ``k`` is not 0, with it). Every record is parsed, skipped or dead-lettered and counted as
        there; ids are ``<origin>:<line>.<k>`` (:func:`_ids`), ``k`` the row's place among its line's."""
        self._origin = origin
        self._dead = dead
        stats = self.stats
        fast = self._fast
        fast_attrs = self._fast_attrs
        fast_half = self._fast_half
        learned = self._learned
        lean = lean_attrs = None
        if learned is not None:
            lean, lean_attrs = learned.decode, learned.attrs
        general = self._general_rows
        pending = self._pending
        max_pending = self._max_pending
        join = self._join
        rows: list[tuple] = []
        append = rows.append
        ids: list[int] | None = [] if self.stamp_ids else None
        ks: dict[int, int] = {}  # position in rows -> k, where k is not 0
        line = first_line - 1
        parsed = skipped = 0
        for raw in records:
            line += 1
            # The fast path (``_fast_half_of``, inline): msgspec may not check the UTF-8 of every
            # byte it reads past, orjson does, so a line that is not UTF-8 goes to the general path.
            # First the learned decoder (its Literals' strs, no attributes to read unless lines had some);
            # a line it does not take goes to the plain one, whose values are learned.
            half = None
            if fast is not None and (raw.isascii() or is_utf8(raw)):
                try:
                    d = lean(raw)
                except Exception:  # a value not learned yet, or a line the plain decoder decides
                    try:
                        d = fast(raw)
                    except Exception:  # not this shape, a type the Structs do not take, bad JSON
                        pass  # (a blank line too: msgspec reads no JSON there)
                    else:
                        if learned.learn(d):
                            lean, lean_attrs = learned.decode, learned.attrs
                        try:
                            half = fast_half(d, fast_attrs(d))
                        except Exception:  # data the fast path leaves to the general path
                            pass
                else:
                    try:
                        half = fast_half(d, None if lean_attrs is None else lean_attrs(d))
                    except Exception:  # data the fast path leaves to the general path
                        pass
            if half is not None:
                parsed += 1
                # The join (``_pair``, its common cases inline): a half whose partner is waiting
                # makes the prediction; one that comes first waits, unless the map is full.
                ce_id = half[1]
                other = pending.pop(ce_id, None)
                if other is None:
                    pending[ce_id] = half
                    if len(pending) <= max_pending:
                        continue
                    self.note("pending_evicted")
                    row = self._alone(pending.pop(next(iter(pending))))
                elif other[14] == half[14]:
                    self.note("duplicate_ids")
                    pending[ce_id] = half
                    row = self._alone(other)
                elif half[14]:
                    row = join(half, other)
                else:
                    row = join(other, half)
                append(row)
                if ids is not None:
                    ids.append(line)
                continue
            self._line = line
            if not raw or raw.isspace():
                skipped += 1
                continue
            try:
                out = general(raw)
            except Exception as e:  # any failure of one record is that record's problem
                self.record_failed(dead, origin, line, e, raw)
                continue
            if out is None:
                skipped += 1
                continue
            parsed += 1
            if out:
                if ids is not None:
                    ids.extend([line] * len(out))
                    for k in range(1, len(out)):
                        ks[len(rows) + k] = k
                rows.extend(out)
        self._line = line
        stats.parsed += parsed
        stats.skipped += skipped
        stats.records += len(records)
        stats.events += len(rows)
        return rows, ids, ks

    def parse_record(self, raw: bytes) -> list[dict] | None:
        rows = self._record_rows(raw)
        return None if rows is None else [dict(zip(FIELDS, r)) for r in rows]

    def _record_rows(self, raw: bytes) -> list[tuple] | tuple | None:
        """One line's predictions as rows (an empty sequence: a half now waits), None if not data."""
        half = self._fast_half_of(raw)
        if half is not None:
            row = self._pair(half)
            return _NO_ROWS if row is None else (row,)
        return self._general_rows(raw)

    def _fast_half_of(self, raw: bytes) -> tuple | None:
        """The line's half by the fast path, or None for the general path to decide."""
        fast = self._fast
        # msgspec may not check the UTF-8 of every byte it reads past, orjson does: a line that
        # is not UTF-8 is left to the general path (which dead-letters it).
        if fast is not None and (raw.isascii() or is_utf8(raw)):
            learned = self._learned
            try:
                d = learned.decode(raw)
                attrs = None if learned.attrs is None else learned.attrs(d)
            except Exception:  # not learned yet: the plain decoder, and its values learned
                try:
                    d = fast(raw)
                except Exception:  # not this shape, a type the Structs do not take, bad JSON
                    return None
                learned.learn(d)
                attrs = self._fast_attrs(d)
            try:
                return self._fast_half(d, attrs)
            except Exception:  # data the fast path leaves to the general path
                return None
        return None

    def _general_rows(self, raw: bytes) -> list[tuple] | tuple | None:
        """The general path (orjson and dicts) of one line."""
        if raw.lstrip()[:1] == b"[":
            # CloudEvents batch mode (application/cloudevents-batch+json): one array per line.
            docs = orjson.loads(raw)
            out: list[tuple] = []
            for i, doc in enumerate(docs):
                try:
                    got = self._one(as_object(doc, f"batch item {i}"))
                except Exception as e:  # one bad event must not lose the rest of the batch
                    self.reject(orjson.dumps(doc), describe(e), item=i)
                    continue
                if got:
                    out.extend(got)
            return out
        return self._one(load_json_object(raw))

    def _one(self, doc: dict) -> tuple | None:
        attrs, headers = _split_envelope(doc)
        if attrs is None:
            raise ParseError("not a CloudEvent: no specversion/type/id and no ce-* attributes")
        ce_type = _first(attrs.get("type"))
        if not isinstance(ce_type, str):
            raise ParseError("CloudEvent without a type")
        if ce_type == REQUEST_TYPE:
            is_request = True
        elif ce_type == RESPONSE_TYPE:
            is_request = False
        else:
            self.note("other_event_types")
            return None
        ce_id = _first(attrs.get("id"))
        if isinstance(ce_id, int) and not isinstance(ce_id, bool):
            ce_id = str(ce_id)
        if ce_id is None or ce_id == "":
            raise ParseError("CloudEvent without an id: cannot join request and response")
        if not isinstance(ce_id, str):
            raise ParseError(f"id: expected text, got {type(ce_id).__name__}")
        t = _first(attrs.get("time"))
        if not isinstance(t, str):
            raise ParseError("CloudEvent without a time" if t is None
                             else f"time: expected RFC 3339 text, got {type(t).__name__}")
        row = self._pair(self._half(doc, attrs, headers, parse_iso(t), ce_id, is_request))
        return _NO_ROWS if row is None else (row,)

    def _pair(self, half: tuple) -> tuple | None:
        """One half into the join: the prediction's row if its partner was waiting, else it waits
        (and None, unless it pushed out another half: that one's row)."""
        ce_id = half[1]
        pending = self._pending
        other = pending.pop(ce_id, None)
        if other is None:
            pending[ce_id] = half
            if len(pending) > self._max_pending:
                self.note("pending_evicted")
                return self._alone(pending.pop(next(iter(pending))))
            return None
        is_request = half[14]
        if other[14] == is_request:
            self.note("duplicate_ids")
            pending[ce_id] = half
            return self._alone(other)
        if is_request:
            return self._join(half, other)
        return self._join(other, half)

    def holds_state(self) -> bool:
        return bool(self._pending)

    def finish(self) -> list[dict]:
        out = [dict(zip(FIELDS, self._alone(half))) for half in self._pending.values()]
        self._pending.clear()
        return out

    def _fast_half(self, d: Any, attrs: tuple | None) -> tuple | None:
        """A line decoded by the fast path (``_compile_fast``, or :class:`_Learned`'s decoder) to its half, as
        ``_one`` and ``_half`` would give it; None for the general path to decide (other event types, bodies it
        would note or reject). ``attrs``: the principal and address attributes' values, None for a struct
        without them (the learned decoder before any line had one). Nothing is noted here, so a fallback
        counts nothing twice."""
        t = d.type
        if t == REQUEST_TYPE:
            is_request = True
        elif t == RESPONSE_TYPE:
            is_request = False
        else:
            return None
        ce_id = d.id
        if not ce_id:
            return None
        # parse_iso's common spelling inline (KServe stamps 'YYYY-MM-DDTHH:MM:SS.ffffffZ'): its
        # cache of seconds read, and the microseconds; anything else is parse_iso's to read.
        # The second of the last such time is kept: a time in that second is read with no slice of it
        # looked up (times come in runs of one second).
        t = d.time
        if t.startswith(self._last_head) and len(t) == 27 and t[26] == "Z" and t[19] == ".":
            frac = t[20:26]
            ts = self._last_base + int(frac) * 1000 if frac.isdigit() else parse_iso(t)
        else:
            head = t[:19]
            base = _UTC_SECONDS.get(head)
            if base is not None and len(t) == 27 and t[26] == "Z" and t[10] == "T" and t[19] == ".":
                self._last_head, self._last_base = head, base
                frac = t[20:26]
                ts = base + int(frac) * 1000 if frac.isdigit() else parse_iso(t)
            else:
                ts = parse_iso(t)

        meta = d.metadata
        if attrs is None or attrs == self._no_attrs:  # the common case: who and where come from the metadata alone
            ident = self._idents.get(meta)
            if ident is None:
                ident = self._ident(meta, _NO_HEADERS)
        else:
            key = (meta, attrs)
            ident = self._idents.get(key)
            if ident is None:
                ident = self._ident(key, {k: v for k, v in zip(self._attr_names, attrs) if v is not None})

        body = d.data
        if body is None:
            values = protocol = names = model_name = model_version = None
        else:
            model_name = body.model_name or None
            model_version = body.model_version or None
            if is_request:
                v1, v2 = body.instances, body.inputs
            else:
                v1, v2 = body.predictions, body.outputs
            names = None
            if v1 is not _UNSET:
                values, protocol = v1, "v1"
            elif v2 is not _UNSET:
                if not v2:
                    values, protocol = v2, "v1"  # an empty list: the general path's TF-style reading
                else:
                    protocol = "v2"
                    if len(v2) == 1:
                        t0 = v2[0]
                        values = t0.data
                        shape = t0.shape
                        if shape is not None and len(shape) > 1:
                            # One row of the whole length (a single instance): [data], else reshaped.
                            if (len(shape) == 2 and shape[0] == 1 and shape[1] == len(values) and values
                                    and type(values[0]) is not list):
                                values = [values]
                            else:
                                values = _fast_tensor(t0)
                        names = self._names.get(t0.name)
                        if names is None:
                            names = self._shared_names((t0.name,))
                    else:
                        values = [_fast_tensor(x) for x in v2]
                        names = self._shared_names(tuple([x.name for x in v2]))
            elif model_name is not None or body.id is not _UNSET:
                values, protocol = None, "v2"
            else:
                return None  # unknown_bodies: noted by the general path
        # The service's attributes and the model its source names, remembered per their texts: one str
        # per distinct value kept by the events (fewer objects to free), one lookup per line.
        key = (d.source, d.inferenceservicename, d.namespace, d.component, d.endpoint)
        ctx = self._contexts.get(key)
        if ctx is None:
            ctx = self._context(key)
        return (ts, ce_id, ident[0], ident[1], values, protocol, names, model_name, model_version,
                ctx[0], ctx[1], ctx[2], ctx[3], ctx[4], is_request)

    def _context(self, key: tuple) -> tuple:
        """(inference service, namespace, component, endpoint, the model named by the source) of a
        line's (source, inferenceservicename, namespace, component, endpoint), remembered."""
        source, isvc, namespace, component, endpoint = key
        ctx = (isvc or None, namespace or None, component or None, endpoint or None,
               _model_from_source(source) if source else None)
        if len(self._contexts) >= _MAX_IDENTS:
            self._contexts.clear()
        self._contexts[key] = ctx
        return ctx

    def _shared_names(self, key: tuple) -> list:
        """The list of tensor names ``key``, one list shared by every event that names the same
        tensors (events are not changed once made): two lists fewer per prediction for the
        garbage collector to walk. Remembered per name (one tensor) or per tuple of names."""
        names = self._names.get(key if len(key) > 1 else key[0])
        if names is None:
            if len(self._names) >= _MAX_IDENTS:
                self._names.clear()
            names = self._names[key if len(key) > 1 else key[0]] = list(key)
        return names

    def _ident(self, key: str | None | tuple, attrs: dict) -> tuple[str | None, str | None]:
        """(principal, src_ip) of a line with these principal/address attributes and metadata
        text; remembered per metadata text (``key``), or per (metadata text, attribute values)
        when the line has such attributes."""
        logged = _logged_headers(key[0] if type(key) is tuple else key, None)
        ident = (self._find_principal(attrs, logged), self._find_ip(attrs, logged))
        if len(self._idents) >= _MAX_IDENTS:
            self._idents.clear()
        self._idents[key] = ident
        return ident

    # -- halves -------------------------------------------------------------------------
    def _half(self, doc: dict, attrs: dict, headers: dict | None, ts: int, ce_id: str, is_request: bool) -> tuple:
        """One request or response as the tuple the join reads: (ts, id, principal, src_ip, values,
        protocol, tensor names, v2 model_name, v2 model_version, inference service, namespace,
        component, endpoint, the model named by the source, is_request)."""
        body = self._body(doc, attrs)
        values, protocol, names, model_name, model_version = _payload(self, body, is_request)
        logged = _logged_headers(attrs.get("metadata"), headers)
        return (ts, ce_id, self._find_principal(attrs, logged), self._find_ip(attrs, logged), values, protocol,
                names, model_name, model_version, _attr_text(attrs, "inferenceservicename"),
                _attr_text(attrs, "namespace"), _attr_text(attrs, "component"), _attr_text(attrs, "endpoint"),
                _model_from_source(_attr_text(attrs, "source")), is_request)

    def _body(self, doc: dict, attrs: dict) -> Any:
        if attrs is doc:  # structured mode
            if "data_base64" in doc and doc.get("data") is None:
                return self._decode_bytes(doc["data_base64"])
            data = doc.get("data")
        else:
            data = doc.get("body", doc.get("data"))
            if data is None and "data_base64" in doc:
                return self._decode_bytes(doc["data_base64"])
        if isinstance(data, str):
            s = data.lstrip()
            if s[:1] in ("{", "["):
                try:
                    return orjson.loads(s)
                except orjson.JSONDecodeError:
                    pass
            self.note("opaque_bodies")
            return None
        return data

    def _decode_bytes(self, b64: Any) -> Any:
        if not isinstance(b64, str):
            raise ParseError(f"data_base64: expected text, got {type(b64).__name__}")
        try:
            raw = base64.b64decode(b64, validate=True)
        except (binascii.Error, ValueError):
            raise ParseError("data_base64 is not valid base64") from None
        try:
            return orjson.loads(raw)
        except orjson.JSONDecodeError:
            self.note("opaque_bodies")
            return None

    # Each of the names is looked up with ``_lookup``. Plain loops: a generator per half cost
    # more than the lookups.
    def _find_principal(self, attrs: dict, logged: dict) -> str | None:
        for name in self._principal_names:
            v = _lookup(name, attrs, logged, "text")
            if v is None:
                continue
            v = v.strip()
            if v and v != "-":
                return self.principal(v, secret=name in self._secret_names or _looks_secret(v))
        return None

    def _find_ip(self, attrs: dict, logged: dict) -> str | None:
        for name in self._ip_names:
            v = _lookup(name, attrs, logged, "an IP address as text")
            if v is None:
                continue
            # X-Forwarded-For: "client, proxy1, proxy2": the first hop is the client.
            v = v.split(",", 1)[0].strip()
            if v and v != "-":
                return v
        return None

    # -- output -------------------------------------------------------------------------
    def _join(self, req: tuple, resp: tuple) -> tuple:
        """The prediction of a request and its response, as a row in ``FIELDS`` order: each field
        from the request half, else from the response half."""
        (ts, ce_id, principal, src_ip, values, protocol, names, model_name, model_version, isvc, namespace,
         component, endpoint, source_model, _req) = req
        (r_ts, _id, r_principal, r_src_ip, r_values, r_protocol, r_names, r_model_name, r_model_version, r_isvc,
         r_namespace, r_component, r_endpoint, r_source_model, _resp) = resp
        if isvc is None:
            isvc = r_isvc
        if endpoint is None:
            endpoint = r_endpoint
        return (
            "prediction", ts, "kserve",
            principal if principal is not None else r_principal,
            src_ip if src_ip is not None else r_src_ip,
            r_model_name or (model_name if model_name is not None else r_model_name) or isvc
            or (source_model if source_model is not None else r_source_model),
            r_model_version or (model_version if model_version is not None else r_model_version) or endpoint,
            values, r_values, ce_id, isvc,
            namespace if namespace is not None else r_namespace,
            component if component is not None else r_component,
            endpoint,
            protocol if protocol is not None else r_protocol,
            names, r_names,
            # Both times are stamped when the logger sends each event, from a pool of workers,
            # so a response may be stamped first: no latency can be told then.
            (r_ts - ts) / 1e6 if r_ts >= ts else None,
        )

    def _alone(self, half: tuple) -> tuple:
        """The prediction of a half whose partner never came, as a row in ``FIELDS`` order."""
        (ts, ce_id, principal, src_ip, values, protocol, names, model_name, model_version, isvc, namespace,
         component, endpoint, source_model, is_request) = half
        if is_request:
            self.note("unjoined_requests")
            return ("prediction", ts, "kserve", principal, src_ip, model_name or isvc or source_model,
                    model_version or endpoint, values, None, ce_id, isvc, namespace, component, endpoint,
                    protocol, names, None, None)
        self.note("orphan_responses")
        return ("prediction", ts, "kserve", principal, src_ip, model_name or isvc or source_model,
                model_version or endpoint, None, values, ce_id, isvc, namespace, component, endpoint,
                protocol, None, names, None)


def _ids(origin: str, lines: list[int], ks: dict[int, int]) -> list[str]:
    """The ids ``<origin>:<line>.<k>`` of rows from their lines and their ``k`` where it is not 0.

    >>> _ids("f", [3, 3, 5], {1: 1})
    ['f:3.0', 'f:3.1', 'f:5.0']
    """
    if not ks:
        return LineIds(origin, ".0")(lines)
    return [f"{origin}:{line}.{ks.get(i, 0)}" for i, line in enumerate(lines)]


# -- envelope ---------------------------------------------------------------------------
def _split_envelope(doc: dict) -> tuple[dict | None, dict | None]:
    """(CloudEvent attributes, other HTTP headers) of one record, either spelling."""
    if "specversion" in doc or ("type" in doc and "id" in doc):
        return doc, None
    hdrs = doc.get("headers")
    src = hdrs if isinstance(hdrs, dict) else doc
    attrs: dict = {}
    other: dict = {}
    for k, v in src.items():
        if not isinstance(k, str):
            continue
        kl = k.lower()
        if kl[:3] in ("ce-", "ce_"):
            attrs[kl[3:]] = v
        elif src is hdrs or kl not in _BODY_KEYS:
            other[kl] = v
    if not attrs:
        return None, None
    return attrs, other


_NO_HEADERS: dict = {}


def _logged_headers(meta: Any, headers: dict | None) -> dict:
    """Request headers KServe logged in its ``metadata`` extension, then a dump's plain headers.

    KServe sets ``metadata`` to json.Marshal(map[string][]string) of the headers named in the
    logger's metadataHeaders (canonical Go spelling: ``X-Api-Key``); a dump may hold it decoded.
    Keys are lowercased; CloudEvent attributes are looked up before these.
    """
    if isinstance(meta, str) and meta.startswith("{"):
        try:
            meta = orjson.loads(meta)
        except orjson.JSONDecodeError:
            meta = None
    if not isinstance(meta, dict) or not meta:
        return headers or _NO_HEADERS
    out = {k.lower(): v for k, v in meta.items() if isinstance(k, str)}
    if headers:
        for k, v in headers.items():
            out.setdefault(k, v)
    return out


def _first(v: Any) -> Any:
    if isinstance(v, list):
        return v[0] if v else None
    return v


def _lookup(name: str, attrs: dict, logged: dict, what: str) -> str | None:
    """A principal or IP candidate: ``name`` among the CloudEvent attributes, then the logged
    request headers; a header list gives its first value, a number its text (``what ==
    "text"``); None to skip it, or a ParseError."""
    v = attrs.get(name)
    if v is None:
        v = logged.get(name)
        if v is None:
            return None
    if type(v) is str:
        return v
    if type(v) is list:
        v = v[0] if v else None
        if v is None:
            return None
    if not isinstance(v, str):
        if what == "text" and isinstance(v, (int, float)) and not isinstance(v, bool):
            return str(v)
        raise ParseError(f"{name}: expected {what}, got {type(v).__name__}")
    return v


def _attr_text(attrs: dict, name: str) -> str | None:
    """``_text(_first(attrs.get(name)), name)``, with one call when the value is text."""
    v = attrs.get(name)
    if type(v) is str:
        return v or None
    return _text(_first(v), name)


def _text(v: Any, what: str = "CloudEvent attribute") -> str | None:
    if v is None or v == "":
        return None
    if isinstance(v, str):
        return v
    raise ParseError(f"{what}: expected text, got {type(v).__name__}")


def _looks_secret(v: str) -> bool:
    low = v[:7].lower()
    if low.startswith(_TOKEN_PREFIXES):
        return True
    return v[:3] in ("sk-", "pk-", "rk-") and len(v) >= 19


@lru_cache(maxsize=1024)
def _model_from_source(source: str | None) -> str | None:
    if source is None or "://" not in source:
        return None
    try:
        host = urlsplit(source).hostname
    except ValueError:
        return None
    if not host or host == "localhost" or host.replace(".", "").isdigit() or ":" in host:
        return None
    label = host.split(".", 1)[0]
    for suffix in ("-predictor-default", "-predictor-canary", "-predictor",
                   "-transformer-default", "-transformer", "-explainer-default", "-explainer"):
        if label.endswith(suffix) and len(label) > len(suffix):
            return label[: -len(suffix)]
    return label


# -- the fast path's types --------------------------------------------------------------
# msgspec reads every value into these (unknown keys are refused, so nothing is skipped
# unchecked: msgspec skips e.g. 1e400 where orjson rejects it). Integers are bounded to int64:
# orjson reads wider ones as uint64 or float, msgspec as int, so those take the general path.
# Floats are read to the same value (checked against orjson on 400,000 random spellings).
_UNSET = msgspec.UNSET
_Unset = msgspec.UnsetType
_I64 = Annotated[int, msgspec.Meta(ge=-2**63, le=2**63 - 1)]
_DIM = Annotated[int, msgspec.Meta(ge=0, le=2**63 - 1)]
_SCALAR = _I64 | float | str | bool | None
_VALUES = list[list[_SCALAR] | _SCALAR]  # instances, predictions, tensor data: scalars or rows of them
_PARAMS = dict[str, _SCALAR] | None
_MAX_IDENTS = 4096


class _Tensor(msgspec.Struct, forbid_unknown_fields=True, gc=False):
    data: _VALUES
    name: str | None = None
    shape: list[_DIM] | None = None
    datatype: str | None = None
    parameters: _PARAMS = None


class _Body(msgspec.Struct, forbid_unknown_fields=True, gc=False):
    instances: _VALUES | _Unset = _UNSET
    predictions: _VALUES | _Unset = _UNSET
    inputs: list[_Tensor] | _Unset = _UNSET
    outputs: list[_Tensor] | _Unset = _UNSET
    model_name: str | None = None
    model_version: str | None = None
    id: str | None | _Unset = _UNSET  # a v2 response's id: only whether it is there is read
    parameters: _PARAMS = None


# The structured-mode attributes read (or known to be harmless), besides the principal and
# address attributes of the options. data_base64 is not among them: the general path decodes it.
_FIXED = {
    "id": str, "type": str, "time": str, "specversion": str | None, "datacontenttype": str | None,
    "source": str | None, "inferenceservicename": str | None, "namespace": str | None, "component": str | None,
    "endpoint": str | None, "metadata": str | None, "traceparent": str | None, "tracestate": str | None,
    "data": _Body | None,
}
_RESERVED = frozenset(_FIXED) | {"data_base64", "headers", "body"}


def _compile_fast(attr_names: dict):
    """(decode, getter of the principal/address attributes, their names) of the fast path, or
    (None, None, ()) when an attribute name is one the Struct reads otherwise (general path only)."""
    names = tuple(attr_names)
    if not names or any(n in _RESERVED for n in names):
        return None, None, ()
    fields = [(k, t) if k in ("id", "type", "time") else (k, t, None) for k, t in _FIXED.items()]
    rename = {}
    for i, n in enumerate(names):
        fields.append((f"attr{i}", str | None, None))
        rename[f"attr{i}"] = n
    try:
        struct = msgspec.defstruct("KServeEvent", fields, rename=rename, forbid_unknown_fields=True, gc=False)
        decode = msgspec.json.Decoder(struct).decode
    except (TypeError, ValueError):
        return None, None, ()
    getter = attrgetter(*rename) if len(names) > 1 else (lambda d: (d.attr0,))
    return decode, getter, names


# The text fields of few values that the learned decoder reads as Literals: the CloudEvent's (the event type,
# the spec version, the content type, the source and the service's attributes), the body's model name and
# version, a tensor's name and datatype. Not the id, the time (one per line) or the metadata and the principal
# and address attributes (they may hold a credential, kept nowhere but the parser's cache of who and where).
_LEARNED_TOP = ("type", "specversion", "datacontenttype", "source", "inferenceservicename", "namespace", "component",
                "endpoint")
_LEARNED_BODY = ("model_name", "model_version")
_LEARNED_TENSOR = ("name", "datatype")
_LITERAL_MAX = 1024  # values of one field the learned decoder reads as Literals; past that, plain text


class _Learned:
    """The fast path's Structs with the text fields of few values (``_LEARNED_*``) read as ``Literal`` s of the
    values seen so far, and the principal and address attributes read only once a line had one.

    msgspec hands on the one str it keeps per literal value instead of a new str per line: ten to twelve
    strings per line not made and not freed, their hashes computed once (the parser's memos of the service's
    attributes and tensor names look them up per line; the events keep the model's name and version), and no
    tuple of the attributes to build and compare while no line has any. The values are equal, so the halves
    are the same.

    A line this decoder does not take (a value not seen yet, before it is built, or a line the plain decoder
    would not take either) goes to the plain decoder (``_compile_fast``) and on to the general path as
    before; a line the plain decoder takes teaches its values here. The decoder is rebuilt when enough lines
    missed it for what that costs (as the Envoy parser's ``_Literals``); a field with more than
    ``_LITERAL_MAX`` values is read as plain text from then on. No line fits this decoder that the plain one
    refuses, and every line the plain one takes fits it once its values are learned.
    """

    __slots__ = ("attr_names", "known", "with_attrs", "decode", "attrs", "missed", "learned")

    def __init__(self, attr_names: tuple[str, ...]):
        self.attr_names = attr_names
        # field -> its values seen, or None once read as plain text
        self.known: dict[str, set | None] = {f: set() for f in _LEARNED_TOP + _LEARNED_BODY + _LEARNED_TENSOR}
        self.with_attrs = False  # whether the structs read the principal and address attributes
        self.decode: Any = None  # built after the first lines
        self.attrs: Any = None  # the getter of those attributes (with_attrs), else None
        self.missed = 0  # lines the plain decoder read since the decoder was built
        self.learned = 0  # values learned since then

    def learn(self, d: Any) -> bool:
        """The values of ``d`` (a struct of the plain decoder); True when the decoder was rebuilt."""
        known = self.known
        before = self.learned
        for f in _LEARNED_TOP:
            self._add(f, getattr(d, f))
        body = d.data
        if body is not None:
            self._add("model_name", body.model_name)
            self._add("model_version", body.model_version)
            for tensors in (body.inputs, body.outputs):
                if tensors is not _UNSET:
                    for t in tensors:
                        self._add("name", t.name)
                        self._add("datatype", t.datatype)
        # A line with a principal or address attribute, or one the decoder missed though it knew all its values
        # (it holds such an attribute's key, with null): the structs read them from now on.
        rebuild = False
        if not self.with_attrs and self.attr_names and (
                (self.decode is not None and self.learned == before == 0)
                or any(getattr(d, f"attr{i}") is not None for i in range(len(self.attr_names)))):
            self.with_attrs = rebuild = True
        self.missed += 1
        if rebuild or (self.learned and self.missed >= max(16, sum(len(v) for v in known.values() if v) // 8)):
            self._build()
            return True
        return False

    def _add(self, field: str, v: Any) -> None:
        values = self.known[field]
        if v is None or values is None or v in values:
            return
        if len(values) >= _LITERAL_MAX:
            self.known[field] = None  # plain text from now on
        else:
            values.add(REQUEST_TYPE if v == REQUEST_TYPE else RESPONSE_TYPE if v == RESPONSE_TYPE else v)
        self.learned += 1

    def _text(self, field: str, optional: bool = True) -> Any:
        values = self.known[field]
        if values is None or (not values and not optional):
            return str | None if optional else str
        return literal_of(*sorted(values), None) if optional else literal_of(*sorted(values))

    def _build(self) -> None:
        self.missed = self.learned = 0
        text = self._text
        tensor = msgspec.defstruct("KServeTensor", [
            ("data", _VALUES), ("name", text("name"), None), ("shape", list[_DIM] | None, None),
            ("datatype", text("datatype"), None), ("parameters", _PARAMS, None)], forbid_unknown_fields=True, gc=False)
        body = msgspec.defstruct("KServeBody", [
            ("instances", _VALUES | _Unset, _UNSET), ("predictions", _VALUES | _Unset, _UNSET),
            ("inputs", list[tensor] | _Unset, _UNSET), ("outputs", list[tensor] | _Unset, _UNSET),
            ("model_name", text("model_name"), None), ("model_version", text("model_version"), None),
            ("id", str | None | _Unset, _UNSET), ("parameters", _PARAMS, None)], forbid_unknown_fields=True, gc=False)
        types = {**_FIXED, "data": body | None}
        for f in _LEARNED_TOP:
            types[f] = text(f, f != "type")
        fields = [(k, t) if k in ("id", "type", "time") else (k, t, None) for k, t in types.items()]
        rename = {}
        if self.with_attrs:
            for i, n in enumerate(self.attr_names):
                fields.append((f"attr{i}", str | None, None))
                rename[f"attr{i}"] = n
        struct = msgspec.defstruct("KServeEvent", fields, rename=rename, forbid_unknown_fields=True, gc=False)
        self.decode = msgspec.json.Decoder(struct).decode
        self.attrs = None if not rename else attrgetter(*rename) if len(rename) > 1 else (lambda d: (d.attr0,))


def _fast_tensor(t: _Tensor) -> list:
    """``_tensor`` of a decoded tensor; raises on a length that does not match its shape (the
    general path notes it)."""
    data = t.data
    shape = t.shape
    if shape is None or len(shape) <= 1 or not data or type(data[0]) is list:
        return data
    n = 1
    for dim in shape:
        n *= dim
    if n != len(data):
        raise ValueError("tensor_shape_mismatch")
    if len(shape) == 2:
        if shape[0] == 1:
            return [data]
        dim = shape[1]
        return [data[i:i + dim] for i in range(0, len(data), dim)]
    for dim in reversed(shape[1:]):
        data = [data[i:i + dim] for i in range(0, len(data), dim)]
    return data


# -- payloads ---------------------------------------------------------------------------
def _payload(parser: Parser, body: Any, is_request: bool):
    """(values, protocol, tensor names, v2 model_name, v2 model_version) of one body."""
    if body is None:
        return None, None, None, None, None
    if isinstance(body, list):  # a bare list body: the instances themselves
        return body, "v1", None, None, None
    if not isinstance(body, dict):
        raise ParseError(f"inference body: expected a JSON object, got {type(body).__name__}")
    v1_key, v2_key = ("instances", "inputs") if is_request else ("predictions", "outputs")
    model_name = _opt_text(body.get("model_name"), "model_name")
    model_version = _opt_text(body.get("model_version"), "model_version")
    if v1_key in body:
        values = body[v1_key]
        if not isinstance(values, list):
            raise ParseError(f"{v1_key}: expected a list, got {type(values).__name__}")
        return values, "v1", None, model_name, model_version
    if v2_key in body:
        tensors = body[v2_key]
        if isinstance(tensors, list) and tensors and all(isinstance(t, dict) and "data" in t for t in tensors):
            arrays, names = [], []
            for i, t in enumerate(tensors):
                arrays.append(_tensor(parser, t, f"{v2_key}[{i}]"))
                names.append(t.get("name") if isinstance(t.get("name"), str) else None)
            return (arrays[0] if len(arrays) == 1 else arrays), "v2", names, model_name, model_version
        # TF-serving columnar v1 ("inputs": {...} or [...]) rather than v2 tensors.
        if isinstance(tensors, list):
            return tensors, "v1", None, model_name, model_version
        if isinstance(tensors, dict):
            return [tensors], "v1", None, model_name, model_version
        raise ParseError(f"{v2_key}: expected a list of tensors, got {type(tensors).__name__}")
    if model_name is not None or "id" in body:  # a v2 body without tensors (e.g. an error)
        return None, "v2", None, model_name, model_version
    parser.note("unknown_bodies")
    return None, None, None, None, None


def _tensor(parser: Parser, t: dict, what: str) -> list:
    data = t["data"]
    if not isinstance(data, list):
        raise ParseError(f"{what}.data: expected a list, got {type(data).__name__}")
    shape = t.get("shape")
    if shape is None:
        return data
    if type(shape) is not list:
        if not isinstance(shape, list):
            raise ParseError(f"{what}.shape: expected a list of non-negative integers")
    for d in shape:
        if not (type(d) is int or (isinstance(d, int) and not isinstance(d, bool))) or d < 0:
            raise ParseError(f"{what}.shape: expected a list of non-negative integers")
    if len(shape) <= 1 or not data or isinstance(data[0], list):
        return data  # already 1-D, empty, or sent nested (the OIP allows both)
    n = 1
    for d in shape:
        n *= d
    if n != len(data):
        parser.note("tensor_shape_mismatch")
        return data
    for dim in reversed(shape[1:]):
        data = [data[i:i + dim] for i in range(0, len(data), dim)]
    return data


def _opt_text(v: Any, what: str) -> str | None:
    return as_str(v, what, absent=("",))
