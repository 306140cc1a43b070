import pytest
import torch

from lib.threads import default_threads, use_threads
from test_train import Killed, kill_after_epoch, labeled_index, train, train_args  # noqa: F401 (a fixture)


@pytest.fixture()
def restore_threads():
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


@pytest.mark.parametrize("cpus, environ, expected", [
    (2, {}, 1),  # the shared 2-core machine: one thread, the other core for the loader and the rest
    (16, {}, 15),
    (1, {}, 1),
    (16, {"OMP_NUM_THREADS": "4"}, 4),  # the user's own setting wins
    (16, {"OMP_NUM_THREADS": ""}, 15),
    (16, {"OMP_NUM_THREADS": "0"}, 15),
    (16, {"OMP_NUM_THREADS": "four"}, 15),
])
def test_the_default_leaves_a_cpu_and_follows_omp_num_threads(cpus, environ, expected):
    assert default_threads(cpus, environ) == expected


def test_use_threads_sets_torch_threads(restore_threads):
    torch.set_num_threads(1)
    assert use_threads(2) == 2 and torch.get_num_threads() == 2
    assert use_threads(None) == torch.get_num_threads() >= 1


def test_train_uses_threads_and_a_resume_may_change_them(synthetic_pool, labeled_index, tmp_path, monkeypatch,
                                                         capsys, restore_threads):
    args = train_args(synthetic_pool, labeled_index, tmp_path / "model.pt")
    kill_after_epoch(monkeypatch, 1)
    with pytest.raises(Killed):
        train.main([*args, "--threads", "2"])
    monkeypatch.undo()
    assert torch.get_num_threads() == 2
    train.main([*args, "--threads", "1", "--resume"])  # a runtime flag: not "other settings"
    assert "after epoch 1/3" in capsys.readouterr().out
    assert torch.get_num_threads() == 1
    assert torch.load(tmp_path / "model.pt", weights_only=True)["train_args"]["threads"] == 1
