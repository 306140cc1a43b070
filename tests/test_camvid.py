"""The CamVid loader on a fixture written in the SegNet layout and naming."""
import re

import numpy as np
import pytest
from PIL import Image

from conftest import check_new_mask_path, import_script
from lib.data import IGNORE_INDEX, Frame, open_dataset
from lib.errors import UserError

select = import_script("select.py")
TRAIN = ["0001TP_006690", "0001TP_006720", "0006R0_f02400", "Seq05VD_f00030"]


@pytest.fixture()
def camvid(tmp_path_factory):
    """4 train images (3 sequences, the file-name styles of the real set), 1 val image without labels."""
    root = tmp_path_factory.mktemp("camvid")  # apart from the outputs tests write to tmp_path
    rng = np.random.default_rng(0)
    for split, ids, labeled in (("train", TRAIN, True), ("val", ["0016E5_07959"], False)):
        (root / split).mkdir()
        (root / f"{split}annot").mkdir()
        for image_id in ids:
            Image.fromarray(rng.integers(0, 256, (6, 8, 3), dtype=np.uint8)).save(root / split / f"{image_id}.png")
            if labeled:
                mask = np.arange(48, dtype=np.uint8).reshape(6, 8) % 12  # 0..11, 11 = void
                Image.fromarray(mask, mode="L").save(root / f"{split}annot" / f"{image_id}.png")
    (root / "train.txt").write_text("/SegNet/CamVid/train/0001TP_006690.png /SegNet/CamVid/trainannot/x.png\n")
    return root


def test_ids_classes_and_frames(camvid):
    dataset = open_dataset("camvid", camvid, "train")
    assert dataset.ids == sorted(TRAIN) and dataset.num_classes == 11 and dataset.class_names[-1] == "bicyclist"
    assert dataset.frames["0001TP_006720"] == Frame("0001TP", 6720)
    assert dataset.frames["Seq05VD_f00030"] == Frame("Seq05VD", 30)


def test_void_becomes_ignore(camvid):
    image, mask = open_dataset("camvid", camvid, "train").load_pair("0001TP_006690")
    assert image.shape == (6, 8, 3) and mask.shape == (6, 8)
    expected = np.arange(48).reshape(6, 8) % 12
    assert (mask[expected == 11] == IGNORE_INDEX).all()
    assert (mask[expected < 11] == expected[expected < 11]).all()


def test_a_new_mask_goes_where_the_loader_reads_it(camvid):
    check_new_mask_path("camvid", camvid, "train")


def test_a_split_without_annotations_is_an_unlabeled_pool(camvid):
    dataset = open_dataset("camvid", camvid, "val")
    assert dataset.load_mask("0016E5_07959") is None and not dataset.has_mask("0016E5_07959")


def test_uniform_selection_reads_the_frames(camvid, tmp_path):
    out = tmp_path / "index.json"
    select.main(["--dataset", "camvid", "--data-root", str(camvid), "--method", "uniform", "--budget", "2",
                 "--out", str(out)])
    assert '"0001TP_006720"' in out.read_text() and '"Seq05VD_f00030"' in out.read_text()


@pytest.mark.parametrize(
    ("break_it", "message"),
    [
        (lambda root: (root / "train" / "0001TP_006690.png").rename(root / "train" / "frame.png"),
         "frame.png: CamVid file names are <sequence>_<frame>.png"),
        (lambda root: [p.unlink() for p in (root / "train").iterdir()], "train: no images (.png)"),
        (lambda root: (root / "train").rename(root / "training"),
         "train: no such folder (layout: ROOT/<split>/ and ROOT/<split>annot/ of CamVid)"),
    ],
)
def test_layout_errors_name_the_culprit(camvid, break_it, message):
    break_it(camvid)
    with pytest.raises(UserError, match=re.escape(message)):
        open_dataset("camvid", camvid, "train")
