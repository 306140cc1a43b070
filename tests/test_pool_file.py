"""--pool FILE: a curated pool is a JSON list of image ids, read alike by select.py and train.py."""
import json

import pytest

from conftest import fail, import_script
from lib.data import open_dataset

train, select = import_script("train.py"), import_script("select.py")


@pytest.fixture()
def pool_file(synthetic_pool, tmp_path):
    """Every other image of the synthetic pool's train split: 6 of 12."""
    ids = open_dataset("synthetic", synthetic_pool, "train").ids[::2]
    path = tmp_path / "pool.json"
    path.write_text(json.dumps(list(reversed(ids))))  # any order: the pool is kept sorted
    return path, ids


def common(pool, tmp_path, *extra):
    return ["--dataset", "synthetic", "--data-root", str(pool), *extra]


def test_selection_and_training_stay_inside_the_pool(synthetic_pool, pool_file, tmp_path):
    path, ids = pool_file
    select.main(common(synthetic_pool, tmp_path, "--pool", str(path), "--method", "random", "--budget", "50%",
                       "--out", str(tmp_path / "index.json")))
    index = json.loads((tmp_path / "index.json").read_text())
    assert index["pool_size"] == 6 and len(index["labeled"]) == 3 and set(index["labeled"]) <= set(ids)
    train.main(common(synthetic_pool, tmp_path, "--pool", str(path), "--index", str(tmp_path / "index.json"),
                      "--out", str(tmp_path / "model.pt"), "--arch", "tiny", "--epochs", "1", "--batch-size", "2",
                      "--crop", "32x32", "--workers", "0", "--device", "cpu"))
    select.main(common(synthetic_pool, tmp_path, "--pool", str(path), "--method", "entropy", "--budget", "3",
                       "--index", str(tmp_path / "index.json"), "--checkpoint", str(tmp_path / "model.pt"),
                       "--workers", "0", "--out", str(tmp_path / "next.json")))
    assert sorted(json.loads((tmp_path / "next.json").read_text())["labeled"]) == ids  # the whole pool


def test_bad_pool_files_are_one_line_errors(synthetic_pool, pool_file, tmp_path, capsys):
    path, ids = pool_file
    select.main(common(synthetic_pool, tmp_path, "--pool", str(path), "--method", "random", "--budget", "2",
                       "--out", str(tmp_path / "index.json")))
    cases = [
        ([*ids, ids[0]], f"duplicate id {ids[0]!r}"),
        ([*ids, "s9999_f00"], "id 's9999_f00' is not an image of synthetic/train"),
        ({"ids": ids}, "a pool file is a non-empty JSON list of image ids"),
        ([], "a pool file is a non-empty JSON list of image ids"),
    ]
    for content, message in cases:
        (tmp_path / "bad.json").write_text(json.dumps(content))
        argv = common(synthetic_pool, tmp_path, "--pool", str(tmp_path / "bad.json"), "--method", "random",
                      "--budget", "2", "--out", str(tmp_path / "next.json"))
        assert f"bad.json: {message}" in fail(select, argv, capsys)
    # The index remembers its pool's size: forgetting --pool is caught.
    argv = common(synthetic_pool, tmp_path, "--index", str(tmp_path / "index.json"), "--method", "random",
                  "--budget", "2", "--out", str(tmp_path / "next.json"))
    assert "index was made for a pool of 6 images, this one has 12 (another --pool?)" in fail(select, argv, capsys)
    assert not (tmp_path / "next.json").exists()
