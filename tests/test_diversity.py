"""k-center greedy (Coreset) and K-Means++ seeding on tiny synthetic feature sets.

The references are written here in float64 numpy with explicit differences, the way
the papers state the algorithms, so they share no code (and no rounding shortcut)
with lib.acquire.distances.
"""
import itertools

import numpy as np
import pytest
import torch

from lib.acquire import distances
from lib.acquire.kcenter import k_center_greedy
from lib.acquire.kmeanspp import kmeans_pp_seeding

PICKERS = [k_center_greedy, kmeans_pp_seeding]


def coverage_radius(points, centers):
    """max over points of the distance to the nearest of `centers`; points [N, d] float64."""
    diff = points[:, None, :] - points[list(centers)][None, :, :]  # [N, m, d]
    return np.sqrt((diff**2).sum(axis=2)).min(axis=1).max()


def reference_k_center(points, k, centers=(), first=None):
    """Algorithm 1 of Sener & Savarese in float64: running min of squared distances,
    argmax with the lowest index on ties, centers and earlier picks excluded."""
    points = np.asarray(points, dtype=np.float64)  # [N, d]
    min_sq = np.full(len(points), np.inf)  # [N]
    taken = np.zeros(len(points), dtype=bool)  # [N]

    def add(c):
        nonlocal min_sq
        min_sq = np.minimum(min_sq, ((points - points[c]) ** 2).sum(axis=1))
        taken[c] = True

    for c in centers:
        add(c)
    picks = []
    if first is not None:
        picks.append(first)
        add(first)
    while len(picks) < k:
        pick = int(np.argmax(np.where(taken, -np.inf, min_sq)))  # np.argmax: first index on ties
        picks.append(pick)
        add(pick)
    return picks


# --- k-center greedy ------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("initial", [(), (0,)])
def test_k_center_is_within_twice_the_optimal_radius(seed, initial):
    """Gonzalez's bound: the greedy radius is at most 2x the best k-subset's, found by brute force.

    With initial centers the optimum is over subsets added to those same centers.
    """
    rng = np.random.default_rng(seed)
    points = rng.normal(size=(9 + seed % 4, 2)).astype(np.float32)  # [N, 2], N in 9..12
    exact = points.astype(np.float64)
    k = 3
    picks = k_center_greedy(points, k, centers=initial, seed=seed)
    free = [i for i in range(len(points)) if i not in initial]
    optimum = min(coverage_radius(exact, list(initial) + list(s)) for s in itertools.combinations(free, k))
    greedy = coverage_radius(exact, list(initial) + picks)
    assert optimum <= greedy <= 2 * optimum + 1e-9


def pool(kind, offset, seed):
    """[2000, 32] float32 features. "normal": continuous, no ties. "lattice": integers 0..5, so
    many points tie exactly for farthest and the lowest index must win; float32 rounding
    splits such ties at random unless they are settled exactly. +100 moves the data far from
    the origin, where |x|^2 - 2 x.c + |c|^2 in float32 cancels badly."""
    rng = np.random.default_rng(seed)
    if kind == "normal":
        points = rng.normal(size=(2000, 32))
    else:
        points = rng.integers(0, 6, size=(2000, 32))
    return (points + offset).astype(np.float32)


DATA = [("normal", 0.0), ("normal", 100.0), ("lattice", 0.0), ("lattice", 100.0)]


@pytest.mark.parametrize(("kind", "offset"), DATA)
def test_k_center_matches_a_float64_reference(kind, offset):
    points = pool(kind, offset, seed=1)
    labeled = list(range(0, 200, 10))  # 20 initial centers
    assert k_center_greedy(points, 50, centers=labeled) == reference_k_center(points, 50, labeled)


@pytest.mark.parametrize(("kind", "offset"), DATA)
def test_k_center_without_centers_starts_from_the_seed_then_follows_the_reference(kind, offset):
    points = pool(kind, offset, seed=2)
    picks = k_center_greedy(points, 50, seed=3)
    assert picks == reference_k_center(points, 50, first=picks[0])
    assert picks[0] == k_center_greedy(points, 1, seed=3)[0]


