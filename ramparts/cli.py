"""The ``ramparts`` command line (SPEC.md, "Command line").

Subcommands are thin: they read arguments, call the library and print. Errors that a user
can fix (bad config, unknown format, unreadable file) print one line and exit non-zero,
without a traceback.
"""

from __future__ import annotations

import argparse
import sys
from typing import Sequence

from .errors import RampartsError

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


def _files_and_format(p) -> None:
    from ramparts.streams.parsers import PARSERS

    p.add_argument("files", nargs="+", metavar="FILE", help="input files; - reads stdin")
    p.add_argument("--format", default="auto", choices=["auto", *PARSERS], metavar="auto|NAME",
                   help=f"input format of every FILE (default: detect per file). One of: {', '.join(PARSERS)}")


def _add_parse(sub) -> None:
    p = sub.add_parser(
        "parse", help="print normalized events of log files as JSON lines",
        description="Parse FILEs (or - for stdin) into normalized events, one JSON object per line on "
                    "stdout. Records that cannot be parsed go to the dead-letter file with their raw "
                    "bytes, file, line and reason; a summary per format goes to stderr.")
    _files_and_format(p)
    p.add_argument("--dead-letter", metavar="FILE", default=None,
                   help="where unparseable records go (JSON lines; default: "
                        "ramparts-dead-letter.jsonl, created only if needed)")
    _config_arg(p)
    p.add_argument("--quiet", "-q", action="store_true", help="no summary on stderr")
    p.set_defaults(func=_cmd_parse)


def _cmd_parse(args) -> int:
    from ramparts.config import load_config
    from ramparts.streams.run import parse_files

    config = load_config(args.config)
    out = sys.stdout.buffer
    report = parse_files(args.files, fmt=args.format, config=config, out=out,
                         dead_letter_path=args.dead_letter)
    out.flush()
    if not args.quiet:
        sys.stderr.write(report.render())
    return EXIT_OK if not report.failed_files else EXIT_FAILED


def _config_arg(p) -> None:
    p.add_argument("--config", metavar="FILE", default=None, help="config file (default: ./ramparts.yaml if present)")


def _open_store(config, dsn: str | None):
    """The ClickHouse sink for ``--store DSN`` (or ``store.dsn``); ``none`` means no store."""
    if dsn is not None and dsn.lower() == "none":
        return None
    from ramparts.sinks.clickhouse import ClickHouseSink

    return ClickHouseSink.from_config(config.store, dsn_override=dsn)


def _add_replay(sub) -> None:
    p = sub.add_parser(
        "replay", help="run the whole pipeline over files, no broker",
        description="Replay FILEs through parsing, detectors and storage, merged in event time. Alerts "
                    "go to --alerts-out (JSON lines, one per incident), events and alerts to the store, "
                    "unparseable records to the dead-letter file; a summary goes to stderr.")
    _files_and_format(p)
    p.add_argument("--alerts-out", metavar="FILE", default=None, help="alerts as JSON lines (default: stdout)")
    p.add_argument("--store", metavar="DSN", default=None,
                   help="a directory (embedded chdb), a clickhouse:// or http(s):// DSN, or 'none' "
                        "(default: store.dsn from the config, ./ramparts-data)")
    p.add_argument("--dead-letter", metavar="FILE", default=None,
                   help="where unparseable records go (default: ramparts-dead-letter.jsonl, created only if needed)")
    p.add_argument("--progress", choices=["auto", "always", "never"], default="auto",
                   help="progress line on stderr (auto: when stderr is a terminal)")
    _config_arg(p)
    p.set_defaults(func=_cmd_replay)


