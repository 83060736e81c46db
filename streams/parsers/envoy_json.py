"""Envoy JSON access logs (``log_format.json_format``), including Envoy AI Gateway's.

Envoy writes one JSON object per request whose keys are whatever the operator put in
``json_format``. :class:`Options` therefore maps each role (``start_time``,
``response_code``, ...) to candidate keys, tried in order; the defaults cover Envoy's
command names in snake case (Istio's and Higress' spelling: ``x_forwarded_for``,
``user_agent``, ``authority``), Envoy Gateway's default format (``x-envoy-origin-path``,
``x-forwarded-for``, ``user-agent``, ``:authority``) and Envoy AI Gateway's ``genai_*`` fields
(``genai_model_name``, ``genai_model_name_override``, ``genai_backend_name``,
``genai_tokens_input``, ``genai_tokens_output``). A dotted key (``request.method``) reads a
nested object.

Principal: a non-secret identity set by auth (``user``/``consumer``-style fields, kept
readable) when present, else an API-key header value logged as a field (``x_api_key``,
``x-api-key``, ``api_key``, ``authorization``): those are raw credentials and only their keyed
hash is kept (``Bearer`` is stripped before hashing). ``prefer_identity`` flips the order.

Quirks handled: values are typed when a json_format value is a single command (numbers for
``%RESPONSE_CODE%``, ``%DURATION%``, ...) and strings otherwise, so numbers may come as
numeric strings; absent values are JSON ``null`` (newer Envoy) or ``"-"`` (older Envoy,
``omit_empty_values: false``); ``response_code`` 0 means the downstream went away before a
response and is kept; ``response_flags`` may be a comma list (``UF,URX``); token counts may be
numbers, numeric strings or ``-``; ``start_time`` is RFC 3339 or, for
``%START_TIME(%s)%``-style formats, epoch seconds/ms/us/ns (told apart by magnitude);
``src_ip`` is the first ``X-Forwarded-For`` address (brackets and port stripped) else the
downstream remote address without its port (IPv6 brackets understood).

Extra fields: ``method``, ``protocol``, ``response_flags`` (list, or None), ``bytes_in``,
``bytes_out``, ``upstream_ms``, ``user_agent``, ``request_id``, ``authority``,
``upstream_host``, ``backend`` (``genai_backend_name``), ``model_override``
(``genai_model_name_override``). ``latency_ms`` is ``duration``.

Columns: :meth:`EnvoyJsonParser.parse_batch` (what reading files and replay call) writes a
chunk's events as one :class:`~ramparts.events.Columns` part, never a dict per event. Files and
the worker's packed messages come as a :class:`~ramparts.streams.parsers.base.LineBlock` (the
blocks read and their newlines' positions, no bytes object per line): a slice of it whose every
inner newline sits between ``}`` and ``{`` is decoded by one ``decode_lines`` call, kept when it
gives one value per line (:func:`_one_per_line`; when the literal decoder below does not take
every line, by the plain decoder's call, whose values are then learned); any other slice is cut into
lines and goes as a list does (and, after such a miss, the next 1, 2, 4 ... 16 slices). A slice of
1,024 lines at a time is decoded by the msgspec struct of the last key set seen (the fast path; one
``list.extend(map(decode, lines))`` up to the first line it does not take; the struct's fields in
the order of the key set's keys, so that msgspec finds each key at its first comparison), first by
the struct that reads each text field of few values as a ``Literal`` of the values seen so far
(:class:`_Literals`: one str per distinct value instead of one per line; the API key excepted),
turned into columns with one ``zip`` over the structs' tuples, and normalized column by
column while its values are still in the CPU's cache: ``"-"`` to None (found per column with
``list.index``, in C; not looked for in a column of numbers only, nor in a literal field none of
whose values is ``"-"``, nor where a later reading finds it: the times read at once hold none, the
upstream times' and API keys' are read as absent there), the times with numpy when the slice
holds one time format in runs of one second (else line by line from the last second seen), the
principal through the per-key hash cache, the source address, the upstream time (a column of texts
of numbers, the header's spelling, read as one JSON array of floats by msgspec), the path's query
and the flags, each column's common case
tested on the whole column first. The columns are ``zip``'s tuples, made lists only where values change.
A line the fast decoder does not take (another key set, a
type its struct does not take, not JSON, not UTF-8) goes through the general path and its
event (the same keys) is put back in its place; a value that fails a check dead-letters its
line alone with the first failing check's reason. The ids (``stamp_ids``) are kept as their line numbers (one
``range`` when every line of the chunk made an event) and made when first read (a lazy field of the
:class:`~ramparts.events.Columns`: replay reads few of them), and the times, when every slice's were read at
once, go with the batch as the int64 array ``EventBatch.ts()`` would make of them (replay's merge reads it
per chunk). :meth:`EnvoyJsonParser.parse_chunk` (the
worker's raw stage) hands on the dicts of the same batch: one implementation, the same events,
ids, dead letters and counts as the base loop over ``parse_record``
(``tests/parsers/test_envoy_json_fastpath.py``).
"""

from __future__ import annotations

from collections.abc import Callable
from itertools import groupby
from operator import itemgetter, length_hint
from typing import Annotated, Any, Literal

import msgspec
import numpy as np
import orjson
from msgspec.structs import astuple
from pydantic import Field, field_validator

from ramparts.errors import ParseError
from ramparts.events import EventBatch, LineIds
from ramparts.timeutil import from_epoch, parse_iso

from .base import (DeadLetter, LineBlock, Parser, as_float, as_int, as_str, describe, dig, literal_of,
                   sniff_json_lines)
from .envoy_text import first_forwarded, host_of

DEFAULT_FIELDS: dict[str, list[str]] = {
    # numeric roles
    "start_time": ["start_time", "timestamp", "@timestamp", "time", "startTime"],
    "response_code": ["response_code", "status_code", "status", "code"],
    "duration": ["duration", "duration_ms", "request_duration"],
    "bytes_received": ["bytes_received", "request_bytes"],
    "bytes_sent": ["bytes_sent", "response_bytes"],
    "upstream_service_time": ["upstream_service_time", "x-envoy-upstream-service-time",
                              "x_envoy_upstream_service_time", "resp_x_envoy_upstream_service_time"],
    "tokens_in": ["genai_tokens_input", "tokens_input", "input_tokens", "prompt_tokens"],
    "tokens_out": ["genai_tokens_output", "tokens_output", "output_tokens", "completion_tokens"],
    # text roles
    "method": ["method", ":method", "request_method"],
    "path": ["path", "x-envoy-origin-path", "x_envoy_origin_path", "x-envoy-original-path",
             "original_path", ":path", "request_path", "uri"],
    "protocol": ["protocol"],
    "response_flags": ["response_flags", "flags"],
    "x_forwarded_for": ["x_forwarded_for", "x-forwarded-for", "forwarded_for"],
    "user_agent": ["user_agent", "user-agent", "useragent"],
    "request_id": ["request_id", "x-request-id", "x_request_id"],
    "authority": ["authority", ":authority", "host"],
    "upstream_host": ["upstream_host"],
    "downstream_remote_address": ["downstream_remote_address", "downstream_remote_addr", "remote_address",
                                  "client_address"],
    "model": ["genai_model_name", "model", "x-ai-eg-model", "x_ai_eg_model"],
    "model_override": ["genai_model_name_override"],
    "backend": ["genai_backend_name", "backend"],
    "api_key": ["x_api_key", "x-api-key", "api_key", "authorization"],
    "identity": ["user", "consumer", "user_id", "x-user-id", "x_user_id"],
}

