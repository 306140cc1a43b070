import json

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import Killed, fail, import_script, kill_after_epoch
from lib.data import IGNORE_INDEX, open_dataset
from lib.data.base import SegmentationDataset
from lib.index import LabeledIndex, Unit, save_index
from lib.models import build_model
from lib.optim import make_optimizer
from lib.training_set import training_images

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


RECO = ["--contrastive", "reco", "--embed-dim", "8", "--reco-negatives", "64"]
S4GAN = ["--ssl", "s4gan", "-u", "2"]
SELFTRAIN = ["--ssl", "selftrain", "--pseudo-threshold", "0.2", "-u", "3", "--teacher"]  # the teacher's path last


# -b 4: 6 images in 2 steps, the second filled up with 2 images of the first
@pytest.mark.parametrize("extra", [["-b", "4"], RECO, S4GAN, [*RECO, *SELFTRAIN]],
                         ids=["plain-filled-batch", "reco", "s4gan", "selftrain"])
def test_resume_after_a_kill_reaches_the_same_weights(synthetic_pool, labeled_index, tmp_path, monkeypatch, capsys,
                                                       extra):
    if extra[-1:] == ["--teacher"]:  # a teacher of 1 epoch
        train.main([*train_args(synthetic_pool, labeled_index, tmp_path / "teacher.pt"), "--epochs", "1"])
        extra = [*extra, str(tmp_path / "teacher.pt")]
    straight = tmp_path / "straight.pt"
    train.main([*train_args(synthetic_pool, labeled_index, straight), *extra])

    resumed = tmp_path / "resumed.pt"
    kill_after_epoch(monkeypatch, train, 2)
    with pytest.raises(Killed):
        train.main([*train_args(synthetic_pool, labeled_index, resumed), *extra, "--resume"])
    monkeypatch.undo()
    assert not resumed.exists() and (tmp_path / "resumed.pt.resume").exists()
    # s4GAN's discriminator and its optimiser go on too: the model's updates depend on them.
    resume_file = torch.load(tmp_path / "resumed.pt.resume", weights_only=True)
    assert {"model", "optimizer", "scheduler", "scaler"} <= set(resume_file)
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


@pytest.mark.parametrize("other, changed", [(["--lr", "0.1"], "lr"),
                                            (["--loss", "dice", "--class-weights", "median-frequency"],
                                             "class_weights, loss")])
def test_resume_refuses_a_run_with_other_settings(synthetic_pool, labeled_index, tmp_path, monkeypatch, other,
                                                  changed):
    out = tmp_path / "model.pt"
    weighted = [*train_args(synthetic_pool, labeled_index, out), "--loss", "both", "--class-weights", "1,1,1,1,1,1,1,2"]
    kill_after_epoch(monkeypatch, train, 1)
    with pytest.raises(Killed):
        train.main(weighted)
    monkeypatch.undo()
    # --lr alone: the weights, read back from the file, are the same
    with pytest.raises(train.UserError, match=rf"model\.pt\.resume: was started with other settings \({changed}\)"):
        train.main([*weighted, "--resume", *other])


def test_resume_reads_flags_newer_than_the_file_as_their_defaults(synthetic_pool, labeled_index, tmp_path,
                                                                  monkeypatch, capsys):
    out = tmp_path / "model.pt"
    kill_after_epoch(monkeypatch, train, 1)
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


def test_train_uses_threads_and_a_resume_may_change_them(synthetic_pool, labeled_index, tmp_path, monkeypatch,
                                                         capsys, restore_threads):
    args = train_args(synthetic_pool, labeled_index, tmp_path / "model.pt")
    kill_after_epoch(monkeypatch, train, 1)
    with pytest.raises(Killed):
        train.main([*args, "--threads", "2"])
    monkeypatch.undo()
    assert torch.get_num_threads() == 2
    train.main([*args, "--threads", "1", "--resume"])  # a runtime flag: not "other settings"
    assert "after epoch 1/3" in capsys.readouterr().out
    assert torch.get_num_threads() == 1
    assert torch.load(tmp_path / "model.pt", weights_only=True)["train_args"]["threads"] == 1


