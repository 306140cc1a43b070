"""--resize / --scale (lib.data.resolution) and train.py --random-scale."""
import json
import random

import numpy as np
import pytest
from PIL import Image

from conftest import fail, import_script
from lib.data import open_dataset
from lib.data.base import IGNORE_INDEX, read_label, read_rgb
from lib.data.resolution import Resolution
from lib.data.transforms import RandomScale, random_rescale
from lib.engine import LabeledCrops
from lib.errors import UserError
from lib.index import LabeledIndex, Unit, save_index

train, select, evaluate = import_script("train.py"), import_script("select.py"), import_script("evaluate.py")
RUNTIME = ["--workers", "0", "--device", "cpu"]
HALF = Resolution.from_flags(scale="1/2")


def data_flags(pool):
    return ["--dataset", "synthetic", "--data-root", str(pool)]


def read(path):
    return json.loads(path.read_text())


@pytest.mark.parametrize(("resolution", "size"), [(Resolution.from_flags(resize=(20, 30)), (20, 30)),
                                                  (HALF, (16, 24)),
                                                  (Resolution.from_flags(scale="1/3"), (10, 16))])  # floor(32/3)
def test_images_are_resized_bilinearly_and_masks_keep_their_values(synthetic_pool, resolution, size):
    native = open_dataset("synthetic", synthetic_pool, "train")
    resized = open_dataset("synthetic", synthetic_pool, "train", resolution=resolution)
    for image_id in resized.ids[:3]:
        image, mask = resized.load_pair(image_id)
        assert image.shape == (*size, 3) and mask.shape == size == resized.image_size(image_id)
        source = Image.open(native.image_path(image_id)).convert("RGB")
        assert (image == np.asarray(source.resize(size[::-1], Image.BILINEAR))).all()
        assert set(np.unique(mask)) <= set(np.unique(native.load_mask(image_id)))
        assert (mask == np.asarray(Image.fromarray(native.load_mask(image_id)).resize(size[::-1], Image.NEAREST))).all()


def test_scale_one_is_the_files_resolution():
    assert Resolution.from_flags(scale="1") == Resolution() and Resolution().native


def test_image_size_reads_headers_only(synthetic_pool, monkeypatch):
    dataset = open_dataset("synthetic", synthetic_pool, "train", resolution=Resolution.from_flags(resize=(7, 9)))
    monkeypatch.setattr(dataset, "_read_image", lambda path: pytest.fail("image_size decoded an image"))
    assert {dataset.image_size(image_id) for image_id in dataset.ids} == {(7, 9)}


def test_a_mask_of_another_size_than_its_image_is_refused_when_resized(tmp_path):
    for folder in ("images", "masks"):
        (tmp_path / "train" / folder).mkdir(parents=True)
    Image.fromarray(np.zeros((8, 12, 3), np.uint8)).save(tmp_path / "train/images/a.png")
    Image.fromarray(np.zeros((4, 6), np.uint8)).save(tmp_path / "train/masks/a.png")
    (tmp_path / "classes.json").write_text('["x", "y"]')
    dataset = open_dataset("folder", tmp_path, "train", resolution=Resolution.from_flags(resize=(4, 4)))
    with pytest.raises(UserError, match="mask is 6x4 but its image is 12x8"):
        dataset.load_pair("a")


def test_the_cache_serves_an_entry_at_its_own_resolution_only(synthetic_pool, tmp_path):
    cache = tmp_path / "cache"
    image_id = open_dataset("synthetic", synthetic_pool, "train").ids[0]
    for resolution, size in ((Resolution(), (32, 48)), (HALF, (16, 24))) * 2:  # the second round from the cache
        dataset = open_dataset("synthetic", synthetic_pool, "train", cache, resolution)
        image, mask = dataset.load_pair(image_id)
        assert image.shape == (*size, 3) and mask.shape == size
        assert (image == resolution.image(read_rgb(dataset.image_path(image_id)))).all()
    assert isinstance(image, np.memmap) and isinstance(mask, np.memmap)
    names = sorted(path.name for path in (cache / "synthetic/train/images").iterdir())
    assert len(names) == 2 and sum(name.endswith("-s1_2.npy") for name in names) == 1  # both kept side by side


