"""Model extraction through KServe's prediction API: five thieves and the digits clients they hide among.

The victim is ``digits-mlp`` in namespace ``models`` (:mod:`..extraction`). Every thief is an
external account scripting a few queries a second, one row per request, until it has sent
its budget (300 queries, fewer if the window is short) or the window ends:

* ``extraction-jbda``: Jacobian-based dataset augmentation (Papernot et al. 2017);
* ``extraction-boundary``: line search for the decision boundary (Tramer et al. 2016);
* ``extraction-random``: uniform random inputs;
* ``extraction-knockoff``: natural images from outside the task (Orekondy et al. 2019);
* ``extraction-sybil``: Jacobian augmentation dealt round-robin over 16 trial accounts from
  one address, so that no single account sends much.

Expected alert: ``extraction.queries`` on the principal (on the source address for the Sybil).

``extraction-benign-clients`` labels nothing: it adds the model's honest callers (OCR
services sending held-out digits, retrying clients re-sending exact rows, batch jobs in
bursts) for the whole window, so that a scenario has something for the thieves to hide among.
"""

from __future__ import annotations

import numpy as np

from ramparts.timeutil import NS

from .. import extraction as ex
from ..world import Label, World
from . import Attack

ATTACK_QUERIES = 300
SYBIL_SRC_IP = ex.SYBIL_SRC_IP

# kind -> (principal, source address, what the ground truth says it does)
THIEVES = {
    "jbda": ("acct-7731", "192.0.2.41",
             ("Jacobian-based dataset augmentation (Papernot et al. 2017): 10 natural seeds, then rounds "
              "doubling the set along a substitute's gradient")),
    "boundary": ("acct-2209", "192.0.2.58",
                 ("decision-boundary line search (Tramer et al. 2016): 8-10 probes bisecting each pair of "
                  "differently-labelled digits")),
    "random": ("acct-9054", "192.0.2.63", "uniformly random inputs in [0, 16]^64"),
    "knockoff": ("acct-1178", "192.0.2.90",
                 "natural photo patches from outside the task (Knockoff Nets, Orekondy et al. 2019)"),
}

# (principal, source address, kind): the model's honest callers. The two branch scanners sit
# behind one office NAT, as offices do.
BENIGN_CLIENTS = (
    ("svc-mailroom-ocr", "10.42.7.21", "natural"), ("svc-forms-intake", "10.42.7.34", "natural"),
    ("branch-scanner-1", "203.0.113.60", "natural"), ("branch-scanner-2", "203.0.113.60", "natural"),
    ("svc-claims-scan", "10.42.7.48", "repeats"), ("mobile-deposit-api", "10.42.8.12", "repeats"),
    ("svc-kyc-docs", "10.42.8.27", "repeats"), ("svc-invoice-reader", "10.42.8.40", "repeats"),
    ("svc-archive-backfill", "10.42.9.15", "batch"), ("svc-census-batch", "10.42.9.22", "batch"),
    ("svc-survey-digitize", "10.42.9.31", "batch"), ("analyst-notebook-digits", "10.42.6.41", "batch"),
)


def _rng(world: World, name: str) -> np.random.Generator:
    """A numpy stream fixed by the run's seed and the attack's name (see ``World.rng``)."""
    return np.random.default_rng(world.rng(name).getrandbits(128))


def _budget(rng: np.random.Generator, start: int, end: int) -> tuple[float, int, int]:
    """A scripted client's rate (2-5 queries/s), its first query a few seconds into the
    window, and as many queries as fit (at most ``ATTACK_QUERIES``)."""
    rate = float(rng.uniform(2.0, 5.0))
    first = start + int(rng.uniform(0, min(10.0, (end - start) / NS / 10)) * NS)
    n = max(1, min(ATTACK_QUERIES, int((end - first) / NS * rate * 0.8)))
    return rate, first, n


def _write(world: World, records: list[tuple[int, bytes]]) -> tuple[int, int]:
    for ts, line in records:
        world.out.add("kserve", ts, line)
    return records[0][0], records[-1][0]


