import pytest

from ramparts.events import check_event
from ramparts.streams.decode import detect_format, parse_bytes
from ramparts.streams.parsers.nvidia_smi import NvidiaSmiParser
from ramparts.timeutil import format_rfc3339, parse_iso

MASKED = "GPU-00000000-0000-0000-0000-000000000000"
H100 = "linux-x86_64__nvidia-h100-80gb-hbm3__590.48.01.txt"
RTX = "linux-x86_64__nvidia-geforce-rtx-2080-super__595.71.05.txt"

# `nvidia-smi --query-gpu=timestamp,name,uuid,index,utilization.gpu,utilization.memory,memory.total,
#  memory.used,power.draw,temperature.gpu,clocks.sm,pstate,pcie.link.gen.current,hostname --format=csv -l 5`
QUERY_GPU = (
    "timestamp, name, uuid, index, utilization.gpu [%], utilization.memory [%], memory.total [MiB], "
    "memory.used [MiB], power.draw [W], temperature.gpu, clocks.current.sm [MHz], pstate, pcie.link.gen.current, hostname\n"
    "2026/03/02 09:00:00.125, NVIDIA A100-SXM4-80GB, GPU-4d3c2b1a-0000-4a5b-8c7d-111111111111, 0, 100 %, 87 %, "
    "81920 MiB, 78211 MiB, 398.12 W, 71, 1410 MHz, P0, 4, gpu-node-7\n"
    "2026/03/02 09:00:00.131, NVIDIA A100-SXM4-80GB, GPU-4d3c2b1a-0000-4a5b-8c7d-222222222222, 1, 0 %, 0 %, "
    "81920 MiB, 4 MiB, [N/A], 33, 210 MHz, [Not Supported], [Requested functionality has been deprecated], [N/A]\n"
    "2026/03/02 09:00:05.127, NVIDIA A100-SXM4-80GB, GPU-4d3c2b1a-0000-4a5b-8c7d-111111111111, 0, 99 %, 85 %, "
    "81920 MiB, 78211 MiB, 401.50 W, 72, 1410 MHz, P0, 4, gpu-node-7\n"
)
# `nvidia-smi --query-compute-apps=timestamp,gpu_uuid,pid,process_name,used_gpu_memory --format=csv`
COMPUTE_APPS = (
    "timestamp, gpu_uuid, pid, process_name, used_gpu_memory [MiB]\n"
    "2026/03/02 09:00:00.300, GPU-4d3c2b1a-0000-4a5b-8c7d-111111111111, 48211, /usr/bin/python3, 76102 MiB\n"
    "2026/03/02 09:00:00.300, GPU-4d3c2b1a-0000-4a5b-8c7d-111111111111, 48390, /opt/x/xmrig --donate-level=1,--cuda, 2048 MiB\n"
    "2026/03/02 09:00:00.300, GPU-4d3c2b1a-0000-4a5b-8c7d-222222222222, 51002, ./miner, [N/A]\n"
    "2026/03/02 09:00:05.310, GPU-4d3c2b1a-0000-4a5b-8c7d-111111111111, 48211, /usr/bin/python3, 76102 MiB\n"
)


def parse(data: bytes, options=None):
    events, dead, parser = parse_bytes(NvidiaSmiParser(options, now_ns=parse_iso("2026-03-02T12:00:00Z")), data)
    for e in events:
        assert check_event(e) == [], e
    return events, dead, parser


def test_h100_capture_idle_and_under_gpu_burn(samples):
    data = (samples / "nvidia-smi" / H100).read_bytes()
    assert detect_format(data) == "nvidia_smi"
    events, dead, parser = parse(data, {"timezone": "UTC", "node": "gpu-h100-1"})
    assert dead == []
    assert [(format_rfc3339(e["ts"]), e["processes"] is not None) for e in events] == [
        ("2026-07-14T08:12:38.696Z", False),  # idle query-gpu
        ("2026-07-14T08:12:38.696Z", True),  # idle compute-apps: empty -> processes []
        ("2026-07-14T08:12:53.353Z", False),  # load query-gpu
        ("2026-07-14T08:12:53.500Z", True),  # load compute-apps
    ]
    idle, no_procs, load, procs = events
    assert all(e["node"] == "gpu-h100-1" and e["gpu_uuid"] == MASKED for e in events)  # hostname is [N/A]
    assert (idle["util_pct"], idle["mem_used_mib"], idle["power_w"], idle["temp_c"], idle["sm_clock_mhz"]) == (
        0.0, 0.0, 69.85, 41.0, 345.0)
    assert (idle["gpu_name"], idle["gpu_index"], idle["mem_total_mib"], idle["pstate"], idle["pcie_link_gen"]) == (
        "NVIDIA H100 80GB HBM3", 0, 81559.0, "P0", 5)
    assert no_procs["processes"] == [] and no_procs["util_pct"] is None and no_procs["gpu_index"] == 0
    assert (load["util_pct"], load["mem_used_mib"], load["power_w"], load["temp_c"], load["sm_clock_mhz"]) == (
        100.0, 19818.0, 631.95, 59.0, 1980.0)
    assert (load["mem_free_mib"], load["mem_copy_util_pct"]) == (61263.0, 11.0)
    assert procs["processes"] == [
        {"pid": 11327, "name": "/root/tools/memhog", "mem_mib": 2566.0},
        {"pid": 11328, "name": "/root/tools/memhog", "mem_mib": 1542.0},
        {"pid": 11345, "name": "./gpu_burn", "mem_mib": 15690.0},
    ]
    assert procs["util_pct"] is None and procs["power_w"] is None and procs["gpu_name"] == "NVIDIA H100 80GB HBM3"
    s = parser.stats
    assert s.notes == {"sections_skipped": 24}  # help, tables, -q, pmon/dmon, accounted apps, retired pages
    assert s.records == s.parsed + s.skipped and s.failed == 0


