"""Acquisition methods: the registry select.py exposes as --method choices.

A method is one function `select(context, k, seed) -> Selection` behind a name, the
inputs it reads from its SelectionContext (`Method.inputs`: "model", "features",
"pool_map", "scores", "frames"; lib.acquire.inputs says where each comes from), what
it asks of the model beyond its logits (`Method.model_needs`) and the units it can
pick (`Method.units`). A method that reads nothing picks among the ids alone.

Score-based methods are a pixel score (lib.acquire.scores), a reduction over the
item's pixels (lib.acquire.reduce) and a ranking (lib.acquire.rank) that respects
the unit's rules (regions never overlap). Methods never train, never write files
and hold no state.
"""
import functools
from dataclasses import dataclass, field

import numpy as np
import torch

from lib.acquire.auto import choose_method
from lib.acquire.kcenter import k_center_greedy
from lib.acquire.kmeanspp import kmeans_pp_seeding
from lib.acquire.meal import project_on_own_map, project_on_pool_map
from lib.acquire.rank import random_subset, top_k
from lib.acquire.scores import pixel_entropy, pixel_flip_disagreement, pixel_mutual_information
from lib.acquire.temporal import evenly_spaced
from lib.errors import UserError
from lib.text import plural

ALL_UNITS = ("image", "patch", "region")


@dataclass
class Selection:
    ids: list
    scores: dict | None  # {id: score} for every scored candidate; None for methods without scores
    record: dict = field(default_factory=dict)  # for the index's history entry (auto: its choice)
    report: str | None = None  # a line for select.py to print (auto: its choice and why)


@dataclass(frozen=True)
class Method:
    select: object
    summary: str
    inputs: tuple = ()  # what it reads: names of lib.acquire.inputs.PROVIDERS
    model_needs: tuple = ()  # what the model must offer: names of lib.acquire.inputs.MODEL_NEEDS
    units: tuple = ALL_UNITS  # the units of annotation it can pick
    picks_among_informative: bool = False  # MEAL: the budget comes out of the --informative candidates

    @property
    def needs_mc_dropout(self):
        """Its models are trained with --mc-dropout (lib.experiment)."""
        return "mc_dropout" in self.model_needs

    @property
    def reads_pool_map(self):
        """It keeps one map of the pool per experiment and seed (lib.experiment's --umap-cache)."""
        return "pool_map" in self.inputs


def cycle_seed(seed, cycle):
    """The seed a method gets in one cycle: the same --seed must not replay the same draws every cycle."""
    return int(np.random.SeedSequence([seed, cycle]).generate_state(1)[0])


def select_random(context, k, seed):
    return Selection(random_subset(context.candidates, k, seed, context.rules), None)


