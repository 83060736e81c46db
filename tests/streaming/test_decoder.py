"""RawDecoder: raw Kafka messages (packed by ship, or single records from anyone) to events.

The worker's parse stage is a thin shell over this, so these tests drive it as pure code with
messages shaped the way ``ramparts ship`` and other producers send them.
"""

from __future__ import annotations

import random
from pathlib import Path

import orjson
import pytest

from ramparts.config import load_config
from ramparts.redact import Hasher
from ramparts.streams.app import RawDecoder
from ramparts.streams.decode import detect_format, parse_bytes
from ramparts.streams.simulate import simulate
from ramparts.streams.topics import HEADER_END, HEADER_FORMAT, HEADER_FRAMING, HEADER_ORIGIN

from .harness import HASH_KEY, scenario_files

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "examples"
TOPIC = "t.raw.gateway"


@pytest.fixture(scope="module")
def config():
    return load_config(None, env={"RAMPARTS_HASH_KEY": HASH_KEY})


@pytest.fixture
def decoder(config):
    return RawDecoder(config, Hasher(HASH_KEY))


@pytest.fixture(scope="module")
def scenario(tmp_path_factory):
    out = tmp_path_factory.mktemp("decoder") / "mix.json"
    simulate("mix", str(out), seed=5, start="2026-11-22T10:00:00Z", duration_seconds=90)
    return {Path(f).name.split(".")[1]: Path(f) for f in scenario_files(out)}


def decode(decoder, messages, topic=TOPIC, partition=0, first_offset=0):
    """Decode (value, headers) messages at consecutive offsets; (events, dead letters)."""
    events, dead = [], []
    for i, (value, headers) in enumerate(messages):
        decoder.decode(topic, partition, first_offset + i, value, headers, events, dead)
    return events, dead


def shipped(data: bytes, fmt: str, origin: str, lines_per_message: int, document: bool = False):
    """Messages the way ``ramparts ship`` packs a file: format and origin headers, end on the last."""
    base = {HEADER_FORMAT: fmt.encode(), HEADER_ORIGIN: origin.encode()}
    if document:
        return [(data, {**base, HEADER_FRAMING: b"document", HEADER_END: b"1"})]
    lines = [l for l in data.split(b"\n") if l.strip()]
    msgs = [(b"\n".join(lines[i:i + lines_per_message]), dict(base))
            for i in range(0, len(lines), lines_per_message)]
    msgs[-1][1][HEADER_END] = b"1"
    return msgs


def without_ids(events):
    return [{k: v for k, v in e.items() if k != "id"} for e in events]


def reference(fmt, data, config):
    events, dead, _ = parse_bytes(fmt, data, config=config, hasher=Hasher(HASH_KEY))
    assert not dead
    return without_ids(events.events)


# -- packed messages ------------------------------------------------------------------------

def test_packed_message_events_carry_topic_partition_offset_origin_and_line(decoder):
    data = (EXAMPLES / "envoy-ai-gateway.jsonl").read_bytes()
    value = b"\n".join(l for l in data.split(b"\n") if l.strip())
    events, dead = decode(decoder, [(value, {HEADER_FORMAT: b"envoy_json", HEADER_ORIGIN: b"gw.log"})],
                          partition=2, first_offset=1045)
    assert not dead
    assert [e["id"] for e in events] == [f"{TOPIC}:2:1045(gw.log):{n}" for n in (1, 2, 3)]
    assert {e["source"] for e in events} == {"envoy_json"}
    assert decoder.records == 3


@pytest.mark.parametrize("fmt", ["envoy_json", "kserve", "dcgm", "falco", "k8s_audit"])
@pytest.mark.parametrize("lines_per_message", [1, 7, 1000])
def test_shipped_file_decodes_to_the_same_events_as_parsing_it_whole(decoder, config, scenario, fmt,
                                                                     lines_per_message):
    data = scenario[fmt].read_bytes()
    events, dead = decode(decoder, shipped(data, fmt, scenario[fmt].name, lines_per_message))
    assert not dead
    assert without_ids(events) == reference(fmt, data, config)
    assert len({e["id"] for e in events}) == len(events)


