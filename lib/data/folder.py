"""The `folder` layout: the simplest way to bring your own data.

    ROOT/classes.json                  ["road", "car", ...]  (index = class id)
    ROOT/<split>/images/<id>.png|jpg   RGB images
    ROOT/<split>/masks/<id>.png        class ids per pixel, 255 = ignore; optional:
                                       an unlabeled pool has no masks (or only some)
    ROOT/<split>/sequences.json        optional {"<id>": {"sequence": "...", "frame": 3}}
"""

from lib.data.base import MAX_CLASSES, Frame, SegmentationDataset, images_by_stem, masks_by_stem, require_root
from lib.errors import UserError
from lib.fileio import read_json

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")


def read_class_names(path):
    names = read_json(path, "class list")
    if not (isinstance(names, list) and len(names) >= 2 and all(isinstance(n, str) for n in names)):
        raise UserError(f"{path}: expected a JSON list of at least two class names")
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
        if not (isinstance(entry, dict) and isinstance(entry.get("sequence"), str) and isinstance(entry.get("frame"), int)):
            raise UserError(f"{path}: no valid {{\"sequence\", \"frame\"}} entry for image {image_id!r}")
        frames[image_id] = Frame(entry["sequence"], entry["frame"])
    return frames


def open_folder(root, split, name="folder"):
    root = require_root(root)
    class_names = read_class_names(root / "classes.json")
    image_paths = images_by_stem(root / split / "images", IMAGE_SUFFIXES, "ROOT/<split>/images, ROOT/<split>/masks")
    mask_paths = masks_by_stem(root / split / "masks", image_paths)
    sequence_file = root / split / "sequences.json"
    frames = read_frames(sequence_file, image_paths) if sequence_file.exists() else None
    return SegmentationDataset(name, split, image_paths, mask_paths, class_names, frames)
