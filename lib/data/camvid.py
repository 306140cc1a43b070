"""CamVid in the SegNet layout (Brostow, Fauqueur & Cipolla, Pattern Recognition Letters 2009).

    ROOT/{train,val,test}/<sequence>_<frame>.png        480x360 RGB
    ROOT/{train,val,test}annot/<sequence>_<frame>.png   class ids 0..10, 11 = void

as in the CamVid/ folder of the SegNet tutorial (367 / 101 / 233 images). The
train.txt-style lists there hold absolute paths of another machine, so the folders
are read instead. File names carry the sequence and frame (0001TP_006690,
0016E5_07959, Seq05VD_f00030), which redundant-pool tools and --method uniform use.
"""
import re

import numpy as np

from lib.data.base import (
    IGNORE_INDEX, Frame, MaskFolder, SegmentationDataset, images_by_stem, masks_by_stem, require_root,
)
from lib.errors import UserError

CLASS_NAMES = [
    "sky", "building", "pole", "road", "pavement", "tree", "sign_symbol", "fence", "car", "pedestrian", "bicyclist",
]
VOID = 11  # "Unlabelled" in the annotation files; ignored like every other void
_FILE_NAME = re.compile(r"^(?P<sequence>.+)_f?(?P<frame>\d+)$")


def _label_map():
    label_map = np.arange(256, dtype=np.uint8)
    label_map[VOID] = IGNORE_INDEX
    return label_map


def _frames(image_dir, ids):
    frames = {}
    for image_id in ids:
        match = _FILE_NAME.match(image_id)
        if not match:
            raise UserError(f"{image_dir}/{image_id}.png: CamVid file names are <sequence>_<frame>.png")
        frames[image_id] = Frame(match["sequence"], int(match["frame"]))
    return frames


def open_camvid(root, split):
    root = require_root(root)
    image_dir = root / split
    image_paths = images_by_stem(image_dir, (".png",), "ROOT/<split>/ and ROOT/<split>annot/ of CamVid")
    mask_paths = masks_by_stem(root / f"{split}annot", image_paths)
    return SegmentationDataset(
        "camvid", split, image_paths, mask_paths, CLASS_NAMES, _frames(image_dir, image_paths), _label_map(),
        new_mask_path=MaskFolder(root / f"{split}annot"),
    )
