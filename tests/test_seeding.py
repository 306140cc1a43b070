"""lib/seeding.py: an epoch's draws depend on (seed, epoch, ...) alone, which is what lets --resume continue a killed
run exactly; and every argument of a draw matters."""
import random

import pytest
import torch

from lib import seeding
from lib.data import open_dataset
from lib.engine import EpochBatches, LabeledCrops, epoch_order, persistent_loader
from lib.units import Unit


def epoch_draws(seed, epoch):
    """Something of every kind of draw an epoch makes."""
    seeding.seed_epoch(seed, epoch)
    return {
        "torch": torch.rand(4).tolist(),  # dropout
        "labeled order": seeding.labeled_order(seed, epoch, 10),
        "labeled sample": seeding.labeled_sample_rng(seed, epoch, 3).random(),
        "unlabeled order": seeding.unlabeled_order(seed, epoch, 1, 10),
        "unlabeled sample": seeding.unlabeled_sample_rng(seed, epoch, 1, 3).random(),
        "reco": torch.rand(4, generator=seeding.reco_generator(seed, epoch, 5, "cpu")).tolist(),
    }


def test_an_epoch_draws_the_same_whatever_ran_before_it():
    fresh = epoch_draws(7, 3)
    for epoch in (1, 2):  # the run up to the kill, and other randomness on the way
        epoch_draws(7, epoch)
        torch.rand(100)
        random.random()
    assert epoch_draws(7, 3) == fresh


@pytest.mark.parametrize("other", [(8, 3), (7, 4)], ids=["seed", "epoch"])
def test_every_draw_follows_the_seed_and_the_epoch(other):
    draws, others = epoch_draws(7, 3), epoch_draws(*other)
    assert [kind for kind in draws if draws[kind] == others[kind]] == []


def test_passes_samples_and_steps_of_an_epoch_draw_apart():
    assert seeding.unlabeled_order(7, 3, 0, 10) != seeding.unlabeled_order(7, 3, 1, 10)
    assert seeding.unlabeled_sample_rng(7, 3, 0, 2).random() != seeding.unlabeled_sample_rng(7, 3, 1, 2).random()
    assert seeding.labeled_sample_rng(7, 3, 2).random() != seeding.labeled_sample_rng(7, 3, 4).random()
    assert seeding.labeled_sample_rng(7, 3, 2).random() != seeding.unlabeled_sample_rng(7, 3, 0, 2).random()
    steps = [torch.rand(4, generator=seeding.reco_generator(7, 3, step, "cpu")).tolist() for step in (0, 1)]
    assert steps[0] != steps[1]


def test_orders_are_permutations():
    assert sorted(seeding.labeled_order(7, 3, 50)) == list(range(50))
    assert sorted(seeding.unlabeled_order(7, 3, 2, 50)) == list(range(50))


def test_worker_processes_crop_as_the_main_process_does_in_every_epoch(synthetic_pool):
    """The workers live through the run (persistent): each epoch's samples are still that epoch's draws."""
    dataset = open_dataset("synthetic", synthetic_pool, "train")
    crops = LabeledCrops(dataset, Unit(), {image_id: [image_id] for image_id in dataset.ids[:6]}, (16, 24), True, 7,
                         [0, 0, 0], [1, 1, 1])
    epochs = {}
    for workers in (0, 2):
        batches = EpochBatches(lambda epoch: epoch_order(7, epoch, len(crops), 4), 4)
        loader = persistent_loader(crops, batches, workers)
        for epoch in (3, 4):
            batches.epoch = epoch
            epochs[workers, epoch] = [torch.cat([images.flatten(), masks.flatten().float()])
                                      for images, masks in loader]
    for epoch in (3, 4):
        assert len(epochs[0, epoch]) == 2
        assert all(torch.equal(a, b) for a, b in zip(epochs[0, epoch], epochs[2, epoch], strict=True))
    assert not torch.equal(epochs[2, 3][0], epochs[2, 4][0])  # a new epoch, new draws
