import pytest
import torch

from conftest import import_script
from lib.data import open_dataset
from lib.index import LabeledIndex, Unit, save_index

train = import_script("train.py")


@pytest.fixture()
def labeled_index(synthetic_pool, tmp_path):
    ids = open_dataset("synthetic", synthetic_pool, "train").ids
    index = LabeledIndex("synthetic", "train", Unit(), len(ids)).with_cycle("random", 0, "6", ids[::2])
    save_index(tmp_path / "index.json", index)
    return tmp_path / "index.json"


def train_args(pool, index, out):
    return ["--dataset", "synthetic", "--data-root", str(pool), "--index", str(index), "--out", str(out),
            "--arch", "tiny", "--epochs", "3", "--batch-size", "2", "--crop", "32x32", "--lr", "0.05",
            "--workers", "0", "--device", "cpu", "--seed", "3"]


class Killed(BaseException):
    """Stands for SIGKILL: nothing after the raise runs, no handler catches it."""


def kill_after_epoch(monkeypatch, epoch):
    """Make train.py die right after it has written the checkpoint of `epoch`."""
    save = train.save_checkpoint

    def save_then_die(path, state):
        save(path, state)
        if state["epoch"] == epoch:
            raise Killed

    monkeypatch.setattr(train, "save_checkpoint", save_then_die)


RECO = ["--contrastive", "reco", "--embed-dim", "8", "--reco-negatives", "64"]
S4GAN = ["--ssl", "s4gan", "-u", "2"]
SELFTRAIN = ["--ssl", "selftrain", "--pseudo-threshold", "0.2", "-u", "3", "--teacher"]  # the teacher's path last


@pytest.mark.parametrize("extra", [[], RECO, S4GAN, [*RECO, *SELFTRAIN]], ids=["plain", "reco", "s4gan", "selftrain"])
def test_resume_after_a_kill_reaches_the_same_weights(synthetic_pool, labeled_index, tmp_path, monkeypatch, capsys,
                                                       extra):
    if extra[-1:] == ["--teacher"]:  # a teacher of 1 epoch
        train.main([*train_args(synthetic_pool, labeled_index, tmp_path / "teacher.pt"), "--epochs", "1"])
        extra = [*extra, str(tmp_path / "teacher.pt")]
    straight = tmp_path / "straight.pt"
    train.main([*train_args(synthetic_pool, labeled_index, straight), *extra])

    resumed = tmp_path / "resumed.pt"
    kill_after_epoch(monkeypatch, 2)
    with pytest.raises(Killed):
        train.main([*train_args(synthetic_pool, labeled_index, resumed), *extra, "--resume"])
    monkeypatch.undo()
    assert not resumed.exists() and (tmp_path / "resumed.pt.resume").exists()
    # s4GAN's discriminator and its optimiser go on too: the model's updates depend on them.
    resume_file = torch.load(tmp_path / "resumed.pt.resume", weights_only=True)
    assert ("discriminator" in resume_file) == (extra == S4GAN)
    if extra == S4GAN:  # as .resume files of earlier versions hold it
        assert set(resume_file["discriminator"]) == {"model", "optimizer", "scheduler"}

    capsys.readouterr()
    train.main([*train_args(synthetic_pool, labeled_index, resumed), *extra, "--resume"])
    out = capsys.readouterr().out
    assert "after epoch 2/3" in out
    assert not (tmp_path / "resumed.pt.resume").exists()
    # The progress counts the steps of the whole run, those before the kill included.
    total = torch.load(straight, weights_only=True)["progress"]["done"]
    assert f"epoch 3/3 step {total}/{total} " in out and f"epoch 3/3 step {total // 3}/" not in out

    a = torch.load(straight, weights_only=True)
    b = torch.load(resumed, weights_only=True)
    assert a["epoch"] == b["epoch"] == 3
    for name, tensor in a["model"].items():
        assert torch.equal(tensor, b["model"][name]), name


