"""K-Means++ seeding: D^2 sampling.

Arthur & Vassilvitskii, "k-means++: The Advantages of Careful Seeding", SODA 2007.
Each pick is drawn with probability proportional to its squared distance to the
nearest center so far; a point that is a center, or a duplicate of one, has
probability zero. This is plain D^2 sampling (one trial per pick), not scikit-learn's
greedy variant that keeps the best of several trials.

The draws come from a numpy generator on the host, not torch's, so a seed draws the
same numbers on the CPU and on a GPU. The picks are the same unless a draw falls
within float32 rounding of the boundary between two points' shares: the distances
are float32 products, summed in another order on another device (on the CPU, of the
features as given; on a GPU, of a centred copy).
"""
import numpy as np
import torch

from lib.acquire.distances import NearestCenterDistances


def kmeans_pp_seeding(features, k, centers=(), seed=0, device="cpu"):
    """Indices of k points of `features` [N, d], none of them in `centers` (e.g. the labeled set).

    Without initial centers the first pick is uniform, as K-Means++ prescribes.
    """
    distances = NearestCenterDistances(features, device, centers)
    distances.check_room(k)
    rng = np.random.default_rng(seed)
    picks = []
    while len(picks) < k:
        pick = _draw(distances, rng) if distances.center_ids else int(rng.integers(len(distances)))
        picks.append(pick)
        distances.add_center(pick)
    return picks


def _draw(distances, rng):
    """One index with probability proportional to its squared distance to the centers."""
    # float64: a float32 running sum over 10^5 distances loses the small ones.
    cumulative = distances.min_sq.clamp(min=0).cumsum(dim=0, dtype=torch.float64)  # [N]
    total = float(cumulative[-1])
    if total == 0:  # every point left duplicates a center: any of them covers as well
        free = torch.nonzero(distances.min_sq >= 0).flatten()
        return int(free[rng.integers(len(free))])
    target = torch.tensor([rng.random() * total], dtype=torch.float64, device=cumulative.device)
    # The first index whose cumulative sum exceeds the target: zero-weight points are skipped.
    pick = int(torch.searchsorted(cumulative, target, right=True))
    if pick == len(cumulative):  # the target rounded up to the total: the last point of non-zero weight
        pick = int(torch.searchsorted(cumulative, cumulative[-1:]))
    return pick
