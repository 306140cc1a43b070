"""train.py --steps-per-epoch (lib/fixed_steps.py): the samples of an epoch of N steps, and the schedule's count."""
from collections import Counter

import pytest
import torch

from conftest import Killed, import_script, kill_after_epoch
from lib.data import open_dataset
from lib.engine import EpochBatches, LabeledCrops, epoch_order, persistent_loader
from lib.fixed_steps import fixed_steps_order, sample_order
from lib.index import LabeledIndex, Unit, save_index
from lib.training_run import model_arguments, start_run

train = import_script("train.py")


@pytest.mark.parametrize(("count", "batch_size", "steps"), [(7, 2, 10), (7, 4, 1), (3, 4, 2), (12, 4, 3)])
def test_an_epoch_of_n_steps_sees_every_image_as_often_as_the_others(count, batch_size, steps):
    order = fixed_steps_order(5, 2, count, batch_size, steps)
    assert len(order) == steps * batch_size and len(set(order)) == len(order)  # each sample draws its own crop
    visits = Counter(sample % count for sample in order)  # LabeledCrops' image of a sample
    if len(order) >= count:
        assert set(visits) == set(range(count))
    assert max(visits.values()) - min(visits.values()) <= 1
    assert order == fixed_steps_order(5, 2, count, batch_size, steps)  # seeded
    assert order != fixed_steps_order(5, 3, count, batch_size, steps) or count < 3


@pytest.mark.parametrize(("count", "batch_size"), [(7, 2), (12, 4), (9, 4)])
def test_just_enough_steps_give_the_epoch_of_every_image_once(count, batch_size):
    assert fixed_steps_order(1, 4, count, batch_size, -(-count // batch_size)) == epoch_order(1, 4, count, batch_size)


def test_the_loader_gives_n_full_batches(synthetic_pool):
    dataset = open_dataset("synthetic", synthetic_pool, "train")
    items = {image_id: [image_id] for image_id in dataset.ids[:3]}
    crops = LabeledCrops(dataset, Unit(), items, (16, 24), True, 0, [0, 0, 0], [1, 1, 1])
    batches = list(persistent_loader(crops, EpochBatches(sample_order(0, len(crops), 2, 5), 2), 0))
    assert [len(images) for images, _ in batches] == [2] * 5
    # without: every image once, the last batch filled
    assert len(list(persistent_loader(crops, EpochBatches(sample_order(0, len(crops), 2, None), 2), 0))) == 2


def four_images(pool, folder, out, epochs):
    """train.py's argv on 4 labeled images of `pool` (folder/index.json) for `epochs`, the model to `out`."""
    ids = open_dataset("synthetic", pool, "train").ids
    save_index(folder / "index.json", LabeledIndex("synthetic", "train", Unit(), len(ids)).with_cycle(
        "random", 0, "4", ids[:4]))
    return ["--dataset", "synthetic", "--data-root", str(pool), "--index", str(folder / "index.json"),
            "--out", str(out), "--arch", "tiny", "--epochs", str(epochs), "--batch-size", "2", "--crop", "32x48",
            "--workers", "0", "--device", "cpu"]


def test_the_schedule_counts_the_steps_of_every_epoch(synthetic_pool, tmp_path):
    argv = four_images(synthetic_pool, tmp_path, tmp_path / "model.pt", 2)
    args = train.get_args_parser().parse_args([*argv, "--steps-per-epoch", "3"])
    run = start_run(args, model_arguments(args, 8), 4, torch.device("cpu"))
    assert run.lr_lambda(3) == pytest.approx(0.5 ** 0.9)  # half of 2 epochs x 3 steps, not of 2 x 2
    train.main([*argv, "--steps-per-epoch", "3"])
    checkpoint = torch.load(tmp_path / "model.pt", weights_only=True)
    assert checkpoint["progress"]["done"] == 6 and checkpoint["train_args"]["steps_per_epoch"] == 3


def test_a_resumed_run_of_n_steps_an_epoch_reaches_the_same_weights(synthetic_pool, tmp_path, monkeypatch, capsys):
    models = {}
    for name, kill in (("straight", False), ("resumed", True)):
        argv = [*four_images(synthetic_pool, tmp_path, tmp_path / f"{name}.pt", 3), "--steps-per-epoch", "3",
                "--resume"]
        if kill:
            kill_after_epoch(monkeypatch, train, 1)
            with pytest.raises(Killed):
                train.main(argv)
            monkeypatch.undo()
        capsys.readouterr()
        train.main(argv)
        assert ("after epoch 1/3" in capsys.readouterr().out) == kill
        models[name] = torch.load(tmp_path / f"{name}.pt", weights_only=True)["model"]
    assert all(torch.equal(tensor, models["resumed"][key]) for key, tensor in models["straight"].items())
