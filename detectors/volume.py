"""Model extraction by volume: a principal pulling far more answers than it ever has.

An LLM gateway log carries no inputs, so the statistics of ``extraction.queries`` cannot run
on it; what it does carry is who asked which model how often and for how many tokens. A
distillation run (a key harvesting completions to train a copy) or a scripted thief shows as
a burst of answered queries and tokens well above what that principal, or any other caller
of the model, has pulled before.

Per stream (a principal and a model; for predictions, also its source address, the key the
events are routed by) the detector counts the answered queries (status under 400; query rows
for predictions, so a batch of 50 rows is 50) and tokens (in and out) of the current minute,
and keeps the peak minute it has seen, halving every ``half_life_hours``. A minute alerts when
its count reaches ``min_queries`` (``min_tokens`` for tokens) and ``ratio`` times the
reference peak:

* the stream's own peak once it has ``min_minutes`` minutes of history (its own baseline:
  a bursty batch job's peak is its burst, so its bursts do not alert);
* before that, for a stream that first appeared once this worker had known the model for
  ``min_minutes``, the ``population_quantile`` (90%) of the peaks of the model's *other*
  callers (the population: a new key pulling four times what nine callers in ten ever
  did). A stream that was already there when the worker started waits for its own history:
  the busiest callers of a model are only ever like themselves.

Alerts: ``extraction.volume`` on the principal, with the statistic (``queries_per_minute`` or
``tokens_per_minute``), its value, the threshold, the reference it came from (``own`` or
``population``) and the model in ``evidence``. The incident stays open while bursts go on and
closes after ``gap_seconds`` without one. State per stream: a dozen numbers.
"""

from __future__ import annotations

import bisect
import functools
import math
from collections import OrderedDict
from operator import itemgetter

import numpy as np
from pydantic import Field

from ramparts.events import EventBatch

from .base import Detector, StateStore, make_alert, merge_alerts
from .jit import jit
from .kind_columns import kind_values
from .request_rows import request_rows
from .typed_columns import TypedColumns

MINUTE = 60 * 1_000_000_000
MAX_PEERS = 1024  # streams per model whose peaks the population keeps (least recently closed dropped)
HIGH_TIMES = 2.5  # a minute this many times its threshold is high severity (10x the peak at ratio 4)


