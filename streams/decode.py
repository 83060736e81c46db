"""Files (or stdin) to batches of normalized events: framing, format detection, chunking.

This is where an event enters Ramparts from a file. ``ramparts parse`` prints what it
yields; replay and ``ramparts ship`` feed the same batches onward. A line format's chunks are
lists of lines (:func:`iter_lines`), or for a parser that reads blocks (``Parser.reads_blocks``:
the Envoy JSON parser) the same lines as :class:`LineBlock`\\ s (:func:`iter_blocks`).
"""

from __future__ import annotations

import gzip
import io
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np

from ramparts.errors import ParseError
from ramparts.events import EventBatch
from ramparts.redact import Hasher

from .parsers import PARSER_CLASSES, DeadLetter, Parser, get_parser_class
from .parsers.base import LineBlock

HEAD_BYTES = 65536
SNIFF_LINES = 5
CHUNK_LINES = 16384
# Blocks of 1 MB: split as fast per line as 4 MB blocks or faster (0.47 against 0.50 µs per Envoy line,
# docs/benchmarks.md, eighth session), in less memory.
READ_BYTES = 1 << 20


@dataclass(slots=True)
class Chunk:
    events: EventBatch
    dead_letters: list[DeadLetter]


def open_input(path: str) -> BinaryIO:
    """A binary stream for a path, ``-`` (stdin) or a ``.gz`` file."""
    if path == "-":
        return sys.stdin.buffer
    f = open(path, "rb")
    if path.endswith(".gz"):
        return gzip.GzipFile(fileobj=f)  # type: ignore[return-value]
    return f


def sniff_lines(head: bytes) -> list[bytes]:
    lines = []
    # The last line of the head may be cut in the middle: leave it out unless it is all.
    body = head if len(head) < HEAD_BYTES else head[: head.rfind(b"\n") + 1]
    for line in body.split(b"\n"):
        line = line.rstrip(b"\r")
        if line.strip():
            lines.append(line)
            if len(lines) >= SNIFF_LINES:
                break
    return lines


def detect_format(head: bytes) -> str | None:
    """The name of the first registered format whose ``sniff`` accepts this head, or None."""
    lines = sniff_lines(head)
    for cls in PARSER_CLASSES:
        try:
            if cls.sniff(head, lines):
                return cls.name
        except Exception:  # a sniffer must never break detection for the others
            continue
    return None


class UnknownFormat(ParseError):
    """No registered format recognises the input; ``stream`` still holds all of it."""

    def __init__(self, message: str, stream: BinaryIO | None = None):
        super().__init__(message)
        self.stream = stream


def make_parser(fmt: str, config=None, hasher: Hasher | None = None) -> Parser:
    cls = get_parser_class(fmt)
    options = config.parser_options(fmt) if config is not None else None
    return cls(options, hasher)


def _blocks(stream: BinaryIO) -> Iterator[tuple[bytes, bool]]:
    """The stream's blocks as read, each with whether any byte read so far is a ``\\r``: until one
    is, no line can end with one, and the lines are handed on as split (one search of each block
    in C instead of a test of every line)."""
    cr = False
    while block := stream.read(READ_BYTES):
        cr = cr or b"\r" in block
        yield block, cr


def iter_lines(stream: BinaryIO, chunk_lines: int = CHUNK_LINES) -> Iterator[tuple[int, list[bytes]]]:
    """``(first_line_number, lines)`` chunks, line endings removed; reads big blocks, not lines."""
    carry = b""
    line_no = 1
    pending: list[bytes] = []
    cr = False  # (an empty stream has no block)
    for block, cr in _blocks(stream):
        # The block is split as read and the line cut by the previous block joined to its first
        # line: no copy of the whole block with the carry in front (one per block).
        parts = block.split(b"\n")
        if carry:
            parts[0] = carry + parts[0]
        carry = parts.pop()
        if pending:
            pending.extend(parts)
        else:
            pending = parts
        while len(pending) >= chunk_lines:
            out = pending[:chunk_lines]
            del pending[:chunk_lines]
            yield line_no, _strip_cr(out) if cr else out
            line_no += len(out)
    if carry:
        pending.append(carry)
    if pending:
        yield line_no, _strip_cr(pending) if cr else pending


def iter_blocks(stream: BinaryIO, chunk_lines: int = CHUNK_LINES) -> Iterator[tuple[int, LineBlock]]:
    """:func:`iter_lines`' chunks (the same lines, the same numbers) as :class:`LineBlock`\\ s: regions of
    the blocks read, with their newlines' positions (found with numpy), and no bytes object per line.

    For a parser that reads a block of lines at once (``Parser.reads_blocks``): the Envoy parser decodes a
    slice of a block's lines with one msgspec call. The line cut by a block's end is joined to the rest of
    it (one short copy); a chunk's last part is cut at its last line (the same block, two regions).
    """
    carry = b""
    line_no = 1
    parts: list[tuple[bytes, int, np.ndarray]] = []
    n = 0  # lines in parts
    cr = False
    for block, cr in _blocks(stream):
        ends = np.flatnonzero(np.frombuffer(block, dtype=np.uint8) == 10)
        if not len(ends):
            carry += block
            continue
        if carry:
            first = int(ends[0]) + 1
            head = carry + block[:first]
            parts.append((head, 0, np.array([len(head) - 1], dtype=ends.dtype)))
            n += 1
            if len(ends) > 1:
                parts.append((block, first, ends[1:]))
                n += len(ends) - 1
        else:
            parts.append((block, 0, ends))
            n += len(ends)
        carry = block[int(ends[-1]) + 1:]
        while n >= chunk_lines:
            out, rest, k = [], [], chunk_lines
            for part in parts:
                m = len(part[2])
                if k >= m:
                    out.append(part)
                    k -= m
                elif k:
                    buf, start, e = part
                    out.append((buf, start, e[:k]))
                    rest.append((buf, int(e[k - 1]) + 1, e[k:]))
                    k = 0
                else:
                    rest.append(part)
            yield line_no, LineBlock(out, cr)
            line_no += chunk_lines
            n -= chunk_lines
            parts = rest
    if carry:
        tail = carry + b"\n"
        parts.append((tail, 0, np.array([len(carry)], dtype=np.intp)))
        n += 1
    if n:
        yield line_no, LineBlock(parts, cr)


