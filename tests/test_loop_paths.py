"""Paths with spaces and quotes through scripts/lib/al_loop.sh and the paper scripts: OUT,
DATA_ROOT, POOL, PRETRAINED, POOLS and the paths made of them (the teacher, MEAL's UMAP
cache) each reach the Python scripts as one word, and nothing is written outside OUT."""
import hashlib
import json
import os
import shutil
import subprocess
import sys

import pytest
import torch

from conftest import LOOP_COMMAND, REPO_ROOT, loop_env
from lib.data import open_dataset

AWKWARD = "my runs/it's \"here\""  # folders with a space, a single quote and a double quote


def contents(folder):
    """{relative path: bytes} of every file under folder (None for a folder)."""
    return {p.relative_to(folder): p.read_bytes() if p.is_file() else None for p in folder.rglob("*")}


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
    assert (out / "log.txt").is_file() and (out / "summary.json").is_file()

    after = contents(tmp_path)
    outside = {path: content for path, content in after.items() if not (tmp_path / path).is_relative_to(out)}
    assert outside == before  # the data root and the pool file are byte-identical, and nothing was added


# A stand-in for the interpreter: it logs every command line as a JSON line and creates
# the --out file, so the paper scripts run through the loop in a second (the lock helper,
# `python -c`, does nothing).
FAKE_PYTHON = f"""#!{sys.executable}
import json, os, sys
args = sys.argv[1:]
if args[:1] != ["-c"]:
    with open(os.environ["ARGV_LOG"], "a") as log:
        log.write(json.dumps(args) + "\\n")
    if "--out" in args and not os.path.exists(args[args.index("--out") + 1]):
        open(args[args.index("--out") + 1], "w").close()
"""


def value(argv, flag):
    return argv[argv.index(flag) + 1] if flag in argv else None


@pytest.mark.parametrize(("script", "methods"), [
    ("camvid_meal.sh", "meal"),
    ("camvid_s4al.sh", "entropy-ssl"),
    ("cityscapes_10_10.sh", "bald entropy-ssl uniform5-entropy"),
    ("a2d2_pool0f_10_10.sh", "entropy"),
    ("a2d2_poolaug_10_10.sh", "entropy"),
    ("demo.sh", "entropy"),
])
def test_paper_scripts_pass_each_path_as_one_word(tmp_path, script, methods):
    """The real scripts, settings and loop with a fake interpreter: the command lines they build. MEAL's
    UMAP cache and --pretrained are covered this way: MEAL needs MobileNetV2, and its loop took about 2
    minutes on a 2-core CPU."""
    base = tmp_path / AWKWARD
    base.mkdir(parents=True)
    paths = {name: str(base / f"{name.lower()} 'x' \"y\"") for name in ("OUT", "DATA_ROOT", "PRETRAINED", "POOLS")}
    fake = base / "fake python"
    fake.write_text(FAKE_PYTHON)
    fake.chmod(0o755)
    log = tmp_path / "argv.jsonl"
    env = {**os.environ, **paths, "PYTHON": str(fake), "ARGV_LOG": str(log), "METHODS": methods, "SEEDS": "0",
           "CYCLES": "1"}
    run = subprocess.run(["bash", str(REPO_ROOT / "scripts" / script)], env=env, capture_output=True, text=True)
    assert run.returncode == 0, (run.stdout + run.stderr)[-3000:]
    calls = [json.loads(line) for line in log.read_text().splitlines()]
    scripts = [os.path.relpath(argv[0], REPO_ROOT) for argv in calls]
    assert {"select.py", "train.py", "evaluate.py"} <= set(scripts)
    out, data, pretrained, pools = (paths[name] for name in ("OUT", "DATA_ROOT", "PRETRAINED", "POOLS"))

    for name, argv in zip(scripts, calls):
        assert not any(word.endswith("/my") or word.startswith(("runs/it's", "'x'", '"y"')) for word in argv), argv
        for flag in ("--index", "--checkpoint", "--teacher", "--umap-cache", "--scores-out"):
            assert value(argv, flag) is None or value(argv, flag).startswith(out + "/"), (flag, argv)
        if name == "scripts/make_a2d2_pools.py":
            assert value(argv, "--data-root") == data and value(argv, "--out") == pools
        elif name == "scripts/make_synthetic.py":
            assert argv[1] == data
        elif value(argv, "--experiment"):
            assert value(argv, "--experiment") == out
        else:
            assert value(argv, "--out").startswith(out + "/"), argv
            expected_root = {"a2d2_poolaug_10_10.sh": f"{pools}/pool_aug"}.get(script, data)
            if name == "evaluate.py" and script == "a2d2_poolaug_10_10.sh":
                expected_root = data  # evaluated on A2D2's validation sequence
            assert value(argv, "--data-root") == expected_root, argv
            if script == "a2d2_pool0f_10_10.sh" and name != "evaluate.py":
                assert value(argv, "--pool") == f"{pools}/pool_0f.json", argv
            if name == "train.py" and script != "demo.sh":
                assert value(argv, "--pretrained") == pretrained, argv

    def cycle1(script_name, method):
        [argv] = [a for s, a in zip(scripts, calls)
                  if s == script_name and value(a, "--out").startswith(f"{out}/{method}/seed0/cycle1/")]
        return argv

    if script == "camvid_meal.sh":
        assert value(cycle1("select.py", "meal"), "--umap-cache") == f"{out}/_initial/seed0/umap.pt"
        assert value(cycle1("select.py", "meal"), "--pretrained") == pretrained
    if script == "camvid_s4al.sh":  # self-training: the teacher is the previous cycle's model
        assert value(cycle1("train.py", "entropy-ssl"), "--teacher") == f"{out}/entropy-ssl/seed0/cycle0/model.pt"
    if script == "cityscapes_10_10.sh":  # bald's own initial model, in a folder named after its flags
        assert value(cycle1("select.py", "uniform5-entropy"), "--prefilter") == "uniform@5"
        assert f"{out}/_initial/seed0/mcdropout/model.pt" in [value(a, "--out") for a in calls]