@pytest.mark.parametrize(("kind", "offset"), DATA)
def test_features_near_the_origin_are_read_in_place_and_far_ones_copied(kind, offset):
    """One feature row per item where it is enough: float32 features near the origin are
    the points themselves (their picks matched the reference above either way)."""
    points = pool(kind, offset, seed=1)
    for given in (points, torch.from_numpy(points)):  # select.py hands over a tensor
        in_place = np.shares_memory(distances.NearestCenterDistances(given, "cpu").points.numpy(), points)
        assert in_place == (offset == 0)
    assert not np.shares_memory(distances.NearestCenterDistances(points.astype(np.float64), "cpu").points.numpy(),
                                points)
    read_only = points.copy()
    read_only.flags.writeable = False  # torch cannot view it without a warning: copied
    assert not np.shares_memory(distances.NearestCenterDistances(read_only, "cpu").points.numpy(), read_only)


@pytest.mark.parametrize("labeled", [False, True])
def test_k_center_on_copies_of_few_points_matches_the_reference(labeled):
    """20,000 copies of 81 points of N(0, 1) in 8-D. Once each of the 81 is a center (after 80
    picks, or from the start with one copy of each labeled), every point left is at distance
    exactly 0: all tie, and each pick must be the lowest free index."""
    rng = np.random.default_rng(0)
    distinct = rng.normal(size=(81, 8)).astype(np.float32)  # [81, 8]
    rows = rng.integers(len(distinct), size=20000)
    points = distinct[rows]  # [N, 8]
    if labeled:
        centers = sorted(np.unique(rows, return_index=True)[1])  # the first copy of each
        picks = k_center_greedy(points, 120, centers=centers)
        assert picks == reference_k_center(points, 120, centers)
    else:
        picks = k_center_greedy(points, 120, seed=0)
        assert picks == reference_k_center(points, 120, first=picks[0])


@pytest.mark.parametrize("dim", [2, 32])
def test_k_center_on_float64_features_far_from_the_origin_matches_the_reference(dim):
    """1e4 + N(0, 1) in float64. float32 keeps 1e4 to 1e-3, so the farthest points can only be
    told apart from the features as given, not from a float32 copy of them."""
    points = 1e4 + np.random.default_rng(0).normal(size=(2000, dim))  # [N, d] float64
    picks = k_center_greedy(points, 100, seed=0)
    assert picks == reference_k_center(points, 100, first=picks[0])


@pytest.mark.parametrize(("scale", "dtype"), [(1e-40, np.float32), (1e-100, np.float64), (1e-24, np.float64),
                                             (1e-20, np.float32), (1e19, np.float32), (1e39, np.float64)])
def test_k_center_on_features_whose_squares_float32_cannot_hold_matches_the_reference(scale, dtype):
    """Squared distances of 1e-48 underflow float32 to 0 (every point a copy of a center), of 1e38 overflow it,
    and 1e-100 or 1e39 are not float32 numbers at all: the working copy is scaled by a power of two, which
    changes no decision. 100 points lie 1e-4 from others, so that the float64 distances written back near zero
    must be scaled as the rest."""
    rng = np.random.default_rng(4)
    base = rng.normal(size=(300, 16))
    near = base[:100] + 1e-4 * rng.normal(size=(100, 16))
    points = (scale * np.concatenate([base, near])).astype(dtype)  # [N, d]
    centers = range(0, 300, 2)
    assert k_center_greedy(points, 30, centers=centers) == reference_k_center(points, 30, list(centers))


def test_a_distance_float32_rounds_to_zero_is_not_taken_for_a_copy():
    points = np.float32([[0, 0], [1, 0], [0, 0], [0, 1e-30]])  # 2 copies center 0; 3 is 1e-60 from it, squared
    assert k_center_greedy(points, 1, centers=[0, 1]) == reference_k_center(points, 1, [0, 1]) == [3]


def test_views_torch_cannot_take_and_centers_given_as_a_tensor_pick_as_a_list():
    points = pool("normal", 0.0, seed=5)
    expected = reference_k_center(points[::-1], 30, [3, 7])
    assert k_center_greedy(points[::-1], 30, centers=torch.tensor([7, 3])) == expected  # negative strides
    assert kmeans_pp_seeding(points, 5, centers=torch.tensor([7, 3])) == kmeans_pp_seeding(points, 5, centers=[3, 7])


def test_k_center_breaks_exact_ties_far_from_the_origin_by_the_lowest_index():
    """float32 features 1e5 + 0.01 * {0..5}^128: many points tie exactly for farthest, and
    their squared norms (1.3e12) carry more digits than float64 holds, so |x|^2 - 2 x.c + |c|^2
    on the features as given splits those ties at random; only differences keep them."""
    rng = np.random.default_rng(1)
    points = (1e5 + 0.01 * rng.integers(0, 6, size=(2000, 128))).astype(np.float32)  # [N, d]
    labeled = list(range(0, 200, 10))
    assert k_center_greedy(points, 100, centers=labeled) == reference_k_center(points, 100, labeled)


