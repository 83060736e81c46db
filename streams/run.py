"""Files to normalized events and dead letters, with a per-format account of every record.

``ramparts parse`` is this module; replay builds on :func:`iter_file_batches`.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import BinaryIO

import orjson

from ramparts.events import EventBatch, to_wire
from ramparts.redact import Hasher

from .decode import UnknownFormat, decode_file, iter_lines
from .parsers import DeadLetter, ParseStats

DEFAULT_DEAD_LETTER = "ramparts-dead-letter.jsonl"
UNRECOGNISED = "unrecognised"


@dataclass
class ParseReport:
    per_format: dict[str, ParseStats] = field(default_factory=dict)
    files_per_format: dict[str, int] = field(default_factory=dict)
    failed_files: list[tuple[str, str]] = field(default_factory=list)  # (path, reason)
    dead_letter_path: str | None = None

    def account(self, fmt: str, stats: ParseStats) -> None:
        self.per_format.setdefault(fmt, ParseStats()).add(stats)
        self.files_per_format[fmt] = self.files_per_format.get(fmt, 0) + 1

    @property
    def totals(self) -> ParseStats:
        t = ParseStats()
        for s in self.per_format.values():
            t.add(s)
        return t

    def render(self) -> str:
        rows = [("format", "files", "records", "events", "dead-lettered", "skipped")]
        for fmt, s in sorted(self.per_format.items()):
            rows.append((fmt, str(self.files_per_format[fmt]), str(s.records), str(s.events),
                         str(s.dead_letters), str(s.skipped)))
        t = self.totals
        rows.append(("total", str(sum(self.files_per_format.values())), str(t.records), str(t.events),
                     str(t.dead_letters), str(t.skipped)))
        widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
        lines = ["  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths)))
                 for r in rows]
        out = ["ramparts parse: summary", *lines]
        for fmt, s in sorted(self.per_format.items()):
            if s.notes:
                out.append(f"  {fmt}: " + ", ".join(f"{k}={v}" for k, v in sorted(s.notes.items())))
        if t.dead_letters:
            out.append(f"{t.dead_letters} record(s) dead-lettered -> {self.dead_letter_path}")
        for path, reason in self.failed_files:
            out.append(f"error: {path}: {reason}")
        return "\n".join(out) + "\n"


class DeadLetterWriter:
    """Appends dead letters as JSON lines; the file is created only when the first one comes."""

    def __init__(self, path: str, hasher: Hasher):
        self.path = path
        self.hasher = hasher
        self._f: BinaryIO | None = None
        self.count = 0

    def write(self, dead: list[DeadLetter]) -> None:
        if not dead:
            return
        if self._f is None:
            self._f = open(self.path, "ab")
        self._f.write(b"".join(orjson.dumps(d.to_dict(self.hasher)) + b"\n" for d in dead))
        self.count += len(dead)

    def close(self) -> None:
        if self._f is not None:
            self._f.close()


def write_events(out: BinaryIO, batch: EventBatch) -> None:
    dumps = orjson.dumps
    out.write(b"".join(dumps(to_wire(e)) + b"\n" for e in batch.events))


def iter_file_batches(path: str, fmt: str, config, hasher: Hasher, report: ParseReport,
                      dead_out: DeadLetterWriter, stamp_ids: bool = False,
                      on_read=None) -> Iterator[EventBatch]:
    """Batches of one file's events; dead letters go to ``dead_out``; the report is updated."""
    try:
        parser, chunks = decode_file(path, fmt, config, hasher, stamp_ids=stamp_ids, on_read=on_read)
    except UnknownFormat as e:
        # Nothing is dropped silently: an unrecognised file goes to the dead letters whole.
        report.failed_files.append((path, e.message))
        stats = ParseStats()
        with e.stream as stream:
            for first, lines in iter_lines(stream):
                dead = [DeadLetter(UNRECOGNISED, path, first + i, "format not recognised", raw)
                        for i, raw in enumerate(lines) if raw.strip()]
                stats.records += len(lines)
                stats.dead_letters += len(dead)
                stats.failed += len(dead)
                stats.skipped += len(lines) - len(dead)
                dead_out.write(dead)
        report.account(UNRECOGNISED, stats)
        return
    except OSError as e:
        report.failed_files.append((path, e.strerror or str(e)))
        return
    try:
        for chunk in chunks:
            dead_out.write(chunk.dead_letters)
            if chunk.events:
                yield chunk.events
    except OSError as e:
        report.failed_files.append((path, f"read failed: {e.strerror or e}"))
    finally:
        report.account(parser.name, parser.stats)


def parse_files(paths: list[str], fmt: str = "auto", config=None, out: BinaryIO | None = None,
                dead_letter_path: str | None = None) -> ParseReport:
    hasher = Hasher(config.resolved_hash_key() if config is not None else None)
    hasher.warn_if_development_key()
    report = ParseReport(dead_letter_path=dead_letter_path or DEFAULT_DEAD_LETTER)
    dead_out = DeadLetterWriter(report.dead_letter_path, hasher)
    try:
        for path in paths:
            if path != "-" and os.path.isdir(path):
                report.failed_files.append((path, "is a directory"))
                continue
            for batch in iter_file_batches(path, fmt, config, hasher, report, dead_out):
                if out is not None:
                    write_events(out, batch)
    finally:
        dead_out.close()
    return report
