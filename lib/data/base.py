"""The dataset contract every on-disk layout implements.

A dataset split is a list of image ids plus `load_image(id)` and `load_mask(id)`.
Loaders for new layouts (Cityscapes, CamVid, VOC, A2D2) build a
`SegmentationDataset` from two dicts, id -> image path and id -> mask path, and
optionally id -> Frame for sequential data; decoding, conversion and validation
of the files live here once.
"""
import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from lib.data.resolution import NATIVE
from lib.errors import UserError

IGNORE_INDEX = 255
# Target of a pixel without a true label that a label made during training may fill (s4GAN's
# self-training, lib.semisup). It differs from IGNORE_INDEX, which padding and CutOut keep:
# nothing may be learnt there. No class may have either id.
UNLABELED = 254
MAX_CLASSES = UNLABELED  # class ids 0..253


@dataclass(frozen=True)
class Frame:
    """Where an image sits in a video: redundant pools are built from consecutive frames."""

    sequence: str
    index: int


class SegmentationDataset:
    def __init__(self, name, split, image_paths, mask_paths, class_names, frames=None, label_map=None,
                 decode_mask=None, class_file=None, new_mask_path=None):
        self.name = name
        self.split = split
        self.ids = sorted(image_paths)  # a canonical order makes seeded selections reproducible
        self.class_names = list(class_names)
        self.frames = frames  # dict id -> Frame, or None when the layout has no sequence information
        # [256] uint8 lookup from the values stored in the mask files to class ids, for
        # layouts whose files use other ids (CamVid's void 11, Cityscapes' labelIds, a folder's mask_values).
        self.label_map = label_map
        # The classes.json a user wrote, which may map mask values (lib.data.folder); None for fixed layouts.
        # Messages point to it: a value its mapping leaves out, a class that never occurs (lib.label_stats).
        self.class_file = class_file
        # path -> [H, W] uint8 class ids, in place of read_label and label_map, for layouts
        # whose masks are not one channel of ids (A2D2's colours); picklable for loader workers.
        self.decode_mask = decode_mask
        # id -> the path this layout would read the mask of an image without one from, for the annotators
        # (select.py --export); None where the split's masks are never read (Cityscapes' test split). Picklable.
        self.new_mask_path = new_mask_path
        self._image_paths = image_paths
        self._mask_paths = mask_paths
        self._sizes = {}  # id -> (H, W) on disk: pixel budgets and region layouts ask for sizes item by item
        self.cache = None  # a lib.data.cache.DecodedCache (--cache-dir), or None to decode every time
        # --resize / --scale (lib.data.resolution.Resolution): images and masks are returned at it
        self.resolution = NATIVE

    @property
    def num_classes(self):
        return len(self.class_names)

    def __len__(self):
        return len(self.ids)

    def image_path(self, image_id):
        return self._image_paths[image_id]

    def image_size(self, image_id):
        """(height, width) at self.resolution, without decoding the pixels."""
        return self.resolution.size(*self._file_size(image_id))

    def _file_size(self, image_id):
        """(height, width) of the image file, from its header; read once per image."""
        if image_id not in self._sizes:
            self._sizes[image_id] = header_size(self._image_paths[image_id])
        return self._sizes[image_id]

    def has_mask(self, image_id):
        return image_id in self._mask_paths

    def annotation_path(self, image_id):
        """Where an annotator saves the mask of `image_id` for this layout to read: its mask file, or the path the
        layout looks at; None where the split's masks are never read."""
        if image_id in self._mask_paths:
            return self._mask_paths[image_id]
        return self.new_mask_path(image_id) if self.new_mask_path else None

    def mask_path(self, image_id):
        return self._mask_paths[image_id]

    def load_image(self, image_id):
        """[H, W, 3] uint8 RGB at self.resolution; greyscale, palette, RGBA and 16-bit files are converted.

        From the cache, a read-only array mapped from disk: callers copy what they keep.
        """
        path = self._image_paths[image_id]
        if self.cache is None:
            return self._read_image(path)
        return self.cache.load(self, "images", image_id, path, self._read_image, resolution=self.resolution.tag)

    def _read_image(self, path):
        return self.resolution.image(read_rgb(path))

    def load_mask(self, image_id):
        """[H, W] uint8 class ids with IGNORE_INDEX for void at self.resolution (nearest neighbour), or None when the
        image is unlabeled.

        From the cache, a read-only array mapped from disk, checked when it was cached.
        """
        path = self._mask_paths.get(image_id)
        if path is None:
            return None
        if self.cache is None:
            return self._read_resized_mask(path)
        return self.cache.load(self, "masks", image_id, path, self._read_resized_mask, tag=self._mask_tag(),
                               resolution=self.resolution.tag)

    def _read_resized_mask(self, path):
        return self.resolution.mask(self._read_mask(path))

    def _mask_tag(self):
        """What a cached mask was decoded with, beside its file: an entry is valid for this class count and
        label_map only (an edited mask_values must not leave masks mapped the old way)."""
        if self.label_map is None:
            return f"-c{self.num_classes}"
        return f"-c{self.num_classes}-m{hashlib.sha256(self.label_map.tobytes()).hexdigest()[:12]}"

    def _read_mask(self, path):
        if self.decode_mask is not None:
            mask = self.decode_mask(path)
        else:
            values = read_label(path)
            mask = values if self.label_map is None else self.label_map[values]
        invalid = (mask >= self.num_classes) & (mask != IGNORE_INDEX)
        if invalid.any():
            if self.class_file is not None and self.label_map is not None:  # a folder's mask_values
                raise UserError(f"{path}: value {int(values[invalid].max())} is not in {self.class_file}'s "
                                f"mask_values (map it to a class, or to null to ignore it)")
            raise UserError(
                f"{path}: class id {int(mask[invalid].max())} is out of range "
                f"({self.num_classes} classes, {IGNORE_INDEX} = ignore)"
            )
        return mask

    def load_pair(self, image_id):
        """Image and mask of a labeled image, checked to have the same size."""
        image, mask = self.load_image(image_id), self.load_mask(image_id)
        if mask is None:
            raise UserError(f"{self.name}/{self.split}: image {image_id!r} is labeled in the index but has no mask "
                            f"file")
        if self.resolution.native:
            mask_size, image_size = mask.shape, image.shape[:2]
        else:  # resized, the two agree even where their files do not: the files are compared
            mask_size, image_size = header_size(self._mask_paths[image_id]), self._file_size(image_id)
        if mask_size != image_size:
            raise UserError(f"{self._mask_paths[image_id]}: mask is {mask_size[1]}x{mask_size[0]} "
                            f"but its image is {image_size[1]}x{image_size[0]}")
        return image, mask


