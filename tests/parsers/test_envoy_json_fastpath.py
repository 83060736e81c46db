"""The compiled fast path of envoy_json gives exactly what the general path gives.

The fast path decodes lines of a known key set with msgspec and skips checks its types
already made; any line it cannot take falls back to the general path. Both must agree on
every input: the same event, or both a dead letter.
"""

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from ramparts.bench import corpus
from ramparts.events import Columns
from ramparts.redact import Hasher
from ramparts.streams.decode import parse_bytes
from ramparts.streams.parsers.base import Parser
from ramparts.streams.parsers import envoy_json
from ramparts.streams.parsers.envoy_json import EnvoyJsonParser

BASE = orjson.loads(corpus.lines("envoy_json", 1)[0])
# orjson writes 64-bit integers only; wider ones are not what any log holds.
INT64 = st.integers(-2**63, 2**63 - 1)
_values = st.one_of(
    st.none(), st.just("-"), st.just(""), st.booleans(), st.integers(-5, 2000), st.integers(2**62, 2**63 - 1),
    st.floats(-10, 1e6, allow_nan=False), st.sampled_from(["200", "12", "x", "1.5", "-3", "2026-03-02T09:00:00.5Z",
                                                           "Bearer sk-abc", "10.0.0.1, 10.0.0.2", "UF,URX",
                                                           "/p?key=secret", "[::1]:80"]),
    st.lists(INT64, max_size=2), st.dictionaries(st.text(max_size=3), INT64, max_size=2),
)


class GeneralOnly(EnvoyJsonParser):
    """The reference: every line through the general path, in the base class's loop."""

    parse_chunk = Parser.parse_chunk
    parse_batch = Parser.parse_batch

    def _compile(self, keyset, keys):
        return None


def _outcome(parser, data):
    events, dead, _ = parse_bytes(parser, data)
    return [dict(e) for e in events], [(d.line, d.reason) for d in dead]


@settings(max_examples=300, deadline=None, derandomize=True, database=None)
@given(changes=st.dictionaries(st.sampled_from(sorted(BASE)), _values, max_size=4),
       dropped=st.sets(st.sampled_from(sorted(BASE)), max_size=3))
def test_fast_and_general_paths_agree(changes, dropped):
    rec = {k: v for k, v in {**BASE, **changes}.items() if k not in dropped}
    # The first line fixes the key set and compiles the fast decoder; the second is the probe.
    data = orjson.dumps(BASE) + b"\n" + orjson.dumps(rec) + b"\n"
    fast = EnvoyJsonParser(hasher=Hasher(b"t"))
    general = GeneralOnly(hasher=Hasher(b"t"))
    assert _outcome(fast, data) == _outcome(general, data)


def test_fast_path_is_taken_for_a_stable_key_set():
    p = EnvoyJsonParser(hasher=Hasher(b"t"))
    lines = corpus.lines("envoy_json", 50)
    events, dead, _ = parse_bytes(p, b"\n".join(lines) + b"\n")
    assert len(events) == 50 and not dead
    assert p._fast is not None and len(p._decoders) == 1


def test_invalid_utf8_in_a_read_field_gets_the_general_paths_reason():
    good = orjson.dumps(BASE)
    bad = good.replace(b'"curl/8.5.0"', b'"curl/\xff\xfe"').replace(b'"python-requests/2.32.3"', b'"x\xff"')
    bad = bad.replace(b'"user_agent":"', b'"user_agent":"\xff', 1)
    data = good + b"\n" + bad + b"\n"
    fast = _outcome(EnvoyJsonParser(hasher=Hasher(b"t")), data)
    assert fast == _outcome(GeneralOnly(hasher=Hasher(b"t")), data)
    assert len(fast[1]) == 1 and "invalid JSON" in fast[1][0][1]


def _chunk_outcome(parser, lines, stamp):
    """parse_chunk over ``lines`` in two chunks, with ids stamped or not: events, dead letters, counts."""
    parser.stamp_ids = stamp
    events, dead = [], []
    half = len(lines) // 2
    parser.parse_chunk(lines[:half], "f.log", 1, events, dead)
    parser.parse_chunk(lines[half:], "f.log", half + 1, events, dead)
    return ([list(e.items()) for e in events], [(d.line, d.reason, d.raw) for d in dead], parser.stats,
            parser._line)


