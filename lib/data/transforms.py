"""Paired image/mask transforms and the tensor conversion shared by training and inference.

Randomness comes from an explicit `random.Random` so that a sample's augmentation
depends only on (seed, epoch, sample index): a resumed run sees the same crops.
"""
from dataclasses import dataclass

import numpy as np
import torch

from lib.data.base import IGNORE_INDEX
from lib.data.resolution import resize_image, resize_mask, scaled_size

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class RandomScale:
    """train.py --random-scale: a factor drawn uniformly from [low, high] (S4AL+'s random.uniform(0.5, 2.0),
    Nishant213/MMLAL helpers/dataset_transforms.py), or with `step` from low, low + step, ..., high (the study's
    0.5 + randint(0, 11) / 10 on VOC, sud0301/best_practices_ALSS data/dataloaders/pascal_voc.py)."""

    low: float
    high: float
    step: float = None

    def draw(self, rng):
        if self.step is None:
            return rng.uniform(self.low, self.high)
        return self.low + self.step * rng.randint(0, round((self.high - self.low) / self.step))


def random_rescale(image, mask, scales, rng):
    """Image [H, W, 3] (bilinear) and mask [H, W] (nearest) resized by a factor scales.draw(rng): a side of n pixels
    becomes floor(n * factor), as --scale makes it (lib.data.resolution)."""
    size = scaled_size(*mask.shape, scales.draw(rng))
    return resize_image(image, size), resize_mask(mask, size)


def random_crop_flip(image, mask, crop, rng, flip=True):
    """Crop [crop_h, crop_w] at a random place and, with `flip`, flip horizontally with p = 0.5.

    Images smaller than the crop are padded: with 0 in the image and IGNORE_INDEX in
    the mask, so padding never counts as a class.
    """
    crop_h, crop_w = crop
    height, width = mask.shape
    pad_h, pad_w = max(crop_h - height, 0), max(crop_w - width, 0)
    if pad_h or pad_w:
        image = np.pad(image, ((0, pad_h), (0, pad_w), (0, 0)))
        mask = np.pad(mask, ((0, pad_h), (0, pad_w)), constant_values=IGNORE_INDEX)
        height, width = mask.shape
    top = rng.randint(0, height - crop_h)
    left = rng.randint(0, width - crop_w)
    image = image[top : top + crop_h, left : left + crop_w]
    mask = mask[top : top + crop_h, left : left + crop_w]
    if flip and rng.random() < 0.5:
        image, mask = image[:, ::-1], mask[:, ::-1]
    return image, mask


def image_to_tensor(image, mean, std):
    """[H, W, 3] uint8 -> [3, H, W] float32, normalised with the model's mean and std."""
    tensor = torch.from_numpy(writable(image)).permute(2, 0, 1).float().div_(255)
    return tensor.sub_(torch.tensor(mean).view(3, 1, 1)).div_(torch.tensor(std).view(3, 1, 1))


def mask_to_tensor(mask):
    """[H, W] uint8 -> [H, W] int64 class ids."""
    return torch.from_numpy(writable(mask)).long()


def writable(array):
    """A C-contiguous, writable array: torch takes no read-only memory (a crop of a cached, mapped image)."""
    return np.require(array, requirements=("C", "W"))
