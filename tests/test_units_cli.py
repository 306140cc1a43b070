"""Patch and region units through the three scripts: select, train on partial labels, evaluate."""
import json

import numpy as np
import pytest
import torch

from conftest import fail, import_script
from lib.data import open_dataset
from lib.engine import LabeledCrops
from lib.units import Unit

train, select, evaluate = (import_script(f"{name}.py") for name in ("train", "select", "evaluate"))
CPU = ["--workers", "0", "--device", "cpu"]


def read(path):
    return json.loads(path.read_text())


def select_argv(pool, out, *extra):
    return ["--dataset", "synthetic", "--data-root", str(pool), "--seed", "3", "--out", str(out), *CPU, *extra]


def train_argv(pool, index, out):
    return ["--dataset", "synthetic", "--data-root", str(pool), "--index", str(index), "--out", str(out),
            "--arch", "tiny", "--epochs", "1", "--batch-size", "2", "--crop", "32x48", *CPU]


@pytest.fixture(scope="module")
def patch_cycle0(synthetic_pool, tmp_path_factory):
    """8 random cells of a 2x2 grid over the 12 images of 32x48, and a model trained on them."""
    folder = tmp_path_factory.mktemp("patch")
    select.main(select_argv(synthetic_pool, folder / "index.json", "--method", "random", "--unit", "patch",
                            "--grid", "2x2", "--budget", "8"))
    train.main(train_argv(synthetic_pool, folder / "index.json", folder / "model.pt"))
    return folder


def test_patch_experiment_through_the_three_scripts(synthetic_pool, patch_cycle0, tmp_path):
    index = read(patch_cycle0 / "index.json")
    assert index["unit"] == {"type": "patch", "grid": [2, 2]} and len(index["labeled"]) == 8
    trained_on = torch.load(patch_cycle0 / "model.pt", weights_only=True)["index"]
    assert trained_on["labeled_fraction"] == pytest.approx(8 / 48)
    assert trained_on["labeled_pixel_fraction"] == pytest.approx(8 / 48)  # equal cells: 16x24 each
    assert trained_on["labeled_images"] == len({item.split("#")[0] for item in index["labeled"]})

    # 12.5 % of the pool's pixels are 6 cells of 16x24; the unit comes from the index.
    argv = select_argv(synthetic_pool, tmp_path / "next.json", "--method", "entropy", "--index",
                       str(patch_cycle0 / "index.json"), "--checkpoint", str(patch_cycle0 / "model.pt"),
                       "--budget", "12.5%px", "--scores-out", str(tmp_path / "scores.json"))
    select.main(argv)
    history = read(tmp_path / "next.json")["history"][-1]
    scores = read(tmp_path / "scores.json")["scores"]
    assert len(scores) == 48 - 8 and not set(scores) & set(index["labeled"])
    assert history["added"] == sorted(scores, key=lambda item: (-scores[item], item))[:6]

    evaluate.main(["--checkpoint", str(patch_cycle0 / "model.pt"), "--data-root", str(synthetic_pool),
                   "--out", str(tmp_path / "metrics.json"), *CPU])
    metrics = read(tmp_path / "metrics.json")
    assert metrics["labeled_pixel_fraction"] == pytest.approx(8 / 48) and metrics["unit"]["type"] == "patch"


def test_partially_labeled_images_train_only_on_their_labeled_cells(synthetic_pool):
    dataset = open_dataset("synthetic", synthetic_pool, "train")
    image_id = dataset.ids[0]
    unit = Unit("patch", (2, 2))
    crops = LabeledCrops(dataset, unit, {image_id: [f"{image_id}#r0c1", f"{image_id}#r1c0"]}, (32, 48),
                         False, 0, [0, 0, 0], [1, 1, 1])
    _, mask = crops[0, 0]  # [32, 48], a full-image crop without flips
    full = torch.from_numpy(dataset.load_mask(image_id)).long()
    labeled = torch.zeros(32, 48, dtype=torch.bool)
    labeled[:16, 24:] = labeled[16:, :24] = True
    assert torch.equal(mask[labeled], full[labeled])
    assert (mask[~labeled] == 255).all()


