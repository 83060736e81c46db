"""Replay: files merged in event time, cut into batches, through the same core as the worker."""

from __future__ import annotations

import io
import random

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ramparts.streams.replay import Progress, merge_by_time, replay, write_alerts
from ramparts.streams.simulate import simulate
from ramparts.timeutil import parse_iso

from .harness import HASH_KEY, scenario_files

PROPERTY = settings(max_examples=80, deadline=None, derandomize=True, database=None)


# -- merge_by_time --------------------------------------------------------------------------

@st.composite
def sources(draw):
    """Per source: chunks of events, time-ordered from chunk to chunk but shuffled inside one.

    Times come from a small range so that equal times within and across sources are common.
    """
    out = []
    for s in range(draw(st.integers(min_value=0, max_value=5))):
        times = sorted(draw(st.lists(st.integers(min_value=0, max_value=30), max_size=40)))
        cuts = sorted(draw(st.lists(st.integers(min_value=0, max_value=len(times)), max_size=6)))
        chunks = [times[a:b] for a, b in zip([0, *cuts], [*cuts, len(times)])]
        rng = random.Random(draw(st.integers(0, 2**16)))
        for c in chunks:
            rng.shuffle(c)
        seq = iter(range(len(times)))
        out.append([[{"ts": t, "src": s, "seq": next(seq)} for t in c] for c in chunks])
    return out


def merged(srcs) -> list[list[dict]]:
    return list(merge_by_time([iter(chunks) for chunks in srcs]))


@PROPERTY
@given(srcs=sources())
def test_merge_is_a_time_ordered_permutation_of_its_input(srcs):
    out = [e for chunk in merged(srcs) for e in chunk]
    assert [e["ts"] for e in out] == sorted(e["ts"] for e in out)
    assert sorted((e["src"], e["seq"]) for e in out) == \
        sorted((e["src"], e["seq"]) for chunks in srcs for c in chunks for e in c)
    assert all(chunk for chunk in merged(srcs)), "no empty chunks are yielded"


@PROPERTY
@given(srcs=sources())
def test_equal_times_keep_their_source_order(srcs):
    # Stable within one source: an audit event's stages, or a scrape's lines, stay in file order.
    out = [e for chunk in merged(srcs) for e in chunk]
    seen: dict[tuple[int, int], int] = {}
    for e in out:
        key = (e["src"], e["ts"])
        order_in_source = [x["seq"] for c in srcs[e["src"]] for x in c if x["ts"] == e["ts"]]
        assert e["seq"] == order_in_source[seen.get(key, 0)]
        seen[key] = seen.get(key, 0) + 1


@PROPERTY
@given(srcs=sources(), batch=st.integers(min_value=1, max_value=12))
def test_merge_in_batches_cuts_as_the_chunks_cut_afterwards(srcs, batch):
    # What replay did before merge_by_time cut its releases itself: each chunk sliced.
    expected = [chunk[s:s + batch] for chunk in merged(srcs) for s in range(0, len(chunk), batch)]
    got = list(merge_by_time([iter(chunks) for chunks in srcs], batch_events=batch))
    assert [len(b) for b in got] == [len(b) for b in expected]
    assert all(0 < len(b) <= batch for b in got)
    assert [b.events for b in got] == [b.events for b in expected]
    assert [b.ts().tolist() for b in got] == [[e["ts"] for e in b.events] for b in expected]


def test_merge_of_nothing_and_of_empty_sources_and_chunks():
    assert merged([]) == []
    assert merged([[], [[]], [[], []]]) == []
    assert [e["ts"] for c in merged([[[], [{"ts": 2}]], [], [[{"ts": 1}], []]]) for e in c] == [1, 2]


def test_a_file_out_of_order_loses_nothing():
    out = [e["ts"] for c in merged([[[{"ts": 10}], [{"ts": 5}], [{"ts": 7}]], [[{"ts": 6}]]]) for e in c]
    assert sorted(out) == [5, 6, 7, 10]


def test_merge_reads_the_lagging_file_next():
    # A long file ahead in time is not read to its end before a short file that lags.
    reads = []

    def source(name, chunks):
        for c in chunks:
            reads.append(name)
            yield c

    ahead = source("ahead", [[{"ts": 100 + i}] for i in range(50)])
    behind = source("behind", [[{"ts": i}] for i in range(3)])
    out = merge_by_time([ahead, behind])
    first = next(out)
    assert [e["ts"] for e in first] == [0]
    assert reads.count("ahead") == 1


# -- Progress -------------------------------------------------------------------------------

def test_progress_draws_bytes_events_and_rate_and_clears_the_line():
    out = io.StringIO()
    p = Progress(1000, stream=out, enabled=True, every_seconds=0)
    p.on_read(250)
    p.tick(1234)
    line = out.getvalue()
    assert line.startswith("\r[") and " 25.0%" in line and "1,234 events" in line and "events/s" in line
    p.done()
    assert out.getvalue().endswith("\r" + " " * 78 + "\r")


def test_progress_without_a_total_counts_megabytes():
    out = io.StringIO()
    p = Progress(None, stream=out, enabled=True, every_seconds=0)
    p.on_read(3_500_000)
    p.tick(1)
    assert "3.5 MB read" in out.getvalue()


def test_progress_is_silent_when_disabled_or_not_a_terminal():
    for p in (Progress(10, stream=io.StringIO(), enabled=False, every_seconds=0),
              Progress(10, stream=io.StringIO(), every_seconds=0)):  # a StringIO is no terminal
        p.on_read(5)
        p.tick(5)
        p.done()
        assert p.stream.getvalue() == ""


