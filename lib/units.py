"""Units of annotation and their geometry: whole images, cells of a patch grid, square regions.

An item id is its image id plus a suffix: nothing for a whole image, `#r<row>c<col>`
for a cell of the grid, `#y<top>x<left>` for a square region, the numbers in ASCII
decimal without leading zeros so that each item has one id. Ids therefore stay
valid when the pool is listed in another order, and the geometry of an item follows
from its id and the size of its image alone.

Cells of an R x C grid partition the image: row r spans pixels [r*H//R, (r+1)*H//R),
so every pixel belongs to exactly one cell even when H is not a multiple of R.
Regions are squares of a fixed side placed on a grid of `stride` pixels (the side
itself by default); when the side does not divide the image, one more window is
placed flush with the bottom or right border so that every pixel can be labeled,
and it overlaps its neighbour: selection never takes two overlapping regions.
"""
import re
from collections import defaultdict
from dataclasses import dataclass

import numpy as np

from lib.errors import UserError
from lib.text import plural

UNIT_TYPES = ("image", "patch", "region")

# Numbers in ids are ASCII decimals without leading zeros, each written one way only:
# `\d` and int() would also take "00" or Arabic-Indic digits, two ids for one cell.
_NUMBER = r"(0|[1-9][0-9]*)"
_PATCH_SUFFIX = re.compile(f"r{_NUMBER}c{_NUMBER}")
_REGION_SUFFIX = re.compile(f"y{_NUMBER}x{_NUMBER}")


