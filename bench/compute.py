"""``ramparts bench compute``: detection delay and false alarms of the compute and access detectors.

Each scenario (``ramparts simulate``: ``compute-benign``, ``compute``, ``access``, ``mix``) is
simulated with a fixed seed and start, then replayed through the whole pipeline (every
detector, default options). An alert *catches* a labelled attack when its detector and
entity are the label's; the delay is counted from the label's start to the first time the
pipeline raised the alert (its first update, not its back-dated window start): for a GPU in
samples of that GPU (the first sample of the attack is sample 1), for the rest in seconds. Any
alert that matches no label of an attack is a false alarm; the benign placements (the
authorized stress test, bursty inference, detector ``none`` in the ground truth) are where
false alarms would show.

With ``--model`` (the default), ``gpu.anomaly`` runs too, with a model trained by the same code
as ``ramparts train compute`` on the ``compute-benign`` scenario under another seed (normal
work only); its alerts on an attacked GPU during the attack are reported as extra detections.
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path

NS = 1_000_000_000
START = "2026-03-02T09:00:00Z"
SCENARIOS = ("compute-benign", "compute", "access", "mix")
HASH_KEY = "bench-compute-key-0123456789abcdef"
BATCH_EVENTS = 16


def _config(model: tuple[str, str] | None):
    from ramparts.config import load_config

    env = {"RAMPARTS_HASH_KEY": HASH_KEY}
    if model is None:
        return load_config(None, env=env)
    path = Path(tempfile.mkdtemp(prefix="ramparts-bench-")) / "ramparts.yaml"
    path.write_text(json.dumps({"detectors": {"gpu.anomaly": {"model_path": model[0], "model_sha256": model[1]}}}))
    return load_config(path, env=env)


def train_model(workdir: Path, seed: int = 101, duration: float = 1800.0,
                scenario: str = "compute-benign") -> tuple[str, str]:
    """A gpu.anomaly model of a benign scenario's telemetry (normal work), as train does."""
    from ramparts.detectors import compute_model
    from ramparts.streams.simulate import simulate

    m = simulate(scenario, workdir / "train" / "train.json", seed=seed, start="2026-03-01T09:00:00Z",
                 duration_seconds=duration, rate=2.0)
    events = compute_model.read_events([str(m.file("dcgm"))])
    path = workdir / "gpu-anomaly.model"
    sha = compute_model.save(compute_model.train(events), path)
    return str(path), sha


def run_scenario(name: str, workdir: Path, config, seed: int = 7, duration: float | None = None,
                 rate: float | None = None) -> dict:
    """Simulate and replay one scenario; the labelled attacks with their delays, and the false alarms."""
    import os

    from ramparts.streams.pipeline import Pipeline
    from ramparts.streams.replay import Progress, replay
    from ramparts.streams.simulate import simulate

    old = os.environ.get("RAMPARTS_HASH_KEY")
    os.environ["RAMPARTS_HASH_KEY"] = HASH_KEY  # the simulator names principals by the pipeline's hash
    try:
        m = simulate(name, workdir / name / f"{name}.json", seed=seed, start=START, duration_seconds=duration,
                     rate=rate)
    finally:
        if old is None:
            os.environ.pop("RAMPARTS_HASH_KEY", None)
        else:
            os.environ["RAMPARTS_HASH_KEY"] = old

    first_raised: dict[str, int] = {}

    class Recording(Pipeline):
        def process_batch(self, events, state):
            alerts = super().process_batch(events, state)
            for a in alerts:
                first_raised.setdefault(a["id"], a["ts"])
            return alerts

    pipe = Recording.from_config(config)
    files = [str(m.file(f)) for f in m.files]
    t0 = time.process_time()
    # Small batches, so that "first raised" is within a few events of when the detector decided
    # (the alerts themselves do not depend on the cuts: tests/test_detector_contracts.py).
    report = replay(files, config=config, progress=Progress(None, enabled=False), pipeline=pipe,
                    dead_letter_path=str(workdir / name / "dead.jsonl"), batch_events=BATCH_EVENTS)
    cpu = time.process_time() - t0

    from ramparts.streams.run import parse_files
    import io

    # GPU sample times per GPU, to count delays in samples.
    buf = io.BytesIO()
    parse_files([str(m.file("dcgm"))], config=config, out=buf, dead_letter_path=str(workdir / name / "dead2.jsonl"))
    samples: dict[str, list[int]] = {}
    from ramparts.timeutil import parse_iso

    for line in buf.getvalue().splitlines():
        e = json.loads(line)
        samples.setdefault(e["gpu_uuid"], []).append(parse_iso(e["ts"]))

    alerts = list(report.alerts.values())
    attacks, matched = [], set()
    for lab in m.attacks:
        if lab.detector == "none":
            continue
        hits = [a for a in alerts if a["detector"] == lab.detector and a["entity"]["id"] == lab.entity_id]
        matched.update(a["id"] for a in hits)
        row = {"scenario": name, "attack": lab.name, "detector": lab.detector, "entity": lab.entity_type,
               "caught": bool(hits), "delay_samples": None, "delay_seconds": None}
        if hits:
            t = min(first_raised[a["id"]] for a in hits)
            row["delay_seconds"] = round(max(0, t - lab.start) / NS, 1)
            if lab.entity_type == "gpu":
                row["delay_samples"] = sum(1 for s in samples.get(lab.entity_id, ()) if lab.start <= s <= t)
        attacks.append(row)
    extra, false_alarms = [], []
    attacked = [(lab.entity_id, lab.start, lab.end) for lab in m.attacks if lab.detector != "none"]
    for a in alerts:
        if a["id"] in matched:
            continue
        on_attack = any(a["entity"]["id"] == eid and s <= a["ts"] <= e + 60 * NS for eid, s, e in attacked)
        (extra if on_attack else false_alarms).append(
            {"detector": a["detector"], "entity": a["entity"]["id"], "summary": a["summary"]})
    benign = [lab.name for lab in m.attacks if lab.detector == "none"]
    return {"scenario": name, "events": report.events, "cpu_seconds": round(cpu, 2), "attacks": attacks,
            "extra_detections": extra, "false_alarms": false_alarms, "benign_placements": benign}