_times = st.sampled_from(["2026-03-02T09:00:00.5Z", "2026-03-02T09:00:00.123Z", "2026-03-02T09:00:01.123456789Z",
                          "2026-03-02T09:00:01.1234567891Z", "2026-03-02T09:00:01.Z", "2026-03-02T09:00:01Z",
                          "2026-03-02T09:00:00.12+01:00", "2026-03-02 09:00:00.5Z", "2026-03-02T09:00:0x.5Z",
                          "2026-13-02T09:00:00.5Z", " 2026-03-02T09:00:00.5Z", "2026-03-02T09:00:00.\u0663Z",
                          "2026-03-02T09:00:00.\u00b2Z", "1772442000", "1772442000.25", "-"])


@settings(max_examples=200, deadline=None, derandomize=True, database=None)
@given(lines=st.lists(st.one_of(
    st.tuples(st.dictionaries(st.sampled_from(sorted(BASE)), _values, max_size=2), st.none()),
    st.tuples(st.just({}), _times),
    st.tuples(st.just({}), st.sampled_from(["", "   ", "{", "[1]", "null", '{"start_time": 1}'])),
), min_size=1, max_size=12), stamp=st.booleans())
def test_chunks_of_mutated_lines_agree_with_the_general_path(lines, stamp):
    """Many lines per chunk: the inline common case, the fallbacks between them, blank and bad lines,
    line numbers, ids and counts are the general path's."""
    raw = [orjson.dumps(BASE)]
    for changes, other in lines:
        if other is None:
            raw.append(orjson.dumps({**BASE, **changes}))
        elif other.startswith(("2", " ", "1", "-")) and not other.startswith("{"):
            raw.append(orjson.dumps({**BASE, "start_time": other}))
        else:
            raw.append(other.encode())
    fast = _chunk_outcome(EnvoyJsonParser(hasher=Hasher(b"t")), raw, stamp)
    assert fast == _chunk_outcome(GeneralOnly(hasher=Hasher(b"t")), raw, stamp)


def test_the_inline_path_reads_the_time_of_each_line():
    """Lines of one second and of the next, fractions of every width: the cached second is right."""
    times = ["2026-03-02T09:00:00.5Z", "2026-03-02T09:00:00.123Z", "2026-03-02T09:00:00.000000001Z",
             "2026-03-02T09:00:01.25Z", "2026-03-02T09:00:00.999Z", "2026-03-02T09:00:00Z"]
    raw = [orjson.dumps({**BASE, "start_time": t}) for t in times]
    p = EnvoyJsonParser(hasher=Hasher(b"t"))
    events, dead = [], []
    p.parse_chunk(raw, "f.log", 1, events, dead)
    base = 1772442000 * 10**9
    assert not dead
    assert [e["ts"] for e in events] == [base + 500_000_000, base + 123_000_000, base + 1, base + 1_250_000_000,
                                        base + 999_000_000, base]


# -- parse_batch: the chunk's events as columns --------------------------------------------------------------
# A second json_format beside the corpus's: Envoy Gateway's spellings, an identity and a remote address,
# so that lines of two key sets (two fast decoders) and the general path meet in one chunk.
OTHER = {"start_time": "2026-03-02T09:00:02.25Z", "method": "GET", "x-envoy-origin-path": "/v1/models?key=k",
         "protocol": "HTTP/2", "response_code": 200, "response_flags": "UF,URX", "bytes_received": 0,
         "bytes_sent": 10, "duration": 3, "x-envoy-upstream-service-time": "-", "x-forwarded-for": None,
         "downstream_remote_address": "[2001:db8::7]:4711", "user-agent": "curl/8.5.0", "x-request-id": "r1",
         ":authority": "gw", "upstream_host": "10.1.0.8:8000", "x-api-key": "Bearer sk-other", "user": "alice",
         "genai_model_name": "llama", "genai_tokens_input": "12", "genai_tokens_output": 3}


def _batch_outcome(parser, lines, cuts, stamp):
    """parse_batch over ``lines`` cut into chunks at ``cuts``: events, dead letters, counts, and whether
    each batch was written as columns (no event dict made before ``.events``; a chunk of one line
    is parsed per record, as dicts: the columns' fixed cost per chunk is more than its line)."""
    parser.stamp_ids = stamp
    events, dead, columnar = [], [], []
    bounds = [0, *sorted(set(cuts)), len(lines)]
    for a, b in zip(bounds, bounds[1:]):
        batch = parser.parse_batch(lines[a:b], "f.log", a + 1, dead)
        columnar.append(b - a == 1 or not batch.holds_dicts and all(type(p) is Columns for p in batch.layout()[0]))
        assert len(batch.values("ts")) == len(batch)
        events.extend(list(e.items()) for e in batch.events)
    return events, [(d.line, d.reason, d.raw) for d in dead], parser.stats, columnar


