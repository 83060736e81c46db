"""``ramparts bench nab``: the metric anomaly detector on the Numenta Anomaly Benchmark.

Runs :class:`ramparts.detectors.anomaly.SeriesModel` over every series of a NAB ``data/``
directory (``<folder>/<file>.csv`` with ``timestamp,value``), one fresh model per file that
learns NAB's probationary period (15% of the file, at most 750 points) before it scores,
writes NAB-format results (``OUT/<detector>/<folder>/<detector>_<file>.csv`` with
``timestamp,value,anomaly_score,label``, ``label`` 1 inside a labelled window), and scores
them with :mod:`ramparts.bench.nab_score` (NAB's windows, scaled sigmoid, the three
profiles, one threshold per profile optimised over the corpus, normalised against the null
and perfect detectors). Files are run in parallel processes; the model sees one point at a
time, as in a stream.
"""

from __future__ import annotations

import csv
import json
import math
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

from ramparts.errors import ConfigError

from . import nab_score

DETECTOR = "ramparts"
MEMORY = 4096  # shapes remembered per series in the benchmark (the stream detectors keep 560: docs/anomaly.md)


def probation(rows: int) -> int:
    return int(min(math.floor(nab_score.PROBATION_PERCENT * rows), nab_score.PROBATION_PERCENT * 5000))


def read_series(path: Path) -> tuple[list[str], np.ndarray]:
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.reader(f)
        header = next(reader, None)
        if not header or "timestamp" not in header or "value" not in header:
            raise ConfigError(f"{path}: not a NAB series (wanted a header with timestamp and value, got {header})")
        it, iv = header.index("timestamp"), header.index("value")
        stamps, values = [], []
        for n, row in enumerate(reader, start=2):
            if not row:
                continue
            try:
                values.append(float(row[iv]))
            except (ValueError, IndexError):
                raise ConfigError(f"{path}:{n}: value {row[iv:iv + 1]} is not a number") from None
            stamps.append(row[it])
    return stamps, np.asarray(values)


def score_series(values: np.ndarray, memory: int = MEMORY, round_trip: bool = False) -> np.ndarray:
    """Scores of one series; ``round_trip`` reloads the model from its JSON state after every point,
    as the stream detectors do every minute (the state's byte precision is then in the scores)."""
    from ramparts.detectors.anomaly import SeriesModel

    learn = probation(len(values))
    model = SeriesModel(learn_points=learn, memory=memory)
    if not round_trip:
        return np.fromiter((model.score(v) for v in values), float, len(values))
    out = np.empty(len(values))
    for i, v in enumerate(values):
        out[i] = model.score(v)
        model = SeriesModel(learn_points=learn, memory=memory, state=json.loads(json.dumps(model.state())))
    return out


def _run_file(args) -> tuple[str, list[str], np.ndarray, np.ndarray, float]:
    name, path, memory, round_trip = args
    stamps, values = read_series(Path(path))
    t0 = time.process_time()
    scores = score_series(values, memory, round_trip)
    return name, stamps, values, scores, time.process_time() - t0


