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
import math
from collections import OrderedDict

from pydantic import Field

from ramparts.events import EventBatch

from .base import Detector, StateStore, make_alert, merge_alerts

MINUTE = 60 * 1_000_000_000
MAX_PEERS = 1024  # streams per model whose peaks the population keeps (least recently closed dropped)
HIGH_TIMES = 2.5  # a minute this many times its threshold is high severity (10x the peak at ratio 4)


class VolumeDetector(Detector):
    name = "extraction.volume"
    kinds = ("request", "prediction")
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

    @staticmethod
    def _fresh(ts: int) -> dict:
        return {"m": ts // MINUTE, "q": 0, "t": 0, "pk": 0.0, "tp": 0.0, "pm": ts // MINUTE, "f": ts // MINUTE,
                "inc": None}

    def update(self, batch: EventBatch, state: StateStore) -> list[dict]:
        out: list[dict] = []
        cache: dict[str, dict] = {}
        name = self.name
        count = self._count
        # Most events only add to a stream's minute: the key is built once per stream and
        # (principal, model[, source]) of the batch, and the token sum without a generator.
        keys: dict[tuple, str] = {}
        for e in batch.events:
            get = e.get
            kind = get("kind")
            if kind == "request":
                status = get("status")
                if type(status) is not int or status >= 400:
                    continue
            elif kind != "prediction":
                continue
            ts = get("ts")
            principal = get("principal")
            if type(ts) is not int or principal is None:
                continue
            model = get("model") or "-"
            if kind == "request":
                queries = 1
                tokens = 0
                n = get("tokens_in")
                if type(n) is int and n > 0:
                    tokens += n
                n = get("tokens_out")
                if type(n) is int and n > 0:
                    tokens += n
                ident = (principal, model)
                key = keys.get(ident)
                if key is None:
                    key = keys[ident] = f"{name}/r|{principal}|{model}"
            else:
                inp = get("input")
                queries = len(inp) if type(inp) is list and inp and type(inp[0]) is list else 1
                tokens = 0
                ident = (principal, model, get("src_ip") or "-")
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
        warm = self.first_minute.setdefault(model, minute) + o.min_minutes
        if s["q"] < o.min_queries and s["t"] < o.min_tokens:
            return None  # under both floors: no threshold (at least its floor) can be reached
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
