"""drift.model's per-batch set-up (tenth session) against what it replaced: the output streams'
chunk closes in one compiled call for every stream (against b41d500's per-stream calls of
chunk_closes, a frozen copy below), and the phase-2 arrays kept between batches (against the
arrays made afresh, and a run whose cache is emptied before every batch)."""

import copy
import random

import numpy as np
import orjson

from ramparts.detectors.base import DictState
from ramparts.detectors.drift import MINUTE, DriftDetector, _Windows, chunk_closes
from ramparts.events import EventBatch


def _old_stream_closes(self, s, ts, svq, i0):  # b41d500's DriftDetector._stream_closes
    out = []
    for k, st in enumerate(s["st"]):
        q = svq[i0:, k]
        ok = np.flatnonzero(np.isfinite(q)) if st is not None else ()
        if len(ok) == 0:
            out.append(None)
            continue
        chunk = np.asarray(st[2], dtype=np.int64)
        at, closed = chunk_closes(ts[i0:][ok] // MINUTE - s["t0"] // MINUTE, q[ok].astype(np.int64), chunk,
                                  self.options.chunk_rows)
        out.append([(ok[at] + i0).tolist(), closed.tolist(), chunk.tolist(), 0])
    return out


def test_stream_closes_equal_the_per_stream_walks():
    rng = random.Random(1124)
    d = DriftDetector({"chunk_rows": 3})
    closes = 0
    for _ in range(400):
        n, f = rng.randint(1, 40), rng.randint(1, 3)
        t0 = rng.randint(-5, 5) * MINUTE + rng.randint(0, MINUTE)
        ts = np.array(sorted(t0 + rng.randint(0, 8 * MINUTE) for _ in range(n)), dtype=np.int64)
        svq = np.array([[rng.choice([np.nan, np.inf, -3.0, 0.0, 7.0, 12345.0, float(rng.randint(-99, 99))])
                         for _ in range(f)] for _ in range(n)])
        streams = [None if rng.random() < 0.2 else
                   [0.5, 1.0, [rng.randint(0, 5), rng.randint(-50, 50), rng.randint(0, 3), rng.randint(0, 4)],
                    [], [], 0, 0, None, 0] for _ in range(f)]
        s = {"t0": t0, "st": streams}
        i0 = rng.randint(0, n - 1)
        before = copy.deepcopy(s)
        old = _old_stream_closes(d, s, ts, svq, i0)
        new = d._stream_closes(s, ts, svq, i0)
        assert new == old
        assert s == before  # the stored chunks are not changed
        closes += sum(len(c[0]) for c in new if c is not None)
    assert closes > 300


def test_reference_arrays_kept_between_batches_equal_fresh_ones():
    rng = random.Random(7)
    d = DriftDetector({"window_rows": 40})
    fresh = DriftDetector({"window_rows": 40})
    state, state_fresh = DictState(), DictState()
    kept = 0
    for b in range(60):
        events = [{"kind": "request", "ts": (b * 50 + i) * 10**9, "model": rng.choice(["m", "n"]),
                   "status": rng.choice([200, 200, 500, 404]), "tokens_in": rng.randint(1, 50 + b * 5),
                   "tokens_out": rng.randint(1, 400)} for i in range(rng.randint(1, 50))]
        fresh._references.clear()  # made afresh for every batch, as before
        a = d.update(EventBatch(events), state)
        f = fresh.update(EventBatch(events), state_fresh)
        assert a == f and state.data == state_fresh.data
        for (kind, model, version), (e, h, edges, reference) in d._references.items():
            s = state.get(d._key(kind, model, version))
            assert e == s["e"] and h == s["h"]
            want_edges = d._edges(s)
            want = _Windows.reference(s, want_edges)
            assert all(np.array_equal(x, y) for x, y in zip(edges, want_edges))
            assert reference[0] == want[0] and all(np.array_equal(x, y) for x, y in zip(reference[1:], want[1:]))
            kept += 1
    assert kept > 50


class _Watching(DictState):
    """A state store that checks no stored value is changed in place afterwards: each value's JSON
    when it was set, compared again with what the value says now."""

    def __init__(self):
        super().__init__()
        self.written: list[tuple[object, bytes]] = []

    def set(self, key, value):
        super().set(key, value)
        self.written.append((value, orjson.dumps(value)))

    def check(self) -> int:
        for value, was in self.written:
            assert orjson.dumps(value) == was
        return len(self.written)


def _drift_batches(seed: int):
    rng = random.Random(seed)
    t = 0
    for b in range(80):
        events = []
        shift = 3.0 if b > 40 else 0.0  # the inputs, outputs and tokens move: windows and streams alert
        for _ in range(rng.randint(1, 60)):
            t += rng.randint(1, 40) * 10**9
            if rng.random() < 0.5:
                events.append({"kind": "request", "ts": t, "model": rng.choice(["m", "n", "o"]),
                               "status": rng.choice([200, 200, 200, 500, 404, 429]),
                               "tokens_in": rng.randint(1, 50) + int(shift * 40), "tokens_out": rng.randint(1, 400)})
            else:
                rows = [[rng.gauss(shift, 1.0) for _ in range(3)] for _ in range(rng.randint(1, 4))]
                events.append({"kind": "prediction", "ts": t, "model": rng.choice(["p", "q"]),
                               "model_version": rng.choice(["v1", "v2", None]), "input": rows,
                               "output": [min(max(rng.gauss(0.3 + shift / 5, 0.1), 0.0), 1.0) for _ in rows]})
        yield EventBatch(events)


def test_a_version_in_phase_2_is_changed_on_a_copy_as_the_round_trip_did(monkeypatch):
    import ramparts.detectors.drift as drift

    options = {"window_rows": 20, "chunk_rows": 3, "gap_seconds": 600.0}
    d, ref = DriftDetector(options), DriftDetector(options)
    state, state_ref = _Watching(), DictState()
    round_trip = lambda s: orjson.loads(orjson.dumps(s))  # noqa: E731 - every copy before, the frozen reference
    phase2 = alerts = 0
    for batch in _drift_batches(31):
        phase2 += sum(1 for v in state.data.values() if v["p"] == 2)
        a = d.update(batch, state)
        with monkeypatch.context() as m:
            m.setattr(drift, "_private", round_trip)
            r = ref.update(batch, state_ref)
        assert orjson.dumps(a) == orjson.dumps(r)
        assert orjson.dumps(state.data) == orjson.dumps(state_ref.data)
        state.check()  # no stored value changed in place, the versions in phase 2 included
        alerts += len(a)
    assert phase2 > 200 and alerts > 5
