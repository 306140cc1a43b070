"""train.py --steps-per-epoch: epochs of a fixed number of steps, however many labeled samples there are.

S4AL+ counts its epochs in steps: its Table 1 trains 50 (CamVid) or 100 (Cityscapes)
steps of 4 labeled crops per epoch, and 100 or 300 steps of 2 labeled + 4 unlabeled
with self-training; its code draws batch x iterations samples per epoch
(Nishant213/MMLAL, `batch_iters`). An epoch's length therefore does not grow with the
labeled set, and neither does the learning-rate schedule, which counts these steps.

Their sampler draws with replacement. Here an epoch goes through the labeled samples
in the epoch's order (lib.seeding.labeled_order, the one lib.engine.epoch_order
visits) over and over, for as many samples as the steps take: every sample is seen as
often as every other, give or take one, where drawing with replacement would leave
some out of an epoch and show others three times. The k-th visit of sample i is
sample k x count + i, with its own crop and flip (lib.engine.LabeledCrops). With just
enough steps to see every sample once this is lib.engine.epoch_order's epoch.
"""
from lib import seeding
from lib.engine import epoch_order, expected_total_steps, steps_per_epoch


def fixed_steps_order(seed, epoch, count, batch_size, steps):
    """The `steps` x `batch_size` samples of an epoch over `count` labeled samples (indices of LabeledCrops), in
    batches of `batch_size`: the epoch's order of them repeated, visit k of sample i as sample k x count + i."""
    order = seeding.labeled_order(seed, epoch, count)
    return [(j // count) * count + order[j % count] for j in range(steps * batch_size)]


def sample_order(seed, count, batch_size, steps):
    """epoch -> its samples of `count` labeled ones, in batches of `batch_size` (lib.engine.EpochBatches' order_of):
    `steps` batches (fixed_steps_order), or with `steps` None every sample once (lib.engine.epoch_order)."""
    if steps is None:
        return lambda epoch: epoch_order(seed, epoch, count, batch_size)
    return lambda epoch: fixed_steps_order(seed, epoch, count, batch_size, steps)


def epoch_steps(count, batch_size, steps):
    """The steps of an epoch over `count` labeled samples: `steps`, or None: as many as the samples take."""
    return steps or steps_per_epoch(count, batch_size)


def total_steps(count, batch_size, epochs, steps):
    """The steps of the whole run, which the learning-rate schedule counts."""
    return expected_total_steps(count, batch_size, epochs) if steps is None else steps * epochs