def test_random_scale_draws_in_its_range_or_on_its_steps():
    uniform, steps = RandomScale(0.5, 2.0), RandomScale(0.5, 1.6, 0.1)
    rng = random.Random(0)
    assert all(0.5 <= uniform.draw(rng) <= 2.0 for _ in range(200))
    drawn = {round(steps.draw(rng), 6) for _ in range(500)}
    assert drawn == {round(0.5 + k / 10, 6) for k in range(12)}  # the study's 12 scales 0.5 .. 1.6


def test_random_rescale_resizes_both_and_keeps_the_mask_values():
    image = np.random.default_rng(0).integers(0, 255, (30, 40, 3), dtype=np.uint8)
    mask = np.tile(np.array([0, 3, IGNORE_INDEX], np.uint8), (30, 14))[:, :40]
    for seed in range(20):
        out_image, out_mask = random_rescale(image, mask, RandomScale(0.5, 2.0), random.Random(seed))
        height, width = out_mask.shape
        assert out_image.shape[:2] == out_mask.shape and 15 <= height <= 60 and 20 <= width <= 80
        assert set(np.unique(out_mask)) <= {0, 3, IGNORE_INDEX}


def test_random_scale_is_drawn_per_seed_epoch_and_sample(synthetic_pool):
    dataset = open_dataset("synthetic", synthetic_pool, "train")
    items = {image_id: [image_id] for image_id in dataset.ids[:4]}

    def samples(seed, epoch):
        crops = LabeledCrops(dataset, Unit(), items, (64, 96), False, seed, [0, 0, 0], [1, 1, 1],
                             RandomScale(0.5, 2.0))
        # The crop is larger than any scaled image but the largest: the rest is padding, ignored.
        return [crops[epoch, i][1] for i in range(len(items))]

    first = samples(3, 1)
    assert all((a == b).all() for a, b in zip(first, samples(3, 1)))
    labeled = [tuple((mask != IGNORE_INDEX).sum(dim=d).max().item() for d in (0, 1)) for mask in first]
    assert len(set(labeled)) > 1  # each sample its own factor
    assert all(16 <= height <= 64 and 24 <= width <= 96 for height, width in labeled)
    assert any((a != b).any() for a, b in zip(first, samples(3, 2)))
    assert any((a != b).any() for a, b in zip(first, samples(4, 1)))


@pytest.fixture(scope="module")
def half_model(synthetic_pool, tmp_path_factory):
    """A tiny model trained with --scale 1/2 and --random-scale on 4 images."""
    folder = tmp_path_factory.mktemp("half")
    ids = open_dataset("synthetic", synthetic_pool, "train").ids
    save_index(folder / "index.json", LabeledIndex("synthetic", "train", Unit(), len(ids)).with_cycle(
        "random", 0, "4", ids[:4]))
    train.main([*data_flags(synthetic_pool), "--index", str(folder / "index.json"), "--out", str(folder / "model.pt"),
                "--arch", "tiny", "--epochs", "1", "--batch-size", "2", "--crop", "16x16", "--scale", "0.5",
                "--random-scale", "0.75,1.25", *RUNTIME])
    return folder


def test_evaluate_defaults_to_the_training_resolution_and_takes_another(synthetic_pool, half_model, tmp_path, capsys):
    common = ["--checkpoint", str(half_model / "model.pt"), "--data-root", str(synthetic_pool), *RUNTIME]
    evaluate.main([*common, "--out", str(tmp_path / "half.json")])
    assert read(tmp_path / "half.json")["resolution"] == {"scale": "1/2"}
    assert "note:" not in capsys.readouterr().out
    evaluate.main([*common, "--scale", "1", "--out", str(tmp_path / "full.json")])
    assert read(tmp_path / "full.json")["resolution"] is None
    assert "note: evaluating at the files' resolution a model trained at --scale 1/2" in capsys.readouterr().out


def test_select_defaults_to_the_training_resolution_and_refuses_another(synthetic_pool, half_model, tmp_path, capsys):
    argv = [*data_flags(synthetic_pool), "--index", str(half_model / "index.json"), "--checkpoint",
            str(half_model / "model.pt"), "--method", "entropy", "--budget", "2", *RUNTIME]
    select.main([*argv, "--out", str(tmp_path / "next.json")])
    assert read(tmp_path / "next.json")["history"][-1]["resolution"] == {"scale": "1/2"}
    err = fail(select, [*argv, "--resize", "16x24", "--out", str(tmp_path / "other.json")], capsys)
    assert "model.pt: was trained on the images at --scale 1/2, not at --resize 16x24: give --scale 1/2" in err


