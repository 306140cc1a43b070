import argparse
import dataclasses
import math
import re

import numpy as np
import pytest
import torch

from lib.acquire import METHODS, cycle_seed
from lib.acquire.auto import AutoRule
from lib.acquire.budget import budget_text, parse_budget
from lib.acquire.context import ItemReader, SelectionContext
from lib.acquire.inputs import DEFAULT_POOLING, MODEL_NEEDS, PROVIDERS, check_flags, inputs_read, model_needs
from lib.acquire.rank import random_subset, top_k
from lib.acquire.reduce import REDUCTIONS
from lib.acquire.scores import entropy_map
from lib.data.base import Frame, SegmentationDataset
from lib.errors import UserError
from lib.model_files import MODEL_FILE_FLAGS
from lib.redundancy import Redundancy, measure_redundancy
from lib.umap import UMAP
from lib.units import Unit


def test_entropy_of_known_distributions():
    probs = torch.zeros(1, 4, 1, 3)  # [B, C, H, W]
    probs[0, :, 0, 0] = 0.25  # uniform: log 4
    probs[0, 2, 0, 1] = 1.0  # certain: 0
    probs[0, :2, 0, 2] = 0.5  # two-way tie: log 2
    np.testing.assert_allclose(entropy_map(probs)[0, 0].numpy(), [math.log(4), 0.0, math.log(2)], atol=1e-6)


def test_reductions():
    scores = torch.tensor([[[1.0, 2.0], [3.0, 6.0]], [[0.0, 0.0], [0.0, 4.0]]])  # [B, H, W]
    assert REDUCTIONS["mean"](scores).tolist() == [3.0, 1.0]
    assert REDUCTIONS["sum"](scores).tolist() == [12.0, 4.0]
    assert REDUCTIONS["max"](scores).tolist() == [6.0, 4.0]


def test_top_k_breaks_ties_by_id_whatever_the_order():
    scores = {"c": 1.0, "a": 1.0, "b": 2.0, "d": 0.5}
    assert top_k(scores, 3) == ["b", "a", "c"]
    assert top_k(dict(reversed(scores.items())), 3) == ["b", "a", "c"]


def test_random_subset_depends_on_seed_not_order():
    ids = [f"i{n}" for n in range(50)]
    assert random_subset(ids, 10, 3) == random_subset(list(reversed(ids)), 10, 3)
    assert random_subset(ids, 10, 3) != random_subset(ids, 10, 4)
    assert len(set(random_subset(ids, 50, 0))) == 50


def test_cycle_seed_differs_between_cycles_and_seeds():
    seeds = {cycle_seed(seed, cycle) for seed in range(10) for cycle in range(1, 11)}
    assert len(seeds) == 100  # seed + cycle, for one, would repeat along the diagonals
    assert all(0 <= s < 2 ** 32 for s in seeds)
    # Pinned: a new derivation would change every selection of a --seed already run.
    assert cycle_seed(0, 1) == 3964924996


@pytest.mark.parametrize(("text", "pool", "items"),
                         [("10%", 120, 12), ("10%", 2975, 298), ("2.5%", 100, 3), ("7", 10, 7)])
def test_parse_budget(text, pool, items):
    assert parse_budget(text, pool, None, None) == items


@pytest.mark.parametrize(("text", "items"), [("2.5%px", 40), ("1%px", 16), ("0.07%px", 1), ("5", 5)])
def test_pixel_budgets_count_items_of_the_mean_candidate_size(text, items):
    """A pool of 100 images of 360x480 in 90x120 patches: 2.5 % of its pixels are 40 of its 1600 patches."""
    assert parse_budget(text, None, 100 * 360 * 480, 90 * 120) == items


@pytest.mark.parametrize(("text", "message"), [
    ("0", "at least one item"), ("-3", "at least one item"), ("0%", "at least one item"), ("-0.5%px", "at least one"),
    ("ten", "expected a count"), ("5%%", "expected a count"), ("x%px", "expected a count"), ("nan%", "expected a"),
    ("inf", "expected a count"), ("1.5", "expected a count"), ("1e5000%", "at most 100%"),
    ("100.01%px", "at most 100%"),
])
def test_bad_budgets_are_refused_where_parsed(text, message):
    with pytest.raises(argparse.ArgumentTypeError, match=message):
        budget_text(text)


@pytest.mark.parametrize("text", ["0.1%", "0.01%px"])
def test_a_share_that_rounds_to_no_item_is_refused(text):
    with pytest.raises(UserError, match="rounds to no item"):
        parse_budget(budget_text(text), 100, 1000, 10)


def test_share_budgets_need_an_item_count():
    with pytest.raises(UserError, match="regions have no item count.*10%px"):
        parse_budget("10%", None, 1000, 10)


class ConstantImages(SegmentationDataset):
    """A pool whose image i is filled with value 10 i, in sequences of 4 frames: models can tell images apart."""

    def __init__(self, count):
        ids = {f"img{i:02d}": None for i in range(count)}
        frames = {image_id: Frame(f"seq{i // 4}", i % 4) for i, image_id in enumerate(ids)}
        super().__init__("toy", "train", ids, {}, ["a", "b", "c"], frames)

    def load_image(self, image_id):
        return np.full((8, 8, 3), int(image_id[3:]) * 10, dtype=np.uint8)


