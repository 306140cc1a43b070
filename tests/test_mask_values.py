"""Masks stored with other values than class ids: a `folder` classes.json that maps them, and the check of train.py
and evaluate.py that a class occurs and a split is not all ignore (lib.label_stats)."""
import json

import numpy as np
import pytest
from PIL import Image

from conftest import fail, import_script
from lib.data import open_dataset
from lib.errors import UserError

train, select, evaluate = import_script("train.py"), import_script("select.py"), import_script("evaluate.py")
CPU = ["--workers", "0", "--device", "cpu"]
LESION = ["background", "lesion"]
MAPPED = {"classes": LESION, "mask_values": {"0": "background", "255": "lesion"}}


def lesion_mask(seed, foreground=255):
    """[16, 16] uint8: 0 with a square of `foreground` somewhere, as a binary export stores a lesion."""
    top, left = np.random.default_rng(seed).integers(0, 10, size=2)
    mask = np.zeros((16, 16), np.uint8)
    mask[top:top + 6, left:left + 6] = foreground
    return mask


def write_pool(root, classes, masks):
    """A `folder` layout: classes.json, and per split {id: [16, 16] mask} with an image that shows the mask."""
    root.mkdir()
    (root / "classes.json").write_text(json.dumps(classes))
    for split, by_id in masks.items():
        for kind in ("images", "masks"):
            (root / split / kind).mkdir(parents=True)
        for image_id, mask in by_id.items():
            Image.fromarray(np.repeat(mask[..., None], 3, axis=2)).save(root / split / "images" / f"{image_id}.png")
            Image.fromarray(mask).save(root / split / "masks" / f"{image_id}.png")
    return root


def binary_pool(root, classes, train_mask=lesion_mask, val_mask=lesion_mask):
    """4 train and 2 val images; `*_mask(seed)` -> the mask of each."""
    return write_pool(root, classes, {"train": {f"t{i}": train_mask(i) for i in range(4)},
                                      "val": {f"v{i}": val_mask(10 + i) for i in range(2)}})


def train_on(root, tmp_path):
    data = ["--dataset", "folder", "--data-root", str(root)]
    select.main([*data, "--method", "random", "--budget", "4", "--out", str(tmp_path / "index.json")])
    train.main([*data, "--index", str(tmp_path / "index.json"), "--out", str(tmp_path / "model.pt"), "--arch", "tiny",
                "--epochs", "1", "--batch-size", "2", "--crop", "16x16", *CPU])


def truth_predictions(root, folder):
    """One PNG per val image: its mask as class ids, the prediction of a perfect model."""
    folder.mkdir()
    dataset = open_dataset("folder", root, "val")
    for image_id in dataset.ids:
        Image.fromarray(np.asarray(dataset.load_mask(image_id))).save(folder / f"{image_id}.png")
    return folder


def evaluate_predictions(root, tmp_path):
    out = tmp_path / "metrics.json"
    evaluate.main(["--predictions", str(truth_predictions(root, tmp_path / "preds")), "--dataset", "folder",
                   "--data-root", str(root), "--out", str(out), *CPU])
    return json.loads(out.read_text())


def warnings(err):
    """The warnings of lib.label_stats (training may add others, of its result)."""
    return [line for line in err.splitlines() if line.startswith("warning:") and "never occurs" in line]


def test_unmapped_binary_masks_warn_that_the_foreground_never_occurs(tmp_path, capsys):
    root = binary_pool(tmp_path / "pool", LESION)
    train_on(root, tmp_path)
    (line,) = warnings(capsys.readouterr().err)
    assert line.startswith(f"warning: {tmp_path / 'index.json'}: class 1 'lesion' never occurs in its labeled items")
    assert "4 masks read; values stored: 0, 255" in line and str(root / "classes.json") in line


def test_mapped_binary_masks_are_learnt_and_scored(tmp_path, capsys):
    root = binary_pool(tmp_path / "pool", MAPPED)
    train_on(root, tmp_path)
    record = evaluate_predictions(root, tmp_path)
    assert warnings(capsys.readouterr().err) == []
    assert record["per_class_iou"]["lesion"] == 1.0 and record["miou"] == 1.0
    assert record["confusion"][1][1] == sum(int((lesion_mask(10 + i) == 255).sum()) for i in range(2))


def test_a_class_that_never_occurs_is_named(tmp_path, capsys):
    root = binary_pool(tmp_path / "pool", ["road", "car", "sky"], val_mask=lambda seed: lesion_mask(seed, 1))
    evaluate_predictions(root, tmp_path)
    (line,) = warnings(capsys.readouterr().err)
    # No 255 stored: no hint to map it.
    assert line == f"warning: {root}: class 2 'sky' never occurs in split 'val' (2 masks read; values stored: 0, 1)"


def all_ignore(seed):
    return np.full((16, 16), 255, np.uint8)


