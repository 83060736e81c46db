"""Attack injectors, registered by name; scenarios place them on the timeline.

An attack is one module here with an :class:`Attack`: ``inject(world, start, end)`` writes
the attack's records (through :mod:`..formats`, so they are spelled like everything else)
and may change what benign generators will produce inside ``[start, end)`` (a GPU's load,
say); it returns the :class:`~..world.Label` s of the ground truth, each naming the alert
family expected to catch it and the entity as the pipeline will see it. Adding one: write
the module, add it to ``ATTACKS`` below, and name it in a scenario (``SCENARIOS`` in
``ramparts.streams.simulate``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from ..world import Label, World


@dataclass(frozen=True)
class Attack:
    name: str
    description: str
    # (world, start ns, end ns) -> labels; the window is where the scenario places it.
    inject: Callable[[World, int, int], list[Label]]


def _registry() -> dict[str, Attack]:
    from . import compute, drift, extraction, k8s_exec, miner, stolen_key, stuffing

    attacks = [stuffing.ATTACK, miner.ATTACK, k8s_exec.ATTACK, *extraction.EXTRACTION_ATTACKS, *drift.ATTACKS,
               *compute.ATTACKS, stolen_key.ATTACK]
    return {a.name: a for a in attacks}


ATTACKS: dict[str, Attack] = _registry()
