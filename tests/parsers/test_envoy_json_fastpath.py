"""The compiled fast path of envoy_json gives exactly what the general path gives.

The fast path decodes lines of a known key set with msgspec and skips checks its types
already made; any line it cannot take falls back to the general path. Both must agree on
every input: the same event, or both a dead letter.
"""

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from ramparts.bench import corpus
from ramparts.redact import Hasher
from ramparts.streams.decode import parse_bytes
from ramparts.streams.parsers.base import Parser
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
