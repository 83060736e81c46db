import orjson
import pytest

from ramparts.events import check_event
from ramparts.streams.decode import detect_format, parse_bytes
from ramparts.streams.parsers.job_registry import JobRegistryParser
from ramparts.timeutil import format_rfc3339

UUID_1 = "GPU-6f1c2a9e-3b4d-4e5f-8a7b-0c1d2e3f4a5b"
UUID_2 = "GPU-7a2d3b0f-4c5e-4f60-9b8c-1d2e3f4a5b6c"
UUID_3 = "GPU-8b3e4c1a-5d6f-4071-8c9d-2e3f4a5b6c7d"

CSV = (
    "# authorized GPU jobs, exported from the scheduler on 2026-03-02\n"
    "node,gpu_uuid,namespace,job,start,end,owner\n"
    f"gpu-node-1,{UUID_1},training,llm-pretrain,2026-03-02T08:59:42Z,,alice@example.com\n"
    f'gpu-node-2,"{UUID_2},{UUID_3}",research,batch-eval-28391,1772431202,1772437275,bob\n'
    "gpu-node-3,,inference,vllm-serving,2026-03-01T00:00:00+01:00,2026-03-08T00:00:00+01:00,\n"
).encode()

JOBS = [
    {"node": "gpu-node-1", "gpu_uuid": UUID_1, "namespace": "training", "pod": "llm-pretrain-0",
     "start": "2026-03-02T08:59:42Z", "end": None, "user": "alice"},
    {"node": "gpu-node-2", "gpu_uuid": [UUID_2, UUID_3], "namespace": "research", "pod": "batch-eval-28391-q8x7z",
     "start": 1772431202, "end": 1772437275.5, "owner": "bob"},
]


def parse(data: bytes, options=None):
    events, dead, parser = parse_bytes(JobRegistryParser(options), data)
    for e in events:
        assert check_event(e) == [], e
    return events, dead, parser


def test_csv_golden():
    assert detect_format(CSV) == "job_registry"
    events, dead, parser = parse(CSV)
    assert dead == []
    running, eval_a, eval_b, serving = events
    assert (running["node"], running["gpu_uuid"], running["namespace"], running["pod"], running["job"]) == (
        "gpu-node-1", UUID_1, "training", "llm-pretrain", "llm-pretrain")
    assert format_rfc3339(running["start"]) == "2026-03-02T08:59:42Z" and running["ts"] == running["start"]
    assert running["end"] is None and running["owner"] == "alice@example.com"
    # epoch seconds, and a quoted list of GPUs: one event per GPU
    assert [eval_a["gpu_uuid"], eval_b["gpu_uuid"]] == [UUID_2, UUID_3]
    assert (format_rfc3339(eval_a["start"]), format_rfc3339(eval_a["end"])) == ("2026-03-02T06:00:02Z", "2026-03-02T07:41:15Z")
    # a node-wide authorization (no gpu_uuid), offsets honoured, empty owner
    assert (serving["gpu_uuid"], serving["owner"]) == (None, None)
    assert (format_rfc3339(serving["start"]), format_rfc3339(serving["end"])) == ("2026-02-28T23:00:00Z", "2026-03-07T23:00:00Z")
    s = parser.stats
    assert (s.records, s.parsed, s.events, s.dead_letters) == (1, 1, 4, 0)


def test_json_array_pretty_printed_json_lines_and_wrapped():
    pretty = orjson.dumps(JOBS, option=orjson.OPT_INDENT_2)
    lines = b"\n".join(orjson.dumps(j) for j in JOBS) + b"\n"
    wrapped = orjson.dumps({"generated": "2026-03-02T09:00:00Z", "jobs": JOBS})
    for data in (pretty, lines, wrapped):
        assert detect_format(data) == "job_registry"
        events, dead, _ = parse(data)
        assert dead == []
        assert [(e["pod"], e["gpu_uuid"], e["owner"]) for e in events] == [
            ("llm-pretrain-0", UUID_1, "alice"), ("batch-eval-28391-q8x7z", UUID_2, "bob"),
            ("batch-eval-28391-q8x7z", UUID_3, "bob")]
        assert events[1]["end"] == 1772437275_500_000_000 and events[1]["job"] is None


def test_naive_times_use_the_configured_zone_and_tab_separated_files():
    data = b"node\tgpu_uuid\tpod\tstart\tend\ngpu-node-1\tGPU-1\tp\t2026-03-02 10:00:00\t\n"
    (e,), dead, _ = parse(data, {"timezone": "Europe/Berlin"})
    assert dead == [] and format_rfc3339(e["start"]) == "2026-03-02T09:00:00Z"


