"""Turning scores into a selection, deterministically.

Rankings are generators over numpy arrays: a pool of 200,000 candidates costs a few
numbers per id, not a sort key object per id, and a caller that stops after k ids
orders no further (rules.first).
"""
import itertools
from collections import Counter, defaultdict
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class SelectionRules:
    """What a selection must respect beyond "no item twice".

    Images and patch cells never overlap, so they need no rules. Region windows of
    one image may (a stride below the side, or the window flush with the border), and
    S4AL's per-image ranking caps how many regions one image gives per cycle.
    """

    boxes: dict | None = None  # {region id: (image id, Box)} of every candidate region
    per_image: int | None = None  # at most this many items of one image

    def first(self, ordered_ids, k):
        """The first k ids of the iterable `ordered_ids` that keep the selection within the rules (fewer if not
        enough fit); it is read no further than that."""
        if self.boxes is None:
            return list(itertools.islice(ordered_ids, k))
        kept, taken = [], defaultdict(list)  # taken: {image id: [Box]} of kept regions
        for item_id in ordered_ids:
            if len(kept) == k:
                break
            image_id, box = self.boxes[item_id]
            if self.per_image is not None and len(taken[image_id]) >= self.per_image:
                continue
            if any(box.overlaps(other) for other in taken[image_id]):
                continue
            taken[image_id].append(box)
            kept.append(item_id)
        return kept

    def capacity(self, ids):
        """An upper bound on how many of `ids` one selection can hold: the per-image cap times the images."""
        if self.per_image is None or self.boxes is None:
            return len(ids)
        per_image = Counter(self.boxes[item_id][0] for item_id in ids)
        return sum(min(n, self.per_image) for n in per_image.values())


NO_RULES = SelectionRules()


def ranked(scores):
    """The ids of `scores` {id: score}, highest score first, equal scores in id order, so that the ranking never
    depends on the dict's order; a generator.

    Holds 24 bytes per id (a list of the ids, the scores as float64, their order), where sorting with a key
    would build a (score, id) tuple per id, about 100 bytes; equal scores are put in id order as they come up.
    """
    ids = list(scores)
    values = np.fromiter(scores.values(), dtype=np.float64, count=len(ids))  # [N]
    order = np.argsort(values)[::-1]  # [N], highest first; a view, and unstable: ties are put in id order below
    start = 0
    while start < len(order):
        value, end = values[order[start]], start + 1
        while end < len(order) and values[order[end]] == value:
            end += 1
        yield from sorted(ids[i] for i in order[start:end])
        start = end


def top_k(scores, k, rules=NO_RULES):
    """The k ids of highest score that fit the rules; ties are broken by id so the result never depends on order."""
    return rules.first(ranked(scores), k)


def random_subset(ids, k, seed, rules=NO_RULES):
    """k ids drawn uniformly without replacement (within the rules); the same seed and ids give the same draw."""
    ids = sorted(ids)
    order = np.random.default_rng(seed).permutation(len(ids))  # [N]
    return rules.first((ids[i] for i in order), k)
