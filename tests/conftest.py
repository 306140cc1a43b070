import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision

# The shared checks of the bad-input tables report their values as test modules do.
pytest.register_assert_rewrite("bad_input_kit")
REPO_ROOT = Path(__file__).resolve().parent.parent
# The scripts live at the repository root and import `lib` from there; tests do the same.
sys.path.insert(0, str(REPO_ROOT))

from lib.data import open_dataset  # noqa: E402  (needs the path above)
from lib.data.synthetic import write_synthetic_pool  # noqa: E402
from lib.errors import EXIT_USER_ERROR, run_cli  # noqa: E402
from lib.steps import import_script  # noqa: E402, F401  (the tests import scripts from here)


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: runs a whole experiment loop (seconds each); -m 'not slow' leaves "
                                       "them out while iterating, CI runs them")


class RecordedProgress:
    """A lib.progress.Progress that keeps the values of every update instead of printing them."""

    def __init__(self):
        self.values = []

    def update(self, steps=1, items=0, **values):
        self.values.append(values)


LOOP_COMMAND = ["bash", "-c", f"source {REPO_ROOT}/scripts/lib/env.sh && source {REPO_ROOT}/scripts/lib/al_loop.sh "
                "&& run_experiment"]


def loop_env(pool, out, **overrides):
    """The environment of LOOP_COMMAND for a tiny loop on `pool`: one seed, entropy and bald,
    one acquisition cycle; keyword arguments replace or add variables."""
    return {
        **os.environ, "PYTHON": sys.executable, "DATASET": "synthetic", "DATA_ROOT": str(pool), "OUT": str(out),
        "METHODS": "entropy bald", "SEEDS": "0", "INITIAL": "4", "STEP": "2", "CYCLES": "1",
        "TRAIN_ARGS": "--arch tiny --epochs 2 --batch-size 2 --crop 32x48 --workers 0 --device cpu",
        "SELECT_ARGS": "--workers 0 --device cpu", "EVAL_ARGS": "--workers 0 --device cpu", **overrides,
    }


def run_loop(pool, out, **overrides):
    """Run scripts/lib/al_loop.sh (see loop_env) to the end; return what it printed."""
    result = subprocess.run(LOOP_COMMAND, env=loop_env(pool, out, **overrides), capture_output=True, text=True,
                            cwd=REPO_ROOT)
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    return result.stdout


@pytest.fixture()
def restore_threads():
    """torch's thread count as it was before the test (--threads sets it for the process)."""
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def synthetic_pool(tmp_path_factory):
    """A tiny redundant synthetic pool: 12 train images in sequences of 2, 4 val images, 32x48."""
    root = tmp_path_factory.mktemp("synthetic")
    write_synthetic_pool(root, sequences=6, frames_per_sequence=2, val_images=4, height=32, width=48, seed=0)
    return root


@pytest.fixture(scope="session")
def mobilenet_file(tmp_path_factory):
    """A torchvision mobilenet_v2 classification state dict on disk, like the ImageNet file."""
    torch.manual_seed(1)
    path = tmp_path_factory.mktemp("weights") / "mobilenet_v2.pth"
    torch.save(torchvision.models.mobilenet_v2().state_dict(), path)
    return path


def train_tiny_model(pool, folder):
    """folder/index.json (4 random images, by select.py) and folder/model.pt (a tiny model, 1 epoch, by train.py)."""
    data = ["--dataset", "synthetic", "--data-root", str(pool)]
    import_script("select.py").main([*data, "--method", "random", "--budget", "4", "--out", str(folder / "index.json")])
    import_script("train.py").main([*data, "--index", str(folder / "index.json"), "--out", str(folder / "model.pt"),
                                    "--arch", "tiny", "--epochs", "1", "--batch-size", "2", "--crop", "32x48",
                                    "--workers", "0", "--device", "cpu"])
    return folder


@pytest.fixture(scope="session")
def trained_tiny(synthetic_pool, tmp_path_factory):
    """index.json (4 random images) and model.pt (a tiny model trained on them), shared: tests must not change them."""
    return train_tiny_model(synthetic_pool, tmp_path_factory.mktemp("trained"))


class Killed(BaseException):
    """Stands for SIGKILL: nothing after the raise runs, no handler catches it."""


def kill_after_epoch(monkeypatch, train, epoch):
    """Make `train` (train.py, as import_script loaded it) die right after it has written the checkpoint of
    `epoch`."""
    save = train.save_checkpoint

    def save_then_die(path, state):
        save(path, state)
        if state["epoch"] == epoch:
            raise Killed

    monkeypatch.setattr(train, "save_checkpoint", save_then_die)


def fail(script, argv, capsys):
    """Run a script's main as the command line would; return its one-line error."""
    with pytest.raises(SystemExit) as exit_info:
        run_cli(script.main, argv)
    assert exit_info.value.code == EXIT_USER_ERROR
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1, err
    return err


def check_new_mask_path(name, root, split):
    """A labeled image whose mask is moved out of the layout is unlabeled; saved back where annotation_path (the
    worklist's save_label_as) says, the mask is read again, the same."""
    dataset = open_dataset(name, root, split)
    image_id = dataset.ids[0]
    mask, path = dataset.load_mask(image_id), dataset.annotation_path(image_id)
    assert mask is not None
    aside = path.rename(path.with_suffix(".aside"))
    unlabeled = open_dataset(name, root, split)
    assert not unlabeled.has_mask(image_id) and unlabeled.annotation_path(image_id) == path
    aside.rename(path)
    assert np.array_equal(open_dataset(name, root, split).load_mask(image_id), mask)