# Keys that, next to a response code, mark an object as an Envoy access log line (Envoy
# command names as Envoy Gateway, Istio and Envoy AI Gateway spell them).
_MARKERS = frozenset({
    "start_time", "upstream_host", "upstream_cluster", "response_flags", "response_code_details",
    "x-envoy-origin-path", "x-envoy-upstream-service-time", "upstream_service_time",
    "downstream_remote_address", "downstream_local_address", "upstream_local_address",
    "bytes_received", "route_name", "upstream_transport_failure_reason",
})
_GENAI_MARKERS = ("genai_model_name", "genai_tokens_input", "genai_tokens_output", "genai_backend_name")
_ABSENT = (None, "-", "")
_ABSENT_SET = frozenset({"-", ""})
_ROLES = tuple(DEFAULT_FIELDS)
_N_NUMERIC = 8  # the first roles above are numbers or times, the others text
_TEXT_ROLES = _ROLES[_N_NUMERIC:]
_TEXT_TYPES = frozenset({str, type(None)})
_NO_KEY = "\x00no key"  # no JSON object has it: rec.get() of it is None
_MAX_PLANS = 256
_MAX_CACHE = 65536
_LITERAL_MAX = 1024  # values of one text field the literal decoder reads (_Literals)
_ABSENT_KEY = "ramparts:absent:"  # the fast struct's key of a role no key of the set fills
_NONE: frozenset = frozenset()
_FRAC_SCALE = tuple(10 ** (9 - i) for i in range(10))  # a fraction of i digits to ns


def _looks_like_envoy(doc: dict) -> bool:
    """A genai field, or a response code and two Envoy command names (plain loops: the worker
    sniffs every header-less record, and a generator per call cost a quarter of the sniff)."""
    for k in _GENAI_MARKERS:
        if k in doc:
            return True
    if "response_code" not in doc:
        return False
    n = 0
    for k in _MARKERS:
        if k in doc:
            n += 1
            if n >= 2:
                return True
    return False


def epoch_auto(v: int | float) -> int:
    """An epoch number of unknown unit (s, ms, us or ns) to ns, told apart by magnitude."""
    a = abs(v)
    unit = "s" if a < 1e11 else "ms" if a < 1e14 else "us" if a < 1e17 else "ns"
    return from_epoch(v, unit)


def parse_time(v: Any, what: str) -> int:
    if isinstance(v, str):
        s = v.strip()
        if s and (s[0].isdigit() and s.replace(".", "", 1).isdigit()):
            return epoch_auto(float(s) if "." in s else int(s))
        return parse_iso(s)
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        return epoch_auto(v)
    raise ParseError(f"{what}: expected a time, got {type(v).__name__}")


def check_status(code: int | None) -> int | None:
    if code is not None and not 0 <= code <= 999:
        raise ParseError(f"response code out of range: {code}")
    return code


# Fast paths for the common typed values; anything else goes through base's coercions,
# which raise on wrong types.
def opt_str(v: Any, what: str) -> str | None:
    if type(v) is str:
        return v if v and v != "-" else None
    return None if v is None else as_str(v, what)


def opt_float(v: Any, what: str) -> float | None:
    if type(v) is int:
        return float(v)
    return None if v is None else as_float(v, what)


def _upstream_ms(ust: Any) -> float | None:
    """The upstream service time, a header value (%RESP(X-ENVOY-UPSTREAM-SERVICE-TIME)%), so
    usually text: read as :func:`opt_float` would (float() of the text, finite), anything else
    through it."""
    if type(ust) is str:
        try:
            f = float(ust)
        except ValueError:
            pass
        else:
            if f - f == 0.0:  # inf or nan: opt_float's error
                return f
    return float(ust) if type(ust) is int else opt_float(ust, "upstream_service_time")


def opt_count(v: Any, what: str) -> int | None:
    if type(v) is not int:
        if v is None:
            return None
        v = as_int(v, what)
        if v is None:
            return None
    if v < 0:
        raise ParseError(f"{what}: negative count {v}")
    return v


