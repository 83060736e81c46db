"""The parse benchmark runs and reports every format's events; figures are not asserted."""

import re
import subprocess
import sys

from ramparts.bench import corpus
from ramparts.streams.decode import parse_bytes


def test_every_corpus_line_parses_without_dead_letters():
    for fmt in corpus.GENERATORS:
        events, dead, parser = parse_bytes(fmt, b"\n".join(corpus.lines(fmt, 300)) + b"\n")
        assert not dead, (fmt, dead[:1])
        assert len(events) >= 100, fmt


def test_bench_parse_prints_a_row_per_format_with_all_events():
    r = subprocess.run([sys.executable, "-m", "ramparts.cli", "bench", "parse", "--lines", "2000", "--repeat", "1",
                        "--format", "nginx_combined", "--format", "envoy_json", "--floors"],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    rows = {m.group(1): m.groups()[1:] for m in re.finditer(r"^\| (\w+) \| ([\d,]+) \| (\d+) \| (\d+) \|", r.stdout, re.M)}
    assert set(rows) == {"nginx_combined", "envoy_json"}
    assert all(events == "2000" and dead == "0" for _rate, events, dead in rows.values())
    assert "orjson.loads only" in r.stdout