def test_the_end_header_flushes_the_last_dcgm_scrape(decoder, config, scenario):
    # DCGM assembles a scrape from its lines: without the end marker the last scrape waits for
    # input that will never come.
    data = scenario["dcgm"].read_bytes()
    msgs = shipped(data, "dcgm", "dcgm.log", 50)
    held, _ = decode(RawDecoder(config, Hasher(HASH_KEY)),
                     [(v, {k: h for k, h in hs.items() if k != HEADER_END}) for v, hs in msgs])
    flushed, _ = decode(decoder, msgs)
    assert len(held) < len(flushed) == len(reference("dcgm", data, config))
    assert flushed[-1]["id"].startswith(f"{TOPIC}:0:{len(msgs) - 1}(dcgm.log):end.")


def test_a_request_without_its_response_is_emitted_at_the_end_marker(decoder, config):
    lines = (EXAMPLES / "kserve-payloads.jsonl").read_bytes().split(b"\n")
    request_only = lines[0] + b"\n"
    events, dead = decode(decoder, [(request_only, {HEADER_FORMAT: b"kserve", HEADER_ORIGIN: b"k.log",
                                                    HEADER_END: b"1"})])
    assert not dead
    assert without_ids(events) == reference("kserve", request_only, config) and len(events) == 1
    assert events[0]["id"] == f"{TOPIC}:0:0(k.log):end.0"


def test_an_empty_last_message_with_the_end_marker_still_flushes(decoder, config):
    data = (EXAMPLES / "kserve-payloads.jsonl").read_bytes().split(b"\n")[0]
    msgs = [(data, {HEADER_FORMAT: b"kserve"}), (b"", {HEADER_FORMAT: b"kserve", HEADER_END: b"1"})]
    events, dead = decode(decoder, msgs)
    assert len(events) == 1 and not dead


def test_an_empty_message_without_headers_is_ignored(decoder):
    events, dead = decode(decoder, [(b"", {}), (None, {})])
    assert events == [] and dead == [] and decoder.records == 0


def test_crlf_line_endings_decode_like_lf(decoder, config):
    data = (EXAMPLES / "nginx-access.log").read_bytes()
    crlf = data.replace(b"\n", b"\r\n")
    events, dead = decode(decoder, [(crlf, {HEADER_FORMAT: b"nginx_combined"})])
    assert not dead
    assert without_ids(events) == reference("nginx_combined", data, config)


@pytest.mark.parametrize("with_header", [True, False])
def test_a_pod_list_is_one_document(decoder, config, scenario, with_header):
    data = scenario["k8s_pods"].read_bytes()
    headers = {HEADER_FORMAT: b"k8s_pods", HEADER_END: b"1"}
    if with_header:
        headers[HEADER_FRAMING] = b"document"
    events, dead = decode(decoder, [(data, headers)], topic="t.raw.workload")
    assert not dead and decoder.records == 1
    assert without_ids(events) == reference("k8s_pods", data, config) and events


def test_the_framing_header_makes_a_document_of_a_line_format(decoder, config):
    # A Kong batch pretty-printed over many lines is one JSON array: one record, not a line each.
    data = (EXAMPLES / "kong-http-log.jsonl").read_bytes().split(b"\n")[0]
    import orjson

    pretty = orjson.dumps([orjson.loads(data), orjson.loads(data)], option=orjson.OPT_INDENT_2)
    assert pretty.count(b"\n") > 10
    events, dead = decode(decoder, [(pretty, {HEADER_FORMAT: b"kong", HEADER_FRAMING: b"document"})])
    assert not dead and len(events) == 2 * len(reference("kong", data, config))


# -- single records from other producers ---------------------------------------------------

