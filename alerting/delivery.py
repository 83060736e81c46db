"""Delivery from the outbox: retries with backoff and jitter, Retry-After, a breaker per output.

One :class:`Deliverer` serves every configured output; :meth:`Deliverer.start` runs one thread
per output (a slow receiver never holds up another), beside the worker's event path, which
only ever writes the outbox once per batch. Each thread takes its output's earliest due
notification, counts the attempt in the outbox, sends it, and records what happened:

* 2xx: ``delivered`` (its latency, from queued to answered, is measured);
* a retryable failure (network error, timeout, 408, 425, 429, 5xx): tried again after
  ``retry_initial_seconds * 2**(attempts-1)``, at most ``retry_max_seconds``, with equal jitter
  (half the delay fixed, half random: retries of many notifications spread out, none waits
  less than half its delay); a ``Retry-After`` from the receiver (seconds or a date) is the
  wait instead, when longer;
* a failure retrying cannot fix (another 4xx), or ``give_up_after_seconds`` since it was
  queued, or ``max_attempts``: ``dead``, with the last error, logged -- the dead-letter record
  ``ramparts alerts show`` prints.

Every attempt after the first carries the same notification id and is marked a redelivery
(the receiver may have got the earlier one: an answer lost to a timeout, a crash after
sending). A circuit breaker per output opens after ``breaker_failures`` consecutive failures:
no attempt is made for ``breaker_open_seconds`` (the queue waits; attempts are not spent),
then one trial; success closes it, failure opens it again.

Time and randomness are injectable (``clock``, ``seed``) so tests step through retries without
sleeping; :meth:`Deliverer.step` is one attempt, what the threads loop over.
"""

from __future__ import annotations

import logging
import os
import random
import socket
import threading
import time
from collections import deque
from typing import Any, Callable

import orjson

from .outbox import Outbox

log = logging.getLogger("ramparts.alerting")

RETRY_AFTER_CAP_SECONDS = 3600.0
# A claimed notification is left to the deliverer that claimed it for its output's timeout and
# this much more; after that (the deliverer died) another one tries it, as a redelivery.
LEASE_MARGIN_SECONDS = 2.0
PURGE_EVERY_SECONDS = 3600.0


class Breaker:
    """A circuit breaker: closed, open (no attempts) for ``open_seconds``, then half-open (one trial)."""

    def __init__(self, failures: int, open_seconds: float):
        self.threshold = failures
        self.open_seconds = open_seconds
        self.state = "closed"
        self.failures = 0
        self.opened_at = 0.0
        self.opened_total = 0

    def allow(self, now: float) -> bool:
        if self.state == "open" and now >= self.opened_at + self.open_seconds:
            self.state = "half-open"
        return self.state != "open"

    def retry_at(self) -> float:
        return self.opened_at + self.open_seconds

    def success(self) -> None:
        self.state, self.failures = "closed", 0

    def failure(self, now: float) -> None:
        self.failures += 1
        if self.state == "half-open" or self.failures >= self.threshold:
            if self.state != "open":
                self.opened_total += 1
            self.state, self.opened_at = "open", now


class OutputMetrics:
    """Counters of one output (per attempt, low cardinality) and recent delivery latencies."""

    def __init__(self) -> None:
        self.delivered = 0
        self.retried = 0
        self.failed = 0  # dead-lettered
        self.suppressed = 0
        self.latencies: deque[float] = deque(maxlen=4096)

    def as_dict(self) -> dict:
        lat = sorted(self.latencies)
        return {"delivered_total": self.delivered, "retried_total": self.retried, "failed_total": self.failed,
                "suppressed_total": self.suppressed,
                "latency_p50_seconds": _quantile(lat, 0.5), "latency_p99_seconds": _quantile(lat, 0.99)}


