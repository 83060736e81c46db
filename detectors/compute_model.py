"""``gpu.anomaly``: a scikit-learn model of normal per-GPU telemetry windows.

Each GPU's samples are cut into windows of ``window_samples`` consecutive samples (tumbling:
sample counts, not clock time, so the cut does not depend on batches); a window is described
by :data:`FEATURES` (utilisation level and spread, power variation, tensor activity, PCIe
traffic, memory share and memory traffic: the same columns the miner signature reads, see
``compute.sample_row``; a column the source does not measure is -1). An IsolationForest
(Liu, Ting and Zhou 2008) trained on windows of normal history scores every new window; a
window scoring below the threshold set at training (the ``quantile`` of the training scores,
less a margin) alerts, and so does a window with a feature outside the range of the training
windows by more than a tenth of that range (:func:`out_of_range`: a forest's splits lie inside
the training range, so it scores what lies beyond no lower than the training extremes). The windows of one batch, over all GPUs, are scored in one call.

The model is trained from telemetry files by ``ramparts train compute --from FILES --out
MODEL`` and loaded through the detector's options (``model_path`` and ``model_sha256``).
Without a model the detector is off, and says so in ``note``.

Why joblib with a pinned hash: scikit-learn estimators are saved by pickling (joblib), and
loading a pickle runs code from the file. skops' safe format is not installed here; so the
file is loaded only when its SHA-256 matches the ``model_sha256`` the configuration pins
(``train`` prints it): a model file swapped or altered on disk is refused, not executed. The
configuration is then what must be protected, as for any other code the worker runs.
"""

from __future__ import annotations

import hashlib
import logging
import math
from pathlib import Path

import numpy as np
from pydantic import Field

from ramparts.errors import ConfigError
from ramparts.events import EventBatch

from .base import Detector, StateStore, make_alert
from .compute import _float, _route, _seen_before, _text, pod_of, sample_row
from .incident import events_of_kinds

log = logging.getLogger("ramparts.detectors")
NS = 1_000_000_000
FEATURES = ("util_mean", "util_std", "power_cv", "tensor_mean", "pcie_log10", "mem_fraction", "mem_copy_mean")
FORMAT = "ramparts-gpu-window-model/1"
RANGE_SHARE = 0.1
STEADY_UTIL_STD = 10.0


def window_features(rows: np.ndarray) -> np.ndarray:
    """Features of windows: ``rows`` is (windows, window_samples, columns of sample_row)."""
    with np.errstate(invalid="ignore", divide="ignore"):
        def col(i, f):
            x = f(rows[:, :, i], axis=1)
            return np.where(np.isnan(x), -1.0, x)

        util_mean = col(0, np.nanmean)
        util_std = col(0, np.nanstd)
        power_cv = np.nanstd(rows[:, :, 1], axis=1) / np.nanmean(rows[:, :, 1], axis=1)
        power_cv = np.where(np.isfinite(power_cv), power_cv, -1.0)
        tensor = col(2, np.nanmean)
        pcie = np.nanmean(rows[:, :, 3], axis=1)
        pcie = np.where(np.isnan(pcie), -1.0, np.log10(1.0 + np.maximum(pcie, 0)))
        mem = col(4, np.nanmean)
        copy = col(5, np.nanmean)
    return np.column_stack([util_mean, util_std, power_cv, tensor, pcie, mem, copy])


def windows_of(events: list[dict], window: int) -> np.ndarray:
    """Tumbling windows of every GPU's samples (with a utilisation), for training."""
    per: dict[tuple[str, str], list[list[float]]] = {}
    for e in events:
        if e.get("kind") == "gpu" and _float(e.get("util_pct")) is not None and _text(e.get("gpu_uuid")):
            per.setdefault((_route(e), e["gpu_uuid"]), []).append(sample_row(e))
    out = []
    for rows in per.values():
        n = len(rows) // window * window
        if n:
            out.append(np.asarray(rows[:n], dtype=np.float64).reshape(-1, window, len(rows[0])))
    if not out:
        return np.zeros((0, len(FEATURES)))
    return window_features(np.concatenate(out))