SINGLE = ["envoy-ai-gateway.jsonl", "envoy-default.log", "nginx-access.log", "kong-http-log.jsonl",
          "litellm-spendlogs.jsonl", "falco.jsonl", "docker-events.jsonl", "predictions.jsonl"]


def _single_records():
    out = []
    for name in SINGLE:
        for line in (EXAMPLES / name).read_bytes().split(b"\n"):
            if line.strip():
                out.append((detect_format(line), line))
    return out


def test_a_header_less_record_is_detected_and_ids_name_its_offset(decoder):
    line = (EXAMPLES / "falco.jsonl").read_bytes().split(b"\n")[0]
    events, dead = decode(decoder, [(line, {})], topic="t.raw.runtime", partition=1, first_offset=77)
    assert not dead
    assert [(e["source"], e["id"]) for e in events] == [("falco", "t.raw.runtime:1:77:1")]


@pytest.mark.parametrize("seed", range(5))
def test_the_last_format_cache_never_routes_a_record_to_another_format(decoder, seed):
    records = _single_records()
    assert len({f for f, _ in records}) == len(SINGLE)
    rng = random.Random(seed)
    order = [rng.choice(records) for _ in range(60)]
    for offset, (fmt, line) in enumerate(order):
        events, dead = decode(decoder, [(line, {})], first_offset=offset)
        assert not dead, (fmt, dead)
        assert events and {e["source"] for e in events} == {fmt}, (fmt, line[:80])


def test_the_sniffed_lines_of_a_single_record_are_those_of_sniff_lines():
    from ramparts.streams.app import sniff_head
    from ramparts.streams.decode import HEAD_BYTES, sniff_lines

    lines = [line for _, line in _single_records()]
    values = [b"", b"\r", b"  \r\r", b" \t ", b"\x0b\x0c", b"x\r", b"\r\nx", b"a\nb\r\n", b"{}\r\r",
              b"x" * (HEAD_BYTES + 10), b"y" * (HEAD_BYTES - 1), b"z" * HEAD_BYTES]
    values += lines + [b"  " + l + b"\r" for l in lines] + [l + b"\n" + l for l in lines]
    for value in values:
        assert sniff_head(value) == (value[:HEAD_BYTES], sniff_lines(value[:HEAD_BYTES])), value[:40]


def test_an_unrecognised_record_is_a_dead_letter(decoder):
    garbage = b"\x00this is not a log line of any format\xff"
    events, dead = decode(decoder, [(garbage, {HEADER_ORIGIN: b"x.bin"})], first_offset=9)
    assert events == []
    (d,) = dead
    assert (d.source, d.file, d.line, d.reason, d.raw) == ("unrecognised", f"{TOPIC}:0:9(x.bin)", 1,
                                                           "format not recognised", garbage)
    assert decoder.records == 1


def test_garbage_after_a_known_format_is_a_dead_letter_and_the_next_record_still_decodes(decoder):
    line = (EXAMPLES / "envoy-ai-gateway.jsonl").read_bytes().split(b"\n")[0]
    events, dead = decode(decoder, [(line, {}), (b"{\"not\": \"a gateway log\"}", {}), (b"\xff\xfe[", {}),
                                    (line, {})])
    assert [e["source"] for e in events] == ["envoy_json", "envoy_json"]
    assert [d.line for d in dead] and all(d.source in ("unrecognised", "envoy_json") for d in dead)
    assert len(dead) == 2


def test_an_unknown_format_header_is_a_dead_letter_that_names_it(decoder):
    events, dead = decode(decoder, [(b"a line\nanother", {HEADER_FORMAT: b"syslog", HEADER_ORIGIN: b"s.log"})])
    assert events == []
    (d,) = dead
    assert d.reason == "unknown format 'syslog' in the ramparts-format header"
    assert d.file == f"{TOPIC}:0:0(s.log)" and d.raw == b"a line\nanother"


