"""drift.model's per-batch work on a version's judged windows (the eighth session): the window
counts kept as arrays for a batch, the output streams' chunks closed in one call per batch, the
windows without a finding told apart by the compiled :func:`may_drift`, river's ADWIN fed through
its window directly; each against a frozen copy of e1d5517's code (``FrozenDrift``,
``frozen_adwin_check``): the same alerts, findings and state to the byte, batch by batch."""

from __future__ import annotations

import math
import random

import numpy as np
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from river.drift import ADWIN

from ramparts.detectors.base import DictState
from ramparts.detectors.drift import (
    ADWIN_VALUES,
    EDGE_ROWS,
    KSWIN_STAT,
    MINUTE,
    NS,
    POINTS,
    Q,
    DriftDetector,
    _best_split,
    adwin_check,
    chunk_closes,
    feature_names,
    histogram,
    ks_p_values,
    ks_rows,
    ks_threshold,
    kswin_check,
    may_drift,
    page_hinkley_step,
    psi_p_value,
    psi_rows,
    quantile_edges,
)
from ramparts.events import EventBatch, columnar

from .test_drift import T0, _odd_model_stream, predictions, req


# -- frozen copies of e1d5517 -----------------------------------------------------------------------
def frozen_adwin_check(points: list[float], delta: float, values_per_point: int) -> tuple[bool, int]:
    """river's ADWIN fed ``points`` (oldest first), each as ``values_per_point`` values around
    it (+1 and -1 in turn: the reference's spread, in its standard deviations). Did it alarm,
    and where is the most likely change (the index of the first point after it)?

    The state keeps the points since ADWIN's last alarm; river resets ADWIN entirely after
    an alarm, so this is the window it would hold.
    """
    a = ADWIN(delta=delta)
    hit = False
    half = values_per_point // 2
    for u in points:
        for v in (u + 1.0, u - 1.0) * half:
            a.update(v)
            hit = hit or a.drift_detected
        if values_per_point % 2:
            a.update(u)
            hit = hit or a.drift_detected
    return hit, (_best_split(points) if hit else len(points) - 1)




