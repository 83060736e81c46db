"""``ramparts bench alerting`` runs end to end on a short run: every notification reaches the receiver."""

from ramparts.bench.alerting import run_once
from ramparts.cli import build_parser


def test_a_short_run_delivers_everything_and_reports_quantiles():
    r = run_once(rate=100, seconds=0.5, seed=1)
    assert r["notifications"] == 50 and r["delivered"] == 50
    assert 0 <= r["p50_ms"] <= r["p99_ms"] <= r["max_ms"]


def test_registered_under_bench():
    args = build_parser().parse_args(["bench", "alerting", "--rate", "10", "--seconds", "1", "--runs", "1"])
    assert (args.rate, args.seconds, args.runs) == (10.0, 1.0, 1)