def test_training_on_masks_of_nothing_but_ignore_is_refused(tmp_path, capsys):
    root = binary_pool(tmp_path / "pool", LESION, train_mask=all_ignore)
    data = ["--dataset", "folder", "--data-root", str(root)]
    select.main([*data, "--method", "random", "--budget", "4", "--out", str(tmp_path / "index.json")])
    capsys.readouterr()
    err = fail(train, [*data, "--index", str(tmp_path / "index.json"), "--out", str(tmp_path / "model.pt"),
                       "--arch", "tiny", "--epochs", "1", *CPU], capsys)
    assert err.startswith(f"error: {tmp_path / 'index.json'}: every mask pixel of its labeled items of split 'train' "
                          "is ignore (255): nothing to learn (4 masks read; values stored: 255); 255 is read as ignore")
    assert not (tmp_path / "model.pt").exists()


def background_predictions(folder):
    """Class 0 at every pixel of v0 and v1."""
    folder.mkdir()
    for image_id in ("v0", "v1"):
        Image.fromarray(np.zeros((16, 16), np.uint8)).save(folder / f"{image_id}.png")
    return folder


def test_evaluating_masks_of_nothing_but_ignore_is_refused(tmp_path, capsys):
    root = binary_pool(tmp_path / "pool", LESION, val_mask=all_ignore)
    preds = background_predictions(tmp_path / "preds")
    err = fail(evaluate, ["--predictions", str(preds), "--dataset", "folder", "--data-root", str(root), *CPU], capsys)
    assert err.startswith(f"error: {root}: every mask pixel of split 'val' is ignore (255): nothing to evaluate")


@pytest.mark.parametrize("content, message", [
    ("lesion", "expected a JSON list of at least two class names, or an object"),
    ({"classes": LESION, "mask_value": {"0": "background"}}, "unknown key 'mask_value'"),
    ({"mask_values": {"0": "background"}}, 'no "classes"'),
    ({"classes": ["lesion"], "mask_values": {"0": "lesion"}}, "expected a JSON list of at least two class names"),
    ({"classes": LESION, "mask_values": ["background", "lesion"]}, '"mask_values" must be an object'),
    ({"classes": LESION, "mask_values": {}}, '"mask_values" must be an object'),
    ({"classes": LESION, "mask_values": {"0": "background", "256": "lesion"}}, "mask_values key '256' is not a mask"),
    ({"classes": LESION, "mask_values": {"0": "background", "-1": "lesion"}}, "mask_values key '-1' is not a mask"),
    ({"classes": LESION, "mask_values": {"00": "background", "1": "lesion"}}, "mask_values key '00' is not a mask"),
    ({"classes": LESION, "mask_values": {"0": "background", "255": "lesoin"}},
     "mask_values maps 255 to 'lesoin', which is not in \"classes\" (map it to one of background, lesion, or to null"),
    ({"classes": LESION, "mask_values": {"0": "background", "255": 1}}, "mask_values maps 255 to 1, which is not"),
    ({"classes": LESION, "mask_values": {"0": "background", "255": None}}, "no mask value maps to class 'lesion'"),
])
def test_bad_class_files_are_one_line_each(tmp_path, content, message):
    root = binary_pool(tmp_path / "pool", content)
    with pytest.raises(UserError) as error:
        open_dataset("folder", root, "train")
    assert str(error.value).startswith(f"{root / 'classes.json'}: {message}") and "\n" not in str(error.value)


def test_a_value_the_mapping_leaves_out_names_the_file_and_the_value(tmp_path, capsys):
    root = binary_pool(tmp_path / "pool", MAPPED, val_mask=lambda seed: lesion_mask(seed, 17))
    preds = background_predictions(tmp_path / "preds")
    err = fail(evaluate, ["--predictions", str(preds), "--dataset", "folder", "--data-root", str(root), *CPU], capsys)
    assert err == (f"error: {root / 'val/masks/v0.png'}: value 17 is not in {root / 'classes.json'}'s mask_values "
                   "(map it to a class, or to null to ignore it)\n")


def test_null_ignores_a_value(tmp_path):
    root = binary_pool(tmp_path / "pool", {"classes": LESION, "mask_values": {"0": "background", "255": "lesion",
                                                                               "17": None}},
                       train_mask=lambda seed: lesion_mask(seed, 17))
    mask = open_dataset("folder", root, "train").load_mask("t0")
    assert set(np.unique(mask)) == {0, 255} and ((mask == 255) == (lesion_mask(0) == 255)).all()


def test_a_changed_mapping_decodes_cached_masks_again(tmp_path):
    root = binary_pool(tmp_path / "pool", MAPPED)
    cache, masks = tmp_path / "cache", tmp_path / "cache/folder/train/masks"
    first = open_dataset("folder", root, "train", cache).load_mask("t0")
    assert ((first == 1) == (lesion_mask(0) == 255)).all()
    swapped = {"classes": LESION, "mask_values": {"0": "lesion", "255": "background"}}
    (root / "classes.json").write_text(json.dumps(swapped))  # same class count: only the mapping tells them apart
    second = open_dataset("folder", root, "train", cache).load_mask("t0")
    assert (second == 1 - first).all()
    assert len(list(masks.iterdir())) == 1  # the entry of the old mapping is gone
    (root / "classes.json").write_text(json.dumps(LESION))  # no mapping: values are class ids, 255 ignore
    assert set(np.unique(open_dataset("folder", root, "train", cache).load_mask("t0"))) == {0, 255}
