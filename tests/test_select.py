"""select.py through its command line: every method, precomputed inputs, pre-filters, bad input."""
import functools
import json
import shutil
import warnings

import numpy as np
import pytest
import torch
from torch import nn

from conftest import fail, import_script
from lib.acquire import METHODS
from lib.data import open_dataset
from lib.index import LabeledIndex, Unit, save_index

train, select = import_script("train.py"), import_script("select.py")
CLASSES = 8  # the synthetic pool's


def read(path):
    return json.loads(path.read_text())


@pytest.fixture(scope="module")
def cycle0(synthetic_pool, tmp_path_factory):
    """An index with 4 labeled images and two tiny models trained on it, with and without MC dropout."""
    folder = tmp_path_factory.mktemp("cycle0")
    ids = open_dataset("synthetic", synthetic_pool, "train").ids
    save_index(folder / "index.json", LabeledIndex("synthetic", "train", Unit(), len(ids)).with_cycle(
        "random", 0, "4", ids[:4]))
    for name, extra in (("model.pt", []), ("dropout.pt", ["--mc-dropout"])):
        train.main(["--dataset", "synthetic", "--data-root", str(synthetic_pool), "--index", str(folder / "index.json"),
                    "--out", str(folder / name), "--arch", "tiny", "--epochs", "1", "--batch-size", "2",
                    "--crop", "32x32", "--workers", "0", "--device", "cpu", *extra])
    return folder


def select_argv(pool, cycle0, method, out, *extra):
    checkpoint = cycle0 / ("dropout.pt" if method == "bald" else "model.pt")
    inputs = [] if "scores" in METHODS[method].inputs else ["--checkpoint", str(checkpoint)]
    return ["--dataset", "synthetic", "--data-root", str(pool), "--index", str(cycle0 / "index.json"),
            "--method", method, "--budget", "3", "--seed", "5", "--out", str(out), "--workers", "0",
            "--device", "cpu", "--mc-samples", "3", *inputs, *extra]


# meal fits its map of the pool on pretrained weights, which the tiny test model has none of: tests/test_meal.py.
@pytest.mark.parametrize("method", [name for name, m in METHODS.items() if not {"scores", "pool_map"} & set(m.inputs)])
def test_every_method_through_the_command_line(synthetic_pool, cycle0, tmp_path, method):
    for name in ("first.json", "again.json"):
        select.main(select_argv(synthetic_pool, cycle0, method, tmp_path / name))
    index = read(tmp_path / "first.json")
    added = index["history"][-1]["added"]
    assert len(added) == 3 and len(index["labeled"]) == 7 and len(set(index["labeled"])) == 7
    assert index["history"][-1]["method"] == method
    assert (tmp_path / "first.json").read_bytes() == (tmp_path / "again.json").read_bytes()


class Darkness(nn.Module):
    """Sure of class 0 on bright pixels, unsure on dark ones: its logit is 10 x the pixel's brightness, the other
    classes' 0. Pixel entropy falls with brightness, so entropy's answer is known from the images alone."""

    def __init__(self):
        super().__init__()
        self.others = CLASSES - 1  # TorchScript reads module attributes, not globals

    def forward(self, x):  # [B, 3, H, W] in [0, 1] with --mean 0,0,0 --std 1,1,1
        brightness = x.mean(dim=1, keepdim=True)  # [B, 1, H, W]
        return torch.cat([10 * brightness, torch.zeros_like(brightness).expand(-1, self.others, -1, -1)], dim=1)


@pytest.fixture(scope="module")
def darkness(tmp_path_factory):
    """Darkness as a TorchScript file, and the flags that read it: [--checkpoint FILE --mean ... --std ...]."""
    path = tmp_path_factory.mktemp("darkness") / "darkness.pt"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch.jit's deprecation notice
        torch.jit.script(Darkness()).save(str(path))
    return ["--checkpoint", str(path), "--mean", "0,0,0", "--std", "1,1,1"]


def darkness_entropy(pool):
    """{image id: mean pixel entropy under Darkness} in float64 numpy, from the image files."""
    dataset = open_dataset("synthetic", pool, "train")
    entropy = {}
    for image_id in dataset.ids:
        logit = 10 * dataset.load_image(image_id).astype(np.float64).mean(axis=2) / 255  # [H, W]
        total = np.exp(logit) + CLASSES - 1
        sure, unsure = np.exp(logit) / total, 1 / total
        entropy[image_id] = float(np.mean(-sure * np.log(sure) - (CLASSES - 1) * unsure * np.log(unsure)))
    return entropy


