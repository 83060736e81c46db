"""Model-extraction traffic: a victim classifier behind KServe, thieves and honest clients.

The extraction detector is tested and benchmarked on this. The victim is a small MLP on
scikit-learn's ``load_digits`` (8x8 images, 64 features in [0, 16], 10 classes: it ships with
scikit-learn, so nothing is downloaded). Its callers send rows that a generator of
:func:`queries` chose, in the order a client would send them:

* attacks, each as its paper describes it at the scale of digits: ``jbda`` (Papernot et al.
  2017, Jacobian-based dataset augmentation), ``boundary`` (Tramer et al. 2016, line search
  for the decision boundary between two differently-labelled points), ``random`` (uniform
  in the input box) and ``knockoff`` (Orekondy et al. 2019, natural out-of-distribution
  images: 8x8 patches of the photos scikit-learn ships);
* benign clients: ``natural`` (held-out digits, never the same row twice), ``repeats``
  (retries and cache misses: exact re-sends) and ``batch`` (a job sending bursts of rows).

:func:`kserve_records` turns a client's rows into KServe payload-logging CloudEvents (v1
protocol, spelled by :func:`.formats.kserve_event` like every other KServe line), and
:func:`extraction_traffic` builds a whole labelled population for a benchmark: benign
clients, one thief per attack and a Sybil thief spreading Jacobian augmentation over 16
accounts behind one address. Everything is fixed by the seed.

scikit-learn (and Pillow, for the ``knockoff`` images) are imported only when first needed.
"""

from __future__ import annotations

import contextlib
import functools
import uuid
import warnings
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np

from ramparts.timeutil import NS, parse_iso

from . import formats as fmt

VICTIM_MODEL = "digits-mlp"
VICTIM_VERSION = "1"
VICTIM_NAMESPACE = "models"
N_FEATURES = 64
N_CLASSES = 10
PIXEL_MAX = 16.0  # load_digits counts ink in 4x4 cells of a 32x32 bitmap: 0..16

# Papernot et al. use lambda = 0.1 on inputs scaled to [0, 1]; digits span [0, 16].
JBDA_STEP = 0.1 * PIXEL_MAX
JBDA_SEEDS_PER_CLASS = 1  # the paper's seed set: a handful of natural points per class (here 10 in all)

ATTACK_KINDS = ("jbda", "boundary", "random", "knockoff")
BENIGN_KINDS = ("natural", "repeats", "batch")

DEFAULT_START_NS = parse_iso("2026-03-02T09:00:00Z")


# -- the victim -------------------------------------------------------------------------------------
@contextlib.contextmanager
def _one_thread() -> Iterator[None]:
    """BLAS on one thread: these matrices are tiny, and a thread pool only adds contention
    (20x slower on a busy two-core machine for the substitute's fits)."""
    from threadpoolctl import threadpool_limits  # comes with scikit-learn

    with threadpool_limits(limits=1):
        yield


@dataclass(frozen=True, eq=False)
class Victim:
    """The deployed model, its training rows and the held-out pool honest clients draw from."""

    model: object  # a fitted sklearn MLPClassifier
    train: np.ndarray
    train_labels: np.ndarray
    natural: np.ndarray
    natural_labels: np.ndarray  # the true digits of ``natural`` (what a seed set is chosen by)

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        """Class probabilities, (n, 10): what the prediction API answers."""
        return self.model.predict_proba(np.asarray(X, dtype=float).reshape(-1, N_FEATURES))

    def predict(self, X: np.ndarray) -> np.ndarray:
        """The label an attacker reads off the answer (the most probable class)."""
        return self.predict_proba(X).argmax(axis=1)


