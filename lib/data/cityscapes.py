"""Cityscapes fine annotations (Cordts et al., CVPR 2016), as unpacked from
leftImg8bit_trainvaltest.zip and gtFine_trainvaltest.zip:

    ROOT/leftImg8bit/{train,val,test}/<city>/<city>_<seq>_<frame>_leftImg8bit.png   2048x1024 RGB
    ROOT/gtFine/<split>/<city>/<city>_<seq>_<frame>_gtFine_labelIds.png            the 34 labelIds
    ROOT/gtFine/<split>/<city>/<city>_<seq>_<frame>_gtFine_labelTrainIds.png       optional: 19 trainIds, 255 = ignore

(2975 / 500 / 1525 images). labelIds are mapped to the 19 evaluated classes; the
labelTrainIds files that cityscapesScripts' createTrainIdLabelImgs.py writes are
read as they are. Each fine image is one frame of a video snippet, and a city's
drive can hold many of them (frankfurt_000000_000294, frankfurt_000000_000576):
<city>_<seq> is the sequence and <frame> the frame, for redundant pools and
--method uniform. The public test annotations are placeholders without a single
evaluated pixel, so the test split is an unlabeled pool, as is any split without
gtFine files.
"""
import functools
import re

import numpy as np

from lib.data.base import IGNORE_INDEX, Frame, SegmentationDataset, require_root
from lib.errors import UserError

# The 19 evaluated classes in trainId order with their labelId, from cityscapesScripts
# helpers/labels.py. Every other labelId (the void ones 0-6, parking 9, rail track 10,
# guard rail 14, bridge 15, tunnel 16, polegroup 18, caravan 29, trailer 30) has trainId 255.
CLASSES = [
    ("road", 7), ("sidewalk", 8), ("building", 11), ("wall", 12), ("fence", 13), ("pole", 17),
    ("traffic light", 19), ("traffic sign", 20), ("vegetation", 21), ("terrain", 22), ("sky", 23),
    ("person", 24), ("rider", 25), ("car", 26), ("truck", 27), ("bus", 28), ("train", 31),
    ("motorcycle", 32), ("bicycle", 33),
]
CLASS_NAMES = [name for name, _ in CLASSES]
IMAGE_SUFFIX = "_leftImg8bit.png"
LAYOUT = "ROOT/leftImg8bit/<split>/<city>/<city>_<seq>_<frame>_leftImg8bit.png and ROOT/gtFine/<split>/<city>/"
_IMAGE_NAME = re.compile(r"^(?P<city>[^_]+)_(?P<seq>\d{6})_(?P<frame>\d{6})_leftImg8bit\.png$")
# The public test annotations are placeholders without an evaluated pixel.
UNLABELED_SPLITS = {"test"}


def _label_map():
    label_map = np.full(256, IGNORE_INDEX, dtype=np.uint8)
    for train_id, (_, label_id) in enumerate(CLASSES):
        label_map[label_id] = train_id
    return label_map


def _images_and_frames(split_dir):
    if not split_dir.is_dir():
        raise UserError(f"{split_dir}: no such folder (layout: {LAYOUT})")
    image_paths, frames = {}, {}
    for path in sorted(split_dir.glob("*/*.png")):
        match = _IMAGE_NAME.match(path.name)
        if not match or match["city"] != path.parent.name:
            raise UserError(f"{path}: Cityscapes images are <city>/<city>_<seq>_<frame>{IMAGE_SUFFIX}")
        image_id = path.name[: -len(IMAGE_SUFFIX)]
        image_paths[image_id] = path
        frames[image_id] = Frame(f"{match['city']}_{match['seq']}", int(match["frame"]))
    if not image_paths:
        raise UserError(f"{split_dir}: no images (<city>/*{IMAGE_SUFFIX})")
    return image_paths, frames


def _label_path(gt_dir, kind, image_id):
    """gtFine/<split>/<city>/<id>_gtFine_<kind>.png; an id starts with its city."""
    return gt_dir / image_id.split("_")[0] / f"{image_id}_gtFine_{kind}.png"


def _label_files(gt_dir, image_paths, kind):
    candidates = {image_id: gt_dir / path.parent.name / f"{image_id}_gtFine_{kind}.png"
                  for image_id, path in image_paths.items()}
    return {image_id: path for image_id, path in candidates.items() if path.is_file()}


def _masks_and_label_map(gt_dir, image_paths):
    """The labelTrainIds files when every labeled image has one, else the labelIds files and their map."""
    train_ids = _label_files(gt_dir, image_paths, "labelTrainIds")
    label_ids = _label_files(gt_dir, image_paths, "labelIds")
    if label_ids.keys() <= train_ids.keys():
        return train_ids, None
    # One lookup serves a whole split, so the two kinds cannot be mixed; the labelIds files
    # alone do unless an image has only its labelTrainIds file.
    only_train_ids = sorted(train_ids.keys() - label_ids.keys())
    if only_train_ids:
        only_label_ids = sorted(label_ids.keys() - train_ids.keys())
        raise UserError(f"{gt_dir}: {only_train_ids[0]} has only _gtFine_labelTrainIds.png, {only_label_ids[0]} only "
                        f"_gtFine_labelIds.png (run cityscapesScripts' createTrainIdLabelImgs.py again)")
    return label_ids, _label_map()


def open_cityscapes(root, split):
    root = require_root(root)
    image_paths, frames = _images_and_frames(root / "leftImg8bit" / split)
    if split in UNLABELED_SPLITS:
        mask_paths, label_map, new_mask_path = {}, None, None
    else:
        mask_paths, label_map = _masks_and_label_map(root / "gtFine" / split, image_paths)
        # New labels go in the kind the split is read in; without labels yet, labelTrainIds: our class ids.
        kind = "labelTrainIds" if label_map is None else "labelIds"
        new_mask_path = functools.partial(_label_path, root / "gtFine" / split, kind)
    return SegmentationDataset("cityscapes", split, image_paths, mask_paths, CLASS_NAMES, frames, label_map,
                               new_mask_path=new_mask_path)
