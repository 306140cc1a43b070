"""train.py --keep-best: every epoch evaluated on a validation split, --out gets the best epoch's weights (MEAL)."""
import json

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import Killed, fail, import_script, kill_after_epoch
from lib.best_epoch import BestEpoch
from lib.data import open_dataset
from lib.data.synthetic import CLASS_NAMES
from lib.index import LabeledIndex, save_index
from lib.units import Unit
from test_distributed import _torchrun

train, evaluate = import_script("train.py"), import_script("evaluate.py")
CPU = ["--workers", "0", "--device", "cpu"]


def scripted_mious(monkeypatch, mious):
    """BestEpoch.evaluate returns `mious` in turn instead of evaluating; returns the model's weights at each call."""
    weights, values = [], iter(mious)

    def evaluate(self, model, device, world):
        weights.append({name: tensor.clone() for name, tensor in model.state_dict().items()})
        return next(values)

    monkeypatch.setattr(BestEpoch, "evaluate", evaluate)
    return weights


@pytest.fixture()
def patch_index(synthetic_pool, tmp_path):
    """Two cells of a 2x2 grid in each of 6 images."""
    ids = open_dataset("synthetic", synthetic_pool, "train").ids
    items = [f"{image_id}#r{k % 2}c{k // 2 % 2}" for image_id in ids[:6] for k in (0, 3)]
    save_index(tmp_path / "index.json", LabeledIndex("synthetic", "train", Unit("patch", (2, 2)), len(ids))
               .with_cycle("random", 0, "12", items))
    return tmp_path / "index.json"


def argv(pool, index, out, epochs, *flags):
    return ["--dataset", "synthetic", "--data-root", str(pool), "--index", str(index), "--out", str(out),
            "--arch", "tiny", "--epochs", str(epochs), "-b", "4", "--lr", "0.05", "--item-crops", "--keep-best",
            "--seed", "2", *CPU, *flags]


def same_weights(a, b):
    return a.keys() == b.keys() and all(torch.equal(tensor, b[name]) for name, tensor in a.items())


def test_out_gets_the_weights_of_the_best_epoch_the_earlier_of_a_tie(synthetic_pool, patch_index, tmp_path,
                                                                      monkeypatch, capsys):
    weights = scripted_mious(monkeypatch, [0.2, 0.5, 0.5, 0.3])
    out = tmp_path / "model.pt"
    train.main(argv(synthetic_pool, patch_index, out, 4))
    checkpoint = torch.load(out, weights_only=True)
    assert len(weights) == 4 and not same_weights(weights[1], weights[3])
    assert same_weights(checkpoint["model"], weights[1])
    assert checkpoint["training"]["best_epoch"] == 2 and checkpoint["training"]["best_val_miou"] == 0.5
    assert checkpoint["training"]["val_miou_by_epoch"] == [0.2, 0.5, 0.5, 0.3]
    assert checkpoint["epoch"] == 4  # trained to the end; only the weights are the best epoch's
    assert "kept epoch 2/4, val mIoU 50.00 % (the last epoch's: 30.00 %)" in capsys.readouterr().out


def test_a_run_killed_after_its_best_epoch_resumes_to_the_same_model(synthetic_pool, patch_index, tmp_path,
                                                                      monkeypatch):
    scripted_mious(monkeypatch, [0.4, 0.6, 0.5])
    straight = tmp_path / "straight.pt"
    train.main(argv(synthetic_pool, patch_index, straight, 3))

    resumed = tmp_path / "resumed.pt"
    scripted_mious(monkeypatch, [0.4, 0.6])
    kill_after_epoch(monkeypatch, train, 2)
    with pytest.raises(Killed):
        train.main(argv(synthetic_pool, patch_index, resumed, 3, "--resume"))
    monkeypatch.undo()
    assert torch.load(tmp_path / "resumed.pt.resume", weights_only=True)["keep_best"]["epoch"] == 2
    scripted_mious(monkeypatch, [0.5])  # the third epoch's only: the best so far comes from the .resume file
    train.main(argv(synthetic_pool, patch_index, resumed, 3, "--resume"))

    a, b = (torch.load(path, weights_only=True) for path in (straight, resumed))
    assert a["training"] == b["training"] and a["training"]["best_epoch"] == 2
    assert same_weights(a["model"], b["model"])


