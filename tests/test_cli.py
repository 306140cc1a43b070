"""The three scripts through their real command lines: a tiny AL loop, then bad input."""
import json
import os
import shutil
import subprocess

import pytest
import torch
from PIL import Image

from conftest import LOOP_COMMAND, REPO_ROOT, fail, import_script, loop_env, run_loop

train, select, evaluate = (import_script(f"{name}.py") for name in ("train", "select", "evaluate"))


@pytest.fixture(scope="module")
def experiment(synthetic_pool, tmp_path_factory):
    out = tmp_path_factory.mktemp("experiment")
    return out, run_loop(synthetic_pool, out)


def read(path):
    return json.loads(path.read_text())


def test_loop_writes_the_experiment_layout(experiment):
    out, stdout = experiment
    for method in ("entropy", "bald"):
        for cycle in (0, 1):
            folder = out / method / "seed0" / f"cycle{cycle}"
            assert {"index.json", "model.pt", "metrics.json"} <= {p.name for p in folder.iterdir()}
        first, second = (read(out / method / "seed0" / f"cycle{c}" / "index.json") for c in (0, 1))
        assert len(first["labeled"]) == 4 and len(second["labeled"]) == 6
        assert second["labeled"][:4] == first["labeled"]
        assert [h["method"] for h in second["history"]] == ["random", method]
        metrics = read(out / method / "seed0" / "cycle1" / "metrics.json")
        assert metrics["labeled_fraction"] == 0.5 and 0 <= metrics["miou"] <= 1
        assert set(metrics["per_class_iou"]) == {"sky", "building", "road", "sidewalk", "vegetation", "pole", "car",
                                                 "person"}
    # The initial cycle is trained once and shared by the methods whose models are alike;
    # BALD's models have MC dropout, so it gets an initial model of its own on the same images.
    assert os.path.samefile(out / "entropy/seed0/cycle0/model.pt", out / "_initial/seed0/model.pt")
    assert os.path.samefile(out / "bald/seed0/cycle0/model.pt", out / "_initial/seed0/mc-dropout/model.pt")
    assert os.path.samefile(out / "bald/seed0/cycle0/index.json", out / "entropy/seed0/cycle0/index.json")
    for cycle in (0, 1):
        assert torch.load(out / f"bald/seed0/cycle{cycle}/model.pt")["model_args"]["mc_dropout"]
        assert not torch.load(out / f"entropy/seed0/cycle{cycle}/model.pt")["model_args"]["mc_dropout"]
    scores = read(out / "entropy/seed0/cycle1/scores.json")["scores"]
    assert len(scores) == 8 and set(read(out / "entropy/seed0/cycle1/index.json")["history"][1]["added"]) <= set(scores)
    summary = read(out / "summary@50.json")
    assert summary["budget"] == pytest.approx(50) and set(summary["methods"]) == {"entropy", "bald"}
    assert "mIoU@50" in stdout and "AUC@50" in stdout
    assert (out / "curves.csv").read_text().count("\n") == 5


def test_rerun_skips_every_finished_step(synthetic_pool, experiment):
    out, _ = experiment
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*.pt")}
    stdout = run_loop(synthetic_pool, out)
    # the initial selection, then 5 steps per method
    assert "run train.py" not in stdout and "run select.py" not in stdout and stdout.count("skip ") == 11
    assert before == {p: p.stat().st_mtime_ns for p in out.rglob("*.pt")}


def test_rerun_with_other_settings_stops_and_names_them(synthetic_pool, experiment):
    out, _ = experiment
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.name not in ("log.txt", ".lock")}
    env = loop_env(synthetic_pool, out, TRAIN_ARGS="--arch tiny --epochs 3 --batch-size 2 --crop 32x48 --workers 0")
    run = subprocess.run(LOOP_COMMAND, env=env, capture_output=True, text=True, cwd=REPO_ROOT)
    assert run.returncode == 2 and not [line for line in run.stdout.splitlines() if line.startswith("run ")]
    assert (f"error: {out}: this experiment was run with other settings (TRAIN_ARGS was '--arch tiny --epochs 2 "
            f"--batch-size 2 --crop 32x48', is '--arch tiny --epochs 3 --batch-size 2 --crop 32x48'); use another "
            f"OUT") in run.stdout  # the log's copy of stderr
    assert before == {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.name not in ("log.txt", ".lock")}


@pytest.mark.slow
def test_method_variants_and_the_fully_supervised_reference(synthetic_pool, tmp_path):
    """<m>-ssl trains with --ssl $SSL $SSL_ARGS; uniform5-entropy is entropy on every 5th frame; FULL=1 trains on
    everything."""
    out = tmp_path / "experiment"
    run_loop(synthetic_pool, out, METHODS="uniform5-entropy entropy-ssl", FULL="1", SSL="s4gan", SSL_ARGS="-u 3")
    for cycle in (0, 1):  # the initial model too: an -ssl method's models are all trained with SSL
        args = torch.load(out / f"entropy-ssl/seed0/cycle{cycle}/model.pt", weights_only=True)["train_args"]
        assert args["ssl"] == "s4gan" and args["unlabeled_batch_size"] == 3 and args["teacher"] is None
    assert torch.load(out / "uniform5-entropy/seed0/cycle0/model.pt", weights_only=True)["train_args"]["ssl"] == "none"
    last = read(out / "uniform5-entropy/seed0/cycle1/index.json")["history"][-1]
    assert last["method"] == "entropy" and last["prefilter"] == "uniform@5"
    assert all(item_id.endswith("_f00") for item_id in last["added"])  # frame 0 of each sequence of 2
    full = read(out / "_full/seed0/metrics.json")
    assert full["labeled_fraction"] == 1.0 and full["labeled"] == 12
    assert "uniform5-entropy" in read(out / "summary@50.json")["methods"]