class BrightnessModel(torch.nn.Module):
    """Confident on dark images, uniform on white ones: entropy grows with the image id.

    Split like lib.models.DeepLabV3Plus (encode, decode with dropout) so that every
    method runs on it; both of its named feature maps are the image itself.
    """

    feature_maps = ("backbone", "aspp")

    def __init__(self):
        super().__init__()
        self.dropout = torch.nn.Dropout(0.5)

    def encode(self, x):  # [B, 3, H, W], values in [0, 1]
        darkness = 1 - x.mean(dim=1, keepdim=True)  # [B, 1, H, W]
        return darkness, x

    def decode(self, darkness, _, size):
        darkness = self.dropout(darkness)
        return torch.cat([10 * darkness, 0 * darkness, 0 * darkness], dim=1)  # [B, 3, H, W]

    def forward(self, x):
        return self.decode(*self.encode(x), x.shape[-2:])

    def feature_map(self, name, x):
        return x


def context_for(dataset, labeled, with_pool_map=False):
    """Every input a method may read, as select.py's providers would load it for the BrightnessModel."""
    reader = ItemReader(dataset, Unit(), torch.device("cpu"), batch_size=3)
    model, preprocess = BrightnessModel(), {"mean": [0, 0, 0], "std": [1, 1, 1]}
    candidates = [i for i in dataset.ids if i not in labeled]
    pool_map = None
    if with_pool_map:
        pool_map = UMAP(n_neighbors=4, seed=0)
        pool_map.fit(reader.features(model, preprocess, "backbone", dataset.ids))
    features = reader.features(model, preprocess, "aspp", labeled + candidates)
    return SelectionContext(
        reader, candidates, labeled, len(dataset.ids), mc_samples=4, informative=8,
        auto_rule=AutoRule(redundant=0.5, low_budget=10),
        model=model, preprocess=preprocess, features=features,
        scores={image_id: float(int(image_id[3:]) % 5) for image_id in candidates}, pool_map=pool_map,
        frames=dataset.frames, redundancy=measure_redundancy(features), semi_supervised=False,
    )


@pytest.mark.parametrize("name", sorted(METHODS))
def test_every_method_selects_exactly_k_new_items_deterministically(name):
    dataset = ConstantImages(12)
    labeled = ["img00", "img05"]
    method = METHODS[name]
    first = method.select(context_for(dataset, labeled, "pool_map" in method.inputs), 4, seed=7)
    again = method.select(context_for(dataset, labeled, "pool_map" in method.inputs), 4, seed=7)
    assert len(first.ids) == 4 == len(set(first.ids))
    assert not set(first.ids) & set(labeled)
    assert first.ids == again.ids and first.scores == again.scores


@pytest.mark.parametrize("score, labeled, chosen", [
    (0.9, ["img00"], "coreset"),  # redundant: 5 of 12 labeled after the cycle
    (0.1, ["img00"], "entropy"),  # diverse, 42 % labeled: a high budget
    (0.1, [], "random"),  # diverse, 1 of 12 = 8.3 % labeled: a low budget
])
def test_auto_selects_what_the_method_of_its_choice_selects(score, labeled, chosen):
    dataset = ConstantImages(12)
    context = dataclasses.replace(context_for(dataset, labeled), redundancy=Redundancy(score, 11, 12, 12))
    k = 4 if labeled else 1
    selection = METHODS["auto"].select(context, k, seed=3)
    assert selection.ids == METHODS[chosen].select(context, k, seed=3).ids
    assert selection.record["auto"]["method"] == chosen and selection.report.startswith(f"auto: {chosen} ")


def test_auto_decides_on_the_mean_redundancy_of_the_cycles_so_far():
    """A diverse score this cycle after two redundant ones: still a redundant pool, one choice for the curve."""
    context = dataclasses.replace(context_for(ConstantImages(12), ["img00"]), redundancy=Redundancy(0.3, 11, 12, 12),
                                  earlier_redundancy=(0.6, 0.6))
    record = METHODS["auto"].select(context, 4, seed=3).record["auto"]
    assert (record["method"], record["redundancy"], record["redundancy_cycles"]) == ("coreset", 0.5, 3)


def test_auto_counts_the_labeled_share_of_the_whole_pool():
    """--prefilter leaves 4 candidates of 12 images: 1 + 4 labeled after the cycle are 42 % of the pool, not 100 %."""
    context = dataclasses.replace(context_for(ConstantImages(12), ["img00"]), redundancy=Redundancy(0.1, 11, 12, 12),
                                  candidates=["img02", "img04", "img06", "img08"])
    assert METHODS["auto"].select(context, 4, seed=3).record["auto"]["labeled_share"] == pytest.approx(100 * 5 / 12,
                                                                                                       abs=1e-4)


