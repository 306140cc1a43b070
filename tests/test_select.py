"""select.py through its command line: every method, precomputed inputs, pre-filters, bad input."""
import json
import shutil

import numpy as np
import pytest

from conftest import fail, import_script
from lib.acquire import METHODS
from lib.data import open_dataset
from lib.index import LabeledIndex, Unit, save_index

train, select = import_script("train.py"), import_script("select.py")


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
    inputs = [] if METHODS[method].needs == "scores" else ["--checkpoint", str(checkpoint)]
    return ["--dataset", "synthetic", "--data-root", str(pool), "--index", str(cycle0 / "index.json"),
            "--method", method, "--budget", "3", "--seed", "5", "--out", str(out), "--workers", "0",
            "--device", "cpu", "--mc-samples", "3", *inputs, *extra]


# meal fits its map of the pool on pretrained weights, which the tiny test model has none of: tests/test_meal.py.
@pytest.mark.parametrize("method", [name for name, m in METHODS.items() if m.needs != "scores" and not m.needs_pool_umap])
def test_every_method_through_the_command_line(synthetic_pool, cycle0, tmp_path, method):
    for name in ("first.json", "again.json"):
        select.main(select_argv(synthetic_pool, cycle0, method, tmp_path / name))
    index = read(tmp_path / "first.json")
    added = index["history"][-1]["added"]
    assert len(added) == 3 and len(index["labeled"]) == 7 and len(set(index["labeled"])) == 7
    assert index["history"][-1]["method"] == method
    assert (tmp_path / "first.json").read_bytes() == (tmp_path / "again.json").read_bytes()


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


def test_prefilter_keeps_every_nth_frame(synthetic_pool, cycle0, tmp_path):
    """The pool has sequences of 2 frames: uniform@2 leaves only first frames (_f00)."""
    select.main(select_argv(synthetic_pool, cycle0, "entropy", tmp_path / "next.json", "--prefilter", "uniform@2"))
    cycle = read(tmp_path / "next.json")["history"][-1]
    assert len(cycle["added"]) == 3 and all(i.endswith("_f00") for i in cycle["added"])
    assert cycle["method"] == "entropy" and cycle["prefilter"] == "uniform@2"


def test_bad_select_input(synthetic_pool, cycle0, tmp_path, capsys):
    ids = open_dataset("synthetic", synthetic_pool, "train").ids
    out = tmp_path / "next.json"
    rows = np.zeros((len(ids), 2))
    rows[7, 0] = np.nan
    write_features(tmp_path / "nan.npz", ids, rows)
    write_features(tmp_path / "short.npz", ids[:-1], np.zeros((len(ids) - 1, 2)))
    write_features(tmp_path / "stranger.npz", [*ids, "ghost"], np.zeros((len(ids) + 1, 2)))
    (tmp_path / "scores.json").write_text(json.dumps({"scores": {i: "high" for i in ids}}))
    cases = [
        (select_argv(synthetic_pool, cycle0, "bald", out, "--checkpoint", str(cycle0 / "model.pt")),
         "model.pt: --method bald samples dropout in the decoder, which only models trained with train.py --mc-dropout have"),
        (select_argv(synthetic_pool, cycle0, "coreset", out, "--features", str(tmp_path / "nan.npz")),
         f"nan.npz: features of id {ids[7]!r} is NaN or infinite"),
        (select_argv(synthetic_pool, cycle0, "coreset", out, "--features", str(tmp_path / "short.npz")),
         f"short.npz: no row for pool item {ids[-1]!r}"),
        (select_argv(synthetic_pool, cycle0, "kmeanspp", out, "--features", str(tmp_path / "stranger.npz")),
         "stranger.npz: id 'ghost' is not in the pool"),
        (select_argv(synthetic_pool, cycle0, "coreset", out, "--features", str(tmp_path / "missing.npz")),
         "missing.npz: file not found"),
        (select_argv(synthetic_pool, cycle0, "coreset", out, "--features", str(tmp_path / "scores.json")),
         "scores.json: not a readable .npz"),
        (select_argv(synthetic_pool, cycle0, "topk", out, "--scores", str(tmp_path / "scores.json")),
         f"scores.json: score of id {ids[0]!r} is not a number"),
        (select_argv(synthetic_pool, cycle0, "topk", out), "--method topk ranks precomputed scores: give --scores"),
        (select_argv(synthetic_pool, cycle0, "entropy", out, "--features", str(tmp_path / "nan.npz")),
         "--features: --method entropy does not use features"),
        (select_argv(synthetic_pool, cycle0, "entropy", out, "--scores", str(tmp_path / "scores.json")),
         "--scores: --method entropy does not rank precomputed scores"),
        (select_argv(synthetic_pool, cycle0, "entropy", out, "--prefilter", "uniform@2", "--budget", "5"),
         "5 items asked but only 4 unlabeled items pass --prefilter"),
        (select_argv(synthetic_pool, cycle0, "entropy", out, "--prefilter", "every@2"), "--prefilter: expected uniform@N"),
        (select_argv(synthetic_pool, cycle0, "entropy", out, "--prefilter", "uniform@0"), "--prefilter: expected uniform@N"),
    ]
    for argv, message in cases:
        assert message in fail(select, argv, capsys)
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