class VolumeDetector(Detector):
    name = "extraction.volume"
    kinds = ("request", "prediction")
    # What update reads of an event (the worker's events topic carries no other field of its kinds).
    event_fields = ("input", "kind", "model", "principal", "src_ip", "status", "tokens_in", "tokens_out", "ts")
    description = ("bursts of answered queries and tokens per principal and model, against the principal's own "
                   "peak minute and the model's other callers")

    class Options(Detector.Options):
        min_queries: int = Field(default=120, ge=1, description="Queries in a minute below which nothing alerts.")
        min_tokens: int = Field(default=200_000, ge=1, description="Tokens in a minute below which nothing alerts.")
        ratio: float = Field(default=4.0, ge=1, description="A minute must reach this many times the reference peak.")
        min_minutes: int = Field(default=30, ge=1, description="Minutes of history before a stream is judged "
                                                              "against its own peak rather than the population's.")
        half_life_hours: float = Field(default=168.0, gt=0, description="A peak halves over this many hours (a "
                                                                        "week: a weekly job's burst stays its peak).")
        population_quantile: float = Field(default=0.9, gt=0, le=1, description="A newcomer's reference: this "
                                                                                "quantile of the other callers' peaks.")
        gap_seconds: float = Field(default=3600.0, gt=0, description="An incident closes after this long "
                                                                     "without a burst.")

    def __init__(self, options=None):
        super().__init__(options)
        # model -> stream key -> (query peak, token peak), the population of callers
        self.peaks: dict[str, OrderedDict[str, tuple[float, float]]] = {}
        self.first_minute: dict[str, int] = {}  # model -> the first minute this worker saw it
        self._sorted: dict[str, tuple[list[float], list[float]]] = {}  # model -> its peaks, sorted (until one changes)
        _count_kernel()

    @staticmethod
    def _fresh(ts: int) -> dict:
        return {"m": ts // MINUTE, "q": 0, "t": 0, "pk": 0.0, "tp": 0.0, "pm": ts // MINUTE, "f": ts // MINUTE,
                "inc": None}

    def update(self, batch: EventBatch, state: StateStore) -> list[dict]:
        counted = self._columns(batch)
        if counted is None:
            return self._update_events(batch, state)
        return self._update_columns(batch, state, *counted)

    # -- a batch as columns, counted in compiled code ---------------------------------------------
    def _columns(self, batch: EventBatch):
        """The batch's answered queries as arrays in batch order (stream code per event, -1 for
        one not counted; time; queries; tokens) with the streams' keys, idents and models; ``None``
        when a value is of a type the columns do not hold exactly (then :meth:`_update_events`)."""
        n = len(batch)
        req_idx = batch.indices_where("kind", "request")
        pred_idx = batch.indices_where("kind", "prediction")
        name = self.name
        keys: dict[tuple, int] = {}  # ident -> stream code
        stream_keys: list[str] = []
        stream_models: list[str] = []

        def new_stream(ident: tuple) -> int:
            """A stream code for ``ident`` not seen in this batch: (principal, model) of requests,
            (principal, model, source) of predictions."""
            code = keys[ident] = len(stream_keys)
            if len(ident) == 2:
                stream_keys.append(f"{name}/r|{ident[0]}|{ident[1]}")
            else:
                stream_keys.append(f"{name}/p|{ident[2]}|{ident[0]}|{ident[1]}")
            stream_models.append(ident[1])
            return code

        codes = np.full(n, -1, dtype=np.int64)
        times = np.zeros(n, dtype=np.int64)
        queries = np.zeros(n, dtype=np.int64)
        tokens = np.zeros(n, dtype=np.int64)
        if req_idx:
            rr = request_rows(batch)
            if rr is None or not rr.plain_status:
                return None
            # The times' and token counts' types and arrays as anomaly.model and drift.model read them
            # (TypedColumns: made once per batch for the three).
            typed = TypedColumns(batch, _REQUEST)
            if not (_INTS.issuperset(typed.types("ts", _INTS))
                    and _INTS_OR_NONE.issuperset(typed.types("tokens_in", _INTS_OR_NONE))
                    and _INTS_OR_NONE.issuperset(typed.types("tokens_out", _INTS_OR_NONE))):
                return None
            # A stream code per distinct (principal, status, source, model): -1 for refused or
            # failed requests (status 400 or over, or none) and requests of no principal.
            code_at = np.full(len(rr.index), -1, dtype=np.int64)
            for (principal, status, _, model), at in rr.distinct.items():
                if principal is None or status is None or status >= 400:
                    continue
                ident = (principal, model or "-")
                code = keys.get(ident)
                if code is None:
                    code = new_stream(ident)
                code_at[at] = code
            # The times as int64 and the token counts (ints or None: checked above) as floats (None
            # is NaN); None when a time is beyond 64 bits or a count beyond a float's range. fmax
            # drops NaN and every count under 0 (what the event loop adds: t > 0 only), into new
            # arrays (the shared ones are not changed). Exact: a count over _MAX_TOKENS (2^40) sends
            # the batch to the event loop.
            ts, t_in, t_out = typed.ints("ts"), typed.floats("tokens_in"), typed.floats("tokens_out")
            if ts is None or t_in is None or t_out is None:
                return None
            t_in, t_out = np.fmax(t_in, 0.0), np.fmax(t_out, 0.0)
            if t_in.size and max(float(t_in.max()), float(t_out.max())) > _MAX_TOKENS:
                return None
            at = np.asarray(rr.index, dtype=np.int64)
            codes[at] = code_at[rr.first]
            times[at] = ts
            queries[at] = 1
            tokens[at] = (t_in + t_out).astype(np.int64)
        # A tenth of the events: their fields read from the predictions' parts only (kind_values,
        # shared with extraction.queries), not a field of every event.
        if not pred_idx:
            return codes, times, queries, tokens, stream_keys, stream_models
        p_ts, p_principal, p_model, p_src, p_input = (kind_values(batch, ("prediction",), f) for f in _PREDICTION_READ)
        if _INTS.issuperset(set(map(type, p_ts))) and None not in p_principal:
            # Every prediction counts (the loop below skips those without an int time or a
            # principal): one hash per prediction of its (principal, model, source) as they are, a
            # stream code per distinct one, and the arrays filled in C.
            m = len(pred_idx)
            raw_first: dict[tuple, int] = {}
            try:
                first = np.fromiter(map(raw_first.setdefault, zip(p_principal, p_model, p_src), range(m)),
                                    dtype=np.int64, count=m)
                p_times = np.fromiter(p_ts, dtype=np.int64, count=m)
            except TypeError:  # a list or an object for a principal, model or source: the event loop's
                return None
            except OverflowError:  # a time beyond 64 bits
                return None
            code_at = np.empty(m, dtype=np.int64)
            for (principal, model, src), at in raw_first.items():
                ident = (principal, model or "-", src or "-")
                code = keys.get(ident)
                if code is None:
                    code = new_stream(ident)
                code_at[at] = code
            at = np.asarray(pred_idx, dtype=np.int64)
            codes[at] = code_at[first]
            times[at] = p_times
            queries[at] = _query_counts(p_input)
            return codes, times, queries, tokens, stream_keys, stream_models
        for i, t, principal, model, src, inp in zip(pred_idx, p_ts, p_principal, p_model, p_src, p_input):
            if type(t) is not int or principal is None:
                continue
            if not -(1 << 63) <= t < 1 << 63:
                return None
            ident = (principal, model or "-", src or "-")
            try:
                code = keys.get(ident)
            except TypeError:  # a list or an object for a principal, model or source: the event loop's
                return None
            if code is None:
                code = new_stream(ident)
            codes[i], times[i] = code, t
            queries[i] = len(inp) if type(inp) is list and inp and type(inp[0]) is list else 1
        return codes, times, queries, tokens, stream_keys, stream_models

    def _update_columns(self, batch: EventBatch, state: StateStore, codes, times, queries, tokens,
                        stream_keys: list[str], stream_models: list[str]) -> list[dict]:
        o = self.options
        n_streams = len(stream_keys)
        if not n_streams:
            return []
        # The streams in the order of their first event (the order their states are written in).
        first_at = np.full(n_streams, len(codes), dtype=np.int64)
        counted = np.flatnonzero(codes >= 0)
        np.minimum.at(first_at, codes[counted], counted)
        models = list(dict.fromkeys(stream_models))
        model_code = {m: i for i, m in enumerate(models)}
        model_of = np.array([model_code[m] for m in stream_models], dtype=np.int64)
        fm = np.array([self.first_minute.get(m, 0) for m in models], dtype=np.int64)
        fm_set = np.array([m in self.first_minute for m in models], dtype=np.bool_)
        states, incs = [], []
        # Each stream's numbers gathered as rows, then made arrays at once (m, q, t, pm, f, the open
        # incident's last; pk, tp), rather than seven numpy item writes per stream.
        rows_i: list[tuple] = []
        rows_f: list[tuple] = []
        n = len(codes)
        first_l = first_at.tolist()
        for c, key in enumerate(stream_keys):
            if first_l[c] == n:  # every request of it refused: not a stream of this batch
                states.append(None)
                incs.append(None)
                rows_i.append(_NO_INTS)
                rows_f.append(_NO_FLOATS)
                continue
            s = state.get(key)
            s = dict(s) if s is not None else self._fresh(int(times[first_l[c]]))
            states.append(s)
            inc = s["inc"]
            incs.append(inc)
            if not (abs(s["q"]) < _MAX_COUNT and abs(s["t"]) < _MAX_COUNT):
                # a count no int64 can hold (tokens beyond 64 bits counted by the event loop):
                # nothing is changed yet, the whole batch goes event by event
                return self._update_events(batch, state)
            rows_i.append((s["m"], s["q"], s["t"], s["pm"], s["f"], 0 if inc is None else inc["last"]))
            rows_f.append((s["pk"], s["tp"]))
        ints = np.ascontiguousarray(np.array(rows_i, dtype=np.int64).T)
        floats = np.ascontiguousarray(np.array(rows_f, dtype=np.float64).T)
        inc_on = np.array([inc is not None for inc in incs], dtype=np.bool_)
        closes_c = np.empty(len(counted), dtype=np.int64)
        closes_pk = np.empty(len(counted), dtype=np.float64)
        closes_tp = np.empty(len(counted), dtype=np.float64)
        n_closes = np.zeros(1, dtype=np.int64)
        applied = 0
        out: list[dict] = []
        # ``ts - last > gap_seconds * 1e9`` for integer ns, as integers (exact at any distance)
        gap = min(math.floor(o.gap_seconds * 1e9), (1 << 63) - 1)
        count = _count_kernel()
        i = 0
        while True:
            i = count(i, codes, times, queries, tokens, model_of, ints, floats, inc_on, fm, fm_set,
                      closes_c, closes_pk, closes_tp, n_closes, gap, o.min_queries, o.min_tokens, o.min_minutes,
                      o.ratio, o.half_life_hours * 60.0)
            applied = self._apply_closes(stream_keys, stream_models, closes_c, closes_pk, closes_tp, applied,
                                         int(n_closes[0]))
            if i < 0:
                break
            # An event to judge in Python: a minute over a floor with a reference that may be reached.
            c = int(codes[i])
            model = stream_models[c]
            self.first_minute.setdefault(model, int(fm[model_of[c]]))
            s = {"m": int(ints[0, c]), "q": int(ints[1, c]), "t": int(ints[2, c]), "pk": float(floats[0, c]),
                 "tp": float(floats[1, c]), "pm": int(ints[3, c]), "f": int(ints[4, c]),
                 "inc": incs[c] if inc_on[c] else None}
            alert = self._judge(s, stream_keys[c], model, int(times[i]), int(queries[i]),
                                batch.values("principal")[i])
            incs[c] = inc = s["inc"]
            if inc is not None:
                inc_on[c], ints[5, c] = True, inc["last"]
            if alert is not None:
                out.append(alert)
            i += 1
        for m, c in model_code.items():
            if fm_set[c]:
                self.first_minute.setdefault(m, int(fm[c]))
        ints_l, floats_l, on_l = ints.tolist(), floats.tolist(), inc_on.tolist()
        for c in np.argsort(first_at, kind="stable").tolist():
            s = states[c]
            if s is None:
                continue
            s["m"], s["q"], s["t"] = ints_l[0][c], ints_l[1][c], ints_l[2][c]
            s["pm"], s["f"] = ints_l[3][c], ints_l[4][c]
            s["pk"], s["tp"] = floats_l[0][c], floats_l[1][c]
            s["inc"] = incs[c] if on_l[c] else None
            state.set(stream_keys[c], s)
        return merge_alerts(out)

    def _apply_closes(self, stream_keys, stream_models, closes_c, closes_pk, closes_tp, start: int, end: int) -> int:
        """The minutes the compiled loop closed (from ``start`` to ``end``), into the population."""
        for k in range(start, end):
            c = int(closes_c[k])
            key, model = stream_keys[c], stream_models[c]
            peers = self.peaks.setdefault(model, OrderedDict())
            peers[key] = (float(closes_pk[k]), float(closes_tp[k]))
            self._sorted.pop(model, None)
            peers.move_to_end(key)
            if len(peers) > MAX_PEERS:
                peers.popitem(last=False)
        return end

    # -- event by event (a batch the columns cannot hold) -----------------------------------------
    def _update_events(self, batch: EventBatch, state: StateStore) -> list[dict]:
        out: list[dict] = []
        cache: dict[str, dict] = {}
        name = self.name
        count = self._count
        # Most events only add to a stream's minute: the key is built once per stream and
        # (principal, model[, source]) of the batch, and the token sum without a generator.
        keys: dict[tuple, str] = {}
        # The fields read, as the batch's values (no event's dict is made).
        for kind, status, ts, principal, model, t_in, t_out, inp, src in zip(*map(batch.values, _EVENT_FIELDS)):
            if kind == "request":
                if type(status) is not int or status >= 400:
                    continue
            elif kind != "prediction":
                continue
            if type(ts) is not int or principal is None:
                continue
            principal, model = _hashable(principal), _hashable(model or "-")
            if kind == "request":
                queries = 1
                tokens = 0
                if type(t_in) is int and t_in > 0:
                    tokens += t_in
                if type(t_out) is int and t_out > 0:
                    tokens += t_out
                ident = (principal, model)
                key = keys.get(ident)
                if key is None:
                    key = keys[ident] = f"{name}/r|{principal}|{model}"
            else:
                queries = len(inp) if type(inp) is list and inp and type(inp[0]) is list else 1
                tokens = 0
                ident = (principal, model, _hashable(src or "-"))
                key = keys.get(ident)
                if key is None:
                    key = keys[ident] = f"{name}/p|{ident[2]}|{principal}|{model}"
            s = cache.get(key)
            if s is None:
                s = state.get(key)
                s = dict(s) if s is not None else self._fresh(ts)
                cache[key] = s
            alert = count(s, key, model, ts, queries, tokens, principal)
            if alert is not None:
                out.append(alert)
        for key, s in cache.items():
            state.set(key, s)
        return merge_alerts(out)

    def _sorted_peaks(self, model: str) -> tuple[list[float], list[float]]:
        got = self._sorted.get(model)
        if got is None:
            peers = self.peaks.get(model, {}).values()
            got = self._sorted[model] = (sorted(v[0] for v in peers), sorted(v[1] for v in peers))
        return got

    # -- one stream -------------------------------------------------------------------------------
    def _decay(self, peak: float, minutes: int) -> float:
        return peak * 0.5 ** (minutes / (self.options.half_life_hours * 60.0))

    def _count(self, s: dict, key: str, model: str, ts: int, queries: int, tokens: int, principal: str) -> dict | None:
        o = self.options
        minute = ts // MINUTE
        if minute > s["m"]:  # the minute closes: its counts become history
            pk, tp = self._decay(s["pk"], minute - s["pm"]), self._decay(s["tp"], minute - s["pm"])
            s["pk"], s["tp"], s["pm"] = max(pk, float(s["q"])), max(tp, float(s["t"])), minute  # decayed to now
            s["m"], s["q"], s["t"] = minute, 0, 0
            peers = self.peaks.setdefault(model, OrderedDict())
            peers[key] = (s["pk"], s["tp"])
            self._sorted.pop(model, None)
            peers.move_to_end(key)
            if len(peers) > MAX_PEERS:
                peers.popitem(last=False)
        elif minute < s["m"]:
            return None  # late (out of order by a minute or more): counted nowhere, judged never
        s["q"] += queries
        s["t"] += tokens
        inc = s["inc"]
        if inc is not None and ts - inc["last"] > o.gap_seconds * 1e9:
            inc = s["inc"] = None
        self.first_minute.setdefault(model, minute)
        if s["q"] < o.min_queries and s["t"] < o.min_tokens:
            return None  # under both floors: no threshold (at least its floor) can be reached
        return self._judge(s, key, model, ts, queries, principal)

    def _judge(self, s: dict, key: str, model: str, ts: int, queries: int, principal: str) -> dict | None:
        """The stream's minute (counts over a floor) against its reference: an alert, or None."""
        o = self.options
        minute = ts // MINUTE
        inc = s["inc"]
        warm = self.first_minute[model] + o.min_minutes
        if minute - s["f"] >= o.min_minutes:
            ref_q, ref_t, source = s["pk"], s["tp"], "own"
        elif s["f"] >= warm:  # a newcomer to a model whose callers this worker knows
            own_peaks = self.peaks.get(model, {}).get(key, (None, None))
            ref_q, ref_t = (_quantile(values, own, o.population_quantile)
                            for values, own in zip(self._sorted_peaks(model), own_peaks))
            source = "population"
        else:
            return None  # there when this worker started: judged once it has its own history
        findings = []
        for statistic, value, floor, ref in (("queries_per_minute", s["q"], o.min_queries, ref_q),
                                             ("tokens_per_minute", s["t"], o.min_tokens, ref_t)):
            threshold = max(float(floor), o.ratio * ref)
            if value >= threshold:
                findings.append({"statistic": statistic, "value": value, "threshold": round(threshold, 1),
                                 "reference_peak": round(ref, 1), "reference": source})
        if not findings:
            return None
        best = max(findings, key=lambda f: f["value"] / f["threshold"])
        severity = "high" if best["value"] >= HIGH_TIMES * best["threshold"] else "medium"
        if inc is None:
            inc = s["inc"] = {"first": ts, "last": ts, "sev": severity, "n": 0}
        elif severity == "high":
            inc["sev"] = "high"
        inc["last"] = ts
        inc["n"] += queries
        evidence = {**{k: best[k] for k in ("statistic", "value", "threshold", "reference", "reference_peak")},
                    "model": model, "queries_this_minute": s["q"], "tokens_this_minute": s["t"],
                    "minutes_of_history": minute - s["f"], "statistics": findings}
        unit = "queries" if best["statistic"] == "queries_per_minute" else "tokens"
        summary = (f"Possible model extraction of {model} by principal {principal}: {best['value']:,} {unit} in a "
                   f"minute (threshold {best['threshold']:,.0f}, {best['reference']} peak "
                   f"{best['reference_peak']:,.0f})")
        return make_alert(self.name, inc["sev"], ("principal", principal), score=best["value"] / best["threshold"],
                          summary=summary, evidence=evidence, first_ts=inc["first"], last_ts=ts, count=inc["n"])


