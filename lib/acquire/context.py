"""What a method sees: the candidates, the inputs it declared, and the means to run a model over the pool.

select.py builds one SelectionContext per cycle, frozen, with every input the method
reads already loaded (lib.acquire.inputs); methods only read it.
"""
import functools
from dataclasses import dataclass

import torch

from lib.acquire.rank import NO_RULES, SelectionRules
from lib.acquire.reduce import REDUCTIONS
from lib.acquire.scores import FEATURE_POOLINGS, embed_items, item_feature_batches, score_items
from lib.distributed import SINGLE, World, gather_objects, shard_batches
from lib.engine import iterate_batches
from lib.sliding import DEFAULT_SLIDE_WINDOW
from lib.units import Unit


@dataclass(frozen=True)
class ItemReader:
    """Runs a model over the pool's images and keeps one score or feature vector per item (image, patch or region).

    Under torchrun each process runs every world.size-th batch of images (lib.distributed.shard_batches) and the
    results of all are gathered on each: every process sees what a single process computes, bit for bit.
    """

    dataset: object  # lib.data.SegmentationDataset
    unit: Unit
    device: torch.device
    region_stride: int | None = None  # where region windows start (default: the region side)
    amp: bool = False
    batch_size: int = 4
    workers: int = 0
    slide_window: tuple = DEFAULT_SLIDE_WINDOW  # (height, width): larger images are run window by window
    world: World = SINGLE  # the processes of a torchrun, which share the batches

    def layout(self, height, width):
        """The items of a [height, width] image: [(id suffix, Box)]."""
        return self.unit.layout(height, width, self.region_stride)

    def images_of(self, item_ids):
        """The images holding the items, each once, in the pool's canonical order."""
        wanted = {self.unit.image_of(item_id) for item_id in item_ids}
        return [image_id for image_id in self.dataset.ids if image_id in wanted]

    def batches(self, image_ids, preprocess):
        """(ids, images [B, 3, H, W], None) normalised with `preprocess` {"mean", "std"}: this process's batches."""
        return iterate_batches(self.dataset, shard_batches(image_ids, self.batch_size, self.world), preprocess["mean"],
                               preprocess["std"], self.batch_size, self.workers,
                               pin_memory=self.device.type == "cuda")

    def scores(self, model, preprocess, item_ids, pixel_score, reduce, seed=None):
        """{item id: `reduce` of its pixels' `pixel_score(model, images)`} for the items. With `seed`, the random
        draws of a pixel score (BALD's dropout) are seeded per batch from it (lib.acquire.scores.score_items)."""
        scores = dict.fromkeys(item_ids)  # one dict, keyed by the items' own id strings, filled batch by batch
        score_items(model, self.batches(self.images_of(item_ids), preprocess), pixel_score, reduce, self.layout,
                    self.device, self.amp, self.slide_window, seed, keep=scores)
        if self.world.distributed:  # each process filled the items of its batches
            for shard in gather_objects({item_id: value for item_id, value in scores.items() if value is not None},
                                        self.world):
                scores.update(shard)
        return scores

    def embed_images(self, model, preprocess, feature_map, image_ids):
        """(item ids, features [N, d] float32): the model's feature map `feature_map` averaged over every item of
        the images, in the pool's canonical order."""
        named_map = functools.partial(_named_feature_map, feature_map)
        ids, features = embed_items(model, named_map, self.batches(image_ids, preprocess), self.layout, self.device,
                                    self.amp, self.slide_window)
        if not self.world.distributed:
            return ids, features
        # A process without a batch of its own sends ([], [0, 0]), whose width would not concatenate.
        shards = [shard for shard in gather_objects((ids, features), self.world) if shard[0]]
        ids = [item_id for shard_ids, _ in shards for item_id in shard_ids]
        features = torch.cat([shard_features for _, shard_features in shards])  # [N, d], shard by shard
        # An image's items are together in one shard, in their order: sorted by image, stably, they are canonical.
        image_order = {image_id: n for n, image_id in enumerate(image_ids)}
        rows = sorted(range(len(ids)), key=lambda row: image_order[self.unit.image_of(ids[row])])
        return [ids[row] for row in rows], features[rows]

    def features(self, model, preprocess, feature_map, item_ids, pooling="mean"):
        """[len(item_ids), d'] float32: the model's feature map `feature_map` [B, d, h, w] over each item, pooled by
        `pooling` (lib.acquire.scores.FEATURE_POOLINGS: d' = d for the mean, 4d for grid2x2); one tensor, filled batch
        by batch (a pool of 200,000 items holds one row of each)."""
        named_map = functools.partial(_named_feature_map, feature_map)
        row = {item_id: i for i, item_id in enumerate(item_ids)}
        features, filled = None, []  # filled: the rows of this process's batches
        for batch_ids, batch in item_feature_batches(model, named_map, self.batches(self.images_of(item_ids),
                                                                                     preprocess),
                                                     self.layout, self.device, self.amp, self.slide_window,
                                                     FEATURE_POOLINGS[pooling]):
            if features is None:
                features = torch.empty(len(item_ids), batch.shape[1])
            kept = [i for i, item_id in enumerate(batch_ids) if item_id in row]  # an image's other items are not
            features[[row[batch_ids[i]] for i in kept]] = batch[kept]
            filled += [row[batch_ids[i]] for i in kept]
        return _with_rows_of_every_process(features, filled, len(item_ids), self.world)


def _with_rows_of_every_process(features, filled, count, world):
    """`features` [count, d] with the rows that each process `filled` (its own batches'), gathered under torchrun;
    as it is in a single process."""
    if not world.distributed:
        return features
    shards = [(rows, values) for rows, values in gather_objects((filled, features[filled] if filled else None), world)
              if rows]
    if features is None:  # a process that had no batch of its own
        features = torch.empty(count, shards[0][1].shape[1])
    for rows, values in shards:
        features[rows] = values
    return features


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

    def candidate_scores(self, pixel_score, seed=None):
        """{candidate id: the reduced pixel score of its item}; `seed`: of the pixel score's random draws."""
        return self.reader.scores(self.model, self.preprocess, self.candidates, pixel_score, REDUCTIONS[self.reduce],
                                  seed)

    def item_features(self, feature_map, item_ids):
        """[len(item_ids), d] float32: the model's feature map `feature_map` averaged over each item."""
        return self.reader.features(self.model, self.preprocess, feature_map, item_ids)
