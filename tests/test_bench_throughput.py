"""`ramparts bench throughput` runs end to end on a tiny input (figures are not asserted: they
are measured by the benchmark, never by tests)."""

from __future__ import annotations

import os
import re
import subprocess
import sys


def _bench(*flags: str) -> subprocess.CompletedProcess:
    """``ramparts bench throughput --rate 4 FLAGS`` in a child process, which must succeed."""
    proc = subprocess.run([sys.executable, "-m", "ramparts.cli", "bench", "throughput", "--rate", "4", *flags],
                          capture_output=True, text=True, timeout=400, env={**os.environ})
    assert proc.returncode == 0, proc.stdout + proc.stderr[-3000:]
    return proc


def test_bench_throughput_measures_every_path_in_one_run():
    proc = _bench("--single-records", "300", "--repeat", "1")
    table = proc.stdout.split("events/s wall", 1)[1].split("\n", 1)[1]
    # each row: the path, events per second of wall time, events per CPU second
    rows = {name: (wall, cpu) for name, wall, cpu in re.findall(r"^([^\d\n]+?)\s+([\d,]+)\s+([\d,]+)\b", table, re.M)}
    names = {n.strip() for n in rows}
    assert names == {"parse only (the ceiling)", "replay, detectors, no store", "replay, detectors, chdb store",
                     "kafka, batched messages, per worker", "kafka, single-record messages",
                     "no-op Faust agent, single-record"}, proc.stdout
    assert all(int(v.replace(",", "")) > 0 for pair in rows.values() for v in pair)
    assert re.search(r"^single-record / no-op agent\s+\d+%\s+\d+%", proc.stdout, re.M)


def test_bench_throughput_formats_times_each_file_of_the_input():
    proc = _bench("--repeat", "1", "--skip-kafka", "--formats")
    rows = dict(re.findall(r"^  (\w+)\s+([\d,]+) events\s+[\d.]+ s\s+[\d.]+ us/event", proc.stdout, re.M))
    assert set(rows) == {"envoy_json", "kserve", "dcgm", "falco", "k8s_audit", "k8s_pods"}, proc.stdout
    # every file's events, parsed alone, are the events replay reads from them all
    replayed = int(re.search(r"^replay: ([\d,]+) events", proc.stdout, re.M).group(1).replace(",", ""))
    assert sum(int(n.replace(",", "")) for n in rows.values()) == replayed, proc.stdout


def test_bench_throughput_hop_fields_times_the_hop_with_and_without_the_unread_fields():
    proc = _bench("--repeat", "1", "--skip-kafka", "--hop-fields")
    rows = dict(re.findall(r"^  (every field|without the unread Envoy fields)\s+([\d.]+)\s+runs", proc.stdout, re.M))
    assert set(rows) == {"every field", "without the unread Envoy fields"}, proc.stdout
    assert all(float(v) > 0 for v in rows.values()), proc.stdout
