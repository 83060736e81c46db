"""The streaming commands as a user runs them: ``python -m ramparts.cli`` in a subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from ramparts.detectors.base import ENTITY_TYPES, SEVERITIES
from ramparts.timeutil import parse_iso

from .harness import HASH_KEY, scenario_files

SPEC_FIELDS = {"id", "ts", "detector", "severity", "entity", "score", "summary", "evidence", "window",
               "first_event_ts", "event_count"}


def ramparts(*args, cwd: Path, env: dict | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    # Only this test's variables: a RAMPARTS_ override from the caller's shell must not leak in.
    base = {k: v for k, v in os.environ.items() if not k.startswith("RAMPARTS_")}
    return subprocess.run([sys.executable, "-m", "ramparts.cli", *map(str, args)], cwd=cwd,
                          env={**base, "RAMPARTS_HASH_KEY": HASH_KEY, **(env or {})},
                          capture_output=True, timeout=timeout)


@pytest.fixture(scope="module")
def scenario(tmp_path_factory):
    d = tmp_path_factory.mktemp("cli")
    r = ramparts("simulate", "--scenario", "mix", "--out", d / "mix.json", "--start", "2026-11-22T10:00:00Z",
                 "--duration-seconds", "180", cwd=d)
    assert r.returncode == 0, r.stderr.decode()
    manifest = orjson.loads((d / "mix.json").read_bytes())
    return manifest, scenario_files(d / "mix.json")


def alerts_of(data: bytes) -> list[dict]:
    return [orjson.loads(l) for l in data.splitlines() if l.strip()]


def test_replay_writes_spec_alerts_that_include_the_labelled_stuffing(scenario, tmp_path):
    manifest, files = scenario
    out = tmp_path / "alerts.jsonl"
    r = ramparts("replay", *files, "--store", "none", "--alerts-out", out, cwd=tmp_path)
    assert r.returncode == 0, r.stderr.decode()
    assert r.stdout == b""
    alerts = alerts_of(out.read_bytes())
    assert alerts
    for a in alerts:
        assert set(a) >= SPEC_FIELDS
        assert a["severity"] in SEVERITIES and a["entity"]["type"] in ENTITY_TYPES
        for t in (a["ts"], a["first_event_ts"], a["window"]["start"], a["window"]["end"]):
            assert isinstance(t, str) and t.endswith("Z")
            assert parse_iso(manifest["start"]) <= parse_iso(t) <= parse_iso(manifest["end"])
    (attack,) = [x for x in manifest["attacks"] if x["detector"] == "access.stuffing"]
    stuffing = [a for a in alerts if a["detector"] == "access.stuffing"]
    assert [a["entity"] for a in stuffing] == [attack["entity"]]
    assert parse_iso(attack["start"]) <= parse_iso(stuffing[0]["first_event_ts"]) <= parse_iso(attack["end"])
    err = r.stderr.decode()
    assert f"alerts: {len(alerts)} incident(s)" in err and "placeholder rules" not in err
    assert "\r" not in err  # no progress line when stderr is not a terminal


def test_replay_without_alerts_out_prints_alerts_on_stdout(scenario, tmp_path):
    _, files = scenario
    r = ramparts("replay", *files, "--store", "none", cwd=tmp_path)
    assert r.returncode == 0, r.stderr.decode()
    assert {a["detector"] for a in alerts_of(r.stdout)} >= {"access.stuffing", "access.k8s_exec"}


def test_replay_into_a_store_directory_names_it_and_counts_the_rows(scenario, tmp_path):
    _, files = scenario
    store = tmp_path / "store"
    r = ramparts("replay", *files, "--store", store, "--alerts-out", tmp_path / "a.jsonl", cwd=tmp_path)
    assert r.returncode == 0, r.stderr.decode()
    err = r.stderr.decode()
    (line,) = [l for l in err.splitlines() if l.startswith("store: ")]
    assert str(store) in line
    n_alerts = len(alerts_of((tmp_path / "a.jsonl").read_bytes()))
    assert f"alerts {n_alerts}" in line and "requests " in line and "runtime " in line
    replayed = int(next(l for l in err.splitlines() if l.startswith("replayed ")).split()[1].replace(",", ""))
    counted = sum(int(part.rsplit(" ", 1)[1].replace(",", "")) for part in line.split("(", 1)[1].rstrip(")").split(", ")
                  if part.split(" ")[0] in ("requests", "predictions", "runtime", "gpu", "workloads"))
    assert counted == replayed
    assert store.is_dir()


def test_an_unrecognised_file_exits_1_and_goes_to_the_dead_letters(scenario, tmp_path):
    _, files = scenario
    junk = tmp_path / "junk.txt"
    junk.write_bytes(b"hello\n\x00\x01\x02\n")
    dead = tmp_path / "dead.jsonl"
    r = ramparts("replay", files[0], junk, "--store", "none", "--dead-letter", dead,
                 "--alerts-out", tmp_path / "a.jsonl", cwd=tmp_path)
    assert r.returncode == 1
    assert f"error: {junk}: cannot tell the format" in r.stderr.decode()
    rows = [orjson.loads(l) for l in dead.read_bytes().splitlines()]
    assert [(d["file"], d["line"], d["reason"]) for d in rows] == [(str(junk), 1, "format not recognised"),
                                                                   (str(junk), 2, "format not recognised")]


def test_a_missing_file_exits_1_and_says_so(tmp_path):
    r = ramparts("replay", tmp_path / "nope.log", "--store", "none", cwd=tmp_path)
    assert r.returncode == 1
    assert "nope.log: No such file or directory" in r.stderr.decode()


def test_replay_progress_always_draws_a_progress_line(scenario, tmp_path):
    _, files = scenario
    r = ramparts("replay", *files, "--store", "none", "--progress", "always", "--alerts-out", tmp_path / "a",
                 cwd=tmp_path)
    assert r.returncode == 0, r.stderr.decode()
    err = r.stderr.decode()
    assert "\r[" in err and "events/s" in err and "%" in err


def test_a_config_can_turn_a_detector_off(scenario, tmp_path):
    _, files = scenario
    (tmp_path / "ramparts.yaml").write_text("detectors:\n  access.stuffing:\n    enabled: false\n")
    r = ramparts("replay", *files, "--store", "none", cwd=tmp_path)
    assert r.returncode == 0, r.stderr.decode()
    detectors = {a["detector"] for a in alerts_of(r.stdout)}
    assert "access.stuffing" not in detectors and "access.k8s_exec" in detectors


def test_a_misspelt_detector_option_is_one_line_that_says_what_was_meant(scenario, tmp_path):
    _, files = scenario
    cfg = tmp_path / "c.yaml"
    cfg.write_text("detectors:\n  access.stuffing:\n    min_cont: 5\n")
    r = ramparts("replay", files[0], "--store", "none", "--config", cfg, cwd=tmp_path)
    assert r.returncode == 1
    err = r.stderr.decode().strip()
    assert err == ("ramparts: error: invalid configuration: unknown key 'detectors.access.stuffing.min_cont'; "
                   "did you mean 'min_count'?")


def test_a_detector_option_from_the_environment_changes_the_alerts(scenario, tmp_path):
    _, files = scenario
    r = ramparts("replay", *files, "--store", "none", cwd=tmp_path,
                 env={"RAMPARTS_DETECTORS__ACCESS.STUFFING__MIN_COUNT": "100000"})
    assert r.returncode == 0, r.stderr.decode()
    assert "access.stuffing" not in {a["detector"] for a in alerts_of(r.stdout)}


@pytest.mark.parametrize("argv,expect", [
    (["worker", "--help"], b"--store"),
    (["ship", "--help"], b"--follow"),
    (["dev", "--help"], b"usage: ramparts dev"),
    (["bench", "throughput", "--help"], b"usage: ramparts bench throughput"),
    (["replay", "--help"], b"--alerts-out"),
])
def test_streaming_commands_explain_themselves(argv, expect, tmp_path):
    r = ramparts(*argv, cwd=tmp_path)
    assert r.returncode == 0, r.stderr.decode()
    assert expect in r.stdout