def test_rtx_capture_local_time_and_nvenc_load(samples):
    data = (samples / "nvidia-smi" / RTX).read_bytes()
    assert detect_format(data) == "nvidia_smi"
    # The capture header says collected_at 2026-06-24T08:26:34Z; nvidia-smi wrote 10:26:34 local (CEST).
    events, dead, _ = parse(data, {"timezone": "Europe/Berlin"})
    assert dead == []
    idle, no_procs, load, procs = events
    assert format_rfc3339(idle["ts"]) == "2026-06-24T08:26:34.977Z"
    assert (idle["util_pct"], idle["mem_used_mib"], idle["power_w"], idle["pstate"], idle["node"]) == (
        0.0, 214.0, 39.32, "P8", None)
    assert no_procs["processes"] == []
    assert (load["util_pct"], load["enc_util_pct"], load["power_w"], load["sm_clock_mhz"]) == (8.0, 100.0, 111.5, 2055.0)
    assert format_rfc3339(procs["ts"]) == "2026-06-24T08:26:49.980Z"
    assert [(p["pid"], p["name"], p["mem_mib"]) for p in procs["processes"]] == [
        (5268, "ffmpeg", 370.0), (5267, "ffmpeg", 230.0)]


def test_empty_compute_apps_event_can_be_turned_off(samples):
    data = (samples / "nvidia-smi" / H100).read_bytes()
    events, dead, _ = parse(data, {"timezone": "UTC", "empty_apps_event": False})
    assert [e["processes"] for e in events] == [None, None, [
        {"pid": 11327, "name": "/root/tools/memhog", "mem_mib": 2566.0},
        {"pid": 11328, "name": "/root/tools/memhog", "mem_mib": 1542.0},
        {"pid": 11345, "name": "./gpu_burn", "mem_mib": 15690.0}]]


def test_plain_query_gpu_csv_units_and_not_available_values():
    events, dead, parser = parse(QUERY_GPU.encode(), {"timezone": "UTC", "node": "fallback-node"})
    assert dead == []
    busy, idle, busy2 = events
    assert format_rfc3339(busy["ts"]) == "2026-03-02T09:00:00.125Z"
    assert (busy["node"], busy["gpu_uuid"], busy["util_pct"], busy["mem_used_mib"], busy["power_w"]) == (
        "gpu-node-7", "GPU-4d3c2b1a-0000-4a5b-8c7d-111111111111", 100.0, 78211.0, 398.12)
    assert (busy["mem_copy_util_pct"], busy["temp_c"], busy["sm_clock_mhz"], busy["pcie_link_gen"]) == (87.0, 71.0, 1410.0, 4)
    # [N/A], [Not Supported] and the deprecation notice are missing values; hostname [N/A] -> Options.node
    assert (idle["power_w"], idle["pstate"], idle["pcie_link_gen"], idle["node"]) == (None, None, None, "fallback-node")
    assert busy2["util_pct"] == 99.0 and format_rfc3339(busy2["ts"]) == "2026-03-02T09:00:05.127Z"
    assert parser.stats.skipped == 1  # the header


def test_plain_compute_apps_csv_grouped_per_gpu_and_time():
    events, dead, _ = parse(COMPUTE_APPS.encode(), {"timezone": "UTC"})
    assert dead == []
    assert [(e["gpu_uuid"][-4:], format_rfc3339(e["ts"]), [p["pid"] for p in e["processes"]]) for e in events] == [
        ("1111", "2026-03-02T09:00:00.300Z", [48211, 48390]),
        ("2222", "2026-03-02T09:00:00.300Z", [51002]),
        ("1111", "2026-03-02T09:00:05.310Z", [48211]),
    ]
    # a process name with commas is re-joined; [N/A] memory (WDDM, no permission) is None
    assert events[0]["processes"][1] == {"pid": 48390, "name": "/opt/x/xmrig --donate-level=1, --cuda", "mem_mib": 2048.0}
    assert events[1]["processes"][0]["mem_mib"] is None
    assert all(e["util_pct"] is None for e in events)


