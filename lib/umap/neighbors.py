"""The exact k-nearest-neighbour search UMAP's graph starts from, in chunks of float32 matrix products."""
import torch

from lib.umap.tensors import map_chunks

CHUNK_ELEMENTS = 1 << 23  # largest [queries, points] distance block (32 MiB in float32)
MAX_GROUP = 32  # columns reduced to one minimum before the top-k; see smallest_k


def smallest_k(scores, k, group):
    """Positions [c, k] of the k smallest entries of each row of `scores` [c, m], m a multiple of `group`.

    A full top-k over m columns is the slow part of a scan, so columns are first
    reduced to minima of `group` consecutive ones: the k groups with the smallest
    minima hold k values no larger than the row's k-th smallest, hence the row's k
    smallest (ties aside, an equal value), and only those k groups are searched.
    """
    minima = scores.unflatten(1, (-1, group)).amin(dim=2)  # [c, m / G]
    groups = minima.topk(k, dim=1, largest=False, sorted=False).indices  # [c, k]
    columns = (groups[:, :, None] * group + torch.arange(group, device=scores.device)).flatten(1)  # [c, k G]
    best = scores.gather(1, columns).topk(k, dim=1, largest=False, sorted=False).indices  # [c, k]
    return columns.gather(1, best)


def exact_distances(queries, points, indices):
    """|q - p| of each query [M, d] to its chosen points [M, k], sorted: (distances, indices) [M, k].

    Recomputed from the coordinates rather than taken from |p|^2 - 2 q.p, whose
    rounding would put a point a little off itself and off its duplicates.
    """
    chunk = max(1, CHUNK_ELEMENTS // (indices.shape[1] * queries.shape[1]))
    distances = torch.cat([
        torch.linalg.vector_norm(queries[start:start + chunk, None, :] - points[indices[start:start + chunk]], dim=2)
        for start in range(0, len(queries), chunk)
    ])  # [M, k]
    distances, order = distances.sort(dim=1)
    return distances, indices.gather(1, order)


def nearest_neighbors(queries, points, k):
    """Exact k nearest `points` [N, d] of each of `queries` [M, d]: (distances, indices), both [M, k], ascending.

    Ranked by |p|^2 - 2 q.p in chunks of queries, so no [M, N] block is ever built.
    """
    n, k = len(points), min(k, len(points))
    group = max(1, min(MAX_GROUP, n // (4 * k)))  # leaves at least 4k groups for smallest_k
    padded = -(-n // group) * group
    mean = points.mean(dim=0)  # centring keeps |p|^2 and its rounding small
    centred = points - mean  # [N, d]
    points_t = centred.new_zeros(points.shape[1], padded)  # [d, Np]
    points_t[:, :n] = centred.T
    sq_norms = centred.new_full((padded,), float("inf"))  # [Np]; padding never chosen
    sq_norms[:n] = centred.square().sum(dim=1)
    chunk = max(1, CHUNK_ELEMENTS // padded)

    def search(start):  # [c, k] positions for one chunk of queries
        scores = torch.addmm(sq_norms, queries[start:start + chunk] - mean, points_t, alpha=-2)  # [c, Np]
        return smallest_k(scores, k, group)

    found = map_chunks(search, range(0, len(queries), chunk), points.device)
    return exact_distances(queries - mean, centred, torch.cat(found))