def test_partitions_keep_separate_join_state(decoder, config):
    # A request on partition 0 must not be joined with a response on partition 1.
    lines = [l for l in (EXAMPLES / "kserve-payloads.jsonl").read_bytes().split(b"\n") if l.strip()]
    h = {HEADER_FORMAT: b"kserve"}
    events, _ = decode(decoder, [(lines[0], h)], partition=0)
    more, _ = decode(decoder, [(lines[1], h)], partition=1)
    assert events == [] and more == []
    assert len(decoder.parsers) == 2


def test_two_files_of_one_format_interleaved_on_a_partition_decode_as_if_apart(decoder, config, scenario,
                                                                               tmp_path):
    # ship keys messages by file, so two files can share a partition; each keeps its own joins.
    a = scenario["dcgm"].read_bytes()
    b_path = tmp_path / "other.json"
    simulate("mix", str(b_path), seed=6, start="2026-11-22T12:00:00Z", duration_seconds=60)
    b = Path(str(b_path.with_suffix("")) + ".dcgm.log").read_bytes()
    ma, mb = shipped(a, "dcgm", "a.log", 7), shipped(b, "dcgm", "b.log", 5)
    interleaved = [m for pair in zip(ma, mb) for m in pair] + ma[len(mb):] + mb[len(ma):]
    events, dead = decode(decoder, interleaved)
    assert not dead
    from_a = [e for e in events if "(a.log)" in e["id"]]
    from_b = [e for e in events if "(b.log)" in e["id"]]
    assert len(from_a) + len(from_b) == len(events)
    assert without_ids(from_a) == reference("dcgm", a, config)
    assert without_ids(from_b) == reference("dcgm", b, config)


def test_two_json_formats_that_open_alike_are_not_confused(decoder):
    # An Envoy JSON access log is configured by its operator: one that opens with request_id
    # shares its first 16 bytes with LiteLLM's SpendLogs (and so, often, its prefix).
    import orjson

    envoy = orjson.loads((EXAMPLES / "envoy-ai-gateway.jsonl").read_bytes().split(b"\n")[0])
    envoy_line = orjson.dumps({"request_id": "chatcmpl-4f1a", **envoy})
    litellm_line = (EXAMPLES / "litellm-spendlogs.jsonl").read_bytes().split(b"\n")[0]
    assert envoy_line[:16] == litellm_line[:16] and detect_format(envoy_line) == "envoy_json"
    events, dead = decode(decoder, [(litellm_line, {}), (envoy_line, {})])
    assert [e["source"] for e in events] == ["litellm", "envoy_json"] and not dead


def test_open_parsers_are_bounded_and_the_evicted_one_emits_what_it_held(decoder, config, monkeypatch):
    # A shipper that dies never sends its end marker; its parser (and a request waiting for its
    # response) must neither stay forever nor be lost.
    import ramparts.streams.app as app

    monkeypatch.setattr(app, "MAX_OPEN_PARSERS", 2)
    request_only = (EXAMPLES / "kserve-payloads.jsonl").read_bytes().split(b"\n")[0]
    msgs = [(request_only, {HEADER_FORMAT: b"kserve", HEADER_ORIGIN: f"host{i}.log".encode()}) for i in range(3)]
    events, dead = decode(decoder, msgs)
    assert not dead
    assert len(decoder.parsers) == 2
    assert [e["id"] for e in events] == [f"{TOPIC}:0:0(host0.log):end.0"]
    assert without_ids(events) == reference("kserve", request_only + b"\n", config)


def test_the_decoder_says_while_a_parser_holds_records_of_a_message(decoder):
    # The worker acknowledges a message only once no parser holds its records for a join.
    lines = (EXAMPLES / "kserve-payloads.jsonl").read_bytes().split(b"\n")
    request, response = lines[0], lines[1]
    h = {HEADER_FORMAT: b"kserve", HEADER_ORIGIN: b"k.log"}
    events: list = []
    key, holding = decoder.decode(TOPIC, 0, 0, request, h, events, [])
    assert key == ("kserve", TOPIC, 0, b"k.log") and holding and events == []
    key, holding = decoder.decode(TOPIC, 0, 1, response, h, events, [])
    assert key == ("kserve", TOPIC, 0, b"k.log") and not holding and len(events) == 1
    assert decoder.decode(TOPIC, 0, 2, b"\x00 not a log", {}, events, []) == (None, False)


