"""The Cityscapes loader on a fixture written in the layout and naming of the official zips."""
import json
import re
import shutil

import numpy as np
import pytest
from PIL import Image

from conftest import check_new_mask_path, import_script
from lib.data import IGNORE_INDEX, Frame, open_dataset
from lib.errors import UserError

select = import_script("select.py")
TRAIN = ["aachen_000000_000019", "aachen_000001_000019", "bochum_000000_000313", "bochum_000000_000600"]
VAL = ["frankfurt_000000_000294"]
TEST = ["berlin_000000_000019"]
# labelId -> trainId, a few of each kind, from cityscapesScripts helpers/labels.py.
TRAIN_ID_OF = {7: 0, 8: 1, 26: 13, 33: 18, 0: 255, 1: 255, 6: 255, 9: 255, 14: 255, 29: 255, 30: 255}
LABEL_IDS = np.arange(128, dtype=np.uint8).reshape(8, 16) % 34  # every labelId 0..33


def write_png(path, array):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


def gt_path(root, split, image_id, kind):
    return root / "gtFine" / split / image_id.split("_")[0] / f"{image_id}_gtFine_{kind}.png"


@pytest.fixture()
def cityscapes(tmp_path_factory):
    """train: labelIds only; val: labelIds and labelTrainIds; test: the public all-void placeholders."""
    root = tmp_path_factory.mktemp("cityscapes")  # apart from the outputs tests write to tmp_path
    rng = np.random.default_rng(0)
    for split, ids in (("train", TRAIN), ("val", VAL), ("test", TEST)):
        for image_id in ids:
            city = image_id.split("_")[0]
            image = rng.integers(0, 256, (8, 16, 3), dtype=np.uint8)
            write_png(root / "leftImg8bit" / split / city / f"{image_id}_leftImg8bit.png", image)
            write_png(gt_path(root, split, image_id, "labelIds"), np.zeros((8, 16), np.uint8) if split == "test"
                      else LABEL_IDS)
    train_ids = np.full((8, 16), 5, np.uint8)
    train_ids[0] = IGNORE_INDEX
    write_png(gt_path(root, "val", VAL[0], "labelTrainIds"), train_ids)
    return root


def test_ids_classes_and_frames(cityscapes):
    dataset = open_dataset("cityscapes", cityscapes, "train")
    assert dataset.ids == TRAIN and dataset.num_classes == 19
    assert dataset.class_names[:3] == ["road", "sidewalk", "building"] and dataset.class_names[-1] == "bicycle"
    assert dataset.class_names[6:8] == ["traffic light", "traffic sign"]
    assert dataset.frames["bochum_000000_000600"] == Frame("bochum_000000", 600)
    assert dataset.frames["aachen_000001_000019"] == Frame("aachen_000001", 19)


def test_label_ids_become_train_ids(cityscapes):
    image, mask = open_dataset("cityscapes", cityscapes, "train").load_pair("aachen_000000_000019")
    assert image.shape == (8, 16, 3) and mask.shape == (8, 16)
    for label_id, train_id in TRAIN_ID_OF.items():
        assert (mask[LABEL_IDS == label_id] == train_id).all(), label_id
    assert set(np.unique(mask)) == set(range(19)) | {IGNORE_INDEX}


def test_label_train_ids_are_read_as_they_are(cityscapes):
    mask = open_dataset("cityscapes", cityscapes, "val").load_mask(VAL[0])
    assert (mask[0] == IGNORE_INDEX).all() and (mask[1:] == 5).all()


def test_label_ids_are_used_while_label_train_ids_are_incomplete(cityscapes):
    write_png(gt_path(cityscapes, "train", TRAIN[0], "labelTrainIds"), np.full((8, 16), 5, np.uint8))
    dataset = open_dataset("cityscapes", cityscapes, "train")
    assert (dataset.load_mask(TRAIN[0])[LABEL_IDS == 26] == 13).all()


def test_a_new_mask_goes_where_the_loader_reads_it(cityscapes):
    check_new_mask_path("cityscapes", cityscapes, "train")  # a labelIds file, as the split's others
    assert open_dataset("cityscapes", cityscapes, "test").annotation_path(TEST[0]) is None  # never read
    shutil.rmtree(cityscapes / "gtFine" / "train")  # no labels yet: new ones are train ids, our class ids
    saved = open_dataset("cityscapes", cityscapes, "train").annotation_path(TRAIN[0])
    assert saved == gt_path(cityscapes, "train", TRAIN[0], "labelTrainIds")
    write_png(saved, np.full((8, 16), 5, np.uint8))
    assert (open_dataset("cityscapes", cityscapes, "train").load_mask(TRAIN[0]) == 5).all()


def test_test_split_and_splits_without_gt_fine_are_unlabeled(cityscapes):
    test = open_dataset("cityscapes", cityscapes, "test")
    assert test.ids == TEST and not test.has_mask(TEST[0]) and test.load_mask(TEST[0]) is None
    for path in (cityscapes / "gtFine" / "train").rglob("*.png"):
        path.unlink()
    assert not any(open_dataset("cityscapes", cityscapes, "train").has_mask(image_id) for image_id in TRAIN)


@pytest.mark.parametrize("method", ["random", "uniform"])
def test_select_on_cityscapes(cityscapes, tmp_path, method):
    out = tmp_path / "index.json"
    select.main(["--dataset", "cityscapes", "--data-root", str(cityscapes), "--method", method, "--budget", "2",
                 "--out", str(out)])
    labeled = json.loads(out.read_text())["labeled"]
    assert len(labeled) == 2 and set(labeled) <= set(TRAIN)
    if method == "uniform":
        assert labeled == ["aachen_000001_000019", "bochum_000000_000600"]


def mixed_label_files(root):
    gt_path(root, "train", TRAIN[0], "labelIds").rename(gt_path(root, "train", TRAIN[0], "labelTrainIds"))


@pytest.mark.parametrize(
    ("break_it", "split", "message"),
    [
        (lambda root: None, "training",
         "leftImg8bit/training: no such folder (layout: ROOT/leftImg8bit/<split>/<city>/"),
        (lambda root: (root / "leftImg8bit" / "train" / "aachen" / "aachen_000000_000019_leftImg8bit.png").rename(
            root / "leftImg8bit" / "train" / "aachen" / "aachen_000000_19.png"),
         "train",
         "aachen_000000_19.png: Cityscapes images are <city>/<city>_<seq>_<frame>_leftImg8bit.png"),
        (lambda root: (root / "leftImg8bit" / "train" / "bochum").rename(root / "leftImg8bit" / "train" / "Bochum"),
         "train",
         "Bochum/bochum_000000_000313_leftImg8bit.png: Cityscapes images are <city>/<city>_<seq>_<frame>"),
        (lambda root: [p.unlink() for p in (root / "leftImg8bit" / "val").rglob("*.png")], "val",
         "leftImg8bit/val: no images (<city>/*_leftImg8bit.png)"),
        (mixed_label_files, "train",
         "gtFine/train: aachen_000000_000019 has only _gtFine_labelTrainIds.png, aachen_000001_000019 only "
         "_gtFine_labelIds.png"),
    ],
)
def test_layout_errors_name_the_culprit(cityscapes, break_it, split, message):
    break_it(cityscapes)
    with pytest.raises(UserError, match=re.escape(message)):
        open_dataset("cityscapes", cityscapes, split)
