"""The Envoy JSON parser's column helpers against frozen copies of themselves before the ninth session.

Since then ``envoy_json._floats`` reads a column of upstream times given as text (``"4543"``) as one
JSON array of floats with msgspec, falling back to ``map(float, ...)``, and ``_transpose`` hands on
the tuples ``zip`` made, copying a column to a list only where a value changes. Neither may change a
value, its type (``-0.0`` against ``0.0`` included), which column falls back to the value-by-value
path, or an event of the parser: the tests compare with the code of main c8a4406 (below) and, for
whole chunks, with ``envoy_json_reference`` (main e1d5517's module).
"""


import msgspec
import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from ramparts.bench import corpus
from ramparts.redact import Hasher
from ramparts.streams.parsers import envoy_json
from ramparts.streams.parsers.envoy_json import EnvoyJsonParser

from . import envoy_json_reference as reference


# -- main c8a4406's helpers, frozen -------------------------------------------------------------
def _positions(col, value):
    out, i = [], -1
    try:
        while True:
            i = col.index(value, i + 1)
            out.append(i)
    except ValueError:
        return out


def frozen_floats(col: list) -> list | None:
    nones = _positions(col, None)
    if nones:
        col = col.copy()
        for i in nones:
            col[i] = 0.0
    try:
        out = list(map(float, col))
    except Exception:
        return None
    total = sum(out)
    if total - total != 0.0:
        return None
    for i in nones:
        out[i] = None
    return out


def frozen_transpose(objs: list, no_dash: frozenset = frozenset()) -> list[list]:
    # c8a4406's structs held the fields of _FAST_ORDER first (``astuple(o)[:_N_FIELDS]``); since the twelfth
    # session their order is the key set's, so the frozen copy reads the same fields by name.
    cols = [list(c) for c in zip(*([getattr(o, f) for f in envoy_json._FAST_ORDER] for o in objs))]
    for at in range(1, envoy_json._N_FIELDS):
        if at not in no_dash:
            c = cols[at]
            try:
                sum(c)
                continue
            except TypeError:
                pass
            for i in _positions(c, "-"):
                c[i] = None
    return cols


def _typed(values):
    """Values with their types and signs: 0.0 and -0.0, 1 and 1.0 must not pass for one another."""
    return None if values is None else [(type(v).__name__, repr(v)) for v in values]


# Texts of numbers in every spelling float() or JSON might read differently, and texts that are not.
_number_texts = st.one_of(
    st.floats(allow_nan=False, allow_infinity=False).map(repr),
    st.floats(allow_nan=False, allow_infinity=False).map(lambda f: f"{f:.25e}"),
    st.floats(allow_nan=False, allow_infinity=False).map(lambda f: f"{f:.40f}"),
    st.integers(-2**70, 2**70).map(str),
    st.integers(0, 10**40).map(lambda n: f"{n}e-{n % 400}"),
    st.integers(0, 10**6).map(lambda n: f"{n}E+{n % 330}"),
    st.sampled_from(["0", "-0", "0.0", "-0.0", "-0e5", "0e-3", "-0.000", "4543", "17", "2500", "1e308", "1e309",
                     "-1e309", "1e-400", "-1e-400", "4.9e-324", "2.2250738585072014e-308", "9007199254740993",
                     "18446744073709551616", "0.1000000000000000055511151231257827", "123456789012345678.0"]),
)
_odd_texts = st.sampled_from([
    "inf", "-inf", "nan", "Infinity", "NaN", "1_0", "+5", ".5", "5.", "00", "01", "0x10", "\u0661\u0662",
    " 12", "12 ", "\t7\n", "\xa012", "1,2", "1]", "[1", "1],[2", "]", "[", "", "-", "abc", "null", "true", "1 2",
    "\"1\"", "1e", "e5", "--1", "1.2.3", "\u00e9", "\x00", "12\x00",
])
_values = st.one_of(_number_texts, _number_texts, _number_texts, _odd_texts, st.none(),
                    st.floats(allow_nan=True, allow_infinity=True), st.just(12.5))


@settings(max_examples=1500, deadline=None, derandomize=True, database=None)
@given(col=st.lists(_values, min_size=1, max_size=12), as_tuple=st.booleans())
def test_floats_agree_with_the_frozen_copy(col, as_tuple):
    """Any column of texts, numbers and None: the same floats (signs of zero included), the same None
    kept, and the same columns left to the value-by-value path."""
    want = frozen_floats(list(col))
    got = envoy_json._floats(tuple(col) if as_tuple else list(col))
    assert _typed(got) == _typed(want)


