"""drift.model's reading of a batch's predictions (tenth session, second round) against what it
replaced: the grouping loop with its shortcut for rows of values (``prediction_groups``) against
cd8abba's loop (a frozen copy below, which calls ``prediction_rows_of`` for every prediction),
and the scores in one conversion (``_scores``) against cd8abba's ``_num`` of each output."""

import math
import random

import numpy as np

from ramparts.detectors.drift import _HI, _LO, _num, _scores, prediction_groups, prediction_rows_of


def _old_groups(columns, stored):  # cd8abba's loop in DriftDetector.update
    predictions, names = {}, {}
    for model, version, ts, inp, tensors, out in zip(*columns):
        if type(model) is not str or not model or type(ts) is not int or not _LO <= ts <= _HI:
            continue
        gk = (model, version if type(version) is str and version else None)
        g = predictions.get(gk)
        if g is None:
            g = predictions[gk] = []
            s = stored(gk)
            names[gk] = s.get("dn") if s is not None else None
        rows, out, names[gk] = prediction_rows_of(inp, tensors, out, names[gk])
        if rows:
            g.append((ts, rows, out))
    return predictions, names


def _value(rng):
    return rng.choice([1, 2.5, -3, 0.0, True, None, "x", math.nan, 10 ** 30, [1, 2], {"a": 1}])


def _row(rng):
    return [_value(rng) if rng.random() < 0.2 else rng.uniform(-9, 9) for _ in range(rng.randint(0, 4))]


def _input(rng):
    shape = rng.random()
    if shape < 0.55:  # rows of values: the shortcut's case when the outputs line up
        return [_row(rng) for _ in range(rng.randint(1, 4))]
    if shape < 0.65:  # several tensors
        return [[_row(rng) for _ in range(rng.randint(0, 3))] for _ in range(rng.randint(1, 3))]
    if shape < 0.75:
        return [{rng.choice("abc"): _value(rng) for _ in range(rng.randint(0, 3))} for _ in range(rng.randint(1, 3))]
    if shape < 0.85:
        return {rng.choice(["age", "income", "customer_lifetime_value_usd"]): [rng.random(), rng.random()]
                for _ in range(rng.randint(1, 3))}
    return rng.choice([[], None, "x", 3, [1.0, 2.0], [None, [1]], [[]]])


def _output(rng, inp):
    n = len(inp) if type(inp) is list else 1
    return rng.choice([[rng.random() for _ in range(n)], [rng.random() for _ in range(n + 1)],
                       [[rng.random(), rng.random()] for _ in range(n)], None, 0.7, 3, "x", [], [True] * n])


def test_groups_equal_the_per_prediction_calls():
    rng = random.Random(2411)
    shortcut = 0
    for _ in range(300):
        n = rng.randint(0, 60)
        models = [rng.choice(["m1", "m2", "m3", "", None, 5]) for _ in range(n)]
        versions = [rng.choice(["v1", "v2", "", None, 7]) for _ in range(n)]
        ts = [rng.choice([rng.randint(0, 10 ** 12), -1, 2 ** 63, -(2 ** 63), 1.5, None]) for _ in range(n)]
        inputs = [_input(rng) for _ in range(n)]
        tensors = [rng.choice([None, ["a"], ["a", "b"], [], "a"]) for _ in range(n)]
        outputs = [_output(rng, inp) for inp in inputs]
        columns = [models, versions, ts, inputs, tensors, outputs]
        stored = {("m1", "v1"): {"dn": ["a", "b"]}, ("m2", None): {"x": 1}}
        asked_new, asked_old = [], []
        new = prediction_groups(columns, lambda gk: asked_new.append(gk) or stored.get(gk))
        old = _old_groups(columns, lambda gk: asked_old.append(gk) or stored.get(gk))
        assert new == old
        assert asked_new == asked_old
        shortcut += sum(1 for inp, t, out in zip(inputs, tensors, outputs)
                        if type(inp) is list and inp and type(inp[0]) is list and type(out) is list
                        and len(out) == len(inp) and (type(t) is not list or len(t) < 2))
    assert shortcut > 1000


def test_scores_equal_num_of_each():
    rng = random.Random(77)
    raised = 0
    for _ in range(5000):
        bits = rng.choice([1, 30, 53, 54, 63, 64, 65, 200, 1023, 1024, 1025])
        outs = [rng.choice([rng.getrandbits(bits) * rng.choice([1, -1]), rng.random() * 10 ** rng.randint(-5, 300),
                            -0.0, math.nan, math.inf, -math.inf, True, False, None, "0.5", [0.5]])
                if rng.random() < 0.3 else rng.random() for _ in range(rng.randint(0, 6))]
        try:
            old = np.fromiter((_num(v) for v in outs), dtype=np.float64, count=len(outs))
        except OverflowError:
            raised += 1
            try:
                _scores(outs)
            except OverflowError:
                continue
            raise AssertionError(f"no OverflowError for {outs!r}")
        new = _scores(outs)
        assert new.dtype == np.float64 and new.tobytes() == old.tobytes(), outs
    assert raised > 3  # huge ints: float() raises, both ways
