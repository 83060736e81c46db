"""``ramparts simulate``: realistic telemetry in the real formats, with labelled attacks.

One run writes, beside a ground-truth manifest ``NAME.json``, one file per format as the
upstream tool writes it: ``NAME.envoy_json.log`` (Envoy AI Gateway access log),
``NAME.kserve.log`` (KServe payload-logging CloudEvents), ``NAME.dcgm.log`` (dcgm-exporter
text with sample timestamps), ``NAME.falco.log`` (Falco JSON alerts), ``NAME.k8s_audit.log``
(Kubernetes audit events) and ``NAME.k8s_pods.log`` (``kubectl get pods -A -o json``: the
authorized GPU work). Each is auto-detected as its format and parses without a dead letter.

A scenario is benign traffic (``benign.py``) plus attacks (``attacks/``) placed on the
timeline; the manifest lists each attack's interval, the alert family expected to catch it
and its entity as the pipeline sees it. The same seed and start give the same bytes.

>>> sorted(SCENARIOS)
['access', 'baseline', 'compute', 'compute-benign', 'drift', 'extraction', 'mix']
>>> [p.attack for p in SCENARIOS["mix"].attacks]
['credential-stuffing', 'kubectl-exec', 'crypto-miner']
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

from ramparts.errors import ConfigError
from ramparts.timeutil import NS, format_rfc3339, parse_iso

from . import benign
from .attacks import ATTACKS
from .world import FORMATS, Label, build_world


@dataclass(frozen=True)
class Placement:
    """An attack of ``ATTACKS`` and where it runs, as fractions of the run's duration."""

    attack: str
    start: float
    end: float


@dataclass(frozen=True)
class Scenario:
    name: str
    description: str
    attacks: tuple[Placement, ...] = ()
    duration_seconds: float = 720.0
    rate: float = 30.0  # mean gateway requests per second (KServe gets a tenth of it)


SCENARIOS: dict[str, Scenario] = {s.name: s for s in (
    Scenario("baseline", "benign traffic only: 36 gateway principals over 4 models, KServe callers, 12 GPUs on "
                         "3 nodes with their authorized pods, audit heartbeats and reads, routine Falco notices"),
    Scenario("mix", "baseline plus credential stuffing, a kubectl exec into a serving pod and a crypto-miner "
                    "on a spare GPU",
             attacks=(Placement("credential-stuffing", 0.20, 0.35), Placement("kubectl-exec", 0.40, 0.75),
                      Placement("crypto-miner", 0.55, 0.90))),
    # The thieves one after another, each alone on the victim with its honest callers, after the
    # first 30% of the window in which only the honest callers run: the detector learns what a
    # model's callers send from callers it has judged (as it would have in a running deployment).
    Scenario("extraction", "baseline plus 12 honest callers of a digits classifier on KServe and five model-extraction "
                           "attacks on it: Jacobian augmentation, boundary line search, random inputs, Knockoff "
                           "natural images, and a Sybil spreading Jacobian augmentation over 16 accounts",
             attacks=(Placement("extraction-benign-clients", 0.0, 1.0), Placement("extraction-jbda", 0.30, 0.43),
                      Placement("extraction-boundary", 0.43, 0.56), Placement("extraction-random", 0.56, 0.69),
                      Placement("extraction-knockoff", 0.69, 0.82), Placement("extraction-sybil", 0.82, 0.95))),
    # Unauthorized compute (issue 6): the estate's training, inference and idle GPUs as they are,
    # an authorized stress test and bursty inference that must not alarm, a miner on an idle GPU
    # and one inside an authorized pod.
    Scenario("compute-benign", "authorized training, bursty inference, idle GPUs and an authorized gpu_burn "
                               "stress test: no alarm expected",
             attacks=(Placement("inference-burst", 0.10, 0.90), Placement("stress-test", 0.30, 0.70))),
    Scenario("compute", "compute-benign plus a crypto-miner on an idle GPU and a miner inside a pod authorized "
                        "on its GPU",
             attacks=(Placement("inference-burst", 0.10, 0.90), Placement("stress-test", 0.30, 0.70),
                      Placement("crypto-miner", 0.20, 0.60), Placement("miner-in-pod", 0.45, 0.95))),
    Scenario("access", "credential stuffing, a stolen key used from a new network, and an exec into a model server",
             attacks=(Placement("credential-stuffing", 0.20, 0.35), Placement("stolen-key", 0.55, 0.85),
                      Placement("kubectl-exec", 0.40, 0.75))),
    # Long enough for a version's reference (its first 500 rows) and a few judged windows at the
    # KServe rate of the default gateway rate.
    Scenario("drift", "baseline plus a canary of fraud-xgb version 4 whose feature pipeline breaks part way, and "
                      "a partner's traffic to churn-lgbm drifting slowly away from the usual inputs",
             attacks=(Placement("drift-rollout", 0.25, 1.0), Placement("drift-gradual", 0.40, 1.0)),
             duration_seconds=1200.0),
)}