def test_query_gpu_then_compute_apps_in_one_file():
    data = (QUERY_GPU + COMPUTE_APPS).encode()
    events, dead, _ = parse(data, {"timezone": "UTC"})
    assert dead == [] and len(events) == 6
    apps = [e for e in events if e["processes"] is not None]
    # node and index of a process event come from the GPU's query-gpu row
    assert (apps[0]["node"], apps[0]["gpu_index"]) == ("gpu-node-7", 0)
    # an empty compute-apps table after query-gpu rows: one processes=[] event per GPU
    empty = (QUERY_GPU + "timestamp, gpu_uuid, pid, process_name, used_gpu_memory [MiB]\n").encode()
    events, dead, _ = parse(empty, {"timezone": "UTC"})
    tail = [e for e in events if e["processes"] == []]
    assert sorted((e["gpu_uuid"][-4:], format_rfc3339(e["ts"])) for e in tail) == [
        ("1111", "2026-03-02T09:00:05.127Z"), ("2222", "2026-03-02T09:00:00.131Z")]


def test_noheader_output_with_columns_option():
    data = b"2026/03/02 09:00:00.125, GPU-4d3c2b1a-0000-4a5b-8c7d-111111111111, 100, 78211, 398.12\n"
    events, dead, _ = parse(data, {"timezone": "UTC",
                                   "columns": "timestamp,uuid,utilization.gpu,memory.used,power.draw"})
    assert dead == []
    assert (events[0]["util_pct"], events[0]["mem_used_mib"], events[0]["power_w"]) == (100.0, 78211.0, 398.12)
    events, dead, _ = parse(data, {"timezone": "UTC"})
    assert len(events) == 0 and "header" in dead[0].reason


@pytest.mark.parametrize("bad, reason", [
    ("2026/03/02 09:00:01.000, NVIDIA A100-SXM4-80GB, GPU-x, 0, 100 %", "row has 5 fields, the header has 14"),
    ("2026/03/02 09:00:01.000, NVIDIA A100-SXM4-80GB, GPU-x, 0, abc %, 87 %, 81920 MiB, 78211 MiB, 398.12 W, 71, "
     "1410 MHz, P0, 4, n", "utilization.gpu: expected a number"),
    ("2026/02/30 09:00:01.000, NVIDIA A100-SXM4-80GB, GPU-x, 0, 1 %, 87 %, 81920 MiB, 78211 MiB, 398.12 W, 71, "
     "1410 MHz, P0, 4, n", "day is out of range"),
    ("2026/03/02 09:00:01.000, NVIDIA A100-SXM4-80GB, GPU-x, zero, 1 %, 87 %, 81920 MiB, 78211 MiB, 398.12 W, 71, "
     "1410 MHz, P0, 4, n", "index: expected an integer"),
    ("\x00\x01\x02 garbage", "row has 1 fields"),
])
def test_bad_rows_are_dead_lettered_and_the_rest_parses(bad, reason):
    header, first, second, third = QUERY_GPU.splitlines()
    data = "\n".join([header, first, bad, third]).encode() + b"\n"
    events, dead, parser = parse(data, {"timezone": "UTC"})
    assert len(events) == 2
    assert len(dead) == 1 and dead[0].line == 3 and reason in dead[0].reason
    s = parser.stats
    assert (s.records, s.parsed, s.failed, s.skipped) == (4, 2, 1, 1)


def test_non_utf8_row_and_bad_pid():
    data = COMPUTE_APPS.encode() + b"2026/03/02 09:00:06.000, GPU-\xff, 1, x, 1 MiB\n"
    data += b"2026/03/02 09:00:06.000, GPU-4d3c2b1a-0000-4a5b-8c7d-111111111111, [N/A], x, 1 MiB\n"
    events, dead, _ = parse(data, {"timezone": "UTC"})
    assert len(events) == 3
    assert ["not UTF-8" in dead[0].reason, "pid" in dead[1].reason] == [True, True]


def test_detection_is_specific():
    assert detect_format(QUERY_GPU.encode()) == "nvidia_smi"
    assert detect_format(COMPUTE_APPS.encode()) == "nvidia_smi"
    nginx = (b'203.0.113.9 - team-a [08/Apr/2019:18:16:55 +0200] "POST /v1/chat/completions HTTP/1.1" 200 1532 '
             b'"-" "OpenAI/Python 1.40.0"\n')
    assert not NvidiaSmiParser.sniff(nginx, [nginx.strip()])
    other_json = b'{"kind": "Event", "apiVersion": "audit.k8s.io/v1", "verb": "get"}\n'
    assert not NvidiaSmiParser.sniff(other_json, [other_json.strip()])
    registry = b"node,gpu_uuid,namespace,pod,start,end\n"
    assert not NvidiaSmiParser.sniff(registry, [registry.strip()])
    assert not NvidiaSmiParser.sniff(b"\xff\xfe\x00", [b"\xff\xfe\x00"])
