"""Every seed of training and of scoring the pool, derived from --seed here and nowhere else.

Nothing random in training carries state from one epoch to the next: the torch RNG
(dropout), the order of the images, each sample's crop, flip and augmentation, and
the contrastive loss's draws are all drawn afresh from (seed, epoch, ...). A run
resumed at an epoch boundary therefore continues exactly as the uninterrupted run
would have. The formulas are part of what a --seed means: changing one changes the
weights of every run.
"""
import random

import torch


def seed_initial_weights(seed):
    """Seed torch's global RNG for the initial weights: the model's, then s4GAN's discriminator's."""
    torch.manual_seed(seed)


def seed_epoch(seed, epoch, rank=0):
    """Seed torch's global RNG for an epoch's steps: dropout and any other torch randomness. Under torchrun each
    process (`rank`) draws its own masks for its share of the batch; rank 0 those of a single process."""
    torch.manual_seed(_epoch_seed(seed, epoch) if rank == 0
                      else random.Random(f"{seed}/{epoch}/rank/{rank}").getrandbits(63))


def labeled_order(seed, epoch, count):
    """The order in which an epoch visits the `count` labeled images: a permutation of range(count)."""
    return _permutation(_epoch_seed(seed, epoch), count)


def labeled_sample_rng(seed, epoch, index):
    """The draws of labeled sample `index` in an epoch (its crop and flip); an image seen twice in an epoch is two
    samples (lib.engine.epoch_order), each with its own draws."""
    # A string seed is hashed deterministically: the same in every DataLoader worker process.
    return random.Random(f"{seed}/{epoch}/{index}")


def unlabeled_order(seed, epoch, repeat, count):
    """The order of pass `repeat` over the `count` unlabeled crops in an epoch (an epoch takes as many passes
    as its labeled steps need): a permutation of range(count)."""
    return _permutation(_epoch_seed(seed, _unlabeled_pass(epoch, repeat)), count)


def unlabeled_sample_rng(seed, epoch, repeat, index):
    """The draws of the unlabeled image at `index` in pass `repeat` of an epoch (crop, flip, strong augmentation)."""
    return random.Random(f"{seed}/{_unlabeled_pass(epoch, repeat)}/unlabeled/{index}")


def reco_generator(seed, epoch, step, device):
    """The torch.Generator on `device` of the contrastive loss's draws (queries, negatives) in one training step."""
    generator = torch.Generator(device)
    generator.manual_seed(random.Random(f"{seed}/{epoch}/reco/{step}").getrandbits(63))
    return generator


def seed_scoring_batch(seed, first_image_id):
    """Seed torch's global RNG (every device's) for the draws of scoring one batch of images (BALD's dropout masks),
    from --seed and the batch's first image: a batch gets the same draws whichever batches ran before it, so a pool
    scored by the processes of torchrun scores as in one process."""
    torch.manual_seed(random.Random(f"{seed}/score/{first_image_id}").getrandbits(63))


def _epoch_seed(seed, epoch):
    return seed * 100_003 + epoch


def _unlabeled_pass(epoch, repeat):
    return epoch * 1_000_000 + repeat


def _permutation(seed, count):
    return torch.randperm(count, generator=torch.Generator().manual_seed(seed)).tolist()