def test_k_center_on_float32_features_far_from_the_origin_matches_the_reference():
    """float32 1e5 + N(0, 1), d = 1024: squared norms of 1e13, whose float64 rounding (1e-3) is
    more than the gap between the two farthest points at some picks."""
    rng = np.random.default_rng(2)
    points = (1e5 + rng.standard_normal((1000, 1024), dtype=np.float32)).astype(np.float32)  # [N, d]
    picks = k_center_greedy(points, 80, seed=2)
    assert picks == reference_k_center(points, 80, first=picks[0])


def test_k_center_on_ties_takes_the_lowest_index():
    """Points 1 and 3 are both at distance 2 from the center at 0 (and 2 from nothing else)."""
    points = np.array([[0.0, 0.0], [2.0, 0.0], [0.0, 0.0], [0.0, 2.0]], dtype=np.float32)  # [4, 2]
    assert k_center_greedy(points, 1, centers=[0]) == [1]
    assert k_center_greedy(points, 1, centers=[0, 1]) == [3]


def pool_with_duplicates(rng):
    """Centers 0..2; points 3..5 copy them; 6..13 are 4 distinct points, each present twice.

    Returns (points [14, 4], centers, the 4 twin pairs).
    """
    base = rng.normal(size=(7, 4))  # 3 future centers + 4 other points
    rows = [0, 1, 2, 0, 1, 2, 3, 3, 4, 4, 5, 5, 6, 6]
    twins = [(6, 7), (8, 9), (10, 11), (12, 13)]
    return base[rows].astype(np.float32), [0, 1, 2], twins


@pytest.mark.parametrize("pick", PICKERS)
@pytest.mark.parametrize("seed", range(3))
def test_duplicates_are_covered_once(pick, seed):
    """k = number of distinct new points: one of each twin pair, no copy of a center.

    A copy of a center, or the twin of an earlier pick, is at distance 0: k-center never
    prefers it and D^2 sampling gives it probability 0 while a distinct point remains.
    """
    points, centers, twins = pool_with_duplicates(np.random.default_rng(seed))
    picks = pick(points, len(twins), centers=centers, seed=seed)
    assert [len(set(pair) & set(picks)) for pair in twins] == [1] * len(twins)  # so none of 0..5


@pytest.mark.parametrize("pick", PICKERS)
def test_picking_every_free_point_returns_each_once(pick):
    """With duplicates everywhere, k = N - centers still gives N - centers distinct non-centers."""
    points, centers, _ = pool_with_duplicates(np.random.default_rng(0))
    picks = pick(points, len(points) - len(centers), centers=centers, seed=0)
    assert sorted(picks) == list(range(3, len(points)))


@pytest.mark.parametrize("pick", PICKERS)
def test_no_pick_without_centers_repeats(pick):
    points = np.zeros((6, 3), dtype=np.float32)  # [N, d] all identical: every distance is 0
    assert sorted(pick(points, 6, seed=4)) == list(range(6))


@pytest.mark.parametrize("pick", PICKERS)
def test_asking_for_more_than_the_free_points_raises(pick):
    points = np.random.default_rng(0).normal(size=(5, 2)).astype(np.float32)  # [5, 2]
    with pytest.raises(ValueError):
        pick(points, 3, centers=[0, 1, 2])
    with pytest.raises(ValueError):
        pick(points, 6)
    # A center listed twice counts once: 3 points are still free.
    assert len(pick(points, 3, centers=[0, 0, 1])) == 3


@pytest.mark.parametrize("pick", PICKERS)
def test_initial_centers_added_in_chunks_give_the_same_picks(pick, monkeypatch):
    """CHUNK_ELEMENTS = 3 N: the 20 labeled centers go in 7 blocks of at most 3."""
    rng = np.random.default_rng(5)
    points = (rng.normal(size=(300, 8)) + 50).astype(np.float32)  # [N, d]
    labeled = list(range(0, 300, 15))
    default = pick(points, 10, centers=labeled, seed=1)
    monkeypatch.setattr(distances, "CHUNK_ELEMENTS", 3 * len(points))
    assert pick(points, 10, centers=labeled, seed=1) == default
    monkeypatch.setattr(distances, "CHUNK_ELEMENTS", 1)  # one center per block
    assert pick(points, 10, centers=labeled, seed=1) == default