def test_region_experiment_never_labels_a_pixel_twice(synthetic_pool, tmp_path):
    # 16x16 regions on 32x48 images: a 2x3 tiling, 72 regions in the pool.
    select.main(select_argv(synthetic_pool, tmp_path / "cycle0.json", "--method", "random", "--unit", "region",
                            "--region-size", "16", "--budget", "10"))
    train.main(train_argv(synthetic_pool, tmp_path / "cycle0.json", tmp_path / "model.pt"))
    trained_on = torch.load(tmp_path / "model.pt", weights_only=True)["index"]
    assert trained_on["labeled_fraction"] == trained_on["labeled_pixel_fraction"] == pytest.approx(10 / 72)

    # Windows every 8 pixels overlap; per-image ranking takes at most 2 of every image, by default for all.
    select.main(select_argv(synthetic_pool, tmp_path / "cycle1.json", "--method", "entropy", "--index",
                            str(tmp_path / "cycle0.json"), "--checkpoint", str(tmp_path / "model.pt"),
                            "--region-stride", "8", "--region-ranking", "per-image", "--regions-per-image", "2"))
    index = read(tmp_path / "cycle1.json")
    entry = index["history"][-1]
    assert entry["region_ranking"] == "per-image" and entry["regions_per_image"] == 2 and entry["region_stride"] == 8
    assert entry["budget"] == "24" and len(entry["added"]) == 24
    coverage = {}
    for item in index["labeled"]:
        image_id, _, suffix = item.partition("#")
        top, left = map(int, suffix[1:].split("x"))
        area = coverage.setdefault(image_id, np.zeros((32, 48), dtype=int))
        area[top:top + 16, left:left + 16] += 1
    assert max(area.max() for area in coverage.values()) == 1
    per_image = [item.partition("#")[0] for item in entry["added"]]
    assert max(per_image.count(image_id) for image_id in set(per_image)) == 2


@pytest.mark.parametrize(("extra", "message"), [
    (["--method", "random", "--grid", "4x4", "--budget", "3"],
     "--grid describes --unit patch, but --unit is not given"),
    (["--method", "coreset", "--unit", "region", "--budget", "3", "--features", "f.npz"],
     "--method coreset picks image or patch units, not region 43px"),
    (["--method", "random", "--unit", "region", "--region-size", "16", "--budget", "10%"],
     "regions have no item count to take a share of"),
    (["--method", "random", "--unit", "patch", "--region-ranking", "per-image", "--budget", "3"],
     "--region-ranking per-image ranks regions, but the unit is patch 4x4"),
    (["--method", "random", "--unit", "region", "--region-size", "40", "--budget", "1"],
     "smaller than a 40x40 region: it could never be labeled"),
    (["--method", "random", "--unit", "patch"], "--budget is required"),
])
def test_unit_mistakes_are_one_line_errors(synthetic_pool, tmp_path, capsys, extra, message):
    err = fail(select, select_argv(synthetic_pool, tmp_path / "out.json", *extra), capsys)
    assert message in err
    assert not (tmp_path / "out.json").exists()


def test_later_cycles_cannot_change_the_unit(synthetic_pool, patch_cycle0, tmp_path, capsys):
    argv = select_argv(synthetic_pool, tmp_path / "out.json", "--method", "random", "--budget", "2", "--index",
                       str(patch_cycle0 / "index.json"), "--unit", "patch", "--grid", "4x4")
    assert "index unit is patch 2x2, expected patch 4x4" in fail(select, argv, capsys)


def test_random_images_takes_every_patch_of_whole_images(synthetic_pool, tmp_path, capsys):
    select.main(select_argv(synthetic_pool, tmp_path / "index.json", "--method", "random-images", "--unit", "patch",
                            "--grid", "2x2", "--budget", "8"))
    labeled = read(tmp_path / "index.json")["labeled"]
    images = sorted({item.partition("#")[0] for item in labeled})
    assert len(images) == 2
    assert sorted(labeled) == sorted(f"{i}#r{r}c{c}" for i in images for r in (0, 1) for c in (0, 1))
    err = fail(select, select_argv(synthetic_pool, tmp_path / "odd.json", "--method", "random-images",
                                   "--unit", "patch", "--grid", "2x2", "--budget", "6"), capsys)
    assert "the budget (6) must be a multiple of the 4 items of an image" in err
