"""What every parser is: a pure function from raw records to normalized events, in batches.

A parser module defines one :class:`Parser` subclass and registers it in
``streams/parsers/__init__.py``. The base class owns the loop over a chunk of raw records,
so that every format gets the same guarantees for free:

* a record that raises is never lost and never stops the run: it becomes a
  :class:`DeadLetter` with the raw bytes, the format, the file, the line and the reason;
* a record that is not data (blank line, comment, CSV header, a section of a capture that
  carries no samples) is *skipped* and counted, so every input line is accounted for as
  parsed, dead-lettered or skipped;
* parsers that join records (KServe request/response, Kubernetes audit stages) keep bounded
  state and hand what is still pending to :meth:`Parser.finish` at the end of the input.

Subclasses implement :meth:`Parser.parse_record` (one raw record, ``bytes`` without its
line ending, to an event, a list of events, or ``None`` for "not data") and
:meth:`Parser.sniff` (does the head of a file look like this format).
"""

from __future__ import annotations

import base64
import functools
from dataclasses import dataclass, field
from collections.abc import Callable
from typing import Any, ClassVar, Literal

import numpy as np
import orjson

from ramparts.config import StrictModel
from ramparts.errors import ParseError
from ramparts.events import EventBatch
from ramparts.redact import Hasher

# Literal[...] of the values, for the learned decoders (the Envoy parser's ``_Literals``, the KServe
# parser's ``_Learned``), built without typing's cache (which would keep the last 128 sets of values
# read from logs alive after their parsers); msgspec reads None in a Literal as JSON null.
literal_of = functools.partial(getattr(Literal._getitem, "__wrapped__", lambda form, *values: form[values]), Literal)

# Joins keep at most this many records waiting for their partner; the oldest is flushed
# (emitted unjoined, and counted) when the limit is reached, so memory stays bounded.
DEFAULT_MAX_PENDING = 100_000


@dataclass(slots=True)
class DeadLetter:
    """A record that could not be parsed, with everything needed to find and replay it."""

    source: str  # format name
    file: str
    line: int  # 1-based line (or record) number in the file
    reason: str
    raw: bytes
    item: int | None = None  # index inside the record, for arrays (Kong batches, pod lists)

    def to_dict(self, hasher: Hasher) -> dict[str, Any]:
        # The raw bytes may hold a credential (that may be why the record is odd): they are
        # scrubbed before they are written anywhere.
        raw = hasher.scrub_bytes(self.raw)
        out: dict[str, Any] = {
            "source": self.source,
            "file": self.file,
            "line": self.line,
            "reason": self.reason,
            "raw_b64": base64.b64encode(raw).decode("ascii"),
            "raw": raw.decode("utf-8", "replace"),
        }
        if self.item is not None:
            out["item"] = self.item
        return out


@dataclass(slots=True)
class ParseStats:
    records: int = 0  # raw records read (lines, or documents for document formats)
    parsed: int = 0  # records accepted (an event, several, or held by a join)
    skipped: int = 0  # records that are not data: blank, comment, header, non-sample sections
    failed: int = 0  # records dead-lettered whole
    # Every record is exactly one of parsed, skipped or failed.
    events: int = 0  # normalized events produced
    dead_letters: int = 0  # dead-letter records written: failed records, rejected items, join failures
    notes: dict[str, int] = field(default_factory=dict)  # parser-specific counters

    def add(self, other: "ParseStats") -> None:
        self.records += other.records
        self.parsed += other.parsed
        self.failed += other.failed
        self.events += other.events
        self.dead_letters += other.dead_letters
        self.skipped += other.skipped
        for k, v in other.notes.items():
            self.notes[k] = self.notes.get(k, 0) + v


