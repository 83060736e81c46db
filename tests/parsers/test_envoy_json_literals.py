"""The Envoy JSON parser's batch path against a frozen copy of itself before the eighth session.

Since then ``parse_batch`` reads the text fields it has seen few values of as msgspec ``Literal``s of
those values (``envoy_json._Literals``), learns the values of the lines that decoder does not take,
and reads a field whose values keep coming as plain text again. None of it may change an event, a
type, a dead letter, a line number or a count: every test here runs the same chunks through the
parser and through ``envoy_json_reference`` (main e1d5517's module) and compares.
"""

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from ramparts.bench import corpus
from ramparts.redact import Hasher
from ramparts.streams.parsers import envoy_json
from ramparts.streams.parsers.envoy_json import EnvoyJsonParser

from . import envoy_json_reference as reference
from .test_envoy_json_fastpath import OTHER  # a second json_format: Envoy Gateway's spellings, an identity ...

BASE = orjson.loads(corpus.lines("envoy_json", 1)[0])
TEXT_KEYS = sorted(k for k, v in BASE.items() if type(v) is str)

# Values a text field may take: a few that repeat (learned as literals), "-" and "" (absent), text that
# needs normalizing (a query, a forwarded list, a port, Bearer), unicode and escapes, and what is not text.
_texts = st.sampled_from(["a", "b", "c", "POST", "-", "", "é", "\u2603 snow", "tab\there", "quote\"d", "a\\b",
                          "/v1/x?key=secret", "10.0.0.1, 10.0.0.2", "[::1]:80", "10.0.0.9:443", "Bearer sk-1",
                          "sk-2", "UF,URX", "RL", "\ud7ff", "x" * 300])
_values = st.one_of(
    _texts, _texts, st.none(), st.booleans(), st.integers(-5, 2000), st.integers(2**62, 2**63 - 1),
    st.integers(2**63, 2**70).map(str), st.floats(-10, 1e6, allow_nan=False), st.just("1e400"), st.just(1.5),
    st.sampled_from(["200", "12", "1.5", "-3", "2026-03-02T09:00:00.5Z", "1772442000", "inf", "nan", "null"]),
    st.lists(st.integers(0, 9), max_size=2), st.dictionaries(st.sampled_from("xy"), st.integers(0, 9), max_size=1),
)


def _typed(event: dict) -> list:
    """An event's items with each value's type: 1, 1.0 and True must not pass for one another."""
    return [(k, type(v).__name__, v) for k, v in event.items()]


def _outcome(parser, chunks, stamp: bool):
    parser.stamp_ids = stamp
    events, dead = [], []
    first = 1
    for chunk in chunks:
        batch = parser.parse_batch(chunk, "f.log", first, dead)
        events.extend(_typed(e) for e in batch.events)
        first += len(chunk)
    s = parser.stats
    return (events, [(d.source, d.file, d.line, d.reason, d.raw, d.item) for d in dead],
            (s.records, s.parsed, s.skipped, s.failed, s.events, s.dead_letters), parser._line)


def _same(chunks, stamp=False, **options):
    new = _outcome(EnvoyJsonParser(options, hasher=Hasher(b"t")), chunks, stamp)
    old = _outcome(reference.EnvoyJsonParser(options, hasher=Hasher(b"t")), chunks, stamp)
    assert new == old
    return new


def _line(shape: str, change: dict) -> bytes:
    if shape == "raw":
        return change["raw"].encode("utf-8", "surrogatepass")
    rec = {**(OTHER if shape == "other" else BASE), **change}
    return orjson.dumps({k: v for k, v in rec.items() if v is not _DROP})


_DROP = object()
_line_shapes = st.one_of(
    st.tuples(st.just("base"), st.dictionaries(st.sampled_from(TEXT_KEYS), _texts, max_size=3)),
    st.tuples(st.sampled_from(["base", "other"]),
              st.dictionaries(st.sampled_from(sorted(BASE)), st.one_of(_values, st.just(_DROP)), max_size=3)),
    st.tuples(st.just("other"), st.dictionaries(st.sampled_from(sorted(OTHER)), _values, max_size=2)),
    st.tuples(st.just("raw"), st.fixed_dictionaries({"raw": st.sampled_from(
        ["", "   ", "{", "[1]", "null", '{"start_time": 1}', "\udcff", '{"method": "\\u0050OST"}'])})),
)


@settings(max_examples=250, deadline=None, derandomize=True, database=None)
@given(lines=st.lists(_line_shapes, min_size=1, max_size=40), cuts=st.lists(st.integers(0, 41), max_size=3),
       stamp=st.booleans(), prefer_identity=st.booleans(), slice_lines=st.sampled_from([1, 3, 7, 1024]),
       literal_max=st.sampled_from([2, 4, 1024]))