def select_random_images(context, k, seed):
    """Random whole images, every item of each: MEAL's initial set is 2 images x 16 patches."""
    if context.reader.unit.type == "region":
        return _select_random_tiled_images(context, k, seed)
    per_image = context.reader.unit.items_per_image
    if k % per_image:
        raise UserError(f"--method random-images takes whole images: the budget ({k}) must be a multiple of "
                        f"the {per_image} items of an image")
    candidates = set(context.candidates)
    suffixes = context.reader.unit.tile_suffixes()
    whole = [image_id for image_id in context.reader.images_of(context.candidates)
             if all(image_id + suffix in candidates for suffix in suffixes)]
    if k // per_image > len(whole):
        raise UserError(f"--method random-images: {plural(k // per_image, 'whole image')} asked, "
                        f"{plural(len(whole), 'is', 'are')} unlabeled")
    images = random_subset(whole, k // per_image, seed)
    return Selection([image_id + suffix for image_id in images for suffix in suffixes], None)


def _select_random_tiled_images(context, k, seed):
    """Region units: random images without a labeled pixel, each labeled whole by the regions that tile it from its
    top-left corner, until they reach the `k` regions of the budget: the fewest such images, as a budget of regions
    is rarely a whole number of images. S4AL+ starts from 10 % of the images labeled whole (its code's train_al_lab
    list, Nishant213/MMLAL main_al.py); its region sides divide its frames (30 on CamVid's 360x480, 43 on
    Cityscapes' 688x688). Where the side does not divide an image, its last strip of fewer pixels stays unlabeled:
    the regions of an index never overlap."""
    unit, dataset = context.reader.unit, context.reader.dataset
    candidates = set(context.candidates)
    tilings = {}
    for image_id in context.reader.images_of(context.candidates):
        tiles = [image_id + suffix for suffix, box in unit.layout(*dataset.image_size(image_id))
                 if box.top % unit.size == 0 and box.left % unit.size == 0]  # not the windows flush with a border
        if all(tile in candidates for tile in tiles):
            tilings[image_id] = tiles
    picked = []
    for image_id in random_subset(tilings, len(tilings), seed):
        if len(picked) >= k:
            break
        picked += tilings[image_id]
    if len(picked) < k:
        holders = plural(len(tilings), "image without a labeled pixel holds", "images without a labeled pixel hold")
        raise UserError(f"--method random-images: {plural(k, 'region')} asked, but the {holders} {len(picked)}")
    return Selection(picked, None)


def select_uniform(context, k, seed):
    """The study's Uniform: temporal subsampling, every n-th frame with n = candidates / k."""
    return Selection(evenly_spaced(context.frames, context.candidates, k), None)


def _select_top_scores(pixel_score, context, k, seed, scoring_seed=None):
    """Score every candidate by its reduced pixel score and take the k highest; `scoring_seed`: of the score's
    random draws."""
    scores = context.candidate_scores(pixel_score, scoring_seed)
    return Selection(top_k(scores, k, context.rules), scores)


def select_bald(context, k, seed):
    # Dropout masks are drawn from the seed and each batch's first image, so the same --seed gives the same scores
    # with any number of processes; the caller's RNG state is left as it was.
    device = context.reader.device
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        return _select_top_scores(
            functools.partial(pixel_mutual_information, samples=context.mc_samples), context, k, seed, seed
        )


def _select_diverse(pick, context, k, seed):
    """Run a batch picker on the features with the labeled items as initial centers."""
    labeled = len(context.labeled)
    picks = pick(context.features, k, centers=range(labeled), seed=seed, device=context.reader.device)
    return Selection([context.candidates[i - labeled] for i in picks], None)


def _select_meal(project, context, k, seed):
    """MEAL (lib.acquire.meal): the informative candidates, projected to 2-D, made diverse by K-Means++."""
    scores = context.candidate_scores(pixel_entropy)
    informative = top_k(scores, context.informative)
    points = project(context, informative, seed)  # [N_I, 2]
    picks = kmeans_pp_seeding(points, k, centers=(), seed=seed, device=context.reader.device)
    return Selection([informative[i] for i in picks], scores)


def select_topk(context, k, seed):
    return Selection(top_k(context.scores, k, context.rules), context.scores)


def select_auto(context, k, seed):
    """Table 6 of the study (lib.acquire.auto): random, entropy or coreset, from the pool's redundancy, the
    labeled share after this cycle and the model's training; the chosen method then selects.

    The redundancy is the mean of this cycle's score and those earlier cycles measured: each cycle's model sees
    the pool a little differently (scores of one pool moved by +-0.05 from cycle to cycle here), and a choice
    that flipped with that noise would mix two methods in one curve."""
    scores = (*context.earlier_redundancy, context.redundancy.score)
    choice = choose_method(sum(scores) / len(scores), 100 * (len(context.labeled) + k) / context.pool_items,
                           context.semi_supervised, context.auto_rule, len(scores))
    selection = METHODS[choice.method].select(context, k, seed)
    return Selection(selection.ids, selection.scores, {"auto": choice.to_json()}, choice.describe())


METHODS = {
    "random": Method(select_random, "uniform random items"),
    "random-images": Method(
        select_random_images, "uniform random whole images, all their patches (MEAL's initial set), or the regions "
        "tiling them until the budget is reached (S4AL+'s)",
    ),
    "uniform": Method(select_uniform, "every n-th frame of the sequences (no model)", inputs=("frames",),
                      units=("image",)),
    "entropy": Method(functools.partial(_select_top_scores, pixel_entropy), "pixel entropy", inputs=("model",)),
    "equal": Method(
        functools.partial(_select_top_scores, pixel_flip_disagreement),
        "EqualAL: Jensen-Shannon divergence between the prediction and its flipped-back mirror",
        inputs=("model",),
    ),
    "bald": Method(
        select_bald, "pixel mutual information under MC dropout (train with --mc-dropout)",
        inputs=("model",), model_needs=("mc_dropout",),
    ),
    "coreset": Method(
        functools.partial(_select_diverse, k_center_greedy),
        "k-center greedy on pooled ASPP features (or --features)", inputs=("features",), units=("image", "patch"),
    ),
    "kmeanspp": Method(
        functools.partial(_select_diverse, kmeans_pp_seeding),
        "K-Means++ seeding (D^2 sampling) on pooled ASPP features (or --features)", inputs=("features",),
        units=("image", "patch"),
    ),
    "meal": Method(
        functools.partial(_select_meal, project_on_pool_map),
        "MEAL: K-Means++ on the UMAP map of the pool (fitted once, --umap-cache) among the --informative "
        "highest-entropy items", inputs=("model", "pool_map"), model_needs=("backbone",),
        units=("image", "patch"), picks_among_informative=True,
    ),
    "meal-ft": Method(
        functools.partial(_select_meal, project_on_own_map),
        "MEAL-FT: as meal, with a UMAP map fitted on the informative items every cycle",
        inputs=("model",), model_needs=("backbone",), units=("image", "patch"), picks_among_informative=True,
    ),
    "topk": Method(select_topk, "the k highest of precomputed --scores", inputs=("scores",)),
    "auto": Method(
        select_auto, "the study's guide (Table 6): random on a diverse pool at a low budget, entropy on a diverse "
        "pool, coreset on a redundant one (--auto-redundant, --auto-low-budget)", inputs=("model", "redundancy"),
        units=("image", "patch"),
    ),
}