class Deliverer:
    def __init__(self, outbox: Outbox, outputs: list[Any], *, retry_initial_seconds: float = 1.0,
                 retry_max_seconds: float = 300.0, give_up_after_seconds: float = 86400.0, max_attempts: int = 0,
                 breaker_failures: int = 5, breaker_open_seconds: float = 30.0, seed: int | None = None,
                 delivered_retention_seconds: float = 7 * 86400.0, claim_batch: int = 32,
                 clock: Callable[[], float] = time.time):
        self.outbox = outbox
        self.outputs = {o.name: o for o in outputs}
        self.retry_initial = retry_initial_seconds
        self.retry_max = retry_max_seconds
        self.give_up_after = give_up_after_seconds
        self.max_attempts = max_attempts
        self.breakers = {o.name: Breaker(breaker_failures, breaker_open_seconds) for o in outputs}
        self.metrics = {o.name: OutputMetrics() for o in outputs}
        self.rng = random.Random(seed)
        self.clock = clock
        self.retention = delivered_retention_seconds
        self.claim_batch = claim_batch
        self.attempts_made = 0
        self.host = socket.gethostname()
        self.owner = f"{self.host}:{os.getpid()}"
        self._purged_at = 0.0
        self._stop = threading.Event()
        self._wake = {o.name: threading.Event() for o in outputs}
        self._threads: list[threading.Thread] = []

    @classmethod
    def from_config(cls, config, outbox: Outbox, outputs: list[Any], **kw) -> "Deliverer":
        a = config.alerting
        return cls(outbox, outputs, retry_initial_seconds=a.retry_initial_seconds,
                   retry_max_seconds=a.retry_max_seconds, give_up_after_seconds=a.give_up_after_seconds,
                   max_attempts=a.max_attempts, breaker_failures=a.breaker_failures,
                   breaker_open_seconds=a.breaker_open_seconds, seed=a.seed,
                   delivered_retention_seconds=a.delivered_retention_days * 86400.0, **kw)

    # -- one attempt ----------------------------------------------------------------------------

    def step(self, name: str) -> float | None:
        """One round for output ``name``: claim up to ``claim_batch`` due notifications, send them
        in order, record the outcomes. Returns 0 when it sent something, else when (clock time)
        something may next be due (None: nothing pending).

        A failure ends the round: the rest of the claim goes back untried (its attempts
        uncounted), so a receiver that is down costs one attempt per round, not one per row.
        """
        now = self.clock()
        breaker = self.breakers[name]
        if not breaker.allow(now):
            return breaker.retry_at()
        output = self.outputs[name]
        # A half-open breaker lets one trial through, not a batch.
        limit = 1 if breaker.state == "half-open" else self.claim_batch
        claimed = self.outbox.claim(name, now, limit, output.timeout_seconds * limit + LEASE_MARGIN_SECONDS,
                                    self.owner)
        if not claimed:
            return self.outbox.next_at(name)
        m = self.metrics[name]
        results = []
        stopped = False
        for row, attempt in claimed:
            if stopped:
                results.append((row, attempt, "unsent", self.clock(), None, None))
                continue
            note = orjson.loads(row["body"])
            if note["event"] == "renotify" and self.outbox.acked(note["incident_id"]):
                results.append((row, attempt, "suppressed", None, "incident acknowledged", None))
                m.suppressed += 1
                continue
            try:
                outcome = output.send(note, attempt, time.time())
            except Exception as e:  # a builder or client bug: this row fails, the claim is still recorded
                outcome = _raised(output, e)
            self.attempts_made += 1
            now = self.clock()
            if outcome.ok:
                breaker.success()
                results.append((row, attempt, "delivered", None, None, outcome.status))
                m.delivered += 1
                m.latencies.append(now - row["enqueued_at"])
                continue
            breaker.failure(now)
            stopped = True
            results.append(self._failed(name, row, attempt, outcome, now))
        self.outbox.finish_many(results, self.clock())
        return 0.0

    def _failed(self, name: str, row: dict, attempt: int, outcome, now: float) -> tuple:
        m = self.metrics[name]
        age = now - row["enqueued_at"]
        reason = None
        if outcome.permanent:
            reason = "the receiver refused it"
        elif self.max_attempts and attempt >= self.max_attempts:
            reason = f"{attempt} attempts"
        elif age >= self.give_up_after:
            reason = f"not delivered within {self.give_up_after:g} s"
        if reason is not None:
            error = f"gave up ({reason}): {outcome.error}"
            m.failed += 1
            log.error("notification %s to %s dead-lettered: %s", row["id"], name, error)
            return (row, attempt, "dead", None, error, outcome.status)
        delay = self.backoff(attempt)
        if outcome.retry_after is not None:
            delay = max(delay, min(outcome.retry_after, RETRY_AFTER_CAP_SECONDS))
        m.retried += 1
        log.warning("notification %s to %s failed (attempt %d), retry in %.1f s: %s", row["id"], name, attempt,
                    delay, outcome.error)
        return (row, attempt, "pending", now + delay, outcome.error, outcome.status)

    def backoff(self, attempt: int) -> float:
        """Delay before the attempt after ``attempt``: exponential, capped, with equal jitter."""
        delay = min(self.retry_max, self.retry_initial * 2 ** min(attempt - 1, 30))
        return delay / 2 + self.rng.uniform(0, delay / 2)

    def drain(self, max_steps: int = 100_000) -> int:
        """Attempt everything due now, output by output, until nothing is; returns the attempts."""
        before = self.attempts_made
        for _ in range(max_steps):
            progressed = False
            for name in self.outputs:
                if self.step(name) == 0.0:
                    progressed = True
            if not progressed:
                break
        return self.attempts_made - before

    def pending(self) -> int:
        return sum(self.outbox.depth().values())

    # -- threads --------------------------------------------------------------------------------

    def release_dead_claims(self) -> int:
        """Take over what dead deliverers on this host had claimed (a restart's predecessor)."""
        return self.outbox.release_dead_claims(self.host, _pid_alive, self.clock())

    def start(self) -> "Deliverer":
        self.release_dead_claims()
        for name in self.outputs:
            t = threading.Thread(target=self._run, args=(name,), name=f"ramparts-deliver-{name}", daemon=True)
            t.start()
            self._threads.append(t)
        return self

    def wake(self) -> None:
        """New notifications are queued: stop waiting (called by the worker after ``accept``)."""
        for e in self._wake.values():
            e.set()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        self.wake()
        for t in self._threads:
            t.join(timeout)
        self._threads = []

    def _run(self, name: str) -> None:
        wake = self._wake[name]
        purger = name == next(iter(self.outputs))
        while not self._stop.is_set():
            try:
                if purger and self.clock() - self._purged_at > PURGE_EVERY_SECONDS:
                    self._purged_at = self.clock()
                    self.outbox.purge(self._purged_at - self.retention)
                    self.release_dead_claims()
                due = self.step(name)
            except Exception:  # a broken database or output must not kill delivery silently
                log.exception("delivery to %s failed; retrying in 1 s", name)
                due = self.clock() + 1.0
            if due == 0.0:
                continue
            wait = 1.0 if due is None else min(1.0, max(0.0, due - self.clock()))
            wake.wait(wait)
            wake.clear()

    def stats(self) -> dict:
        depth = self.outbox.depth()
        return {name: {**self.metrics[name].as_dict(), "queue_depth": depth.get(name, 0),
                       "breaker": self.breakers[name].state, "breaker_opened_total": self.breakers[name].opened_total}
                for name in self.outputs}


def _raised(output: Any, e: Exception):
    """The outcome of a send that raised instead of answering: retried (then dead-lettered) like
    a network error, its error scrubbed of the output's URL and secrets like every other."""
    from ramparts.sinks.outputs import Outcome, scrub, url_secrets

    return Outcome(False, error=scrub(f"{output.name}: {type(e).__name__}: {e}",
                                      [*url_secrets(getattr(output, "url", "")), *getattr(output, "secrets", [])]))


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _quantile(sorted_values: list[float], q: float) -> float | None:
    if not sorted_values:
        return None
    i = min(len(sorted_values) - 1, max(0, round(q * (len(sorted_values) - 1))))
    return sorted_values[i]
