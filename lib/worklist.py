"""The worklist that hands a selection to annotators (`select.py --export DIR`).

    DIR/worklist.csv          rank,id,image,top,left,bottom,right,score,method,cycle,preview,mask
    DIR/previews/<name>.png   the image, the item's box outlined just outside it
    DIR/masks/<name>.png      patch and region units: 255 inside the box, 0 elsewhere

<name> is the item id with '#' written as '__' (`img#r0c1` -> `img__r0c1`); the CSV
names both files, so nobody has to rebuild names from ids. The box is in pixels of
the image, [top, bottom) x [left, right), the whole image for image units.

The folder appears complete or not at all: it is built in a hidden sibling folder
and renamed into place, and an older DIR is renamed aside first and then deleted.
"""
import contextlib
import csv
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

from lib.errors import UserError
from lib.fileio import atomic_write
from lib.units import items_by_image

COLUMNS = ("rank", "id", "image", "top", "left", "bottom", "right", "score", "method", "cycle", "preview", "mask")
# Colours of the 1-pixel rings around a box, innermost first: a magenta band (rare in
# photos) with a black rim that keeps it visible on magenta or very light pixels.
OUTLINE = ((255, 0, 255), (255, 0, 255), (0, 0, 0))


def check_export_folder(folder):
    """Fail before any work when `folder` cannot become the worklist folder."""
    folder = Path(folder)
    if not folder.parent.resolve().is_dir():
        raise UserError(f"{folder}: folder {folder.parent} does not exist")
    if folder.exists() and not folder.is_dir():
        raise UserError(f"{folder}: exists and is not a folder")


def file_name(item_id):
    return item_id.replace("#", "__") + ".png"


def outlined(image, box):
    """[H, W, 3] uint8 copy of `image` with rings drawn just outside `box`, which stays untouched.

    Rings are clipped at the image border, so a whole-image box has none.
    """
    height, width = image.shape[:2]
    preview = image.copy()
    for distance in range(len(OUTLINE), 0, -1):
        # Each ring fills the box grown by its distance; the inner rings then paint over all but its outer line.
        preview[max(box.top - distance, 0):box.bottom + distance, max(box.left - distance, 0):box.right + distance] = (
            OUTLINE[distance - 1]
        )
    preview[box.top:box.bottom, box.left:box.right] = image[box.top:box.bottom, box.left:box.right]
    return preview


def box_mask(box, height, width):
    """[height, width] uint8: 255 inside `box`, 0 elsewhere."""
    mask = np.zeros((height, width), dtype=np.uint8)
    mask[box.top:box.bottom, box.left:box.right] = 255
    return mask


def save_png(path, array):
    with atomic_write(path) as handle:
        Image.fromarray(array).save(handle, format="PNG")


def write_files(folder, dataset, unit, item_ids):
    """Previews (and masks for patches and regions) of every item; returns {item id: (Box, preview, mask)}."""
    (folder / "previews").mkdir()
    if unit.type != "image":
        (folder / "masks").mkdir()
    written = {}
    for image_id, items in items_by_image(unit, item_ids).items():
        image = dataset.load_image(image_id)  # [H, W, 3] uint8
        height, width = image.shape[:2]
        for item_id in items:
            box = unit.box(item_id, height, width)
            preview = f"previews/{file_name(item_id)}"
            save_png(folder / preview, outlined(image, box))
            mask = ""
            if unit.type != "image":
                mask = f"masks/{file_name(item_id)}"
                save_png(folder / mask, box_mask(box, height, width))
            written[item_id] = (box, preview, mask)
    return written


def write_csv(path, dataset, unit, item_ids, written, scores, method, cycle):
    with atomic_write(path, "w") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(COLUMNS)
        for rank, item_id in enumerate(item_ids, start=1):
            box, preview, mask = written[item_id]
            score = "" if scores is None else repr(float(scores[item_id]))
            image = Path(dataset.image_path(unit.image_of(item_id))).resolve()
            writer.writerow([rank, item_id, image, box.top, box.left, box.bottom, box.right, score, method, cycle,
                             preview, mask])


def replace_folder(new, folder):
    """Move the finished `new` folder to `folder`, an older one renamed aside and deleted."""
    if not folder.exists():
        os.replace(new, folder)
        return
    # Renaming a folder onto an empty one is allowed, so the old one goes to a fresh empty name.
    old = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{folder.name}.", suffix=".old"))
    os.replace(folder, old)
    os.replace(new, folder)
    shutil.rmtree(old)


def write_worklist(folder, dataset, unit, item_ids, scores, method, cycle):
    """Write the worklist of the selected `item_ids` (best first) to `folder`, replacing an older one.

    `scores` is {item id: score} of the method, or None for methods without scores.
    """
    check_export_folder(folder)
    folder = Path(folder)
    try:
        new = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{folder.name}.", suffix=".tmp"))
    except OSError as err:
        raise UserError(f"{folder}: cannot write in {folder.parent} ({err.strerror})") from None
    try:
        written = write_files(new, dataset, unit, item_ids)
        write_csv(new / "worklist.csv", dataset, unit, item_ids, written, scores, method, cycle)
        replace_folder(new, folder)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            shutil.rmtree(new)
        raise
