"""PASCAL VOC 2012 segmentation (Everingham et al., IJCV 2010), as unpacked from
VOCtrainval_11-May-2012.tar, with the SBD-augmented labels of the DeepLab setup:

    ROOT/VOCdevkit/VOC2012/ImageSets/Segmentation/<split>.txt   one id a line (train 1464, val 1449, trainval 2913)
    ROOT/VOCdevkit/VOC2012/JPEGImages/<id>.jpg                   RGB
    ROOT/VOCdevkit/VOC2012/SegmentationClass/<id>.png            palette PNG: palette index = class id, 255 = border
    ROOT/VOCdevkit/VOC2012/SegmentationClassAug/<id>.png         optional: class ids of VOC and SBD (Hariharan et al.)

ROOT may also be the VOC2012 folder itself. The official lists read their labels
from SegmentationClass; the split `train_aug` (10,582 images) reads
SegmentationClassAug, with its ids from ImageSets/Segmentation/train_aug.txt or,
without that file, every SegmentationClassAug label that is not in val.txt. A
list line may also be DeepLab's "/JPEGImages/<id>.jpg /SegmentationClassAug/<id>.png".
A split without label files (test.txt of the test release) is an unlabeled pool.
VOC has no video, so no frames.
"""
from pathlib import Path

from lib.data.base import MaskFolder, SegmentationDataset, files_by_stem, masks_by_stem, require_root
from lib.errors import UserError

CLASS_NAMES = [
    "background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
    "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train", "tvmonitor",
]
AUGMENTED_SPLIT = "train_aug"
LAYOUT = "ROOT/VOCdevkit/VOC2012/ or ROOT = VOC2012/, holding ImageSets/Segmentation/, JPEGImages/, SegmentationClass/"


def _voc_folder(root):
    """ROOT/VOCdevkit/VOC2012, or ROOT itself when it is a VOC2012 folder; refused when both are."""
    candidates = (root / "VOCdevkit" / "VOC2012", root)
    found = [folder for folder in candidates if (folder / "ImageSets" / "Segmentation").is_dir()]
    if not found:
        raise UserError(f"{root}: no ImageSets/Segmentation/ here nor in VOCdevkit/VOC2012/ (layout: {LAYOUT})")
    if len(found) > 1:
        raise UserError(f"{root}: both ROOT and ROOT/VOCdevkit/VOC2012 hold ImageSets/Segmentation/: give one of them")
    return found[0]


def _read_list(path):
    # Path(...).stem takes the id out of both "2007_000032" and "/JPEGImages/2007_000032.jpg ...".
    return [Path(line.split()[0]).stem for line in path.read_text().splitlines() if line.strip()]


def _split_ids(voc, split):
    lists = voc / "ImageSets" / "Segmentation"
    if (lists / f"{split}.txt").is_file():
        return _read_list(lists / f"{split}.txt")
    augmented = voc / "SegmentationClassAug"
    # Without val.txt, deriving train_aug could put val images into the training pool.
    augmented_derivable = augmented.is_dir() and (lists / "val.txt").is_file()
    if split == AUGMENTED_SPLIT and augmented_derivable:
        val_ids = set(_read_list(lists / "val.txt"))
        # The label files masks_by_stem reads: .png in any case.
        return sorted(stem for stem in files_by_stem(augmented, (".png",), "masks") if stem not in val_ids)
    splits = sorted({p.stem for p in lists.glob("*.txt")} | ({AUGMENTED_SPLIT} if augmented_derivable else set()))
    raise UserError(f"{lists / f'{split}.txt'}: no such split list (splits here: {', '.join(splits) or 'none'})")


def _image_paths(voc, split, ids):
    image_paths = {image_id: voc / "JPEGImages" / f"{image_id}.jpg" for image_id in ids}
    for image_id, path in image_paths.items():
        if not path.is_file():
            raise UserError(f"{path}: no such image (listed in split {split!r}; layout: JPEGImages/<id>.jpg)")
    if not image_paths:
        raise UserError(f"{voc}: split {split!r} has no images")
    return image_paths


def open_voc(root, split):
    voc = _voc_folder(require_root(root))
    image_paths = _image_paths(voc, split, _split_ids(voc, split))
    label_dir = voc / ("SegmentationClassAug" if split == AUGMENTED_SPLIT else "SegmentationClass")
    return SegmentationDataset("voc", split, image_paths, masks_by_stem(label_dir, image_paths), CLASS_NAMES,
                               new_mask_path=MaskFolder(label_dir))
