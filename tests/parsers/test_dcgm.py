import pytest

from ramparts.events import check_event
from ramparts.streams.decode import detect_format, parse_bytes
from ramparts.streams.parsers.dcgm import DcgmParser, parse_labels, parse_scrape
from ramparts.timeutil import format_rfc3339, parse_iso

NOW = parse_iso("2026-03-02T09:00:00Z")
T4 = "GPU-20c56d28-0da5-6d26-a36a-e7af1ce2586e"
H100_LABELS = ('gpu="0",UUID="GPU-8a1f3c52-77d0-4b6e-9c1e-0d3f5a7b9c11",device="nvidia0",'
               'modelName="NVIDIA H100 80GB HBM3",Hostname="gpu-node-1",'
               'DCGM_FI_DRIVER_VERSION="550.90.07",DCGM_FI_PROCESS_NAME="/usr/bin/dcgm-exporter",'
               'container="trainer",namespace="training",pod="llm-pretrain-0"')
H100_1_LABELS = H100_LABELS.replace('gpu="0"', 'gpu="1"').replace("GPU-8a1f", "GPU-9b2e").replace("nvidia0", "nvidia1")


def sample_path(samples):
    return samples / "dcgm" / "datadog-dcgm-fixture-excerpt.txt"


def parse(data: bytes, options=None, now=NOW):
    events, dead, parser = parse_bytes(DcgmParser(options, now_ns=now), data)
    for e in events:
        assert check_event(e) == [], e
    return events, dead, parser


def lines(*ls: str) -> bytes:
    return "".join(l + "\n" for l in ls).encode()


def test_real_sample(samples):
    data = sample_path(samples).read_bytes()
    assert detect_format(data) == "dcgm"
    events, dead, parser = parse(data)
    assert dead == []
    by_uuid = {e["gpu_uuid"]: e for e in events}
    assert list(by_uuid) == [T4, "GPU-604ac76c-d9cf-fef3-62e9-d92044ab6e52", "GPU-abc"]
    t4 = by_uuid[T4]
    assert format_rfc3339(t4["ts"]) == "2026-03-02T09:00:00Z"  # no sample timestamps: parser time
    assert (t4["node"], t4["gpu_model"], t4["gpu_index"]) == ("424773df46e0", "Tesla T4", 0)
    assert (t4["util_pct"], t4["mem_used_mib"], t4["power_w"]) == (0.0, 0.0, 8.969)
    assert (t4["sm_clock_mhz"], t4["temp_c"], t4["mem_free_mib"], t4["mem_copy_util_pct"]) == (300.0, 25.0, 15109.0, 0.0)
    assert t4["xid_errors"] == 0 and type(t4["xid_errors"]) is int
    assert t4["metrics"] == {"DCGM_FI_DEV_MEM_CLOCK": 405, "DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION": 128996013}
    # DCGM_FI_PROCESS_NAME names the exporter, not a process on the GPU.
    assert t4["processes"] is None
    assert "dcgm-exporter" not in repr(events)
    assert (t4["namespace"], t4["pod"], t4["container"]) == (None, None, None)
    # The "not supported" sentinel 9223372036854775794 is a missing value.
    sparse = by_uuid["GPU-604ac76c-d9cf-fef3-62e9-d92044ab6e52"]
    assert sparse["metrics"] == {"DCGM_FI_DEV_MEMORY_TEMP": None}
    assert sparse["node"] is None and sparse["gpu_model"] is None and sparse["gpu_index"] == 0
    a10 = by_uuid["GPU-abc"]
    assert (a10["node"], a10["gpu_model"]) == ("ip-11111", "NVIDIA A10G")
    assert (a10["namespace"], a10["pod"], a10["container"]) == ("ray-llm", "ray-1111111", "ray-worker")
    assert a10["dram_active"] == 0.000003 and a10["util_pct"] is None and a10["metrics"] is None
    s = parser.stats
    assert (s.records, s.parsed, s.skipped, s.failed, s.events) == (36, 12, 24, 0, 3)
    assert s.notes["blank_values"] == 1


def test_scrape_time_option_and_interval_between_repeated_scrapes():
    one = [f"DCGM_FI_DEV_GPU_UTIL{{{H100_LABELS}}} 97", f"DCGM_FI_DEV_POWER_USAGE{{{H100_LABELS}}} 612.5"]
    data = lines("# HELP DCGM_FI_DEV_GPU_UTIL GPU utilization (in %).", *one,
                 "# HELP DCGM_FI_DEV_GPU_UTIL GPU utilization (in %).", *one)
    events, dead, _ = parse(data, {"scrape_time": "2026-03-02T10:00:00+01:00", "scrape_interval_s": 15})
    assert dead == []
    assert [format_rfc3339(e["ts"]) for e in events] == ["2026-03-02T09:00:00Z", "2026-03-02T09:00:15Z"]
    assert [(e["util_pct"], e["power_w"]) for e in events] == [(97.0, 612.5), (97.0, 612.5)]
    with pytest.raises(ValueError):
        DcgmParser({"scrape_time": "yesterday"})


