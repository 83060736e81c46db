"""The request fields' conversions shared by anomaly.model and drift.model (detectors/typed_columns.py)
against frozen copies of what each detector did alone before (43b3841), on odd values of every type."""

import math
from itertools import count

import numpy as np
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ramparts.detectors.anomaly import ModelMetrics, _entity_codes, _numbers
from ramparts.detectors.base import DictState
from ramparts.detectors.drift import REQUEST_FIELDS, DriftDetector, request_column_groups
from ramparts.detectors.typed_columns import TypedColumns
from ramparts.events import EventBatch, columnar

NS = 1_000_000_000


# -- frozen copies of 43b3841 (drift.request_column_groups and its helpers, anomaly._numbers and
# _entity_codes), the code the shared conversions replace ----------------------------------------
def _old_ints(values):
    n = len(values)
    if set(map(type, values)) == {int}:
        try:
            return np.array(values, dtype=np.int64), np.ones(n, dtype=bool)
        except OverflowError:
            pass
    lo, hi = -(2 ** 62), 2 ** 62
    ok = np.fromiter((type(v) is int for v in values), dtype=bool, count=n)
    return np.fromiter((min(max(v, lo), hi) if type(v) is int else 0 for v in values), dtype=np.int64,
                       count=n), ok


def _old_counts(values):
    if set(map(type, values)) <= {int, type(None)}:
        x = np.array(values, dtype=float)
    else:
        x = np.fromiter((v if type(v) is int else math.nan for v in values), dtype=float, count=len(values))
    x[x < 0] = math.nan
    return x


def old_request_column_groups(models, versions, times, status, tokens_in, tokens_out):
    n = len(models)
    if n == 0:
        return {}
    code, ok = _old_ints(status)
    ok &= ~np.isin(code, np.array([401, 403, 404, 405, 407, 429]))
    ts, ts_ok = _old_ints(times)
    ok &= ts_ok
    keys = models
    if versions.count(None) != n:
        keys = list(zip(models, [v if type(v) is str and v else None for v in versions]))
    first = {}
    try:
        ids = np.fromiter(map(first.setdefault, keys, count()), dtype=np.int64, count=n)
    except TypeError:
        keys = [(k if type(k) is str else None) if keys is models else (k[0] if type(k[0]) is str else None, k[1])
                for k in keys]
        first = {}
        ids = np.fromiter(map(first.setdefault, keys, count()), dtype=np.int64, count=n)
    bad = [i for k, i in first.items() if not (type(k) is str and k) and not (type(k) is tuple and type(k[0]) is str
                                                                            and k[0])]
    if bad:
        ok &= ~np.isin(ids, bad)
    if not ok.all():
        rows = np.flatnonzero(ok)
        ids, code, ts = ids[rows], code[rows], ts[rows]
    else:
        rows = slice(None)
    if len(ids) == 0:
        return {}
    failed = code >= 400
    x = np.empty((len(ids), 3))
    x[:, 0] = _old_counts(tokens_in)[rows]
    x[:, 1] = np.where(failed, math.nan, _old_counts(tokens_out)[rows])
    x[:, 2] = failed
    sv = np.column_stack([np.log1p(x[:, 1]), x[:, 2]])
    if len(first) - len(bad) == 1:
        groups = [(int(ids[0]), slice(None))]
    else:
        order = np.argsort(ids, kind="stable")
        starts = np.concatenate([[0], np.flatnonzero(np.diff(ids[order])) + 1])
        groups = sorted(zip(order[starts].tolist(), np.split(order, starts[1:])))
        groups = [(int(ids[at]), r) for at, r in groups]
    key_of = {i: k for k, i in first.items()}
    out = {}
    for i, r in groups:
        k = key_of[i]
        out[(k, None) if type(k) is str else k] = (ts[r], x[r], sv[r])
    return out


