"""Turning scores into a selection, deterministically."""
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
        """The first k ids of `ordered_ids` that keep the selection within the rules (fewer if not enough fit)."""
        if self.boxes is None:
            return list(ordered_ids[:k])
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


def top_k(scores, k, rules=NO_RULES):
    """The k ids of highest score that fit the rules; ties are broken by id so the result never depends on order."""
    return rules.first(sorted(scores, key=lambda item_id: (-scores[item_id], item_id)), k)


def random_subset(ids, k, seed, rules=NO_RULES):
    """k ids drawn uniformly without replacement (within the rules); the same seed and ids give the same draw."""
    ids = sorted(ids)
    order = np.random.default_rng(seed).permutation(len(ids))
    return rules.first([ids[i] for i in order], k)