class LineBlock:
    """A chunk's lines held as regions of the blocks read from a file: no bytes object per line
    until one is asked for (``streams/decode.py``'s ``iter_blocks``, for a parser whose
    ``reads_blocks`` is set).

    ``parts``: ``(buf, start, ends)`` each, ``ends`` the positions in ``buf`` of the newlines that end
    the part's lines (an int64 array, at least one): its lines are ``buf[start:ends[0]]``,
    ``buf[ends[0] + 1:ends[1]]`` ... ``cr``: a ``\\r`` was read up to here, so a line's final ``\\r`` is
    not its own (cut, as ``iter_lines`` cuts it). Otherwise it behaves as the list of its lines
    (``len``, indexing, slicing, iteration), which are cut once, on first use (an index alone cuts
    its own line)."""

    __slots__ = ("parts", "cr", "_n", "_lines")

    def __init__(self, parts: list[tuple[bytes, int, Any]], cr: bool = False):
        self.parts = parts
        self.cr = cr
        self._n = sum(len(ends) for _, _, ends in parts)
        self._lines: list[bytes] | None = None

    @classmethod
    def of(cls, data: bytes) -> "LineBlock":
        """The lines of ``data`` as ``data.split(b"\\n")`` gives them (no empty line after a final newline;
        a final ``\\r`` cut from each, where ``data`` holds one): a raw message of the worker's."""
        ends = np.flatnonzero(np.frombuffer(data, dtype=np.uint8) == 10)
        parts: list[tuple[bytes, int, Any]] = [(data, 0, ends)] if len(ends) else []
        tail = int(ends[-1]) + 1 if len(ends) else 0
        if tail < len(data):  # the last line, with no newline after it: copied with one
            parts.append((data[tail:] + b"\n", 0, np.array([len(data) - tail], dtype=ends.dtype)))
        return cls(parts, b"\r" in data)

    def lines(self) -> list[bytes]:
        """Every line, as ``iter_lines`` would have handed it (line endings removed)."""
        if self._lines is None:
            out: list[bytes] = []
            for buf, start, ends in self.parts:
                out += buf[start:int(ends[-1])].split(b"\n")
            if self.cr:
                out = [line[:-1] if line.endswith(b"\r") else line for line in out]
            self._lines = out
        return self._lines

    def __len__(self) -> int:
        return self._n

    def __iter__(self):
        return iter(self.lines())

    def __getitem__(self, i):
        if self._lines is not None or type(i) is not int:
            return self.lines()[i]
        if i < 0:
            i += self._n
        if not 0 <= i < self._n:
            raise IndexError("line index out of range")
        for buf, start, ends in self.parts:  # one line (a dead letter's raw bytes): cut alone
            if i < len(ends):
                line = buf[(int(ends[i - 1]) + 1 if i else start):int(ends[i])]
                return line[:-1] if self.cr and line.endswith(b"\r") else line
            i -= len(ends)
        raise IndexError("line index out of range")  # pragma: no cover


