"""lib.acquire.rank: rankings and draws equal those of plain sorts, whatever the dict order, ties and rules."""
import numpy as np
import pytest

from lib.acquire.rank import NO_RULES, SelectionRules, random_subset, ranked, top_k
from lib.units import Box


def sorted_by_key(scores):
    """The ranking by definition: highest score first, ties by id."""
    return sorted(scores, key=lambda item_id: (-scores[item_id], item_id))


def scores_with_ties(n, seed):
    """{id: score} in shuffled order, with many equal scores, and 0.0 beside -0.0 (equal, so tied by id)."""
    rng = np.random.default_rng(seed)
    values = rng.integers(-3, 4, size=n).astype(float) / 2  # 13 distinct values for n ids
    values[rng.random(n) < 0.1] = -0.0
    ids = [f"img{rng.integers(1000):03d}#r{i % 4}c{i // 4}" for i in range(n)]
    return {ids[i]: float(values[i]) for i in rng.permutation(n)}


@pytest.mark.parametrize("seed", range(5))
def test_ranking_is_the_sort_by_score_then_id(seed):
    scores = scores_with_ties(500, seed)
    assert list(ranked(scores)) == sorted_by_key(scores)
    assert list(ranked(dict(reversed(scores.items())))) == sorted_by_key(scores)
    for k in (0, 1, 7, 499, 500, 600):
        assert top_k(scores, k) == sorted_by_key(scores)[:k]


def test_ranking_of_nothing_is_empty():
    assert list(ranked({})) == [] and top_k({}, 3) == [] and random_subset([], 3, 0) == []


def test_rules_read_a_ranking_no_further_than_they_need():
    read = []

    def ranking():  # a, b, c overlap in a row on image x; then 100 regions of image y
        for item_id in ["a", "b", "c", *range(100)]:
            read.append(item_id)
            yield item_id

    assert NO_RULES.first(ranking(), 2) == ["a", "b"] and read == ["a", "b"]
    read.clear()
    boxes = {"a": ("x", Box(0, 0, 2, 2)), "b": ("x", Box(1, 1, 3, 3)), "c": ("x", Box(2, 2, 4, 4)),
             **{n: ("y", Box(n, 0, n + 1, 1)) for n in range(100)}}
    assert SelectionRules(boxes).first(ranking(), 3) == ["a", "c", 0] and len(read) <= 5


def test_random_subset_is_a_prefix_of_one_seeded_permutation_of_the_sorted_ids():
    ids = [f"i{n}" for n in range(300)]
    shuffled = [ids[i] for i in np.random.default_rng(9).permutation(300)]
    full = random_subset(shuffled, 300, 4)
    assert sorted(full) == sorted(ids)
    assert random_subset(ids, 25, 4) == full[:25]
