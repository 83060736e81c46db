"""`ramparts simulate`: every file is its format to our own detection and parsers, the
ground truth matches what is in the files, and a seed fixes the bytes."""

import argparse
import json

import pytest

from ramparts.errors import ConfigError
from ramparts.events import check_event
from ramparts.streams.decode import HEAD_BYTES, detect_format, parse_bytes
from ramparts.streams.simulate import SCENARIOS, add_arguments, output_paths, run, simulate
from ramparts.timeutil import NS, parse_iso

START = "2026-03-02T09:00:00Z"


@pytest.fixture(scope="module")
def mix(tmp_path_factory):
    """The demo's scenario at its default size, parsed once for the tests below."""
    out = tmp_path_factory.mktemp("mix") / "mix.json"
    m = simulate("mix", out, seed=7, start=START)
    parsed = {}
    for fmt in m.files:
        data = m.file(fmt).read_bytes()
        events, dead, parser = parse_bytes(fmt, data, origin=str(m.file(fmt)))
        parsed[fmt] = (data, events, dead, parser)
    return m, parsed


def _cli(argv):
    p = argparse.ArgumentParser(prog="ramparts")
    add_arguments(p.add_subparsers(dest="command", required=True))
    return p.parse_args(argv)


def test_files_sit_beside_the_manifest_with_the_format_in_their_name(mix):
    m, _ = mix
    assert m.path.name == "mix.json"
    assert m.files == {f: f"mix.{f}.log" for f in
                       ("envoy_json", "kserve", "dcgm", "falco", "k8s_audit", "k8s_pods")}
    assert json.loads(m.path.read_text()) == m.to_dict()


def test_every_file_is_detected_as_its_format_and_parses_without_dead_letters(mix):
    m, parsed = mix
    for fmt, (data, events, dead, parser) in parsed.items():
        assert detect_format(data[:HEAD_BYTES]) == fmt
        assert dead == [], (fmt, dead[:2])
        assert events, fmt
        problems = [p for e in events for p in check_event(e)]
        assert problems == [], (fmt, problems[:3])


def test_record_counts_in_the_manifest_are_the_records_in_the_files(mix):
    m, parsed = mix
    for fmt, (data, events, _dead, parser) in parsed.items():
        if fmt == "k8s_pods":
            assert m.records[fmt] == json.loads(data)["items"].__len__()
            continue
        lines = [l for l in data.split(b"\n") if l and not l.startswith(b"#")]
        assert m.records[fmt] == len(lines) == parser.stats.parsed
    # One event per gateway line; KServe joins request and response; DCGM groups a scrape per GPU;
    # the audit log gives one event per request, whatever its stages.
    assert len(parsed["envoy_json"][1]) == m.records["envoy_json"]
    assert len(parsed["kserve"][1]) * 2 == m.records["kserve"]
    assert parsed["kserve"][2] == [] and "unjoined_requests" not in parsed["kserve"][3].stats.notes
    assert len(parsed["dcgm"][1]) * 11 == m.records["dcgm"]
    assert len({e["audit_id"] for e in parsed["k8s_audit"][1]}) == len(parsed["k8s_audit"][1])
    # The demo's budget: 20-60k records over 10-15 minutes of event time.
    assert 20_000 <= sum(m.records.values()) <= 60_000
    assert 600 <= (m.end - m.start) / NS <= 900


def test_every_event_lies_in_the_run_and_attacks_inside_it(mix):
    m, parsed = mix
    assert m.start == parse_iso(START) and m.end - m.start == 720 * NS
    for fmt, (_d, events, _dl, _p) in parsed.items():
        if fmt != "k8s_pods":  # pods started before the run: the list is a snapshot of what runs
            ts = [e["ts"] for e in events]
            assert m.start <= min(ts) and max(ts) < m.end, fmt
    assert {(a.name, a.detector) for a in m.attacks} == {
        ("credential-stuffing", "access.stuffing"), ("kubectl-exec", "access.k8s_exec"),
        ("kubectl-exec", "access.shell"), ("crypto-miner", "gpu.unauthorized"), ("crypto-miner", "gpu.miner")}
    assert {a.entity_type for a in m.attacks if a.detector == "gpu.miner"} == {"pod", "gpu"}
    for a in m.attacks:
        assert m.start <= a.start < a.end <= m.end, a