@dataclass(frozen=True)
class Box:
    """Pixel rectangle [top, bottom) x [left, right)."""

    top: int
    left: int
    bottom: int
    right: int

    @property
    def area(self):
        return (self.bottom - self.top) * (self.right - self.left)

    def overlaps(self, other):
        return (self.top < other.bottom and other.top < self.bottom
                and self.left < other.right and other.left < self.right)

    def scaled(self, height, width, to_height, to_width):
        """The smallest box of a [to_height, to_width] map that covers this box of a [height, width] image."""
        return Box(self.top * to_height // height, self.left * to_width // width,
                   -(-self.bottom * to_height // height), -(-self.right * to_width // width))


def _region_starts(length, size, stride):
    """Window starts along one axis: every `stride` pixels, plus one flush with the far border."""
    if size > length:
        return []
    starts = list(range(0, length - size + 1, stride))
    if starts[-1] != length - size:
        starts.append(length - size)
    return starts


@dataclass(frozen=True)
class Unit:
    """What one labeled item is: a whole image, a cell of a patch grid, or a square region."""

    type: str = "image"
    grid: tuple | None = None  # (rows, cols) for patches
    size: int | None = None  # side in pixels for regions

    def __post_init__(self):
        if self.type not in UNIT_TYPES:
            raise UserError(f"unknown unit {self.type!r} (choices: {', '.join(UNIT_TYPES)})")
        if self.type == "patch" and not (
            self.grid and len(self.grid) == 2 and all(isinstance(n, int) and n > 0 for n in self.grid)
        ):
            raise UserError(f"patch unit needs a grid of two positive integers, got {self.grid!r}")
        if self.type == "region" and not (isinstance(self.size, int) and self.size > 0):
            raise UserError(f"region unit needs a positive integer size, got {self.size!r}")

    def to_json(self):
        if self.type == "patch":
            return {"type": "patch", "grid": list(self.grid)}
        if self.type == "region":
            return {"type": "region", "size": self.size}
        return {"type": "image"}

    @classmethod
    def from_json(cls, obj):
        if not isinstance(obj, dict):
            raise UserError(f"unit must be an object, got {obj!r}")
        grid = obj.get("grid")
        return cls(obj.get("type"), tuple(grid) if isinstance(grid, list) else grid, obj.get("size"))

    def describe(self):
        if self.type == "patch":
            return f"patch {self.grid[0]}x{self.grid[1]}"
        if self.type == "region":
            return f"region {self.size}px"
        return "image"

    @property
    def items_per_image(self):
        """Items that tile one image (None for regions, whose number depends on the image and stride)."""
        return None if self.type == "region" else len(self.tile_suffixes())

    def tile_suffixes(self):
        """Id suffixes of the items that tile every image, whatever its size (image and patch units)."""
        if self.type == "region":
            raise ValueError("regions do not tile images into a fixed set of items")
        if self.type == "image":
            return [""]
        return [f"#r{r}c{c}" for r in range(self.grid[0]) for c in range(self.grid[1])]

    def image_of(self, item_id):
        """The image id an item belongs to; ValueError when the id does not fit this unit."""
        if self.type == "image":
            return item_id
        image_id, sep, suffix = item_id.rpartition("#")
        if not sep or not image_id:
            raise ValueError(f"{self.describe()} id needs a '#' suffix")
        if self.type == "patch":
            match = _PATCH_SUFFIX.fullmatch(suffix)
            if not match:
                raise ValueError("a cell id ends in #r<row>c<col>, in ASCII digits without leading zeros")
            if int(match[1]) >= self.grid[0] or int(match[2]) >= self.grid[1]:
                raise ValueError(f"not a cell of the {self.grid[0]}x{self.grid[1]} grid")
        elif not _REGION_SUFFIX.fullmatch(suffix):
            raise ValueError("a region id ends in #y<top>x<left>, in ASCII digits without leading zeros")
        return image_id

    def box(self, item_id, height, width):
        """The pixels of an item in its [height, width] image; ValueError when it does not fit there."""
        if self.type == "image":
            return Box(0, 0, height, width)
        suffix = item_id.rpartition("#")[2]
        if self.type == "patch":
            row, col = map(int, _PATCH_SUFFIX.fullmatch(suffix).groups())
            rows, cols = self.grid
            return Box(row * height // rows, col * width // cols, (row + 1) * height // rows, (col + 1) * width // cols)
        top, left = self.region_corner(item_id)
        if top + self.size > height or left + self.size > width:
            raise ValueError(f"a {self.size}px region at y={top} x={left} does not fit a {width}x{height} image")
        return Box(top, left, top + self.size, left + self.size)

    def region_corner(self, item_id):
        """(top, left) of a region id."""
        return tuple(map(int, _REGION_SUFFIX.fullmatch(item_id.rpartition("#")[2]).groups()))

    def misfit(self, height, width):
        """Why a [height, width] image cannot hold this unit's items, or None when it can."""
        if self.type == "patch" and (height < self.grid[0] or width < self.grid[1]):
            return (f"has {plural(height, 'row')} and {plural(width, 'column')} of pixels, fewer than the grid's "
                    f"{plural(self.grid[0], 'row')} or {plural(self.grid[1], 'column')}: a cell would be empty")
        if self.type == "region" and (height < self.size or width < self.size):
            return (f"is {width}x{height} pixels, smaller than a {self.size}x{self.size} region: "
                    f"it could never be labeled")
        return None

    def layout(self, height, width, stride=None):
        """Every item of a [height, width] image: [(id suffix, Box)], the same for all images of that size.

        `stride` places region windows (default: the region side, a tiling).
        """
        if self.type == "image":
            return [("", Box(0, 0, height, width))]
        if self.type == "patch":
            return [(suffix, self.box(suffix, height, width)) for suffix in self.tile_suffixes()]
        stride = stride or self.size
        return [
            (f"#y{top}x{left}", Box(top, left, top + self.size, left + self.size))
            for top in _region_starts(height, self.size, stride)
            for left in _region_starts(width, self.size, stride)
        ]

    def labeled_area(self, item_ids, height, width):
        """[height, width] bool: the pixels covered by the given items of one image."""
        area = np.zeros((height, width), dtype=bool)
        for item_id in item_ids:
            box = self.box(item_id, height, width)
            area[box.top:box.bottom, box.left:box.right] = True
        return area


def require_fit(unit, image_ids, image_size, image_path, culprit):
    """A UserError naming `culprit` and the first image that cannot hold the unit's items (lib.units.Unit.misfit).

    `image_size(id) -> (H, W)`, `image_path(id)` the file to name.
    """
    for image_id in image_ids:
        misfit = unit.misfit(*image_size(image_id))
        if misfit:
            raise UserError(f"{culprit}: image {image_path(image_id)} {misfit}")


def items_by_image(unit, item_ids):
    """{image id: [item ids]} in the order the items come."""
    grouped = defaultdict(list)
    for item_id in item_ids:
        grouped[unit.image_of(item_id)].append(item_id)
    return dict(grouped)


def image_pixels(image_ids, image_size):
    """Pixels of the images together; `image_size(id) -> (H, W)`."""
    return sum(height * width for height, width in map(image_size, image_ids))


def item_pixels(unit, item_ids, image_size):
    """Pixels of the items together, overlaps counted twice."""
    return sum(unit.box(item_id, *image_size(unit.image_of(item_id))).area for item_id in item_ids)


def labeled_fractions(unit, item_ids, pool_ids, image_size):
    """(share of the pool's items, share of its pixels) that the items label; `image_size(id) -> (H, W)`.

    Regions do not tile the pool into a fixed number of items, so their item share
    is their pixel share. Overlapping items count their pixels once.
    """
    pool_pixels = image_pixels(pool_ids, image_size)
    pixels = sum(
        int(unit.labeled_area(items, *image_size(image_id)).sum())
        for image_id, items in items_by_image(unit, item_ids).items()
    )
    if unit.type == "region":
        return pixels / pool_pixels, pixels / pool_pixels
    return len(item_ids) / (len(pool_ids) * unit.items_per_image), pixels / pool_pixels


def candidate_items(unit, image_ids, labeled, image_size, stride=None):
    """The unlabeled items of the images, in canonical order, and the boxes of regions.

    Returns (item ids, {region id: (image id, Box)} or None for images and patches).
    A region window that overlaps a labeled region of its image is no candidate, so
    no pixel is ever labeled twice. Only regions need the image sizes.
    """
    labeled_set = set(labeled)
    if unit.type != "region":
        suffixes = unit.tile_suffixes()
        # One pass: no list of every item of the pool beside the candidates (16 x the images for 4x4 patches).
        every_item = (image_id + suffix for image_id in image_ids for suffix in suffixes)
        return [item_id for item_id in every_item if item_id not in labeled_set], None
    labeled_by_image = items_by_image(unit, labeled)
    boxes = {}
    for image_id in image_ids:
        height, width = image_size(image_id)
        taken = [unit.box(item_id, height, width) for item_id in labeled_by_image.get(image_id, ())]
        for suffix, box in unit.layout(height, width, stride):
            if not any(box.overlaps(other) for other in taken):
                boxes[image_id + suffix] = (image_id, box)
    return list(boxes), boxes


def overlapping_regions(unit, item_ids):
    """The first two of the region ids that share a pixel, or None.

    Squares of side S overlap when their corners are less than S apart on both axes.
    Cells of S x S pixels bin the corners: two corners in one cell always overlap, so
    until a pair is found every cell holds one region, and a region need only be
    compared with those of the 3 x 3 cells around its own: linear in the ids.
    """
    size = unit.size
    by_cell = {}  # (image id, top // size, left // size) -> (region id, top, left)
    for item_id in item_ids:
        image_id = unit.image_of(item_id)
        top, left = unit.region_corner(item_id)
        row, col = top // size, left // size
        for key in ((image_id, row + dr, col + dc) for dr in (-1, 0, 1) for dc in (-1, 0, 1)):
            other = by_cell.get(key)
            if other and abs(other[1] - top) < size and abs(other[2] - left) < size:
                return other[0], item_id
        by_cell[(image_id, row, col)] = (item_id, top, left)
    return None