def test_batches_agree_with_the_code_before_literals(lines, cuts, stamp, prefer_identity, slice_lines, literal_max):
    """Lines of two key sets whose text fields take repeated, new, absent, odd and non-text values, broken
    and blank lines, cut into chunks and slices: the same events (values, types, key order, ids), dead
    letters and counts as before. Small limits make fields be read as literals, learned, and given up."""
    raw = [orjson.dumps(BASE)] + [_line(shape, change) for shape, change in lines]
    bounds = [0, *sorted({c for c in cuts if c <= len(raw)}), len(raw)]
    chunks = [raw[a:b] for a, b in zip(bounds, bounds[1:]) if b > a]
    defaults = envoy_json._SLICE, envoy_json._LITERAL_MAX
    envoy_json._SLICE, envoy_json._LITERAL_MAX = slice_lines, literal_max
    try:
        _same(chunks, stamp, prefer_identity=prefer_identity)
    finally:
        envoy_json._SLICE, envoy_json._LITERAL_MAX = defaults


def test_the_corpus_in_chunks_agrees_and_its_repeated_values_are_shared():
    """Thousands of the benchmark corpus's lines: the same output, read through the literal decoder (one
    str per distinct model, method, user agent ...), with the request id given up as plain text."""
    lines = corpus.lines("envoy_json", 6000)
    chunks = [lines[i:i + 2500] for i in range(0, len(lines), 2500)]
    _same(chunks, stamp=True)
    p = EnvoyJsonParser(hasher=Hasher(b"t"))
    dead = []
    p.parse_batch(lines[:3000], "f.log", 1, dead)
    batch = p.parse_batch(lines[3000:], "f.log", 3001, dead)
    assert not dead and p._fast_lit is not None and p._fast_lit.decode is not None
    for field in ("method", "model", "user_agent", "authority"):
        values = batch.values(field)
        assert len({id(v) for v in values}) == len(set(values)) < 100, field
    names = [name for name, _, _ in p._fast_lit.fields]
    assert "request_id" not in {names[i] for i in p._fast_lit.known}  # a new value on every line
    ids = batch.values("request_id")
    assert len(set(ids)) == len(ids)


def test_a_field_whose_values_keep_coming_is_read_as_text_again():
    """More distinct values than the literal decoder keeps: the field is given up, the others stay
    literals, and the lines read after give what the code before gave."""
    lines = [orjson.dumps({**BASE, "genai_model_name": f"m{i % 3}", "user_agent": f"ua/{i}"}) for i in range(3000)]
    chunks = [lines[i:i + 100] for i in range(0, len(lines), 100)]
    _same(chunks)
    p = EnvoyJsonParser(hasher=Hasher(b"t"))
    for k, chunk in enumerate(chunks[:10]):
        p.parse_batch(chunk, "f.log", 1 + 100 * k, [])
    known = {p._fast_lit.fields[i][0]: v for i, v in p._fast_lit.known.items()}
    # (the first line, which made the key set's decoders, went through the general path)
    assert len(known["user_agent"]) == 999 and known["model"] == {"m0", "m1", "m2"}
    for k, chunk in enumerate(chunks[10:], 10):
        p.parse_batch(chunk, "f.log", 1 + 100 * k, [])
    known = {p._fast_lit.fields[i][0]: v for i, v in p._fast_lit.known.items()}
    assert "user_agent" not in known and known["model"] == {"m0", "m1", "m2"}


def test_the_api_key_is_not_kept_among_the_literals():
    """A raw credential: read as plain text, hashed, and kept only as the hash cache's key."""
    lines = [orjson.dumps({**BASE, "x_api_key": f"sk-{i % 4}"}) for i in range(500)]
    _same([lines[:250], lines[250:]])
    p = EnvoyJsonParser(hasher=Hasher(b"t"))
    p.parse_batch(lines, "f.log", 1, [])
    names = {p._fast_lit.fields[i][0] for i in p._fast_lit.known}
    assert "model" in names and "api_key" not in names


def test_a_new_value_after_the_decoder_is_built_is_learned():
    """A value first seen after the literal decoder was built: its line is read by the plain decoder, the
    same event comes out, and the value joins the literals when the decoder is rebuilt."""
    first = [orjson.dumps({**BASE, "genai_model_name": "m0"}) for _ in range(50)]
    later = [orjson.dumps({**BASE, "genai_model_name": f"new{i}"}) for i in range(40)]
    _same([first, later, first + later])
    p = EnvoyJsonParser(hasher=Hasher(b"t"))
    p.parse_batch(first, "f.log", 1, [])
    built = p._fast_lit.decode
    assert built is not None
    batch = p.parse_batch(later, "f.log", 51, [])
    assert batch.values("model") == [f"new{i}" for i in range(40)]
    model = [i for i, (name, _, _) in enumerate(p._fast_lit.fields) if name == "model"][0]
    assert p._fast_lit.decode is not built and len(p._fast_lit.known[model]) == 41
