"""Dataset registry: layout name -> opener(root, split) -> SegmentationDataset.

A new layout is one module with one opener function and one line here.
"""
from lib.data import a2d2, camvid, cityscapes, folder, synthetic, voc
from lib.data.base import IGNORE_INDEX, Frame, SegmentationDataset
from lib.errors import UserError

DATASETS = {
    "a2d2": a2d2.open_a2d2,
    "camvid": camvid.open_camvid,
    "cityscapes": cityscapes.open_cityscapes,
    "folder": folder.open_folder,
    "synthetic": synthetic.open_synthetic,
    "voc": voc.open_voc,
}


def open_dataset(name, root, split):
    if name not in DATASETS:
        raise UserError(f"unknown dataset {name!r} (choices: {', '.join(sorted(DATASETS))})")
    return DATASETS[name](root, split)


__all__ = ["DATASETS", "IGNORE_INDEX", "Frame", "SegmentationDataset", "open_dataset"]