def are_the_most_uncertain(chosen, entropy, candidates):
    """No candidate left out is more uncertain than one chosen (up to float32 rounding: frames may be near-twins)."""
    left_out = set(candidates) - set(chosen)
    return min(entropy[i] for i in chosen) >= max(entropy[i] for i in left_out) - 1e-5


def test_entropy_selects_the_most_uncertain_images(synthetic_pool, cycle0, darkness, tmp_path):
    entropy = darkness_entropy(synthetic_pool)
    unlabeled = [i for i in entropy if i not in read(cycle0 / "index.json")["labeled"]]
    select.main(select_argv(synthetic_pool, cycle0, "entropy", tmp_path / "entropy.json", *darkness,
                            "--scores-out", str(tmp_path / "scores.json")))
    select.main(select_argv(synthetic_pool, cycle0, "random", tmp_path / "random.json"))
    chosen = read(tmp_path / "entropy.json")["history"][-1]["added"]
    assert len(chosen) == 3 and are_the_most_uncertain(chosen, entropy, unlabeled)
    assert not are_the_most_uncertain(read(tmp_path / "random.json")["history"][-1]["added"], entropy, unlabeled)
    scores = read(tmp_path / "scores.json")["scores"]
    assert scores.keys() == set(unlabeled)
    assert all(scores[i] == pytest.approx(entropy[i], rel=1e-4) for i in unlabeled)


def write_features(path, ids, rows):
    np.savez(path, ids=np.array(ids), features=np.asarray(rows, dtype=np.float32))


@pytest.mark.parametrize("method", ["coreset", "kmeanspp"])
def test_batch_methods_run_on_a_features_file(synthetic_pool, cycle0, tmp_path, method):
    ids = open_dataset("synthetic", synthetic_pool, "train").ids
    # Two far-apart groups; the labeled images (ids[:4]) all sit in the first one.
    rows = [[0.0, i] if n < 8 else [100.0, i] for n, i in enumerate(range(len(ids)))]
    write_features(tmp_path / "features.npz", ids, rows)
    select.main(select_argv(synthetic_pool, cycle0, method, tmp_path / "next.json",
                            "--features", str(tmp_path / "features.npz")))
    added = read(tmp_path / "next.json")["history"][-1]["added"]
    assert len(added) == 3 and any(ids.index(i) >= 8 for i in added)
    if method == "coreset":
        assert ids.index(added[0]) == len(ids) - 1  # farthest from every labeled point


def test_topk_on_a_scores_file_from_scores_out(synthetic_pool, cycle0, tmp_path):
    select.main(select_argv(synthetic_pool, cycle0, "entropy", tmp_path / "entropy.json",
                            "--scores-out", str(tmp_path / "scores.json")))
    select.main(select_argv(synthetic_pool, cycle0, "topk", tmp_path / "topk.json",
                            "--scores", str(tmp_path / "scores.json")))
    entropy, topk = (read(tmp_path / name)["history"][-1] for name in ("entropy.json", "topk.json"))
    assert topk["added"] == entropy["added"] and topk["method"] == "topk"


def test_topk_on_an_npz(synthetic_pool, cycle0, tmp_path):
    ids = open_dataset("synthetic", synthetic_pool, "train").ids
    np.savez(tmp_path / "scores.npz", ids=np.array(ids), scores=np.arange(len(ids), dtype=np.float64))
    select.main(select_argv(synthetic_pool, cycle0, "topk", tmp_path / "next.json",
                            "--scores", str(tmp_path / "scores.npz")))
    assert read(tmp_path / "next.json")["history"][-1]["added"] == ids[::-1][:3]


def test_prefilter_keeps_every_nth_frame(synthetic_pool, cycle0, darkness, tmp_path):
    """The pool has sequences of 2 frames: uniform@2 leaves only first frames (_f00), and entropy ranks those."""
    select.main(select_argv(synthetic_pool, cycle0, "entropy", tmp_path / "next.json", *darkness,
                            "--prefilter", "uniform@2"))
    cycle = read(tmp_path / "next.json")["history"][-1]
    entropy = darkness_entropy(synthetic_pool)
    first_frames = [i for i in entropy if i.endswith("_f00") and i not in read(cycle0 / "index.json")["labeled"]]
    assert len(cycle["added"]) == 3 and set(cycle["added"]) <= set(first_frames)
    assert are_the_most_uncertain(cycle["added"], entropy, first_frames)
    assert cycle["method"] == "entropy" and cycle["prefilter"] == "uniform@2"