@pytest.mark.parametrize("bad, reason", [
    ("gpu-node-9,GPU-9,ns,job,2026-02-30T00:00:00Z,,eve", "start: day is out of range"),
    ("gpu-node-9,GPU-9,ns,job,2026-13-01T00:00:00Z,,eve", "start: month must be in 1..12"),
    ("gpu-node-9,GPU-9,ns,job,2026-03-02T10:00:00Z,2026-03-02T09:00:00Z,eve", "end is before start"),
    ("gpu-node-9,GPU-9,ns,job,,,eve", "without a start"),
    ("gpu-node-9,GPU-9,ns,job,yesterday,,eve", "not an RFC 3339 timestamp"),
    ("gpu-node-9,GPU-9,ns,job,2026-03-02T10:00:00Z", "row has 5 fields, the header has 7"),
    (",,ns,job,2026-03-02T10:00:00Z,,eve", "neither a node nor a gpu_uuid"),
    ("gpu-node-9,GPU-\udcff,ns,job,2026-03-02T10:00:00Z,,eve", "not UTF-8"),
])
def test_bad_csv_rows_are_rejected_and_the_others_kept(bad, reason):
    lines = CSV.decode().splitlines()
    data = "\n".join(lines[:3] + [bad] + lines[3:]).encode("utf-8", "surrogateescape") + b"\n"
    events, dead, parser = parse(data)
    assert len(events) == 4
    assert len(dead) == 1 and reason in dead[0].reason, dead
    assert dead[0].item == 3 and dead[0].raw == bad.encode("utf-8", "surrogateescape")
    assert (parser.stats.parsed, parser.stats.failed) == (1, 0)


@pytest.mark.parametrize("field, value, reason", [
    ("start", [], "start: expected an RFC 3339 time or epoch seconds, got list"),
    ("start", True, "start: expected a time, got a boolean"),
    ("start", "2026-02-30T00:00:00Z", "day is out of range"),
    ("end", 1e300, "end: "),
    ("node", {"name": "gpu-node-1"}, "node: expected text, got dict"),
    ("gpu_uuid", [["GPU-1"]], "gpu_uuid: expected text, got list"),
])
def test_wrong_json_types_are_rejected(field, value, reason):
    bad = dict(JOBS[0], **{field: value})
    events, dead, _ = parse(orjson.dumps([JOBS[0], bad, JOBS[1]]))
    assert len(events) == 3
    assert len(dead) == 1 and dead[0].item == 1 and reason in dead[0].reason, dead


def test_bad_json_line_is_rejected_alone():
    data = orjson.dumps(JOBS[0]) + b"\n" + orjson.dumps(JOBS[1])[:40] + b"\n[1, 2]\n" + orjson.dumps(JOBS[1]) + b"\n"
    events, dead, _ = parse(data)
    assert len(events) == 3
    assert [d.item for d in dead] == [1, 2] and "invalid JSON" in dead[0].reason and "expected a JSON object" in dead[1].reason


def test_whole_document_failures():
    for bad, reason in ((orjson.dumps(JOBS)[:-30], "invalid JSON"),
                        (b"node,gpu_uuid,pod\ngpu-node-1,GPU-1,p\n", "needs a start column"),
                        (b"# nothing but a comment\n", "no job registry header"),
                        (b'{"node": "n1", "gpu_uuid": "GPU-1",\n "start": "2026-03-02T10:00:00Z"', "invalid JSON")):
        events, dead, parser = parse(bad)
        assert len(events) == 0 and len(dead) == 1 and reason in dead[0].reason, (bad, dead)
        assert parser.stats.failed == 1


def test_detection_is_specific():
    compute_apps = b"timestamp, gpu_uuid, pid, process_name, used_gpu_memory [MiB]\n"
    assert not JobRegistryParser.sniff(compute_apps, [compute_apps.strip()])
    nginx = (b'203.0.113.9 - team-a [08/Apr/2019:18:16:55 +0200] "POST /v1/chat/completions HTTP/1.1" 200 1532 '
             b'"-" "OpenAI/Python 1.40.0"\n')
    assert not JobRegistryParser.sniff(nginx, [nginx.strip()])
    kong = b'{"request": {"method": "POST"}, "consumer": {"username": "team-1"}, "started_at": 1772442000000}\n'
    assert not JobRegistryParser.sniff(kong, [kong.strip()])
    pod = b'{"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": {"nodeName": "n"}, "start": 1}'
    assert not JobRegistryParser.sniff(pod, [pod])
    assert not JobRegistryParser.sniff(b"\xff\xfe,\x00", [b"\xff\xfe,\x00"])
