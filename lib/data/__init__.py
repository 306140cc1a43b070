"""Dataset registry: layout name -> opener(root, split) -> SegmentationDataset.

A new layout is one module with one opener function and one line here.
"""
from lib.data import a2d2, camvid, cityscapes, folder, synthetic, voc
from lib.data.base import IGNORE_INDEX, Frame, SegmentationDataset
from lib.data.cache import DecodedCache, check_cache_folder
from lib.data.resolution import NATIVE
from lib.errors import UserError

DATASETS = {
    "a2d2": a2d2.open_a2d2,
    "camvid": camvid.open_camvid,
    "cityscapes": cityscapes.open_cityscapes,
    "folder": folder.open_folder,
    "synthetic": synthetic.open_synthetic,
    "voc": voc.open_voc,
}


def open_dataset(name, root, split, cache_dir=None, resolution=NATIVE):
    """The split of a layout, read at `resolution` (lib.data.resolution: --resize, --scale); with `cache_dir`, its
    images and masks are decoded once (lib.data.cache)."""
    if name not in DATASETS:
        raise UserError(f"unknown dataset {name!r} (choices: {', '.join(sorted(DATASETS))})")
    if cache_dir is not None:
        check_cache_folder(cache_dir, DATASETS)  # before listing a large pool, and before the folder is made
    dataset = DATASETS[name](root, split)
    dataset.resolution = resolution
    if cache_dir is not None:
        dataset.cache = DecodedCache(cache_dir, DATASETS)
    return dataset


__all__ = ["DATASETS", "IGNORE_INDEX", "Frame", "SegmentationDataset", "open_dataset"]