def _strip_cr(lines: list[bytes]) -> list[bytes]:
    return [l[:-1] if l.endswith(b"\r") else l for l in lines]


def decode_stream(stream: BinaryIO, parser: Parser, origin: str,
                  chunk_lines: int = CHUNK_LINES) -> Iterator[Chunk]:
    """Parse a whole stream with one parser, chunk by chunk, ending with the parser's flush."""
    if parser.framing == "document":
        events: list[dict] = []
        dead: list[DeadLetter] = []
        parser.parse_chunk([stream.read()], origin, 1, events, dead)
        parser.flush(events, dead)
        yield Chunk(EventBatch(events), dead)
        return
    for first, lines in (iter_blocks if parser.reads_blocks else iter_lines)(stream, chunk_lines):
        dead = []
        batch = parser.parse_batch(lines, origin, first, dead)
        yield Chunk(batch, dead)
    events, dead = [], []
    parser.flush(events, dead)
    if events or dead:
        yield Chunk(EventBatch(events), dead)


class _Wrapper(io.RawIOBase):
    """A readable stream over another; closing it closes the inner one (never stdin)."""

    def __init__(self, inner: BinaryIO):
        self._inner = inner

    def readable(self) -> bool:
        return True

    def close(self) -> None:
        if self._inner is not sys.stdin.buffer:
            self._inner.close()
        super().close()


class _Rewound(_Wrapper):
    """A stream whose first bytes (already read to detect the format) are served again."""

    def __init__(self, head: bytes, rest: BinaryIO):
        super().__init__(rest)
        self._head = head

    def read(self, n: int = -1) -> bytes:
        if self._head:
            if n is None or n < 0:
                data, self._head = self._head + self._inner.read(), b""
                return data
            data, self._head = self._head[:n], self._head[n:]
            return data
        return self._inner.read(n)


class _Counting(_Wrapper):
    """A stream that reports how many bytes were read from it (for progress bars)."""

    def __init__(self, inner: BinaryIO, on_read: Callable[[int], None]):
        super().__init__(inner)
        self._on_read = on_read

    def read(self, n: int = -1) -> bytes:
        data = self._inner.read(n)
        self._on_read(len(data))
        return data


def decode_file(path: str, fmt: str = "auto", config=None, hasher: Hasher | None = None,
                chunk_lines: int = CHUNK_LINES, stamp_ids: bool = False,
                on_read: Callable[[int], None] | None = None) -> tuple[Parser, Iterator[Chunk]]:
    """The parser chosen for a file and an iterator over its chunks.

    ``stamp_ids`` gives every event a position-based ``id`` (the streaming pipeline's
    idempotent writes need it); ``on_read`` is told the size of every block read from the
    file (decompressed bytes, for a .gz file).
    Raises :class:`UnknownFormat` when ``fmt`` is ``auto`` and no format recognises the file.
    """
    stream = open_input(path)
    if on_read is not None:
        stream = _Counting(stream, on_read)  # type: ignore[assignment]
    head = stream.read(HEAD_BYTES)
    if fmt == "auto":
        detected = detect_format(head)
        if detected is None:
            raise UnknownFormat(
                f"cannot tell the format of {path}; pass --format NAME "
                f"(one of: {', '.join(c.name for c in PARSER_CLASSES)})",
                stream=_Rewound(head, stream))
        fmt = detected
    parser = make_parser(fmt, config, hasher)
    parser.stamp_ids = stamp_ids
    origin = "-" if path == "-" else str(Path(path))

    def chunks() -> Iterator[Chunk]:
        try:
            yield from decode_stream(_Rewound(head, stream), parser, origin, chunk_lines)
        finally:
            if stream is not sys.stdin.buffer:
                stream.close()

    return parser, chunks()


def parse_bytes(fmt: str | Parser, data: bytes, origin: str = "<bytes>", config=None,
                hasher: Hasher | None = None) -> tuple[EventBatch, list[DeadLetter], Parser]:
    """Parse an in-memory input whole: events, dead letters and the parser (for its stats).

    ``fmt`` is a format name, ``"auto"``, or a ready parser instance.
    """
    if isinstance(fmt, Parser):
        parser = fmt
    else:
        if fmt == "auto":
            detected = detect_format(data[:HEAD_BYTES])
            if detected is None:
                raise UnknownFormat(f"cannot tell the format of {origin}")
            fmt = detected
        parser = make_parser(fmt, config, hasher)
    events = EventBatch()
    dead: list[DeadLetter] = []
    for chunk in decode_stream(io.BytesIO(data), parser, origin):
        events.extend(chunk.events)
        dead.extend(chunk.dead_letters)
    return events, dead, parser
