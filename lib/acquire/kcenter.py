"""k-center greedy: the Coreset acquisition.

Sener & Savarese, "Active Learning for Convolutional Neural Networks: A Core-Set
Approach", ICLR 2018, Algorithm 1. Each pick is the point farthest from its nearest
center, then becomes a center; the labeled points are the initial centers. The
result covers the pool within twice the optimal radius (Gonzalez 1985).
"""
import numpy as np

from lib.acquire.distances import NearestCenterDistances


def k_center_greedy(features, k, centers=(), seed=0, device="cpu"):
    """Indices of k points of `features` [N, d], none of them in `centers`.

    The picks are those of a float64 loop on `features` as given, exact ties going
    to the lowest index (lib.acquire.distances re-decides near-ties in float64).
    Without initial centers the first pick is drawn from `seed`, as there is no
    farthest point yet.
    """
    distances = NearestCenterDistances(features, device, centers)
    distances.check_room(k)
    picks = []
    if not distances.center_ids:
        picks.append(int(np.random.default_rng(seed).integers(len(distances))))
        distances.add_center(picks[0])
    while len(picks) < k:
        pick = distances.farthest()
        picks.append(pick)
        distances.add_center(pick)
    return picks