# -- replay over files ---------------------------------------------------------------------

@pytest.fixture(scope="module")
def scenario(tmp_path_factory):
    out = tmp_path_factory.mktemp("replay") / "mix.json"
    m = simulate("mix", str(out), seed=3, start="2026-11-22T10:00:00Z", duration_seconds=240)
    return m, scenario_files(out)


@pytest.fixture
def config(monkeypatch):
    from ramparts.config import load_config

    monkeypatch.setenv("RAMPARTS_HASH_KEY", HASH_KEY)
    return load_config(None, env={"RAMPARTS_HASH_KEY": HASH_KEY})


def _replay(files, config, tmp_path, **kw):
    return replay(files, config=config, progress=Progress(None, enabled=False),
                  dead_letter_path=str(tmp_path / "dead.jsonl"), **kw)


def _ids(report) -> set[tuple]:
    return {(a["id"], a["detector"], a["entity"]["id"], a["event_count"]) for a in report.alerts.values()}


def test_replay_finds_every_labelled_attack_and_nothing_else(scenario, config, tmp_path):
    m, files = scenario
    report = _replay(files, config, tmp_path)
    found = {(a["detector"], a["entity"]["type"], a["entity"]["id"]) for a in report.alerts.values()}
    expected = {(x["detector"], x["entity"]["type"], x["entity"]["id"]) for x in m.to_dict()["attacks"]}
    assert expected and expected <= found
    assert found - expected == set()
    assert report.events > 0 and not report.parse.failed_files
    assert report.placeholders == []
    for a in report.alerts.values():
        assert m.start <= a["first_event_ts"] <= a["ts"] <= m.end


def test_replay_alerts_do_not_depend_on_batch_size_or_file_order(scenario, config, tmp_path):
    _, files = scenario
    base = _ids(_replay(files, config, tmp_path))
    assert base
    assert _ids(_replay(list(reversed(files)), config, tmp_path, batch_events=97)) == base
    assert _ids(_replay(files, config, tmp_path, batch_events=1)) == base


def test_replay_sees_events_in_event_time_order(scenario, config, tmp_path):
    from ramparts.streams.pipeline import Pipeline

    _, files = scenario
    seen: list[int] = []

    class Recorder(Pipeline):
        def process_batch(self, events, state):
            seen.extend(e["ts"] for e in events)
            return super().process_batch(events, state)

    report = _replay(files, config, tmp_path, pipeline=Recorder.from_config(config), batch_events=500)
    assert len(seen) == report.events
    assert seen == sorted(seen)


def test_replay_stamps_every_event_with_a_unique_id_of_its_file(scenario, config, tmp_path):
    from ramparts.streams.pipeline import Pipeline

    _, files = scenario
    ids: list[str] = []

    class Recorder(Pipeline):
        def process_batch(self, events, state):
            ids.extend(e["id"] for e in events)
            return super().process_batch(events, state)

    _replay(files, config, tmp_path, pipeline=Recorder.from_config(config))
    assert len(ids) == len(set(ids))
    # By position ("<file>:<line>"), or by the event's own key in its file (an audit request:
    # "<file>#<auditID>").
    positional = [i for i in ids if "#" not in i]
    keyed = [i for i in ids if "#" in i]
    assert positional and keyed
    assert all(i.rsplit(":", 1)[0].endswith(".log") for i in positional if ":end." not in i)
    assert all(i.split("#", 1)[0].endswith(".k8s_audit.log") for i in keyed)


def test_unrecognised_files_and_directories_fail_loudly_and_go_to_dead_letters(scenario, config, tmp_path):
    _, files = scenario
    junk = tmp_path / "junk.txt"
    junk.write_bytes(b"\x00not a log\n\nstill not a log\n")
    report = _replay([*files, str(junk), str(tmp_path)], config, tmp_path)
    failed = dict(report.parse.failed_files)
    assert "cannot tell the format" in failed[str(junk)] and failed[str(tmp_path)] == "is a directory"
    dead = [orjson.loads(l) for l in (tmp_path / "dead.jsonl").read_bytes().splitlines()]
    assert [(d["file"], d["line"], d["reason"]) for d in dead] == \
        [(str(junk), 1, "format not recognised"), (str(junk), 3, "format not recognised")]
    assert report.alerts  # the good files were still replayed


def test_replay_summary_names_events_and_incidents(scenario, config, tmp_path):
    _, files = scenario
    text = _replay(files, config, tmp_path).render()
    assert "replayed " in text and " events in " in text
    assert "alerts: " in text and "access.stuffing 1" in text
    assert "placeholder" not in text
    assert "note: gpu.anomaly is off: no model" in text  # a detector without its model says so


def test_write_alerts_orders_by_first_event_and_writes_rfc3339(scenario, config, tmp_path):
    _, files = scenario
    report = _replay(files, config, tmp_path)
    out = io.BytesIO()
    n = write_alerts(reversed(list(report.alerts.values())), out)
    lines = [orjson.loads(l) for l in out.getvalue().splitlines()]
    assert n == len(lines) == len(report.alerts)
    firsts = [parse_iso(a["first_event_ts"]) for a in lines]
    assert firsts == sorted(firsts)
    for a in lines:
        assert a["ts"].endswith("Z") and a["window"]["start"] == a["first_event_ts"]
        assert report.alerts[a["id"]]["event_count"] == a["event_count"]
