"""drift.model's compiled per-row loops against the numpy and per-row Python they replace."""

import numpy as np

from ramparts.detectors.drift import MINUTE, chunk_closes, count_bins, histogram


def test_count_bins_is_histogram_with_values_on_edges_and_nan():
    rng = np.random.default_rng(3)
    edges = [[-0.5, 0.0, 0.1, 0.1001, 2.0], None, [0.0]]
    x = rng.choice([-1.0, -0.5, 0.0, 0.05, 0.1, 0.1001, 1.0, 2.0, 3.0, np.nan, np.inf], size=(500, 3))
    padded = np.full((3, 5), np.inf)
    n_edges = np.array([5, -1, 1])
    padded[0], padded[2, :1] = edges[0], edges[2]
    counts = np.zeros((3, 6), dtype=np.int64)
    count_bins(x, padded, n_edges, counts)
    assert counts[0].tolist() == histogram(edges[0], x[:, 0]).tolist()
    assert counts[2, :2].tolist() == histogram(edges[2], x[:, 2]).tolist()
    assert not counts[1].any() and not counts[2, 2:].any()


def _walk(minutes, q, chunk, chunk_rows):
    """The rule in words: a chunk closes at the first row of a new minute once it holds chunk_rows values."""
    closes = []
    for i, (m, v) in enumerate(zip(minutes, q)):
        if chunk[0] >= chunk_rows and m > chunk[3]:
            closes.append((i, chunk[0], chunk[1], chunk[2]))
            chunk[:] = [0, 0, 0, 0]
        if chunk[0] == 0:
            chunk[2] = m
        chunk[0] += 1
        chunk[1] += v
        chunk[3] = m
    return closes


def test_chunk_closes_follows_the_rule_in_one_call_or_cut_anywhere():
    rng = np.random.default_rng(5)
    ts = np.sort(rng.integers(0, 40 * MINUTE, 3000))
    ts[1000:1010] -= 5 * MINUTE  # stragglers: a minute that goes back
    minutes = ts // MINUTE
    q = rng.integers(-20_000, 20_000, 3000)
    expected = _walk(minutes.tolist(), q.tolist(), [0, 0, 0, 0], 50)
    for cuts in ([3000], [1, 999, 1005, 2500, 3000], list(range(7, 3000, 311)) + [3000]):
        chunk = np.zeros(4, dtype=np.int64)
        got, start = [], 0
        for end in cuts:
            at, closed = chunk_closes(minutes[start:end], q[start:end], chunk, 50)
            got += [(start + i, *c) for i, c in zip(at.tolist(), closed.tolist())]
            start = end
        assert got == expected
    assert len(expected) > 10