@settings(max_examples=200, deadline=None, derandomize=True, database=None)
@given(lines=st.lists(st.one_of(
    st.tuples(st.sampled_from(["base", "other"]), st.dictionaries(st.sampled_from(sorted(BASE)), _values, max_size=2)),
    st.tuples(st.just("other"), st.dictionaries(st.sampled_from(sorted(OTHER)), _values, max_size=2)),
    st.tuples(st.just("time"), _times.map(lambda t: {"start_time": t})),
    st.tuples(st.just("raw"), st.sampled_from(["", "   ", "{", "[1]", "null", '{"start_time": 1}'])),
), min_size=1, max_size=16), cuts=st.lists(st.integers(0, 17), max_size=3), stamp=st.booleans(),
    prefer_identity=st.booleans(), slice_lines=st.sampled_from([1, 3, 1024]))
def test_batches_of_mutated_lines_agree_with_the_general_path(lines, cuts, stamp, prefer_identity, slice_lines):
    """parse_batch, over several chunks of lines of two key sets, mutated, blank and broken: the same events
    (values, key order, ids), dead letters and counts as the general path line by line, written as columns."""
    raw = [orjson.dumps(BASE)]
    for shape, change in lines:
        if shape == "raw":
            raw.append(change.encode())
        else:
            raw.append(orjson.dumps({**(OTHER if shape == "other" else BASE), **change}))
    cuts = [c for c in cuts if c <= len(raw)]
    options = {"prefer_identity": prefer_identity}
    # parse_batch decodes and normalizes a slice of a chunk's lines at a time: slices of 1 and 3 lines
    # put the fallbacks, dead letters and key sets across slice boundaries.
    envoy_json._SLICE, default = slice_lines, envoy_json._SLICE
    try:
        fast = _batch_outcome(EnvoyJsonParser(options, hasher=Hasher(b"t")), raw, cuts, stamp)
    finally:
        envoy_json._SLICE = default
    assert fast[:3] == _batch_outcome(GeneralOnly(options, hasher=Hasher(b"t")), raw, cuts, stamp)[:3]
    assert all(fast[3])


def test_a_chunk_of_one_key_set_is_one_columns_part_and_parse_chunk_hands_on_its_dicts():
    lines = corpus.lines("envoy_json", 600)
    p = EnvoyJsonParser(hasher=Hasher(b"t"))
    p.stamp_ids = True
    dead = []
    first = p.parse_batch(lines[:300], "f.log", 1, dead)
    second = p.parse_batch(lines[300:], "f.log", 301, dead)
    assert not dead and [len(b.layout()[0]) for b in (first, second)] == [1, 1]
    assert type(second.layout()[0][0]) is Columns and not second.holds_dicts
    assert second.values("id")[:2] == ["f.log:301", "f.log:302"] and not second.holds_dicts
    q = EnvoyJsonParser(hasher=Hasher(b"t"))
    q.stamp_ids = True
    events = []
    q.parse_chunk(lines[:300], "f.log", 1, events, dead)
    q.parse_chunk(lines[300:], "f.log", 301, events, dead)
    assert events == first.events + second.events and p.stats == q.stats
    ref = _chunk_outcome(GeneralOnly(hasher=Hasher(b"t")), lines, True)
    assert [list(e.items()) for e in events] == ref[0]


def _stamped(times):
    return [orjson.dumps({**BASE, "start_time": t}) for t in times]


