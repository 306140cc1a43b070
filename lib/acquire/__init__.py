"""Acquisition methods: the registry select.py exposes as --method choices.

A method is one function `select(context, k, seed) -> Selection` behind a name,
what it reads (`Method.needs`) and the units it can pick (`Method.units`):

    None        nothing but the ids (random)
    "frames"    the dataset's sequence and frame numbers (uniform)
    "pixels"    per-pixel scores from the model's predictions (entropy, equal, bald),
                reduced to one score per item (image, patch or region) and ranked
    "features"  one feature vector per item, from the model or from --features
                (coreset, kmeanspp)
    "scores"    one score per item from --scores (topk)

Score-based methods are a pixel score (lib.acquire.scores), a reduction over the
item's pixels (lib.acquire.reduce) and a ranking (lib.acquire.rank) that respects
the unit's rules (regions never overlap). Methods never train, never write files
and hold no state.
"""
import functools
from dataclasses import dataclass

import numpy as np
import torch

from lib.acquire.kcenter import k_center_greedy
from lib.acquire.kmeanspp import kmeans_pp_seeding
from lib.acquire.meal import project_on_own_map, project_on_pool_map
from lib.acquire.rank import NO_RULES, SelectionRules, random_subset, top_k
from lib.acquire.reduce import REDUCTIONS
from lib.acquire.scores import (
    aspp_features, embed_items, pixel_entropy, pixel_flip_disagreement, pixel_mutual_information, score_items,
)
from lib.acquire.temporal import evenly_spaced, require_frames
from lib.engine import iterate_batches
from lib.errors import UserError
from lib.sliding import DEFAULT_SLIDE_WINDOW
from lib.units import Unit

ALL_UNITS = ("image", "patch", "region")


@dataclass
class SelectionContext:
    """What a method may look at: the pool, its candidates, and the model or precomputed inputs."""

    dataset: object  # lib.data.SegmentationDataset
    candidates: list  # unlabeled item ids that may be picked, in canonical order
    labeled: list  # labeled item ids
    unit: Unit = Unit("image")
    region_stride: int | None = None  # where region windows start (default: the region side)
    rules: SelectionRules = NO_RULES
    reduce: str = "mean"  # how pixel scores become one score per item (lib.acquire.reduce)
    model: object = None  # None for methods that need no model
    device: object = torch.device("cpu")
    amp: bool = False
    preprocess: dict | None = None  # {"mean", "std"} the model expects
    batch_size: int = 4
    workers: int = 0
    slide_window: tuple = DEFAULT_SLIDE_WINDOW  # (height, width): larger images are run window by window
    mc_samples: int = 20  # BALD's stochastic decoder passes
    features: object = None  # [len(labeled) + len(candidates), d] from --features, labeled rows first
    scores: dict | None = None  # {candidate id: score} from --scores
    informative: int = 200  # MEAL: the most uncertain candidates its K-Means++ chooses from
    pool_umap: object = None  # MEAL: the experiment's UMAP map (lib.acquire.meal)
    # (model, images) -> [B, d, h, w] in place of the feature methods' own maps (ASPP output for coreset and
    # kmeanspp, backbone for MEAL): a TorchScript model's --feature-layer (lib.model_files)
    feature_map: object = None

    def layout(self, height, width):
        """The items of a [height, width] image: [(id suffix, Box)]."""
        return self.unit.layout(height, width, self.region_stride)

    def images_of(self, item_ids):
        """The images holding the items, each once, in the pool's canonical order."""
        wanted = {self.unit.image_of(item_id) for item_id in item_ids}
        return [image_id for image_id in self.dataset.ids if image_id in wanted]

    def batches(self, image_ids):
        return iterate_batches(
            self.dataset, image_ids, self.preprocess["mean"], self.preprocess["std"], self.batch_size, self.workers
        )

    def candidate_scores(self, pixel_score):
        """{candidate id: the reduced pixel score of its item}."""
        scores = score_items(
            self.model, self.batches(self.images_of(self.candidates)), pixel_score, REDUCTIONS[self.reduce],
            self.layout, self.device, self.amp, self.slide_window,
        )
        return {item_id: scores[item_id] for item_id in self.candidates}

    def item_features(self, feature_map, item_ids):
        """[len(item_ids), d] float32: `feature_map(model, images)` averaged over each item."""
        ids, features = embed_items(
            self.model, feature_map, self.batches(self.images_of(item_ids)), self.layout, self.device, self.amp,
            self.slide_window,
        )
        row = {item_id: i for i, item_id in enumerate(ids)}
        return features[[row[item_id] for item_id in item_ids]]

    def pool_features(self):
        """[len(labeled) + len(candidates), d] float32, labeled rows first: precomputed or the pooled ASPP output."""
        if self.features is not None:
            return self.features
        return self.item_features(self.feature_map or aspp_features, self.labeled + self.candidates)


@dataclass
class Selection:
    ids: list
    scores: dict | None  # {id: score} for every scored candidate; None for methods without scores


