"""The PASCAL VOC 2012 loader on a fixture written in the VOCdevkit layout, with DeepLab's SegmentationClassAug."""
import json
import re

import numpy as np
import pytest
from PIL import Image

from conftest import check_new_mask_path, import_script
from lib.data import IGNORE_INDEX, open_dataset
from lib.errors import UserError

select = import_script("select.py")
train = import_script("train.py")
TRAIN, VAL, TEST = ["2007_000032", "2007_000039"], ["2007_000033"], ["2008_000001"]
SBD_ONLY = ["2008_000002", "2008_000003"]  # labeled in SegmentationClassAug only
CLASS_IDS = np.arange(128, dtype=np.uint8).reshape(8, 16) % 21
CLASS_IDS[0] = IGNORE_INDEX  # the white border VOC draws around objects


def voc_palette():
    """The colour map of VOCdevkit's VOClabelcolormap.m: class i's colour from the bits of i."""
    palette = []
    for index in range(256):
        rgb = [0, 0, 0]
        for shift in range(8):
            for channel in range(3):
                rgb[channel] |= ((index >> (3 * shift + channel)) & 1) << (7 - shift)
        palette.extend(rgb)
    return palette


@pytest.fixture()
def voc(tmp_path_factory):
    """ROOT/VOCdevkit/VOC2012 with train/val/trainval/test lists, palette labels for train and val,
    SegmentationClassAug for train, val and two SBD-only images; test has no labels."""
    root = tmp_path_factory.mktemp("voc")  # apart from the outputs tests write to tmp_path
    voc = root / "VOCdevkit" / "VOC2012"
    for folder in ("ImageSets/Segmentation", "JPEGImages", "SegmentationClass", "SegmentationClassAug"):
        (voc / folder).mkdir(parents=True)
    lists = {"train": TRAIN, "val": VAL, "trainval": TRAIN + VAL, "test": TEST}
    for split, ids in lists.items():
        (voc / "ImageSets" / "Segmentation" / f"{split}.txt").write_text("".join(f"{i}\n" for i in ids))
    rng = np.random.default_rng(0)
    for image_id in TRAIN + VAL + SBD_ONLY + TEST:
        Image.fromarray(rng.integers(0, 256, (8, 16, 3), dtype=np.uint8)).save(voc / "JPEGImages" / f"{image_id}.jpg")
    for image_id in TRAIN + VAL:
        label = Image.fromarray(CLASS_IDS, mode="P")
        label.putpalette(voc_palette())
        label.save(voc / "SegmentationClass" / f"{image_id}.png")
    for image_id in TRAIN + VAL + SBD_ONLY:
        Image.fromarray(np.full((8, 16), 15, np.uint8), mode="L").save(voc / "SegmentationClassAug" / f"{image_id}.png")
    return root


def test_splits_classes_and_no_frames(voc):
    dataset = open_dataset("voc", voc, "trainval")
    assert dataset.ids == sorted(TRAIN + VAL) and dataset.frames is None
    assert dataset.num_classes == 21 and dataset.class_names[0] == "background"
    assert dataset.class_names[15] == "person" and dataset.class_names[-1] == "tvmonitor"
    assert open_dataset("voc", voc, "val").ids == VAL


def test_palette_labels_are_read_as_class_ids(voc):
    assert Image.open(voc / "VOCdevkit" / "VOC2012" / "SegmentationClass" / f"{TRAIN[0]}.png").mode == "P"
    image, mask = open_dataset("voc", voc, "train").load_pair(TRAIN[0])
    assert image.shape == (8, 16, 3) and (mask == CLASS_IDS).all() and (mask[0] == IGNORE_INDEX).all()


def test_train_aug_without_a_list_is_every_augmented_label_but_val(voc):
    dataset = open_dataset("voc", voc, "train_aug")
    assert dataset.ids == sorted(TRAIN + SBD_ONLY)
    assert all((dataset.load_mask(image_id) == 15).all() for image_id in dataset.ids)  # from SegmentationClassAug


def test_train_aug_list_in_deeplab_format(voc):
    lines = "".join(f"/JPEGImages/{i}.jpg /SegmentationClassAug/{i}.png\n" for i in SBD_ONLY)
    (voc / "VOCdevkit" / "VOC2012" / "ImageSets" / "Segmentation" / "train_aug.txt").write_text(lines)
    assert open_dataset("voc", voc, "train_aug").ids == SBD_ONLY


def test_root_may_be_the_voc2012_folder(voc):
    assert open_dataset("voc", voc / "VOCdevkit" / "VOC2012", "train").ids == TRAIN


@pytest.mark.parametrize("split", ["train", "train_aug"])
def test_a_new_mask_goes_where_the_loader_reads_it(voc, split):
    check_new_mask_path("voc", voc, split)


def test_a_split_without_labels_is_an_unlabeled_pool(voc):
    dataset = open_dataset("voc", voc, "test")
    assert dataset.ids == TEST and not dataset.has_mask(TEST[0]) and dataset.load_mask(TEST[0]) is None


def test_select_then_train_on_train_aug(voc, tmp_path):
    index = tmp_path / "index.json"
    select.main(["--dataset", "voc", "--data-root", str(voc), "--split", "train_aug", "--method", "random",
                 "--budget", "2", "--out", str(index)])
    assert set(json.loads(index.read_text())["labeled"]) <= set(TRAIN + SBD_ONLY)
    model = tmp_path / "model.pt"
    train.main(["--dataset", "voc", "--data-root", str(voc), "--split", "train_aug", "--index", str(index),
                "--out", str(model), "--arch", "tiny", "--epochs", "1", "--workers", "0", "--device", "cpu",
                "--crop", "16x16", "--batch-size", "2"])
    assert model.is_file()


def rename_first_image(root):
    images = root / "VOCdevkit" / "VOC2012" / "JPEGImages"
    (images / f"{TRAIN[0]}.jpg").rename(images / f"{TRAIN[0]}.png")


@pytest.mark.parametrize(
    ("break_it", "split", "message"),
    [
        (lambda root: (root / "VOCdevkit").rename(root / "devkit"), "train",
         "no ImageSets/Segmentation/ here nor in VOCdevkit/VOC2012/ (layout: ROOT/VOCdevkit/VOC2012/"),
        (lambda root: None, "train_sbd",
         "ImageSets/Segmentation/train_sbd.txt: no such split list "
         "(splits here: test, train, train_aug, trainval, val)"),
        (rename_first_image, "train",
         f"JPEGImages/{TRAIN[0]}.jpg: no such image (listed in split 'train'; layout: JPEGImages/<id>.jpg)"),
        (lambda root: (root / "ImageSets" / "Segmentation").mkdir(parents=True), "train",
         "both ROOT and ROOT/VOCdevkit/VOC2012 hold ImageSets/Segmentation/"),
    ],
)
def test_layout_errors_name_the_culprit(voc, break_it, split, message):
    break_it(voc)
    with pytest.raises(UserError, match=re.escape(message)):
        open_dataset("voc", voc, split)
