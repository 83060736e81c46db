"""``ramparts bench drift`` on a tiny configuration: the summary's shape, and a clear abrupt
change that moves the inputs is found by the statistics and by drift.model, with no false alarm.
No timings are asserted (they belong in docs/benchmarks.md)."""

from __future__ import annotations

import argparse
import json

import pytest

from ramparts.bench import drift as bench
from ramparts.cli import build_parser


@pytest.fixture(scope="module")
def summary():
    streams = {s.name: s for s in bench.STREAMS}
    results = [bench.run_stream(streams[name], seed=1, points=3000) for name in ("rbf-abrupt", "sea-abrupt")]
    return bench.summarize(results)


def test_the_summary_has_every_statistic_of_both_views_per_stream(summary):
    assert summary["seeds"] == [1] and summary["points"] == 3000
    assert set(summary["streams"]) == {"rbf-abrupt", "sea-abrupt"}
    for entry in summary["streams"].values():
        for view in bench.VIEWS:
            assert set(entry[view]) == set(bench.STATISTICS)
            for cell in entry[view].values():
                assert set(cell) == {"delays", "median_delay", "missed", "false_alarms"}
                assert len(cell["delays"]) == 1 and cell["missed"] in (0, 1)
    json.dumps(summary)


def test_a_clear_abrupt_covariate_drift_is_found_in_production_with_no_false_alarm(summary):
    rbf = summary["streams"]["rbf-abrupt"]["production"]
    found = [s for s in bench.STATISTICS if rbf[s]["missed"] == 0]
    assert len(found) >= 2 and "drift.model" in found, rbf
    assert all(rbf[s]["false_alarms"] == 0 for s in bench.STATISTICS), rbf
    assert 0 <= rbf["drift.model"]["median_delay"] <= 1000  # within two windows of the change


def test_a_concept_drift_is_invisible_in_production_and_seen_with_labels(summary):
    sea = summary["streams"]["sea-abrupt"]
    assert all(sea["production"][s]["missed"] == 1 for s in bench.STATISTICS)
    assert sea["labels"]["drift.model"]["missed"] == 0


def test_the_markdown_table_has_a_row_per_stream_and_a_column_per_statistic(summary):
    text = bench.markdown(summary)
    rows = [line for line in text.splitlines() if line.startswith("| rbf-abrupt")]
    assert len(rows) == 2 and all(line.count("|") == len(bench.STATISTICS) + 3 for line in rows)


def test_the_command_line_runs_a_tiny_configuration(capsys):
    args = build_parser().parse_args(["bench", "drift", "--seeds", "1", "--points", "3000",
                                      "--streams", "rbf-abrupt", "--json"])
    assert args.func(args) == 0
    out = capsys.readouterr().out
    parsed = json.loads(out[out.index("\n{") + 1:])
    assert list(parsed["streams"]) == ["rbf-abrupt"]


def test_an_unknown_stream_or_too_few_points_is_an_error_that_says_what_is_known():
    args = argparse.Namespace(streams="rbf-abrupt,nope", seeds=1, points=3000, json=False)
    with pytest.raises(SystemExit, match="unknown stream.*nope.*known: sea-abrupt"):
        bench.run(args)
    with pytest.raises(SystemExit, match="--points"):
        bench.run(argparse.Namespace(streams="rbf-abrupt", seeds=1, points=100, json=False))
