"""The unlabeled crops of --ssl modes: one DataLoader for the run (lib.semisup.unlabeled.epoch_batches), each
epoch's batches drawn from (seed, epoch, pass) alone, whether workers serve them or not."""
import argparse

import torch

from lib.data import open_dataset
from lib.semisup.unlabeled import PassBatches, TrainingImages, epoch_batches
from lib.units import Unit

CPU = torch.device("cpu")


def test_passes_are_seeded_permutations_in_full_batches_keyed_by_epoch_and_pass():
    batches = PassBatches(seed=3, count=7, batch_size=3)
    batches.epoch, batches.steps = 2, 5
    first = list(batches)
    assert len(batches) == 5 and [len(batch) for batch in first] == [3] * 5  # the 7th crop waits for a later pass
    assert {(epoch, repeat) for batch in first for epoch, repeat, _ in batch} == {(2, 0), (2, 1), (2, 2)}
    for repeat in range(2):
        indices = [i for batch in first[2 * repeat:2 * repeat + 2] for _, _, i in batch]
        assert len(set(indices)) == 6 and set(indices) <= set(range(7))
    assert list(batches) == first
    batches.epoch = 3
    assert list(batches) != first


def test_fewer_crops_than_a_batch_are_one_batch_a_pass():
    batches = PassBatches(seed=0, count=2, batch_size=4)
    batches.epoch, batches.steps = 1, 3
    assert [sorted(i for _, _, i in batch) for batch in batches] == [[0, 1]] * 3


def unlabeled_epochs(pool, workers):
    """The unlabeled batches of epochs 1, 2 and 1 again, 4 steps each."""
    dataset = open_dataset("synthetic", pool, "train")
    images = TrainingImages(dataset, Unit(), {}, [0.0] * 3, [1.0] * 3, (16, 24))
    args = argparse.Namespace(seed=5, unlabeled_batch_size=3, workers=workers)
    of_epoch = epoch_batches(args, images, dataset.ids[:5], CPU)
    return [list(of_epoch(epoch, 4)) for epoch in (1, 2, 1)]


def test_workers_that_live_through_the_run_serve_the_batches_of_a_loader_per_epoch(synthetic_pool):
    alone = unlabeled_epochs(synthetic_pool, workers=0)
    served = unlabeled_epochs(synthetic_pool, workers=2)
    for epoch_alone, epoch_served in zip(alone, served):
        assert len(epoch_alone) == 4
        for (images, targets), (images_served, targets_served) in zip(epoch_alone, epoch_served, strict=True):
            assert images.shape == (3, 3, 16, 24)
            assert torch.equal(images, images_served) and torch.equal(targets, targets_served)
    assert all(torch.equal(a[0], b[0]) for a, b in zip(alone[0], alone[2]))  # epoch 1 again: the same draws
    assert not torch.equal(alone[0][0][0], alone[1][0][0])
