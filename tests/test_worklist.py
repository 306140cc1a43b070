"""The annotators' worklist (`select.py --export`) and the round trip back through train.py."""
import csv
import json
import shutil

import numpy as np
import pytest
import torch
from conftest import fail, import_script
from PIL import Image

from lib.data import open_dataset
from lib.data.base import read_label
from lib.engine import LabeledCrops
from lib.errors import UserError
from lib.index import load_index
from lib.training_set import labeled_items
from lib.units import Box, Unit
from lib.worklist import MARGIN, OUTLINE, write_worklist

train, select = import_script("train.py"), import_script("select.py")
CPU = ["--workers", "0", "--device", "cpu"]
MAGENTA, BLACK = OUTLINE[0], OUTLINE[-1]


@pytest.fixture(scope="module")
def dataset(synthetic_pool):
    return open_dataset("synthetic", synthetic_pool, "train")


def read_rows(folder):
    with open(folder / "worklist.csv", newline="") as handle:
        return list(csv.DictReader(handle))


def png(path):
    return np.array(Image.open(path))


def row_box(row):
    return Box(int(row["top"]), int(row["left"]), int(row["bottom"]), int(row["right"]))


def box_area(box, distance=0, margin=0):
    """[32 + 2 margin, 48 + 2 margin] bool: `box` of a 32x48 image on a `margin`, grown by `distance` on every side."""
    area = np.zeros((32 + 2 * margin, 48 + 2 * margin), dtype=bool)
    area[box.top + margin - distance:box.bottom + margin + distance,
         box.left + margin - distance:box.right + margin + distance] = True
    return area


def check_outlined(preview, image, box):
    """`preview` is `image` on a white margin with `box` ringed in magenta, then black, on every side."""
    assert preview.shape == (32 + 2 * MARGIN, 48 + 2 * MARGIN, 3)
    inside, band, ring = (box_area(box, distance, MARGIN) for distance in (0, 2, 3))
    assert (preview[band & ~inside] == MAGENTA).all() and (preview[ring & ~band] == BLACK).all()
    framed = np.full_like(preview, 255)
    framed[MARGIN:-MARGIN, MARGIN:-MARGIN] = image
    untouched = ~ring | inside
    assert np.array_equal(preview[untouched], framed[untouched])


def test_image_units_outline_whole_images_and_name_their_mask_files(dataset, synthetic_pool, tmp_path):
    ids = dataset.ids[:3]
    write_worklist(tmp_path / "work", dataset, Unit(), ids, None, "random", 0)
    with open(tmp_path / "work" / "worklist.csv") as handle:
        assert handle.readline() == ("rank,id,image,top,left,bottom,right,score,method,cycle,preview,mask,"
                                     "save_label_as\n")
    rows = read_rows(tmp_path / "work")
    assert [row["id"] for row in rows] == ids and [row["rank"] for row in rows] == ["1", "2", "3"]
    for row in rows:
        assert row["image"] == str(dataset.image_path(row["id"]).resolve())
        assert row["save_label_as"] == str((synthetic_pool / "train" / "masks" / f"{row['id']}.png").resolve())
        assert row_box(row) == Box(0, 0, 32, 48)
        assert (row["score"], row["method"], row["cycle"], row["mask"]) == ("", "random", "0", "")
        check_outlined(png(tmp_path / "work" / row["preview"]), dataset.load_image(row["id"]), Box(0, 0, 32, 48))
    assert sorted(p.name for p in (tmp_path / "work").iterdir()) == [".al-seg.json", "previews", "worklist.csv"]


