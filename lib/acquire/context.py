"""What a method sees: the candidates, the inputs it declared, and the means to run a model over the pool.

select.py builds one SelectionContext per cycle, frozen, with every input the method
reads already loaded (lib.acquire.inputs); methods only read it.
"""
import functools
from dataclasses import dataclass

import torch

from lib.acquire.rank import NO_RULES, SelectionRules
from lib.acquire.reduce import REDUCTIONS
from lib.acquire.scores import embed_items, score_items
from lib.engine import iterate_batches
from lib.sliding import DEFAULT_SLIDE_WINDOW
from lib.units import Unit


@dataclass(frozen=True)
class ItemReader:
    """Runs a model over the pool's images and keeps one score or feature vector per item (image, patch or region)."""

    dataset: object  # lib.data.SegmentationDataset
    unit: Unit
    device: torch.device
    region_stride: int | None = None  # where region windows start (default: the region side)
    amp: bool = False
    batch_size: int = 4
    workers: int = 0
    slide_window: tuple = DEFAULT_SLIDE_WINDOW  # (height, width): larger images are run window by window

    def layout(self, height, width):
        """The items of a [height, width] image: [(id suffix, Box)]."""
        return self.unit.layout(height, width, self.region_stride)

    def images_of(self, item_ids):
        """The images holding the items, each once, in the pool's canonical order."""
        wanted = {self.unit.image_of(item_id) for item_id in item_ids}
        return [image_id for image_id in self.dataset.ids if image_id in wanted]

    def batches(self, image_ids, preprocess):
        """(ids, images [B, 3, H, W], None) normalised with `preprocess` {"mean", "std"}."""
        return iterate_batches(
            self.dataset, image_ids, preprocess["mean"], preprocess["std"], self.batch_size, self.workers
        )

    def scores(self, model, preprocess, item_ids, pixel_score, reduce):
        """{item id: `reduce` of its pixels' `pixel_score(model, images)`} for the items."""
        scores = score_items(model, self.batches(self.images_of(item_ids), preprocess), pixel_score, reduce,
                             self.layout, self.device, self.amp, self.slide_window)
        return {item_id: scores[item_id] for item_id in item_ids}

    def embed_images(self, model, preprocess, feature_map, image_ids):
        """(item ids, features [N, d] float32): the model's feature map `feature_map` averaged over every item of
        the images, in the pool's canonical order."""
        named_map = functools.partial(_named_feature_map, feature_map)
        return embed_items(model, named_map, self.batches(image_ids, preprocess), self.layout, self.device, self.amp,
                           self.slide_window)

    def features(self, model, preprocess, feature_map, item_ids):
        """[len(item_ids), d] float32: the model's feature map `feature_map` averaged over each item."""
        ids, features = self.embed_images(model, preprocess, feature_map, self.images_of(item_ids))
        row = {item_id: i for i, item_id in enumerate(ids)}
        return features[[row[item_id] for item_id in item_ids]]


def _named_feature_map(name, model, images):
    """embed_items' feature map: the model's own map `name` (lib.models.FEATURE_MAPS) [B, d, h, w]."""
    return model.feature_map(name, images)


@dataclass(frozen=True)
class SelectionContext:
    """The candidates, the rules of this cycle, and the inputs the method declared (None where it reads none)."""

    reader: ItemReader
    candidates: list  # unlabeled item ids that may be picked, in canonical order
    labeled: list  # labeled item ids
    pool_items: int | None  # items of the whole pool, --prefilter's rejects included; None for regions (no count)
    rules: SelectionRules = NO_RULES
    reduce: str = "mean"  # how pixel scores become one score per item (lib.acquire.reduce)
    mc_samples: int = 20  # BALD's stochastic decoder passes
    informative: int = 200  # MEAL: the most uncertain candidates its K-Means++ chooses from
    auto_rule: object = None  # auto: lib.acquire.auto.AutoRule, its thresholds
    # The inputs (lib.acquire.inputs):
    model: object = None  # "model": the --checkpoint network, lib.model_files.LoadedModel.model
    preprocess: dict | None = None  # "model": {"mean", "std"} it expects
    features: object = None  # "features": [len(labeled) + len(candidates), d] float32, labeled rows first
    scores: dict | None = None  # "scores": {candidate id: score}
    pool_map: object = None  # "pool_map": MEAL's UMAP map of the pool (lib.acquire.meal)
    frames: dict | None = None  # "frames": {image id: lib.data.base.Frame}
    redundancy: object = None  # "redundancy": lib.redundancy.Redundancy of the labeled + candidate items
    earlier_redundancy: tuple = ()  # the scores earlier cycles of the index measured (its history), oldest first
    semi_supervised: bool | None = None  # "model": trained with --ssl (None: its file does not say)

    def candidate_scores(self, pixel_score):
        """{candidate id: the reduced pixel score of its item}."""
        return self.reader.scores(self.model, self.preprocess, self.candidates, pixel_score, REDUCTIONS[self.reduce])

    def item_features(self, feature_map, item_ids):
        """[len(item_ids), d] float32: the model's feature map `feature_map` averaged over each item."""
        return self.reader.features(self.model, self.preprocess, feature_map, item_ids)