@pytest.mark.parametrize("crash_after", [3, 7, 12])
def test_a_dcgm_parse_restarted_from_the_oldest_held_message_gives_the_same_rows(config, scenario, crash_after):
    # What the worker does after a crash: messages still held for an open GPU group were not
    # acknowledged, so a new worker reads again from the oldest of them. Every event it emits
    # must carry the id (and content) the uninterrupted parse gave it, or the store gets a row twice.
    data = scenario["dcgm"].read_bytes()
    msgs = shipped(data, "dcgm", "dcgm.log", 37)  # boundaries that cut scrapes
    full, _ = decode(RawDecoder(config, Hasher(HASH_KEY)), msgs)
    by_id = {e["id"]: e for e in full}
    assert len(by_id) == len(full)

    first = RawDecoder(config, Hasher(HASH_KEY))
    before: list = []
    oldest_held = None
    for offset, (value, headers) in enumerate(msgs[:crash_after]):
        _, holding = first.decode(TOPIC, 0, offset, value, headers, before, [])
        if not holding:
            oldest_held = None
        elif oldest_held is None:
            oldest_held = offset
    assert oldest_held is not None, "a cut scrape must hold its message"
    after, _ = decode(RawDecoder(config, Hasher(HASH_KEY)), msgs[oldest_held:], first_offset=oldest_held)
    for e in after:
        assert by_id[e["id"]] == e
    assert {e["id"] for e in before} | {e["id"] for e in after} == set(by_id)


def test_forgetting_a_partition_drops_its_parsers_without_emitting(decoder):
    lines = (EXAMPLES / "kserve-payloads.jsonl").read_bytes().split(b"\n")
    h = {HEADER_FORMAT: b"kserve", HEADER_ORIGIN: b"k.log"}
    events: list = []
    decoder.decode(TOPIC, 0, 0, lines[0], h, events, [])
    decoder.decode(TOPIC, 1, 0, lines[0], h, events, [])
    decoder.forget({(TOPIC, 0)})
    assert list(decoder.parsers) == [("kserve", TOPIC, 1, b"k.log")]
    assert events == [] and decoder.evicted == []


def test_an_audit_request_is_one_row_whichever_of_its_stages_a_restarted_parse_sees_first(config):
    # ResponseStarted emits the event and the parser then drops the same request's
    # ResponseComplete; a worker restarted between the two has forgotten that, and emits it
    # again. The id names the request (its auditID), so the store keeps one row.
    def stage(name: str) -> bytes:
        return orjson.dumps({
            "kind": "Event", "apiVersion": "audit.k8s.io/v1", "auditID": "a-1", "stage": name,
            "requestURI": "/api/v1/namespaces/models/pods/m-0/exec?command=sh", "verb": "create",
            "requestReceivedTimestamp": "2026-11-22T10:00:00Z", "user": {"username": "eve"},
            "objectRef": {"resource": "pods", "subresource": "exec", "name": "m-0", "namespace": "models"}})

    h = {HEADER_FORMAT: b"k8s_audit", HEADER_ORIGIN: b"audit.log"}
    msgs = [(stage("ResponseStarted"), h), (stage("ResponseComplete"), h)]
    whole, _ = decode(RawDecoder(config, Hasher(HASH_KEY)), msgs)
    restarted, _ = decode(RawDecoder(config, Hasher(HASH_KEY)), msgs[1:], first_offset=1)
    assert len(whole) == len(restarted) == 1
    assert whole[0]["id"] == restarted[0]["id"] == f"{TOPIC}:0(audit.log)#a-1"
