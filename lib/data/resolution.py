"""The resolution a dataset is read at: `--resize HxW` or `--scale F` (train.py, select.py, evaluate.py).

The papers' protocols train and evaluate below the files' resolution: the study's
Cityscapes at half size (sud0301/semisup-semseg, data/augmentations.py RandomCrop_city
and evaluate.py's img_size=(512, 1024)), its A2D2 at a third (sud0301/best_practices_ALSS,
data/dataloaders/a2d2.py), S4AL+'s Cityscapes resized to 688x688 (Shuai-Xie/DEAL,
datasets/cityscapes/Cityscapes.py, which S4AL+ follows). The resolution is applied where
a file is read (lib.data.base), so every consumer sees the same pool: crops, patch and
region layouts, pixel budgets, scoring, evaluation, pseudo labels. Images are resized
bilinearly by Pillow, which widens the filter when it shrinks (antialiasing); masks
with NEAREST, so they hold only the values of their file.

A side of n pixels becomes floor(n * F) under --scale F, at least 1, with F kept exact
(0.5, or a fraction: 1/3): the study's A2D2 loader computes int(w / 3), 1920x1208 ->
640x402, and a decimal 0.333 would give 639.
"""
import math
from dataclasses import dataclass
from fractions import Fraction

import numpy as np
from PIL import Image

from lib.cli import MAX_SCALE
from lib.errors import UserError


@dataclass(frozen=True)
class Resolution:
    """--resize (H, W), or --scale F (a Fraction); both None: the files' own resolution."""

    resize: tuple = None
    scale: Fraction = None

    @classmethod
    def from_flags(cls, resize=None, scale=None):
        """From the flags' values (or a checkpoint's record of them): resize [H, W], scale "1/2"; scale 1 is none."""
        scale = None if scale is None or Fraction(scale) == 1 else Fraction(scale)
        return cls(None if resize is None else tuple(resize), scale)

    @property
    def native(self):
        return self.resize is None and self.scale is None

    def size(self, height, width):
        """(H, W) at this resolution of an image of `height` x `width` on disk."""
        if self.resize is not None:
            return self.resize
        return (height, width) if self.scale is None else scaled_size(height, width, self.scale)

    def image(self, image):
        """[H, W, 3] uint8 as read -> [H', W', 3] at this resolution."""
        return image if self.native else resize_image(image, self.size(*image.shape[:2]))

    def mask(self, mask):
        """[H, W] uint8 class ids as read -> [H', W'], nearest neighbour."""
        return mask if self.native else resize_mask(mask, self.size(*mask.shape))

    @property
    def tag(self):
        """What a cache entry's name says of it (lib.data.cache): "" for the files' resolution."""
        if self.resize is not None:
            return f"-r{self.resize[0]}x{self.resize[1]}"
        return "" if self.scale is None else f"-s{self.scale.numerator}_{self.scale.denominator}"

    def describe(self):
        if self.resize is not None:
            return f"--resize {self.resize[0]}x{self.resize[1]}"
        return "the files' resolution" if self.scale is None else f"--scale {self.scale}"

    def as_flags(self):
        """The flags that ask for this resolution, in words."""
        return "neither --resize nor --scale" if self.native else self.describe()

    def to_json(self):
        """As an index's history records it (None: the files' resolution), and the flags' values would be."""
        if self.resize is not None:
            return {"resize": list(self.resize)}
        return None if self.scale is None else {"scale": str(self.scale)}


NATIVE = Resolution()


def scaled_size(height, width, factor):
    """(floor(height * factor), floor(width * factor)), at least 1 pixel each."""
    return max(1, math.floor(height * factor)), max(1, math.floor(width * factor))


def resize_image(image, size):
    """[H, W, 3] uint8 -> [size[0], size[1], 3], bilinear (antialiased when shrinking), a writable array."""
    if image.shape[:2] == tuple(size):
        return image
    return np.array(Image.fromarray(np.ascontiguousarray(image)).resize(size[::-1], Image.BILINEAR))


def resize_mask(mask, size):
    """[H, W] uint8 -> [size[0], size[1]], nearest neighbour: only values of `mask`."""
    if mask.shape == tuple(size):
        return mask
    return np.array(Image.fromarray(np.ascontiguousarray(mask)).resize(size[::-1], Image.NEAREST))


def recorded_resolution(values, source):
    """The Resolution of a record of the flags: a checkpoint's train_args or an index's history entry (a dict;
    neither key: the files' resolution). A damaged record is a UserError naming `source`."""
    resize, scale = values.get("resize"), values.get("scale")
    size_ok = resize is None or (isinstance(resize, list) and len(resize) == 2
                                 and all(isinstance(side, int) and side > 0 for side in resize))
    try:
        scale_ok = scale is None or (isinstance(scale, str) and 0 < Fraction(scale) <= MAX_SCALE)
    except (ValueError, ZeroDivisionError):
        scale_ok = False
    if not (size_ok and scale_ok) or (resize is not None and scale is not None):
        raise UserError(f"{source}: damaged record of the resolution (resize {resize!r}, scale {scale!r})")
    return Resolution.from_flags(resize, scale)


def trained_resolution(checkpoint, path):
    """The resolution a checkpoint of train.py was trained at, from its train_args (older ones: the files')."""
    train_args = checkpoint.get("train_args")
    return recorded_resolution(train_args if isinstance(train_args, dict) else {}, path)


def placed_resolution(index, path):
    """The resolution the patches or regions of an index were placed at (their pixels are that image's): its last
    cycle's, which select.py records in the history (none recorded: the files'); None for image units, which
    fit any resolution."""
    if index.unit.type == "image":
        return None
    recorded = index.history[-1].get("resolution") if index.history else None
    if recorded is not None and not isinstance(recorded, dict):
        raise UserError(f"{path}: damaged record of the resolution ({recorded!r})")
    return recorded_resolution(recorded or {}, path)


def check_placed_resolution(index, path, resolution):
    """Refuse to read the images of an index of patches or regions at another resolution than its items'."""
    placed = placed_resolution(index, path)
    if placed is not None and placed != resolution:
        raise UserError(f"{path}: its {index.unit.describe()} items were placed on the images at "
                        f"{placed.describe()}, not at {resolution.describe()}: give {placed.as_flags()}")