def test_checkpoint_is_self_describing(synthetic_pool, labeled_index, tmp_path):
    out = tmp_path / "model.pt"
    train.main(train_args(synthetic_pool, labeled_index, out))
    checkpoint = torch.load(out, weights_only=True)
    assert checkpoint["model_args"] == {"arch": "tiny", "num_classes": 8, "output_stride": 16, "mc_dropout": False}
    assert checkpoint["class_names"][0] == "sky"
    assert checkpoint["dataset"] == {"name": "synthetic", "split": "train"}
    assert checkpoint["index"]["labeled"] == 6 and checkpoint["index"]["labeled_fraction"] == 0.5
    assert checkpoint["train_args"]["lr"] == 0.05 and checkpoint["epochs"] == 3
    assert checkpoint["training"] == {"crop": [32, 32], "class_weights": None}
    # The weights without the states only a resumed run needs (SGD's momentum alone is their size again).
    assert not {"optimizer", "scheduler", "scaler"} & set(checkpoint)


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
    steps = 3 * -(-num_labeled // batch_size)  # 3 epochs of every image; a short last batch is filled up
    if schedule == "poly":  # lr * (1 - step / total) ** 0.9: above 0 at the last step
        assert used == pytest.approx([0.05 * (1 - k / steps) ** 0.9 for k in range(steps)])
    else:
        assert used == [0.05] * steps
    assert torch.load(tmp_path / "model.pt", weights_only=True)["progress"]["done"] == steps


def lesion_pool(root, sizes, side, labeled):
    """A `folder` pool of two classes in root/pool: image i<k> of sizes[k] (H, W), a bright side x side square
    lesion (mask 1) on a dark background (mask 0), at a place of its own; root/index.json labels the first
    `labeled`, and only they have masks. Returns (pool, index)."""
    pool = root / "pool"
    for folder in ("images", "masks"):
        (pool / "train" / folder).mkdir(parents=True)
    (pool / "classes.json").write_text(json.dumps(["background", "lesion"]))
    rng = np.random.default_rng(0)
    for k, (height, width) in enumerate(sizes):
        mask = np.zeros((height, width), np.uint8)
        top, left = rng.integers(0, height - side + 1), rng.integers(0, width - side + 1)
        mask[top:top + side, left:left + side] = 1
        Image.fromarray(np.repeat(mask[..., None] * 200 + 20, 3, axis=2)).save(pool / "train" / "images" / f"i{k}.png")
        if k < labeled:
            Image.fromarray(mask).save(pool / "train" / "masks" / f"i{k}.png")
    ids = [f"i{k}" for k in range(labeled)]
    save_index(root / "index.json", LabeledIndex("folder", "train", Unit(), len(sizes)).with_cycle("random", 0,
                                                                                                     "6", ids))
    return pool, root / "index.json"


def lesion_args(pool, index, out, *flags):
    """train.py on a lesion_pool: the default flags but for a tiny model on the CPU, 1 epoch unless `flags` say."""
    return ["--dataset", "folder", "--data-root", str(pool), "--index", str(index), "--out", str(out), "--arch", "tiny",
            "--epochs", "1", "--workers", "0", "--device", "cpu", *flags]


def test_default_flags_train_every_labeled_image_each_epoch_on_whole_tiny_images(tmp_path, monkeypatch):
    pool, index = lesion_pool(tmp_path, [(24, 32)] * 5 + [(16, 16)], side=8, labeled=5)  # the unlabeled i5 is smaller
    loaded, batches = [], []  # the labeled images read, the batches of every epoch
    load_pair = SegmentationDataset.load_pair
    monkeypatch.setattr(SegmentationDataset, "load_pair", lambda self, image_id: loaded.append(image_id)
                        or load_pair(self, image_id))
    train_one_epoch = train.train_one_epoch

    def recording(model, epoch, loader, *rest, **keywords):
        batches.append(list(loader))
        return train_one_epoch(model, epoch, batches[-1], *rest, **keywords)

    monkeypatch.setattr(train, "train_one_epoch", recording)
    train.main(lesion_args(pool, index, tmp_path / "model.pt", "--epochs", "2", "-b", "2"))
    assert [len(epoch) for epoch in batches] == [3, 3]  # ceil(5 / 2) steps, every one of 2 images
    for epoch in batches:
        for images, masks in epoch:  # the whole image, nothing padded
            assert images.shape == (2, 3, 24, 32) and masks.shape == (2, 24, 32) and (masks != IGNORE_INDEX).all()
    for epoch in (loaded[:6], loaded[6:]):  # every image, one of them twice
        assert sorted(set(epoch)) == [f"i{k}" for k in range(5)] and len(epoch) == 6
    checkpoint = torch.load(tmp_path / "model.pt", weights_only=True)
    assert checkpoint["train_args"]["crop"] is None and checkpoint["training"]["crop"] == [24, 32]


@pytest.mark.parametrize("flags, crop", [([], (24, 26)), (["--ssl", "s4gan"], (20, 26)),
                                         (["--crop", "32x48"], (32, 48)), (["--crop", "300"], (300, 300))],
                         ids=["labeled", "ssl-pool", "asked", "asked-large"])
def test_the_crop_fits_the_images_cropped_from_unless_asked(tmp_path, flags, crop):
    pool, index = lesion_pool(tmp_path, [(24, 32)] * 3 + [(30, 26), (20, 40)], side=4, labeled=4)
    args = train.get_args_parser().parse_args(lesion_args(pool, index, tmp_path / "model.pt", *flags))
    assert training_images(args)[0].crop == crop


@pytest.mark.parametrize("side, lr, epochs, warned", [(4, "1e-9", "1", True), (13, "0.05", "2", False)],
                         ids=["learns-nothing", "learns"])
def test_a_model_no_better_than_the_majority_class_is_warned_of(tmp_path, capsys, side, lr, epochs, warned):
    pool, index = lesion_pool(tmp_path, [(24, 32)] * 6, side=side, labeled=6)
    train.main(lesion_args(pool, index, tmp_path / "model.pt", "-b", "2", "--lr", lr, "--epochs", epochs))
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if "no better than predicting 'background' everywhere" in line]
    assert len(lines) == warned, err
    if warned:
        assert lines[0].startswith("warning: the model's mIoU on its training crops of the last epoch (")
        assert "--loss dice or --class-weights median-frequency" in lines[0]