class FrozenDrift(DriftDetector):
    """DriftDetector with e1d5517's per-window code."""

    def _advance(self, s: dict, model: str, version: str | None, ts: np.ndarray, x: np.ndarray,
                 sv: np.ndarray) -> list[dict]:
        o = self.options
        W = o.window_rows
        n = len(ts)
        svq = np.where(np.isfinite(sv), np.round(sv * Q), np.nan)
        prev = np.concatenate([[s["lt"]], ts[:-1]])
        gaps = np.flatnonzero(ts - prev > o.gap_seconds * NS)  # rows that come after an idle gap
        alerts: list[dict] = []
        edges = None  # once the bin edges are set
        i = 0
        while i < n:
            if s["p"] == 0:  # the first rows, kept until their quantiles set the bin edges
                take = min(n - i, EDGE_ROWS - s["n"])
                for j, buf in enumerate(s["b"]):
                    col = x[i:i + take, j]
                    buf.extend(float(f"{v:.4g}") for v in col[np.isfinite(col)].tolist())
                self._stream_sums(s, svq[i:i + take])
                s["n"] += take
                if s["n"] == EDGE_ROWS:
                    bufs = [np.asarray(buf, dtype=float) for buf in s.pop("b")]
                    s["e"] = [quantile_edges(v, o.bins) for v in bufs]
                    s["h"] = [None if e is None else histogram(e, v).tolist() for e, v in zip(s["e"], bufs)]
                    s["p"] = 1
                    if s["n"] == W:
                        self._end_reference(s, int(ts[i + take - 1]))
            elif s["p"] == 1:  # the rest of the reference
                take = min(n - i, W - s["n"])
                edges = edges or self._edges(s)
                self._count(s, "h", x[i:i + take], edges)
                self._stream_sums(s, svq[i:i + take])
                s["n"] += take
                if s["n"] == W:
                    self._end_reference(s, int(ts[i + take - 1]))
            else:  # judged windows
                at = np.searchsorted(gaps, i)
                if at < len(gaps) and gaps[at] == i and s["n"] > 0:  # idle since the last row: the window ends
                    alerts += self._judge(s, model, version, s["lt"], s["r"])
                    self._new_window(s)
                next_gap = int(gaps[at + 1]) if at + 1 < len(gaps) and gaps[at] == i else (
                    int(gaps[at]) if at < len(gaps) and gaps[at] > i else n)
                take = min(n - i, W - s["n"], next_gap - i)
                if s["n"] == 0:
                    s["ws"] = int(ts[i])
                edges = edges or self._edges(s)
                self._count(s, "c", x[i:i + take], edges)
                for k in range(len(s["sn"])):
                    alerts += self._stream_points(s, k, model, version, ts[i:i + take], svq[i:i + take, k], s["r"])
                s["n"] += take
                if s["n"] == W:
                    alerts += self._judge(s, model, version, int(ts[i + take - 1]), s["r"] + take)
                    self._new_window(s)
            s["r"] += take
            s["lt"] = int(ts[i + take - 1])
            i += take
        return alerts

    @staticmethod
    def _new_window(s: dict) -> None:
        s["n"] = 0
        s["c"] = [None if c is None else [0] * len(c) for c in s["c"]]

    def _stream_points(self, s: dict, k: int, model: str, version: str | None, ts: np.ndarray, q: np.ndarray,
                       row0: int) -> list[dict]:
        """Stream ``k``'s values ``q`` of the rows at ``ts`` (rows ``row0 + 1``..) into its chunks,
        and each chunk that closes through :meth:`_point`."""
        st = s["st"][k]
        if st is None:
            return []
        ok = np.flatnonzero(np.isfinite(q))
        if len(ok) == 0:
            return []
        chunk = np.asarray(st[2], dtype=np.int64)
        at, closed = chunk_closes(ts[ok] // MINUTE - s["t0"] // MINUTE, q[ok].astype(np.int64), chunk,
                                  self.options.chunk_rows)
        alerts = []
        for r, (values, total, first) in zip(ok[at].tolist(), closed.tolist()):
            st[2] = [values, total, first, 0]
            alerts += self._point(s, k, model, version, int(ts[r]), row0 + 1 + r)
        st[2] = chunk.tolist()
        return alerts

    def _point(self, s: dict, k: int, model: str, version: str | None, ts: int, row: int) -> list[dict]:
        """A chunk closed (at the event at ``ts``): its point through ADWIN, KSWIN and PageHinkley."""
        o = self.options
        st = s["st"][k]
        mean, sd, chunk, pts, mins = st[0], st[1], st[2], st[3], st[4]
        u = round((chunk[1] / chunk[0] / Q - mean) / sd, 3)
        pts.append(u)
        mins.append(chunk[2])
        if len(pts) > POINTS:
            del pts[0], mins[0]
        st[5] = min(st[5] + 1, POINTS)
        st[6] = min(st[6] + 1, POINTS)
        st[8] += 1
        found = []
        hit, split = frozen_adwin_check(pts[-st[5]:], o.adwin_delta, min(o.chunk_rows, ADWIN_VALUES))
        if hit:
            found.append(("adwin", len(pts) - st[5] + split))
            st[5] = 0
        hit, _p = kswin_check(pts[-st[6]:], o.kswin_alpha, seed=st[8])
        if hit:
            found.append(("kswin", len(pts) - KSWIN_STAT))
            st[6] = 0
        hit, st[7], side = page_hinkley_step(st[7], u, delta=o.min_effect / 2, threshold=o.ph_threshold,
                                             min_instances=o.ph_min_points)
        if hit:  # the change began where the run of points on the side that moved began
            start = len(pts) - 1
            while start > 0 and pts[start - 1] != 0 and (pts[start - 1] > 0) == (side > 0):
                start -= 1
            found.append(("page_hinkley", start))
        findings = []
        for statistic, start in found:
            recent = pts[start:] or pts[-1:]
            effect = sum(recent) / len(recent)
            if abs(effect) < o.min_effect:
                continue
            findings.append({"feature": s["sn"][k], "statistic": statistic, "value": round(abs(effect), 3),
                             "threshold": o.min_effect, "direction": "up" if effect > 0 else "down",
                             "mean": round(mean + effect * sd, 4), "reference_mean": mean, "points": len(recent),
                             "_since": max((s["t0"] // MINUTE + mins[min(start, len(mins) - 1)]) * MINUTE,
                                           s["t0"])})
        if not findings:
            return []
        return self._raise(s, model, version, "output", findings, ts, row, rows_judged=o.chunk_rows)

    def _judge(self, s: dict, model: str, version: str | None, ts: int, row: int) -> list[dict]:
        o = self.options
        which = [j for j, (h, c) in enumerate(zip(s["h"], s["c"]))
                 if h is not None and sum(h) >= EDGE_ROWS and sum(c) >= max(EDGE_ROWS, o.window_rows // 4)]
        if not which:
            return []
        width = max(len(s["h"][j]) for j in which)
        ref = np.array([s["h"][j] + [0] * (width - len(s["h"][j])) for j in which], dtype=float)
        cur = np.array([s["c"][j] + [0] * (width - len(s["c"][j])) for j in which], dtype=float)
        psis, ds = psi_rows(ref, cur), ks_rows(ref, cur)
        found: dict[int, list] = {}
        ks_found = []
        for r in np.flatnonzero((psis >= o.psi_threshold) | (ds >= o.ks_min_statistic)).tolist():
            nr, nc = float(ref[r].sum()), float(cur[r].sum())
            if psis[r] >= o.psi_threshold:
                p = psi_p_value(float(psis[r]), ref[r], cur[r])
                if p <= o.p_value:
                    found.setdefault(r, []).append({"statistic": "psi", "value": round(float(psis[r]), 4),
                                                    "threshold": o.psi_threshold, "p_value": float(f"{p:.3g}")})
            # p <= p_value exactly when the statistic reaches the one whose p-value is p_value
            threshold = max(o.ks_min_statistic, ks_threshold(o.p_value, nr, nc))
            if ds[r] >= threshold:
                ks_found.append((r, nr, nc))
                found.setdefault(r, []).append({"statistic": "ks", "value": round(float(ds[r]), 4),
                                                "threshold": round(threshold, 4)})
        if ks_found:  # their p-values in one call (scipy's kstwo costs about 0.2 ms a call)
            rs = [r for r, _n, _m in ks_found]
            for r, p in zip(rs, ks_p_values(ds[rs], [n for _r, n, _m in ks_found], [m for _r, _n, m in ks_found])):
                found[r][-1]["p_value"] = float(f"{p:.3g}")
        names = feature_names(s) if found else None
        by_family: dict[str, list] = {}
        for r, fs in found.items():
            j = which[r]
            family = "input" if j < s["ni"] else "output"
            nc = int(cur[r].sum())
            by_family.setdefault(family, []).extend({"feature": names[j], **f, "rows": nc, "_since": s["ws"]}
                                                    for f in fs)
        alerts = []
        for family, findings in by_family.items():
            alerts += self._raise(s, model, version, family, findings, ts, row, rows_judged=s["n"])
        return alerts



# -- the detector against the frozen code -------------------------------------------------------
def _shifts(seed: int) -> list[dict]:
    """Predictions whose inputs and then outputs move, with an idle day in the middle (a window
    ended by the gap), and requests whose errors and output lengths move."""
    rng = random.Random(seed)
    events = predictions(rng, 1200, T0) + predictions(rng, 1500, T0 + 86400 * NS, shift=2.0)
    events += predictions(rng, 3000, T0 + 90000 * NS, step=NS, score_shift=1.5)
    t = T0
    for i in range(6000):
        t += rng.randrange(100, 300) * 1_000_000
        status = 503 if (i >= 3000 and rng.random() < 0.3) else (500 if rng.random() < 0.01 else 200)
        out = int(rng.lognormvariate(math.log(220 if i < 4500 else 60), 0.6))
        events.append(req(t, status=status, tokens_in=int(rng.lognormvariate(6, 0.8)), tokens_out=out))
    return sorted(events, key=lambda e: e["ts"])


def _pairs():
    return [(_odd_model_stream(6000, 11), {"window_rows": 200}), (_shifts(12), {}),
            (_shifts(13), {"min_effect": 100.0}), (_odd_model_stream(4000, 14), {"window_rows": 20, "chunk_rows": 7})]


@pytest.mark.parametrize("size", [1, 137, 700, 5000])
@pytest.mark.parametrize("which", range(4))
def test_the_detector_gives_the_alerts_findings_and_state_of_the_frozen_code_batch_by_batch(which, size):
    events, options = _pairs()[which]
    if size == 1:
        events = events[:2500]
    new, old = DriftDetector(options), FrozenDrift(options)
    new.trace, old.trace = [], []
    new_state, old_state = DictState(), DictState()
    alerts = 0
    for i in range(0, len(events), size):
        b = events[i:i + size]
        got, want = new.update(columnar(b), new_state), old.update(EventBatch(b), old_state)
        assert got == want
        assert orjson.dumps(new_state.data) == orjson.dumps(old_state.data)
        alerts += len(got)
    assert new.trace == old.trace
    if size > 1:
        assert alerts > 0, "the stream raised nothing: the comparison would not see a wrong finding"


# -- ADWIN --------------------------------------------------------------------------------------------
@settings(max_examples=400, derandomize=True, deadline=None)
@given(st.lists(st.floats(-5, 5, allow_nan=False).map(lambda v: round(v, 3)), min_size=1, max_size=24),
       st.sampled_from([0.002, 0.01, 0.2]), st.integers(1, 64), st.floats(0, 4), st.integers(0, 24))
def test_adwin_check_equals_the_frozen_one(points, delta, values, jump, at):
    points = [p + (jump if i >= at else 0.0) for i, p in enumerate(points)]
    assert adwin_check(points, delta, values) == frozen_adwin_check(points, delta, values)


def test_adwin_check_alarms_on_a_jump_as_the_frozen_one():
    rng = random.Random(5)
    points = [round(rng.gauss(0, 0.2), 3) for _ in range(12)] + [round(rng.gauss(2, 0.2), 3) for _ in range(12)]
    assert adwin_check(points, 0.002, 50) == frozen_adwin_check(points, 0.002, 50) == (True, 12)


# -- the windows without a finding ------------------------------------------------------------------
@st.composite
def _windows(draw):
    f = draw(st.integers(1, 4))
    w = draw(st.integers(2, 11))
    ref = np.zeros((f, w), dtype=np.int64)
    cur = np.zeros((f, w), dtype=np.int64)
    for j in range(f):
        bins = draw(st.integers(1, w))  # this feature's bins; the rest is padding
        scale = draw(st.sampled_from([1, 5, 50, 400]))
        ref[j, :bins] = draw(st.lists(st.integers(0, scale), min_size=bins, max_size=bins))
        if draw(st.booleans()):  # a window like the reference, give or take a few
            cur[j, :bins] = [max(0, v + draw(st.integers(-2, 2))) for v in ref[j, :bins].tolist()]
        else:
            cur[j, :bins] = draw(st.lists(st.integers(0, scale), min_size=bins, max_size=bins))
    judged = np.array(draw(st.lists(st.booleans(), min_size=f, max_size=f))) & (ref.sum(axis=1) >= EDGE_ROWS)
    psi_threshold = draw(st.sampled_from([0.25, 0.01, 0.05, 1.0]))
    return ref, cur, judged, psi_threshold, draw(st.sampled_from([0.1, 0.02, 0.5, 1.0]))


@settings(max_examples=600, derandomize=True, deadline=None)
@given(_windows(), st.sampled_from([EDGE_ROWS, 50]))
def test_may_drift_is_true_whenever_psi_rows_or_ks_rows_reach_a_threshold(window, min_rows):
    ref, cur, judged, psi_threshold, ks_min = window
    which = np.flatnonzero(judged & (cur.sum(axis=1) >= min_rows)).tolist()
    may = may_drift(ref, cur, judged, min_rows, psi_threshold, ks_min)
    if not which:
        assert not may
        return
    widths = [int(np.flatnonzero(ref[j] | cur[j]).max(initial=0)) + 1 for j in which]
    width = max(widths)  # what _judge reads: the widest judged feature's bins
    r = np.ascontiguousarray(ref[which, :width], dtype=float)
    c = np.ascontiguousarray(cur[which, :width], dtype=float)
    reaches = bool(((psi_rows(r, c) >= psi_threshold) | (ks_rows(r, c) >= ks_min)).any())
    assert may == reaches or (may and not reaches and _close(r, c, psi_threshold, ks_min))


def _close(r, c, psi_threshold, ks_min):
    """Within the screen's margin of a threshold (it may say True there)."""
    return bool((psi_rows(r, c) >= psi_threshold * (1 - 2e-9)).any() or (ks_rows(r, c) >= ks_min * (1 - 2e-9)).any())


def test_may_drift_tells_a_steady_window_from_a_moved_one():
    ref = np.array([[50, 50, 50, 50, 0]], dtype=np.int64)
    judged = np.array([True])
    assert not may_drift(ref, np.array([[52, 48, 50, 50, 0]], dtype=np.int64), judged, EDGE_ROWS, 0.25, 0.1)
    assert may_drift(ref, np.array([[0, 0, 100, 100, 0]], dtype=np.int64), judged, EDGE_ROWS, 0.25, 0.1)
    assert not may_drift(ref, np.array([[0, 0, 100, 100, 0]], dtype=np.int64), ~judged, EDGE_ROWS, 0.25, 0.1)
    assert not may_drift(ref, np.array([[0, 0, 5, 5, 0]], dtype=np.int64), judged, EDGE_ROWS, 0.25, 0.1)


def test_may_drift_turns_at_each_windows_own_psi_and_ks():
    # Thresholds set at a window's own largest PSI (KS out of reach), then just above it; the
    # same for KS: the screen says True at the value and False just above, on 3,000 windows.
    rng = np.random.default_rng(7)
    for _ in range(3000):
        f, w = rng.integers(1, 4), rng.integers(2, 12)
        ref = rng.integers(0, rng.choice([5, 50, 400]), size=(f, w))
        cur = np.maximum(ref + rng.integers(-3, 4, size=(f, w)) * rng.integers(0, 2, size=(f, w)), 0)
        judged = ref.sum(axis=1) >= EDGE_ROWS
        which = np.flatnonzero(judged & (cur.sum(axis=1) >= EDGE_ROWS)).tolist()
        if not which:
            continue
        r = np.ascontiguousarray(ref[which], dtype=float)
        c = np.ascontiguousarray(cur[which], dtype=float)
        top_psi, top_ks = float(psi_rows(r, c).max()), float(ks_rows(r, c).max())
        if top_psi > 0:
            assert may_drift(ref, cur, judged, EDGE_ROWS, top_psi, 1.01)
            assert not may_drift(ref, cur, judged, EDGE_ROWS, top_psi * (1 + 1e-6), 1.01)
        if top_ks > 0:
            assert may_drift(ref, cur, judged, EDGE_ROWS, 1e9, top_ks)
            assert not may_drift(ref, cur, judged, EDGE_ROWS, 1e9, top_ks * (1 + 1e-6))