def test_timestamped_scrapes_group_per_gpu_and_time_and_stream():
    t1, t2 = 1772442000000, 1772442030000
    data = [
        f"DCGM_FI_DEV_GPU_UTIL{{{H100_LABELS}}} 100 {t1}".encode(),
        f"DCGM_FI_DEV_GPU_UTIL{{{H100_1_LABELS}}} 0 {t1}".encode(),
        f"DCGM_FI_DEV_FB_USED{{{H100_LABELS}}} 61440 {t1}".encode(),
        f"DCGM_FI_DEV_FB_USED{{{H100_1_LABELS}}} 0 {t1}".encode(),
        f"DCGM_FI_DEV_GPU_UTIL{{{H100_LABELS}}} 99 {t2}".encode(),
        f"DCGM_FI_DEV_GPU_UTIL{{{H100_1_LABELS}}} 0 {t2}".encode(),
    ]
    p = DcgmParser(now_ns=NOW)
    events, dead = [], []
    p.parse_chunk(data[:4], "f", 1, events, dead)
    assert events == []  # a group is complete only when the next timestamp arrives
    p.parse_chunk(data[4:5], "f", 5, events, dead)
    assert [(e["gpu_index"], e["util_pct"], e["mem_used_mib"]) for e in events] == [(0, 100.0, 61440.0), (1, 0.0, 0.0)]
    assert {format_rfc3339(e["ts"]) for e in events} == {"2026-03-02T09:00:00Z"}
    p.parse_chunk(data[5:], "f", 6, events, dead)
    p.flush(events, dead)
    assert dead == [] and len(events) == 4
    assert [format_rfc3339(e["ts"]) for e in events[2:]] == ["2026-03-02T09:00:30Z"] * 2
    e = events[0]
    assert (e["node"], e["namespace"], e["pod"], e["container"]) == ("gpu-node-1", "training", "llm-pretrain-0", "trainer")


def test_series_major_dump_is_held_until_the_end():
    t1, t2 = 1772442000000, 1772442030000
    data = lines(
        f"DCGM_FI_DEV_GPU_UTIL{{{H100_LABELS}}} 100 {t1}",
        f"DCGM_FI_DEV_GPU_UTIL{{{H100_LABELS}}} 98 {t2}",
        f"DCGM_FI_PROF_PIPE_TENSOR_ACTIVE{{{H100_LABELS}}} 0.91 {t1}",
        f"DCGM_FI_PROF_PIPE_TENSOR_ACTIVE{{{H100_LABELS}}} 0.89 {t2}",
    )
    events, dead, parser = parse(data)
    assert dead == []
    assert [(e["util_pct"], e["tensor_active"]) for e in events] == [(100.0, 0.91), (98.0, 0.89)]
    assert parser.stats.notes["series_major_order"] == 1


def test_blank_sentinels_are_missing_values():
    L = H100_LABELS
    data = lines(
        f"DCGM_FI_DEV_GPU_UTIL{{{L}}} 9223372036854775794",  # int64 NOT_SUPPORTED
        f"DCGM_FI_DEV_FB_USED{{{L}}} 2147483632",  # int32 blank
        f"DCGM_FI_DEV_GPU_TEMP{{{L}}} 2147483647",  # int32 blank + 15
        f"DCGM_FI_DEV_POWER_USAGE{{{L}}} 140737488355328.000000",  # fp64 blank
        f"DCGM_FI_PROF_SM_ACTIVE{{{L}}} 1.40737488355329e+14",  # fp64 blank + 1
        f"DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION{{{L}}} 2147483648",  # a real int64 counter
        f"DCGM_FI_DEV_PCIE_REPLAY_COUNTER{{{L}}} 9223372036854775792",
        f"DCGM_FI_DEV_SM_CLOCK{{{L}}} NaN",
    )
    events, dead, parser = parse(data)
    assert dead == [] and len(events) == 1
    e = events[0]
    assert (e["util_pct"], e["mem_used_mib"], e["temp_c"], e["power_w"], e["sm_active"], e["sm_clock_mhz"]) == (None,) * 6
    assert e["metrics"] == {"DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION": 2147483648, "DCGM_FI_DEV_PCIE_REPLAY_COUNTER": None}
    assert parser.stats.notes["blank_values"] == 6