def test_entropy_picks_the_most_uncertain_images():
    dataset = ConstantImages(12)
    selection = METHODS["entropy"].select(context_for(dataset, ["img11"]), 3, seed=0)
    assert selection.ids == ["img10", "img09", "img08"]
    assert set(selection.scores) == set(dataset.ids) - {"img11"}


def test_bald_samples_dropout_from_the_seed():
    dataset = ConstantImages(12)
    first = METHODS["bald"].select(context_for(dataset, []), 3, seed=0).scores
    other = METHODS["bald"].select(context_for(dataset, []), 3, seed=1).scores
    assert first != other and all(score > 0 for score in first.values())


def test_coreset_spreads_over_the_feature_space():
    """Features are the image brightness: the farthest images from img00 come first."""
    dataset = ConstantImages(12)
    selection = METHODS["coreset"].select(context_for(dataset, ["img00"]), 2, seed=0)
    assert selection.ids == ["img11", "img05"] or selection.ids == ["img11", "img06"]


def test_uniform_takes_evenly_spaced_frames():
    dataset = ConstantImages(12)
    assert METHODS["uniform"].select(context_for(dataset, []), 3, seed=0).ids == ["img02", "img06", "img10"]


def test_topk_ranks_the_given_scores():
    dataset = ConstantImages(12)
    assert METHODS["topk"].select(context_for(dataset, []), 3, seed=0).ids == ["img04", "img09", "img03"]


@pytest.mark.parametrize("name", sorted(METHODS))
def test_every_method_declares_inputs_that_have_a_provider(name):
    assert set(METHODS[name].inputs) <= PROVIDERS.keys()
    assert set(METHODS[name].model_needs) <= MODEL_NEEDS.keys()


def flags(method, **given):
    """select.py's flags of the inputs: none given but `given`."""
    none = dict.fromkeys(("checkpoint", "features", "scores", "umap_cache", "pretrained", "report_redundancy",
                          *MODEL_FILE_FLAGS))
    return argparse.Namespace(**{**none, "method": method, "feature_pooling": DEFAULT_POOLING, **given})


@pytest.mark.parametrize(("method", "given", "read", "needs"), [
    ("entropy", {}, ["model"], set()),
    ("bald", {}, ["model"], {"mc_dropout"}),
    ("coreset", {}, ["model", "features"], {"aspp"}),  # features of the model: loaded after it
    ("coreset", {"features": "f.npz"}, ["features"], set()),
    ("meal", {}, ["model", "pool_map"], {"backbone", "architecture"}),
    ("meal-ft", {}, ["model"], {"backbone"}),
    ("topk", {"scores": "s.npz"}, ["scores"], set()),
    ("random", {"checkpoint": "m.pt"}, [], set()),
    # --report-redundancy reads features whatever the method, and only once
    ("entropy", {"report_redundancy": True}, ["model", "features", "redundancy"], {"aspp"}),
    ("random", {"features": "f.npz", "report_redundancy": True}, ["features", "redundancy"], set()),
    ("coreset", {"report_redundancy": True}, ["model", "features", "redundancy"], {"aspp"}),
    ("auto", {}, ["model", "features", "redundancy"], {"aspp"}),
])
def test_inputs_read_and_what_they_ask_of_the_model(method, given, read, needs):
    args = flags(method, **given)
    assert inputs_read(METHODS[method], args) == read
    assert model_needs(METHODS[method], args) == needs


@pytest.mark.parametrize(("method", "given", "message"), [
    ("coreset", {"features": "f.npz", "arch": "tiny"},
     "--arch describes a --checkpoint model, which --method coreset does not use here"),
    ("coreset", {}, "--method coreset needs image features: give --checkpoint or --features FILE"),
    ("meal", {"umap_cache": "umap.pt"}, "--method meal scores the pool with a model: give --checkpoint"),
    ("kmeanspp", {"checkpoint": "m.pt", "pretrained": "imagenet"},
     "--pretrained: --method kmeanspp does not use the UMAP map of the pool (meal does)"),
    # Unused flags are named before missing inputs.
    ("topk", {"features": "f.npz"}, "--features: --method topk does not use features (coreset, kmeanspp and auto do; "
                                    "--report-redundancy reads them with any method)"),
    ("random", {"report_redundancy": True},
     "--report-redundancy needs image features: give --checkpoint or --features FILE"),
    ("coreset", {"features": "f.npz", "feature_pooling": "grid2x2"},
     "--feature-pooling grid2x2 pools the model's feature map, but --features gives the features"),
])
def test_flags_are_checked_against_the_inputs_read(method, given, message):
    with pytest.raises(UserError, match=re.escape(message)):
        check_flags(METHODS[method], flags(method, **given))


def test_flags_that_give_every_input_pass():
    for method, given in (("coreset", {"features": "f.npz"}), ("meal", {"checkpoint": "m.pt", "umap_cache": "u.pt"}),
                          ("random", {"checkpoint": "m.pt"}), ("uniform", {}),
                          # an experiment's SELECT_ARGS go to every method: one without features takes it, unused
                          ("entropy", {"checkpoint": "m.pt", "feature_pooling": "grid2x2"})):
        check_flags(METHODS[method], flags(method, **given))
