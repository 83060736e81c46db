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


def _add_parse(sub) -> None:
    from ramparts.streams.parsers import PARSERS

    p = sub.add_parser(
        "parse", help="print normalized events of log files as JSON lines",
        description="Parse FILEs (or - for stdin) into normalized events, one JSON object per line on "
                    "stdout. Records that cannot be parsed go to the dead-letter file with their raw "
                    "bytes, file, line and reason; a summary per format goes to stderr.")
    p.add_argument("files", nargs="+", metavar="FILE")
    p.add_argument("--format", default="auto", choices=["auto", *PARSERS], metavar="auto|NAME",
                   help=f"input format (default: detect per file). One of: {', '.join(PARSERS)}")
    p.add_argument("--dead-letter", metavar="FILE", default=None,
                   help="where unparseable records go (JSON lines; default: "
                        "ramparts-dead-letter.jsonl, created only if needed)")
    p.add_argument("--config", metavar="FILE", default=None, help="config file (default: ./ramparts.yaml if present)")
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


def _add_bench(sub) -> None:
    p = sub.add_parser("bench", help="benchmarks", description="Benchmarks; figures go to docs/benchmarks.md.")
    bsub = p.add_subparsers(dest="bench", required=True, metavar="BENCH")
    from ramparts.bench import parse as bench_parse

    bench_parse.add_arguments(bsub)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ramparts",
        description="Security telemetry and anomaly detection for AI infrastructure.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_parse(sub)
    _add_formats(sub)
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
