"""PRADA baseline (bench/prada.py) on hand-made, seeded query streams."""

import numpy as np
import pytest
from ramparts.bench.prada import Prada, trim

DIM, CLASSES = 64, 10
# A fixed linear "victim": the predicted class of x is the largest of ten projections.
VICTIM = np.random.default_rng(1).normal(size=(DIM, CLASSES))


def victim(x: np.ndarray) -> int:
    return int(np.argmax(x @ VICTIM))


def feed(prada: Prada, client: str, queries) -> list[bool]:
    return [prada.query(client, x, victim(x)) for x in queries]


def natural(seed: int, n: int = 500) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n, DIM))


def augmentation(seed: int, n: int = 500, seeds: int = 10, step: float = 0.1) -> list[np.ndarray]:
    """Jacobian-style synthetic queries: each new point is a fixed-size sign step from an earlier one."""
    rng = np.random.default_rng(seed)
    pool = list(rng.normal(size=(seeds, DIM)))
    while len(pool) < n:
        base = pool[rng.integers(len(pool))]
        pool.append(base + step * np.sign(rng.normal(size=DIM)))
    return pool


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_natural_gaussian_queries_are_not_flagged(seed):
    prada = Prada()
    assert not any(feed(prada, "alice", natural(seed)))
    assert prada.first_flag("alice") is None
    assert prada.w("alice") > 0.98


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_synthetic_augmentation_is_flagged_after_the_minimum(seed):
    prada = Prada()
    flags = feed(prada, "mallory", augmentation(seed))
    first = prada.first_flag("mallory")
    assert first is not None and flags[first - 1] and not any(flags[: first - 1])
    # The test needs more than 100 distances, and the first query of each class records none.
    assert first > 100 + 1
    assert all(flags[first - 1:]), "a flag stays"


def test_benign_client_that_repeats_a_few_queries_is_flagged():
    """PRADA's known false positive: exact repeats give distances of 0 next to the natural ones."""
    rng = np.random.default_rng(3)
    fresh, favourites = natural(3), rng.normal(size=(5, DIM))
    with_repeats = [favourites[i % 5] if i % 2 else fresh[i] for i in range(500)]
    control = [fresh[i] for i in range(0, 500, 2)] + list(natural(4, 250))

    prada = Prada()
    feed(prada, "retrier", with_repeats)
    feed(prada, "control", control)
    assert prada.flagged("retrier") and prada.w("retrier") < 0.8
    assert not prada.flagged("control")
    assert np.count_nonzero(prada.distances("retrier") == 0) > 200


def test_a_single_repeated_query_leaves_w_undefined_and_the_client_unflagged():
    """D is all zeros: W of a constant sample is undefined and reported as 1 (scipy's value,
    and what the authors' code would see), so PRADA does not flag this degenerate client."""
    probe = np.random.default_rng(5).normal(size=DIM)
    prada = Prada()
    feed(prada, "probe", [probe] * 300)
    assert not prada.distances("probe").any() and len(prada.distances("probe")) == 299
    assert prada.w("probe") == 1.0 and not prada.flagged("probe")


def test_trimming_drops_values_beyond_three_sigmas_only():
    d = np.concatenate([np.linspace(1.0, 2.0, 99), [50.0]])
    assert len(trim(d, 3.0)) == 99 and 50.0 not in trim(d, 3.0)
    assert len(trim(d, None)) == 100
    assert len(trim(np.zeros(10), 3.0)) == 10


def test_first_query_of_a_class_records_nothing_and_later_ones_one_distance_each():
    prada = Prada()
    rng = np.random.default_rng(6)
    classes = [0, 1, 0, 2, 1, 1, 0, 3, 2, 0]
    seen = set()
    for n, c in enumerate(classes, start=1):
        prada.query("bob", rng.normal(size=4), c)
        seen.add(c)
        assert len(prada.distances("bob")) == n - len(seen)
    assert prada.w("bob") is None, "no test before more than 100 distances"


def test_growing_set_keeps_only_queries_further_than_the_class_threshold():
    # One class, 1-d points. 0 starts G; 3 is kept (d=3 > T=0; T becomes 3 - 0 = 3);
    # 4 is not (d=1 <= 3); 10 is kept (d=7; T = max(3, 5 - 2) = 3). 4.5 is then 1.5 from 3,
    # which shows 4 was not kept (it would be 0.5 away).
    prada = Prada()
    for x in [0.0, 3.0, 4.0, 10.0, 4.5]:
        prada.query("carol", np.array([x]), 0)
    np.testing.assert_allclose(prada.distances("carol"), [3.0, 1.0, 7.0, 1.5])


def test_clients_are_judged_separately():
    prada = Prada()
    feed(prada, "mallory", augmentation(7))
    feed(prada, "alice", natural(7))
    assert prada.flagged("mallory") and not prada.flagged("alice")
    assert not prada.flagged("nobody") and prada.first_flag("nobody") is None and prada.w("nobody") is None
    assert len(prada.distances("nobody")) == 0


def test_delta_is_a_shapiro_w():
    with pytest.raises(ValueError, match="delta"):
        Prada(delta=1.5)