def detector_cost(workdir: Path, config, repeat: int = 5, scenario: str = "compute") -> dict[str, float]:
    """CPU microseconds per event of each enabled detector over a scenario's parsed events
    (batches of 8,192, a fresh state per run; the median of ``repeat`` runs)."""
    import statistics

    from ramparts.detectors import build_detectors
    from ramparts.detectors.base import DictState
    from ramparts.events import EventBatch
    from ramparts.streams.replay import merge_by_time
    from ramparts.streams.run import DeadLetterWriter, ParseReport, iter_file_batches
    from ramparts.redact import Hasher

    m_path = workdir / scenario / f"{scenario}.json"
    files = sorted(str(p) for p in m_path.parent.glob(f"{scenario}.*.log"))
    hasher = Hasher(HASH_KEY)
    report = ParseReport(dead_letter_path=str(workdir / "cost-dead.jsonl"))
    dead = DeadLetterWriter(report.dead_letter_path, hasher)
    events = [e for chunk in merge_by_time([iter_file_batches(f, "auto", config, hasher, report, dead)
                                            for f in files]) for e in chunk]
    dead.close()
    batches = [EventBatch(events[i:i + 8192]) for i in range(0, len(events), 8192)]
    out = {}
    for d in build_detectors(config):
        runs = []
        for _ in range(repeat):
            state, t0 = DictState(), time.process_time()
            for b in batches:
                d.update(b, state)
            runs.append(time.process_time() - t0)
        out[d.name] = statistics.median(runs) * 1e6 / max(len(events), 1)
    return out


def render(results: list[dict]) -> str:
    out = ["| scenario | attack | detector | caught | delay (GPU samples) | delay (s) |", "|---|---|---|---|---|---|"]
    for r in results:
        for a in r["attacks"]:
            out.append(f"| {r['scenario']} | {a['attack']} | `{a['detector']}` ({a['entity']}) | "
                       f"{'yes' if a['caught'] else '**no**'} | "
                       f"{'' if a['delay_samples'] is None else a['delay_samples']} | "
                       f"{'' if a['delay_seconds'] is None else a['delay_seconds']} |")
    out.append("")
    out.append("| scenario | events | benign placements | false alarms | extra detections on attacked entities | replay CPU s |")
    out.append("|---|---|---|---|---|---|")
    for r in results:
        fa = ", ".join(f"`{x['detector']}` {x['entity']}" for x in r["false_alarms"]) or "0"
        ex = ", ".join(sorted({f"`{x['detector']}`" for x in r["extra_detections"]})) or "-"
        out.append(f"| {r['scenario']} | {r['events']:,} | {', '.join(r['benign_placements']) or '-'} | {fa} | "
                   f"{ex} | {r['cpu_seconds']} |")
    return "\n".join(out) + "\n"


def add_arguments(bsub) -> None:
    p = bsub.add_parser("compute", help="detection delay and false alarms per compute/access scenario",
                        description=__doc__.split("\n\n")[0])
    p.add_argument("--scenario", action="append", choices=SCENARIOS, help="scenario (repeatable; default: all)")
    p.add_argument("--seed", type=int, default=7, help="simulation seed (default 7)")
    p.add_argument("--duration-seconds", type=float, default=None, help="override the scenarios' duration")
    p.add_argument("--rate", type=float, default=None, help="override the gateway request rate")
    p.add_argument("--no-model", dest="model", action="store_false", help="leave gpu.anomaly off (no training)")
    p.add_argument("--train-scenario", default="compute-benign", choices=("compute-benign", "baseline"),
                   help="history gpu.anomaly is trained on (default compute-benign: with the stress test and "
                        "bursty inference; baseline: without them)")
    p.add_argument("--json", action="store_true", help="print the results as JSON instead of tables")
    p.add_argument("--cost", action="store_true",
                   help="also time each detector (CPU µs per event, median of 5) over the compute scenario")
    p.set_defaults(func=run)


def run(args) -> int:
    import sys

    work = Path(tempfile.mkdtemp(prefix="ramparts-bench-compute-"))
    model = train_model(work, scenario=args.train_scenario) if args.model else None
    config = _config(model)
    results = [run_scenario(s, work, config, seed=args.seed, duration=args.duration_seconds, rate=args.rate)
               for s in (args.scenario or SCENARIOS)]
    cost = None
    if args.cost:
        if not (work / "compute").is_dir():
            run_scenario("compute", work, config, seed=args.seed, duration=args.duration_seconds, rate=args.rate)
        cost = detector_cost(work, config)
    if args.json:
        print(json.dumps({"scenarios": results, "cost_us_per_event": cost} if cost else results, indent=2))
    else:
        sys.stdout.write(render(results))
        if cost:
            sys.stdout.write("\n| detector | CPU µs/event |\n|---|---:|\n" +
                             "".join(f"| {k} | {v:.2f} |\n" for k, v in cost.items()))
        sys.stderr.write(f"bench compute: seed {args.seed}, start {START}, gpu.anomaly "
                         f"{f'on (trained on {args.train_scenario}, seed 101)' if model else 'off'}; work files in {work}\n")
    return 0
