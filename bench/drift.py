"""``ramparts bench drift``: drift.model and each of its statistics on river's synthetic streams
with known change points.

Each stream is one of river's generators (``river.datasets.synth``) joined to a changed copy
of itself by ``ConceptDriftStream`` (abrupt: a sigmoid 50 points wide; gradual: ``points / 6``
wide), or ``FriedmanDrift``'s own abrupt drift. A model (scikit-learn's histogram gradient
boosting) is trained on the generator's first 2,000 points, as a deployed model would have
been, and scores the next ``points``, whose middle is the change. Two views of the
stream go through ``drift.model`` (default options), one point a second of event time:

* **production**: what the detector sees in production, ``prediction`` events with the
  point's features as input and the model's score (class 1 probability, or the regression
  value) as output;
* **labels**: the model's mistakes, as a gateway's error rate (``request`` events with
  status 500 when the model was wrong, 200 when right; for a regression, wrong is an
  absolute error above the 90th percentile of its errors on the first 1,000 replayed points,
  before the change). Labels seldom arrive
  in time in production; this view shows what the statistics could do with them.

A *concept* drift (P(y | x) changes, the inputs do not) leaves the inputs and a fixed model's
outputs exactly as they were: nothing in the production view can see it, by construction.
A *prior* shift (the class balance changes) moves the outputs; a *covariate* drift (RBF
centroids move) moves the inputs and the outputs.

For each statistic (every finding the detector makes, in its trace) and for the detector as a
whole (incidents opened): the detection delay in points from the start of the change, missed
changes (no alarm within ``points / 3`` of the start) and false alarms
(alarms before the start). The change starts half its width before its centre, where the
new concept has 12 % of the points.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass, field

import numpy as np

NS = 1_000_000_000
T0 = 1_795_000_020 * NS
STATISTICS = ("psi", "ks", "adwin", "kswin", "page_hinkley", "drift.model")
LABELS = {"psi": "PSI", "ks": "KS", "adwin": "ADWIN", "kswin": "KSWIN", "page_hinkley": "PageHinkley",
          "drift.model": "drift.model"}
VIEWS = ("production", "labels")
ABRUPT_WIDTH = 50
TRAIN = 2000  # points the model is trained on, before the replayed ones


@dataclass(frozen=True)
class Stream:
    name: str
    drift: str  # concept | prior | covariate (what moves)
    gradual: bool
    regression: bool = False

    def make(self, seed: int, points: int, before: int = 0):
        """The generator: ``before`` points for training, then ``points`` with the change centred
        at their middle."""
        from river.datasets import synth

        mid = before + points // 2
        width = self.width(points)
        if self.name.startswith("friedman"):
            return synth.FriedmanDrift(drift_type="gra", position=(mid, 2 * (before + points)), seed=seed)
        base, changed = {
            "sea": lambda: (synth.SEA(variant=0, seed=seed), synth.SEA(variant=3, seed=seed + 1000)),
            "agrawal": lambda: (synth.Agrawal(classification_function=0, seed=seed),
                                synth.Agrawal(classification_function=2, seed=seed + 1000)),
            "agrawal-prior": lambda: (synth.Agrawal(classification_function=0, seed=seed),
                                      synth.Agrawal(classification_function=0, seed=seed + 1000,
                                                    balance_classes=True)),
            "hyperplane": lambda: (synth.Hyperplane(seed=seed, n_features=10),
                                   synth.Hyperplane(seed=seed + 1000, n_features=10)),
            "rbf": lambda: (synth.RandomRBF(seed_model=seed, seed_sample=seed),
                            synth.RandomRBF(seed_model=seed + 1000, seed_sample=seed + 1)),
        }[self.name.rsplit("-", 1)[0]]()
        return synth.ConceptDriftStream(stream=base, drift_stream=changed, position=mid, width=width, seed=seed)

    def width(self, points: int) -> int:
        # river's sigmoid overflows math.exp for widths under about points / 350; 50 points is
        # abrupt next to 500-row windows and minute points.
        return max(ABRUPT_WIDTH, points // 6) if self.gradual else ABRUPT_WIDTH

    def start(self, points: int) -> int:
        """The point where the change starts: half its width before its centre (12 % new concept)."""
        return points // 2 - self.width(points) // 2


STREAMS = (
    Stream("sea-abrupt", "concept", False), Stream("sea-gradual", "concept", True),
    Stream("agrawal-abrupt", "concept", False), Stream("agrawal-prior-abrupt", "prior", False),
    Stream("hyperplane-abrupt", "concept", False),
    Stream("rbf-abrupt", "covariate", False), Stream("rbf-gradual", "covariate", True),
    Stream("friedman-abrupt", "concept", False, regression=True),
)


@dataclass
class StreamResult:
    stream: str
    seed: int
    points: int
    start: int
    # view -> statistic -> (delay in points or None when missed, false alarms)
    found: dict[str, dict[str, tuple[int | None, int]]] = field(default_factory=dict)
    seconds: float = 0.0  # the detector's time over both views


def _data(stream: Stream, seed: int, points: int, before: int) -> tuple[np.ndarray, np.ndarray]:
    rows, ys = [], []
    for x, y in stream.make(seed, points, before).take(before + points):
        rows.append([float(v) for v in x.values()])
        ys.append(float(y))
    return np.asarray(rows), np.asarray(ys)


def _fit(stream: Stream, X: np.ndarray, y: np.ndarray, train: int) -> tuple[np.ndarray, np.ndarray]:
    """Train on the first ``train`` points; the model's outputs on the others and whether it was wrong.

    The training points are not replayed: a model scores its own training data more
    confidently than new data, and that difference is not the drift being measured.
    """
    from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor

    fit_X, fit_y, X, y = X[:train], y[:train], X[train:], y[train:]
    if stream.regression:
        model = HistGradientBoostingRegressor(max_iter=80, random_state=0).fit(fit_X, fit_y)
        out = model.predict(X)
        held = np.abs(y[:train // 2] - out[:train // 2])  # the first replayed points, before the change
        return out, np.abs(y - out) > np.quantile(held, 0.9)
    model = HistGradientBoostingClassifier(max_iter=80, random_state=0).fit(fit_X, fit_y)
    proba = model.predict_proba(X)[:, 1]
    return proba, (proba >= 0.5) != (y >= 0.5)


def _events(view: str, X: np.ndarray, out: np.ndarray, wrong: np.ndarray) -> list[dict]:
    if view == "production":
        return [{"kind": "prediction", "ts": T0 + i * NS, "source": "bench", "principal": "bench", "src_ip": None,
                 "model": "bench", "model_version": "1", "input": [[round(v, 6) for v in X[i].tolist()]],
                 "output": [round(float(out[i]), 6)]} for i in range(len(X))]
    return [{"kind": "request", "ts": T0 + i * NS, "source": "bench", "principal": "bench", "src_ip": None,
             "model": "bench", "path": "/predict", "status": 500 if wrong[i] else 200, "latency_ms": None,
             "tokens_in": None, "tokens_out": None} for i in range(len(X))]


def _alarms(events: list[dict], options: dict | None) -> tuple[dict[str, list[int]], float]:
    """Point index of every alarm, per statistic (and per opened incident for drift.model)."""
    from ramparts.detectors.base import DictState
    from ramparts.detectors.drift import DriftDetector
    from ramparts.events import EventBatch

    det, state = DriftDetector(options or {}), DictState()
    det.trace = []
    began = time.perf_counter()
    for i in range(0, len(events), 500):
        det.update(EventBatch(events[i:i + 500]), state)
    seconds = time.perf_counter() - began
    out: dict[str, set[int]] = {s: set() for s in STATISTICS}
    opened: dict[str, int] = {}
    for f in det.trace:
        out[f["statistic"]].add((f["ts"] - T0) // NS)
        opened.setdefault(f["incident"], f["ts"])  # the finding that opened the incident
    out["drift.model"] = {(ts - T0) // NS for ts in opened.values()}
    return {s: sorted(v) for s, v in out.items()}, seconds


def run_stream(stream: Stream, seed: int, points: int = 12_000, options: dict | None = None) -> StreamResult:
    X, y = _data(stream, seed, points, before=TRAIN)
    start = stream.start(points)
    out, wrong = _fit(stream, X, y, train=TRAIN)
    X = X[TRAIN:]
    res = StreamResult(stream.name, seed, points, start)
    horizon = start + points // 3
    for view in VIEWS:
        alarms, seconds = _alarms(_events(view, X, out, wrong), options)
        res.seconds += seconds
        res.found[view] = {}
        for statistic, at in alarms.items():
            hits = [i for i in at if start <= i <= horizon]
            res.found[view][statistic] = (hits[0] - start if hits else None, sum(1 for i in at if i < start))
    return res


def summarize(results: list[StreamResult]) -> dict:
    seeds = sorted({r.seed for r in results})
    out: dict = {"seeds": seeds, "points": results[0].points if results else None, "streams": {}}
    for stream in STREAMS:
        mine = [r for r in results if r.stream == stream.name]
        if not mine:
            continue
        entry: dict = {"drift": stream.drift, "gradual": stream.gradual, "start": mine[0].start}
        for view in VIEWS:
            entry[view] = {}
            for statistic in STATISTICS:
                delays = [r.found[view][statistic][0] for r in mine]
                caught = [d for d in delays if d is not None]
                entry[view][statistic] = {
                    "delays": delays, "median_delay": statistics.median(caught) if caught else None,
                    "missed": len(delays) - len(caught),
                    "false_alarms": sum(r.found[view][statistic][1] for r in mine)}
        out["streams"][stream.name] = entry
    out["detector_seconds"] = round(sum(r.seconds for r in results), 2)
    return out


def _cell(c: dict, n: int) -> str:
    delay = "-" if c["median_delay"] is None else f"{c['median_delay']:g}"
    return f"{delay} ({c['missed']}/{n}, {c['false_alarms']})"


def markdown(summary: dict) -> str:
    n = len(summary["seeds"])
    lines = []
    for view, title in (("production", "Production view: inputs and the model's outputs"),
                        ("labels", "Labels view: the model's mistakes as the error stream")):
        lines += [f"{title}. Cells: median delay in points (missed of {n}, false alarms over all seeds).", "",
                  "| stream | what moves | " + " | ".join(LABELS[s] for s in STATISTICS) + " |",
                  "|---|---|" + "---|" * len(STATISTICS)]
        for name, e in summary["streams"].items():
            lines.append(f"| {name} | {e['drift']} | " + " | ".join(_cell(e[view][s], n) for s in STATISTICS) + " |")
        lines.append("")
    return "\n".join(lines).rstrip()


def add_arguments(sub) -> None:
    p = sub.add_parser("drift", help="drift.model and PSI, KS, ADWIN, KSWIN, PageHinkley on river's synthetic "
                                     "streams with known change points: delay, missed drifts, false alarms")
    p.add_argument("--seeds", type=int, default=5, help="seeds 1..N (default 5)")
    p.add_argument("--points", type=int, default=12_000, help="points per stream, the change at the middle "
                                                               "(default 12000)")
    p.add_argument("--streams", default=",".join(s.name for s in STREAMS),
                   help="comma-separated streams (default all): " + ", ".join(s.name for s in STREAMS))
    p.add_argument("--json", action="store_true", help="print the full summary as JSON too")
    p.set_defaults(func=run)


def run(args) -> int:
    import json

    known = {s.name: s for s in STREAMS}
    names = [n.strip() for n in args.streams.split(",") if n.strip()]
    unknown = [n for n in names if n not in known]
    if unknown:
        raise SystemExit(f"ramparts bench drift: unknown stream(s) {', '.join(unknown)}; known: {', '.join(known)}")
    if args.points < 3000:
        raise SystemExit("ramparts bench drift: --points must be at least 3000 (a reference of 500 rows, then "
                         "windows before and after the change)")
    began = time.perf_counter()
    results = [run_stream(known[n], seed, args.points) for n in names for seed in range(1, args.seeds + 1)]
    summary = summarize(results)
    summary["wall_seconds"] = round(time.perf_counter() - began, 1)
    print(markdown(summary))
    print(f"\n{len(results)} runs of {args.points} points; detector {summary['detector_seconds']} s, "
          f"wall {summary['wall_seconds']} s")
    if args.json:
        print(json.dumps(summary, indent=1))
    return 0