def test_patch_units_outline_the_cell_and_mask_it(dataset, tmp_path):
    first, second = dataset.ids[:2]
    ids = [f"{first}#r1c0", f"{second}#r0c1", f"{first}#r0c1"]
    scores = {ids[0]: 0.75, ids[1]: 0.5, ids[2]: 0.125}
    write_worklist(tmp_path / "work", dataset, Unit("patch", (2, 2)), ids, scores, "entropy", 3)
    rows = read_rows(tmp_path / "work")
    assert [(row["id"], row["score"], row["cycle"]) for row in rows] == [(i, str(scores[i]), "3") for i in ids]
    assert [row_box(row) for row in rows] == [Box(16, 0, 32, 24), Box(0, 24, 16, 48), Box(0, 24, 16, 48)]
    assert rows[0]["preview"] == f"previews/{first}%23r1c0.png" and rows[0]["mask"] == f"masks/{first}%23r1c0.png"
    assert rows[0]["save_label_as"] == rows[2]["save_label_as"] != rows[1]["save_label_as"]  # one mask per image
    for row in rows:
        box, image = row_box(row), dataset.load_image(row["id"].partition("#")[0])  # [32, 48, 3]
        check_outlined(png(tmp_path / "work" / row["preview"]), image, box)  # a cell at the border too
        mask = Image.open(tmp_path / "work" / row["mask"])
        assert mask.mode == "L" and np.array_equal(np.array(mask), np.where(box_area(box), 255, 0))


def test_region_units_are_outlined_on_every_side(dataset, tmp_path):
    item = f"{dataset.ids[4]}#y8x16"
    write_worklist(tmp_path / "work", dataset, Unit("region", size=16), [item], {item: 2.0}, "entropy", 1)
    (row,) = read_rows(tmp_path / "work")
    assert row_box(row) == Box(8, 16, 24, 32) and row["score"] == "2.0"
    check_outlined(png(tmp_path / "work" / row["preview"]), dataset.load_image(dataset.ids[4]), row_box(row))
    assert np.array_equal(png(tmp_path / "work" / row["mask"]) > 0, box_area(Box(8, 16, 24, 32)))


def test_a_new_export_replaces_the_old_folder_completely(dataset, tmp_path):
    patches = [f"{dataset.ids[0]}#r0c0", f"{dataset.ids[1]}#r1c1"]
    write_worklist(tmp_path / "work", dataset, Unit("patch", (2, 2)), patches, None, "random", 0)
    write_worklist(tmp_path / "work", dataset, Unit(), dataset.ids[5:6], None, "random", 1)
    assert [row["id"] for row in read_rows(tmp_path / "work")] == dataset.ids[5:6]
    assert sorted(p.name for p in (tmp_path / "work").iterdir()) == [".al-seg.json", "previews", "worklist.csv"]
    assert [p.name for p in (tmp_path / "work" / "previews").iterdir()] == [f"{dataset.ids[5]}.png"]
    assert [p.name for p in tmp_path.iterdir()] == ["work"]  # no temporary or old folder left behind


def test_a_failed_export_leaves_the_old_folder_and_nothing_else(dataset, tmp_path, monkeypatch):
    write_worklist(tmp_path / "work", dataset, Unit(), dataset.ids[:1], None, "random", 0)
    before = (tmp_path / "work" / "worklist.csv").read_text()

    def broken(image_id):
        raise UserError(f"{image_id}: cannot decode image")

    monkeypatch.setattr(dataset, "load_image", broken)
    with pytest.raises(UserError, match="cannot decode"):
        write_worklist(tmp_path / "work", dataset, Unit(), dataset.ids[1:3], None, "random", 1)
    assert (tmp_path / "work" / "worklist.csv").read_text() == before
    assert [p.name for p in tmp_path.iterdir()] == ["work"]


def test_a_missing_parent_folder_is_an_error_before_any_work(dataset, synthetic_pool, tmp_path, capsys):
    with pytest.raises(UserError, match="^[^\n]*missing/work[^\n]*missing does not exist$"):
        write_worklist(tmp_path / "missing" / "work", dataset, Unit(), dataset.ids[:1], None, "random", 0)
    argv = ["--dataset", "synthetic", "--data-root", str(synthetic_pool), "--method", "random", "--budget", "2",
            "--out", str(tmp_path / "index.json"), "--export", str(tmp_path / "missing" / "work"), *CPU]
    assert f"--export {tmp_path / 'missing' / 'work'}: folder" in fail(select, argv, capsys)
    assert list(tmp_path.iterdir()) == []


