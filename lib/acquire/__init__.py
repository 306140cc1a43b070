"""Acquisition methods: the registry select.py exposes as --method choices.

A method is one function `select(context, k, seed) -> Selection` behind a name.
Score-based methods are a pixel score (lib.acquire.scores), a reduction
(lib.acquire.reduce) and a ranking (lib.acquire.rank); batch methods pick from the
candidates directly. Methods never train, never write files and hold no state.
"""
from dataclasses import dataclass

import numpy as np

from lib.acquire.rank import random_subset, top_k
from lib.acquire.reduce import REDUCTIONS
from lib.acquire.scores import pixel_entropy, score_images
from lib.engine import iterate_batches


@dataclass
class SelectionContext:
    """What a method may look at: the pool, its unlabeled candidates, and the model."""

    dataset: object  # lib.data.SegmentationDataset
    candidates: list  # unlabeled item ids, in canonical order
    labeled: list
    model: object = None  # None for methods that need no model
    device: object = None
    amp: bool = False
    preprocess: dict | None = None  # {"mean", "std"} the model expects
    batch_size: int = 4
    workers: int = 0

    def batches(self, ids):
        return iterate_batches(
            self.dataset, ids, self.preprocess["mean"], self.preprocess["std"], self.batch_size, self.workers
        )


@dataclass
class Selection:
    ids: list
    scores: dict | None  # {id: score} for every scored candidate; None for methods without scores


@dataclass(frozen=True)
class Method:
    select: object
    needs_model: bool
    summary: str


def cycle_seed(seed, cycle):
    """The seed a method gets in one cycle: the same --seed must not replay the same draws every cycle."""
    return int(np.random.SeedSequence([seed, cycle]).generate_state(1)[0])


def select_random(context, k, seed):
    return Selection(random_subset(context.candidates, k, seed), None)


def select_entropy(context, k, seed):
    """Mean pixel entropy of the softmax (the study's Entropy)."""
    scores = score_images(
        context.model, context.batches(context.candidates), pixel_entropy, REDUCTIONS["mean"],
        context.device, context.amp,
    )
    return Selection(top_k(scores, k), scores)


METHODS = {
    "random": Method(select_random, needs_model=False, summary="uniform random images"),
    "entropy": Method(select_entropy, needs_model=True, summary="mean pixel entropy"),
}