@settings(max_examples=1500, deadline=None, derandomize=True, database=None)
@given(col=st.lists(st.one_of(_values, st.just("-")), min_size=1, max_size=12), as_tuple=st.booleans())
def test_floats_read_dashes_as_none_as_the_frozen_copy_of_the_column_with_none(col, as_tuple):
    """``dashes=True`` (the parser's call since the twelfth session: _transpose leaves the upstream times'
    "-"): the frozen copy's result for the column with every "-" made None first, as _transpose made it."""
    want = frozen_floats([None if v == "-" else v for v in col])
    got = envoy_json._floats(tuple(col) if as_tuple else list(col), dashes=True)
    assert _typed(got) == _typed(want)


@settings(max_examples=300, deadline=None, derandomize=True, database=None)
@given(col=st.lists(_number_texts, min_size=1, max_size=40))
def test_a_column_of_number_texts_is_read_at_once_as_float_reads_each(col):
    """Texts JSON reads as numbers: msgspec's one read, finite values as float() gives them, zeros with
    their sign; a column holding a value out of range (or whose sum is) is left to the value-by-value path."""
    got = envoy_json._floats(col)
    assert _typed(got) == _typed(frozen_floats(col))
    want = [float(v) for v in col]
    total = sum(want)
    if total - total == 0.0:
        assert _typed(got) == _typed(want)
    else:  # an infinite value, or a sum past the largest float: the value-by-value path's, as before
        assert got is None


def test_negative_zero_and_absent_values_keep_their_reading():
    assert _typed(envoy_json._floats(["-0", None, "0", "-0.0", "5"])) == _typed([-0.0, None, 0.0, -0.0, 5.0])
    assert envoy_json._floats(("1", "2,3")) is None or envoy_json._floats(("1", "2,3")) == frozen_floats(["1", "2,3"])
    assert envoy_json._floats(["1", "inf"]) is None


def _decoded(lines, with_order=False):
    p = EnvoyJsonParser(hasher=Hasher(b"t"))
    p.parse_batch(lines[:2], "f.log", 1, [])  # the key set's decoder
    out = []
    for line in lines:
        try:
            out.append(p._fast(line))
        except msgspec.ValidationError:  # a type the fast struct does not take: the general path's line
            pass
    return (out, p._fast_lit.order) if with_order else out


_changes = st.dictionaries(
    st.sampled_from(["response_flags", "method", "user_agent", "x_forwarded_for", "upstream_host",
                     "upstream_service_time", "genai_model_name", "request_id", "bytes_received",
                     "duration", "genai_tokens_input"]),
    st.sampled_from(["-", "UF", "a", "\u00e9", "10.0.0.1, 10.0.0.2", "7"]), max_size=3)


@settings(max_examples=150, deadline=None, derandomize=True, database=None)
@given(changes=st.lists(_changes, min_size=1, max_size=30), no_dash=st.sets(st.integers(1, 21), max_size=4))
def test_transpose_gives_the_frozen_copy_s_columns(changes, no_dash):
    """The same values in every column (tuples or lists), "-" as None where it is looked for."""
    base = orjson.loads(corpus.lines("envoy_json", 1)[0])
    lines = [orjson.dumps(base)] * 2 + [orjson.dumps({**base, **c}) for c in changes]
    objs, order = _decoded(lines, with_order=True)
    want = frozen_transpose(objs, frozenset(no_dash))
    # Found per struct (runs of one type), and given as the key set's order, as parse_batch gives it.
    no_dash = frozenset(no_dash)
    for got in (envoy_json._transpose(objs, no_dash), envoy_json._transpose(objs, no_dash, order)):
        assert [_typed(c) for c in got] == [_typed(c) for c in want]
        assert all(type(c) in (tuple, list) for c in got)