def train(events: list[dict], window: int = 8, trees: int = 100, seed: int = 0, quantile: float = 0.001,
          margin: float = 0.02) -> dict:
    """An IsolationForest over the windows of ``events``; the threshold from its own scores."""
    from sklearn.ensemble import IsolationForest

    X = windows_of(events, window)
    if len(X) < 20:
        raise ConfigError(f"{len(X)} GPU windows of {window} samples in the training data; at least 20 are "
                          "needed (give more history, or a smaller --window-samples)")
    model = IsolationForest(n_estimators=trees, random_state=seed, contamination="auto").fit(X)
    scores = model.score_samples(X)
    measured = np.where(X == -1.0, np.nan, X)
    with np.errstate(invalid="ignore"):
        lo, hi = np.nanmin(measured, axis=0), np.nanmax(measured, axis=0)
    return {"format": FORMAT, "model": model, "features": FEATURES, "window_samples": window,
            "lo": [None if v != v else float(v) for v in lo], "hi": [None if v != v else float(v) for v in hi],
            "threshold": float(np.quantile(scores, quantile) - margin), "windows": int(len(X)),
            "train_score_min": float(scores.min()), "train_score_median": float(np.median(scores))}


def save(bundle: dict, path: str | Path) -> str:
    """Write the model; returns its SHA-256 (what ``model_sha256`` must say)."""
    import joblib

    joblib.dump(bundle, path)
    return file_sha256(path)


def file_sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def load(path: str | Path, sha256: str | None) -> dict:
    """Load a model written by :func:`save`, only if its hash is the pinned one."""
    import joblib

    if not sha256:
        raise ConfigError(f"detectors.gpu.anomaly.model_sha256 is required with model_path {path} "
                          "(`ramparts train compute` prints it): the file is loaded only when its hash matches")
    try:
        actual = file_sha256(path)
    except OSError as e:
        raise ConfigError(f"detectors.gpu.anomaly.model_path: cannot read {path}: {e.strerror}") from None
    if actual != sha256.lower():
        raise ConfigError(f"detectors.gpu.anomaly: {path} has SHA-256 {actual}, not the pinned {sha256}; "
                          "refusing to load it (retrain, or pin the new hash if you trust the file)")
    bundle = joblib.load(path)
    if not isinstance(bundle, dict) or bundle.get("format") != FORMAT:
        raise ConfigError(f"detectors.gpu.anomaly: {path} is not a model written by `ramparts train compute`")
    return bundle


def out_of_range(bundle: dict, X: np.ndarray, share: float = RANGE_SHARE) -> list[list[str]]:
    """Per window, the features further than ``share`` of their trained span outside it.

    An isolation forest cannot isolate a point beyond the range of its training data better
    than the training data's own extremes (its splits are drawn inside that range), so a
    window of flat 100 % load with no PCIe traffic can score like an ordinary busy window.
    The range check catches what lies outside everything seen; unmeasured features (-1) are
    not judged, and neither are windows where the load starts or stops (utilisation spread
    above ``STEADY_UTIL_STD``): the forest judges those, a range of rare transitions would not.
    """
    lo = np.asarray([np.nan if v is None else v for v in bundle.get("lo", [None] * X.shape[1])], dtype=float)
    hi = np.asarray([np.nan if v is None else v for v in bundle.get("hi", [None] * X.shape[1])], dtype=float)
    span = np.maximum(hi - lo, 1e-3)
    with np.errstate(invalid="ignore"):
        off = ((X < lo - share * span) | (X > hi + share * span)) & (X != -1.0)
        off &= (X[:, 1] <= STEADY_UTIL_STD)[:, None]
    return [[FEATURES[j] for j in np.flatnonzero(row)] for row in off]