def _thief(kind: str) -> Attack:
    principal, src_ip, what = THIEVES[kind]
    name = f"extraction-{kind}"

    def inject(world: World, start: int, end: int) -> list[Label]:
        rng = _rng(world, f"attack:{name}")
        rate, first, n = _budget(rng, start, end)
        v = ex.victim()
        X = ex.queries(kind, rng, n, v)
        records = ex.kserve_records(v, principal=principal, src_ip=src_ip, X=X, start_ns=first, rate_per_s=rate,
                                    rng=rng, end_ns=end)
        lo, hi = _write(world, records)
        return [Label(name, "extraction.queries", "principal", principal, lo, hi,
                      f"{len(records) // 2} queries to {ex.VICTIM_MODEL} in {(hi - lo) / NS:.0f} s from {src_ip}: "
                      f"{what}")]

    return Attack(name, f"model extraction on {ex.VICTIM_MODEL}: {what}", inject)


def _sybil(world: World, start: int, end: int) -> list[Label]:
    rng = _rng(world, "attack:extraction-sybil")
    rate, first, n = _budget(rng, start, end)
    v = ex.victim()
    X = ex.queries("jbda", rng, n, v)
    ts = ex.schedule(rng, n, start_ns=first, rate_per_s=rate)
    keep = ts < end
    X, ts = X[keep], ts[keep]
    accounts = ex.sybil_principals(16)
    records = []
    for k, principal in enumerate(accounts):  # one script, rotating its keys query by query
        records += ex.exchange_records(v, principal=principal, src_ip=SYBIL_SRC_IP, X=X[k::len(accounts)],
                                       row_ts=ts[k::len(accounts)], rng=rng)
    records.sort(key=lambda rec: rec[0])
    lo, hi = _write(world, records)
    return [Label("extraction-sybil", "extraction.queries", "src_ip", SYBIL_SRC_IP, lo, hi,
                  f"{len(X)} queries to {ex.VICTIM_MODEL} in {(hi - lo) / NS:.0f} s from {SYBIL_SRC_IP}, dealt "
                  f"round-robin over {len(accounts)} trial accounts ({accounts[0]}..{accounts[-1]}): Jacobian-based "
                  f"dataset augmentation")]


def _benign_clients(world: World, start: int, end: int) -> list[Label]:
    """Honest callers of the victim over the whole window: 0.05-1 query/s each."""
    v = ex.victim()
    for principal, src_ip, kind in BENIGN_CLIENTS:
        rng = _rng(world, f"extraction-benign:{principal}")
        rate = float(np.exp(rng.uniform(np.log(0.05), np.log(1.0))))
        batch = kind == "batch"
        rows_per_request = int(rng.integers(10, 51)) if batch else 1
        # Clients are already running when the window opens: the first request lands anywhere
        # in one mean gap (for a batch job, between two bursts), within the window's first half.
        wait_s = min(rows_per_request * (3 if batch else 1) / rate, (end - start) / NS / 2)
        first = start + int(rng.uniform(0, wait_s) * NS)
        ts = ex.schedule(rng, int(rate * (end - start) / NS * 2) + 2 * rows_per_request, start_ns=first,
                         rate_per_s=rate, rows_per_request=rows_per_request, bursty=batch)
        ts = ts[ts < end]
        X = ex.queries(kind, rng, len(ts), v)
        for t, line in ex.exchange_records(v, principal=principal, src_ip=src_ip, X=X, row_ts=ts, rng=rng):
            world.out.add("kserve", t, line)
    return []


EXTRACTION_ATTACKS = [_thief(kind) for kind in THIEVES] + [
    Attack("extraction-sybil", f"model extraction on {ex.VICTIM_MODEL} by 16 trial accounts from one address, "
                               "Jacobian-based augmentation dealt round-robin over them", _sybil),
    Attack("extraction-benign-clients", f"no attack: {len(BENIGN_CLIENTS)} honest callers of {ex.VICTIM_MODEL} "
                                        "(OCR services, retrying clients, batch jobs in bursts)", _benign_clients),
]