@dataclass
class Manifest:
    """The ground truth of one run, and where its files are."""

    scenario: str
    seed: int
    start: int  # ns
    end: int  # ns
    files: dict[str, str]  # format -> file name, beside the manifest
    records: dict[str, int]  # format -> records as the tool wrote them (lines; pods for the pod list)
    attacks: list[Label] = field(default_factory=list)
    path: Path | None = None  # the manifest file

    def to_dict(self) -> dict:
        return {"scenario": self.scenario, "seed": self.seed, "start": format_rfc3339(self.start),
                "end": format_rfc3339(self.end), "files": self.files, "records": self.records,
                "attacks": [a.to_dict() for a in self.attacks]}

    def file(self, fmt: str) -> Path:
        """The path of one format's file."""
        base = self.path.parent if self.path is not None else Path(".")
        return base / self.files[fmt]


def get_scenario(name: str) -> Scenario:
    try:
        return SCENARIOS[name]
    except KeyError:
        import difflib

        close = difflib.get_close_matches(name, SCENARIOS, n=1)
        hint = f"; did you mean '{close[0]}'?" if close else ""
        raise ConfigError(f"unknown scenario '{name}'{hint} (known: {', '.join(SCENARIOS)}; "
                          "`ramparts simulate --list` describes them)") from None


def output_paths(out_path: str | Path) -> tuple[Path, dict[str, Path]]:
    """The manifest path and the file of each format beside it.

    >>> m, files = output_paths("sim/mix.json")
    >>> str(m), files["dcgm"].name
    ('sim/mix.json', 'mix.dcgm.log')
    """
    out = Path(out_path)
    stem = out.name[:-5] if out.name.endswith(".json") else out.name
    return out, {f: out.with_name(f"{stem}.{f}.log") for f in FORMATS}


def simulate(name: str, out_path: str | Path, seed: int = 7, start: str | int | None = None,
             duration_seconds: float | None = None, rate: float | None = None) -> Manifest:
    """Write scenario ``name``'s telemetry and ground truth; returns the manifest.

    ``start`` is RFC 3339 text or epoch ns (default: now, floored to the minute, so a demo
    shows recent data); ``duration_seconds`` and ``rate`` (mean gateway requests per second)
    default to the scenario's.
    """
    scenario = get_scenario(name)
    if start is None:
        start_ns = time.time_ns() // (60 * NS) * 60 * NS
    elif isinstance(start, str):
        try:
            start_ns = parse_iso(start)
        except ValueError as e:
            raise ConfigError(f"--start: {e}; give RFC 3339 time such as 2026-03-02T09:00:00Z") from None
    else:
        start_ns = int(start)
    duration = scenario.duration_seconds if duration_seconds is None else float(duration_seconds)
    if not 60 <= duration <= 7 * 86400:
        raise ConfigError(f"--duration-seconds must be between 60 and 604800, got {duration:g}")
    rate = scenario.rate if rate is None else float(rate)
    if not 0 < rate <= 100_000:
        raise ConfigError(f"--rate must be above 0 and at most 100000 requests per second, got {rate:g}")

    world = build_world(seed, start_ns, start_ns + int(duration * NS), rate)
    labels: list[Label] = []
    for p in scenario.attacks:  # attacks first: they may change what benign generators write
        labels.extend(ATTACKS[p.attack].inject(world, world.at(p.start), world.at(p.end)))
    for fmt in FORMATS:
        benign.GENERATORS[fmt](world)

    manifest_path, paths = output_paths(out_path)
    manifest_path.parent.mkdir(parents=True, exist_ok=True)
    records = {}
    for fmt, path in paths.items():
        body = world.out.body(fmt)
        path.write_bytes(body)
        records[fmt] = world.out.count(fmt)
    for a in labels:
        # Records carry milliseconds (Envoy) to nanoseconds (Falco): bounds are rounded outward
        # to the millisecond so that every record of an attack lies inside its interval.
        a.start -= a.start % 1_000_000
        a.end += -a.end % 1_000_000
    labels.sort(key=lambda a: (a.start, a.name, a.detector))
    manifest = Manifest(scenario.name, seed, world.start, world.end, {f: p.name for f, p in paths.items()},
                        records, labels, manifest_path)
    manifest_path.write_text(json.dumps(manifest.to_dict(), indent=2) + "\n")
    return manifest