def _quantile(values: list[float], own: float | None, q: float) -> float:
    """The ``q`` quantile (nearest rank) of sorted ``values`` less one ``own`` value; 0 for none."""
    if own is not None:
        values = values.copy()
        values.pop(bisect.bisect_left(values, own))
    if not values:
        return 0.0
    return values[min(len(values) - 1, max(0, math.ceil(q * len(values)) - 1))]


def _hashable(v):
    """``v``, or its text when it cannot be a dict key (a list or an object for a principal, model
    or source: bad input, counted under the text its state key shows)."""
    try:
        hash(v)
    except TypeError:
        return str(v)
    return v


_PREDICTION_READ = ("ts", "principal", "model", "src_ip", "input")
_REQUEST = ("request",)
_LIST = frozenset((list,))


def _query_counts(inputs: list) -> list[int]:
    """Per prediction its query rows, as the event loop counts them: ``len(inp)`` for an input that
    is a non-empty list of lists (rows), else 1; by whole columns when every input is a list of rows."""
    if all(inputs) and _LIST.issuperset(set(map(type, inputs))) \
            and _LIST.issuperset(set(map(type, map(_first, inputs)))):
        return list(map(len, inputs))
    return [len(inp) if type(inp) is list and inp and type(inp[0]) is list else 1 for inp in inputs]