def test_miner_signature_fields():
    L = H100_LABELS
    data = lines(
        f"DCGM_FI_PROF_SM_ACTIVE{{{L}}} 0.998",
        f"DCGM_FI_PROF_SM_OCCUPANCY{{{L}}} 0.5",
        f"DCGM_FI_PROF_PIPE_TENSOR_ACTIVE{{{L}}} 0.000000",
        f"DCGM_FI_PROF_DRAM_ACTIVE{{{L}}} 0.71",
        f"DCGM_FI_PROF_PCIE_TX_BYTES{{{L}}} 1048576",
        f"DCGM_FI_PROF_PCIE_RX_BYTES{{{L}}} 524288",
        f"DCGM_FI_DEV_MEM_COPY_UTIL{{{L}}} 88",
        f"DCGM_FI_DEV_XID_ERRORS{{{L}}} 43",
        f"DCGM_FI_DEV_GPU_UTIL{{{L}}} 100",
    )
    e = parse(data)[0][0]
    assert (e["sm_active"], e["sm_occupancy"], e["tensor_active"], e["dram_active"]) == (0.998, 0.5, 0.0, 0.71)
    assert (e["pcie_tx_bytes"], e["pcie_rx_bytes"], e["mem_copy_util_pct"], e["xid_errors"]) == (1048576.0, 524288.0, 88.0, 43)
    assert e["util_pct"] == 100.0 and e["metrics"] is None


def test_label_name_variants():
    data = lines(
        # pre-2.0 exporter: lowercase uuid/hostname, pod_name/pod_namespace/container_name
        'DCGM_FI_DEV_GPU_UTIL{gpu="2",uuid="GPU-old",hostname="legacy-node",pod_name="miner-7f9c",'
        'pod_namespace="default",container_name="xmrig"} 100',
        # scraped with honor_labels false: exported_* is the GPU's pod, pod/namespace the exporter's
        'DCGM_FI_DEV_GPU_UTIL{gpu="0",UUID="GPU-new",Hostname="gpu-node-3",exported_pod="vllm-0",'
        'exported_namespace="inference",exported_container="vllm",pod="dcgm-exporter-x2x",'
        'namespace="gpu-operator",container="exporter"} 45',
    )
    old, new = parse(data)[0]
    assert (old["gpu_uuid"], old["node"], old["gpu_index"]) == ("GPU-old", "legacy-node", 2)
    assert (old["namespace"], old["pod"], old["container"]) == ("default", "miner-7f9c", "xmrig")
    assert (new["namespace"], new["pod"], new["container"]) == ("inference", "vllm-0", "vllm")


def test_labels_missing_on_some_lines_are_filled_from_the_group_and_escapes_are_read():
    data = lines(
        'DCGM_FI_DEV_GPU_UTIL{gpu="0",UUID="GPU-x"} 10',
        'DCGM_FI_DEV_FB_USED{gpu="0",UUID="GPU-x",Hostname="n1",modelName="Tesla \\"T4\\", rev } b",'
        'namespace="ml",pod="p-1",} 2048',
    )
    e = parse(data)[0][0]
    assert (e["node"], e["namespace"], e["pod"], e["util_pct"], e["mem_used_mib"]) == ("n1", "ml", "p-1", 10.0, 2048.0)
    assert e["gpu_model"] == 'Tesla "T4", rev } b'
    assert parse_labels(b'{a="x\\\\y\\n",b="2"}') == {"a": "x\\y\n", "b": "2"}


def test_mig_instances_are_separate_gpus():
    base = 'gpu="0",UUID="GPU-a100",Hostname="n1",GPU_I_PROFILE="1g.10gb"'
    data = lines(f'DCGM_FI_PROF_SM_ACTIVE{{{base},GPU_I_ID="1"}} 0.9',
                 f'DCGM_FI_PROF_SM_ACTIVE{{{base},GPU_I_ID="2"}} 0.1')
    events = parse(data)[0]
    assert [(e["gpu_uuid"], e["mig_instance"], e["mig_profile"], e["sm_active"]) for e in events] == [
        ("GPU-a100", "1", "1g.10gb", 0.9), ("GPU-a100", "2", "1g.10gb", 0.1)]


def test_non_gpu_samples_are_skipped_and_counted():
    data = lines("up 1", 'DCGM_EXP_XID_ERRORS_COUNT{gpu="0",UUID="GPU-x",xid="43"} 1',
                 'DCGM_FI_DEV_NVSWITCH_TEMPERATURE_CURRENT{nvswitch="0"} 41',
                 'DCGM_FI_DEV_GPU_UTIL{gpu="0",UUID="GPU-x"} 5')
    events, dead, parser = parse(data)
    assert dead == [] and len(events) == 1
    assert parser.stats.notes == {"non_dcgm_samples": 2, "samples_without_gpu": 1}
    assert parser.stats.skipped == 3


