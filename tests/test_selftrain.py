"""Self-training (train.py --ssl selftrain): pseudo labels, their cache, true labels first, strong augmentation."""
import json
import random

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import fail, import_script, run_loop, train_tiny_model
from lib.data import IGNORE_INDEX, open_dataset
from lib.data.base import read_label
from lib.losses import mean_cross_entropy
from lib.semisup import selftrain
from lib.semisup.augment import strong_augment
from lib.semisup.unlabeled import UnlabeledCrops
from lib.units import Unit

train, select = import_script("train.py"), import_script("select.py")


@pytest.fixture(scope="module")
def teacher(synthetic_pool, tmp_path_factory):
    return train_tiny_model(synthetic_pool, tmp_path_factory.mktemp("teacher"))


def test_only_confident_pixels_get_a_label():
    probs = torch.tensor([[0.9, 0.5, 0.6], [0.1, 0.5, 0.4]]).view(1, 2, 1, 3)  # [B, C, H, W]: 2 classes, 3 pixels
    assert selftrain.confident_labels(probs, 0.6).tolist() == [[[0, IGNORE_INDEX, 0]]]
    assert selftrain.confident_labels(probs, 0.7).tolist() == [[[0, IGNORE_INDEX, IGNORE_INDEX]]]


class WidthModel(torch.nn.Module):
    """Logits that tell the width of its input: class 0's is (width - 8) / 2, class 1's 0, everywhere."""

    def forward(self, images):  # [B, 3, H, W] -> [B, 2, H, W]
        logits = torch.zeros(len(images), 2, *images.shape[-2:])
        logits[:, 0] = (images.shape[-1] - 8) / 2
        return logits


def test_pseudo_labels_average_the_logits_of_the_rescaled_images():
    """S4AL+'s code: logits at scales 0.5, 1 and 2, averaged before the softmax (not the probabilities)."""
    images = torch.rand(1, 3, 6, 8)
    averaged = selftrain.scale_averaged_logits(WidthModel(), images, (0.5, 1.0, 2.0))  # widths 4, 8 and 16
    assert averaged.shape == (1, 2, 6, 8)
    assert torch.allclose(averaged[:, 0], torch.tensor((-2 + 0 + 4) / 3)) and (averaged[:, 1] == 0).all()
    # p(class 0) = sigmoid(2/3) = 0.66 from the mean logit; the mean of the three probabilities would be 0.53
    labels = selftrain.teacher_labels(WidthModel(), 0.6, (0.5, 1.0, 2.0), torch.device("cpu"), images)
    assert (labels == 0).all()
    alone = selftrain.teacher_labels(WidthModel(), 0.6, (1.0,), torch.device("cpu"), images)  # p = 0.5
    assert (alone == IGNORE_INDEX).all()


def pseudo_files(pool, teacher_path, folder, threshold, scales=(1.0,)):
    dataset = open_dataset("synthetic", pool, "train")
    return selftrain.pseudo_label_files(folder, teacher_path, threshold, dataset, dataset.ids[:5],
                                        torch.device("cpu"), 2, 0, scales=scales)


def blind_teacher(teacher, path, bias):
    """The teacher's checkpoint with a classifier that ignores its input: every pixel's class probabilities are
    softmax(`bias`), whatever the image."""
    checkpoint = torch.load(teacher / "model.pt", weights_only=True)
    checkpoint["model"]["decoder.classifier.weight"].zero_()
    checkpoint["model"]["decoder.classifier.bias"].copy_(torch.tensor(bias, dtype=torch.float32))
    torch.save(checkpoint, path)
    return path