_first = itemgetter(0)
_EVENT_FIELDS = ("kind", "status", "ts", "principal", "model", "tokens_in", "tokens_out", "input", "src_ip")
_INTS = frozenset((int,))
_INTS_OR_NONE = frozenset((int, type(None)))  # not bool: True is 1 to numpy, not a count or a status
_MAX_TOKENS = 1 << 40  # per request: a minute's sum stays far inside int64
_NO_INTS, _NO_FLOATS = (0,) * 6, (0.0, 0.0)  # a stream not of this batch
_MAX_COUNT = 1 << 61  # a minute's count loaded from state, with room for a batch's (8,192 x _MAX_TOKENS)
@functools.cache
def _count_kernel():
    """:func:`_count_minutes`, loaded from numba's cache (else compiled) by a first call.

    The detector calls this when it is built, as ``extraction.queries`` does (detectors/extraction.py
    ``_observe``): a worker loads it before it freezes start-up's objects out of the collector's walks."""
    kernel = jit(_count_minutes)
    i64, f64, flag = np.zeros(0, dtype=np.int64), np.zeros(0), np.zeros(0, dtype=np.bool_)
    kernel(0, i64, i64, i64, i64, i64, np.zeros((6, 0), dtype=np.int64), np.zeros((2, 0)), flag, i64, flag,
           i64, f64, f64, np.zeros(1, dtype=np.int64), 1, 1, 1, 1, 1.0, 1.0)
    return kernel