@settings(max_examples=60, deadline=None, derandomize=True, database=None)
@given(cuts=st.lists(st.integers(0, 12), min_size=1, max_size=4), seed=st.integers(0, 2**16))
def test_transpose_of_structs_of_several_key_orders(cuts, seed):
    """Structs of key sets whose keys come in other orders (so other field orders), in runs: the columns of
    ``_FAST_ORDER`` as read by name, whatever the runs."""
    import random
    rnd = random.Random(seed)
    base = orjson.loads(corpus.lines("envoy_json", 1)[0])
    objs = []
    for k, n in enumerate(cuts):
        keys = list(base)
        rnd.shuffle(keys)
        doc = {key: base[key] for key in keys}
        if k % 2:
            doc["route_name"] = "r"  # an unused key among them
        p = EnvoyJsonParser(hasher=Hasher(b"t"))
        line = orjson.dumps(doc)
        p.parse_batch([line, line], "f.log", 1, [])
        objs += [p._fast(line) for _ in range(n)]
    if not objs:
        return
    assert len({type(o).__struct_fields__ for o in objs}) >= min(2, sum(1 for n in cuts if n))  # orders differ
    got = envoy_json._transpose(objs, frozenset())
    assert [_typed(c) for c in got] == [_typed(c) for c in frozen_transpose(objs)]


_ust = st.one_of(_number_texts, _odd_texts, st.none(), st.floats(allow_nan=False, allow_infinity=False),
                 st.integers(-5, 10**6))


@settings(max_examples=200, deadline=None, derandomize=True, database=None)
@given(values=st.lists(_ust, min_size=1, max_size=30), chunk=st.sampled_from([1, 2, 5, 1000]),
       stamp=st.booleans())
def test_chunks_with_any_upstream_times_agree_with_the_reference(values, chunk, stamp):
    """Whole chunks whose upstream times take any spelling: the same events (values and types), dead
    letters, line numbers and counts as the reference module."""
    base = orjson.loads(corpus.lines("envoy_json", 1)[0])
    lines = [orjson.dumps(base)]
    for v in values:
        try:
            lines.append(orjson.dumps({**base, "upstream_service_time": v}))
        except TypeError:  # orjson writes no integer past 64 bits: the text of one instead
            lines.append(orjson.dumps({**base, "upstream_service_time": str(v)}))
    chunks = [lines[i:i + chunk] for i in range(0, len(lines), chunk)]

    def outcome(parser):
        parser.stamp_ids = stamp
        events, dead, first = [], [], 1
        for c in chunks:
            batch = parser.parse_batch(c, "f.log", first, dead)
            events.extend([(k, type(v).__name__, repr(v)) for k, v in e.items()] for e in batch.events)
            first += len(c)
        s = parser.stats
        return events, [(d.line, d.reason, d.raw) for d in dead], (s.records, s.parsed, s.failed, s.events)

    assert outcome(EnvoyJsonParser(hasher=Hasher(b"t"))) == outcome(reference.EnvoyJsonParser(hasher=Hasher(b"t")))


@settings(max_examples=150, deadline=None, derandomize=True, database=None)
@given(rows=st.lists(st.fixed_dictionaries({}, optional={
    "start_time": st.sampled_from(["-", None, "2026-11-01T00:00:01.250Z", "1772442000"]),
    "x_api_key": st.sampled_from(["-", None, "", "sk-1", "Bearer sk-2"]),
    "upstream_service_time": st.sampled_from(["-", None, "-0", "12", "x", 7]),
    "user": st.sampled_from(["-", None, "alice"]),
}), min_size=1, max_size=40), chunk=st.sampled_from([1, 3, 1000]), prefer=st.booleans())
def test_dashes_of_the_columns_searched_later_agree_with_the_reference(rows, chunk, prefer):
    """Envoy's absent value "-" in the times, the API keys and the upstream times (left by _transpose since the
    twelfth session, found where _columns needs it): the same events, principals, dead letters and reasons as
    the reference module, an identity beside them or not."""
    first = orjson.loads(corpus.lines("envoy_json", 1)[0])
    lines = [orjson.dumps(first)] + [orjson.dumps({**first, **r}) for r in rows]
    chunks = [lines[i:i + chunk] for i in range(0, len(lines), chunk)]

    def outcome(parser):
        events, dead, at = [], [], 1
        for c in chunks:
            batch = parser.parse_batch(c, "f.log", at, dead)
            events.extend([(k, type(v).__name__, repr(v)) for k, v in e.items()] for e in batch.events)
            at += len(c)
        return events, [(d.line, d.reason, d.raw) for d in dead]

    options = {"prefer_identity": prefer}
    got = outcome(EnvoyJsonParser(EnvoyJsonParser.Options(**options), hasher=Hasher(b"t")))
    assert got == outcome(reference.EnvoyJsonParser(reference.EnvoyJsonParser.Options(**options), hasher=Hasher(b"t")))
    assert got[0]  # (the first line is whole)