class Parser:
    """Base of every format parser. One instance per input stream (it may keep join state)."""

    name: ClassVar[str]  # the format name: `--format NAME`, the `source` of its events
    kind: ClassVar[str]  # the normalized kind it produces
    description: ClassVar[str] = ""
    # "lines": one record per line. "document": the whole input is one JSON document
    # (kubectl's pod list, a JSON job registry) and parse_record sees all of it.
    framing: ClassVar[str] = "lines"
    # Whether parse_batch takes a chunk's lines as a LineBlock (the blocks read, not a bytes object
    # per line): the readers of files then hand it one (streams/decode.py's iter_blocks).
    reads_blocks: ClassVar[bool] = False

    class Options(StrictModel):
        """Per-format options, the `parsers.<name>` section of the config."""

    def __init__(self, options: StrictModel | dict | None = None, hasher: Hasher | None = None):
        if options is None:
            options = self.Options()
        elif isinstance(options, dict):
            options = self.Options(**options)
        self.options = options
        self.hasher = hasher or Hasher()
        self.stats = ParseStats()
        self._dead: list[DeadLetter] = []
        self._origin = "-"
        self._line = 0
        # The streaming pipeline turns this on: every event gets an ``id`` from where it was
        # read ("<origin>:<line>", ".<k>" for the k-th event of one record), so that a record
        # read twice (an at-least-once redelivery) writes the same rows, not new ones.
        self.stamp_ids = False
        # What names the input as a whole, across the chunks and messages it arrives in (the
        # worker: "<topic>:<partition>(<file>)"); ids built from an event's own key use it.
        # The origin of a chunk stands in when unset.
        self.stream: str | None = None

    # -- to implement ---------------------------------------------------------------------
    @classmethod
    def sniff(cls, head: bytes, lines: list[bytes]) -> bool:
        """Whether a file whose first bytes are ``head`` (first non-blank ``lines``) is this format."""
        raise NotImplementedError

    def parse_record(self, raw: bytes) -> dict | list[dict] | None:
        raise NotImplementedError

    def finish(self) -> list[dict]:
        """Events still held by a join at the end of the input."""
        return []

    def id_suffix(self, event: dict, k: int) -> str:
        """What tells apart the events one record emits, in their ids (their position by default).

        A parser whose record emits a set of joined events whose order depends on what it read
        before (DCGM closing the groups of a scrape) names them by content instead, so that a
        parse restarted mid-stream gives each the id the first parse gave it.
        """
        return str(k)

    def event_key(self, event: dict) -> str | None:
        """The event's own identity in its input, when the format has one (None: by position).

        A format whose records repeat one identity across several lines (the stages of a
        Kubernetes audit event) names its event by it: which line emits the event depends on
        what the parser remembered, which a restarted parse has forgotten.
        """
        return None

    def holds_state(self) -> bool:
        """Whether records already read are still needed by what follows (an open join or table).

        The worker does not acknowledge a Kafka message while its parser holds state: after a
        restart the parser must see those records again, or it would emit part of a join.
        """
        return False

    def _key_id(self, event: dict, stream: str) -> None:
        key = self.event_key(event)
        if key is not None:
            event["id"] = f"{stream}#{key}"

    # -- helpers for subclasses ---------------------------------------------------------
    def note(self, counter: str, n: int = 1) -> None:
        self.stats.notes[counter] = self.stats.notes.get(counter, 0) + n

    def reject(self, raw: bytes, reason: str, item: int | None = None) -> None:
        """Dead-letter one item of the current record (the rest of the record goes on)."""
        self._dead.append(DeadLetter(self.name, self._origin, self._line, reason, raw, item))
        self.stats.dead_letters += 1

    def record_failed(self, dead: list[DeadLetter], origin: str, line: int, error: Exception, raw: bytes) -> None:
        """A whole record failed: its dead letter, with what ``error`` says as the reason."""
        dead.append(DeadLetter(self.name, origin, line, describe(error), raw))
        self.stats.dead_letters += 1
        self.stats.failed += 1

    def each_item(self, items: list, one: Callable[[Any], dict | list[dict]]) -> list[dict]:
        """The events of every item of a JSON array (a Kong batch, an audit EventList, a job list).

        ``one`` turns an item into its event(s) and raises on a bad one (including an item
        that is not an object); a bad item is dead-lettered alone, with its index, and the
        others are kept.
        """
        out: list[dict] = []
        for i, item in enumerate(items):
            try:
                r = one(item)
            except Exception as e:  # one bad item must not cost the others
                self.reject(dump_item(item), describe(e), item=i)
                continue
            if type(r) is dict:
                out.append(r)
            else:
                out.extend(r)
        return out

    def object_or_array(self, raw: bytes, one: Callable[[dict], dict], record: str,
                        item: str) -> dict | list[dict] | None:
        """A line holding one JSON object, or an array of them (a batch), to events.

        ``record`` names what an object is (in the error for a line that is neither), ``item``
        what an array element is; an element that is not an object, or that ``one`` rejects,
        is dead-lettered alone; an empty array is not data.
        """
        doc = orjson.loads(raw)
        if type(doc) is dict:
            return one(doc)
        if type(doc) is not list:
            raise ParseError(f"expected {record} (a JSON object) or an array of them, got a JSON {type(doc).__name__}")
        if not doc:
            return None

        def checked(element: Any) -> dict:
            if type(element) is not dict:
                raise ParseError(f"{item} is a JSON {type(element).__name__}, not an object")
            return one(element)

        return self.each_item(doc, checked)

    def principal(self, raw: Any, secret: bool) -> str | None:
        """A principal value as found in a record: credentials are hashed, ids kept."""
        if raw is None or raw == "" or raw == "-":
            return None
        if not isinstance(raw, str):
            raw = str(raw)
        return self.hasher.principal(raw) if secret else raw

    # -- the loop -----------------------------------------------------------------------
    def parse_chunk(self, records: list[bytes], origin: str, first_line: int,
                    events: list[dict], dead: list[DeadLetter]) -> None:
        """Parse ``records`` (consecutive, starting at line ``first_line`` of ``origin``).

        Events are appended to ``events`` and failures to ``dead``; nothing raises.
        """
        self._origin = origin
        self._dead = dead
        stats = self.stats
        parse = self.parse_record
        stamp = self.stamp_ids
        keyed = stamp and type(self).event_key is not Parser.event_key
        stream = self.stream if self.stream is not None else origin
        n_before = len(events)
        append, extend = events.append, events.extend
        line = first_line - 1
        for raw in records:
            line += 1
            self._line = line
            if not raw or raw.isspace():
                stats.skipped += 1
                continue
            try:
                out = parse(raw)
            except Exception as e:  # any failure of one record is that record's problem
                self.record_failed(dead, origin, line, e, raw)
                continue
            if out is None:
                stats.skipped += 1
                continue
            stats.parsed += 1
            if type(out) is dict:
                if stamp:
                    out["id"] = f"{origin}:{line}"
                    if keyed:
                        self._key_id(out, stream)
                append(out)
            else:
                if stamp:
                    suffix = self.id_suffix
                    for k, e in enumerate(out):
                        e["id"] = f"{origin}:{line}.{suffix(e, k)}"
                        if keyed:
                            self._key_id(e, stream)
                extend(out)
        stats.records += len(records)
        stats.events += len(events) - n_before

    def parse_batch(self, records: list[bytes], origin: str, first_line: int,
                    dead: list[DeadLetter]) -> EventBatch:
        """:meth:`parse_chunk`'s events as an :class:`~ramparts.events.EventBatch`, in record order.

        What the readers of files and raw topics call. A parser that writes its events as
        columns (:class:`~ramparts.events.Columns`, no dict per event) overrides this; the same
        records must give the same events, ids, dead letters and counts as :meth:`parse_chunk`.
        """
        events: list[dict] = []
        self.parse_chunk(records, origin, first_line, events, dead)
        return EventBatch(events)

    def flush(self, events: list[dict], dead: list[DeadLetter]) -> None:
        self._dead = dead
        try:
            out = self.finish()
        except Exception as e:
            dead.append(DeadLetter(self.name, self._origin, self._line, "at end of input: " + describe(e), b""))
            self.stats.dead_letters += 1
            return
        if self.stamp_ids:
            stream = self.stream if self.stream is not None else self._origin
            for k, e in enumerate(out):
                e["id"] = f"{self._origin}:end.{self.id_suffix(e, k)}"
                self._key_id(e, stream)
        events.extend(out)
        self.stats.events += len(out)