class GpuWindowModel(Detector):
    """Per-GPU telemetry windows scored by a trained IsolationForest (off without a model)."""

    name = "gpu.anomaly"
    kinds = ("gpu",)
    # What update reads of an event (the worker's events topic carries no other field of its kinds).
    event_fields = ("dram_active", "gpu_uuid", "id", "job", "kind", "mem_copy_util_pct", "mem_free_mib",
                    "mem_total_mib", "mem_used_mib", "node", "pcie_rx_bytes", "pcie_tx_bytes", "pod", "power_w",
                    "tensor_active", "ts", "util_pct")
    description = "GPU telemetry windows unlike the normal ones a trained IsolationForest learned"

    class Options(Detector.Options):
        model_path: str | None = Field(default=None, description="Model written by `ramparts train compute`.")
        model_sha256: str | None = Field(default=None, description="SHA-256 of model_path (printed by train).")
        gap_seconds: float = Field(default=600.0, gt=0, description="An incident closes after this long.")
        min_windows: int = Field(default=1, ge=1, description="Anomalous windows that open an incident.")

    def __init__(self, options=None):
        super().__init__(options)
        o = self.options
        self.bundle = load(o.model_path, o.model_sha256) if o.model_path else None
        self.note = None if self.bundle else ("gpu.anomaly is off: no model (train one with `ramparts train compute "
                                              "--from FILES --out MODEL` and set model_path and model_sha256)")
        if self.note:
            log.info("%s", self.note)

    def __getstate__(self):
        return self.__dict__

    def update(self, batch: EventBatch, state: StateStore) -> list[dict]:
        if self.bundle is None:
            return []
        W = self.bundle["window_samples"]
        per: dict[tuple[str, str], list[dict]] = {}
        for e in events_of_kinds(batch, "gpu"):
            if _float(e.get("util_pct")) is not None and isinstance(e.get("ts"), int):
                g = _text(e.get("gpu_uuid"))
                if g is not None:
                    per.setdefault((_route(e), g), []).append(e)
        pending = []  # (key, state, event closing the window, rows)
        states = {}
        for (route, gpu), events in per.items():
            key = f"{self.name}/{route}/{gpu}"
            st = state.get(key) or {"rows": [], "inc": None, "bad": 0, "seen": []}
            st = {**st, "rows": list(st["rows"]), "seen": list(st["seen"])}
            states[key] = (st, gpu)
            for e in events:
                if _seen_before(st["seen"], e):
                    continue
                st["rows"].append([None if v != v else round(v, 6) for v in sample_row(e)])
                if len(st["rows"]) == W:
                    pending.append((key, e, st["rows"]))
                    st["rows"] = []
        alerts = {}
        if pending:
            rows = np.asarray([[[math.nan if v is None else v for v in r] for r in p[2]] for p in pending])
            X = window_features(rows)
            scores = self.bundle["model"].score_samples(X)
            outside = out_of_range(self.bundle, X)
            thr = self.bundle["threshold"]
            gap = int(self.options.gap_seconds * NS)
            for (key, e, _), x, s, off in zip(pending, X, scores.tolist(), outside):
                st, gpu = states[key]
                t = e["ts"]
                inc = st["inc"]
                if inc is not None and t - inc["last"] > gap:
                    inc = None
                if s < thr or off:
                    st["bad"] += 1
                    if inc is not None:
                        inc = {**inc, "last": t, "count": inc["count"] + 1}
                    elif st["bad"] >= self.options.min_windows:
                        inc = {"first": t, "last": t, "count": st["bad"]}
                    if inc is not None:
                        alerts[(key, inc["first"])] = self._alert(e, gpu, inc, s, thr, x, off)
                else:
                    st["bad"] = 0
                st["inc"] = inc
        for key, (st, _) in states.items():
            state.set(key, st)
        return list(alerts.values())

    def _alert(self, e: dict, gpu: str, inc: dict, score: float, thr: float, x: np.ndarray,
               off: list[str]) -> dict:
        feats = {f: round(float(v), 4) for f, v in zip(FEATURES, x.tolist())}
        node = _text(e.get("node"))
        return make_alert(
            self.name, "medium", ("gpu", gpu), score=round(thr - score, 6),
            summary=f"GPU {gpu}{' on ' + node if node else ''}: telemetry window unlike normal work "
                    + (f"({', '.join(off)} outside the trained range)" if off else
                       f"(model score {score:.3f} < {thr:.3f})"),
            evidence={"model_score": round(score, 6), "threshold": round(thr, 6), "features": feats,
                      "outside_trained_range": off,
                      "window_samples": self.bundle["window_samples"], "node": node, "pod_label": pod_of(e),
                      "anomalous_windows": inc["count"]},
            first_ts=inc["first"], last_ts=inc["last"], count=inc["count"])