def run_nab(data: str, labels: str, out: str | None, jobs: int | None = None, memory: int = MEMORY,
            round_trip: bool = False) -> dict:
    data_dir = Path(data)
    if not data_dir.is_dir():
        raise ConfigError(f"--data {data}: not a directory (NAB's data/, with one folder per source)")
    if not Path(labels).is_file():
        raise ConfigError(f"--labels {labels}: no such file (NAB's labels/combined_windows.json)")
    windows = nab_score.load_windows(labels)
    files = sorted(p.relative_to(data_dir).as_posix() for p in data_dir.glob("*/*.csv"))
    unlabelled = [f for f in files if f not in windows]
    files = [f for f in files if f in windows]
    if not files:
        raise ConfigError(f"no series under {data} has windows in {labels}")
    t0 = time.perf_counter()
    work = [(f, str(data_dir / f), memory, round_trip) for f in files]
    with ProcessPoolExecutor(max_workers=jobs or os.cpu_count() or 1) as pool:
        done = list(pool.map(_run_file, work))
    wall = time.perf_counter() - t0
    results = {}
    cpu = 0.0
    points = 0
    for name, stamps, values, scores, seconds in done:
        ts = nab_score._to_ns(np.array(stamps))
        results[name] = (ts, scores)
        cpu += seconds
        points += len(values)
        if out:
            folder, file = name.split("/")
            target = Path(out) / DETECTOR / folder / f"{DETECTOR}_{file}"
            target.parent.mkdir(parents=True, exist_ok=True)
            inside = np.zeros(len(ts), dtype=int)
            for a, b in windows[name]:
                inside[(ts >= a) & (ts <= b)] = 1
            with open(target, "w", newline="", encoding="utf-8") as f:
                w = csv.writer(f)
                w.writerow(["timestamp", "value", "anomaly_score", "label"])
                for row in zip(stamps, values, scores, inside):
                    w.writerow([row[0], repr(float(row[1])), f"{row[2]:.6f}", int(row[3])])
    labelled = {n: windows[n] for n in results}
    scores = {}
    for profile in nab_score.PROFILES:
        r = nab_score.score_corpus(results, labelled, profile)
        scores[profile] = {"score": round(r["normalized"], 2), "threshold": r["threshold"], "raw": round(r["raw"], 3),
                           "null": r["null"], "perfect": r["perfect"]}
    folders = sorted({n.split("/")[0] for n in results})
    held_out = hold_out(results, labelled, folders) if len(folders) > 1 else None
    return {"held_out_standard": held_out, "detector": DETECTOR, "files": len(results), "points": points, "windows": sum(map(len, labelled.values())),
            "folders": folders, "unlabelled_files_skipped": unlabelled, "memory": memory, "round_trip": round_trip, "scores": scores,
            "wall_seconds": round(wall, 2), "detector_cpu_seconds": round(cpu, 2),
            "us_per_point": round(1e6 * cpu / max(points, 1), 1)}


def hold_out(results: dict, windows: dict, folders: list[str]) -> float:
    """The standard score with each folder scored at the threshold chosen on the others.

    A check of generalisation: the threshold is the only thing fitted to the corpus, so
    each folder is judged as a folder the detector had not seen would be. The folders' raw
    and null scores are summed and normalised once.
    """
    raw = null = 0.0
    for folder in folders:
        inside = {n: r for n, r in results.items() if n.split("/")[0] == folder}
        rest = {n: r for n, r in results.items() if n.split("/")[0] != folder}
        threshold = nab_score.score_corpus(rest, {n: windows[n] for n in rest}, "standard")["threshold"]
        r = nab_score.score_corpus(inside, {n: windows[n] for n in inside}, "standard", threshold=threshold)
        raw += r["raw"]
        null += r["null"]
    perfect = float(sum(len(windows[n]) for n in results))
    return round(100 * (raw - null) / (perfect - null), 2) if perfect != null else float("nan")


def add_arguments(sub) -> None:
    p = sub.add_parser("nab", help="the metric anomaly detector on the Numenta Anomaly Benchmark",
                       description=__doc__.split("\n\n")[0])
    p.add_argument("--data", default="../shared/data/nab/data", help="NAB's data/ directory (default %(default)s)")
    p.add_argument("--labels", default="../shared/data/nab/combined_windows.json",
                   help="NAB's combined_windows.json (default %(default)s)")
    p.add_argument("--out", default="out/nab", help="where the NAB-format results go (default %(default)s)")
    p.add_argument("--jobs", type=int, default=None, help="processes (default: one per core)")
    p.add_argument("--memory", type=int, default=MEMORY, help="shapes remembered per series (default %(default)s)")
    p.add_argument("--round-trip", action="store_true",
                   help="reload each model from its JSON state after every point, as the stream detectors do")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.set_defaults(func=run)


def run(args) -> int:
    summary = run_nab(args.data, args.labels, args.out, args.jobs, args.memory, args.round_trip)
    if args.json:
        print(json.dumps(summary, indent=2))
        return 0
    s = summary["scores"]
    print(f"NAB, detector {DETECTOR}: {summary['files']} files, {summary['points']} points, "
          f"{summary['windows']} windows ({', '.join(summary['folders'])})")
    for profile, r in s.items():
        print(f"  {profile:20} {r['score']:6.2f}   (threshold {r['threshold']:.4f})")
    if summary["held_out_standard"] is not None:
        print(f"  standard, each folder at the threshold of the others: {summary['held_out_standard']:.2f}")
    if summary["unlabelled_files_skipped"]:
        print(f"  skipped, no windows in the labels: {', '.join(summary['unlabelled_files_skipped'])}",
              file=sys.stderr)
    print(f"  {summary['wall_seconds']} s wall, {summary['us_per_point']} us of detector CPU a point; "
          f"results in {args.out}/{DETECTOR}/")
    return 0