def describe(e: BaseException) -> str:
    """A reason for a dead-letter record: what went wrong, in one line."""
    if isinstance(e, ParseError):
        return e.message
    if isinstance(e, orjson.JSONDecodeError):
        return f"invalid JSON: {e}"
    if isinstance(e, UnicodeDecodeError):
        return f"not UTF-8 text (byte {e.start}: {e.reason})"
    if isinstance(e, KeyError):
        return f"missing field {e.args[0]!r}"
    if isinstance(e, RecursionError):
        return "record nested too deeply"
    if isinstance(e, ValueError) and str(e):
        return str(e)[:300]
    text = str(e) or type(e).__name__
    return f"{type(e).__name__}: {text}"[:300]


# -- small, shared coercions ---------------------------------------------------------------
def as_int(v: Any, what: str) -> int | None:
    """An integer field that may come as a number or a numeric string; ``-`` and ``""`` mean absent."""
    if v is None or v == "-" or v == "":
        return None
    if isinstance(v, bool):
        raise ParseError(f"{what}: expected an integer, got a boolean")
    if isinstance(v, int):
        return v
    if isinstance(v, float):
        if v != v or v in (float("inf"), float("-inf")):
            raise ParseError(f"{what}: expected an integer, got {v}")
        return int(v)
    if isinstance(v, str):
        try:
            return int(v)
        except ValueError:
            try:
                return int(float(v))
            except ValueError:
                raise ParseError(f"{what}: expected an integer, got {v[:40]!r}") from None
    raise ParseError(f"{what}: expected an integer, got {type(v).__name__}")