class EnvoyJsonParser(Parser):
    name = "envoy_json"
    kind = "request"
    reads_blocks = True  # parse_batch decodes a slice of a LineBlock's lines at once
    description = "Envoy JSON access log (Envoy Gateway, Istio, Envoy AI Gateway genai_* fields)"

    class Options(Parser.Options):
        fields: dict[str, list[str]] = Field(
            default_factory=dict,
            description="Candidate JSON keys per role, tried in order, replacing the defaults for the "
                        "roles given (roles: " + ", ".join(DEFAULT_FIELDS) + "). A dotted key reads "
                        "a nested object.")
        prefer_identity: bool = Field(
            default=True,
            description="Take the principal from the 'identity' fields (kept readable) before the "
                        "'api_key' fields (raw credentials, hashed).")

        @field_validator("fields")
        @classmethod
        def _known_roles(cls, v: dict[str, list[str]]) -> dict[str, list[str]]:
            unknown = sorted(set(v) - set(DEFAULT_FIELDS))
            if unknown:
                raise ValueError(f"unknown field role(s) {unknown}; known: {', '.join(DEFAULT_FIELDS)}")
            return v

    def __init__(self, options=None, hasher=None):
        super().__init__(options, hasher)
        fields = {**DEFAULT_FIELDS, **self.options.fields}
        self._keys = {role: tuple(keys) for role, keys in fields.items()}
        self._plans: dict[tuple, tuple] = {}
        self._prefer_identity = self.options.prefer_identity
        self._keys_seen: dict[str, str | None] = {}
        self._decoders: dict[tuple, tuple] = {}
        self._literals: dict[tuple, _Literals] = {}  # per key set: its text values seen, and their decoder
        self._fast = None  # the decoder of the last key set seen
        self._fast_lit: _Literals | None = None  # that key set's literal decoder (parse_batch's)
        # parse_chunk's time cache: the last 'YYYY-MM-DDTHH:MM:SS.' seen and its second in ns.
        self._ts_head, self._ts_base = "\x00", 0
        # Block slices to go line by line before the next decode_lines try, and that number after the last miss.
        self._block_wait = self._block_backoff = 0

    def _hash_key(self, key: str) -> str | None:
        # Few distinct keys, many lines: the keyed hash is remembered per raw value.
        if len(self._keys_seen) >= _MAX_CACHE:
            self._keys_seen.clear()
        h = self._keys_seen[key] = self.principal(key, secret=True)
        return h

    @classmethod
    def sniff(cls, head: bytes, lines: list[bytes]) -> bool:
        sample = lines[:3]
        if not sample or not sample[0].lstrip().startswith(b"{"):
            return False
        return sniff_json_lines(sample, _looks_like_envoy)

    def _get(self, rec: dict, role: str) -> Any:
        """The first non-empty value among the role's candidate keys (the general path)."""
        for k in self._keys[role]:
            v = rec.get(k)
            if v is None and "." in k:
                v = dig(rec, k)
            if v not in _ABSENT:
                return v
        return None

    def _plan(self, rec: dict) -> tuple:
        """Which key each role reads, for objects with exactly this key set.

        One json_format gives every line the same keys, so the role-to-key resolution is
        done once per key set and each line is then read with one ``map(rec.get, keys)``.
        A role with several candidate keys present, or a dotted key, keeps the general path.
        """
        keys, slow = [], []
        for i, role in enumerate(_ROLES):
            cands = self._keys[role]
            present = [k for k in cands if k in rec]
            if len(present) > 1 or any("." in k and k not in rec for k in cands):
                keys.append(_NO_KEY)
                slow.append((i, role))
            else:
                keys.append(present[0] if present else _NO_KEY)
        if len(self._plans) >= _MAX_PLANS:  # a stream of ever-changing key sets: stay bounded
            self._plans.clear()
        plan = (tuple(keys), tuple(slow))
        self._plans[tuple(rec)] = plan
        if not slow:
            self._fast = self._compile(tuple(rec), plan[0])
            self._fast_lit = self._literals.get(tuple(rec)) if self._fast is not None else None
        return plan

    def _compile(self, keyset: tuple[str, ...], keys: tuple[str, ...]):
        """A msgspec decoder for lines with exactly this key set (the fast path).

        Its struct's fields are in the order of the key set's keys (the intermediate fields and the unused
        keys), then the fields of the roles no key fills: msgspec looks for a key's field from the one after
        the last field matched, so a line whose keys come in the struct's order finds each at the first
        comparison (about 0.07 µs per line less than the fields in ``_FAST_ORDER``: ``/tmp/run-envoy``'s
        ``order_ab.py``, throwaway). ``astuple`` of a struct is in that order; :func:`_fast_order` gives its
        ``_FAST_ORDER`` view, which ``_typed``, :func:`_transpose` and :class:`_Literals`' ``no_dash`` read.

        It decodes straight into the intermediate fields that :meth:`_finish` reads, in C,
        with the common types checked on the way. It forbids unknown keys, so a line with any
        other key (another json_format, or an alternative spelling of a role) fails to decode
        and takes the general path: both paths then give the same result. Keys of the set
        that no role reads are accepted as raw JSON and dropped.
        """
        cached = self._decoders.get(keyset)
        if cached is not None:
            return cached
        placed, rename = [], {}  # (where the field goes, its field)
        at = {k: i for i, k in enumerate(keyset)}
        last = len(keyset)  # the fields of a role no key fills go after those of the keys, in _FAST_ORDER
        by_field = {_FIELD_OF_ROLE[role]: (role, key) for role, key in zip(_ROLES, keys)}
        for name in _FAST_ORDER:
            role, key = by_field[name]
            placed.append((at.get(key, last) if key != _NO_KEY else last, (name, _FAST_TYPES.get(role, _TEXT), None)))
            rename[name] = key if key != _NO_KEY else _ABSENT_KEY + name  # a key no log has
        unused = [k for k in keyset if k not in set(keys)]
        for i, key in enumerate(unused):
            # Any JSON value, kept raw and dropped. (``msgspec.Raw | None`` took null alone: a line with any other
            # value there failed the struct and took the general path, every line of a log with such a key.)
            placed.append((at[key], (f"unused{i}", msgspec.Raw, _RAW_NULL)))
            rename[f"unused{i}"] = key
        placed.sort(key=itemgetter(0))  # stable: fields of one place (two roles of one key) keep _FAST_ORDER
        fields = [f for _, f in placed]
        try:
            struct = msgspec.defstruct("EnvoyLine", fields, rename=rename, forbid_unknown_fields=True, gc=False)
        except (TypeError, ValueError):  # keys msgspec cannot name (quotes, backslashes): general path only
            return None
        decoder = msgspec.json.Decoder(struct).decode
        if len(self._decoders) >= _MAX_PLANS:
            self._decoders.clear()
            self._literals.clear()
        self._decoders[keyset] = decoder
        self._literals[keyset] = _Literals(fields, rename)
        return decoder

    def parse_record(self, raw: bytes) -> dict:
        decode = self._fast
        if decode is not None:
            try:
                obj = decode(raw)
            except (msgspec.ValidationError, msgspec.DecodeError, UnicodeDecodeError):
                pass  # another key set, a rare type, not JSON or not UTF-8: the general path decides
            else:
                # (the key set's pick of _FIELDS, kept with its literals: no look-up of the struct's fields per record)
                return self._typed(self._fast_lit.event_order(astuple(obj)), raw)
        return self._general(raw)

    def _typed(self, t: tuple, raw: bytes) -> dict:
        """A line the fast decoder took (its struct's fields in ``_FIELDS`` order), through the checks its types do
        not make."""
        d = dict(zip(_FIELDS, t))
        return self._finish(d, raw, True)

    def _general(self, raw: bytes) -> dict:
        rec = orjson.loads(raw)
        if type(rec) is not dict:
            raise ParseError(f"expected a JSON object, got a JSON {type(rec).__name__}")
        keys, slow = self._plans.get(tuple(rec)) or self._plan(rec)
        vals = list(map(rec.get, keys))
        for i, role in slow:
            vals[i] = self._get(rec, role)
        return self._finish(dict(zip(_FIELDS, vals)), raw, False)

    def parse_chunk(self, records: list[bytes], origin: str, first_line: int,
                    events: list[dict], dead: list[DeadLetter]) -> None:
        """:meth:`Parser.parse_chunk` as the dicts of :meth:`parse_batch`'s events (one implementation)."""
        if type(self).event_key is not Parser.event_key:
            return super().parse_chunk(records, origin, first_line, events, dead)
        events.extend(self.parse_batch(records, origin, first_line, dead).events)

    def parse_batch(self, records: list[bytes], origin: str, first_line: int,
                    dead: list[DeadLetter]) -> EventBatch:
        """The chunk's events as one :class:`~ramparts.events.Columns` part: no dict per event.

        Every line the fast decoder takes becomes a tuple (``astuple``), the tuples are turned
        into columns with one ``zip``, and each column is normalized as a whole: ``"-"`` to
        None (found with ``list.index`` per column), the time from the last second seen, the principal
        through the hash cache, the source address, the upstream time, the path's query and
        the flags. A line the fast decoder does not take goes through :meth:`_general` (a
        dict, with the same keys) and is put back in its place in the columns; a value that
        fails a check dead-letters its line alone, with the reason the first failing check
        gives, as :meth:`_finish` would. The events, ids, dead letters and counts are those of
        the base loop over :meth:`parse_record` (tests/parsers/test_envoy_json_fastpath.py).
        """
        if type(self).event_key is not Parser.event_key or len(records) == 1:
            # One record (a log forwarder's single-record message): the per-record path. The
            # columns' normalization costs a fixed ~80 us per chunk (numpy calls per column),
            # which made the worker's single-record path 9x slower per record than this loop.
            events: list[dict] = []
            Parser.parse_chunk(self, records, origin, first_line, events, dead)
            return EventBatch(events)
        self._origin = origin
        self._dead = dead
        stats = self.stats
        decode = self._fast
        state = self._fast_lit
        lit = state.decode if state is not None else None
        fresh: list = []  # structs the plain decoder read: values the literal decoder does not know yet
        errors = (msgspec.ValidationError, msgspec.DecodeError, UnicodeDecodeError)
        objs: list = []
        take = objs.append
        gaps: list[int] = []  # lines the fast decoder did not take
        general: list[tuple[int, dict]] = []  # their events, with their lines
        failed: list[tuple[int, str, bytes]] = []  # dead letters: line, reason, raw
        cols: dict[str, list] = {f: [] for f in _EVENT_FIELDS}
        pieces: list = []  # the lines of the events in the columns, a range or a list per slice
        times_parts: list | None = []  # their times as arrays, while every slice's were read at once
        nulls: set[int] = set()  # the vouched columns (_VOUCH_AT) that may hold None: _transpose's sum failed there
        line = first_line - 1
        # A slice of lines at a time, decoded and normalized while its values are in the CPU's cache:
        # column by column over a whole 16,384-line chunk cost twice as much per line.
        blocks = type(records) is LineBlock
        if blocks and records.cr:  # a \r read: the lines' endings are cut first, as iter_lines cuts them
            records, blocks = records.lines(), False
        for part, region in (_block_slices(records) if blocks else _list_slices(records)):
            start, n_gaps = line + 1, len(gaps)
            slice_state = state
            done = 0  # lines of the slice handled
            if region is not None:
                # A slice of a block's lines, decoded by one decode_lines call when each of its lines is one
                # JSON object (_one_per_line); when the literal decoder does not take every line (a value it has not
                # learned yet: a new address, agent ...), by the plain decoder's call, whose values are learned below;
                # else its lines are cut and go the way below. After such a miss the next 1, 2, 4 ... 16 slices go
                # that way without the try (no second decode of every slice).
                first = lit if lit is not None else decode
                got = None
                if first is not None:
                    if self._block_wait:
                        self._block_wait -= 1
                    else:
                        got = _one_per_line(first, region, errors)
                        if got is None and first is lit and decode is not None:
                            first = decode
                            got = _one_per_line(first, region, errors)
                        if got is None:
                            self._block_wait = self._block_backoff = min(2 * self._block_backoff or 1, _BACKOFF_MAX)
                        else:
                            self._block_backoff = 0
                if got is not None:
                    objs += got
                    if first is not lit and state is not None:
                        fresh += got
                    part = range(len(got))  # (its length)
                    done = len(got)
                    got = None  # (the structs freed with objs', while in the CPU's cache, not at the next slice)
                else:
                    part = _cut(region)
            rest = iter(part)
            while done < len(part):
                first = lit if lit is not None else decode
                if first is not None:
                    # One call for the lines up to the first one the decoder does not take: list.extend
                    # keeps what map gave before the error, and `rest` has then yielded the line it failed on.
                    n0 = len(objs)
                    try:
                        objs.extend(map(first, rest))
                    except errors:
                        pass
                    if first is not lit and state is not None:
                        fresh += objs[n0:]
                    done += len(objs) - n0
                    if done == len(part):
                        break
                    if len(part) - length_hint(rest) != done + 1:  # pragma: no cover (CPython's list.extend)
                        raise AssertionError("envoy_json: the decoded lines and the lines read disagree")
                    raw = part[done]
                else:
                    raw = next(rest)
                done += 1
                line = start + done - 1
                if first is lit and decode is not None:
                    try:
                        obj = decode(raw)
                    except errors:
                        pass  # another key set, a rare type, not JSON or not UTF-8: the general path decides
                    else:  # a text value the literal decoder does not know yet
                        take(obj)
                        if state is not None:
                            fresh.append(obj)
                        continue
                gaps.append(line)
                if not raw or raw.isspace():
                    stats.skipped += 1
                    continue
                self._line = line
                try:
                    general.append((line, self._general(raw)))
                except Exception as e:  # any failure of one record is that record's problem
                    failed.append((line, describe(e), raw))
                decode = self._fast  # the general path may have compiled a decoder for a new key set
                if self._fast_lit is not state:
                    if fresh:
                        state.learn(fresh)
                        fresh = []
                    state = self._fast_lit
                    slice_state = None  # lines of two key sets in the slice
                lit = state.decode if state is not None else None
            line = start + len(part) - 1
            if fresh:
                state.learn(fresh)
                fresh = []
                lit = state.decode
            if objs:
                if len(gaps) > n_gaps:
                    skip = set(gaps[n_gaps:])
                    taken = [n for n in range(start, line + 1) if n not in skip]
                else:
                    taken = range(start, line + 1)
                # The fields of the key set known to hold no "-" need no search, when every line of the
                # slice was read by its decoders (and the values of those the literal decoder missed learned).
                # Every struct of the slice is then of that one key set: one field order (else _transpose
                # finds each struct's).
                one = state is not None and state is slice_state
                no_dash = state.no_dash() if one else _NONE
                # The times, upstream times and API keys are searched for "-" by _columns, only where needed.
                summed: set[int] = set()
                raw_cols = _transpose(objs, no_dash | _DASH_LATER, state.order if one else None, summed)
                nulls.update(_VOUCH_AT.difference(summed))
                part, taken, times = self._columns(raw_cols, taken, records, first_line, failed)
                raw_cols = None  # the times' and keys' texts and the structs freed now, while in the CPU's cache
                objs.clear()
                if times_parts is not None:
                    if times is None:
                        times_parts = None
                    else:
                        times_parts.append(times)
                for f, c in part.items():
                    cols[f].extend(c)
                pieces.append(taken)
        self._line = line
        lines = _joined(pieces)
        if failed:
            failed.sort(key=itemgetter(0))
            dead.extend(DeadLetter(self.name, origin, n, reason, raw) for n, reason, raw in failed)
            stats.dead_letters += len(failed)
            stats.failed += len(failed)
        # The times as the int64 array EventBatch.ts() would make of them (replay's merge reads it per chunk).
        times = np.concatenate(times_parts) if times_parts and not general else None
        # The flags' lists ("UF,URX" -> ["UF", "URX"], "-" -> None) are made when first read (no detector reads them).
        flags = cols.pop("response_flags")
        if general:
            cols["response_flags"] = _flag_lists(flags)  # the general path's events hold lists already
            if any(tuple(ev) != _EVENT_FIELDS for _, ev in general):  # pragma: no cover (_finish makes these keys)
                raise AssertionError("envoy_json: an event of the general path has other keys")
            lines = list(lines) + [n for n, _ in general]
            order = sorted(range(len(lines)), key=lines.__getitem__)
            pick = _picker(order)
            evs = [ev for _, ev in general]
            cols = {f: list(pick(c + [ev[f] for ev in evs])) for f, c in cols.items()}
            lines = sorted(lines)
        n = len(lines)
        stats.records += len(records)
        stats.parsed += n  # one event per line parsed
        stats.events += n
        lazy = {} if general else {"response_flags": (_flag_lists, flags)}
        # The columns' kind and source are [text] * n (_columns): the batch's indices take them so.
        one = None if general else _ONE
        types = _vouch(nulls, general)
        if self.stamp_ids:
            # The ids ("<origin>:<line>") are made when first read (Columns' lazy fields): in replay only
            # the events made whole and the store read them; the worker's events messages make them all.
            lazy["id"] = (LineIds(origin), lines)
            return EventBatch.from_columns(_EVENT_FIELDS_ID, cols, n, lazy, times, one, types)
        return EventBatch.from_columns(_EVENT_FIELDS, cols, n, lazy, times, one, types)

    def _columns(self, raw_cols: list[list], lines, records: list[bytes], first_line: int,
                 failed: list[tuple[int, str, bytes]]) -> tuple[dict[str, list], Any, np.ndarray | None]:
        """The fast decoder's fields (of ``lines``; :func:`_transpose`) as normalized event columns, and their lines:
        a line whose value fails a check is left out of both and added to ``failed``. Also the times as an
        int64 array when :func:`_times_array` read them (else None).

        The checks run in :meth:`_finish`'s order, and a line keeps the reason of the first that
        fails. Each column's common case is tested on the whole column first (no ``?`` in any
        path, every upstream time a finite number, ...); only a column that has an exception
        is walked value by value.

        The times, the upstream times and the API keys may still hold Envoy's absent value ``"-"``
        (``_DASH_LATER``: :func:`_transpose` leaves them, a search of every line's value, about 0.02 µs per line
        each): a column of times read at once (:func:`_times_array`) holds none (``"-"`` is not a time), another
        has its ``"-"`` made None first; :func:`_floats` reads the upstream times' ``"-"`` as None (one search
        instead of two: for ``"-"`` here and for None there), and :meth:`_principals` the API keys'.
        """
        flags, *vals = raw_cols
        (ts, status, latency, bytes_in, bytes_out, ust, tokens_in, tokens_out, method, path, protocol, src_ip,
         user_agent, request_id, authority, upstream_host, remote, model, model_override, backend, api_key,
         identity) = vals
        n = len(ts)
        bad: dict[int, str] = {}  # position -> the first check's reason
        # The columns are tuples or lists (_transpose): those changed in place are lists first.
        whole = _times_array(ts, parse_iso)
        if whole is not None:
            times, self._ts_head, self._ts_base = whole
            ts = times.tolist()
        else:
            times = None
            ts = _dashes_none(ts)
            self._times_one_by_one(ts, bad)
        principal = self._principals(api_key, identity, bad)
        if _any_in("\x00".join(filter(None, src_ip)), ", :") or (None in src_ip and remote.count(None) != n):
            src_ip = list(src_ip)
            self._addresses(src_ip, remote, bad)
        floats = _floats(ust, dashes=True)
        if floats is not None:
            ust = floats
        else:
            ust = _dashes_none(ust)
            _each(ust, lambda u: u if u is None or type(u) is float else _upstream_ms(u), bad)
        if "?" in "".join(filter(None, path)):
            scrub_path = self.hasher.scrub_path
            path = list(path)
            _each(path, lambda p: scrub_path(p) if p is not None and "?" in p else p, bad)
        cols = {  # response_flags as read: parse_batch makes its lists (_flag_lists) when first read
            "ts": ts, "status": status, "latency_ms": latency, "bytes_in": bytes_in, "bytes_out": bytes_out,
            "upstream_ms": ust, "tokens_in": tokens_in, "tokens_out": tokens_out, "method": method, "path": path,
            "protocol": protocol, "response_flags": flags, "src_ip": src_ip, "user_agent": user_agent,
            "request_id": request_id, "authority": authority, "upstream_host": upstream_host, "model": model,
            "model_override": model_override, "backend": backend, "principal": principal,
            "kind": ["request"] * n, "source": ["envoy_json"] * n,  # as _ONE says
        }
        if bad:
            lines = list(lines)
            for i, reason in bad.items():
                failed.append((lines[i], reason, records[lines[i] - first_line]))
            keep = [i for i in range(n) if i not in bad]
            if not keep:
                return {f: [] for f in cols}, [], None
            pick = _picker(keep)
            cols = {f: list(pick(c)) for f, c in cols.items()}
            lines = list(pick(lines))
            if times is not None:
                times = times[keep]
        return cols, lines, times

    def _times_one_by_one(self, ts: list, bad: dict[int, str]) -> None:
        """The time of each value, in place, from the last second seen when it is of that second."""
        head, base = self._ts_head, self._ts_base
        for i, t in enumerate(ts):
            try:
                if type(t) is str and t[:20] == head and t[-1] == "Z" and len(t) <= 30 \
                        and (frac := t[20:-1]).isdigit():
                    ts[i] = base + int(frac) * _FRAC_SCALE[len(frac)]
                elif t is None:
                    raise ParseError("no start time (looked for: " + ", ".join(self._keys["start_time"]) + ")")
                elif type(t) is str and t[4:5] == "-":
                    ts[i] = parse_iso(t)
                    # parse_iso read it as its second plus the fraction: remember the second.
                    if t[10:11] == "T" and t[19:20] == "." and t[-1] == "Z" and len(t) <= 30 \
                            and (frac := t[20:-1]).isdigit():
                        head, base = t[:20], ts[i] - int(frac) * _FRAC_SCALE[len(frac)]
                else:
                    ts[i] = parse_time(t, "start_time")
            except Exception as e:
                bad.setdefault(i, describe(e))
        self._ts_head, self._ts_base = head, base

    def _principals(self, api_key: list, identity: list, bad: dict[int, str]) -> list:
        """The identity (``prefer_identity``) else the API key's hash (cached per key) else the identity. An API
        key ``"-"`` is Envoy's absent value, as None (never hashed, so never a key of the cache)."""
        principal = list(map(self._keys_seen.get, api_key))  # the hashes of keys seen before, else None
        if self._prefer_identity and identity.count(None) != len(identity):
            principal = [p if k is None else k for k, p in zip(identity, principal)]
        if None in principal:
            for i, p in enumerate(principal):
                if p is None:
                    k = api_key[i]
                    if k is None or k == "-":
                        principal[i] = identity[i]
                    else:
                        try:
                            principal[i] = self._hash_key(k)
                        except Exception as e:
                            bad.setdefault(i, describe(e))
        return principal

    @staticmethod
    def _addresses(src_ip: list, remote: list, bad: dict[int, str]) -> None:
        """The first forwarded address, else the remote address without its port, in place."""
        for i, x in enumerate(src_ip):
            try:
                if x is not None:
                    if "," in x or ":" in x or " " in x:
                        src_ip[i] = first_forwarded(x)
                elif (r := remote[i]) is not None:
                    src_ip[i] = host_of(r)
            except Exception as e:
                bad.setdefault(i, describe(e))

    def _finish(self, d: dict, raw: bytes, typed: bool) -> dict:
        """The intermediate fields (one per role) to the event; shared by both paths.

        ``typed``: the fast path's decoder has already checked that text fields are text and
        that status, counts and durations are in range (``_FAST_TYPES``), so those checks
        are skipped; on any value the general path would have to coerce, the fast decoder
        fails and the general path runs instead.
        """
        # Absent values are "-" (Envoy's empty value) or "": response_flags is "-" on most
        # lines, so it is handled alone; one set test over the values finds any other (the
        # general path may hold lists and objects, which cannot be hashed).
        if d["response_flags"] == "-":
            d["response_flags"] = None
        values = d.values()
        if (not _ABSENT_SET.isdisjoint(values)) if typed else ("-" in values or "" in values):
            for k, v in d.items():
                if v == "-" or v == "":
                    d[k] = None
        t = d["ts"]
        if t is None:
            raise ParseError("no start time (looked for: " + ", ".join(self._keys["start_time"]) + ")")
        d["ts"] = parse_iso(t) if type(t) is str and t[4:5] == "-" else parse_time(t, "start_time")
        if not typed:
            for name, role in _TEXT_FIELDS:
                v = d[name]
                if v is not None and type(v) is not str:
                    d[name] = opt_str(v, role)

        api_key, identity, remote = d.pop("api_key"), d.pop("identity"), d.pop("remote_addr")
        if identity is not None and self._prefer_identity:
            principal = identity
        elif api_key is not None:
            principal = self._keys_seen.get(api_key)
            if principal is None:
                principal = self._hash_key(api_key)
        else:
            principal = identity
        d["principal"] = principal

        xff = d["src_ip"]
        if xff is not None:
            # The common case, one IPv4 address, without the general split.
            if "," in xff or ":" in xff or " " in xff:
                d["src_ip"] = first_forwarded(xff)
        elif remote is not None:
            d["src_ip"] = host_of(remote)

        if not typed:
            code = d["status"]
            if type(code) is not int and code is not None:
                code = d["status"] = as_int(code, "response_code")
            if code is not None and not 0 <= code <= 999:
                raise ParseError(f"response_code out of range: {code}")
            dur = d["latency_ms"]
            d["latency_ms"] = float(dur) if type(dur) is int else opt_float(dur, "duration")
            for name, what in _COUNT_FIELDS:
                v = d[name]
                if type(v) is not int or v < 0:
                    d[name] = opt_count(v, what)
        ust = d["upstream_ms"]
        if ust is not None and type(ust) is not float:
            d["upstream_ms"] = _upstream_ms(ust)
        path = d["path"]
        if path is not None and "?" in path:
            d["path"] = self.hasher.scrub_path(path)
        flags = d["response_flags"]
        if flags is not None and type(flags) is str:
            d["response_flags"] = flags.split(",")
        d["kind"] = "request"
        d["source"] = "envoy_json"
        return d


