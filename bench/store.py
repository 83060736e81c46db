"""``ramparts bench store``: rows per second into the ClickHouse store, one core.

Events come from the parsers over the synthetic corpus (``bench/corpus.py``), a mix of kinds
in the proportions below, with ids as the streaming pipeline gives them. Two figures:

* **encode** (CPU time): ``ClickHouseSink.write_events`` (routing, columns, extras) plus the body of every
  insert (the Arrow stream of an event table, ``arrow_columns`` + ``arrow_stream``; JSON rows,
  ``encode_rows``, for what Arrow does not take), i.e. all the Python work of storing, with no
  insert;
* **encode+insert**: the same into an embedded chdb store in a temporary directory, written
  in batches of 8192 events (as replay does); a table's rows are inserted when it holds
  ``max_batch_rows``, as in the worker, and the rest at the end. This includes ClickHouse's own work (reading
  the Arrow stream, sorting, writing parts), which runs in this process.

Each batch is handed over as a batch of columns (``events.columnar``: what a columnar parser
gives the pipeline, one ``Columns`` part per set of keys), or with ``dicts=True`` as the list of
dicts the parsers of lines give; it is made just before it is timed, so that its values are as
fresh as a parsed batch's. Each figure is the median of ``repeat`` runs after a warm-up run; CPU seconds are the
process's (user + system), which counts ClickHouse's threads too. The events are generated
before the clock starts and frozen out of the garbage collector's walks (``gc.freeze``), as
the pipeline's short-lived events would not be walked again and again.
"""

from __future__ import annotations

import gc
import random
import resource
import statistics
import tempfile
import time

from ramparts.redact import Hasher

from . import corpus

# Formats and how many events of each per 100: mostly gateway requests, as in production.
MIX = {"envoy_json": 40, "nginx_combined": 20, "kong": 10, "native": 15, "falco": 10, "docker_events": 5}


def make_events(n_events: int, seed: int = 7) -> list[dict]:
    """``n_events`` parsed events of the mix, each with a position id."""
    from ramparts.streams.decode import make_parser

    rng = random.Random(seed)
    events: list[dict] = []
    total = sum(MIX.values())
    for fmt, share in MIX.items():
        n = max(1, n_events * share // total)
        lines = [corpus.GENERATORS[fmt](i, rng) for i in range(n)]
        parser = make_parser(fmt, hasher=Hasher(b"bench"))
        out: list[dict] = []
        parser.parse_chunk(lines, f"{fmt}.log", 1, out, [])
        for i, e in enumerate(out):
            e["id"] = f"{fmt}.log:{i + 1}"
        events.extend(out)
    rng.shuffle(events)
    return events[:n_events]


def _fresh(chunk: list[dict], dicts: bool = False):
    # In the pipeline a batch is stored right after it was parsed, its values new and in the
    # CPU's caches; copies made just before the clock starts are in the same state.
    from ramparts.events import columnar

    fresh = [dict(e) for e in chunk]
    return fresh if dicts else columnar(fresh)


def _encode_buffers(sink) -> None:
    """Build the body of every insert the sink's buffers hold, and empty them (no insert)."""
    from ramparts.sinks.clickhouse.encoding import arrow_columns, arrow_stream, encode_rows
    from ramparts.sinks.clickhouse.schema import EVENT_TABLES

    for table, buf in sink._buffers.items():
        if buf:
            cols = buf.take(len(buf))
            data = arrow_columns(table, cols) if table in EVENT_TABLES.values() else None
            if data is not None:
                arrow_stream(data)
            else:
                encode_rows(list(zip(*cols)))


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


BATCH_EVENTS = 8192  # what replay hands the pipeline at a time


def bench_store(n_events: int = 100_000, repeat: int = 3, max_batch_rows: int = 20000, dicts: bool = False) -> dict:
    """Rows per second for encode-only and encode+insert into chdb (medians of ``repeat`` runs);
    ``dicts``: batches handed over as lists of dicts instead of columns."""
    from ramparts.sinks.clickhouse import ClickHouseSink

    events = make_events(n_events)
    # The pipeline's events live for one batch; these live for the whole benchmark. Frozen,
    # they are not walked by every garbage collection the benchmark's own allocations trigger.
    gc.collect()
    gc.freeze()
    chunks = [events[i:i + BATCH_EVENTS] for i in range(0, len(events), BATCH_EVENTS)]
    out: dict = {"events": len(events), "max_batch_rows": max_batch_rows, "mix": dict(MIX),
                 "batches": "lists of dicts" if dicts else "columns"}
    with tempfile.TemporaryDirectory(prefix="ramparts-bench-store-") as tmp:
        sink = ClickHouseSink(tmp, database="bench", max_batch_rows=max_batch_rows, flush_interval_seconds=3600)
        try:
            enc_rates, enc_ns = [], []
            for run in range(repeat + 1):
                dt = 0.0
                for chunk in chunks:
                    fresh = _fresh(chunk, dicts)
                    t0 = _cpu()
                    sink.write_events(fresh)
                    _encode_buffers(sink)
                    dt += _cpu() - t0
                if run:
                    enc_rates.append(len(events) / dt)
                    enc_ns.append(dt / len(events) * 1e9)
            ins_rates, ins_cpu = [], []
            for run in range(repeat + 1):
                dt = dc = 0.0
                for i, chunk in enumerate(chunks):
                    fresh = _fresh(chunk, dicts)
                    t0, c0 = time.perf_counter(), _cpu()
                    sink.write_events(fresh)  # a table's rows go when it holds max_batch_rows
                    if i == len(chunks) - 1:
                        sink.flush()
                    dt, dc = dt + time.perf_counter() - t0, dc + _cpu() - c0
                if run:
                    ins_rates.append(len(events) / dt)
                    ins_cpu.append(dc / len(events) * 1e9)
            out["stored_rows"] = sum(sink.counts().values())
        finally:
            sink.close()
            gc.unfreeze()
    out["encode_rows_per_s"] = round(statistics.median(enc_rates))
    out["encode_ns_per_row"] = round(statistics.median(enc_ns))
    out["encode_insert_rows_per_s"] = round(statistics.median(ins_rates))
    out["encode_insert_cpu_ns_per_row"] = round(statistics.median(ins_cpu))
    return out


def add_arguments(sub) -> None:
    p = sub.add_parser("store", help="ClickHouse sink: rows/s to encode, and to encode and insert into chdb")
    p.add_argument("--events", type=int, default=100_000, help="events per run (default 100000)")
    p.add_argument("--repeat", type=int, default=3, help="runs; medians are reported (default 3)")
    p.add_argument("--dicts", action="store_true",
                   help="hand the sink lists of dicts (the parsers of lines) instead of batches of columns")
    p.set_defaults(func=run)


def run(args) -> int:
    import json

    from .cores import cores, pin

    pin(0, cores()[0])
    print(json.dumps(bench_store(args.events, repeat=args.repeat, dicts=args.dicts), indent=1))
    return 0