@pytest.mark.parametrize("loss", ["dice", "both"])
def test_dice_losses_train_with_median_frequency_weights(tmp_path, loss):
    pool, index = lesion_pool(tmp_path, [(24, 32)] * 4, side=12, labeled=4)
    train.main(lesion_args(pool, index, tmp_path / "model.pt", "-b", "2", "--loss", loss,
                           "--class-weights", "median-frequency"))
    checkpoint = torch.load(tmp_path / "model.pt", weights_only=True)
    lesion, background = 4 * 12 * 12, 4 * (24 * 32 - 12 * 12)  # the median of two shares is their mean, 1/2
    half = (lesion + background) / 2
    assert checkpoint["training"]["class_weights"] == pytest.approx([half / background, half / lesion])
    assert checkpoint["train_args"]["loss"] == loss and torch.isfinite(torch.tensor(checkpoint["loss"]))


@pytest.mark.parametrize("weights, message", [
    ("1,2,3", "error: --class-weights: 3 weights given, but the dataset has 2 classes (background, lesion)"),
    ("1,0", "error: argument --class-weights: expected median-frequency or comma-separated numbers above 0"),
])
def test_class_weights_of_the_wrong_count_are_one_error_line(tmp_path, capsys, weights, message):
    pool, index = lesion_pool(tmp_path, [(24, 32)] * 2, side=4, labeled=2)
    assert fail(train, lesion_args(pool, index, tmp_path / "model.pt", "--class-weights", weights), capsys).startswith(
        message)
    assert not (tmp_path / "model.pt").exists()