def test_selection_is_byte_identical_for_the_same_seed(synthetic_pool, experiment, tmp_path):
    out, _ = experiment
    cycle0 = out / "entropy/seed0/cycle0"
    select.main(["--dataset", "synthetic", "--data-root", str(synthetic_pool), "--method", "entropy",
                 "--index", str(cycle0 / "index.json"), "--checkpoint", str(cycle0 / "model.pt"),
                 "--budget", "2", "--seed", "0", "--out", str(tmp_path / "again.json"), "--workers", "0"])
    assert (tmp_path / "again.json").read_bytes() == (out / "entropy/seed0/cycle1/index.json").read_bytes()


PAPER_SCRIPTS = sorted(p.name for p in (REPO_ROOT / "scripts").glob("*.sh") if p.name not in ("demo.sh", "test.sh"))


@pytest.mark.parametrize("script", PAPER_SCRIPTS)
def test_paper_scripts_explain_themselves_without_data_root(script):
    env = {k: v for k, v in os.environ.items() if k != "DATA_ROOT"}
    path = str(REPO_ROOT / "scripts" / script)
    missing = subprocess.run(["bash", path], env=env, capture_output=True, text=True)
    assert missing.returncode == 2 and missing.stderr == "error: set DATA_ROOT\n"
    assert "DATA_ROOT=" in missing.stdout and "Overridable" in missing.stdout
    helped = subprocess.run(["bash", path, "--help"], env=env, capture_output=True, text=True)
    assert helped.returncode == 0 and helped.stdout == missing.stdout


def test_predictions_folder_is_scored_like_a_model(synthetic_pool, tmp_path):
    predictions = tmp_path / "predictions"
    shutil.copytree(synthetic_pool / "val" / "masks", predictions)
    evaluate.main(["--predictions", str(predictions), "--dataset", "synthetic", "--data-root", str(synthetic_pool),
                   "--out", str(tmp_path / "metrics.json")])
    assert read(tmp_path / "metrics.json")["miou"] == 1.0


def test_curve_file(tmp_path, capsys):
    (tmp_path / "curve.json").write_text(json.dumps({"budgets": [10, 20, 30, 40, 50], "miou": [68.42] * 5}))
    evaluate.main(["--curve", str(tmp_path / "curve.json"), "--budget", "50"])
    assert capsys.readouterr().out.strip() == "mIoU@50 = 68.42  AUC@50 = 27.37"


@pytest.fixture()
def model_of(experiment):
    return experiment[0] / "entropy/seed0/cycle0"


def test_select_bad_input_is_one_line_and_writes_nothing(synthetic_pool, tmp_path, capsys):
    argv = ["--data-root", str(synthetic_pool), "--dataset", "synthetic", "--out", str(tmp_path / "next.json"),
            "--method", "entropy", "--budget", "2"]
    assert "--method entropy scores the pool with a model" in fail(select, argv, capsys)
    assert not (tmp_path / "next.json").exists()


def test_train_bad_input(synthetic_pool, model_of, tmp_path, capsys):
    base = ["--dataset", "synthetic", "--data-root", str(synthetic_pool), "--arch", "tiny", "--workers", "0",
            "--out", str(tmp_path / "model.pt"), "--index", str(model_of / "index.json")]
    assert "argument --epochs: must be at least 1, got 0" in fail(train, [*base, "--epochs", "0"], capsys)
    # A labeled image whose mask is missing is named.
    no_masks = tmp_path / "pool"
    shutil.copytree(synthetic_pool, no_masks)
    first = read(model_of / "index.json")["labeled"][0]
    (no_masks / "train" / "masks" / f"{first}.png").unlink()
    assert f"1 labeled image has no mask file: {first}" in fail(train, [*base, "--data-root", str(no_masks)], capsys)
    assert not (tmp_path / "model.pt").exists()


def test_evaluate_bad_input(synthetic_pool, model_of, tmp_path, capsys):
    predictions = tmp_path / "predictions"
    predictions.mkdir()
    argv = ["--predictions", str(predictions), "--dataset", "synthetic", "--data-root", str(synthetic_pool)]
    assert "no prediction for 4 of 4 images" in fail(evaluate, argv, capsys)
    for mask in (synthetic_pool / "val" / "masks").iterdir():
        Image.new("L", (48, 32), 9).save(predictions / mask.name)
    assert "class id 9 but the dataset has 8 classes" in fail(evaluate, argv, capsys)
    assert "no <method>/seed<k>/cycle<c>/metrics.json" in fail(evaluate, ["--experiment", str(tmp_path)], capsys)
    (tmp_path / "curve.json").write_text(json.dumps({"budgets": [10, 20], "miou": [50, 60]}))
    assert "budget 30 is not a point" in fail(evaluate, ["--curve", str(tmp_path / "curve.json"), "--budget", "30"],
                                              capsys)
    argv = ["--checkpoint", str(model_of / "model.pt"), "--data-root", str(synthetic_pool), "--split", "test"]
    assert "test/images: no such folder" in fail(evaluate, argv, capsys)
