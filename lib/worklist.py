"""The worklist that hands a selection to annotators (`select.py --export DIR`).

    DIR/worklist.csv          rank,id,image,top,left,bottom,right,score,method,cycle,preview,mask,save_label_as
    DIR/previews/<name>.png   the image on a margin, the item's box outlined just outside it
    DIR/masks/<name>.png      patch and region units: 255 inside the box, 0 elsewhere

<name> is the item id percent-encoded (`img#r0c1` -> `img%23r0c1`): distinct ids
always give distinct names, and no id can name a path outside the folder. The CSV
names both files, so nobody has to rebuild names from ids. The box is in pixels of
the image, [top, bottom) x [left, right), the whole image for image units.
`save_label_as` is the file the annotator saves the label mask of the item's image as:
where the dataset's loader reads it (lib.data: the existing mask, or where the layout
looks for one), shared by the items of one image; empty for a split whose masks are
never read. Text cells that begin with `=`, `+`, `-` or `@` are prefixed with `'`, as
spreadsheets need to show them as text rather than run them as formulas.

DIR is replaced as a whole, and only when an earlier export made it and it holds just
what that export wrote (its marker lists the files, lib.owned), or when it is empty:
the new worklist is built in a hidden sibling folder and swapped with the old one in
a single step (renameat2's RENAME_EXCHANGE), so at every moment DIR holds the old
worklist or the new one. Where the file system cannot swap,
the old folder is renamed aside and the new one into place; a run killed between
the two leaves both in hidden siblings. Hidden siblings left by killed runs are
deleted by the next export to DIR.
"""
import contextlib
import csv
import os
import re
import shutil
import tempfile
from pathlib import Path
from urllib.parse import quote

import numpy as np
from PIL import Image

from lib.errors import UserError
from lib.fileio import atomic_write, exchange_paths, new_folder_mode
from lib.owned import check_folder, listed_files, mark_folder, read_marker
from lib.units import items_by_image

COLUMNS = ("rank", "id", "image", "top", "left", "bottom", "right", "score", "method", "cycle", "preview", "mask",
           "save_label_as")
# Colours of the 1-pixel rings around a box, innermost first: a magenta band (rare in
# photos) with a black rim that keeps it visible on magenta or very light pixels.
OUTLINE = ((255, 0, 255), (255, 0, 255), (0, 0, 0))
# Every preview is the image on a margin as wide as the rings, so that no ring is clipped: a whole image, and an item
# at the image's border, are outlined on every side like any other item.
MARGIN = len(OUTLINE)
MARGIN_COLOUR = (255, 255, 255)
KIND = "a worklist of select.py --export"
# What spreadsheet software reads as the start of a formula (OWASP's CSV injection list).
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def check_export_folder(folder, flag="--export"):
    """Fail before any work when `folder` cannot become the worklist folder: only an earlier export's is replaced."""
    folder = Path(folder)
    parent = folder.parent.resolve()
    if not parent.is_dir():
        raise UserError(f"{flag} {folder}: folder {folder.parent} does not exist")
    if not os.access(parent, os.W_OK):  # the new worklist is built beside the old one
        raise UserError(f"{flag} {folder}: folder {folder.parent} is not writable")
    if os.path.ismount(folder):
        raise UserError(f"{flag} {folder}: is a mount point, which cannot be replaced; export to a folder inside it")
    check_folder(folder, KIND, flag)


def check_distinct_names(item_ids, flag="--export"):
    """Ids whose file names differ only in case would be one file on macOS and Windows, where worklists travel."""
    seen = {}
    for item_id in item_ids:
        key = file_name(item_id).casefold()
        if key in seen:
            raise UserError(f"{flag}: ids {seen[key]!r} and {item_id!r} differ only in case, and their files would be "
                            f"one on a case-insensitive file system")
        seen[key] = item_id


def file_name(item_id):
    """A file name of its own for every id: percent-encoding is injective and leaves no '/' or '#'."""
    return quote(item_id, safe="") + ".png"


def spreadsheet_text(text):
    """A text cell that spreadsheets show as it is, never evaluate."""
    text = str(text)
    return "'" + text if text.startswith(FORMULA_STARTS) else text


