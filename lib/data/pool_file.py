"""Curated pools: `--pool FILE`, a JSON list of image ids, makes a split's pool those images only.

Redundant pools (A2D2's Pool-Xf, Pool-Aug) and any hand-made subset are then just
files, read the same way by every layout.
"""
from lib.errors import UserError
from lib.fileio import read_json


def restrict_to_pool(dataset, path):
    """`dataset` with its ids narrowed to those listed in `path`, kept in the canonical (sorted) order."""
    ids = read_json(path, "pool file")
    if not (isinstance(ids, list) and ids and all(isinstance(image_id, str) for image_id in ids)):
        raise UserError(f"{path}: a pool file is a non-empty JSON list of image ids")
    known, seen = set(dataset.ids), set()
    for image_id in ids:
        if image_id in seen:
            raise UserError(f"{path}: duplicate id {image_id!r}")
        if image_id not in known:
            raise UserError(f"{path}: id {image_id!r} is not an image of {dataset.name}/{dataset.split}")
        seen.add(image_id)
    dataset.ids = sorted(ids)
    return dataset