def old_numbers(values):
    if frozenset((float, int, type(None))).issuperset(map(type, values)):
        try:
            a = np.array(values, dtype=np.float64)
        except OverflowError:
            pass
        else:
            a[np.isinf(a)] = np.nan
            return a
    out = []
    for v in values:
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(float(v)):
            out.append(math.nan)
        else:
            out.append(float(v))
    return np.array(out, dtype=np.float64)


class _Codes(dict):
    def __missing__(self, key):
        code = self[key] = len(self)
        return code


def old_entity_codes(entities, times):
    code = _Codes()
    try:
        codes = np.fromiter(map(code.__getitem__, entities), dtype=np.int64, count=len(entities))
    except TypeError:
        code = _Codes()
        codes = np.fromiter((code[v] if isinstance(v, str) else -1 for v in entities), dtype=np.int64,
                            count=len(entities))
    names = list(code)
    if not all(isinstance(v, str) for v in names):
        renumber = np.full(len(names) + 1, -1, dtype=np.int64)
        kept = [i for i, v in enumerate(names) if isinstance(v, str)]
        renumber[kept] = np.arange(len(kept))
        codes = renumber[codes]
        names = [names[i] for i in kept]
    minutes = None
    if frozenset((int, bool)).issuperset(map(type, times)):
        try:
            minutes = np.array(times, dtype=np.int64) // (60 * NS)
        except OverflowError:
            pass
    if minutes is None:
        low, high = np.iinfo(np.int64).min, np.iinfo(np.int64).max
        whole = [t // (60 * NS) if isinstance(t, int) else None for t in times]
        bad = [m is None or not low <= m <= high for m in whole]
        minutes = np.array([0 if b else m for m, b in zip(whole, bad)], dtype=np.int64)
        codes[np.array(bad, dtype=bool)] = -1
    return codes, names, minutes


# -- odd columns ---------------------------------------------------------------------------------
_ODD = [None, "", "12", True, False, 0, -3, 1.5, -0.0, float("nan"), float("inf"), -float("inf"), 2 ** 63,
        -(2 ** 70), 10 ** 400, [1], {"a": 1}]


def _column(draw, usual, odd_share):
    n = draw(st.integers(0, 40))
    return [draw(st.sampled_from(_ODD)) if draw(st.floats(0, 1)) < odd_share else draw(usual) for _ in range(n)]


@st.composite
def request_columns(draw):
    odd = draw(st.sampled_from([0.0, 0.0, 0.05, 0.3]))
    n = draw(st.integers(1, 40))
    models = draw(st.lists(st.sampled_from(["a", "b", "c", ""] + ([None, 7, [1]] if odd else [])), min_size=n,
                           max_size=n))
    versions = draw(st.sampled_from([[None] * n, [draw(st.sampled_from([None, "1", "2", "", 3])) for _ in range(n)]]))
    cols = [models, versions]
    for usual in (st.integers(0, 10 ** 12), st.sampled_from([200, 200, 401, 429, 500, 503, 404, 0, 999]),
                  st.one_of(st.none(), st.integers(-5, 5000)), st.one_of(st.none(), st.integers(-5, 5000))):
        col = [draw(usual) for _ in range(n)]
        for i in range(n):
            if draw(st.floats(0, 1)) < odd:
                col[i] = draw(st.sampled_from(_ODD))
        cols.append(col)
    return cols


def _same_groups(got, want):
    assert list(got) == list(want)
    for k in want:
        for a, b in zip(got[k], want[k]):
            assert a.dtype == b.dtype and a.shape == b.shape
            assert a.tobytes() == b.tobytes()


def _call(f, *args):
    try:
        return "ok", f(*args)
    except Exception as e:  # noqa: BLE001 - an odd value's error must stay the same error
        return "raised", type(e)


@settings(max_examples=600, derandomize=True, deadline=None)
@given(request_columns())
def test_request_groups_from_shared_columns_equal_the_frozen_per_detector_code(cols):
    want = _call(old_request_column_groups, *cols)
    got = _call(request_column_groups, *cols)  # the conversions made here (TypedColumns over the lists)
    events = [{"kind": "request", **{f: v for f, v in zip(REQUEST_FIELDS, row) if v is not None}}
              for row in zip(*cols)]
    batch = columnar(events)
    shared = TypedColumns(batch, ("request",))
    from ramparts.detectors.kind_columns import kind_values
    lists = [kind_values(batch, ("request",), f) for f in REQUEST_FIELDS]
    got_batch = _call(lambda *c: request_column_groups(*c, columns=shared), *lists)
    again = _call(lambda *c: request_column_groups(*c, columns=shared), *lists)  # shared arrays not changed
    for g in (got, got_batch, again):
        assert g[0] == want[0], (g, want)
        if want[0] == "ok":
            _same_groups(g[1], want[1])
        else:
            assert g[1] is want[1]


@settings(max_examples=600, derandomize=True, deadline=None)
@given(request_columns())
def test_anomaly_numbers_and_codes_from_shared_columns_equal_the_frozen_per_detector_code(cols):
    models, _versions, times, status, tokens_in, tokens_out = cols
    c = TypedColumns.of_lists({"model": models, "ts": times, "status": status, "tokens_out": tokens_out})
    for f, values in (("status", status), ("tokens_out", tokens_out), ("ts", times)):
        want = _call(old_numbers, values)
        got = _call(_numbers, values, c.types(f), c.floats(f))
        assert got[0] == want[0]
        if want[0] == "ok":
            assert got[1].tobytes() == want[1].tobytes()
        assert _call(_numbers, values)[0] == want[0]
    coded = c.codes("model")
    before = None if coded is None else coded[0].copy()
    want = _call(old_entity_codes, models, times)
    for got in (_call(_entity_codes, models, times, coded, c.types("ts"), c.ints("ts")),
                _call(_entity_codes, models, times)):
        assert got[0] == want[0]
        if want[0] == "ok":
            assert got[1][0].tolist() == want[1][0].tolist() and got[1][1] == want[1][1]
            assert got[1][2].tolist() == want[1][2].tolist()
    if coded is not None:  # the shared codes are not changed (the -1 of a bad time is written in a copy)
        assert coded[0].tolist() == before.tolist()


def _stream(n, seed):
    rng = np.random.default_rng(seed)
    t0 = 1_795_000_020 * NS
    events = []
    for i in range(n):
        e = {"kind": "request", "ts": t0 + i * 2 * NS // 3, "model": ["llama", "qwen", "bge"][int(rng.integers(3))],
             "status": int(rng.choice([200, 200, 200, 500, 429])), "tokens_in": int(rng.integers(1, 900)),
             "tokens_out": int(rng.integers(1, 400) * (3 if i > n // 2 else 1)),
             "latency_ms": float(rng.gamma(2, 40 * (4 if i > n // 2 else 1)))}
        if rng.random() < 0.03:
            e[["status", "tokens_out", "model", "ts", "latency_ms"][int(rng.integers(5))]] = _ODD[int(rng.integers(14))]
        events.append(e)
        if rng.random() < 0.05:
            events.append({"kind": "gpu", "ts": e["ts"], "gpu_uuid": "g", "util_pct": 50.0})
    return events


@pytest.mark.parametrize("dicts", [False, True])
def test_detectors_sharing_a_batchs_conversions_give_what_each_gives_alone(dicts):
    # anomaly.model and drift.model over the same batches (the second one reads the first one's
    # shared arrays) against each alone over its own copy of the batches: same alerts, same state.
    options = {"learn_minutes": 6, "window": 2, "alert_score": 0.5}
    events = _stream(9000, seed=4)
    together = [ModelMetrics(options), DriftDetector({"window_rows": 300})]
    alone = [ModelMetrics(options), DriftDetector({"window_rows": 300})]
    s_together, s_alone = DictState(), [DictState(), DictState()]
    alerts = 0
    for i in range(0, len(events), 1000):
        b = events[i:i + 1000]
        batch = EventBatch(b) if dicts else columnar(b)
        for d, d1, s1 in zip(together, alone, s_alone):
            got = d.update(batch, s_together)
            want = d1.update(EventBatch(b) if dicts else columnar(b), s1)
            assert got == want
            alerts += len(got)
    assert alerts > 0, "nothing raised: the comparison would not see a wrong value"
    merged = {**s_alone[0].data, **s_alone[1].data}
    assert orjson.dumps(s_together.data, option=orjson.OPT_SORT_KEYS) == orjson.dumps(merged,
                                                                                       option=orjson.OPT_SORT_KEYS)


# -- the floats of ints made from their int64 array, against a frozen copy of the conversion of the
# list (df7e0c9) ----------------------------------------------------------------------------------
_FROZEN_FLOAT_TYPES = frozenset((int, float, type(None)))
_FROZEN_INT_TYPES = frozenset((int, bool))


def _frozen_array(values, types, dtype):
    if not types.issuperset(set(map(type, values))):
        return None
    try:
        return np.array(values, dtype=dtype)
    except OverflowError:
        return None


_numbers_of = st.one_of(
    st.integers(-(2 ** 63), 2 ** 63 - 1),
    st.integers(-(2 ** 70), 2 ** 70),  # beyond int64, still a float
    st.sampled_from([2 ** 53 + 1, -(2 ** 53) - 1, 2 ** 63 - 1, -(2 ** 63), 2 ** 63, 2 ** 1100, 0, 1, 200, 503]),
)
_odd = st.one_of(st.none(), st.booleans(), st.floats(allow_nan=True), st.just("200"), st.just([1]))


@st.composite
def typed_batches(draw):
    """Events of three kinds, the requests' numbers mostly ints (some with odd values), times ints or odd."""
    n = draw(st.integers(0, 40))
    events = []
    for i in range(n):
        kind = draw(st.sampled_from(["request", "request", "request", "prediction", "gpu"]))
        e = {"kind": kind}
        for f in ("status", "tokens_in"):
            if draw(st.integers(0, 9)) < 8:
                e[f] = draw(_numbers_of)
            elif draw(st.booleans()):
                e[f] = draw(_odd)
        t = draw(st.one_of(st.integers(-(2 ** 63), 2 ** 63 - 1), st.integers(0, 10 ** 6)))
        if draw(st.integers(0, 19)) == 0:
            t = draw(st.one_of(_odd, st.just(2 ** 64)))
        e["ts"] = t
        events.append(e)
    as_columns = draw(st.booleans())
    order = draw(st.permutations(range(n))) if draw(st.booleans()) else None
    asks = draw(st.permutations([("status", "floats"), ("status", "ints"), ("tokens_in", "floats"),
                                 ("tokens_in", "ints"), ("ts", "ints"), ("ts", "floats")]))
    kinds = draw(st.sampled_from([("request",), ("request", "prediction"), ("gpu",)]))
    return events, as_columns, order, asks, kinds, draw(st.booleans())


@settings(max_examples=800, derandomize=True, deadline=None)
@given(typed_batches())
def test_arrays_made_from_other_arrays_equal_the_lists_converted(case):
    events, as_columns, order, asks, kinds, sort_first = case
    batch = columnar(events) if as_columns else EventBatch(events)
    if order is not None:
        batch = batch.select(order)
    if sort_first:  # as process_batch hands it: the batch's times read by the sort (when they can be)
        try:
            batch = batch.sorted_by_time()
        except (KeyError, TypeError, ValueError, OverflowError):
            pass
    cols = TypedColumns(batch, kinds)
    picked = [e for e in (batch.events if len(batch) else []) if e["kind"] in kinds]
    for field, name in asks:
        got = cols.floats(field) if name == "floats" else cols.ints(field)
        values = [e.get(field) for e in picked]
        want = (_frozen_array(values, _FROZEN_FLOAT_TYPES, np.float64) if name == "floats"
                else _frozen_array(values, _FROZEN_INT_TYPES, np.int64))
        assert (got is None) == (want is None), (field, name, values)
        if want is not None:
            assert got.dtype == want.dtype and got.shape == want.shape and got.tobytes() == want.tobytes(), (
                field, name, values)


def test_the_floats_of_ints_are_made_from_the_ints():
    # The shortcut is taken (else the test above compares the old code with itself).
    batch = columnar([{"kind": "request", "ts": 5, "status": 2 ** 53 + 1}, {"kind": "gpu", "ts": 3},
                      {"kind": "request", "ts": 9, "status": 200}]).sorted_by_time()
    cols = TypedColumns(batch, ("request",))
    assert cols.floats("status").tolist() == [float(2 ** 53 + 1), 200.0]
    # the floats were made from the ints, which are there without being asked for
    made = batch.shared("typed/request/status/ints", lambda b: pytest.fail("the ints were not made"))
    assert made.tolist() == [2 ** 53 + 1, 200]


# -- the requests' model codes made by request_rows from its distinct rows, against a frozen copy of
# TypedColumns.codes' own numbering (df7e0c9) --------------------------------------------------------
class _FrozenCodes(dict):
    def __missing__(self, key):
        code = self[key] = len(self)
        return code


def _frozen_codes(values):
    code = _FrozenCodes()
    try:
        codes = np.fromiter(map(code.__getitem__, values), dtype=np.int64, count=len(values))
    except TypeError:
        return None
    return codes, list(code)


_NAN = float("nan")


@st.composite
def request_batches(draw):
    n = draw(st.integers(0, 60))
    models = st.sampled_from(["m", "n", "o", "", None, 1, True, 1.0, _NAN, "m2"])
    events = []
    for _ in range(n):
        kind = draw(st.sampled_from(["request", "request", "request", "prediction"]))
        e = {"kind": kind, "ts": draw(st.integers(0, 100)), "principal": draw(st.sampled_from(["a", "b", None])),
             "status": draw(st.sampled_from([200, 401, 500, None])), "src_ip": draw(st.sampled_from(["x", "y"])),
             "model": draw(models)}
        if draw(st.integers(0, 40)) == 0:
            e[draw(st.sampled_from(["model", "principal"]))] = ["unhashable"]
        events.append(e)
    return events, draw(st.booleans()), draw(st.booleans())


@settings(max_examples=600, derandomize=True, deadline=None)
@given(request_batches())
def test_model_codes_from_the_request_rows_equal_the_codes_numbered_per_request(case):
    from ramparts.detectors.request_rows import request_rows

    events, as_columns, rows_first = case
    batch = (columnar(events) if as_columns else EventBatch(events)).sorted_by_time()
    cols = TypedColumns(batch, ("request",))
    if rows_first:
        request_rows(batch)
    got = cols.codes("model")
    request_rows(batch)
    want = _frozen_codes([e.get("model") for e in batch.events if e["kind"] == "request"])
    assert (got is None) == (want is None)
    if want is not None:
        assert got[0].dtype == want[0].dtype and got[0].tobytes() == want[0].tobytes()
        assert len(got[1]) == len(want[1]) and all(a is b for a, b in zip(got[1], want[1]))


def test_the_model_codes_are_made_by_the_request_rows():
    from ramparts.detectors.request_rows import request_rows

    batch = columnar([{"kind": "request", "ts": 1, "principal": "a", "status": 200, "src_ip": "x", "model": "m"},
                      {"kind": "request", "ts": 2, "principal": "b", "status": 200, "src_ip": "x", "model": "n"},
                      {"kind": "request", "ts": 3, "principal": "a", "status": 200, "src_ip": "x", "model": "m"}])
    request_rows(batch)
    made = batch.shared("typed/request/model/codes", lambda b: pytest.fail("the codes were not made"))
    assert made[0].tolist() == [0, 1, 0] and made[1] == ["m", "n"]