def test_pseudo_labels_are_cached_until_the_teacher_or_threshold_changes(synthetic_pool, teacher, tmp_path,
                                                                         monkeypatch):
    sure = blind_teacher(teacher, tmp_path / "sure.pt", [0, 0, 0, 10, 0, 0, 0, 0])  # p(class 3) = 0.9997
    unsure = blind_teacher(teacher, tmp_path / "unsure.pt", [0] * 8)  # p = 1/8 for every class
    folder = tmp_path / "pseudo"
    paths = pseudo_files(synthetic_pool, sure, folder, threshold=0.99)
    assert all((read_label(path) == 3).all() and read_label(path).shape == (32, 48) for path in paths.values())
    loads = []
    monkeypatch.setattr(selftrain, "load_checkpoint", lambda path: loads.append(path) or fail_loudly())
    assert pseudo_files(synthetic_pool, sure, folder, threshold=0.99) == paths and not loads  # cached
    monkeypatch.undo()
    relabeled = pseudo_files(synthetic_pool, unsure, folder, threshold=0.99)  # another teacher
    assert all((read_label(path) == IGNORE_INDEX).all() for path in relabeled.values())
    relabeled = pseudo_files(synthetic_pool, unsure, folder, threshold=0.1)  # another threshold
    assert all((read_label(path) < 8).all() for path in relabeled.values())
    assert json.loads((folder / "pseudo.json").read_text())["threshold"] == 0.1
    assert "scales" not in json.loads((folder / "pseudo.json").read_text())  # the image alone, as before
    pseudo_files(synthetic_pool, unsure, folder, threshold=0.1, scales=(0.5, 1.0))  # other scales relabel
    assert json.loads((folder / "pseudo.json").read_text())["scales"] == [0.5, 1.0]


def fail_loudly():
    raise AssertionError("the teacher ran although its labels were cached")


def test_true_labels_win_over_pseudo_labels(synthetic_pool, teacher, tmp_path):
    dataset = open_dataset("synthetic", synthetic_pool, "train")
    image_id = dataset.ids[0]
    unit = Unit("patch", (2, 2))
    wrong = tmp_path / f"{image_id}.png"
    Image.fromarray(np.full((32, 48), 7, np.uint8)).save(wrong)  # a pseudo label that is class 7 everywhere
    crops = UnlabeledCrops(dataset, unit, [image_id], {image_id: [f"{image_id}#r0c1"]}, (32, 48), 0, (0, 0, 0),
                           (1, 1, 1), pseudo_paths={image_id: wrong})
    target, truth = crops.target(image_id, (32, 48)), dataset.load_mask(image_id)
    assert (target[:16, 24:] == truth[:16, 24:]).all()  # the labeled patch: the annotator's labels
    assert (target[16:] == 7).all() and (target[:16, :24] == 7).all()  # everywhere else: the teacher's


def test_strong_augmentation_is_seeded_and_ignores_what_it_cuts_out():
    image = np.random.default_rng(0).integers(0, 256, (40, 60, 3), dtype=np.uint8)
    target = np.ones((40, 60), np.uint8)
    views = [strong_augment(image, target, random.Random(seed)) for seed in ("a", "a", "b")]
    assert (views[0][0] == views[1][0]).all() and not (views[0][0] == views[2][0]).all()
    cut = [t == IGNORE_INDEX for _, t in (strong_augment(image, target, random.Random(s)) for s in range(20))]
    assert any(c.any() for c in cut) and all(c.sum() < target.size for c in cut)
    with_cutout = next(seed for seed in range(20) if cut[seed].any())
    hidden_image, hidden_target = strong_augment(image, target, random.Random(with_cutout))
    assert (hidden_image[hidden_target == IGNORE_INDEX] == 0).all()


def test_a_crop_without_a_confident_pixel_adds_no_loss():
    logits = torch.randn(2, 3, 4, 4)
    assert mean_cross_entropy(logits, torch.full((2, 4, 4), IGNORE_INDEX)).item() == 0
    masks = torch.randint(0, 3, (2, 4, 4))
    assert torch.isclose(mean_cross_entropy(logits, masks), torch.nn.functional.cross_entropy(logits, masks))