def test_resume_refuses_a_run_with_other_settings(synthetic_pool, labeled_index, tmp_path, monkeypatch):
    out = tmp_path / "model.pt"
    kill_after_epoch(monkeypatch, 1)
    with pytest.raises(Killed):
        train.main(train_args(synthetic_pool, labeled_index, out))
    monkeypatch.undo()
    with pytest.raises(train.UserError, match=r"model\.pt\.resume: was started with other settings \(lr\)"):
        train.main([*train_args(synthetic_pool, labeled_index, out), "--resume", "--lr", "0.1"])


def test_resume_reads_flags_newer_than_the_file_as_their_defaults(synthetic_pool, labeled_index, tmp_path,
                                                                  monkeypatch, capsys):
    out = tmp_path / "model.pt"
    kill_after_epoch(monkeypatch, 1)
    with pytest.raises(Killed):
        train.main(train_args(synthetic_pool, labeled_index, out))
    monkeypatch.undo()
    resume = tmp_path / "model.pt.resume"
    state = torch.load(resume, weights_only=True)
    for flag in ("contrastive", "embed_dim", "reco_weight", "reco_temperature", "reco_queries", "reco_negatives",
                 "reco_strong_threshold"):
        del state["train_args"][flag]  # as written before --contrastive existed
    torch.save(state, resume)
    with pytest.raises(train.UserError, match=r"other settings \(contrastive, embed_dim, reco_negatives"):
        train.main([*train_args(synthetic_pool, labeled_index, out), "--resume", "--contrastive", "reco"])
    capsys.readouterr()
    train.main([*train_args(synthetic_pool, labeled_index, out), "--resume"])
    assert "after epoch 1/3" in capsys.readouterr().out


def test_checkpoint_is_self_describing(synthetic_pool, labeled_index, tmp_path):
    out = tmp_path / "model.pt"
    train.main(train_args(synthetic_pool, labeled_index, out))
    checkpoint = torch.load(out, weights_only=True)
    assert checkpoint["model_args"] == {"arch": "tiny", "num_classes": 8, "output_stride": 16, "mc_dropout": False}
    assert checkpoint["class_names"][0] == "sky"
    assert checkpoint["dataset"] == {"name": "synthetic", "split": "train"}
    assert checkpoint["index"]["labeled"] == 6 and checkpoint["index"]["labeled_fraction"] == 0.5
    assert checkpoint["train_args"]["lr"] == 0.05 and checkpoint["epochs"] == 3
    assert {"optimizer", "scheduler", "scaler"} <= set(checkpoint)


@pytest.mark.parametrize("schedule", ["poly", "constant"])
@pytest.mark.parametrize("num_labeled, batch_size", [(5, 2), (3, 4)], ids=["one-left-over", "one-short-batch"])
def test_the_schedule_spans_the_steps_taken(synthetic_pool, tmp_path, monkeypatch, schedule, num_labeled, batch_size):
    ids = open_dataset("synthetic", synthetic_pool, "train").ids
    index = LabeledIndex("synthetic", "train", Unit(), len(ids)).with_cycle("random", 0, "6", ids[:num_labeled])
    save_index(tmp_path / "index.json", index)
    used = []  # the learning rate of every optimiser step
    step = torch.optim.SGD.step
    monkeypatch.setattr(torch.optim.SGD, "step", lambda self, *a, **k: used.append(self.param_groups[0]["lr"])
                        or step(self, *a, **k))
    train.main([*train_args(synthetic_pool, tmp_path / "index.json", tmp_path / "model.pt"), "--lr-schedule", schedule,
                "--batch-size", str(batch_size)])
    steps = 3 * max(num_labeled // batch_size, 1)  # 3 epochs; a short last batch is dropped unless it is the only one
    after_last = torch.load(tmp_path / "model.pt", weights_only=True)["scheduler"]["_last_lr"][0]
    if schedule == "poly":  # lr * (1 - step / total) ** 0.9: it reaches 0 just after the last step, not before
        assert used == pytest.approx([0.05 * (1 - k / steps) ** 0.9 for k in range(steps)]) and after_last == 0
    else:
        assert used == [0.05] * steps and after_last == 0.05