@dataclass(frozen=True)
class MaskFolder:
    """id -> folder/<id>.png: where a layout keeping the masks of a split in one folder looks for one."""

    folder: Path

    def __call__(self, image_id):
        return self.folder / f"{image_id}.png"


def require_root(root):
    """The data root as a Path; a missing one is a UserError."""
    root = Path(root)
    if not root.is_dir():
        raise UserError(f"{root}: data root does not exist")
    return root


def files_by_stem(folder, suffixes, what):
    """{stem: path} of the files of `folder` whose suffix, in any case, is one of `suffixes`.

    A stem is an id: two files with one stem (a.png and a.jpg) are refused rather than one silently winning.
    """
    paths = {}
    for path in sorted(folder.iterdir()):
        if path.suffix.lower() not in suffixes:
            continue
        if path.stem in paths:
            raise UserError(f"{paths[path.stem]} and {path}: two {what} with the id {path.stem!r} (keep one)")
        paths[path.stem] = path
    return paths


def images_by_stem(image_dir, suffixes, layout):
    """{stem: path} of the images in a split's folder; a missing or empty folder names the layout."""
    if not image_dir.is_dir():
        raise UserError(f"{image_dir}: no such folder (layout: {layout})")
    image_paths = files_by_stem(image_dir, suffixes, "images")
    if not image_paths:
        raise UserError(f"{image_dir}: no images ({', '.join(suffixes)})")
    return image_paths


def masks_by_stem(mask_dir, image_ids):
    """{stem: path} of the PNG masks (.png or .PNG) of `image_ids`; a pool without a mask folder is unlabeled."""
    if not mask_dir.is_dir():
        return {}
    return {stem: path for stem, path in files_by_stem(mask_dir, (".png",), "masks").items() if stem in image_ids}


# What Pillow raises for a file it cannot decode, or will not: DecompressionBombError is no OSError.
DECODE_ERRORS = (Image.DecompressionBombError, UnidentifiedImageError, OSError, SyntaxError)


def decode_error(path, err):
    """The UserError for one of DECODE_ERRORS raised by `path`."""
    if isinstance(err, Image.DecompressionBombError):
        # Pillow's message names the image's pixels and the limit: "Image size (N pixels) exceeds limit of M
        # pixels, could be decompression bomb DOS attack."; the limit stays, a file that large is no training image.
        size = str(err).partition(", could")[0]
        return UserError(f"{path}: not decoded: {size} (Pillow's guard against decompression bombs); downscale it")
    return UserError(f"{path}: cannot decode image ({err.__class__.__name__})")


def header_size(path):
    """(height, width) of an image file, from its header: the pixels are not decoded."""
    try:
        with Image.open(path) as image:
            width, height = image.size
    except DECODE_ERRORS as err:
        raise decode_error(path, err) from None
    return height, width


def _open(path):
    try:
        image = Image.open(path)
        image.load()
        return image
    except DECODE_ERRORS as err:
        raise decode_error(path, err) from None


def read_rgb(path):
    image = _open(path)
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        # 16-bit greyscale: keep the top 8 bits rather than clipping at 255.
        array = np.asarray(image, dtype=np.uint32) >> 8
        return np.repeat(array.astype(np.uint8)[..., None], 3, axis=2)
    return np.array(image.convert("RGB"))  # a writable copy: torch refuses read-only arrays


def read_label(path):
    image = _open(path)
    if image.mode in ("L", "P"):
        return np.array(image)
    array = np.asarray(image)
    if array.ndim != 2:
        raise UserError(f"{path}: a mask must have one channel of class ids, got mode {image.mode}")
    if array.max(initial=0) > IGNORE_INDEX:
        raise UserError(f"{path}: class id {int(array.max())} does not fit a label map")
    return array.astype(np.uint8)


def read_colour_label(path):
    """[H, W, 3] uint8 of a mask that codes classes as colours. One-channel files are refused:
    every grey value would decode to an unknown colour, a mask of nothing but ignore."""
    image = _open(path)
    if image.mode not in ("RGB", "RGBA", "P"):
        raise UserError(f"{path}: a colour-coded mask must be an RGB image, got mode {image.mode}")
    return np.asarray(image.convert("RGB"))