def test_an_index_of_regions_keeps_the_resolution_its_regions_were_placed_at(synthetic_pool, tmp_path, capsys):
    cycle0 = tmp_path / "cycle0.json"
    select.main([*data_flags(synthetic_pool), "--method", "random", "--unit", "region", "--region-size", "8",
                 "--budget", "6", "--resize", "16x24", "--out", str(cycle0), *RUNTIME])
    assert read(cycle0)["history"][0]["resolution"] == {"resize": [16, 24]}
    # 16x24 holds 2x3 regions of 8: every labeled one lies inside it.
    assert all(int(i.split("#y")[1].split("x")[0]) <= 8 for i in read(cycle0)["labeled"])
    again = [*data_flags(synthetic_pool), "--index", str(cycle0), "--method", "random", "--budget", "2", *RUNTIME]
    select.main([*again, "--out", str(tmp_path / "cycle1.json")])  # no flag: the index's resolution
    assert read(tmp_path / "cycle1.json")["history"][1]["resolution"] == {"resize": [16, 24]}
    err = fail(select, [*again, "--scale", "1", "--out", str(tmp_path / "other.json")], capsys)
    assert "were placed on the images at --resize 16x24, not at the files' resolution: give --resize 16x24" in err
    err = fail(select, [*again, "--export", str(tmp_path / "worklist"), "--out", str(tmp_path / "other.json")], capsys)
    assert "a worklist is written at the files' resolution only" in err
    training = [*data_flags(synthetic_pool), "--index", str(cycle0), "--out", str(tmp_path / "model.pt"),
                "--arch", "tiny", "--epochs", "1", "--batch-size", "2", "--crop", "8x8", *RUNTIME]
    err = fail(train, training, capsys)
    assert "give --resize 16x24" in err
    train.main([*training, "--resize", "16x24"])
    assert (tmp_path / "model.pt").is_file()


@pytest.mark.parametrize(("argv", "message"), [
    (["--scale", "0"], "expected a factor in (0, 4]"),
    (["--scale", "1/0"], "expected a factor in (0, 4]"),
    (["--scale", "0.5", "--resize", "8x8"], "not allowed with argument"),
    (["--random-scale", "2,1"], "expected MIN,MAX or MIN,MAX,STEP"),
    (["--random-scale", "0.5,1.6,0.3"], "STEP must divide MAX - MIN"),
])
def test_bad_resolution_flags_are_one_error_line(synthetic_pool, tmp_path, capsys, argv, message):
    err = fail(train, [*data_flags(synthetic_pool), "--index", str(tmp_path / "i.json"), "--out",
                       str(tmp_path / "m.pt"), *argv], capsys)
    assert message in err


def test_a_damaged_record_of_the_resolution_is_refused(synthetic_pool, tmp_path, capsys):
    ids = open_dataset("synthetic", synthetic_pool, "train").ids
    index = LabeledIndex("synthetic", "train", Unit("patch", (2, 2)), len(ids)).with_cycle(
        "random", 0, "4", [f"{ids[0]}#r0c0"], {"resolution": {"scale": "-1"}})
    save_index(tmp_path / "index.json", index)
    err = fail(select, [*data_flags(synthetic_pool), "--index", str(tmp_path / "index.json"), "--method", "random",
                        "--budget", "1", "--out", str(tmp_path / "next.json"), *RUNTIME], capsys)
    assert "damaged record of the resolution" in err


def test_pseudo_labels_of_another_resolution_are_refused(synthetic_pool, tmp_path):
    from lib.semisup.unlabeled import UnlabeledCrops

    dataset = open_dataset("synthetic", synthetic_pool, "train", resolution=HALF)
    image_id = dataset.ids[0]
    Image.fromarray(np.zeros((32, 48), np.uint8)).save(tmp_path / "p.png")  # made at the files' resolution
    crops = UnlabeledCrops(dataset, Unit(), [image_id], {}, (8, 8), 0, [0, 0, 0], [1, 1, 1],
                           {image_id: tmp_path / "p.png"})
    with pytest.raises(UserError, match="pseudo label is 48x32 but its image is 24x16"):
        crops[(1, 0, 0)]  # (epoch, pass, index)
    assert read_label(tmp_path / "p.png").shape == (32, 48)