# -- ramparts train compute ---------------------------------------------------------------------------
def read_events(paths: list[str], config=None, fmt: str = "auto") -> list[dict]:
    """Every event of ``paths`` (any GPU telemetry format), parsed as ``ramparts parse`` would."""
    import os
    import tempfile

    from ramparts.redact import Hasher
    from ramparts.streams.run import DeadLetterWriter, ParseReport, iter_file_batches

    hasher = Hasher(config.resolved_hash_key() if config is not None else None)
    report = ParseReport(dead_letter_path=os.path.join(tempfile.gettempdir(), "ramparts-train-dead-letter.jsonl"))
    dead = DeadLetterWriter(report.dead_letter_path, hasher)
    events: list[dict] = []
    try:
        for p in paths:
            for b in iter_file_batches(p, fmt, config, hasher, report, dead):
                events.extend(e for e in b.events if e.get("kind") == "gpu")
    finally:
        dead.close()
    if report.failed_files:
        raise ConfigError("; ".join(f"{p}: {why}" for p, why in report.failed_files))
    events.sort(key=lambda e: e["ts"])
    return events


def add_train_arguments(sub) -> None:
    p = sub.add_parser(
        "train", help="train a detector's model from history",
        description="Train the model a detector loads. `train compute` fits gpu.anomaly's IsolationForest on the "
                    "per-GPU telemetry windows of FILEs (DCGM exporter text, nvidia-smi CSV) of normal work.")
    tsub = p.add_subparsers(dest="model", required=True, metavar="MODEL")
    c = tsub.add_parser("compute", help="gpu.anomaly: normal per-GPU telemetry windows (IsolationForest)")
    c.add_argument("--from", dest="files", nargs="+", required=True, metavar="FILE",
                   help="telemetry of normal work (DCGM exporter text, nvidia-smi CSV)")
    c.add_argument("--out", required=True, metavar="MODEL", help="model file to write (joblib; see docs/compute.md)")
    c.add_argument("--window-samples", type=int, default=8, help="samples per window (default 8)")
    c.add_argument("--trees", type=int, default=100, help="trees of the forest (default 100)")
    c.add_argument("--seed", type=int, default=0, help="random seed (default 0): same data and seed, same model")
    c.add_argument("--config", metavar="FILE", default=None, help="config file (parser options, hash key)")
    c.set_defaults(func=run_train)


def run_train(args) -> int:
    import sys

    from ramparts.config import load_config

    config = load_config(args.config)
    if args.window_samples < 3:
        raise ConfigError("--window-samples must be at least 3")
    events = read_events(args.files, config)
    bundle = train(events, window=args.window_samples, trees=args.trees, seed=args.seed)
    sha = save(bundle, args.out)
    err = sys.stderr
    err.write(f"train compute: {len(events):,} GPU samples, {bundle['windows']:,} windows of "
              f"{bundle['window_samples']} samples -> {args.out}\n")
    err.write(f"  threshold {bundle['threshold']:.4f} (training scores: min {bundle['train_score_min']:.4f}, "
              f"median {bundle['train_score_median']:.4f})\n")
    err.write("  enable it with:\n")
    print(f"detectors:\n  gpu.anomaly:\n    model_path: {args.out}\n    model_sha256: {sha}")
    return 0