def _label(m, detector):
    (a,) = [a for a in m.attacks if a.detector == detector and (detector != "gpu.miner" or a.entity_type == "pod")]
    return a


def test_stuffing_is_a_burst_of_refusals_from_one_address_with_many_keys(mix):
    m, parsed = mix
    a = _label(m, "access.stuffing")
    assert a.entity_type == "src_ip"
    events = parsed["envoy_json"][1]
    burst = [e for e in events if e["src_ip"] == a.entity_id]
    assert len(burst) >= 300 and all(a.start <= e["ts"] <= a.end for e in burst)
    assert {e["status"] for e in burst} <= {401, 403}
    assert len({e["principal"] for e in burst}) == len(burst)  # a different key every time
    assert 30 * NS <= a.end - a.start <= 61 * NS
    # Benign refusals exist (a client on a revoked key) but never that many from one address in a minute.
    others = [e for e in events if e["status"] in (401, 403) and e["src_ip"] != a.entity_id]
    assert others
    per_minute: dict = {}
    for e in others:
        key = (e["src_ip"], e["ts"] // (60 * NS))
        per_minute[key] = per_minute.get(key, 0) + 1
    assert max(per_minute.values()) < 10


def test_miner_gpu_is_busy_without_an_authorized_pod_and_falco_names_the_pod(mix):
    m, parsed = mix
    gpu = _label(m, "gpu.unauthorized")
    authorized = {e["gpu_uuid"] for e in parsed["k8s_pods"][1]}
    assert gpu.entity_id not in authorized and None not in authorized
    samples = [e for e in parsed["dcgm"][1] if e["gpu_uuid"] == gpu.entity_id]
    inside = [e for e in samples if gpu.start <= e["ts"] < gpu.end]
    outside = [e for e in samples if not gpu.start <= e["ts"] < gpu.end]
    assert len(inside) >= 2 and all(e["util_pct"] >= 99 and e["pod"] is None for e in inside)
    assert all(e["tensor_active"] < 0.01 for e in inside)
    assert outside and all(e["util_pct"] == 0 for e in outside)
    # Every other busy GPU is held by an authorized pod.
    busy_elsewhere = {e["gpu_uuid"] for e in parsed["dcgm"][1] if e["util_pct"] > 0 and e["gpu_uuid"] != gpu.entity_id}
    assert busy_elsewhere <= authorized

    falco = _label(m, "gpu.miner")
    ns, pod = falco.entity_id.split("/")
    alerts = [e for e in parsed["falco"][1] if e["priority"] == "critical"]
    assert [(e["namespace"], e["pod"], e["rule"]) for e in alerts] == [
        (ns, pod, "Detect crypto miners using the Stratum protocol")]
    assert falco.start <= alerts[0]["ts"] <= falco.end
    assert {e["priority"] for e in parsed["falco"][1]} == {"critical", "notice", "informational"}


def test_exec_into_a_serving_pod_is_in_the_audit_log_in_its_interval(mix):
    m, parsed = mix
    a = _label(m, "access.k8s_exec")
    ns, pod = a.entity_id.split("/")
    execs = [e for e in parsed["k8s_audit"][1] if e["subresource"] == "exec"]
    assert len(execs) == 1
    e = execs[0]
    assert (e["namespace"], e["pod"], e["verb"], e["status"]) == (ns, pod, "create", 101)
    assert e["user"].endswith("@example.com") and a.start <= e["ts"] <= a.end
    assert pod in {w["pod"] for w in parsed["k8s_pods"][1]}  # a pod that holds a GPU and serves a model


def test_baseline_has_no_attacks_and_its_files_parse(tmp_path):
    m = simulate("baseline", tmp_path / "b.json", seed=3, start=START, duration_seconds=120, rate=10)
    assert m.attacks == [] and json.loads(m.path.read_text())["attacks"] == []
    for fmt in m.files:
        data = m.file(fmt).read_bytes()
        assert detect_format(data[:HEAD_BYTES]) == fmt
        events, dead, _ = parse_bytes(fmt, data)
        assert dead == [] and events
    envoy = parse_bytes("envoy_json", m.file("envoy_json").read_bytes())[0]
    assert not any(e["src_ip"] == "192.0.2.77" for e in envoy)
    assert all(e["util_pct"] == 0 for e in parse_bytes("dcgm", m.file("dcgm").read_bytes())[0]
               if e["pod"] is None)


def _bytes(m):
    return {f: m.file(f).read_bytes() for f in m.files} | {"manifest": m.path.read_bytes()}


def test_same_seed_and_start_give_the_same_bytes_and_another_seed_does_not(tmp_path):
    kw = dict(start=START, duration_seconds=180)
    a = _bytes(simulate("mix", tmp_path / "a" / "s.json", seed=11, **kw))
    b = _bytes(simulate("mix", tmp_path / "b" / "s.json", seed=11, **kw))
    c = _bytes(simulate("mix", tmp_path / "c" / "s.json", seed=12, **kw))
    assert a == b
    assert all(a[k] != c[k] for k in a)


def test_rate_scales_the_gateway_and_duration_bounds_the_events(tmp_path):
    low = simulate("baseline", tmp_path / "l.json", start=START, duration_seconds=120, rate=5)
    high = simulate("baseline", tmp_path / "h.json", start=START, duration_seconds=120, rate=20)
    ratio = high.records["envoy_json"] / low.records["envoy_json"]
    assert 3 < ratio < 5
    assert high.end - high.start == 120 * NS


def test_bad_scenario_name_is_a_clear_error_listing_the_names(tmp_path):
    with pytest.raises(ConfigError) as e:
        simulate("mixx", tmp_path / "x.json")
    msg = str(e.value)
    assert "unknown scenario 'mixx'" in msg and "did you mean 'mix'" in msg
    assert all(name in msg for name in SCENARIOS)
    with pytest.raises(ConfigError, match="RFC 3339"):
        simulate("mix", tmp_path / "x.json", start="yesterday")
    with pytest.raises(ConfigError, match="duration"):
        simulate("mix", tmp_path / "x.json", start=START, duration_seconds=5)
    with pytest.raises(SystemExit):  # argparse rejects it with the choices
        _cli(["simulate", "--scenario", "nope", "--out", str(tmp_path / "x.json")])


def test_cli_list_names_every_scenario_and_attack(capsys):
    assert run(_cli(["simulate", "--list"])) == 0
    out = capsys.readouterr().out
    for name, s in SCENARIOS.items():
        assert name in out
        for p in s.attacks:
            assert p.attack in out


def test_cli_writes_the_files_and_summarises_them(tmp_path, capsys):
    out = tmp_path / "sim" / "demo.json"
    code = run(_cli(["simulate", "--scenario", "mix", "--out", str(out), "--seed", "5", "--start", START,
                     "--duration-seconds", "120", "--rate", "8"]))
    assert code == 0
    manifest, paths = output_paths(out)
    assert manifest.exists() and all(p.exists() for p in paths.values())
    err = capsys.readouterr().err
    assert "demo.envoy_json.log" in err and "access.stuffing on src_ip 192.0.2.77" in err
    assert json.loads(manifest.read_text())["seed"] == 5
    assert run(_cli(["simulate", "--scenario", "mix"])) == 2
    assert "--out FILE is required" in capsys.readouterr().err
