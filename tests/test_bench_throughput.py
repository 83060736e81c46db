"""`ramparts bench throughput` runs end to end on a tiny input (figures are not asserted: they
are measured by the benchmark, never by tests)."""

from __future__ import annotations

import os
import re
import subprocess
import sys


def test_bench_throughput_measures_every_path_in_one_run():
    proc = subprocess.run([sys.executable, "-m", "ramparts.cli", "bench", "throughput", "--rate", "4",
                           "--single-records", "300", "--repeat", "1"],
                          capture_output=True, text=True, timeout=400, env={**os.environ})
    assert proc.returncode == 0, proc.stdout + proc.stderr[-3000:]
    table = proc.stdout.split("events/s (median)", 1)[1].split("\n", 1)[1]
    rows = dict(re.findall(r"^([^\d\n]+?)\s+([\d,]+)\s", table, re.M))
    names = {n.strip() for n in rows}
    assert names == {"parse only (the ceiling)", "replay, detectors, no store", "replay, detectors, chdb store",
                     "kafka, batched messages, per worker", "kafka, single-record messages",
                     "no-op Faust agent, single-record"}, proc.stdout
    assert all(int(v.replace(",", "")) > 0 for v in rows.values())
    assert re.search(r"^single-record / no-op agent\s+\d+%", proc.stdout, re.M)