@pytest.fixture(scope="module")
def bad_files(synthetic_pool, tmp_path_factory):
    """Broken --features and --scores files for the pool."""
    folder = tmp_path_factory.mktemp("bad_files")
    ids = open_dataset("synthetic", synthetic_pool, "train").ids
    rows = np.zeros((len(ids), 2))
    rows[7, 0] = np.nan
    write_features(folder / "nan.npz", ids, rows)
    write_features(folder / "short.npz", ids[:-1], np.zeros((len(ids) - 1, 2)))
    write_features(folder / "stranger.npz", [*ids, "ghost"], np.zeros((len(ids) + 1, 2)))
    (folder / "scores.json").write_text(json.dumps({"scores": {i: "high" for i in ids}}))
    return folder


# {files}: bad_files; {cycle0}: the cycle0 folder; {id0}, {id7}, {id_last}: ids of the pool.
@pytest.mark.parametrize(("method", "extra", "message"), [
    ("bald", ["--checkpoint", "{cycle0}/model.pt"],
     "model.pt: --method bald samples dropout in the decoder, which only models trained with train.py "
     "--mc-dropout have"),
    ("coreset", ["--features", "{files}/nan.npz"], "nan.npz: features of id {id7!r} is NaN or infinite"),
    ("coreset", ["--features", "{files}/short.npz"], "short.npz: no row for pool item {id_last!r}"),
    ("kmeanspp", ["--features", "{files}/stranger.npz"], "stranger.npz: id 'ghost' is not in the pool"),
    ("coreset", ["--features", "{files}/missing.npz"], "missing.npz: file not found"),
    ("coreset", ["--features", "{files}/scores.json"], "scores.json: not a readable .npz"),
    ("topk", ["--scores", "{files}/scores.json"], "scores.json: score of id {id0!r} is not a number"),
    ("topk", [], "--method topk ranks precomputed scores: give --scores"),
    ("entropy", ["--features", "{files}/nan.npz"], "--features: --method entropy does not use features"),
    ("entropy", ["--scores", "{files}/scores.json"], "--scores: --method entropy does not rank precomputed scores"),
    ("entropy", ["--prefilter", "uniform@2", "--budget", "5"],
     "5 items asked but only 4 unlabeled items pass --prefilter"),
    ("entropy", ["--prefilter", "every@2"], "--prefilter: expected uniform@N"),
    ("entropy", ["--prefilter", "uniform@0"], "--prefilter: expected uniform@N"),
], ids=["bald-without-dropout", "nan-features", "short-features", "stranger-in-features", "missing-features",
        "json-features", "text-scores", "topk-without-scores", "features-unused", "scores-unused",
        "budget-over-prefilter", "unknown-prefilter", "prefilter-zero"])
def test_bad_select_input(synthetic_pool, cycle0, bad_files, tmp_path, capsys, method, extra, message):
    ids = open_dataset("synthetic", synthetic_pool, "train").ids
    fill = functools.partial(str.format, files=bad_files, cycle0=cycle0, id0=ids[0], id7=ids[7], id_last=ids[-1])
    out = tmp_path / "next.json"
    assert fill(message) in fail(select, select_argv(synthetic_pool, cycle0, method, out, *map(fill, extra)), capsys)
    assert not out.exists()


def test_uniform_needs_frames(synthetic_pool, cycle0, tmp_path, capsys):
    """A folder pool without sequences.json cannot be subsampled in time."""
    pool = tmp_path / "pool"
    shutil.copytree(synthetic_pool, pool)
    (pool / "train" / "sequences.json").unlink()
    argv = ["--dataset", "folder", "--data-root", str(pool), "--method", "uniform", "--budget", "2",
            "--out", str(tmp_path / "next.json")]
    assert "--method uniform needs sequence and frame information" in fail(select, argv, capsys)
    argv[5] = "entropy"
    argv += ["--prefilter", "uniform@2", "--checkpoint", str(cycle0 / "model.pt")]
    assert "--prefilter uniform@2 needs sequence and frame information" in fail(select, argv, capsys)