def optimizer_of(*flags, embed_dim=0, frozen=False):
    """lib.optim.make_optimizer for a tiny model (with a representation head of `embed_dim`, a frozen backbone) under
    train.py's `flags`; returns the optimiser and the model's {id(parameter): name}."""
    args = train.get_args_parser().parse_args(["--dataset", "synthetic", "--data-root", ".", "--index", "i.json",
                                               "--out", "m.pt", "--lr", "0.05", *flags])
    model = build_model({"arch": "tiny", "num_classes": 3, "output_stride": 16, "mc_dropout": False,
                               "embed_dim": embed_dim})
    if frozen:
        model.freeze_backbone()
    return make_optimizer(args, model), {id(p): name for name, p in model.named_parameters()}


@pytest.mark.parametrize("frozen", [False, True], ids=["trained-backbone", "frozen-backbone"])
def test_the_head_learns_at_head_lr_mult_times_the_backbones_rate(frozen):
    optimizer, names = optimizer_of("--head-lr-mult", "10", embed_dim=4, frozen=frozen)
    by_lr = {group["lr"]: {names[id(p)] for p in group["params"]} for group in optimizer.param_groups}
    head = {name for name in names.values() if not name.startswith("backbone.")}
    assert {"aspp.project.0.weight", "decoder.classifier.bias", "representation.3.weight"} <= head
    assert by_lr == ({0.5: head} if frozen else {0.05: set(names.values()) - head, 0.5: head})
    # The default multiplier, 1: one group of every trainable parameter, as before the flag
    optimizer, names = optimizer_of(embed_dim=4, frozen=frozen)
    trainable = head if frozen else set(names.values())
    assert [(group["lr"], {names[id(p)] for p in group["params"]}) for group in optimizer.param_groups] == \
        [(0.05, trainable)]


def test_both_groups_follow_the_poly_schedule_and_the_flags_are_recorded(synthetic_pool, labeled_index, tmp_path,
                                                                         monkeypatch):
    used = []  # the learning rates of the groups, and nesterov, at every optimiser step
    step = torch.optim.SGD.step
    monkeypatch.setattr(torch.optim.SGD, "step", lambda self, *a, **k: used.append(
        ([group["lr"] for group in self.param_groups], self.defaults["nesterov"])) or step(self, *a, **k))
    out = tmp_path / "model.pt"
    train.main([*train_args(synthetic_pool, labeled_index, out), "--head-lr-mult", "10", "--nesterov"])
    steps = 3 * 3  # 3 epochs of 6 images in batches of 2
    factors = [(1 - k / steps) ** 0.9 for k in range(steps)]
    assert [lrs for lrs, _ in used] == [pytest.approx([0.05 * f, 0.5 * f]) for f in factors]
    assert all(nesterov for _, nesterov in used)
    recorded = torch.load(out, weights_only=True)["train_args"]
    assert recorded["head_lr_mult"] == 10 and recorded["nesterov"] is True


@pytest.mark.parametrize("flags, message", [
    (["--nesterov", "--optimizer", "adam"], "error: --nesterov is a momentum of SGD, but --optimizer is adam"),
    (["--nesterov", "--momentum", "0"], "error: --nesterov needs a momentum: give --momentum above 0"),
    (["--head-lr-mult", "0"], "error: argument --head-lr-mult: must be a finite number in (0, inf), got '0'"),
])
def test_misplaced_optimiser_flags_are_one_error_line(synthetic_pool, labeled_index, tmp_path, capsys, flags,
                                                      message):
    out = tmp_path / "model.pt"
    assert fail(train, [*train_args(synthetic_pool, labeled_index, out), *flags], capsys).startswith(message)
    assert not out.exists()