# The intermediate field each role fills: the event's own name where the role is an event
# field, a temporary name (popped by _finish) for api_key, identity and the remote address.
_FIELD_OF_ROLE = {
    "start_time": "ts", "response_code": "status", "duration": "latency_ms", "bytes_received": "bytes_in",
    "bytes_sent": "bytes_out", "upstream_service_time": "upstream_ms", "tokens_in": "tokens_in",
    "tokens_out": "tokens_out", "method": "method", "path": "path", "protocol": "protocol",
    "response_flags": "response_flags", "x_forwarded_for": "src_ip", "user_agent": "user_agent",
    "request_id": "request_id", "authority": "authority", "upstream_host": "upstream_host",
    "downstream_remote_address": "remote_addr", "model": "model", "model_override": "model_override",
    "backend": "backend", "api_key": "api_key", "identity": "identity",
}
assert set(_FIELD_OF_ROLE) == set(DEFAULT_FIELDS)
_FIELDS = tuple(_FIELD_OF_ROLE[r] for r in _ROLES)
_N_FIELDS = len(_FIELDS)
_FLAGS_AT = _FIELDS.index("response_flags")
# The fast structs' field order: response_flags (on most lines "-") apart, so that one set test
# over the others tells whether a line has any other absent value.
_FAST_ORDER = ("response_flags",) + _FIELDS[:_FLAGS_AT] + _FIELDS[_FLAGS_AT + 1:]
_TEXT_FIELDS = tuple((_FIELD_OF_ROLE[r], r) for r in _TEXT_ROLES)
_COUNT_FIELDS = (("tokens_in", "tokens_in"), ("tokens_out", "tokens_out"),
                 ("bytes_in", "bytes_received"), ("bytes_out", "bytes_sent"))
