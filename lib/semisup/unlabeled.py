"""The unlabeled side of semi-supervised training: which images have unlabeled pixels, their crops and batches.

Both --ssl modes train on crops of every image an annotator has not fully labeled
(unlabeled images, and for patch and region units the rest of partly labeled ones).
A pixel with a true label always keeps it; the others carry the teacher's pseudo
label (self-training, made before training) or UNLABELED (s4GAN, whose labels are
made during training from the model's own prediction).
"""
import itertools
import random

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from lib.data.base import UNLABELED, read_label
from lib.data.transforms import image_to_tensor, mask_to_tensor, random_crop_flip
from lib.semisup.augment import strong_augment


def images_with_unlabeled_pixels(image_ids, unit, labeled):
    """The images of `image_ids` not fully covered by their labeled items (`labeled`: image id -> items)."""
    per_image = unit.items_per_image  # None for regions: a labeled image always keeps unlabeled pixels
    return [image_id for image_id in image_ids
            if image_id not in labeled or per_image is None or len(labeled[image_id]) < per_image]


class UnlabeledCrops(Dataset):
    """Random crops of the images `ids`, with targets of true labels where known; set `epoch` before each epoch.

    With `pseudo_paths` (image id -> PNG) the other pixels get the teacher's labels and
    the crop is strongly augmented (self-training); without, they are UNLABELED and
    the crop is only cropped and flipped, as s4GAN's unlabeled images are. `labeled`
    maps partly labeled images to their items, whose masks are read only inside them.
    """

    def __init__(self, dataset, unit, ids, labeled, crop, seed, mean, std, pseudo_paths=None):
        self.dataset, self.unit, self.ids, self.labeled = dataset, unit, list(ids), labeled
        self.crop, self.seed, self.mean, self.std = crop, seed, mean, std
        self.pseudo_paths = pseudo_paths
        self.epoch = 0

    def __len__(self):
        return len(self.ids)

    def target(self, image_id, size):
        """[H, W] uint8 for an image of `size` (H, W): the annotators' labels inside its labeled items."""
        if self.pseudo_paths is None:
            target = np.full(size, UNLABELED, np.uint8)
        else:
            target = read_label(self.pseudo_paths[image_id])
        if image_id not in self.labeled:
            return target
        mask = self.dataset.load_mask(image_id)
        return np.where(self.unit.labeled_area(self.labeled[image_id], *mask.shape), mask, target)

    def __getitem__(self, i):
        image_id = self.ids[i]
        rng = random.Random(f"{self.seed}/{self.epoch}/unlabeled/{i}")
        image = self.dataset.load_image(image_id)
        image, target = random_crop_flip(image, self.target(image_id, image.shape[:2]), self.crop, rng)
        if self.pseudo_paths is not None:
            image, target = strong_augment(image, target, rng)
        return image_to_tensor(image, self.mean, self.std), mask_to_tensor(target)


def unlabeled_batches(crops, epoch, batch_size, workers):
    """Endless batches of `crops` for an epoch; passes in orders drawn from (seed, epoch, pass)."""
    for repeat in itertools.count():  # as many passes as the labeled images' steps take
        crops.epoch = epoch * 1_000_000 + repeat
        order = torch.randperm(len(crops), generator=torch.Generator().manual_seed(
            crops.seed * 100_003 + crops.epoch))
        yield from DataLoader(crops, batch_size=batch_size, sampler=order.tolist(), num_workers=workers,
                              drop_last=len(crops) > batch_size)