def _cmd_replay(args) -> int:
    import os

    from ramparts.config import load_config
    from ramparts.streams.replay import Progress, replay, write_alerts

    config = load_config(args.config)
    total = sum(os.path.getsize(f) for f in args.files if f != "-" and os.path.isfile(f) and not f.endswith(".gz"))
    progress = Progress(total or None, enabled={"auto": None, "always": True, "never": False}[args.progress])
    sink = _open_store(config, args.store)
    from ramparts.gctune import tune

    tune()
    try:
        report = replay(args.files, config=config, fmt=args.format, sink=sink,
                        dead_letter_path=args.dead_letter, progress=progress)
    finally:
        if sink is not None:
            sink.close()
    if args.alerts_out:
        with open(args.alerts_out, "wb") as f:
            write_alerts(report.alerts.values(), f)
    else:
        write_alerts(report.alerts.values(), sys.stdout.buffer)
        sys.stdout.flush()
    sys.stderr.write(report.render())
    return EXIT_OK if not report.parse.failed_files else EXIT_FAILED


def _kafka_args(p) -> None:
    p.add_argument("--bootstrap", metavar="HOST:PORT", default=None,
                   help="Kafka brokers (default: kafka.bootstrap from the config)")


def _config_with(args):
    """The config, with --bootstrap applied (an override like any RAMPARTS_KAFKA__BOOTSTRAP)."""
    import os

    from ramparts.config import load_config

    env = dict(os.environ)
    if getattr(args, "bootstrap", None):
        env["RAMPARTS_KAFKA__BOOTSTRAP"] = args.bootstrap
    return load_config(args.config, env=env)


def _add_worker(sub) -> None:
    p = sub.add_parser(
        "worker", help="the Faust worker over Kafka",
        description="Consume the raw topics, parse, key events by entity, run the detectors with state "
                    "in changelog-backed tables, store events and alerts, produce alerts. Run several in "
                    "one consumer group (kafka.group) to share the partitions. Stops on SIGTERM/Ctrl-C.")
    _kafka_args(p)
    p.add_argument("--store", metavar="DSN", default=None,
                   help="directory (embedded chdb, one worker per directory), clickhouse:// or http(s):// "
                        "DSN, or 'none' (default: store.dsn from the config)")
    p.add_argument("--loglevel", default="warn", choices=["crit", "error", "warn", "info", "debug"])
    p.add_argument("--stats-file", metavar="FILE", default=None,
                   help="write the worker's counters here as JSON, four times a second")
    p.add_argument("--outbox", metavar="DIR", default=None,
                   help="the durable outbox of notifications, delivered to the configured outputs "
                        "(default: alerting.outbox_dir; 'none': incidents without notifications)")
    p.add_argument("--noop-agent", action="store_true", help=argparse.SUPPRESS)  # the throughput benchmark's baseline
    _config_arg(p)
    p.set_defaults(func=_cmd_worker)


def _cmd_worker(args) -> int:
    from ramparts.streams.app import run_worker
    from ramparts.streams.topics import TopicNames, ensure_topics

    config = _config_with(args)
    k = config.kafka
    ensure_topics(k.bootstrap, TopicNames(k.topic_prefix).all, k.partitions)
    sink = None if args.noop_agent else _open_store(config, args.store)
    outbox = deliverer = None
    outbox_dir = args.outbox or config.alerting.outbox_dir
    if not args.noop_agent and outbox_dir.lower() != "none":  # incidents and notifications: the durable outbox, delivered beside the worker
        from ramparts.alerting.delivery import Deliverer
        from ramparts.alerting.outbox import Outbox
        from ramparts.sinks.outputs import build_outputs

        outbox = Outbox(outbox_dir)
        deliverer = Deliverer.from_config(config, outbox, build_outputs(config)).start()
    try:
        run_worker(config, sink=sink, loglevel=args.loglevel, stats_file=args.stats_file, noop=args.noop_agent,
                   outbox=outbox, deliverer=deliverer)
    finally:
        if deliverer is not None:
            deliverer.stop()
    return EXIT_OK