# Types the fast path accepts per role (text roles: _TEXT), checked by msgspec in C;
# a value outside them (a numeric string, a negative count) falls back to the general path.
# "-" and "" are Envoy's absent values, mapped to None by _finish; the fast types take "-"
# only (so that parse_chunk finds any absent value with one `"-" in` test), and a line with ""
# anywhere takes the general path.
_ABSENT_TEXT = Literal["-"]
_NONEMPTY = Annotated[str, msgspec.Meta(min_length=1)]
_TEXT = _NONEMPTY | None
_COUNT = Annotated[int, msgspec.Meta(ge=0)] | _ABSENT_TEXT | None
_FAST_TYPES = {
    "start_time": int | float | _NONEMPTY | None,
    "response_code": Annotated[int, msgspec.Meta(ge=0, le=999)] | _ABSENT_TEXT | None,
    "duration": float | _ABSENT_TEXT | None,  # msgspec turns an integer duration into a float
    "bytes_received": _COUNT, "bytes_sent": _COUNT, "tokens_in": _COUNT, "tokens_out": _COUNT,
    "upstream_service_time": float | _NONEMPTY | None,
}
# An event's keys, in the order _finish makes them (parse_batch's columns, "id" last when stamped).
_EVENT_FIELDS = tuple(f for f in _FIELDS if f not in ("remote_addr", "api_key", "identity")) + (
    "principal", "kind", "source")
