"""Redundant pools cut from sequential data ("Best Practices in AL for Semantic Segmentation").

The study builds pools of equal size but growing redundancy from A2D2: Pool-Xf takes
random frames and the X frames after each, Pool-Aug takes random frames and replaces
the following frames by augmented copies (a random crop of 85 % of the area and
colour jitter). These are the pure parts; scripts/make_a2d2_pools.py writes the files.

Consecutive means next in the sequence's order of frame indices, whatever their
spacing (A2D2 labels about every 10th camera frame, CamVid numbers in steps of 30).
"""
import itertools

import numpy as np
from PIL import Image, ImageEnhance

from lib.acquire.temporal import temporal_order
from lib.errors import UserError
from lib.text import plural


def sequences_in_order(frames):
    """{sequence: [ids by frame index]}, sequences sorted: the draw must not depend on dict order."""
    ordered = temporal_order(frames, frames)
    return {name: list(ids) for name, ids in itertools.groupby(ordered, key=lambda item_id: frames[item_id].sequence)}


def consecutive_pool(frames, size, following, seed):
    """Sorted ids of `size` images: runs of a random start frame and the `following` frames after it.

    Runs never overlap and never cross a sequence's end; following=0 is `size` random
    distinct frames. Two draws, so that any size the data can hold is met (a greedy draw
    of free starts can strand gaps too short for a run): how many runs each sequence
    gets, drawn without replacement from all sequences' whole-run slots (so in
    proportion to its length), then where they start: k starts chosen among
    n - k * following positions, the i-th shifted by i * following, place k
    non-overlapping runs uniformly at random in a sequence of n frames.
    """
    length = following + 1
    if size % length:
        raise UserError(f"a pool of {plural(size, 'image')} is not a whole number of runs of {length} frames "
                        f"(1 + {following} following)")
    sequences = sequences_in_order(frames)
    capacity = np.array([len(ids) // length for ids in sequences.values()])  # [S] whole runs per sequence
    runs = size // length
    if runs > capacity.sum():
        raise UserError(f"a pool of {plural(size, 'image')} needs {plural(runs, 'run')} of "
                        f"{plural(length, 'consecutive frame')}; the "
                        f"{plural(len(sequences), 'sequence holds', 'sequences hold')} at most {capacity.sum()} "
                        f"({plural(capacity.sum() * length, 'image')})")
    rng = np.random.default_rng(seed)
    counts = rng.multivariate_hypergeometric(capacity, runs)  # [S] runs per sequence
    pool = []
    for ids, count in zip(sequences.values(), counts):
        slots = np.sort(rng.choice(len(ids) - count * following, count, replace=False))  # [count]
        for start in slots + following * np.arange(count):
            pool += ids[start:start + length]
    return sorted(pool)


def crop_box(height, width, area, rng):
    """(top, left, crop height, crop width) of a random crop of `area` of the image, same aspect ratio."""
    scale = np.sqrt(area)
    crop_h, crop_w = max(1, round(height * scale)), max(1, round(width * scale))
    return int(rng.integers(height - crop_h + 1)), int(rng.integers(width - crop_w + 1)), crop_h, crop_w


def colour_jitter(image, rng, strength):
    """Brightness, contrast and saturation each scaled by a factor in [1 - strength, 1 + strength]."""
    for enhancer in (ImageEnhance.Brightness, ImageEnhance.Contrast, ImageEnhance.Color):
        image = enhancer(image).enhance(rng.uniform(1 - strength, 1 + strength))
    return image


def augmented_copies(image, mask, rng, copies=5, area=0.85, jitter=0.2):
    """`copies` (image, mask) pairs, each a random crop of `area` resized back to the original size.

    image [H, W, 3] uint8, mask [H, W] uint8 class ids. The image is resized bilinearly and
    colour-jittered; the mask is resized with nearest neighbours, so it only holds the
    original's class ids, and is not jittered.
    """
    height, width = mask.shape
    pairs = []
    for _ in range(copies):
        top, left, crop_h, crop_w = crop_box(height, width, area, rng)
        box = (left, top, left + crop_w, top + crop_h)
        crop = Image.fromarray(image).resize((width, height), Image.BILINEAR, box=box)
        label = Image.fromarray(mask).resize((width, height), Image.NEAREST, box=box)
        pairs.append((np.asarray(colour_jitter(crop, rng, jitter)), np.asarray(label)))
    return pairs