def test_select_writes_no_index_when_the_export_fails(synthetic_pool, tmp_path, monkeypatch):
    def broken(folder, *_):
        raise UserError(f"{folder}: disk full")

    monkeypatch.setattr(select, "write_worklist", broken)
    argv = ["--dataset", "synthetic", "--data-root", str(synthetic_pool), "--method", "random", "--budget", "2",
            "--out", str(tmp_path / "index.json"), "--export", str(tmp_path / "work"), *CPU]
    with pytest.raises(UserError, match="disk full"):
        select.main(argv)
    assert not (tmp_path / "index.json").exists()


@pytest.fixture()
def unlabeled_pool(synthetic_pool, tmp_path):
    """The synthetic train images as a `folder` pool without a single mask."""
    root = tmp_path / "pool"
    (root / "train").mkdir(parents=True)
    shutil.copy(synthetic_pool / "classes.json", root / "classes.json")
    shutil.copytree(synthetic_pool / "train" / "images", root / "train" / "images")
    return root


def test_annotation_round_trip_trains_on_the_selected_patches_only(synthetic_pool, unlabeled_pool, tmp_path, capsys):
    index, work = tmp_path / "index.json", tmp_path / "work"
    select.main(["--dataset", "folder", "--data-root", str(unlabeled_pool), "--method", "random", "--unit", "patch",
                 "--grid", "2x2", "--budget", "4", "--seed", "3", "--out", str(index), "--export", str(work), *CPU])
    rows = read_rows(work)
    assert [row["id"] for row in rows] == json.loads(index.read_text())["history"][-1]["added"]
    images = sorted({row["id"].partition("#")[0] for row in rows})
    assert len(images) >= 2  # train.py needs two labeled images

    train_argv = ["--dataset", "folder", "--data-root", str(unlabeled_pool), "--index", str(index),
                  "--out", str(tmp_path / "model.pt"), "--arch", "tiny", "--epochs", "1", "--batch-size", "2",
                  "--crop", "32x48", *CPU]
    err = fail(train, train_argv, capsys)
    assert f"{len(images)} labeled images have no mask file" in err and all(image in err for image in images)

    # Annotators label the area of each worklist mask, saved where the worklist says; we make every other pixel
    # wrong on purpose.
    num_classes = len(json.loads((unlabeled_pool / "classes.json").read_text()))
    (unlabeled_pool / "train" / "masks").mkdir()
    selected = {image: np.zeros((32, 48), dtype=bool) for image in images}
    save_as = {row["id"].partition("#")[0]: row["save_label_as"] for row in rows}
    for row in rows:
        selected[row["id"].partition("#")[0]] |= png(work / row["mask"]) == 255
    truth = {image: read_label(synthetic_pool / "train" / "masks" / f"{image}.png") for image in images}
    for image in images:
        assert save_as[image] == str((unlabeled_pool / "train" / "masks" / f"{image}.png").resolve())
        annotation = np.where(selected[image], truth[image], (truth[image] + 1) % num_classes).astype(np.uint8)
        Image.fromarray(annotation).save(save_as[image])

    train.main(train_argv)
    assert torch.load(tmp_path / "model.pt", weights_only=True)["index"]["labeled_images"] == len(images)

    dataset = open_dataset("folder", unlabeled_pool, "train")
    labeled = labeled_items(str(index), load_index(index, dataset.ids, dataset="folder"), dataset)
    crops = LabeledCrops(dataset, Unit("patch", (2, 2)), labeled, (32, 48), False, 0, [0, 0, 0], [1, 1, 1])
    for i, image in enumerate(crops.ids):
        _, target = crops[0, i]  # [32, 48]: a whole-image crop without flips
        assert np.array_equal(target.numpy(), np.where(selected[image], truth[image], 255))
