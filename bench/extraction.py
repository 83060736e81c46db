"""``ramparts bench extraction``: queries until the first alert per attack, benign clients flagged,
Ramparts against a PRADA baseline on the same streams.

Per seed, :func:`ramparts.streams.simulate.extraction.extraction_traffic` writes KServe payload
logs of a scikit-learn victim (digits) queried by benign clients (natural, repeating, bursty
batch) and by thieves (JbDA, Tramer-style boundary search, uniform random, Knockoff-style
natural out-of-distribution images, and JbDA split over 16 keys from one address). The logs
are parsed by the KServe parser, as in production, and the prediction events go through:

* Ramparts' ``extraction.queries`` detector, one event per batch (so that an alert's time is
  the time of the query that raised it);
* PRADA (``bench/prada.py``, Juuti et al. 2019), per principal, on each query's input and
  the victim's predicted class, with its threshold delta as given.

An attack's "queries until first alert" counts the thief's queries up to and including the
one that raised the first alert naming it (for the Sybil split: all 16 keys' queries, and an
alert on any of the keys or on their shared address). A benign client is "flagged" when an
alert names it or its source address. Attacks never caught count as missed, not as a number.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass, field

import numpy as np


@dataclass
class SeedResult:
    seed: int
    ramparts: dict[str, int | None] = field(default_factory=dict)  # attack kind -> queries to first alert
    prada: dict[str, int | None] = field(default_factory=dict)
    benign: int = 0
    benign_flagged: list[str] = field(default_factory=list)
    benign_flagged_prada: list[str] = field(default_factory=list)
    benign_kinds: dict[str, str] = field(default_factory=dict)
    sybil_accounts_prada: int = 0
    events: int = 0
    seconds: float = 0.0


def _queries_until(ts: np.ndarray, at: int | None) -> int | None:
    # KServe's CloudEvent times carry microseconds: compare at the precision the detector saw.
    return None if at is None else int(np.searchsorted(ts // 1000 * 1000, at, side="right"))


def run_seed(seed: int, *, delta: float = 0.95, n_benign: int = 30, queries_per_benign: int = 200,
             attack_queries: int = 300, options: dict | None = None) -> SeedResult:
    from ramparts.detectors.base import DictState
    from ramparts.detectors.extraction import ExtractionDetector
    from ramparts.events import EventBatch
    from ramparts.streams.decode import parse_bytes
    from ramparts.streams.simulate.extraction import SYBIL_SRC_IP, extraction_traffic

    from .prada import Prada

    traffic = extraction_traffic(seed, n_benign=n_benign, queries_per_benign=queries_per_benign,
                                 attack_queries=attack_queries)
    batch, dead, _ = parse_bytes("kserve", traffic.lines)
    if dead:
        raise RuntimeError(f"the simulated KServe log has {len(dead)} dead letters: {dead[0].reason}")
    events = sorted(batch.events, key=lambda e: e["ts"])
    res = SeedResult(seed, events=len(events))

    # Ramparts: the first alert time per entity.
    t0 = time.perf_counter()
    det, state = ExtractionDetector(options or {}), DictState()
    first: dict[tuple[str, str], int] = {}
    for e in events:
        for a in det.update(EventBatch([e]), state):
            k = (a["entity"]["type"], a["entity"]["id"])
            first.setdefault(k, a["ts"])
    res.seconds = time.perf_counter() - t0

    # PRADA, per principal, on every row in the order the principal sent them.
    prada = Prada(delta=delta)
    for e in events:
        inp, out = e.get("input"), e.get("output")
        if not inp or not out:
            continue
        for x, probs in zip(inp, out):
            prada.query(e["principal"], np.asarray(x, dtype=np.float64), int(np.argmax(probs)))
    prada_first = {p: prada.first_flag(p) for p in traffic.principals if prada.flagged(p)}

    def alert_time(principal: str) -> int | None:
        times = [t for k, t in first.items()
                 if (k == ("principal", principal)) or (k == ("src_ip", traffic.src_ips[principal]))]
        return min(times) if times else None

    for principal, kind in traffic.principals.items():
        if kind.startswith("benign"):
            res.benign += 1
            res.benign_kinds[principal] = kind
            if alert_time(principal) is not None:
                res.benign_flagged.append(principal)
            if principal in prada_first:
                res.benign_flagged_prada.append(principal)
        elif kind != "attack:sybil":
            attack = kind.split(":", 1)[1]
            res.ramparts[attack] = _queries_until(traffic.query_ts[principal], alert_time(principal))
            res.prada[attack] = prada_first.get(principal)

    sybil = traffic.of_kind("attack:sybil")
    all_ts = np.sort(np.concatenate([traffic.query_ts[p] for p in sybil]))
    times = [t for k, t in first.items() if k == ("src_ip", SYBIL_SRC_IP) or (k[0] == "principal" and k[1] in sybil)]
    res.ramparts["sybil"] = _queries_until(all_ts, min(times) if times else None)
    caught = [p for p in sybil if p in prada_first]
    res.sybil_accounts_prada = len(caught)
    if caught:  # PRADA's view of the split: the whole attack's queries until one account is flagged
        at = min(int(traffic.query_ts[p][prada_first[p] - 1]) for p in caught)
        res.prada["sybil"] = _queries_until(all_ts, at)
    else:
        res.prada["sybil"] = None
    return res


def summarize(results: list[SeedResult]) -> dict:
    kinds = list(results[0].ramparts)

    def med(values):
        got = [v for v in values if v is not None]
        return statistics.median(got) if got else None

    table = {}
    for k in kinds:
        r = [x.ramparts[k] for x in results]
        p = [x.prada[k] for x in results]
        table[k] = {"ramparts_median": med(r), "ramparts_caught": sum(v is not None for v in r),
                    "ramparts_all": r, "prada_median": med(p), "prada_caught": sum(v is not None for v in p),
                    "prada_all": p}
    benign = results[0].benign
    repeats = [p for p, k in results[0].benign_kinds.items() if k == "benign:repeats"]
    return {
        "seeds": [x.seed for x in results], "attacks": table,
        "benign_per_seed": benign,
        "benign_flagged_ramparts": [len(x.benign_flagged) for x in results],
        "benign_flagged_prada": [len(x.benign_flagged_prada) for x in results],
        "benign_repeat_clients_per_seed": len(repeats),
        "benign_repeat_flagged_prada": [sum(x.benign_kinds[p] == "benign:repeats" for p in x.benign_flagged_prada)
                                        for x in results],
        "sybil_accounts_flagged_prada": [x.sybil_accounts_prada for x in results],
        "events_per_seed": [x.events for x in results],
        "detector_seconds_per_seed": [round(x.seconds, 2) for x in results],
    }


def markdown(summary: dict, delta: float) -> str:
    n = len(summary["seeds"])
    lines = ["| attack | Ramparts: queries to first alert (median) | caught | "
             f"PRADA (delta {delta}): queries to first flag (median) | caught |", "|---|---|---|---|---|"]
    for k, row in summary["attacks"].items():
        rm = "never" if row["ramparts_median"] is None else f"{row['ramparts_median']:g}"
        pm = "never" if row["prada_median"] is None else f"{row['prada_median']:g}"
        lines.append(f"| {k} | {rm} | {row['ramparts_caught']}/{n} | {pm} | {row['prada_caught']}/{n} |")
    b = summary["benign_per_seed"]
    lines.append("")
    lines.append(f"Benign clients flagged (of {b} per seed): Ramparts {summary['benign_flagged_ramparts']}, "
                 f"PRADA {summary['benign_flagged_prada']} (of which repeat clients "
                 f"{summary['benign_repeat_flagged_prada']} of {summary['benign_repeat_clients_per_seed']}); "
                 f"Sybil accounts flagged by PRADA (of 16): {summary['sybil_accounts_flagged_prada']}.")
    return "\n".join(lines)


def add_arguments(sub) -> None:
    p = sub.add_parser("extraction", help="extraction detector vs PRADA: queries to first alert, benign flagged")
    p.add_argument("--seeds", type=int, default=5, help="how many seeds (default 5)")
    p.add_argument("--first-seed", type=int, default=1, help="the first seed (default 1)")
    p.add_argument("--benign", type=int, default=30, help="benign clients per seed (default 30)")
    p.add_argument("--queries-per-benign", type=int, default=200, help="queries per benign client (default 200)")
    p.add_argument("--delta", type=float, default=0.95, help="PRADA's Shapiro-Wilk threshold (default 0.95)")
    p.add_argument("--json", action="store_true", help="print the full summary as JSON too")
    p.add_argument("--cost", nargs="+", metavar="FILE",
                   help="instead: CPU time of the detector alone over replay's batches of these files "
                        "(e.g. /tmp/mix/manifest.*.log), on lists of dicts and on batches of columns, interleaved")
    p.add_argument("--repeat", type=int, default=3, help="with --cost: runs of each form (default 3)")
    p.set_defaults(func=run)


def capture_batches(files: list[str]) -> list[list[dict]]:
    """The batches replay hands the detectors over ``files`` (parsed and merged; sorted by time
    as ``Pipeline.process_batch`` sorts them), as lists of dicts."""
    import os

    from ramparts.config import load_config
    from ramparts.streams.pipeline import Pipeline
    from ramparts.streams.replay import Progress, replay

    batches: list[list[dict]] = []

    class Capture(Pipeline):
        def process_batch(self, events, state, scope=None):
            batches.append(sorted(events, key=lambda e: e["ts"]))
            return []

    replay(files, config=load_config(None), progress=Progress(None, enabled=False), dead_letter_path=os.devnull,
           pipeline=Capture([]))
    return batches


def measure_cost(batches: list[list[dict]], columnar: bool) -> float:
    """CPU seconds of ``extraction.queries`` (a fresh detector and state, built outside the
    timing) over ``batches``: each as a batch of dicts or, ``columnar``, of ``Columns`` parts
    (made outside the timing, as a columnar parser hands them on)."""
    from ramparts.detectors.base import DictState
    from ramparts.detectors.extraction import ExtractionDetector
    from ramparts.events import EventBatch, columnar as as_columns

    todo = [as_columns(b) if columnar else EventBatch(b) for b in batches]
    det, state = ExtractionDetector(), DictState()
    c0 = time.process_time()
    for b in todo:
        det.update(b, state)
    return time.process_time() - c0


def run_cost(files: list[str], repeat: int) -> int:
    batches = capture_batches(files)
    n = sum(len(b) for b in batches)
    preds = sum(e.get("kind") == "prediction" for b in batches for e in b)
    runs: dict[str, list[float]] = {"dicts": [], "columns": []}
    for _ in range(repeat):  # interleaved, so that a change of the machine's load touches both forms alike
        runs["dicts"].append(measure_cost(batches, False))
        runs["columns"].append(measure_cost(batches, True))
    print(f"extraction.queries alone over replay's {len(batches)} batches: {n:,} events, {preds:,} predictions "
          f"(CPU, median of {repeat} runs)")
    for form, secs in runs.items():
        med = statistics.median(secs)
        print(f"  {form:8s} {med:.3f} s, {1e6 * med / max(preds, 1):.1f} µs per prediction, "
              f"{1e6 * med / max(n, 1):.2f} µs per event (runs {', '.join(f'{s:.3f}' for s in secs)})")
    return 0


def run(args) -> int:
    import json

    if args.cost:
        return run_cost(args.cost, args.repeat)

    seeds = range(args.first_seed, args.first_seed + args.seeds)
    results = [run_seed(s, delta=args.delta, n_benign=args.benign, queries_per_benign=args.queries_per_benign)
               for s in seeds]
    summary = summarize(results)
    print(markdown(summary, args.delta))
    if args.json:
        print(json.dumps(summary, indent=1))
    return 0