def outlined(image, box):
    """[H + 2 MARGIN, W + 2 MARGIN, 3] uint8: `image` [H, W, 3] on the margin, with rings drawn just outside `box`,
    which stays untouched."""
    height, width = image.shape[:2]
    preview = np.empty((height + 2 * MARGIN, width + 2 * MARGIN, 3), dtype=np.uint8)
    preview[:] = MARGIN_COLOUR
    preview[MARGIN:MARGIN + height, MARGIN:MARGIN + width] = image
    top, left, bottom, right = (side + MARGIN for side in (box.top, box.left, box.bottom, box.right))
    for distance in range(len(OUTLINE), 0, -1):
        # Each ring fills the box grown by its distance; the inner rings then paint over all but its outer line.
        preview[top - distance:bottom + distance, left - distance:right + distance] = OUTLINE[distance - 1]
    preview[top:bottom, left:right] = image[box.top:box.bottom, box.left:box.right]
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
            image_id = unit.image_of(item_id)
            image = Path(dataset.image_path(image_id)).resolve()
            label = dataset.annotation_path(image_id)
            text = [spreadsheet_text(value) for value in (item_id, image)]
            writer.writerow([rank, *text, box.top, box.left, box.bottom, box.right, score, spreadsheet_text(method),
                             cycle, preview, mask, spreadsheet_text(Path(label).resolve()) if label else ""])


def remove_leftovers(folder):
    """Delete what killed exports to `folder` left beside it: hidden siblings that are empty or carry the marker."""
    pattern = re.compile(re.escape(f".{folder.name}.") + r"[a-z0-9_]{8}\.(tmp|old)")  # mkdtemp's names below
    for sibling in folder.parent.iterdir():
        if pattern.fullmatch(sibling.name) and sibling.is_dir() and not sibling.is_symlink():
            marker = read_marker(sibling)
            if (marker and marker["made_by"] == KIND) or not any(sibling.iterdir()):
                shutil.rmtree(sibling)


def replace_folder(new, folder):
    """Put the finished `new` folder at `folder`: swapped in one step with an older one, which is then deleted."""
    if not folder.exists():
        os.replace(new, folder)
    elif exchange_paths(new, folder):
        shutil.rmtree(new)  # now the old worklist
    else:
        # Renaming a folder onto an empty one is allowed, so the old one goes to a fresh empty name.
        old = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{folder.name}.", suffix=".old"))
        os.replace(folder, old)
        os.replace(new, folder)
        shutil.rmtree(old)


def write_worklist(folder, dataset, unit, item_ids, scores, method, cycle):
    """Write the worklist of the selected `item_ids` (best first) to `folder`, replacing an earlier export's.

    `scores` is {item id: score} of the method, or None for methods without scores.
    A symbolic link is followed: the folder it points to is replaced, the link kept.
    """
    check_export_folder(folder)  # again, as select.py checked before scoring: an annotator may have worked since
    check_distinct_names(item_ids)
    folder = Path(os.path.realpath(folder))
    try:
        remove_leftovers(folder)
        new = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{folder.name}.", suffix=".tmp"))
        os.chmod(new, new_folder_mode())  # mkdtemp's 0o700 would lock the annotators out
    except OSError as err:
        raise UserError(f"--export {folder}: cannot write in {folder.parent} ({err.strerror})") from None
    try:
        mark_folder(new, KIND)  # first: a killed export's leftover is recognised as ours
        written = write_files(new, dataset, unit, item_ids)
        write_csv(new / "worklist.csv", dataset, unit, item_ids, written, scores, method, cycle)
        mark_folder(new, KIND, listed_files(new))  # what the next export may replace
        replace_folder(new, folder)
    except BaseException as err:
        with contextlib.suppress(FileNotFoundError):
            shutil.rmtree(new)
        if isinstance(err, OSError):  # a full disk or no inodes left while making a folder
            raise UserError(f"--export {folder}: write failed ({err.strerror or err})") from None
        if isinstance(err, UserError):  # name the folder the user gave, not the hidden one it was built in
            raise UserError(str(err).replace(str(new), f"--export {folder}")) from None
        raise