def _count_minutes(i, codes, times, queries, tokens, model_of, ints, floats, inc_on, fm, fm_set,
                   closes_c, closes_pk, closes_tp, n_closes, gap, min_queries, min_tokens, min_minutes, ratio,
                   half_life_minutes):
    """:meth:`VolumeDetector._count` over the events from ``i`` on, as arrays (``ints``: minute,
    queries, tokens, peak minute, first minute, open incident's last time; ``floats``: the two
    peaks; per stream). Returns the index of the first event that :meth:`VolumeDetector._judge`
    must see (a minute over a floor whose reference may be reached), or -1 at the end; the
    minutes it closes are appended to ``closes_*`` for the population."""
    n = codes.shape[0]
    while i < n:
        c = codes[i]
        if c < 0:
            i += 1
            continue
        ts = times[i]
        minute = ts // 60_000_000_000
        if minute > ints[0, c]:  # the minute closes: its counts become history
            d = minute - ints[3, c]
            pk = floats[0, c] * 0.5 ** (d / half_life_minutes)
            tp = floats[1, c] * 0.5 ** (d / half_life_minutes)
            q = float(ints[1, c])
            t = float(ints[2, c])
            floats[0, c] = q if q > pk else pk  # max(pk, q), as Python's max picks
            floats[1, c] = t if t > tp else tp
            ints[3, c] = minute
            ints[0, c] = minute
            ints[1, c] = 0
            ints[2, c] = 0
            k = n_closes[0]
            closes_c[k] = c
            closes_pk[k] = floats[0, c]
            closes_tp[k] = floats[1, c]
            n_closes[0] = k + 1
        elif minute < ints[0, c]:
            i += 1
            continue  # late: counted nowhere, judged never
        ints[1, c] += queries[i]
        ints[2, c] += tokens[i]
        if inc_on[c] and ts - ints[5, c] > gap:
            inc_on[c] = False
        mc = model_of[c]
        if not fm_set[mc]:
            fm_set[mc] = True
            fm[mc] = minute
        if ints[1, c] < min_queries and ints[2, c] < min_tokens:
            i += 1
            continue
        if minute - ints[4, c] >= min_minutes:
            thq = max(float(min_queries), ratio * floats[0, c])
            tht = max(float(min_tokens), ratio * floats[1, c])
            if ints[1, c] >= thq or ints[2, c] >= tht:
                return i
        elif ints[4, c] >= fm[mc] + min_minutes:
            return i  # a newcomer: against the population's peaks, in Python
        i += 1
    return -1