_EVENT_FIELDS_ID = _EVENT_FIELDS + ("id",)

_ONE = {"kind": "request", "source": "envoy_json"}  # what _columns writes in every event

# The types parse_batch vouches for (Columns' ``types``) in the numeric columns, as the fast structs
# (_FAST_TYPES) and _columns make them: msgspec gives an ``int`` field only ints (never a bool, never a
# float) and a ``float`` field only floats (an integer duration read as a float); "-" and an absent or
# null value are None; the times are ints (_times_array, _times_one_by_one), the upstream times floats
# or None (_floats, _upstream_ms). None is added where the column may hold one (_transpose could not
# sum it), so that a column of numbers only is vouched as its one type: TypedColumns.types then needs no
# scan for the exact set (a batch's requests hold a subset of it).
_NONE_TYPE = type(None)
_VOUCH = {"ts": frozenset((int,)), "status": frozenset((int,)), "latency_ms": frozenset((float,)),
          "bytes_in": frozenset((int,)), "bytes_out": frozenset((int,)), "tokens_in": frozenset((int,)),
          "tokens_out": frozenset((int,)), "upstream_ms": frozenset((float, _NONE_TYPE))}
# Their places in _FAST_ORDER (what _transpose's ``summed`` holds), but the times': _columns reads those.
_VOUCH_PLACE = {f: _FAST_ORDER.index(f) for f in _VOUCH if f != "ts"}
_VOUCH_AT = frozenset(_VOUCH_PLACE.values())


def _vouch(nulls: set[int], general: list[tuple[int, dict]]) -> dict[str, frozenset]:
    """The types vouched for in each numeric column of a chunk (``_VOUCH``), with None where a slice's
    column may hold one (``nulls``: places in _FAST_ORDER), and the types of the general path's
    events' values (few lines: their values are looked at, whatever _finish made of them)."""
    out = {f: t | {_NONE_TYPE} if _VOUCH_PLACE.get(f) in nulls else t for f, t in _VOUCH.items()}
    if general:
        out = {f: t | frozenset(type(ev[f]) for _, ev in general) for f, t in out.items()}
    return out
# The columns (places in _FAST_ORDER) whose "-" _columns finds itself, only where needed: the times, the upstream
# times and the API keys.
_DASH_LATER = frozenset(_FAST_ORDER.index(f) for f in ("ts", "upstream_ms", "api_key"))


