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
    p.add_argument("--floors", action="store_true",
                   help="also measure what bounds JSON parsing on this machine (orjson alone, a bare event "
                        "dict, a minimal msgspec decode) over the envoy_json corpus")
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


def _floor_variants():
    """Reference loops over Envoy JSON lines that do less than the parser: what bounds it."""
    from typing import Annotated, Literal

    import msgspec
    import orjson
    from msgspec.structs import asdict

    from ramparts.timeutil import parse_iso

    loads = orjson.loads

    def orjson_only(chunk):
        return [loads(line) for line in chunk]

    def orjson_bare_event(chunk):
        out = []
        for line in chunk:
            g = loads(line).get
            out.append({
                "kind": "request", "ts": g("start_time"), "source": "envoy_json", "principal": g("x_api_key"),
                "src_ip": g("x_forwarded_for"), "model": g("genai_model_name"), "path": g("path"),
                "status": g("response_code"), "latency_ms": g("duration"), "tokens_in": g("genai_tokens_input"),
                "tokens_out": g("genai_tokens_output"), "method": g("method"), "protocol": g("protocol"),
                "response_flags": g("response_flags"), "bytes_in": g("bytes_received"),
                "bytes_out": g("bytes_sent"), "upstream_ms": g("upstream_service_time"),
                "user_agent": g("user_agent"), "request_id": g("request_id"), "authority": g("authority"),
                "upstream_host": g("upstream_host"), "backend": g("genai_backend_name"), "model_override": None})
        return out

    absent = Literal["-", ""]
    count = Annotated[int, msgspec.Meta(ge=0)] | absent | None
    fields = [("kind", str, "request"), ("source", str, "envoy_json"), ("ts", str | None, None),
              ("principal", str | None, None), ("src_ip", str | None, None), ("model", str | None, None),
              ("path", str | None, None), ("status", Annotated[int, msgspec.Meta(ge=0, le=999)] | absent | None, None),
              ("latency_ms", float | absent | None, None), ("tokens_in", count, None), ("tokens_out", count, None),
              ("method", str | None, None), ("response_flags", str | None, None), ("bytes_in", count, None),
              ("bytes_out", count, None), ("user_agent", str | None, None), ("request_id", str | None, None)]
    rename = {"kind": "ramparts:kind", "source": "ramparts:source", "ts": "start_time", "principal": "x_api_key",
              "src_ip": "x_forwarded_for", "model": "genai_model_name", "status": "response_code",
              "latency_ms": "duration", "tokens_in": "genai_tokens_input", "tokens_out": "genai_tokens_output",
              "bytes_in": "bytes_received", "bytes_out": "bytes_sent"}
    decode = msgspec.json.Decoder(msgspec.defstruct("Minimal", fields, rename=rename, gc=False)).decode

    def msgspec_minimal(chunk):
        out = []
        for line in chunk:
            d = asdict(decode(line))
            d["ts"] = parse_iso(d["ts"])
            out.append(d)
        return out

    from ramparts.redact import Hasher
    from ramparts.streams.parsers.envoy_json import EnvoyJsonParser

    class GeneralPathOnly(EnvoyJsonParser):
        def _compile(self, keyset, keys):  # no msgspec fast path: every line takes the orjson path
            return None

    general = GeneralPathOnly(hasher=Hasher(b"bench"))

    def envoy_json_general_path(chunk):
        events: list[dict] = []
        general.parse_chunk(chunk, "bench", 1, events, [])
        return events

    return [("orjson.loads only", orjson_only),
            ("orjson.loads + bare 23-key event dict, no checks", orjson_bare_event),
            ("msgspec decode + asdict, 17 fields, ts only", msgspec_minimal),
            ("envoy_json with its fast path off (general path only)", envoy_json_general_path)]


def measure_floors(lines: list[bytes], repeat: int) -> list[tuple[str, float]]:
    chunks = [lines[i:i + CHUNK] for i in range(0, len(lines), CHUNK)]
    out = []
    for name, fn in _floor_variants():
        rates = []
        for run in range(repeat + 1):
            t0 = time.perf_counter()
            for chunk in chunks:
                fn(chunk)
            if run:
                rates.append(len(lines) / (time.perf_counter() - t0))
        out.append((name, statistics.median(rates)))
    return out


def run(args) -> int:
    from .cores import cores, pin

    pin(0, cores()[0])
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
    if args.floors:
        print()
        print("| reference loop over the envoy_json corpus | lines/s (median) |")
        print("|---|---:|")
        for name, rate in measure_floors(corpus.lines("envoy_json", args.lines), args.repeat):
            print(f"| {name} | {rate:,.0f} |", flush=True)
    return 0
