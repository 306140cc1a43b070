"""The `folder` layout: the simplest way to bring your own data.

    ROOT/classes.json                  ["road", "car", ...]  (index = class id)
    ROOT/<split>/images/<id>.png|jpg   RGB images
    ROOT/<split>/masks/<id>.png        class ids per pixel, 255 = ignore; optional:
                                       an unlabeled pool has no masks (or only some)
    ROOT/<split>/sequences.json        optional {"<id>": {"sequence": "...", "frame": 3}}

Masks stored with other values (a binary 0/255 export, where 255 would read as ignore)
are mapped by an object in classes.json, every value the masks hold listed:

    {"classes": ["background", "lesion"], "mask_values": {"0": "background", "255": "lesion"}}

A value maps to a class name or to null (ignore); a value the mapping leaves out is an
error where a mask holds it, rather than a class silently lost.
"""

import numpy as np

from lib.data.base import (
    IGNORE_INDEX,
    MAX_CLASSES,
    UNLABELED,
    Frame,
    MaskFolder,
    SegmentationDataset,
    images_by_stem,
    masks_by_stem,
    require_root,
)
from lib.errors import UserError
from lib.fileio import read_json

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
CLASS_FILE_KEYS = ("classes", "mask_values")
# What label_map gives a value that mask_values leaves out: an id of no class list (MAX_CLASSES) and not
# IGNORE_INDEX, so SegmentationDataset refuses a mask that holds it, naming the value.
UNMAPPED = UNLABELED


def read_class_file(path):
    """(class names, [256] uint8 label_map or None) of ROOT/classes.json: a list of names (mask values are class
    ids), or {"classes": [...], "mask_values": {"<value>": "<class>" or null}}."""
    content = read_json(path, "class list")
    if not isinstance(content, dict):
        return check_class_names(path, content), None
    unknown = [key for key in content if key not in CLASS_FILE_KEYS]
    if unknown:
        raise UserError(f"{path}: unknown key {unknown[0]!r} (an object here has \"classes\" and \"mask_values\")")
    if "classes" not in content:
        raise UserError(f"{path}: no \"classes\": the list of class names (index = class id)")
    names = check_class_names(path, content["classes"])
    return names, (mask_value_map(path, content["mask_values"], names) if "mask_values" in content else None)


def mask_value_map(path, mask_values, names):
    """[256] uint8 lookup, mask value -> class id, IGNORE_INDEX for null and UNMAPPED for a value not listed."""
    if not isinstance(mask_values, dict) or not mask_values:
        raise UserError(f'{path}: "mask_values" must be an object {{"<mask value>": "<class name>" or null, ...}}')
    label_map = np.full(IGNORE_INDEX + 1, UNMAPPED, dtype=np.uint8)
    class_ids = {name: class_id for class_id, name in enumerate(names)}
    for key, name in mask_values.items():
        # One spelling per value: "07" beside "7" would map one value twice.
        if not (key.isascii() and key.isdigit() and str(int(key)) == key and int(key) <= IGNORE_INDEX):
            raise UserError(f"{path}: mask_values key {key!r} is not a mask value (0..{IGNORE_INDEX}, e.g. \"255\")")
        if name is not None and not (isinstance(name, str) and name in class_ids):
            raise UserError(f"{path}: mask_values maps {key} to {name!r}, which is not in \"classes\" "
                            f"(map it to one of {', '.join(names)}, or to null to ignore it)")
        label_map[int(key)] = IGNORE_INDEX if name is None else class_ids[name]
    unmapped = [name for class_id, name in enumerate(names) if class_id not in label_map]
    if unmapped:  # such a class could never occur in a mask
        raise UserError(f"{path}: no mask value maps to class {unmapped[0]!r} in mask_values")
    return label_map


def check_class_names(path, names):
    if not (isinstance(names, list) and len(names) >= 2 and all(isinstance(n, str) for n in names)):
        raise UserError(f'{path}: expected a JSON list of at least two class names, or an object {{"classes": '
                        f'[...], "mask_values": {{...}}}} (README: the folder layout)')
    if len(names) > MAX_CLASSES:  # masks are 8-bit, and two ids have a meaning of their own
        raise UserError(f"{path}: {len(names)} classes, but an 8-bit mask holds at most {MAX_CLASSES} "
                        f"(ids 0..{MAX_CLASSES - 1}; 254 marks unlabeled pixels in training, 255 = ignore)")
    seen = set()
    for name in names:  # metrics report IoU by class name: two classes of one name would merge
        if name in seen:
            raise UserError(f"{path}: class {name!r} is listed twice")
        seen.add(name)
    return names


def read_frames(path, ids):
    table = read_json(path, "sequence file")
    frames = {}
    for image_id in ids:
        entry = table.get(image_id) if isinstance(table, dict) else None
        if not (isinstance(entry, dict) and isinstance(entry.get("sequence"), str)
                and isinstance(entry.get("frame"), int)):
            raise UserError(f"{path}: no valid {{\"sequence\", \"frame\"}} entry for image {image_id!r}")
        frames[image_id] = Frame(entry["sequence"], entry["frame"])
    return frames


def open_folder(root, split, name="folder"):
    root = require_root(root)
    class_file = root / "classes.json"
    class_names, label_map = read_class_file(class_file)
    image_paths = images_by_stem(root / split / "images", IMAGE_SUFFIXES, "ROOT/<split>/images, ROOT/<split>/masks")
    mask_paths = masks_by_stem(root / split / "masks", image_paths)
    sequence_file = root / split / "sequences.json"
    frames = read_frames(sequence_file, image_paths) if sequence_file.exists() else None
    return SegmentationDataset(name, split, image_paths, mask_paths, class_names, frames, label_map,
                               class_file=class_file, new_mask_path=MaskFolder(root / split / "masks"))
