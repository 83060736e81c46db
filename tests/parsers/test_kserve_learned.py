"""The KServe parser's learned decoder (``kserve._Learned``, thirteenth session): the fast path's Structs with
the text fields of few values read as Literals of the values seen, tried before the plain decoder.

It must take no line the plain decoder refuses and read every line it takes to the same values; the loop
with it must give what the frozen loop of e1d5517 gave (tests/parsers/test_kserve_loop.py) while it is built,
rebuilt and demoted across chunks; and it must hand on one str per value (what it is for). Derandomized
hypothesis.
"""

import copy

import msgspec
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ramparts.redact import Hasher
from ramparts.streams.parsers import kserve
from ramparts.streams.parsers.base import is_utf8
from ramparts.streams.parsers.kserve import KServeParser

from .mutation import apply
from .test_kserve_fastpath import (_OTHER_LINES, ATTRS, BODY, PAIRS, TENSOR, GeneralOnly, _build, _change, _chunked,
                                   dumps, taught)
from .test_kserve_loop import Frozen, _line

PROPERTY = settings(max_examples=300, deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.too_slow])

_bytes = st.sampled_from([b"\xc3\xa9", b"\\u002d", b"\\u0041", b'"', b"\\", b"1", b"e999", b" ", b"{", b"}", b",",
                          b"null", b"18446744073709551617", b'"x":1,', b"\t"])


@st.composite
def _probe(draw) -> bytes:
    """A line of PAIRS with its attributes, body and a tensor changed, and maybe some bytes."""
    pair = draw(st.sampled_from(PAIRS))
    line = dumps(_build(pair[draw(st.integers(0, 1))], draw(_change(ATTRS)), draw(_change(BODY)),
                        draw(_change(TENSOR)), draw(st.integers(0, 2))))
    for where, cut, text in draw(st.lists(st.tuples(st.floats(0, 1), st.integers(0, 3), _bytes), max_size=2)):
        i = int(where * len(line))
        line = line[:i] + text + line[i + cut:]
    return line


@PROPERTY
@given(line=_probe(), options=st.sampled_from([None, {"principal_attribute": "tenant"}]),
       with_attrs=st.booleans())
def test_the_learned_decoder_reads_only_what_the_plain_one_reads_and_the_same(line, options, with_attrs):
    if not is_utf8(line):
        return  # the fast path is not tried (the general path dead-letters it)
    p = taught(options, with_attrs)
    learned = p._learned
    try:
        lean = learned.decode(line)
    except (msgspec.DecodeError, msgspec.ValidationError):
        lean = None
    try:
        plain = p._fast(line)
    except (msgspec.DecodeError, msgspec.ValidationError):
        assert lean is None  # nothing the plain decoder refuses
        return
    if lean is not None:
        got = msgspec.to_builtins(lean)
        want = msgspec.to_builtins(plain)
        if not with_attrs:  # the attributes are not read there; a line with one is not taken
            assert all(getattr(plain, f"attr{i}") is None for i in range(len(p._attr_names)))
            want = {k: v for k, v in want.items() if k not in p._attr_names}
        assert got == want
        assert [type(v) for v in got.values()] == [type(v) for v in want.values()]
        assert (None if learned.attrs is None else learned.attrs(lean)) == (
            p._fast_attrs(plain) if with_attrs else None)
    # Once its values are learned, the learned decoder takes every line the plain one takes.
    learned.learn(plain)
    learned._build()
    assert msgspec.to_builtins(learned.decode(line))


# Lines of the loop's tests, with the values the learned decoder reads varied (some new to it).
_TEXTS = {"specversion": ["1.0", "0.3", None], "datacontenttype": ["application/json", "text/json", None],
          "namespace": ["models", "ns-2", "", None]}


@st.composite
def _varied_line(draw) -> bytes:
    raw = draw(_line())
    if draw(st.integers(0, 3)) == 0:
        try:
            doc = msgspec.json.decode(raw)
        except msgspec.DecodeError:
            return raw
        if isinstance(doc, dict):
            apply(doc, {k: draw(st.sampled_from(v)) for k, v in _TEXTS.items()})
            data = doc.get("data")
            if isinstance(data, dict) and "model_name" in data:
                data["model_name"] = draw(st.sampled_from(["fraud-xgb", "bert", "m2", ""]))
            raw = dumps(doc)
    return raw


def _outcome(parser_cls, lines, cuts, stamp, options):
    parser = parser_cls(options, hasher=Hasher(b"t"))
    out = _chunked(parser, b"\n".join(lines), stamp, cuts, columnar=True)
    return out, list(parser._pending.items())


@PROPERTY
@given(lines=st.lists(_varied_line(), min_size=1, max_size=30), repeat=st.integers(1, 3),
       cuts=st.lists(st.integers(0, 90), max_size=4),
       options=st.sampled_from([None, {"max_pending": 2}, {"principal_attribute": "source"}]),
       stamp=st.booleans(), most=st.sampled_from([1024, 2]))