def test_selftrain_through_the_command_line(synthetic_pool, teacher, tmp_path, capsys):
    argv = ["--dataset", "synthetic", "--data-root", str(synthetic_pool), "--index", str(teacher / "index.json"),
            "--arch", "tiny", "--epochs", "1", "--batch-size", "2", "--crop", "32x48", "--workers", "0",
            "--device", "cpu", "--out", str(tmp_path / "student.pt")]
    train.main([*argv, "--ssl", "selftrain", "--teacher", str(teacher / "model.pt"), "-u", "3",
                "--pseudo-scales", "0.5,1,2"])
    assert "logits averaged at scales 0.5,1,2" in capsys.readouterr().out
    assert json.loads((tmp_path / "pseudo/pseudo.json").read_text())["scales"] == [0.5, 1.0, 2.0]
    student = torch.load(tmp_path / "student.pt", weights_only=True)
    assert student["model_args"]["mc_dropout"] and student["train_args"]["ssl"] == "selftrain"
    labeled = set(json.loads((teacher / "index.json").read_text())["labeled"])
    pseudo = {p.stem for p in (tmp_path / "pseudo").glob("*.png")}
    assert pseudo == set(open_dataset("synthetic", synthetic_pool, "train").ids) - labeled
    assert "--teacher labels unlabeled pixels for --ssl selftrain" in fail(
        train, [*argv, "--teacher", str(teacher / "model.pt")], capsys)
    assert "argument --pseudo-threshold: must be a finite number in (0, 1], got '1.5'" in fail(
        train, [*argv, "--ssl", "selftrain", "--pseudo-threshold", "1.5"], capsys)
    assert "--pseudo-scales labels unlabeled pixels for --ssl selftrain, but --ssl is none" in fail(
        train, [*argv, "--pseudo-scales", "0.5,1"], capsys)
    assert "argument --pseudo-scales: expected distinct factors in (0, 4] like 0.5,1,2, got '1,1'" in fail(
        train, [*argv, "--ssl", "selftrain", "--pseudo-scales", "1,1"], capsys)


@pytest.mark.slow
def test_the_loop_makes_each_cycle_the_teacher_of_the_next(synthetic_pool, tmp_path):
    out = tmp_path / "experiment"
    run_loop(synthetic_pool, out, METHODS="entropy-ssl", SSL="selftrain")
    cycle0, cycle1 = (out / "entropy-ssl/seed0" / f"cycle{c}" for c in (0, 1))
    first, second = (torch.load(c / "model.pt", weights_only=True)["train_args"] for c in (cycle0, cycle1))
    assert first["ssl"] == second["ssl"] == "selftrain" and first["teacher"] is None  # no teacher before cycle 1
    assert second["teacher"] == str(cycle0 / "model.pt") and len(list((cycle1 / "pseudo").glob("*.png"))) == 6


@pytest.mark.slow
def test_s4al_loop_trains_a_supervised_teacher_in_every_cycle(synthetic_pool, tmp_path):
    """S4AL+'s loop in miniature (scripts/lib/s4al.sh): whole images in regions to start, a supervised teacher of
    each cycle's labels, the first cycle's included, its student trained on it, the last cycle longer."""
    out = tmp_path / "experiment"
    run_loop(synthetic_pool, out, METHODS="entropy-ssl", SSL="selftrain", SSL_TEACHER="supervised",
             SSL_ARGS="--unlabeled-batch-size 2 --pseudo-scales 0.5,1", UNIT_ARGS="--unit region --region-size 16",
             INITIAL_METHOD="random-images", INITIAL="10%px", STEP="",
             SELECT_ARGS="--workers 0 --device cpu --region-ranking per-image --regions-per-image 1",
             TRAIN_ARGS="--arch tiny --epochs 1 --batch-size 2 --steps-per-epoch 2 --crop 32x48 --workers 0 "
                        "--device cpu", LAST_TRAIN_ARGS="--epochs 2")
    cycle0, cycle1 = (out / "entropy-ssl/seed0" / f"cycle{c}" for c in (0, 1))
    args = {path: torch.load(path, weights_only=True)["train_args"]
            for path in (out / "_initial/seed0/model.pt", cycle0 / "model.pt", cycle1 / "teacher/model.pt",
                         cycle1 / "model.pt")}
    assert args[cycle0 / "model.pt"]["teacher"] == str(out / "_initial/seed0/model.pt")  # the initial draw's
    assert args[cycle1 / "model.pt"]["teacher"] == str(cycle1 / "teacher/model.pt")
    assert [a["ssl"] for a in args.values()] == ["none", "selftrain", "none", "selftrain"]
    assert [a["epochs"] for a in args.values()] == [1, 1, 2, 2] and {a["steps_per_epoch"] for a in args.values()} == {2}
    assert (cycle1 / "teacher/index.json").read_bytes() == (cycle1 / "index.json").read_bytes()
    assert (cycle1 / "teacher/metrics.json").is_file()
    whole = {item.rpartition("#")[0] for item in json.loads((cycle0 / "index.json").read_text())["labeled"]}
    ids = set(open_dataset("synthetic", synthetic_pool, "train").ids)
    assert len(whole) == 2 and {p.stem for p in (cycle1 / "pseudo").glob("*.png")} == ids - whole  # none covered
