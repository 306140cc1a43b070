"""Turning scores into a selection, deterministically."""
import numpy as np


def top_k(scores, k):
    """The k ids of highest score; ties are broken by id so the result never depends on order."""
    return sorted(scores, key=lambda item_id: (-scores[item_id], item_id))[:k]


def random_subset(ids, k, seed):
    """k ids drawn uniformly without replacement; the same seed and ids give the same draw."""
    ids = sorted(ids)
    picks = np.random.default_rng(seed).permutation(len(ids))[:k]
    return [ids[i] for i in picks]
