"""The garbage collector's settings for a process that streams batches of events.

A batch's events, and the lists and tuples parsed into them, live until the batch is done:
at CPython's default threshold the youngest generation is collected every 700 allocations,
each collection walking the batch's survivors again, and every tenth one the next
generation. Measured, that was about a tenth of the batched worker's CPU and up to half of
the KServe parser's (docs/benchmarks.md). :func:`tune` freezes what start-up made (modules,
numpy, scipy, Faust) out of every later walk and collects the youngest generation every
``THRESHOLD0`` allocations: reference cycles, rare in this code, wait longer to be freed.
Outputs do not change. ``ramparts worker`` and ``ramparts replay`` call it once, when set up.
"""

from __future__ import annotations

import gc

# Allocations of tracked objects between two collections of the youngest generation (CPython's
# default: 700).
THRESHOLD0 = 50_000


def tune() -> None:
    gc.collect()
    gc.freeze()
    gc.set_threshold(THRESHOLD0, *gc.get_threshold()[1:])
