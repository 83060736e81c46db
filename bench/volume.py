"""``ramparts bench volume``: extraction by volume on a simulated LLM gateway.

Per seed, the simulator's gateway (36 principals, sessions busy and quiet, a key retrying
with 401s; Envoy AI Gateway JSON) runs for ``minutes`` minutes at ``rate`` requests a second.
From ``attack_at`` on, two thieves harvest completions for ten minutes, each a scripted
client at ``thief_rate`` requests a second with long answers (distillation):

* ``insider``: the key of the gateway's least busy principal, from its usual address (a
  stolen or misused key: the principal's own baseline is what it is judged against);
* ``newcomer``: a key never seen before, from a cloud address (judged against the model's
  other callers, once the worker has known the model for ``min_minutes``).

Everything goes through the Envoy parser and ``extraction.volume`` in batches of 1,000 events,
in time order. Reported per seed: the thieves' requests until their first alert, and the
benign principals flagged.
"""

from __future__ import annotations

import random
import statistics
import time
from dataclasses import dataclass, field

NS = 1_000_000_000


@dataclass
class VolumeResult:
    seed: int
    events: int = 0
    requests_until_alert: dict[str, int | None] = field(default_factory=dict)
    benign: int = 0
    benign_flagged: list[str] = field(default_factory=list)
    seconds: float = 0.0


def _thief_lines(world, r: random.Random, api_key: str, ip: str, model: str, start: int, end: int,
                 rate: float) -> list[tuple[int, bytes]]:
    from ramparts.streams.simulate import formats as fmt
    from ramparts.streams.simulate.benign import GATEWAY_HOST, request_id

    out, t = [], start
    while t < end:
        tin, tout = r.randint(300, 900), r.randint(1500, 4000)  # prompts in, long completions out
        up = int(400 + tout * 12 * r.uniform(0.9, 1.1))
        out.append((t, fmt.envoy_line(
            ts=t, method="POST", path="/v1/chat/completions", status=200, flags="-", bytes_in=tin * 4 + 300,
            bytes_out=tout * 4 + 400, duration_ms=up + 2, upstream_ms=up, src_ip=ip,
            user_agent="python-httpx/0.27.2", request_id=request_id(r), authority=GATEWAY_HOST,
            upstream_host="10.42.2.11:8000", api_key=api_key, model=model, backend=None, tokens_in=tin,
            tokens_out=tout)))
        t += int(r.expovariate(rate) * NS) + 1
    return out


def run_seed(seed: int, *, minutes: int = 90, rate: float = 30.0, attack_at: int = 60, thief_rate: float = 4.0,
             options: dict | None = None) -> VolumeResult:
    from ramparts.detectors.base import DictState
    from ramparts.detectors.volume import VolumeDetector
    from ramparts.events import EventBatch
    from ramparts.redact import Hasher
    from ramparts.streams.decode import parse_bytes
    from ramparts.streams.simulate import benign
    from ramparts.streams.simulate.world import CHAT_MODELS, api_key, build_world

    start = 1_795_000_000 * NS // (60 * NS) * 60 * NS
    world = build_world(seed, start, start + minutes * 60 * NS, rate)
    benign.GENERATORS["envoy_json"](world)
    r = random.Random(f"bench-volume:{seed}")
    quiet = min((p for p in world.principals if set(p.models) & set(CHAT_MODELS)), key=lambda p: p.weight)
    model = next(m for m in quiet.models if m in CHAT_MODELS)
    t0, t1 = start + attack_at * 60 * NS, start + (attack_at + 10) * 60 * NS
    thieves = {"insider": (quiet.api_key, quiet.src_ips[0]), "newcomer": (api_key(r), "192.0.2.88")}
    for name, (key, ip) in thieves.items():
        for t, line in _thief_lines(world, r, key, ip, model, t0 + int(r.uniform(0, 20) * NS), t1, thief_rate):
            world.out.add("envoy_json", t, line)

    hasher = Hasher("bench-volume-hash-key-0123456789abcdef")
    batch, dead, _ = parse_bytes("envoy_json", world.out.body("envoy_json"), hasher=hasher)
    if dead:
        raise RuntimeError(f"the simulated gateway log has {len(dead)} dead letters: {dead[0].reason}")
    events = sorted(batch.events, key=lambda e: e["ts"])
    ids = {name: hasher.principal(key) for name, (key, _ip) in thieves.items()}
    res = VolumeResult(seed, events=len(events))
    det, state = VolumeDetector(options or {}), DictState()
    first: dict[str, int] = {}
    began = time.perf_counter()
    for i in range(0, len(events), 1000):
        for a in det.update(EventBatch(events[i:i + 1000]), state):
            first.setdefault(a["entity"]["id"], a["ts"])
    res.seconds = time.perf_counter() - began
    for name, pid in ids.items():
        at = first.get(pid)
        res.requests_until_alert[name] = None if at is None else sum(
            1 for e in events if e.get("principal") == pid and t0 <= e["ts"] <= at and (e.get("status") or 0) < 400)
    benign_ids = {e.get("principal") for e in events} - set(ids.values()) - {None}
    res.benign = len(benign_ids)
    res.benign_flagged = sorted(p for p in first if p in benign_ids)
    return res


def summarize(results: list[VolumeResult]) -> dict:
    out: dict = {"seeds": [x.seed for x in results], "thieves": {}}
    for name in ("insider", "newcomer"):
        got = [x.requests_until_alert.get(name) for x in results]
        caught = [g for g in got if g is not None]
        out["thieves"][name] = {"requests_until_alert": got, "caught": len(caught),
                                "median": statistics.median(caught) if caught else None}
    out["benign"] = [x.benign for x in results]
    out["benign_flagged"] = [len(x.benign_flagged) for x in results]
    out["events_per_seed"] = [x.events for x in results]
    out["detector_seconds_per_seed"] = [round(x.seconds, 2) for x in results]
    return out


def markdown(summary: dict) -> str:
    n = len(summary["seeds"])
    rows = ["| thief | requests until the first alert (median) | caught |", "|---|---|---|"]
    for name, t in summary["thieves"].items():
        rows.append(f"| {name} | {t['median'] if t['median'] is not None else 'never'} | {t['caught']}/{n} |")
    rows.append("")
    rows.append(f"Benign principals flagged: {summary['benign_flagged']} (of {summary['benign']} per seed).")
    return "\n".join(rows)


def add_arguments(sub) -> None:
    p = sub.add_parser("volume", help="extraction.volume on a simulated gateway: requests until alert, benign flagged")
    p.add_argument("--seeds", type=int, default=5, help="seeds 1..N (default 5)")
    p.add_argument("--minutes", type=int, default=90, help="gateway minutes per seed (default 90; thieves at 60)")
    p.add_argument("--json", action="store_true", help="print the full summary as JSON too")
    p.set_defaults(func=run)


def run(args) -> int:
    import json

    if args.minutes < 75:
        raise SystemExit("ramparts bench volume: --minutes must be at least 75 (the thieves run from minute 60 to 70)")
    results = [run_seed(s, minutes=args.minutes) for s in range(1, args.seeds + 1)]
    summary = summarize(results)
    print(markdown(summary))
    if args.json:
        print(json.dumps(summary, indent=1))
    return 0
