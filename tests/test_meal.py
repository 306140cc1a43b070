"""MEAL and MEAL-FT through select.py on patches, its UMAP cache, and MEAL's frozen-backbone training."""
import json

import pytest
import torch

from conftest import fail, import_script

train, select = import_script("train.py"), import_script("select.py")
CPU = ["--workers", "0", "--device", "cpu"]
INFORMATIVE = 20


def read(path):
    return json.loads(path.read_text())


@pytest.fixture(scope="module")
def cycle0(synthetic_pool, mobilenet_file, tmp_path_factory):
    """8 random cells of a 2x2 grid, and a MobileNetV2 trained on them with the pretrained backbone frozen."""
    folder = tmp_path_factory.mktemp("meal")
    select.main(["--dataset", "synthetic", "--data-root", str(synthetic_pool), "--method", "random", "--unit", "patch",
                 "--grid", "2x2", "--budget", "8", "--out", str(folder / "index.json"), *CPU])
    train.main(["--dataset", "synthetic", "--data-root", str(synthetic_pool), "--index", str(folder / "index.json"),
                "--out", str(folder / "model.pt"), "--arch", "mobilenet_v2", "--pretrained", str(mobilenet_file),
                "--freeze-backbone", "--no-flip", "--optimizer", "adam", "--lr", "1e-3", "--epochs", "1",
                "--batch-size", "2", "--crop", "32x48", *CPU])
    return folder


def meal_argv(pool, cycle0, method, out, *extra):
    return ["--dataset", "synthetic", "--data-root", str(pool), "--index", str(cycle0 / "index.json"),
            "--checkpoint", str(cycle0 / "model.pt"), "--method", method, "--budget", "4", "--seed", "2",
            "--informative", str(INFORMATIVE), "--out", str(out), "--scores-out", f"{out}.scores", *CPU, *extra]


def most_uncertain(scores_file, n):
    scores = read(scores_file)["scores"]
    return set(sorted(scores, key=lambda item: (-scores[item], item))[:n])


@pytest.mark.parametrize("method", ["meal", "meal-ft"])
def test_meal_picks_the_budget_from_the_informative_patches(synthetic_pool, mobilenet_file, cycle0, tmp_path, method):
    extra = ["--pretrained", str(mobilenet_file), "--umap-cache", str(tmp_path / "umap.pt")] if method == "meal" else []
    for name in ("first.json", "again.json"):
        select.main(meal_argv(synthetic_pool, cycle0, method, tmp_path / name, *extra))
    added = read(tmp_path / "first.json")["history"][-1]["added"]
    assert len(added) == len(set(added)) == 4
    assert set(added) <= most_uncertain(tmp_path / "first.json.scores", INFORMATIVE)
    assert not set(added) <= most_uncertain(tmp_path / "first.json.scores", 4)  # not plain entropy
    assert (tmp_path / "first.json").read_bytes() == (tmp_path / "again.json").read_bytes()


def test_meal_fits_the_pool_map_once_and_reuses_it(synthetic_pool, mobilenet_file, cycle0, tmp_path, capsys):
    cache = tmp_path / "umap.pt"
    select.main(meal_argv(synthetic_pool, cycle0, "meal", tmp_path / "a.json", "--pretrained", str(mobilenet_file),
                          "--umap-cache", str(cache)))
    assert "fitting the UMAP map of 12 images' patch 2x2 items" in capsys.readouterr().out
    stored = torch.load(cache, weights_only=True)
    assert stored["umap"]["embedding"].shape == (12 * 4, 2)
    assert stored["key"]["unit"] == {"type": "patch", "grid": [2, 2]}
    # Later cycles read the map and need no pretrained weights.
    select.main(meal_argv(synthetic_pool, cycle0, "meal", tmp_path / "b.json", "--umap-cache", str(cache)))
    assert "fitting" not in capsys.readouterr().out
    assert (tmp_path / "a.json").read_bytes() == (tmp_path / "b.json").read_bytes()

    other_seed = meal_argv(synthetic_pool, cycle0, "meal", tmp_path / "c.json", "--umap-cache", str(cache))
    other_seed[other_seed.index("--seed") + 1] = "3"
    assert "UMAP map was fitted for another seed" in fail(select, other_seed, capsys)
    other_window = meal_argv(synthetic_pool, cycle0, "meal", tmp_path / "c.json", "--umap-cache", str(cache),
                             "--slide-window", "16x16")  # windows shape the features of larger images
    assert "UMAP map was fitted for another slide_window" in fail(select, other_window, capsys)
    torch.save({"key": stored["key"], "umap": {k: v for k, v in stored["umap"].items() if k != "features"}}, cache)
    assert "umap.pt: damaged UMAP cache (KeyError: 'features'); delete it to fit again" in fail(
        select, meal_argv(synthetic_pool, cycle0, "meal", tmp_path / "c.json", "--umap-cache", str(cache)), capsys)
    cache.write_bytes(b"not a torch file")
    assert "not a UMAP cache" in fail(select, meal_argv(synthetic_pool, cycle0, "meal", tmp_path / "d.json",
                                                        "--umap-cache", str(cache)), capsys)
    assert not (tmp_path / "c.json").exists() and not (tmp_path / "d.json").exists()


@pytest.mark.parametrize(("method", "extra", "message"), [
    ("meal", [], "give --pretrained"),
    ("meal-ft", ["--budget", "21"], "21 items asked but --method meal-ft chooses among the --informative 20"),
    ("entropy", ["--umap-cache", "x.pt"], "--umap-cache: --method entropy does not use the UMAP map"),
])
def test_meal_mistakes_are_one_line_errors(synthetic_pool, cycle0, tmp_path, capsys, method, extra, message):
    assert message in fail(select, meal_argv(synthetic_pool, cycle0, method, tmp_path / "out.json", *extra), capsys)
    assert not (tmp_path / "out.json").exists()


def test_frozen_backbone_keeps_its_pretrained_weights_and_statistics(cycle0, mobilenet_file):
    """BatchNorm running statistics included: the backbone stays in eval mode while the head trains."""
    checkpoint = torch.load(cycle0 / "model.pt", weights_only=True)
    trained = checkpoint["model"]
    pretrained = torch.load(mobilenet_file, weights_only=True)
    backbone = {k[len("backbone."):]: v for k, v in trained.items() if k.startswith("backbone.")}
    for key, value in backbone.items():
        if not key.endswith("num_batches_tracked"):
            torch.testing.assert_close(value, pretrained[key], rtol=0, atol=0)
    assert any(k.endswith("running_var") for k in backbone)
