"""Model drift on the KServe predictors: a version rollout whose inputs then shift, and a slow
drift of an unchanged version's inputs.

Neither is an attack; both are what ``drift.model`` is for, labelled the same way:

* ``drift-rollout``: version 4 of ``fraud-xgb`` (a retrained model: other coefficients, so
  other scores for the same inputs) starts taking traffic at the window's start beside
  version 3, from the same callers at the same rate (a canary at 50 %). That alone is no
  drift: a new version starts a new reference. Part way through (47 % of the window) the
  feature pipeline shipped with it breaks: ``x2`` arrives missing and is filled with its
  training mean in 70 % of rows, and ``x6`` moves up by one standard deviation at half its
  spread. Expected alert: ``drift.model`` on model ``fraud-xgb:4`` from the first broken row.
  Version 3 is unchanged and must stay quiet.
* ``drift-gradual``: a partner integration (``svc-partner-sync``) starts calling
  ``churn-lgbm`` (version ``default``, unchanged) at the window's start, about 1.5 rows a
  second, alongside its regular callers. Its customers drift away from theirs over the
  window: ``x1`` and ``x3`` move linearly from the usual distribution to 1.2 standard
  deviations up at half the spread (inside the range the model's callers use, so no
  extraction statistic mistakes it for probing). Expected alert: ``drift.model`` on model
  ``churn-lgbm:default``, any time in the window.
"""

from __future__ import annotations

import random

from ramparts.timeutil import NS

from .. import benign
from ..benign import KSERVE_CALLERS, model_weights, prediction
from ..world import Label, World
from . import Attack

ROLLOUT_MODEL, ROLLOUT_VERSION = "fraud-xgb", "4"
BREAK_AT = 0.47  # of the rollout's window: where v4's feature pipeline breaks
PARTNER, PARTNER_IP = "svc-partner-sync", "10.42.5.77"
GRADUAL_MODEL = "churn-lgbm"


def _retrained(weights, r: random.Random):
    """Version 4's score function: the same feature means and scales, other coefficients."""
    means, scales, coefs, bias = weights
    return means, scales, [c * r.uniform(0.6, 1.4) for c in coefs], bias + r.uniform(0.2, 0.5)


def _rollout(world: World, start: int, end: int) -> list[Label]:
    from ..world import KSERVE_MODELS

    r = world.rng("attack:drift-rollout")
    _name, protocol, n, _v3 = next(m for m in KSERVE_MODELS if m[0] == ROLLOUT_MODEL)
    v3 = model_weights(world, ROLLOUT_MODEL, n)
    v4 = _retrained(v3, r)
    means, scales = v3[0], v3[1]
    names = [c[0] for c in KSERVE_CALLERS]
    weights = [c[2] for c in KSERVE_CALLERS]
    rate = world.rate / 10 * 0.7  # version 3's share of the benign KServe rate: a 50 % canary
    broken_from = start + int((end - start) * BREAK_AT)
    t, first_broken, last = start, None, None
    while True:
        t += int(r.expovariate(rate * 1.45) * NS) + 1
        if t >= end:
            break
        if r.random() * 1.45 > benign.diurnal(t):
            continue
        caller = r.choices(range(len(names)), weights)[0]
        rows = [benign.features(r, v3, n) for _ in range(1 if r.random() < 0.8 else r.randrange(2, 5))]
        if t >= broken_from:
            for row in rows:
                if r.random() < 0.7:
                    row[2] = means[2]  # missing upstream, filled with the training mean
                row[6] = round(means[6] + scales[6] * (1.0 + 0.5 * r.gauss(0, 1)), 3)
            first_broken = first_broken or t
        prediction(world, r, t, caller=names[caller], src_ip=KSERVE_CALLERS[caller][1], model=ROLLOUT_MODEL,
                   protocol=protocol, version=ROLLOUT_VERSION, weights=v4, rows=rows)
        last = t
    if first_broken is None or last is None:
        return []
    return [Label("drift-rollout", "drift.model", "model", f"{ROLLOUT_MODEL}:{ROLLOUT_VERSION}", first_broken, last,
                  f"version {ROLLOUT_VERSION} of {ROLLOUT_MODEL} rolled out as a 50 % canary beside version 3 (no "
                  f"drift: a new reference); from here its feature pipeline fills x2 with the training mean in 70 % "
                  f"of rows and moves x6 up one standard deviation")]


def _gradual(world: World, start: int, end: int) -> list[Label]:
    from ..world import KSERVE_MODELS

    r = world.rng("attack:drift-gradual")
    _name, protocol, n, version = next(m for m in KSERVE_MODELS if m[0] == GRADUAL_MODEL)
    w = model_weights(world, GRADUAL_MODEL, n)
    means, scales = w[0], w[1]
    t, first, last = start, None, None
    while True:
        t += int(r.expovariate(1.5) * NS) + 1
        if t >= end:
            break
        progress = (t - start) / (end - start)
        row = benign.features(r, w, n)
        for j in (1, 3):  # towards 1.2 sd up at half the spread, linearly over the window
            z = (row[j] - means[j]) / scales[j]
            row[j] = round(means[j] + scales[j] * (1.2 * progress + z * (1.0 - 0.5 * progress)), 3)
        prediction(world, r, t, caller=PARTNER, src_ip=PARTNER_IP, model=GRADUAL_MODEL, protocol=protocol,
                   version=version, weights=w, rows=[row])
        first = first or t
        last = t
    if first is None:
        return []
    return [Label("drift-gradual", "drift.model", "model", f"{GRADUAL_MODEL}:default", first, last,
                  f"a partner integration ({PARTNER}) calls {GRADUAL_MODEL} (~1.5 rows/s beside its regular "
                  f"callers) with customers drifting linearly to x1 and x3 1.2 standard deviations up at half "
                  f"the spread")]


ATTACKS = [
    Attack("drift-rollout", f"{ROLLOUT_MODEL} version {ROLLOUT_VERSION} rolled out as a canary, then its feature "
                            f"pipeline breaks (x2 imputed, x6 shifted)", _rollout),
    Attack("drift-gradual", f"a partner's traffic to {GRADUAL_MODEL} drifts slowly away from the usual inputs",
           _gradual),
]
