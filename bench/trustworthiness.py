"""Trustworthiness of an embedding (Venna & Kaski 2001), in memory bounded by row chunks.

    T(k) = 1 - 2 / (n k (2n - 3k - 1)) * sum_i sum_{j in U_k(i)} max(0, r(i, j) - k)

U_k(i) are the k nearest neighbours of point i in the embedding, and r(i, j) is the
rank of j among i's neighbours in the original space: 1 + the number of points other
than i strictly closer to i than j is, so the nearest one has rank 1 (sklearn's
sklearn.manifold.trustworthiness, which this matches on data without ties). T is 1
when every embedding neighbour is among the k original ones and about 0.5 for a
random embedding.

numpy only, float64; at most CHUNK_ELEMENTS entries of [rows, n] or [rows, k, n]
blocks at a time, never an n x n matrix.
"""
import numpy as np

CHUNK_ELEMENTS = 1 << 24


def _squared_distances(block, points, sq_norms, sq_block):
    """[c, n] squared Euclidean distances of `block` [c, d] to `points` [n, d]."""
    return sq_block[:, None] - 2 * block @ points.T + sq_norms[None, :]


def trustworthiness(high, low, k=10):
    """T(k) of the embedding `low` [n, d_low] of `high` [n, d_high]: a float in [0, 1]."""
    high = np.asarray(high, dtype=np.float64)
    low = np.asarray(low, dtype=np.float64)
    n = len(high)
    if high.ndim != 2 or low.ndim != 2 or len(low) != n:
        raise ValueError(f"need [n, d] matrices of equal n, got {high.shape} and {low.shape}")
    if not 1 <= k < n / 2:
        raise ValueError(f"k must be in [1, n / 2), got k={k} for n={n}")
    # Centring changes no distance but keeps the |x|^2 terms, and their rounding, small.
    high = high - high.mean(axis=0)
    low = low - low.mean(axis=0)
    sq_high, sq_low = np.einsum("ij,ij->i", high, high), np.einsum("ij,ij->i", low, low)
    rows = max(1, CHUNK_ELEMENTS // (n * (k + 1)))
    penalty = 0
    for start in range(0, n, rows):
        stop = min(n, start + rows)
        own = (np.arange(stop - start), np.arange(start, stop))  # each row's own column
        d_low = _squared_distances(low[start:stop], low, sq_low, sq_low[start:stop])  # [c, n]
        d_low[own] = np.inf
        neighbours = np.argpartition(d_low, k - 1, axis=1)[:, :k]  # [c, k], U_k, in no order
        d_high = _squared_distances(high[start:stop], high, sq_high, sq_high[start:stop])  # [c, n]
        d_high[own] = np.inf  # i is not its own neighbour
        reach = np.take_along_axis(d_high, neighbours, axis=1)  # [c, k]
        ranks = 1 + np.count_nonzero(d_high[:, None, :] < reach[:, :, None], axis=2)  # [c, k]
        penalty += int(np.maximum(ranks - k, 0).sum())
    return 1.0 - 2.0 * penalty / (n * k * (2.0 * n - 3.0 * k - 1.0))