def test_msgspec_float_array_reads_what_the_fast_path_relies_on():
    """The premises of the one read: JSON's grammar only, one element per value, and -0 read as 0.0
    (so zeros are re-read by float())."""
    read = envoy_json._FLOAT_ARRAY
    assert read("[4543,17]") == [4543.0, 17.0] and all(type(v) is float for v in read("[4543,17]"))
    for bad in ("[inf]", "[1_0]", "[+5]", "[.5]", "[5.]", "[01]", "[1e400]", '["1"]', "[[1]]"):
        try:
            read(bad)
        except (msgspec.DecodeError, msgspec.ValidationError):
            continue
        raise AssertionError(bad)
    assert repr(read("[-0]")[0]) == "0.0"  # the reason for the zeros' re-read


# -- the times of a slice at once -----------------------------------------------------------------
def frozen_times(ts, parse_iso):
    """main c8a4406's ``_times``."""
    import numpy as np
    try:
        width = len(ts[0])
        if not 22 <= width <= 30 or len(set(map(len, ts))) != 1:
            return None
        arr = np.frombuffer("".join(ts).encode("ascii"), dtype=np.uint8).reshape(len(ts), width)
    except (TypeError, UnicodeEncodeError):
        return None
    digits = arr - 48
    if (arr[:, width - 1] != 90).any() or (digits[:, 20:width - 1] > 9).any():
        return None
    for at, c in envoy_json._SEPARATORS:
        if (arr[:, at] != c).any():
            return None
    heads = arr[:, :20]
    starts = np.flatnonzero((heads[1:] != heads[:-1]).any(axis=1)) + 1
    if len(starts) * envoy_json._RUN_LINES > len(ts):
        return None
    frac_digits = width - 21
    fracs = digits[:, 20:width - 1].astype(np.int64) @ (10 ** np.arange(frac_digits - 1, -1, -1, dtype=np.int64))
    out = fracs * envoy_json._FRAC_SCALE[frac_digits]
    bounds = [0, *starts.tolist(), len(ts)]
    head, base = "", 0
    for a, b in zip(bounds, bounds[1:]):
        t = ts[a]
        try:
            base = parse_iso(t) - int(t[20:-1]) * envoy_json._FRAC_SCALE[frac_digits]
        except Exception:
            return None
        head = t[:20]
        if not -2**62 < base < 2**62:
            return None
        out[a:b] += base
    return out.tolist(), head, base


@st.composite
def _time_columns(draw):
    """Runs of one second in KServe's and Envoy's spellings, with any one value spoiled."""
    digits = draw(st.integers(1, 9))
    seconds = draw(st.lists(st.sampled_from(["2026-11-01T00:00:00", "2026-11-01T00:00:01", "2026-12-31T23:59:59",
                                             "1970-01-01T00:00:00", "2026-13-01T00:00:00", "2026-02-30T10:00:00",
                                             "9999-12-31T23:59:59", "2026-11-01T24:00:00", "2026-11-01T00:60:00"]),
                            min_size=1, max_size=3))
    col = []
    for sec in seconds:
        for _ in range(draw(st.integers(1, 150))):
            col.append(f"{sec}.{draw(st.integers(0, 10 ** digits - 1)):0{digits}d}Z")
    if draw(st.booleans()):
        i = draw(st.integers(0, len(col) - 1))
        t = col[i]
        col[i] = draw(st.sampled_from([
            None, 5, t[:-1] + "z", t[:-1] + " ", t.replace("T", " "), t.replace(".", ","), t.replace("-", "/", 1),
            t[:20] + "\u0661" * (len(t) - 21) + "Z", t[:20] + "a" * (len(t) - 21) + "Z",
            t[:20] + "\x00" * (len(t) - 21) + "Z",
            t[:20] + ":" * (len(t) - 21) + "Z", t[:20] + "/" + t[21:],
            t[:-1] + "0Z", t[:-2] + "Z", t[:19] + "\x00" + t[20:], t.replace(":", ";", 1), "\u00e9" + t[1:], t]))
    return col


@settings(max_examples=800, deadline=None, derandomize=True, database=None)
@given(col=_time_columns(), as_tuple=st.booleans())
def test_times_agree_with_the_frozen_copy(col, as_tuple):
    """The same times, last head and second, or the same refusal (the loop decides), for any slice."""
    from ramparts.timeutil import parse_iso
    got = envoy_json._times(tuple(col) if as_tuple else col, parse_iso)
    assert got == frozen_times(col, parse_iso)