class _Literals:
    """The values of one key set's text fields seen so far, and a decoder that reads each such field as a
    ``Literal`` of them (``parse_batch``'s first try at a line).

    Most of an access log's text fields take few values (method, path, protocol, flags, forwarded
    address, user agent, authority, upstream host, model, backend: 1 to 20 each over the
    benchmark's 202,579 lines). msgspec hands on the one str it keeps per literal value instead of a new
    str per line: no allocation and no freeing of ten strings per line, a hash computed once (the
    detectors' groupings by model, source ...), and a field none of whose values is "-" needs no search
    for it (:meth:`no_dash`). The values are equal, so the events are too. Not the API key (791 values
    there): a raw credential, kept nowhere but the principal's hash cache.

    A line the literal decoder does not take (a value not seen yet, or a line the plain decoder would
    not take either) goes to the plain decoder (then its values are learned here) and on to the general
    path as before. A field whose values keep coming (more than ``_LITERAL_MAX``, or more than half of a
    large batch of lines new, as a request id) is read as plain text from then on; the decoder is rebuilt
    when enough lines missed it for what it costs (about 0.5 ms per 1,000 values).
    """

    __slots__ = ("fields", "rename", "known", "decode", "missed", "learned", "_no_dash", "_absent", "order",
                 "event_order")

    def __init__(self, fields: list[tuple], rename: dict[str, str]):
        self.fields = fields  # the structs' fields, in their order (the key set's: _compile)
        self.rename = rename
        self.order = _fast_order(tuple(name for name, _, _ in fields))  # a struct's tuple to _FAST_ORDER
        at = {name: i for i, (name, _, _) in enumerate(fields)}
        self.event_order = itemgetter(*(at[name] for name in _FIELDS))  # and to _FIELDS (parse_record)
        # The text fields read from a key of the set (an absent role's field is always None), but the API
        # key: a raw credential, kept nowhere but the hash cache's keys.
        self.known: dict[int, set[str]] = {i: set() for i, (name, tp, _) in enumerate(fields)
                                           if tp is _TEXT and name != "api_key"
                                           and not rename[name].startswith(_ABSENT_KEY)}
        self.decode = None
        self.missed = 0  # lines the plain decoder read since the decoder was built
        self.learned = 0  # values learned since then
        # The fields of a role no key of the set fills (always None).
        self._absent = frozenset(i for i, (name, _, _) in enumerate(fields) if rename[name].startswith(_ABSENT_KEY))
        self._no_dash: frozenset[int] | None = None

    def no_dash(self) -> frozenset[int]:
        """The fields that hold no "-" on any line these decoders read (their places in ``_FAST_ORDER``, as
        :func:`_transpose` gives them): a text field none of whose values learned is "-", and a field no key
        fills."""
        if self._no_dash is None:
            none = self._absent | {i for i, values in self.known.items() if "-" not in values}
            names = {self.fields[i][0] for i in none}
            self._no_dash = frozenset(at for at, name in enumerate(_FAST_ORDER) if name in names)
        return self._no_dash

    def learn(self, objs: list) -> None:
        """The values of ``objs`` (structs of the plain decoder); the literal decoder rebuilt when it pays."""
        if not self.known:
            return
        cols = list(zip(*map(astuple, objs)))
        m = len(objs)
        self._no_dash = None
        demoted = False
        for i in list(self.known):
            values = self.known[i]
            new = set(cols[i])
            new.discard(None)
            new -= values
            if not new:
                continue
            if len(values) + len(new) > _LITERAL_MAX or (m >= 256 and 2 * len(new) > m):
                del self.known[i]  # plain text from now on
                demoted = True
            else:
                values |= new
                self.learned += len(new)
        self.missed += m
        if demoted or (self.learned and self.missed >= max(16, sum(map(len, self.known.values())) // 8)):
            self._build()

    def _build(self) -> None:
        known = self.known
        fields = [(name, literal_of(*known[i], None) if i in known else tp, default)
                  for i, (name, tp, default) in enumerate(self.fields)]
        self.missed = self.learned = 0
        try:
            struct = msgspec.defstruct("EnvoyLine", fields, rename=self.rename, forbid_unknown_fields=True, gc=False)
            self.decode = msgspec.json.Decoder(struct).decode
        except (TypeError, ValueError):  # pragma: no cover (the plain struct of these fields was built)
            self.decode = None
            known.clear()


def _list_slices(records: list[bytes]):
    """``(lines, None)`` per slice of ``_SLICE`` lines of a list."""
    for at in range(0, len(records), _SLICE):
        yield records[at:at + _SLICE], None


def _block_slices(block: LineBlock):
    """``(None, regions)`` per slice of ``_SLICE`` lines of a :class:`LineBlock` (the last one fewer): a slice's
    lines as ``(bytes array, bytes, start, ends)`` regions of the block's parts (a slice may span two)."""
    regions: list[tuple] = []
    room = _SLICE
    for buf, start, ends in block.parts:
        arr = np.frombuffer(buf, dtype=np.uint8)
        at, m = 0, len(ends)
        while at < m:
            e = ends[at:at + room]
            regions.append((arr, buf, start if at == 0 else int(ends[at - 1]) + 1, e))
            at += len(e)
            room -= len(e)
            if not room:
                yield None, regions
                regions, room = [], _SLICE
    if regions:
        yield None, regions


def _cut(regions: list[tuple]) -> list[bytes]:
    """A block slice's lines."""
    out: list[bytes] = []
    for _, buf, start, ends in regions:
        out += buf[start:int(ends[-1])].split(b"\n")
    return out


def _one_per_line(decode: Callable, regions: list[tuple], errors: tuple) -> list | None:
    """The structs of a block slice's lines, read by one ``decode_lines`` call of ``decode``'s decoder per
    region, when that reads exactly one value per line: then they are what ``decode`` gives line by line.
    Else None.

    Every newline inside a region must sit between a ``}`` and a ``{``: a JSON text holds no raw newline
    inside a string (msgspec refuses one), and ``}`` then whitespace then ``{`` is a boundary between two
    values, never the inside of one. So no value spans two lines, each line holds at least one (it has a
    ``}``), and as many values as lines means one each (a line ``{..} {..}`` would make one more). A blank
    line, a ``\\r``, a space or anything else around a newline fails that test; a line the decoder does not
    take fails the call: None, and the slice goes line by line as before."""
    decode_lines = decode.__self__.decode_lines
    out: list = []
    for arr, buf, start, ends in regions:
        inner = ends[:-1]
        if len(inner) and not ((arr[inner - 1] == 125).all() and (arr[inner + 1] == 123).all()):
            return None
        try:
            got = decode_lines(memoryview(buf)[start:int(ends[-1])])
        except errors:
            return None
        if len(got) != len(ends):
            return None
        out += got
    return out


def _flag_lists(flags: list | tuple) -> list:
    """The fast decoder's response_flags as the events' (a list of the comma-separated flags; None for "-")."""
    return [None if f is None or f == "-" else f.split(",") for f in flags]


def _joined(pieces: list) -> range | list[int]:
    """The line numbers of ``pieces`` (ranges and lists, in increasing order) one after the other: one
    ``range`` when they are ranges each starting where the one before ends (no int object per line), else
    a list.

    >>> _joined([range(1, 4), range(4, 6)]), _joined([]), _joined([range(1, 3), [4, 6]])
    (range(1, 6), range(0, 0), [1, 2, 4, 6])
    """
    if not pieces:
        return range(0)
    first = pieces[0]
    if type(first) is range:
        stop = first.stop
        for p in pieces[1:]:
            if type(p) is not range or p.start != stop:
                break
            stop = p.stop
        else:
            return range(first.start, stop)
    out: list[int] = []
    for p in pieces:
        out.extend(p)
    return out


def _picker(idx: list[int]):
    """``lambda xs: [xs[i] for i in idx]`` in C (a tuple; ``idx`` not empty)."""
    if len(idx) == 1:
        i = idx[0]
        return lambda xs: (xs[i],)
    return itemgetter(*idx)


def _any_in(text: str, chars: str) -> bool:
    for c in chars:
        if c in text:
            return True
    return False


# A JSON array of numbers as floats (msgspec's float parsing is correctly rounded, as float()'s is).
_FLOAT_ARRAY = msgspec.json.Decoder(list[float]).decode


def _floats(col: list | tuple, dashes: bool = False) -> list | None:
    """:func:`_upstream_ms` of every value (None kept) when each is a finite number or text of one
    (float() takes it): else None, and the values go one by one. With ``dashes``, a ``"-"`` (Envoy's absent
    value) is read as None too (the column as :func:`_transpose` would have made it: one search of the column
    for ``"-"``, and for None only when the column's texts do not join).

    The header's values are texts of JSON numbers (``"4543"``): all of them are read at once as one
    JSON array of floats (a quarter of ``map(float, ...)``'s cost). That read takes only JSON's number
    grammar (no ``"inf"``, ``"1_0"``, ``"+5"``, ``".5"``, other digits or spaces), each value one element
    (a text with a comma or a bracket makes another count, or no array of numbers), and reads each as
    float() does; any column it does not take (a number among the texts, any other text) is read by
    ``map(float, ...)`` as before. A zero is float()'s (msgspec reads ``"-0"`` as 0.0, float() as -0.0)."""
    nones = _positions(col, "-") if dashes else []  # few (absent values), found in C
    if nones:
        col = list(col)
        for i in nones:
            col[i] = "0"
    text = ""
    try:
        try:
            text = ",".join(col)
        except TypeError:  # a None (JSON null) or a number among the texts
            nulls = _positions(col, None)
            if nulls:
                col = list(col)
                for i in nulls:
                    col[i] = "0"
                nones = sorted(nones + nulls)
            text = ",".join(col)
        out = _FLOAT_ARRAY("[" + text + "]")
        if len(out) != len(col):
            out = None
    except Exception:  # a number among the values (join), or a text JSON does not read as a number
        out = None
    if out is None:
        try:
            out = list(map(float, col))
        except Exception:  # a value float() does not take: _upstream_ms gives its error
            return None
    elif "-" in text:
        # msgspec reads the integer "-0" as 0.0 where float() gives -0.0: every zero is float()'s (a text with no
        # "-" reads as a zero of float()'s sign, +0.0, either way).
        for i in _positions(out, 0.0):
            out[i] = float(col[i])
    total = sum(out)
    if total - total != 0.0:  # an inf or a nan among them: _upstream_ms's error
        return None
    for i in nones:
        out[i] = None
    return out


_SEPARATORS = ((4, ord("-")), (7, ord("-")), (10, ord("T")), (13, ord(":")), (16, ord(":")), (19, ord(".")))
# Per width of a time: the positions of its separators and final Z, and their bytes (one comparison per chunk).
_CHECKS = {w: (np.array([at for at, _ in _SEPARATORS] + [w - 1]),
               np.array([c for _, c in _SEPARATORS] + [ord("Z")], dtype=np.uint8)) for w in range(22, 31)}
_POWERS = {k: 10 ** np.arange(k - 1, -1, -1, dtype=np.int64) for k in range(1, 10)}  # a fraction's digits' weights
_RUN_LINES = 64  # a chunk whose runs of one second are shorter on average goes line by line
_RAW_NULL = msgspec.Raw(b"null")  # the default of a key no role reads (the fast structs)
_SLICE = 1024  # lines decoded and turned into columns at a time
_BACKOFF_MAX = 16  # block slices at most left line by line after a miss of decode_lines (parse_batch)


def _times(ts: list | tuple, parse_iso: Callable[[str], int]) -> tuple[list[int], str, int] | None:
    """:func:`_times_array` with the times as a list of ints."""
    got = _times_array(ts, parse_iso)
    return None if got is None else (got[0].tolist(), got[1], got[2])


def _times_array(ts: list | tuple, parse_iso: Callable[[str], int]) -> tuple[np.ndarray, str, int] | None:
    """The common chunk's times at once (as an int64 array): every value 'YYYY-MM-DDTHH:MM:SS.<1-9 digits>Z', of one
    length, in few runs of one second. Each run's second is read by ``parse_iso`` from its first
    value, as the line by line loop would (the same numbers: that loop's cache of the second);
    the fractions are read with numpy. None (the loop decides) for any other chunk. Also the last
    run's head and second, the loop's cache.

    The separators and the final Z are tested in one comparison, the fractions' digits alone, and
    the runs found by comparing each value's first 20 bytes as one fixed-width bytes value."""
    try:
        width = len(ts[0])
        if not 22 <= width <= 30 or len(set(map(len, ts))) != 1:
            return None
        arr = np.frombuffer("".join(ts).encode("ascii"), dtype=np.uint8).reshape(len(ts), width)
    except (TypeError, UnicodeEncodeError):  # None, a number, other text: the loop decides
        return None
    at, want = _CHECKS[width]
    if (arr[:, at] != want).any():
        return None
    frac = arr[:, 20:width - 1] - 48  # uint8: any byte but a digit is above 9
    if (frac > 9).any():
        return None
    heads = np.ascontiguousarray(arr[:, :20]).view("S20").ravel()  # (byte 19 is ".": no NUL at the end)
    starts = np.flatnonzero(heads[1:] != heads[:-1]) + 1
    if len(starts) * _RUN_LINES > len(ts):
        return None
    frac_digits = width - 21
    out = (frac.astype(np.int64) @ _POWERS[frac_digits]) * _FRAC_SCALE[frac_digits]
    bounds = [0, *starts.tolist(), len(ts)]
    head, base = "", 0
    for a, b in zip(bounds, bounds[1:]):
        t = ts[a]
        try:
            base = parse_iso(t) - int(t[20:-1]) * _FRAC_SCALE[frac_digits]
        except Exception:  # an invalid date: the loop gives each line's error
            return None
        head = t[:20]
        if not -2**62 < base < 2**62:  # beyond int64 nanoseconds: the loop's Python ints
            return None
        out[a:b] += base
    return out, head, base


def _transpose(objs: list, no_dash: frozenset[int] = frozenset(), order: Callable | None = None,
               summed: set[int] | None = None) -> list[tuple | list]:
    """The fast structs' fields as columns (one per field of _FAST_ORDER); Envoy's absent
    value "-" (the fast types take no "", and "-" only where a value may be absent) as None, but in
    response_flags (the first) and in the fields of ``no_dash``, known to hold no "-" (:meth:`_Literals.no_dash`).

    A struct's fields are in its key set's order (:meth:`EnvoyJsonParser._compile`): ``order``, when every
    struct is of one key set, picks the columns of ``_FAST_ORDER`` from the columns of that order; else the
    structs are taken in runs of one type (of one field order), each run's columns so picked and the runs'
    columns joined.

    A column is the tuple zip made, copied to a list only where a "-" is replaced (or where
    :meth:`EnvoyJsonParser._columns` changes values in place): most are copied once, into the chunk's
    columns, instead of twice.

    ``summed``: the places of the columns found to hold numbers only (``sum`` took them: no "-", no None)
    are added to it (:func:`_vouch` reads it)."""
    if order is not None:
        cols: list = list(order(list(zip(*map(astuple, objs)))))
    else:
        runs = [list(order_of(list(zip(*map(astuple, run)))))
                for order_of, run in ((_fast_order(tp.__struct_fields__), run) for tp, run in groupby(objs, type))]
        cols = runs[0] if len(runs) == 1 else [sum(c, ()) for c in zip(*runs)]
    for at in range(1, _N_FIELDS):
        if at not in no_dash:
            c = cols[at]
            try:
                sum(c)  # a column of numbers only holds no "-" (a third of the search's cost; text fails at once)
                if summed is not None:
                    summed.add(at)
                continue
            except TypeError:
                pass
            dashes = _positions(c, "-")
            if dashes:
                c = cols[at] = list(c)
                for i in dashes:
                    c[i] = None
    return cols


_ORDERS: dict[tuple[str, ...], Callable[[Any], tuple]] = {}


def _fast_order(names: tuple[str, ...]) -> Callable[[Any], tuple]:
    """The ``itemgetter`` that picks the fields of ``_FAST_ORDER`` from a sequence in the order of ``names`` (a
    fast struct's ``__struct_fields__``), kept per order.

    >>> names = _FAST_ORDER[::-1] + ("unused0",)
    >>> _fast_order(names)(names) == _FAST_ORDER
    True
    """
    got = _ORDERS.get(names)
    if got is None:
        at = {name: i for i, name in enumerate(names)}
        if len(_ORDERS) >= _MAX_PLANS:
            _ORDERS.clear()
        got = _ORDERS[names] = itemgetter(*(at[name] for name in _FAST_ORDER))
    return got


def _dashes_none(col: list | tuple) -> list:
    """``col`` as a list with Envoy's absent value ``"-"`` as None."""
    col = list(col)
    for i in _positions(col, "-"):
        col[i] = None
    return col


def _positions(col: list, value: Any) -> list[int]:
    """The positions of ``value`` in ``col`` (``==``, as ``in``), found by ``list.index`` in C: a column
    holds the value at few places, if any, so this costs about one ``in`` test."""
    out: list[int] = []
    index = col.index
    i = -1
    try:
        while True:
            i = index(value, i + 1)
            out.append(i)
    except ValueError:
        return out


def _each(col: list, one: Callable[[Any], Any], bad: dict[int, str]) -> None:
    """``one`` of every value, in place; a value it fails on marks its line ``bad`` (first reason kept)."""
    for i, v in enumerate(col):
        try:
            col[i] = one(v)
        except Exception as e:
            bad.setdefault(i, describe(e))
