"""Paths with spaces and quotes through the real loop (scripts/lib/al_loop.sh): OUT, DATA_ROOT,
POOL and the paths made of them (the teacher) each reach the Python scripts as one word, and
nothing is written outside OUT. The paper scripts' paths: tests/test_experiment.py."""
import hashlib
import json
import shutil
import subprocess

import pytest
import torch

from conftest import LOOP_COMMAND, REPO_ROOT, loop_env
from lib.data import open_dataset

AWKWARD = "my runs/it's \"here\""  # folders with a space, a single quote and a double quote


def contents(folder):
    """{relative path: bytes} of every file under folder (None for a folder)."""
    return {p.relative_to(folder): p.read_bytes() if p.is_file() else None for p in folder.rglob("*")}


@pytest.mark.slow
def test_the_loop_takes_paths_with_spaces_and_quotes(synthetic_pool, tmp_path):
    """The real loop, self-training (its teacher is the previous cycle's model) on a pool file."""
    base = tmp_path / AWKWARD
    data = base / "data 'root'"
    shutil.copytree(synthetic_pool, data)
    ids = open_dataset("synthetic", data, "train").ids
    pool = base / "pool \"of\" it's.json"
    pool.write_text(json.dumps(ids[:-2]))
    out = base / "out \"dir\" it's"
    before = contents(tmp_path)

    run = subprocess.run(LOOP_COMMAND, capture_output=True, text=True, cwd=REPO_ROOT, env=loop_env(
        data, out, POOL=str(pool), METHODS="entropy-ssl", SSL="selftrain",
        TRAIN_ARGS="--arch tiny --epochs 1 --batch-size 2 --crop 32x48 --workers 0 --device cpu"))
    assert run.returncode == 0, (run.stdout + run.stderr)[-3000:]

    cycles = [out / "entropy-ssl/seed0" / f"cycle{c}" for c in (0, 1)]
    for cycle in cycles:
        for name in ("index.json", "model.pt", "metrics.json"):
            assert (cycle / name).is_file(), cycle / name
        index = json.loads((cycle / "index.json").read_text())
        assert index["pool_size"] == len(ids) - 2 and set(index["labeled"]) <= set(ids[:-2])  # POOL was read
    train_args = torch.load(cycles[1] / "model.pt", weights_only=True)["train_args"]
    assert train_args["teacher"] == str(cycles[0] / "model.pt")
    assert train_args["data_root"] == str(data) and train_args["pool"] == str(pool)
    stamp = json.loads((cycles[1] / "pseudo/pseudo.json").read_text())  # the labels were made by that teacher
    assert stamp["teacher_sha256"] == hashlib.sha256((cycles[0] / "model.pt").read_bytes()).hexdigest()
    pseudo = {p.stem for p in (cycles[1] / "pseudo").glob("*.png")}
    assert pseudo and pseudo <= set(ids[:-2]) - set(index["labeled"])
    assert (out / "log.txt").is_file() and (out / "summary@60.json").is_file()

    after = contents(tmp_path)
    outside = {path: content for path, content in after.items() if not (tmp_path / path).is_relative_to(out)}
    assert outside == before  # the data root and the pool file are byte-identical, and nothing was added