@functools.lru_cache(maxsize=1)
def victim() -> Victim:
    """The victim, trained once per process (about half a second); same model on every call."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split
    from sklearn.neural_network import MLPClassifier

    digits = load_digits()
    X_train, X_nat, y_train, y_nat = train_test_split(digits.data, digits.target, test_size=0.5, random_state=0)
    with _one_thread():
        model = MLPClassifier(hidden_layer_sizes=(64,), max_iter=400, random_state=0).fit(X_train, y_train)
    arrays = [np.ascontiguousarray(a) for a in (X_train, y_train, X_nat, y_nat)]
    for a in arrays:
        a.setflags(write=False)  # shared by every caller of the cached victim
    return Victim(model, *arrays)


def _finish(X: np.ndarray) -> np.ndarray:
    """Rows as a client writes them into JSON: inside the input box, two decimals."""
    return np.round(np.clip(np.asarray(X, dtype=float), 0.0, PIXEL_MAX), 2).reshape(-1, N_FEATURES)


# -- attacks ------------------------------------------------------------------------------------------
def _substitute(X: np.ndarray, y: np.ndarray, seed: int):
    """The attacker's own model, trained on the victim's labels (the paper's substitute DNN)."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.neural_network import MLPClassifier

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return MLPClassifier(hidden_layer_sizes=(32,), solver="lbfgs", max_iter=300,
                             random_state=seed).fit(X, y)


def _jacobian_sign(sub, X: np.ndarray, y: np.ndarray) -> np.ndarray:
    """sign(dF_y/dx) of a one-hidden-layer ReLU substitute at each row, for the label y the
    victim gave the row: the direction Papernot et al. step in (Algorithm 1, line 9).

    F is the substitute's logits, as in the authors' cleverhans code (``jacobian_graph`` on
    ``get_logits``): the softmax saturates on inputs this large, and its gradient would be
    exactly zero, leaving the "new" point where it was.
    """
    W0, W1 = sub.coefs_
    b0 = sub.intercepts_[0]
    active = (X @ W0 + b0 > 0).astype(float)
    dz = np.einsum("dh,nh,hk->ndk", W0, active, W1)  # (rows, features, logits)
    col = np.searchsorted(sub.classes_, y)
    if sub.out_activation_ == "softmax":
        grad = dz[np.arange(len(X)), :, col]
    else:  # two classes: one logistic output, the logit of classes_[1] (classes_[0]'s is its negative)
        grad = dz[:, :, 0] * np.where(col == 1, 1.0, -1.0)[:, None]
    return np.sign(grad)


def _jbda(rng: np.random.Generator, n: int, v: Victim) -> np.ndarray:
    """Papernot et al. 2017: seed set, then rounds that double it along the substitute's
    Jacobian, each new point queried for its label. Seed queries count towards ``n``."""
    seeds = [rng.choice(np.flatnonzero(v.natural_labels == c), JBDA_SEEDS_PER_CLASS, replace=False)
             for c in range(N_CLASSES)]
    S = _finish(v.natural[np.concatenate(seeds)])[:n]
    labels = v.predict(S)
    while len(S) < n:
        if len(np.unique(labels)) >= 2:
            sub = _substitute(S, labels, int(rng.integers(2**31)))
            step = _jacobian_sign(sub, S, labels)
        else:  # nothing to learn from yet: a random direction
            step = rng.choice([-1.0, 1.0], size=S.shape)
        new = _finish(S + JBDA_STEP * step)[: n - len(S)]
        S = np.vstack([S, new])
        labels = np.concatenate([labels, v.predict(new)])
    return S


def _boundary(rng: np.random.Generator, n: int, v: Victim) -> np.ndarray:
    """Tramer et al. 2016 line search: two natural points the victim labels differently (both
    queried to learn their labels), then a binary search between them for where the label
    changes, each probe a query; 8-10 probes per pair, then a new pair."""
    pool = v.natural
    labels = v.predict(pool)
    out: list[np.ndarray] = []
    while len(out) < n:
        i = int(rng.integers(len(pool)))
        j = int(rng.choice(np.flatnonzero(labels != labels[i])))
        a, b = pool[i], pool[j]
        out += [a, b]
        lo, hi = 0.0, 1.0
        for _ in range(int(rng.integers(8, 11))):
            mid = (lo + hi) / 2
            probe = _finish(a + mid * (b - a))[0]
            out.append(probe)
            if v.predict(probe)[0] == labels[i]:
                lo = mid
            else:
                hi = mid
    return _finish(np.array(out[:n]))


def _random(rng: np.random.Generator, n: int, v: Victim) -> np.ndarray:
    """Uniform in the input box [0, 16]^64 (Tramer et al.'s baseline of random queries)."""
    return _finish(rng.uniform(0.0, PIXEL_MAX, size=(n, N_FEATURES)))


@functools.lru_cache(maxsize=1)
def _sample_photos() -> tuple[np.ndarray, ...]:
    """scikit-learn's sample photos (china.jpg, flower.jpg) in grayscale, 0..255."""
    try:
        from sklearn.datasets import load_sample_images

        images = load_sample_images().images
    except ImportError as e:
        raise ImportError(f"the 'knockoff' queries need Pillow to read scikit-learn's sample photos "
                          f"(pip install pillow): {e}") from e
    luma = np.array([0.299, 0.587, 0.114])  # ITU-R BT.601, as PIL's convert("L")
    return tuple(img.astype(float) @ luma for img in images)


def _knockoff(rng: np.random.Generator, n: int, v: Victim) -> np.ndarray:
    """Orekondy et al. 2019: natural images from outside the task. Random crops of 32-64 px of
    the sample photos, averaged down to 8x8 (as digits were made from 32x32 bitmaps), scaled
    to [0, 16]."""
    photos = _sample_photos()
    out = np.empty((n, N_FEATURES))
    for k in range(n):
        img = photos[int(rng.integers(len(photos)))]
        side = 8 * int(rng.integers(4, 9))
        r0 = int(rng.integers(0, img.shape[0] - side + 1))
        c0 = int(rng.integers(0, img.shape[1] - side + 1))
        cell = side // 8
        crop = img[r0:r0 + side, c0:c0 + side]
        out[k] = crop.reshape(8, cell, 8, cell).mean(axis=(1, 3)).ravel() * (PIXEL_MAX / 255.0)
    return _finish(out)


# -- benign clients ---------------------------------------------------------------------------------
def _fresh(rng: np.random.Generator, n: int, pool: np.ndarray) -> np.ndarray:
    """``n`` pool rows without replacement (a fresh permutation once the pool is used up)."""
    rounds = -(-n // len(pool)) if n else 0
    idx = np.concatenate([rng.permutation(len(pool)) for _ in range(rounds)])[:n] if rounds else np.empty(0, int)
    return pool[idx]


def _natural(rng: np.random.Generator, n: int, v: Victim) -> np.ndarray:
    """Held-out digits, each sent once: what an OCR front end sees. (Batch clients send the
    same kind of rows; :func:`schedule` makes their bursts.)"""
    return _finish(_fresh(rng, n, v.natural))


def _repeats(rng: np.random.Generator, n: int, v: Victim) -> np.ndarray:
    """Natural rows with exact re-sends: each sent 1-6 times in a row (retries, a batch job
    re-sending), and 30 % of sends a row from earlier in the stream (cache misses)."""
    fresh = iter(_fresh(rng, n, v.natural))
    sent: list[np.ndarray] = []
    out: list[np.ndarray] = []
    while len(out) < n:
        if sent and rng.random() < 0.3:
            row = sent[int(rng.integers(len(sent)))]
        else:
            row = next(fresh)
            sent.append(row)
        out.extend([row] * int(rng.integers(1, 7)))
    return _finish(np.array(out[:n]))


GENERATORS: dict[str, Callable[[np.random.Generator, int, Victim], np.ndarray]] = {
    "jbda": _jbda, "boundary": _boundary, "random": _random, "knockoff": _knockoff,
    "natural": _natural, "repeats": _repeats, "batch": _natural,
}


def queries(kind: str, rng: np.random.Generator, n: int, victim: Victim) -> np.ndarray:
    """``n`` query rows of one client kind, (n, 64), in the order the client sends them;
    inside [0, 16], two decimals.

    >>> X = queries("random", np.random.default_rng(0), 3, None)
    >>> X.shape, bool(X.min() >= 0 and X.max() <= 16)
    ((3, 64), True)
    """
    try:
        gen = GENERATORS[kind]
    except KeyError:
        raise ValueError(f"unknown query kind '{kind}' (known: {', '.join(GENERATORS)})") from None
    if n < 0:
        raise ValueError(f"n must be at least 0, got {n}")
    if n == 0:
        return np.empty((0, N_FEATURES))
    with _one_thread():
        return gen(rng, int(n), victim)


# -- timing and KServe records --------------------------------------------------------------------
def sybil_principals(n: int = 16) -> list[str]:
    """The accounts of one Sybil thief: free-trial sign-ups, all used from one address."""
    return [f"trial-{i + 1:02d}" for i in range(n)]


def schedule(rng: np.random.Generator, n_rows: int, *, start_ns: int, rate_per_s: float,
             rows_per_request: int = 1, bursty: bool = False) -> np.ndarray:
    """The request time (ns, int64) of each of ``n_rows`` rows: rows sent together share it.

    ``rate_per_s`` is the mean rate in queries (rows) per second; the first request is at
    ``start_ns`` (rounded up to the microsecond, as all the times are). Steady clients send requests of ``rows_per_request`` rows at exponential
    gaps. ``bursty`` clients (a batch job) send 2-5 requests back to back (0.2-2 s apart, as
    fast as answers come back), then sleep for as long as keeps the mean rate: minutes at
    benign rates.
    """
    if rate_per_s <= 0 or rows_per_request < 1:
        raise ValueError("rate_per_s must be above 0 and rows_per_request at least 1")
    n_req = -(-n_rows // rows_per_request)
    gaps_s = np.empty(n_req)
    if bursty:
        k = 0
        while k < n_req:
            size = min(int(rng.integers(2, 6)), n_req - k)
            gaps_s[k + 1:k + size] = rng.uniform(0.2, 2.0, size - 1)
            if k + size < n_req:
                gaps_s[k + size] = size * rows_per_request / rate_per_s * rng.uniform(0.6, 1.4)
            k += size
    else:
        gaps_s[:] = rng.exponential(rows_per_request / rate_per_s, n_req)
    gaps_s[0] = 0.0
    # On the microsecond grid KServe's CloudEvent ``time`` carries, so these are the times the
    # pipeline will see; 1 us apart at least, so that requests stay distinct.
    start_us = -(-start_ns // 1000)
    req_us = start_us + np.cumsum((gaps_s * 1e6).astype(np.int64) + 1) - 1
    return np.repeat(req_us * 1000, rows_per_request)[:n_rows]


def _ce_id(rng: np.random.Generator) -> str:
    return str(uuid.UUID(bytes=rng.bytes(16), version=4))


def exchange_records(victim: Victim, *, principal: str, src_ip: str, X: np.ndarray, row_ts: np.ndarray,
                     rng: np.random.Generator) -> list[tuple[int, bytes]]:
    """KServe payload-log records of rows sent at ``row_ts`` (consecutive rows with the same
    time form one request): request and response CloudEvents as ``benign.prediction`` writes
    them, v1 protocol, in time order."""
    X = _finish(X)
    row_ts = np.asarray(row_ts, dtype=np.int64)
    if len(X) != len(row_ts):
        raise ValueError(f"{len(X)} rows but {len(row_ts)} times")
    if len(X) == 0:
        return []
    with _one_thread():
        probs = np.round(victim.predict_proba(X), 5)
    starts = np.flatnonzero(np.r_[True, row_ts[1:] != row_ts[:-1]])
    ends = np.r_[starts[1:], len(X)]
    headers = {"X-Forwarded-For": [src_ip], "X-User-Id": [principal]}
    out: list[tuple[int, bytes]] = []
    for a, b in zip(starts, ends):
        t = int(row_ts[a])
        ce_id = _ce_id(rng)
        common = {"ce_id": ce_id, "service": VICTIM_MODEL, "namespace": VICTIM_NAMESPACE, "endpoint": "default"}
        out.append((t, fmt.kserve_event(is_request=True, ts=t, headers=headers,
                                        data={"instances": X[a:b].tolist()}, **common)))
        done = t + int((rng.uniform(2.5, 25.0) + 0.05 * (b - a)) * 1e6)
        out.append((done, fmt.kserve_event(is_request=False, ts=done, headers=None,
                                           data={"predictions": probs[a:b].tolist()}, **common)))
    out.sort(key=lambda rec: rec[0])  # stable: a request stays before its response
    return out


def kserve_records(victim: Victim, *, principal: str, src_ip: str, X: np.ndarray, start_ns: int,
                   rate_per_s: float, rng: np.random.Generator, rows_per_request: int = 1,
                   bursty: bool = False, end_ns: int | None = None) -> list[tuple[int, bytes]]:
    """(ts, line) pairs of a client sending the rows of ``X`` from ``start_ns`` on at
    ``rate_per_s`` queries a second (see :func:`schedule`); with ``end_ns``, requests from
    then on are not sent."""
    row_ts = schedule(rng, len(X), start_ns=start_ns, rate_per_s=rate_per_s, rows_per_request=rows_per_request,
                      bursty=bursty)
    keep = row_ts < end_ns if end_ns is not None else slice(None)
    return exchange_records(victim, principal=principal, src_ip=src_ip, X=np.asarray(X)[keep],
                            row_ts=row_ts[keep], rng=rng)


# -- a labelled population for benchmarks ---------------------------------------------------------------
@dataclass
class Traffic:
    """KServe payload logs of benign clients and thieves, with who is who.

    ``principals`` maps each principal to its kind (``benign:natural``, ``attack:jbda``,
    ``attack:sybil``...); ``query_ts`` and ``queries`` hold, per principal, the request
    time (ns) and the row of each query in the order sent, so an alert time turns into
    "queries until first alert".
    """

    lines: bytes
    principals: dict[str, str]
    src_ips: dict[str, str]
    query_ts: dict[str, np.ndarray]
    queries: dict[str, np.ndarray]
    start_ns: int
    attack_start_ns: int  # when the first thief sends its first query

    def of_kind(self, prefix: str) -> list[str]:
        """Principals whose kind starts with ``prefix`` (``"attack"``, ``"benign:batch"``)."""
        return [p for p, k in self.principals.items() if k.startswith(prefix)]


SYBIL_SRC_IP = "192.0.2.150"
NAT_SRC_IP = "203.0.113.10"  # an office whose two callers share one public address


def _rng(seed: int, name: str) -> np.random.Generator:
    """An independent stream per principal, so adding a client does not shift the others."""
    return np.random.default_rng([seed, zlib.crc32(name.encode())])


def _log_uniform(rng: np.random.Generator, lo: float, hi: float) -> float:
    return float(np.exp(rng.uniform(np.log(lo), np.log(hi))))


def extraction_traffic(seed: int, *, n_benign: int = 30, queries_per_benign: int = 200, attack_queries: int = 300,
                       start_ns: int = DEFAULT_START_NS) -> Traffic:
    """Benign clients of the three kinds (about a third each; two share a NAT address), one
    thief per attack kind, and a Sybil thief running ``jbda`` over 16 accounts from one
    address. Benign clients send 0.05-1 query/s from the start (batch clients in bursts);
    thieves script a few queries a second and start one after another from 10 % of the run.
    """
    v = victim()
    principals: dict[str, str] = {}
    src_ips: dict[str, str] = {}
    query_ts: dict[str, np.ndarray] = {}
    rows: dict[str, np.ndarray] = {}
    records: list[tuple[int, bytes]] = []

    def send(name: str, ip: str, X: np.ndarray, ts: np.ndarray, rng: np.random.Generator) -> None:
        src_ips[name], query_ts[name], rows[name] = ip, ts, X
        records.extend(exchange_records(v, principal=name, src_ip=ip, X=X, row_ts=ts, rng=rng))

    for i in range(n_benign):
        name = f"client-{i:02d}"
        kind = BENIGN_KINDS[i % len(BENIGN_KINDS)]
        r = _rng(seed, name)
        ip = NAT_SRC_IP if i < 2 else f"10.64.{i // 200}.{10 + i % 200}"
        X = queries(kind, r, queries_per_benign, v)
        batch = kind == "batch"
        ts = schedule(r, len(X), start_ns=start_ns + int(r.uniform(0, 60) * NS), rate_per_s=_log_uniform(r, 0.05, 1.0),
                      rows_per_request=int(r.integers(10, 51)) if batch else 1, bursty=batch)
        principals[name] = f"benign:{kind}"
        send(name, ip, X, ts, r)

    # Thieves start once the benign clients have run a while: 10 % into their run, then one
    # after another, so each is measured against an established population.
    benign_end = max((int(ts[-1]) for ts in query_ts.values() if len(ts)), default=start_ns)
    span = benign_end - start_ns
    first_attack = start_ns + int(0.10 * span)
    for j, kind in enumerate(ATTACK_KINDS + ("sybil",)):
        r = _rng(seed, f"attack:{kind}")
        at = first_attack + int(0.08 * j * span)
        X = queries("jbda" if kind == "sybil" else kind, r, attack_queries, v)
        ts = schedule(r, len(X), start_ns=at, rate_per_s=float(r.uniform(2.0, 5.0)))
        if kind != "sybil":
            name = f"client-{n_benign + j:02d}"
            principals[name] = f"attack:{kind}"
            send(name, f"192.0.2.{20 + j}", X, ts, r)
            continue
        accounts = sybil_principals(16)
        for k, name in enumerate(accounts):  # one script, the rows dealt round-robin over the keys
            principals[name] = "attack:sybil"
            send(name, SYBIL_SRC_IP, X[k::len(accounts)], ts[k::len(accounts)], r)

    order = sorted(range(len(records)), key=lambda k: records[k][0])
    return Traffic(lines=b"\n".join(records[k][1] for k in order), principals=principals, src_ips=src_ips,
                   query_ts=query_ts, queries=rows, start_ns=start_ns, attack_start_ns=first_attack)