def _add_ship(sub) -> None:
    p = sub.add_parser(
        "ship", help="send log files (or stdin) into Kafka",
        description="Send FILEs (or - for stdin) to the raw topic of their format's family, many records "
                    "per compressed message, with the format in a header.")
    _files_and_format(p)
    p.add_argument("--follow", "-f", action="store_true",
                   help="keep shipping what is appended to the files (like tail -F) until Ctrl-C")
    _kafka_args(p)
    _config_arg(p)
    p.set_defaults(func=_cmd_ship)


def _cmd_ship(args) -> int:
    import asyncio

    from ramparts.streams.ship import ship_files

    config = _config_with(args)
    report = asyncio.run(ship_files(config, args.files, fmt=args.format, follow=args.follow))
    sys.stderr.write(report.render())
    return EXIT_OK


def _add_simulate(sub) -> None:
    from ramparts.streams.simulate import add_arguments

    add_arguments(sub)


def _add_dev(sub) -> None:
    from ramparts.streams.dev import add_arguments

    add_arguments(sub)


def _add_train(sub) -> None:
    from ramparts.detectors.compute_model import add_train_arguments

    add_train_arguments(sub)


def _add_formats(sub) -> None:
    p = sub.add_parser("formats", help="list the input formats, their kinds and options")
    p.set_defaults(func=_cmd_formats)


def _cmd_formats(args) -> int:
    from ramparts.streams.parsers import PARSER_CLASSES

    for cls in PARSER_CLASSES:
        print(f"{cls.name:16} {cls.kind:11} {cls.description}")
        for name, field in cls.Options.model_fields.items():
            default = field.get_default(call_default_factory=True)
            print(f"{'':28}  parsers.{cls.name}.{name} (default {default!r}): {field.description or ''}")
    return EXIT_OK


def _add_alerts(sub) -> None:
    from ramparts.alerting.cli import add_arguments

    add_arguments(sub)


def _add_playbook(sub) -> None:
    from ramparts.playbooks.cli import add_arguments

    add_arguments(sub)


def _add_bench(sub) -> None:
    p = sub.add_parser("bench", help="benchmarks", description="Benchmarks; figures go to docs/benchmarks.md.")
    bsub = p.add_subparsers(dest="bench", required=True, metavar="BENCH")
    from ramparts.bench import alerting as bench_alerting
    from ramparts.bench import drift as bench_drift
    from ramparts.bench import extraction as bench_extraction
    from ramparts.bench import nab as bench_nab
    from ramparts.bench import parse as bench_parse
    from ramparts.bench import store as bench_store
    from ramparts.bench import throughput as bench_throughput
    from ramparts.bench import compute as bench_compute
    from ramparts.bench import volume as bench_volume
    from ramparts.bench import playbooks as bench_playbooks

    bench_parse.add_arguments(bsub)
    bench_throughput.add_arguments(bsub)
    bench_store.add_arguments(bsub)
    bench_extraction.add_arguments(bsub)
    bench_volume.add_arguments(bsub)
    bench_nab.add_arguments(bsub)
    bench_drift.add_arguments(bsub)
    bench_alerting.add_arguments(bsub)
    bench_compute.add_arguments(bsub)
    bench_playbooks.add_arguments(bsub)


def _add_dashboards(sub) -> None:
    from ramparts.dashboards import export as dashboards_export

    dashboards_export.add_arguments(sub)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ramparts",
        description="Security telemetry and anomaly detection for AI infrastructure.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_parse(sub)
    _add_replay(sub)
    _add_worker(sub)
    _add_ship(sub)
    _add_simulate(sub)
    _add_dev(sub)
    _add_train(sub)
    _add_formats(sub)
    _add_alerts(sub)
    _add_dashboards(sub)
    _add_playbook(sub)
    _add_bench(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except RampartsError as e:
        print(f"ramparts: error: {e}", file=sys.stderr)
        return EXIT_FAILED
    except BrokenPipeError:  # `ramparts parse big.log | head` is normal use
        try:
            sys.stdout = None  # type: ignore[assignment]
        finally:
            return EXIT_OK
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