def test_the_recorded_miou_is_evaluate_pys_of_the_model_written(synthetic_pool, patch_index, tmp_path, monkeypatch):
    """Evaluated for real, a killed and resumed run included: the mIoU kept is that of --out on the val split."""
    straight, resumed = tmp_path / "straight.pt", tmp_path / "resumed.pt"
    train.main(argv(synthetic_pool, patch_index, straight, 3))
    kill_after_epoch(monkeypatch, train, 1)
    with pytest.raises(Killed):
        train.main(argv(synthetic_pool, patch_index, resumed, 3, "--resume"))
    monkeypatch.undo()
    train.main(argv(synthetic_pool, patch_index, resumed, 3, "--resume"))
    a, b = (torch.load(path, weights_only=True) for path in (straight, resumed))
    assert a["training"] == b["training"] and same_weights(a["model"], b["model"])
    mious = a["training"]["val_miou_by_epoch"]
    assert len(mious) == 3 and a["training"]["best_val_miou"] == max(mious)
    evaluate.main(["--checkpoint", str(straight), "--data-root", str(synthetic_pool), "--split", "val",
                   "--out", str(tmp_path / "metrics.json"), *CPU])
    assert json.loads((tmp_path / "metrics.json").read_text())["miou"] == pytest.approx(max(mious), abs=1e-12)


def unlabeled_folder_pool(root, class_names):
    """A `folder` pool of `class_names` whose val split is one image without a mask."""
    (root / "val" / "images").mkdir(parents=True)
    (root / "val" / "masks").mkdir()
    Image.fromarray(np.zeros((32, 48, 3), np.uint8)).save(root / "val" / "images" / "a.png")
    (root / "classes.json").write_text(json.dumps(class_names))
    return root


@pytest.mark.parametrize("flags, message", [
    (["--val-split", "val"], "error: --val-split names the data that --keep-best evaluates on: give --keep-best too"),
    (["--val-data-root", "elsewhere"], "error: --val-data-root names the data that --keep-best evaluates on"),
    (["--keep-best", "--val-dataset", "folder", "--val-data-root", "{two_classes}"],
     "error: --keep-best: the classes of folder split 'val' (background, lesion) are not those trained on (sky, "),
    (["--keep-best", "--val-dataset", "folder", "--val-data-root", "{same_classes}"],
     "error: {same_classes}: split 'val' has no masks for --keep-best to evaluate against"),
])
def test_misplaced_validation_flags_are_one_error_line(synthetic_pool, patch_index, tmp_path, capsys, flags,
                                                       message):
    roots = {"two_classes": unlabeled_folder_pool(tmp_path / "two", ["background", "lesion"]),
             "same_classes": unlabeled_folder_pool(tmp_path / "same", list(CLASS_NAMES))}
    out = tmp_path / "model.pt"
    base = [flag for flag in argv(synthetic_pool, patch_index, out, 1) if flag != "--keep-best"]
    err = fail(train, [*base, *(flag.format(**roots) for flag in flags)], capsys)
    assert err.startswith(message.format(**roots)), err
    assert not out.exists()


@pytest.mark.slow
def test_under_torchrun_the_processes_evaluate_shares_of_rank_0s_model(synthetic_pool, patch_index, tmp_path):
    """2 gloo processes: the mIoU kept is evaluate.py's of --out in one process, though each process's BatchNorm
    statistics are its own after a step (lib.best_epoch.same_buffers_as_writer). Validated on the 12 train images:
    each process evaluates batches of -b 4 of them."""
    out = tmp_path / "model.pt"
    _torchrun([{"script": "train.py", "argv": argv(synthetic_pool, patch_index, out, 2, "--val-split", "train")}],
              tmp_path)
    training = torch.load(out, weights_only=True)["training"]
    evaluate.main(["--checkpoint", str(out), "--data-root", str(synthetic_pool), "--split", "train",
                   "--out", str(tmp_path / "metrics.json"), *CPU])
    miou = json.loads((tmp_path / "metrics.json").read_text())["miou"]
    assert len(training["val_miou_by_epoch"]) == 2 and training["best_val_miou"] == pytest.approx(miou, abs=1e-12)
