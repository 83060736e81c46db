"""Every parser, fed random and mutated input: nothing escapes, nothing is lost.

For each registered format: no exception leaves the parser; every record read is exactly one
of parsed, skipped or dead-lettered; every event produced is well-formed (``check_event``);
every dead letter has a reason and a position. Mutations of valid records that must be bad
(a truncated JSON object) must land in the dead-letter output.
"""

import random

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ramparts.bench import corpus
from ramparts.events import check_event
from ramparts.redact import Hasher
from ramparts.streams.decode import parse_bytes
from ramparts.streams.parsers import PARSERS

FORMATS = list(PARSERS)
JSON_LINE_FORMATS = [f for f in corpus.GENERATORS if corpus.lines(f, 1)[0].startswith(b"{")]
PROPERTY = settings(max_examples=60, deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def run_and_check(fmt: str, data: bytes):
    parser = PARSERS[fmt](hasher=Hasher(b"prop"))
    events, dead, parser = parse_bytes(parser, data, origin="fuzz")
    s = parser.stats
    assert s.records == s.parsed + s.skipped + s.failed, s
    assert s.events == len(events) and s.dead_letters == len(dead), s
    for e in events:
        assert e["source"] == fmt and e["kind"] == parser.kind
        assert check_event(e) == [], (e, check_event(e))
    for d in dead:
        assert d.reason and d.source == fmt and d.file == "fuzz" and d.line >= 1
    return events, dead, s


@pytest.mark.parametrize("fmt", FORMATS)
@PROPERTY
@given(data=st.binary(max_size=2048))
def test_random_bytes(fmt, data):
    run_and_check(fmt, data)


_line = st.one_of(
    st.binary(max_size=300).map(lambda b: b.replace(b"\n", b" ")),
    st.text(max_size=300).map(lambda t: t.replace("\n", " ").encode("utf-8", "surrogatepass")),
    st.recursive(st.none() | st.booleans() | st.integers(-2**63, 2**63 - 1) | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=20),
                 lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=6),
                 max_leaves=20).map(lambda v: orjson.dumps(v, option=orjson.OPT_NON_STR_KEYS)),
)


@pytest.mark.parametrize("fmt", FORMATS)
@PROPERTY
@given(lines=st.lists(_line, max_size=12))
def test_random_lines(fmt, lines):
    run_and_check(fmt, b"\n".join(lines) + b"\n")


_RETYPE_VALUES = [[], {}, "not-a-number", -1, 1e308, True, None, "2019-02-30T00:00:00Z", [1, [2]], "\u0000"]


def _mutate(line: bytes, how: str, r: random.Random) -> bytes:
    if how == "truncate":
        return line[: r.randrange(1, len(line))]
    if how == "flip":
        i = r.randrange(len(line))
        return line[:i] + bytes([line[i] ^ (1 << r.randrange(8))]) + line[i + 1:]
    if how == "insert":
        i = r.randrange(len(line))
        return line[:i] + bytes(r.randrange(256) for _ in range(r.randrange(1, 8))) + line[i:]
    # retype: a field (possibly nested) gets a value of another type
    doc = orjson.loads(line)
    node = doc
    while True:
        key = r.choice(list(node))
        if isinstance(node[key], dict) and node[key] and r.random() < 0.5:
            node = node[key]
            continue
        node[key] = r.choice(_RETYPE_VALUES)
        return orjson.dumps(doc)


@pytest.mark.parametrize("fmt", list(corpus.GENERATORS))
@PROPERTY
@given(seed=st.integers(0, 2**32 - 1), how=st.sampled_from(["truncate", "flip", "insert", "retype"]))
def test_mutated_valid_records(fmt, seed, how):
    r = random.Random(seed)
    valid = corpus.lines(fmt, 3, seed=seed % 1000)
    if how == "retype" and fmt not in JSON_LINE_FORMATS:
        how = "flip"
    bad = _mutate(valid[1], how, r).replace(b"\n", b" ")
    events, dead, stats = run_and_check(fmt, b"\n".join([valid[0], bad, valid[2]]) + b"\n")
    # The intact records around the mutated one are never lost: only line 2 can be dead.
    assert {d.line for d in dead} <= {2}
    assert stats.parsed + stats.skipped >= 2
    if how == "truncate" and fmt in JSON_LINE_FORMATS and bad.strip():
        assert [d.line for d in dead] == [2], "a truncated JSON record must be dead-lettered"
        assert dead[0].raw == bad
