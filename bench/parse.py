"""``ramparts bench parse``: lines per second per format, one core.

Each format's parser runs over the same deterministic synthetic lines (``bench/corpus.py``)
in the chunks the pipeline uses (16,384 lines), each chunk's events handed on and dropped as
the pipeline does; the figure is the median over ``--repeat`` runs, after one warm-up run,
of lines / wall time of ``Parser.parse_chunk``, excluding generation. The process is pinned
to one CPU so the figure is a per-core figure on any machine.
"""

from __future__ import annotations

import os
import platform
import statistics
import sys
import time

from ramparts.redact import Hasher

from . import corpus

# Issue "Foundation": >= 300k lines/s for JSON gateway logs, >= 200k lines/s for NGINX combined.
TARGETS = {"envoy_json": 300_000, "kong": 300_000, "litellm": 300_000, "nginx_combined": 200_000}
CHUNK = 16384


def add_arguments(sub) -> None:
    p = sub.add_parser("parse", help="parser throughput, lines per second per format on one core")
    p.add_argument("--lines", type=int, default=200_000, help="lines per format (default 200000)")
    p.add_argument("--repeat", type=int, default=5, help="runs per format; the median is reported (default 5)")
    p.add_argument("--format", action="append", dest="formats", metavar="NAME",
                   help=f"only this format (repeatable); default all of: {', '.join(corpus.GENERATORS)}")
    p.set_defaults(func=run)


def measure(fmt: str, lines: list[bytes], repeat: int) -> tuple[float, int, int]:
    """Median lines/s, events and dead letters of the last run."""
    from ramparts.streams.decode import make_parser

    chunks = [lines[i:i + CHUNK] for i in range(0, len(lines), CHUNK)]
    rates = []
    n_events = n_dead = 0
    for run in range(repeat + 1):  # run 0 warms caches and the allocator; it is not counted
        parser = make_parser(fmt, hasher=Hasher(b"bench"))
        n_events = n_dead = 0
        t0 = time.perf_counter()
        for i, chunk in enumerate(chunks):
            events: list[dict] = []
            dead: list = []
            parser.parse_chunk(chunk, "bench", i * CHUNK + 1, events, dead)
            n_events += len(events)
            n_dead += len(dead)
        events, dead = [], []
        parser.flush(events, dead)
        elapsed = time.perf_counter() - t0
        n_events += len(events)
        n_dead += len(dead)
        if run:
            rates.append(len(lines) / elapsed)
    return statistics.median(rates), n_events, n_dead


def run(args) -> int:
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
    formats = args.formats or list(corpus.GENERATORS)
    unknown = [f for f in formats if f not in corpus.GENERATORS]
    if unknown:
        print(f"ramparts bench parse: no corpus for {', '.join(unknown)}; known: {', '.join(corpus.GENERATORS)}",
              file=sys.stderr)
        return 2
    print(f"# ramparts bench parse: {args.lines} lines per format, median of {args.repeat} runs "
          f"after a warm-up, one core, chunks of {CHUNK} lines")
    print(f"# python {platform.python_version()}, {platform.machine()}, {os.cpu_count()} CPUs on the machine")
    print()
    print("| format | lines/s (median) | events | dead letters | target |")
    print("|---|---:|---:|---:|---|")
    for fmt in formats:
        lines = corpus.lines(fmt, args.lines)
        rate, n_events, n_dead = measure(fmt, lines, args.repeat)
        target = TARGETS.get(fmt)
        verdict = "" if target is None else (f">= {target // 1000}k: {'met' if rate >= target else 'MISSED'}")
        print(f"| {fmt} | {rate:,.0f} | {n_events} | {n_dead} | {verdict} |", flush=True)
    return 0