@pytest.mark.parametrize("pick", PICKERS)
def test_float64_work_in_small_blocks_gives_the_same_picks(pick, monkeypatch):
    """FLOAT64_ELEMENTS = 3 rows and CHUNK_ELEMENTS = 1 row of d: the centring, the exact zeros and
    the re-checks of rivals (many, on a lattice full of ties) all go in many blocks."""
    points = pool("lattice", 100.0, seed=4)[:500]  # [500, 32]
    labeled = list(range(0, 50, 5))
    default = pick(points, 30, centers=labeled, seed=1)
    monkeypatch.setattr(distances, "FLOAT64_ELEMENTS", 3 * points.shape[1])
    monkeypatch.setattr(distances, "CHUNK_ELEMENTS", points.shape[1])
    assert pick(points, 30, centers=labeled, seed=1) == default


# --- K-Means++ seeding -----------------------------------------------------------------


def chi_square(counts, probabilities):
    expected = np.asarray(probabilities) * sum(counts)
    return float(((np.asarray(counts) - expected) ** 2 / expected).sum())


def test_kmeans_pp_first_pick_is_uniform_and_follows_the_seed():
    """Without centers the first pick is uniform: every index turns up over the seeds, with
    frequencies a chi-square test (3 degrees of freedom, 16.3 is its 99.9% quantile) accepts."""
    points = np.arange(4, dtype=np.float32)[:, None] ** 2  # [4, 1], far from evenly spaced
    firsts = [kmeans_pp_seeding(points, 1, seed=s)[0] for s in range(400)]
    assert firsts[:20] == [kmeans_pp_seeding(points, 1, seed=s)[0] for s in range(20)]
    assert set(firsts[:20]) == {0, 1, 2, 3}
    assert chi_square(np.bincount(firsts, minlength=4), [0.25] * 4) < 16.3


def test_kmeans_pp_draws_with_d_squared_probabilities():
    """1-D points 0, 1, 2, 4 with the center at 0: squared distances 1, 4, 16, so the first
    pick is 1, 2 or 3 with probabilities 1/21, 4/21, 16/21. After 3 (at 4) the second pick's
    squared distances are min(1, 9) = 1 and min(4, 4) = 4: 1 or 2 with 1/5, 4/5.

    Chi-square with 2 and 1 degrees of freedom; 13.8 and 10.8 are the 99.9% quantiles.
    """
    points = np.array([[0.0], [1.0], [2.0], [4.0]], dtype=np.float32)  # [N, 1]
    draws = [kmeans_pp_seeding(points, 2, centers=[0], seed=s) for s in range(1000)]
    first = np.bincount([d[0] for d in draws], minlength=4)
    assert first[0] == 0  # the center
    assert chi_square(first[1:], np.array([1, 4, 16]) / 21) < 13.8
    after_far = [d[1] for d in draws if d[0] == 3]  # about 760 draws
    second = np.bincount(after_far, minlength=4)
    assert second[0] == second[3] == 0
    assert chi_square(second[1:3], [0.2, 0.8]) < 10.8


def test_kmeans_pp_is_reproducible_from_the_seed():
    rng = np.random.default_rng(6)
    points = rng.normal(size=(500, 16)).astype(np.float32)  # [N, d]
    runs = [kmeans_pp_seeding(points, 20, centers=[3, 7], seed=s) for s in (11, 11, 12)]
    assert runs[0] == runs[1]
    assert runs[0] != runs[2]
    assert len(set(runs[0])) == 20 and not {3, 7} & set(runs[0])


@pytest.mark.parametrize("offset", [0.1, 1e-3])
def test_kmeans_pp_never_picks_a_copy_of_a_center_while_a_new_point_remains(offset):
    """20 labeled points, 10 exact copies of each, and one new point `offset` from labeled point 0.

    Exact D^2 sampling gives every copy weight 0, so the new point must be drawn every
    time, even when its own squared distance (1e-6) is below float32's rounding residue.
    """
    rng = np.random.default_rng(0)
    labeled = rng.normal(size=(20, 32))
    new = labeled[:1] + offset * np.eye(32)[:1]
    points = np.concatenate([labeled, np.repeat(labeled, 10, axis=0), new]).astype(np.float32)  # [221, 32]
    picks = [kmeans_pp_seeding(points, 1, centers=range(20), seed=s)[0] for s in range(200)]
    assert picks == [len(points) - 1] * 200
