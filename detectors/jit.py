"""Compiling the detectors' hot loops with numba, shared by every detector that has one.

Compiled functions are cached next to their module (``__pycache__``, numba's ``cache=True``);
where that is not writable numba falls back to its user-wide cache, and where neither is, they
are compiled in each process (a second or so at the first call) instead of failing.
"""

from __future__ import annotations

import warnings


def jit(fn):
    """``numba.njit(cache=True)``, or without the cache when no cache location is writable."""
    import numba

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", numba.NumbaWarning)
            return numba.njit(cache=True)(fn)
    except RuntimeError:  # numba: "cannot cache function ...: no locator available"
        return numba.njit(cache=False)(fn)