def as_float(v: Any, what: str) -> float | None:
    if v is None or v == "-" or v == "":
        return None
    if isinstance(v, bool):
        raise ParseError(f"{what}: expected a number, got a boolean")
    if isinstance(v, (int, float)):
        f = float(v)
    elif isinstance(v, str):
        try:
            f = float(v)
        except ValueError:
            raise ParseError(f"{what}: expected a number, got {v[:40]!r}") from None
    else:
        raise ParseError(f"{what}: expected a number, got {type(v).__name__}")
    if f != f or f in (float("inf"), float("-inf")):
        raise ParseError(f"{what}: expected a finite number, got {v!r}")
    return f


def as_str(v: Any, what: str, absent: tuple[str, ...] = ("", "-")) -> str | None:
    """A text field; numbers become text; ``absent`` spellings (default ``""`` and ``-``) are None."""
    if v is None or v in absent:
        return None
    if isinstance(v, str):
        return v
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        return str(v)
    raise ParseError(f"{what}: expected text, got {type(v).__name__}")


def as_object(v: Any, what: str) -> dict:
    if not isinstance(v, dict):
        raise ParseError(f"{what}: expected a JSON object, got {type(v).__name__}")
    return v


def dig(obj: Any, path: str) -> Any:
    """``dig(rec, "consumer.username")``: a dotted path into nested objects, None if absent.

    A key that itself contains dots (Falco's ``k8s.pod.name``) is tried whole first.
    """
    if isinstance(obj, dict) and path in obj:
        return obj[path]
    for part in path.split("."):
        if not isinstance(obj, dict):
            return None
        obj = obj.get(part)
        if obj is None:
            return None
    return obj


def sniff_json_lines(lines: list[bytes], accepts: Callable[[dict], bool], *,
                     first_of_array: bool = False) -> bool:
    """Whether most sample lines are JSON objects that ``accepts`` recognises.

    A line that is not JSON, or not an object, counts against. With ``first_of_array`` a line
    holding an array (a batch) is judged by its first item. ``accepts`` may assume a dict and
    nothing else: an exception in it counts as a no.

    >>> sniff_json_lines([b'{"rule": "x"}', b'not json'], lambda d: "rule" in d)
    False
    >>> sniff_json_lines([b'[{"rule": "x"}]', b'{"rule": "y"}'], lambda d: "rule" in d, first_of_array=True)
    True
    """
    if not lines:
        return False
    hits = 0
    for line in lines:
        try:
            doc = orjson.loads(line)
        except orjson.JSONDecodeError:
            continue
        if first_of_array and type(doc) is list and doc:
            doc = doc[0]
        if type(doc) is dict:
            try:
                hits += bool(accepts(doc))
            except Exception:
                pass
    return 2 * hits > len(lines)


def dump_item(item: Any) -> bytes:
    """An item's bytes for its dead letter (items come from JSON, so this rarely falls back)."""
    try:
        return orjson.dumps(item)
    except Exception:
        return repr(item).encode("utf-8", "replace")


def load_json_object(raw: bytes) -> dict:
    doc = orjson.loads(raw)
    if not isinstance(doc, dict):
        raise ParseError(f"expected a JSON object, got a JSON {type(doc).__name__}")
    return doc


def is_utf8(raw: bytes) -> bool:
    """Whether ``raw`` decodes as UTF-8 (the fast paths hand a line to msgspec only then, so that
    a line that is not UTF-8 gets the general path's dead letter)."""
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True