def test_the_loop_with_the_learned_decoder_gives_what_the_frozen_loop_gave(lines, repeat, cuts, options, stamp, most):
    # Lines repeated, so that the learned decoder is built (after 16 lines the plain one read), then rebuilt
    # as new values come, or fields demoted to plain text (at most two values).
    lines = lines * repeat + lines[:5]
    saved = kserve._LITERAL_MAX
    kserve._LITERAL_MAX = most
    try:
        new = _outcome(KServeParser, lines, cuts, stamp, options)
    finally:
        kserve._LITERAL_MAX = saved
    assert new == _outcome(Frozen, lines, cuts, stamp, options)


def _mixed(n: int) -> list[bytes]:
    """n pairs of PAIRS' first two shapes, ids of their own, in the service ``svc-<i % 7>``."""
    out = []
    for i in range(n):
        for half in PAIRS[i % 2]:
            doc = copy.deepcopy(half)
            doc["id"] = f"id-{i}"
            doc["inferenceservicename"] = f"svc-{i % 7}"
            out.append(dumps(doc))
    return out


def test_it_is_built_from_the_first_lines_and_takes_the_rest():
    p = KServeParser(hasher=Hasher(b"t"))
    lines = _mixed(60)
    p.parse_batch(lines[:40], "t:0", 1, [])
    learned = p._learned
    assert learned.decode is not None and not learned.with_attrs
    assert learned.known["inferenceservicename"] == {f"svc-{i}" for i in range(7)}
    taken = []
    decode = learned.decode
    learned.decode = lambda raw: taken.append(raw) or decode(raw)
    batch = p.parse_batch(lines[40:], "t:0", 41, [])
    assert taken == lines[40:] and len(batch) == 40
    # One str per value: the model's name and version, as the responses' bodies name them.
    model = batch.values("model")
    versions = [v for v in batch.values("model_version") if v == "3"]
    assert len({id(v) for v in model if v == "fraud-xgb"}) == 1 and len({id(v) for v in versions}) == 1
    general = GeneralOnly(hasher=Hasher(b"t"))
    assert _chunked(KServeParser(hasher=Hasher(b"t")), b"\n".join(lines), True, [40], True) \
        == _chunked(general, b"\n".join(lines), True, [40], True)


def test_a_line_with_an_attribute_makes_it_read_them_and_a_field_of_many_values_is_demoted(monkeypatch):
    monkeypatch.setattr(kserve, "_LITERAL_MAX", 5)
    lines = _mixed(30)
    doc = copy.deepcopy(PAIRS[0][0])
    doc.update(id="u", user="carol")
    lines.insert(45, dumps(doc))
    lines += [dumps({**d, "id": "v"}) for d in PAIRS[0]]
    lines += [dumps({**PAIRS[0][0], "id": "w", "user": "dave"}), dumps({**PAIRS[0][1], "id": "w"})]
    for options in (None, {"principal_attribute": "user"}):
        p = KServeParser(options, hasher=Hasher(b"t"))
        got = _chunked(p, b"\n".join(lines), False, [20, 46], True)
        assert got == _chunked(GeneralOnly(options, hasher=Hasher(b"t")), b"\n".join(lines), False, [20, 46], True)
        learned = p._learned
        assert learned.with_attrs and learned.attrs is not None
        assert learned.known["inferenceservicename"] is None  # 7 services: plain text from the sixth on
        assert learned.known["namespace"] == {"models"}
        principals = [v for e in got[0] for k, _, v in e if k == "principal"]
        assert principals.count("'svc-payments'") == 31 and "'carol'" in principals and "'dave'" in principals


def test_blank_bad_and_other_lines_before_it_is_built():
    lines = _OTHER_LINES + [dumps(d) for d in PAIRS[0]] + _OTHER_LINES
    assert _chunked(KServeParser(hasher=Hasher(b"t")), b"\n".join(lines), True, [], True) \
        == _chunked(GeneralOnly(hasher=Hasher(b"t")), b"\n".join(lines), True, [], True)
    assert _chunked(taught(), b"\n".join(lines), True, [], True) \
        == _chunked(GeneralOnly(hasher=Hasher(b"t")), b"\n".join(lines), True, [], True)


def test_single_records_take_it_too():
    """``parse_record`` (the worker's single-record path) tries the learned decoder the same way."""
    lines = _mixed(20) + [dumps({**PAIRS[0][0], "id": "w", "user": "dave"}), dumps({**PAIRS[0][1], "id": "w"})]
    lines += [dumps({**d, "id": "x", "inferenceservicename": "other"}) for d in PAIRS[1]] + _OTHER_LINES
    lines += [dumps({**PAIRS[0][0], "id": "y", "user": "erin"}), dumps({**PAIRS[0][1], "id": "y"})]
    for options in (None, {"principal_attribute": "tenant"}):
        p, general = KServeParser(options, hasher=Hasher(b"t")), GeneralOnly(options, hasher=Hasher(b"t"))
        for raw in lines:
            try:
                want = general.parse_record(raw)
            except Exception as e:  # noqa: BLE001 (the same error from both)
                want = repr(e)
            try:
                got = p.parse_record(raw)
            except Exception as e:  # noqa: BLE001
                got = repr(e)
            assert got == want
        assert p._learned.decode is not None and p._learned.with_attrs
        assert [e["principal"] for e in got] == ["erin"]