@dataclass(frozen=True)
class Method:
    select: object
    summary: str
    needs: str | None = None  # see the module docstring
    needs_mc_dropout: bool = False
    needs_pool_umap: bool = False  # MEAL's map of the whole pool, fitted once per experiment
    picks_among_informative: bool = False  # MEAL: the budget comes out of the --informative candidates
    needs_model_features: bool = False  # reads feature maps of the model (unless --features replaces them)
    units: tuple = ALL_UNITS  # the units of annotation it can pick


def cycle_seed(seed, cycle):
    """The seed a method gets in one cycle: the same --seed must not replay the same draws every cycle."""
    return int(np.random.SeedSequence([seed, cycle]).generate_state(1)[0])


def select_random(context, k, seed):
    return Selection(random_subset(context.candidates, k, seed, context.rules), None)


def select_random_images(context, k, seed):
    """Random whole images, every item of each: MEAL's initial set is 2 images x 16 patches."""
    per_image = context.unit.items_per_image
    if k % per_image:
        raise UserError(f"--method random-images takes whole images: the budget ({k}) must be a multiple of "
                        f"the {per_image} items of an image")
    candidates = set(context.candidates)
    suffixes = context.unit.tile_suffixes()
    whole = [image_id for image_id in context.images_of(context.candidates)
             if all(image_id + suffix in candidates for suffix in suffixes)]
    if k // per_image > len(whole):
        raise UserError(f"--method random-images: {k // per_image} whole images asked, {len(whole)} are unlabeled")
    images = random_subset(whole, k // per_image, seed)
    return Selection([image_id + suffix for image_id in images for suffix in suffixes], None)


def select_uniform(context, k, seed):
    """The study's Uniform: temporal subsampling, every n-th frame with n = candidates / k."""
    frames = require_frames(context.dataset, "--method uniform")
    return Selection(evenly_spaced(frames, context.candidates, k), None)


def _select_top_scores(pixel_score, context, k, seed):
    """Score every candidate by its reduced pixel score and take the k highest."""
    scores = context.candidate_scores(pixel_score)
    return Selection(top_k(scores, k, context.rules), scores)


def select_bald(context, k, seed):
    # Dropout masks are drawn from the seed, so the same --seed gives the same scores.
    with torch.random.fork_rng(devices=[context.device] if context.device.type == "cuda" else []):
        torch.manual_seed(seed)
        return _select_top_scores(
            functools.partial(pixel_mutual_information, samples=context.mc_samples), context, k, seed
        )


def _select_diverse(pick, context, k, seed):
    """Run a batch picker on the pool features with the labeled images as initial centers."""
    labeled = len(context.labeled)
    picks = pick(context.pool_features(), k, centers=range(labeled), seed=seed, device=context.device)
    return Selection([context.candidates[i - labeled] for i in picks], None)


def _select_meal(project, context, k, seed):
    """MEAL (lib.acquire.meal): the informative candidates, projected to 2-D, made diverse by K-Means++."""
    scores = context.candidate_scores(pixel_entropy)
    informative = top_k(scores, context.informative)
    points = project(context, informative, seed)  # [N_I, 2]
    picks = kmeans_pp_seeding(points, k, centers=(), seed=seed, device=context.device)
    return Selection([informative[i] for i in picks], scores)


def select_topk(context, k, seed):
    return Selection(top_k(context.scores, k, context.rules), context.scores)


METHODS = {
    "random": Method(select_random, "uniform random items"),
    "random-images": Method(
        select_random_images, "uniform random whole images, all their patches (MEAL's initial set)",
        units=("image", "patch"),
    ),
    "uniform": Method(select_uniform, "every n-th frame of the sequences (no model)", needs="frames",
                      units=("image",)),
    "entropy": Method(functools.partial(_select_top_scores, pixel_entropy), "pixel entropy", needs="pixels"),
    "equal": Method(
        functools.partial(_select_top_scores, pixel_flip_disagreement),
        "EqualAL: Jensen-Shannon divergence between the prediction and its flipped-back mirror",
        needs="pixels",
    ),
    "bald": Method(
        select_bald, "pixel mutual information under MC dropout (train with --mc-dropout)",
        needs="pixels", needs_mc_dropout=True,
    ),
    "coreset": Method(
        functools.partial(_select_diverse, k_center_greedy),
        "k-center greedy on pooled ASPP features (or --features)", needs="features", needs_model_features=True,
        units=("image", "patch"),
    ),
    "kmeanspp": Method(
        functools.partial(_select_diverse, kmeans_pp_seeding),
        "K-Means++ seeding (D^2 sampling) on pooled ASPP features (or --features)", needs="features",
        needs_model_features=True, units=("image", "patch"),
    ),
    "meal": Method(
        functools.partial(_select_meal, project_on_pool_map),
        "MEAL: K-Means++ on the UMAP map of the pool (fitted once, --umap-cache) among the --informative "
        "highest-entropy items", needs="pixels", needs_pool_umap=True, picks_among_informative=True,
        needs_model_features=True, units=("image", "patch"),
    ),
    "meal-ft": Method(
        functools.partial(_select_meal, project_on_own_map),
        "MEAL-FT: as meal, with a UMAP map fitted on the informative items every cycle",
        needs="pixels", picks_among_informative=True, needs_model_features=True, units=("image", "patch"),
    ),
    "topk": Method(select_topk, "the k highest of precomputed --scores", needs="scores"),
}
