"""PRADA (Juuti, Szyller, Marchal, Asokan, EuroS&P 2019), the baseline our extraction detector is compared with.

PRADA watches each client's stream of queries on its own. For every query it takes the L2
distance to the nearest earlier query *of the same predicted class* that it kept, and collects
these minimum distances in one list D per client. Natural queries give distances that are
roughly normally distributed; synthetic extraction queries (small steps from earlier queries,
as in Jacobian-based augmentation) give a spike of small distances next to the natural ones.
Once D holds more than 100 distances, a Shapiro-Wilk statistic W below ``delta`` on D raises the
alarm. The benchmark runs this class on the same query streams as our detector.

Algorithm 1 of the paper, per client:

- class c seen for the first time: ``G_c = {x}``, ``D_Gc = {}``, ``T_c = 0``; nothing goes
  into D;
- otherwise ``d_min = min_{y in G_c} ||x - y||_2`` is appended to D, and if ``d_min > T_c``
  then x joins ``G_c``, d_min joins ``D_Gc`` and ``T_c = max(T_c, mean(D_Gc) - std(D_Gc))``.
  Only queries that lie further from the kept set than is usual are kept, so the set grows
  sparsely and a run of small steps keeps producing small distances;
- once ``|D| > 100``: D' is D without the values beyond three standard deviations of its mean,
  and the client is flagged when ``W(D') < delta``. The flag stays.

Where this departs from, or chooses between, the sources:

- The paper's text was not at hand when this was written; the steps above follow the brief
  that describes Algorithm 1 and the authors' public code (Aalto SSG, Apache-2.0). That code
  differs from the algorithm as described in ways that we do *not* copy: it seeds ``D_Gc``
  with a 0 (which holds ``T_c`` lower early on), runs the test only every 10th query, and pools
  only the classes that already have 10 distances. Here W is computed on every query, as the
  paper describes.
- Trimming at three standard deviations before the test is in the authors' code; it can be
  switched off with ``outlier_sigmas=None``.
- When D' has zero range (every distance the same, e.g. a client that only repeats one input)
  W is undefined. scipy then reports W = 1, so code that calls it directly (the authors' does)
  does not flag; we keep that value rather than invent a verdict.
- ``std`` is the population standard deviation (numpy's default), as in the authors' code.

Example, a client that keeps nudging one input by a fixed-size step:

>>> rng = np.random.default_rng(0)
>>> prada = Prada()
>>> x = rng.normal(size=16)
>>> for i in range(400):
...     x = x + 0.05 * np.sign(rng.normal(size=16))
...     _ = prada.query("mallory", x, predicted_class=int(x[0] > 0))
>>> prada.flagged("mallory"), prada.first_flag("mallory") > 100
(True, True)
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numpy as np
from scipy import stats


class _Rows:
    """A growing 2-d float array: amortised O(1) appends, and the filled part as a view."""

    def __init__(self, width: int, capacity: int = 16) -> None:
        self._data = np.empty((capacity, width))
        self._n = 0

    def append(self, row: np.ndarray) -> None:
        if self._n == len(self._data):
            grown = np.empty((2 * len(self._data), self._data.shape[1]))
            grown[: self._n] = self._data
            self._data = grown
        self._data[self._n] = row
        self._n += 1

    @property
    def rows(self) -> np.ndarray:
        return self._data[: self._n]


class _Values:
    """A growing 1-d float array, for the distance lists that are tested on every query."""

    def __init__(self, capacity: int = 128) -> None:
        self._data = np.empty(capacity)
        self._n = 0

    def append(self, value: float) -> None:
        if self._n == len(self._data):
            self._data = np.concatenate([self._data, np.empty(len(self._data))])
        self._data[self._n] = value
        self._n += 1

    @property
    def values(self) -> np.ndarray:
        return self._data[: self._n]


@dataclass
class _ClassState:
    """G_c, D_Gc and T_c of one predicted class of one client."""

    kept: _Rows
    kept_distances: _Values = field(default_factory=lambda: _Values(16))
    threshold: float = 0.0


@dataclass
class _ClientState:
    classes: dict[int, _ClassState] = field(default_factory=dict)
    distances: _Values = field(default_factory=_Values)  # D, pooled over classes
    queries: int = 0
    w: float | None = None
    first_flag: int | None = None


def nearest_distance(kept: np.ndarray, x: np.ndarray) -> float:
    """L2 distance from ``x`` to the nearest row of ``kept`` (PRADA's d_min)."""
    diff = kept - x
    return float(np.sqrt(np.min(np.einsum("ij,ij->i", diff, diff))))


def trim(distances: np.ndarray, sigmas: float | None) -> np.ndarray:
    """``distances`` without values more than ``sigmas`` standard deviations from their mean.

    The test should judge the bulk of the distances, not a few far-away queries (a client that
    switches topic once). With zero spread nothing is an outlier and all values are kept.
    """
    if sigmas is None:
        return distances
    mean, std = distances.mean(), distances.std()
    if std == 0:
        return distances
    return distances[np.abs(distances - mean) <= sigmas * std]


def shapiro_w(distances: np.ndarray) -> float:
    """The Shapiro-Wilk statistic W; 1.0 for a sample with zero range (see the module notes)."""
    if len(distances) < 3 or np.ptp(distances) == 0:
        return 1.0
    with warnings.catch_warnings():
        # Above 5000 values scipy warns that the p-value is approximate; W is what we use.
        warnings.simplefilter("ignore", UserWarning)
        return float(stats.shapiro(distances).statistic)


class Prada:
    """PRADA's per-client detector (Algorithm 1 of the paper); see the module docstring.

    ``delta`` is the W below which a client is flagged; the paper tunes it per model on benign
    traffic (0.96 for its MNIST model, for example). ``min_distances`` is the number of
    distances D must exceed before the test runs (100 in the paper). ``outlier_sigmas`` trims D
    before the test (3 in the authors' code; None: no trimming).
    """

    def __init__(self, delta: float = 0.95, min_distances: int = 100,
                 outlier_sigmas: float | None = 3.0) -> None:
        if not 0 < delta <= 1:
            raise ValueError(f"delta is a Shapiro-Wilk W, in (0, 1]; got {delta}")
        if min_distances < 2:
            raise ValueError(f"min_distances must be at least 2 for the test to run; got {min_distances}")
        self.delta = delta
        self.min_distances = min_distances
        self.outlier_sigmas = outlier_sigmas
        self._clients: dict[str, _ClientState] = {}

    def query(self, client: str, x: np.ndarray, predicted_class: int) -> bool:
        """Process one query; True once this client is flagged (stays True)."""
        state = self._clients.setdefault(client, _ClientState())
        state.queries += 1
        x = np.asarray(x, dtype=np.float64).ravel()
        cls = state.classes.get(predicted_class)
        if cls is None:
            rows = _Rows(len(x))
            rows.append(x)
            state.classes[predicted_class] = _ClassState(kept=rows)
            # The first query of a class has nothing to be near: no distance is recorded.
        else:
            d_min = nearest_distance(cls.kept.rows, x)
            state.distances.append(d_min)
            if d_min > cls.threshold:
                cls.kept.append(x)
                cls.kept_distances.append(d_min)
                kept = cls.kept_distances.values
                cls.threshold = max(cls.threshold, float(kept.mean() - kept.std()))
        if len(state.distances.values) > self.min_distances:
            state.w = shapiro_w(trim(state.distances.values, self.outlier_sigmas))
            if state.first_flag is None and state.w < self.delta:
                state.first_flag = state.queries
        return state.first_flag is not None

    def flagged(self, client: str) -> bool:
        """Whether ``client`` has been flagged (unknown clients are not)."""
        state = self._clients.get(client)
        return state is not None and state.first_flag is not None

    def first_flag(self, client: str) -> int | None:
        """The 1-based number of the client's query at which it was first flagged, or None."""
        state = self._clients.get(client)
        return None if state is None else state.first_flag

    def w(self, client: str) -> float | None:
        """The client's latest Shapiro-Wilk W, or None before D exceeded ``min_distances``."""
        state = self._clients.get(client)
        return None if state is None else state.w

    def distances(self, client: str) -> np.ndarray:
        """A copy of the client's list D of minimum distances, in query order."""
        state = self._clients.get(client)
        return np.empty(0) if state is None else state.distances.values.copy()
