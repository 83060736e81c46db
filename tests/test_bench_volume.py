"""`ramparts bench volume` on one small seed: the insider is caught on its own baseline, the
gateway's benign principals are not flagged, and the summary reads its results."""

from __future__ import annotations

from ramparts.bench.volume import markdown, run_seed, summarize


def test_a_small_gateway_run_catches_the_insider_and_flags_no_benign_principal():
    res = run_seed(2, minutes=75, rate=10.0)
    assert res.events > 40_000
    assert res.requests_until_alert["insider"] is not None and res.requests_until_alert["insider"] <= 200
    assert res.benign == 36 and res.benign_flagged == []
    summary = summarize([res])
    assert summary["thieves"]["insider"]["caught"] == 1
    assert "| insider |" in markdown(summary)