def test_a_chunks_times_read_at_once_are_the_line_by_line_times():
    """The numpy reading of a chunk of one time format (several seconds, every fraction width, runs of
    seconds out of order) against the general path; chunks it leaves to the loop (a bad date among good
    ones, years past int64 nanoseconds, more runs than it takes) give the same as well."""
    # Runs of 70 lines of one second (the numpy reading takes runs of 64 lines on average or longer).
    seconds = ["2026-03-02T09:00:0%d." % s for s in (0, 1, 1, 3, 2, 2) for _ in range(35)]
    chunks = {
        "widths": [[s + "1" * w + "Z" for s in seconds] for w in range(1, 10)],
        "bad date": [["2026-02-28T09:00:00.5Z", "2026-02-30T09:00:00.5Z", "2026-02-28T09:00:01.5Z"]],
        "far": [["2300-01-01T00:00:00.5Z", "2300-01-01T00:00:00.6Z"]],
        "many runs": [["2026-03-02T09:%02d:00.5Z" % (m % 50) for m in range(0, 200, 3)]],
        "mixed widths": [["2026-03-02T09:00:00.5Z", "2026-03-02T09:00:00.55Z"]],
    }
    for name, groups in chunks.items():
        raw = [line for times in groups for line in _stamped(times)]
        cuts, at = [], 0
        for times in groups:
            at += len(times)
            cuts.append(at)
        fast = _batch_outcome(EnvoyJsonParser(hasher=Hasher(b"t")), raw, cuts, False)
        assert fast[:3] == _batch_outcome(GeneralOnly(hasher=Hasher(b"t")), raw, cuts, False)[:3], name
    assert len(fast[0]) == 2


def test_times_helper_reads_runs_and_declines_what_it_does_not_take():
    from ramparts.streams.parsers.envoy_json import _times
    from ramparts.timeutil import parse_iso

    ts = ["2026-03-02T09:00:00.5Z", "2026-03-02T09:00:01.25Z"]
    assert _times(ts, parse_iso) is None  # two widths
    ts = ["2026-03-02T09:00:00.50Z", "2026-03-02T09:00:01.25Z", "2026-03-02T09:00:00.01Z"]
    assert _times(ts, parse_iso) is None  # runs of one second too short to be worth it
    ts = [t for t in ts for _ in range(64)]
    got, head, base = _times(ts, parse_iso)
    assert got == [parse_iso(t) for t in ts] and head == "2026-03-02T09:00:00." and base == parse_iso(ts[0]) - 5 * 10**8
    for odd in (None, 5, "2026-03-02T09:00:00.5x", "2026-03-02 09:00:00.5Z", "2026-03-02T09:00:00.\u0663Z"):
        assert _times(ts[:64] + [odd], parse_iso) is None


def test_times_helper_starts_a_run_at_a_change_of_any_digit_of_the_second():
    """Runs of one second told apart by each digit of 'YYYY-MM-DDTHH:MM:SS' in turn (the run's first value
    gives the second of all its lines: a change missed would shift a run's times); a head with a character
    that is not a digit where one is expected is left to the loop."""
    from ramparts.streams.parsers.envoy_json import _times
    from ramparts.timeutil import parse_iso

    first = "2021-01-11T11:11:11.5Z"
    digit_at = [i for i in range(19) if first[i].isdigit()]
    assert len(digit_at) == 14
    def valid(t):
        try:
            return -2**62 < parse_iso(t) < 2**62
        except Exception:
            return False

    changed = 0
    for i in digit_at:
        # A valid time one digit away (none for the year's first two digits: beyond int64 nanoseconds).
        others = [o for d in "0123456789" if d != first[i] and valid(o := first[:i] + d + first[i + 1:])]
        if others:
            ts = [first] * 64 + [others[0]] * 64 + [first] * 64
            got, head, _ = _times(ts, parse_iso)
            assert got == [parse_iso(t) for t in ts] and head == first[:20], others[0]
            changed += 1
        for odd in (" ", "+", ":", "/", "a"):
            assert _times([first] * 64 + [first[:i] + odd + first[i + 1:]], parse_iso) is None, (i, odd)
    assert changed == 12


def test_a_one_record_chunk_is_parsed_per_record_and_a_larger_one_as_columns():
    """A forwarder's single-record message is a chunk of one line: it takes the per-record path (the
    columns' fixed cost per chunk made the single-record worker 38% of the no-op agent, docs/benchmarks.md),
    with the same event as the same line parsed within a chunk of columns."""
    lines = corpus.lines("envoy_json", 2)
    one = EnvoyJsonParser(hasher=Hasher(b"t")).parse_batch(lines[:1], "f.log", 1, [])
    two = EnvoyJsonParser(hasher=Hasher(b"t")).parse_batch(lines, "f.log", 1, [])
    assert one.holds_dicts and [type(p) for p in one.layout()[0]] == [list]
    assert not two.holds_dicts and [type(p) for p in two.layout()[0]] == [Columns]
    assert list(one.events[0].items()) == list(two.events[0].items())
