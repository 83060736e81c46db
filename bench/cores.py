"""Pinning benchmark processes to cores: the figures are per core, and this machine has two."""

from __future__ import annotations

import os


def cores() -> tuple[int, int | None]:
    """The first allowed core (for the measured process) and the second (for helpers), if any."""
    allowed = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else [0]
    return allowed[0], (allowed[1] if len(allowed) > 1 else None)


def pin(pid: int, core: int | None) -> None:
    """Keep ``pid`` (0: this process) on ``core``; a no-op where affinity cannot be set."""
    if core is not None and hasattr(os, "sched_setaffinity"):
        try:
            os.sched_setaffinity(pid, {core})
        except OSError:
            pass
