"""``ramparts bench nab`` end to end on two NAB folders (linked from ../shared, not copied)."""

import csv
import math
import os
from pathlib import Path

import numpy as np
import pytest

from ramparts.bench import nab, nab_score
from ramparts.cli import main
from ramparts.errors import ConfigError

NAB = Path(__file__).resolve().parents[2] / "shared" / "data" / "nab"


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    data = tmp_path_factory.mktemp("nab") / "data"
    data.mkdir()
    for folder in ("artificialWithAnomaly", "realAdExchange"):
        os.symlink(NAB / "data" / folder, data / folder)
    out = tmp_path_factory.mktemp("out")
    summary = nab.run_nab(str(data), str(NAB / "combined_windows.json"), str(out), jobs=2)
    return data, out, summary


def test_results_are_written_in_nab_format_for_every_file(small):
    data, out, summary = small
    windows = nab_score.load_windows(NAB / "combined_windows.json")
    written = sorted(p.relative_to(out / "ramparts").as_posix() for p in (out / "ramparts").glob("*/*.csv"))
    assert len(written) == summary["files"] == 12
    for rel in written:
        folder, file = rel.split("/")
        name = f"{folder}/{file.removeprefix('ramparts_')}"
        with open(out / "ramparts" / rel, newline="") as f:
            rows = list(csv.reader(f))
        assert rows[0] == ["timestamp", "value", "anomaly_score", "label"]
        body = rows[1:]
        stamps = [r[0] for r in body]
        with open(data / name, newline="") as f:
            assert stamps == [r[0] for r in list(csv.reader(f))[1:]]
        scores = np.array([float(r[2]) for r in body])
        assert ((scores >= 0) & (scores <= 1)).all()
        assert not scores[: nab.probation(len(body))].any()  # nothing scored while learning
        ts = nab_score._to_ns(np.array(stamps))
        inside = np.zeros(len(ts), int)
        for a, b in windows[name]:
            inside[(ts >= a) & (ts <= b)] = 1
        assert [int(r[3]) for r in body] == inside.tolist()


def test_the_printed_scores_are_the_scorers_on_the_written_files(small):
    data, out, summary = small
    windows = nab_score.load_windows(NAB / "combined_windows.json")
    results = {}
    for p in (out / "ramparts").glob("*/*.csv"):
        with open(p, newline="") as f:
            body = list(csv.reader(f))[1:]
        name = f"{p.parent.name}/{p.name.removeprefix('ramparts_')}"
        results[name] = ([r[0] for r in body], [float(r[2]) for r in body])
    again = nab_score.score_all_profiles(results, {n: windows[n] for n in results})
    for profile, value in again.items():
        assert summary["scores"][profile]["score"] == pytest.approx(value, abs=0.01)
    # Each of the two folders judged at the other's threshold: a normalised score, not nothing.
    assert math.isfinite(summary["held_out_standard"]) and -100 <= summary["held_out_standard"] <= 100
    # Better than doing nothing on these folders, under every profile.
    assert all(r["score"] > 0 for r in summary["scores"].values())


def test_the_cli_prints_the_three_profiles(small, tmp_path, capsys):
    data, _, _ = small
    assert main(["bench", "nab", "--data", str(data), "--labels", str(NAB / "combined_windows.json"),
                 "--out", str(tmp_path), "--jobs", "1"]) == 0
    text = capsys.readouterr().out
    for profile in ("standard", "reward_low_FP_rate", "reward_low_FN_rate"):
        assert profile in text


def test_missing_inputs_are_clear_errors(tmp_path):
    with pytest.raises(ConfigError, match="not a directory"):
        nab.run_nab(str(tmp_path / "nope"), str(NAB / "combined_windows.json"), None)
    with pytest.raises(ConfigError, match="no such file"):
        nab.run_nab(str(tmp_path), str(tmp_path / "labels.json"), None)
    (tmp_path / "f").mkdir()
    (tmp_path / "f" / "x.csv").write_text("time,v\n1,2\n")
    with pytest.raises(ConfigError, match="has windows"):
        nab.run_nab(str(tmp_path), str(NAB / "combined_windows.json"), None)
    with pytest.raises(ConfigError, match="not a NAB series"):
        nab.read_series(tmp_path / "f" / "x.csv")


def test_round_trip_scores_as_the_detectors_do_through_json_state():
    # --round-trip reloads the model from its JSON state after every point, as the stream
    # detectors do every minute: the scores stay scores, and the model goes on learning.
    _, values = nab.read_series(NAB / "data" / "artificialWithAnomaly" / "art_daily_jumpsup.csv")
    values = values[:1500]
    plain = nab.score_series(values, memory=560)
    trip = nab.score_series(values, memory=560, round_trip=True)
    assert trip.shape == plain.shape and np.all((trip >= 0) & (trip <= 1))
    assert not trip[:nab.probation(len(values))].any()