@pytest.mark.parametrize("bad, reason", [
    (b'DCGM_FI_DEV_GPU_UTIL{gpu="0",UUID="GPU-x" 5', "not a Prometheus sample"),
    (b'DCGM_FI_DEV_GPU_UTIL{gpu="0",UUID="GPU-x"} abc', "not a number"),
    (b'DCGM_FI_DEV_GPU_UTIL{gpu=0,UUID="GPU-x"} 5', "malformed label set"),
    (b'DCGM_FI_DEV_GPU_UTIL{gpu="0" UUID="GPU-x"} 5', "malformed label set"),
    (b'DCGM_FI_DEV_GPU_UTIL{gpu="0",UUID="GPU-x"} 5 99999999999999999', "out of range"),
    (b'DCGM_FI_DEV_GPU_UTIL{gpu="zero",UUID="GPU-x"} 5', "not an index"),
    (b"\x00\xff\xfe garbage \x89PNG", "not a Prometheus sample"),
    (b'DCGM_FI_DEV_GPU_UTIL{gpu="0",UUID="GPU-\xff"} 5', "not UTF-8"),
])
def test_bad_lines_are_dead_lettered_and_the_rest_parses(bad, reason):
    good1 = f"DCGM_FI_DEV_GPU_UTIL{{{H100_LABELS}}} 97".encode()
    good2 = f"DCGM_FI_DEV_FB_USED{{{H100_LABELS}}} 1024".encode()
    events, dead, parser = parse(good1 + b"\n" + bad + b"\n" + good2 + b"\n")
    assert len(dead) == 1 and dead[0].line == 2 and reason in dead[0].reason and dead[0].raw == bad
    assert len(events) == 1 and (events[0]["util_pct"], events[0]["mem_used_mib"]) == (97.0, 1024.0)
    s = parser.stats
    assert (s.records, s.parsed, s.failed, s.skipped) == (3, 2, 1, 0)


def test_parse_scrape_over_http():
    body = lines("# HELP DCGM_FI_DEV_GPU_UTIL GPU utilization (in %).", "# TYPE DCGM_FI_DEV_GPU_UTIL gauge",
                 f"DCGM_FI_DEV_GPU_UTIL{{{H100_LABELS}}} 42", f"DCGM_FI_DEV_GPU_UTIL{{{H100_1_LABELS}}} 7")
    body = body.replace(b"\n", b"\r\n")
    ts = parse_iso("2026-03-02T12:00:05Z")
    events, dead, parser = parse_scrape(body, ts, {"scrape_time": "2020-01-01T00:00:00Z"})
    assert dead == []
    assert [(e["gpu_index"], e["util_pct"], e["ts"]) for e in events] == [(0, 42.0, ts), (1, 7.0, ts)]
    assert parser.stats.events == 2


def test_state_is_bounded():
    t = 1772442000000
    util = [f'DCGM_FI_DEV_GPU_UTIL{{gpu="0",UUID="GPU-0"}} 1 {t + i * 1000}' for i in range(3)]
    fb = [f'DCGM_FI_DEV_FB_USED{{gpu="0",UUID="GPU-0"}} 2 {t + i * 1000}' for i in range(3)]
    p = DcgmParser({"max_pending": 2}, now_ns=NOW)
    events, dead = [], []
    p.parse_chunk(lines(*util, *fb).splitlines(), "f", 1, events, dead)
    assert len(p._groups) <= 2 and len(events) == 4  # the oldest groups went out early
    p.flush(events, dead)
    assert dead == [] and len(events) == 6
    assert p.stats.notes["groups_flushed_at_limit"] == 4
    assert all(check_event(e) == [] for e in events)


def test_detection_is_specific(samples):
    assert detect_format(sample_path(samples).read_bytes()) == "dcgm"
    assert detect_format(f"DCGM_FI_DEV_GPU_UTIL{{{H100_LABELS}}} 97 1772442000000\n".encode()) == "dcgm"
    nginx = (b'203.0.113.9 - team-a [08/Apr/2019:18:16:55 +0200] "POST /v1/chat/completions HTTP/1.1" 200 1532 '
             b'"-" "OpenAI/Python 1.40.0"\n')
    assert not DcgmParser.sniff(nginx, [nginx.strip()])
    other_json = b'{"ts": "2026-03-02T09:00:00Z", "principal": "key-1", "model": "fraud-xgb"}\n'
    assert not DcgmParser.sniff(other_json, [other_json.strip()])
    prom = b"# HELP go_goroutines Number of goroutines.\n# TYPE go_goroutines gauge\ngo_goroutines 12\n"
    assert not DcgmParser.sniff(prom, prom.strip().split(b"\n"))
    assert not DcgmParser.sniff(b"\xff\x00\x01", [b"\xff\x00\x01"])
