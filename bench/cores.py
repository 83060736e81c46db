"""Pinning benchmark processes to cores: the figures are per core, and this machine has two."""

from __future__ import annotations

import os


def cores() -> tuple[int, int | None]:
    """The first allowed core (for the measured process) and the second (for helpers), if any."""
    allowed = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else [0]
    return allowed[0], (allowed[1] if len(allowed) > 1 else None)


def threads(pid: int) -> list[int]:
    """The thread ids of process ``pid`` (0: this process), from ``/proc``; ``[pid]`` where it cannot be read."""
    try:
        return sorted(int(t) for t in os.listdir(f"/proc/{pid or 'self'}/task"))
    except (OSError, ValueError):
        return [pid]


def pin(pid: int, core: int | None) -> None:
    """Keep every thread of ``pid`` (0: this process) on ``core``; a no-op where affinity cannot be set.

    Every thread, not only the one whose id is the process's: Linux sets a thread's affinity,
    and a thread keeps the one it had when it was made. Pinning the process id alone left the
    broker's two I/O threads (Tansu's runtime, made at its start) free to run on the worker's
    core, and this process's chdb threads (made by the store's replay runs, while it was pinned
    to the worker's core) on that core during the Kafka runs. A thread made after this call
    takes the affinity of the thread that makes it."""
    if core is None or not hasattr(os, "sched_setaffinity"):
        return
    for tid in threads(pid):
        try:
            os.sched_setaffinity(tid, {core})
        except OSError:  # the thread has ended meanwhile, or affinity cannot be set here
            pass