# -- command line ----------------------------------------------------------------------------------
def add_arguments(sub) -> None:
    """Add the ``simulate`` subcommand to an argparse subparsers object."""
    p = sub.add_parser(
        "simulate", help="write realistic telemetry with labelled attacks",
        description="Write a scenario's telemetry in the real formats (Envoy AI Gateway JSON, KServe payload logs, "
                    "DCGM exporter text, Falco JSON, Kubernetes audit, a kubectl pod list) beside FILE, and the "
                    "ground truth of its attacks (intervals, expected detector, entity) to FILE.")
    p.add_argument("--scenario", default="mix", choices=list(SCENARIOS), metavar="NAME",
                   help=f"scenario (default mix); one of: {', '.join(SCENARIOS)}")
    p.add_argument("--list", action="store_true", help="list the scenarios and attacks, and exit")
    p.add_argument("--out", metavar="FILE", help="ground-truth manifest to write (JSON); the telemetry goes "
                                                 "beside it as FILE-without-.json.<format>.log")
    p.add_argument("--seed", type=int, default=7, help="random seed (default 7): same seed and start, same bytes")
    p.add_argument("--start", metavar="RFC3339", help="event time of the first record (default: now, floored "
                                                      "to the minute)")
    p.add_argument("--duration-seconds", type=float, help="event time covered (default: the scenario's, 720)")
    p.add_argument("--rate", type=float, help="mean gateway requests per second (default: the scenario's, 30)")
    p.set_defaults(func=run)


def run(args) -> int:
    import sys

    if args.list:
        for s in SCENARIOS.values():
            print(f"{s.name:10} {s.description}")
            for pl in s.attacks:
                print(f"{'':10}   {pl.attack} at {pl.start:.0%}-{pl.end:.0%}: {ATTACKS[pl.attack].description}")
        return 0
    if not args.out:
        print("ramparts simulate: error: --out FILE is required (or --list to see the scenarios)", file=sys.stderr)
        return 2
    t0 = time.perf_counter()
    m = simulate(args.scenario, args.out, seed=args.seed, start=args.start,
                 duration_seconds=args.duration_seconds, rate=args.rate)
    took = time.perf_counter() - t0
    err = sys.stderr
    err.write(f"simulate {m.scenario} (seed {m.seed}): {format_rfc3339(m.start)} .. {format_rfc3339(m.end)}, "
              f"{sum(m.records.values())} records in {took:.1f} s\n")
    for fmt, n in m.records.items():
        err.write(f"  {m.file(fmt)}  {n} {'pods' if fmt == 'k8s_pods' else 'records'}\n")
    err.write(f"  {m.path}  ground truth, {len(m.attacks)} labelled attack interval(s)\n")
    for a in m.attacks:
        err.write(f"    {format_rfc3339(a.start)} .. {format_rfc3339(a.end)}  {a.name}: {a.detector} "
                  f"on {a.entity_type} {a.entity_id}\n")
    return 0
