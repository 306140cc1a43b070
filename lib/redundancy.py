"""How redundant a pool is: how close each item's nearest neighbours are, against a typical pair.

The study "Best Practices in AL for Semantic Segmentation" (its Table 6) finds that which
acquisition wins depends on the pool's redundancy: batch methods (coreset) on pools of
near-copies, single-sample ones on diverse pools. This measures it on one feature vector
per item (the model's pooled ASPP features, or a --features file).

Rows are L2-normalised, so distances are Euclidean between unit vectors (cosine). The
typical distance d_typ is the median distance of random pairs of distinct items. An
item's value is the mean over its K nearest other items of clamp(1 - d / d_typ, 0, 1);
the score is the mean value of a random sample of items, the queries, whose neighbours
are searched exactly in the whole pool (an unbiased estimate of the pool's mean).

    0  an item's K nearest neighbours are as far as a typical pair: no near-copies
    1  every item has K exact copies

K sets the scale of "redundant": groups of near-copies (a sequence of frames, augmented
copies of one image) larger than K score near their limit. More items put neighbours
nearer, so the score grows somewhat with the pool's size: compare pools of similar size.
The same features and seed give the same score, bit for bit, on the CPU.
"""
from dataclasses import dataclass

import numpy as np
import torch

from lib.umap.neighbors import nearest_neighbors

PAIRS = 20_000  # random pairs the typical distance is the median of (all pairs of a smaller pool)


@dataclass(frozen=True)
class Redundancy:
    score: float  # in [0, 1]
    neighbours: int  # K
    queries: int  # items whose K nearest neighbours were searched
    items: int  # pool items the features cover

    def to_json(self):
        """What an index's history entry records."""
        return {"score": round(self.score, 4), "neighbours": self.neighbours, "queries": self.queries,
                "items": self.items}

    def describe(self):
        """One line: the score, what it was measured on, and its scale."""
        return (f"redundancy {self.score:.2f} ({self.neighbours} nearest neighbours of {self.queries} of "
                f"{self.items} items; 0 = no near-copies, 1 = {self.neighbours} copies of every item)")


def distinct_pairs(n, count, rng):
    """(i, j) [P] each, i != j: every pair once when there are at most `count`, else `count` random ones."""
    if n * (n - 1) // 2 <= count:
        return np.triu_indices(n, k=1)
    first = rng.integers(n, size=count)
    second = (first + rng.integers(1, n, size=count)) % n  # never `first`
    return first, second


def typical_distance(points, rng):
    """The median distance between distinct rows of `points` [N, d] (N >= 2), over PAIRS pairs at most."""
    first, second = distinct_pairs(len(points), PAIRS, rng)
    distances = torch.linalg.vector_norm(points[first] - points[second], dim=1)  # [P]
    return float(np.median(distances.double().cpu().numpy()))


def closeness(distances, typical):
    """clamp(1 - d / d_typ, 0, 1) of each distance; when d_typ is 0 (most pairs are copies), its limit:
    1 for a copy, 0 for anything else."""
    if typical == 0:
        return (distances == 0).double()
    return (1 - distances.double() / typical).clamp_(0, 1)


def measure_redundancy(features, neighbours=20, queries=2000, seed=0, device=None):
    """The Redundancy of a pool described by `features` [N, d], one row per item.

    K = min(neighbours, N - 1); the queries are `queries` items drawn from `seed` (all of
    them when N <= queries). A pool of fewer than 2 items has no neighbours: score 0.
    """
    features = torch.as_tensor(features)
    n = len(features)
    k = max(0, min(neighbours, n - 1))
    if k == 0:
        return Redundancy(0.0, 0, n, n)
    # Normalised in float64: the norm of float32 rows of 1e20 overflows, and every row would read as a copy.
    points = torch.nn.functional.normalize(features.to(device or "cpu", torch.float64), dim=1).float()  # [N, d]
    rng = np.random.default_rng(seed)
    typical = typical_distance(points, rng)
    rows = np.arange(n) if n <= queries else np.sort(rng.choice(n, queries, replace=False))  # [Q]
    # K + 1 nearest: the item itself is among them at distance 0, the smallest (or one of
    # its exact copies is, also at 0: dropping the first column drops a 0 either way).
    distances, _ = nearest_neighbors(points[torch.from_numpy(rows).to(points.device)], points, k + 1)  # [Q, K + 1]
    values = closeness(distances[:, 1:], typical).mean(dim=1)  # [Q]
    return Redundancy(float(values.mean()), k, len(rows), n)
