"""bench/cores.py: a pinned process keeps every one of its threads on the core, those it made before
the pin included (Linux sets affinity per thread, and a thread keeps what it had when made)."""

from __future__ import annotations

import os
import subprocess
import sys
import threading

import pytest

from ramparts.bench.cores import cores, pin, threads

pytestmark = pytest.mark.skipif(not hasattr(os, "sched_setaffinity") or not os.path.isdir("/proc/self/task"),
                                reason="needs Linux thread affinity and /proc")


def _affinities(pid: int) -> dict[int, set[int]]:
    return {tid: os.sched_getaffinity(tid) for tid in threads(pid)}


def test_pin_moves_this_process_threads_made_before_it():
    before = os.sched_getaffinity(0)
    first, second = cores()
    target = second if second is not None else first
    started, release = threading.Event(), threading.Event()
    t = threading.Thread(target=lambda: (started.set(), release.wait(30)), daemon=True)
    try:
        pin(0, first)
        t.start()  # made while this process was on `first`: it inherits that
        assert started.wait(10)
        assert len(_affinities(0)) >= 2
        pin(0, target)
        got = _affinities(0)
        assert t.native_id in got
        assert all(a == {target} for a in got.values()), got
    finally:
        release.set()
        t.join(10)
        for tid in threads(0):
            try:
                os.sched_setaffinity(tid, before)
            except OSError:
                pass


def test_pin_moves_a_child_process_threads():
    first, second = cores()
    target = second if second is not None else first
    # A child with four threads, made before it is pinned; it says when they run, then waits for its stdin.
    code = ("import sys, threading\n"
            "e = threading.Event()\n"
            "ts = [threading.Thread(target=e.wait, daemon=True) for _ in range(3)]\n"
            "[t.start() for t in ts]\n"
            "print('up', flush=True)\n"
            "sys.stdin.read()\n")
    child = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "up"
        assert len(threads(child.pid)) >= 4
        pin(child.pid, target)
        got = _affinities(child.pid)
        assert len(got) >= 4 and all(a == {target} for a in got.values()), got
    finally:
        child.stdin.close()
        child.wait(10)


def test_threads_of_no_such_process_is_the_id_itself():
    # A pid no process has (above Linux's pid_max): /proc has no such directory.
    assert threads(2 ** 23 + 1) == [2 ** 23 + 1]
    pin(2 ** 23 + 1, cores()[0])  # a no-op: nothing to pin, no error
