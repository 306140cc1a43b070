"""Losses of the labeled crops (train.py --loss) and their class weights (--class-weights).

Each loss maps (logits [B, C, H, W], masks [B, H, W], weight [C] or None) to a scalar
over the pixels whose mask is not IGNORE_INDEX; a batch without such pixels gives 0.

- ce: cross-entropy, the papers' loss (the default).
- dice: soft multi-class Dice on the softmax probabilities, pooled over the batch's
  pixels, 1 - the mean Dice of the classes in play (Milletari et al., V-Net; Sudre et
  al.'s generalised form without its volume weights). It does not shrink a rare class
  to its pixel share as cross-entropy does.
- both: their sum, as nnU-Net trains.

Class weights scale each pixel's cross-entropy by its true class's weight (a weighted
mean, so the scale of the weights does not change the learning rate's meaning) and
each class's term in Dice's class mean. `median_frequency_weights` gives SegNet's.
"""
import argparse
import functools

import numpy as np
import torch
import torch.nn.functional as F

from lib.cli import positive_float
from lib.data.base import IGNORE_INDEX
from lib.errors import UserError

MEDIAN_FREQUENCY = "median-frequency"
# Added to Dice's numerator and denominator: one pixel's worth, nothing against a batch's thousands of pixels, and
# it keeps the ratio defined and its gradient bounded for a class with little probability mass.
DICE_SMOOTH = 1.0


def _safe_divide(total, count):
    """total / count, 0 where count is 0 (then total is 0 too): without a GPU sync."""
    return total / torch.where(count > 0, count, torch.ones_like(count))


def mean_cross_entropy(logits, masks, weight=None):
    """Cross-entropy averaged over the pixels that are not ignored; 0 when all are (a crop of unconfident pixels).

    With `weight` [C] a weighted mean: each pixel counts as the weight of its true class.
    """
    total = F.cross_entropy(logits.float(), masks, weight=weight, ignore_index=IGNORE_INDEX, reduction="sum")
    valid = masks != IGNORE_INDEX  # [B, H, W]
    return _safe_divide(total, valid.sum() if weight is None else weight[masks[valid]].sum())


def soft_dice_loss(logits, masks, weight=None, smooth=DICE_SMOOTH):
    """1 - the mean over the classes in play of (2 |P.G| + s) / (|P| + |G| + s), over the batch's pixels that are
    not ignored: P the softmax probabilities of a class, G its one-hot truth, s `smooth`.

    In play: a class of the batch's truth, or the argmax of a pixel (its false positives cost, where a class absent
    from both would only add a meaningless term near 1 or 0). With `weight` [C] a weighted mean over them.
    """
    num_classes = logits.shape[1]
    valid = (masks != IGNORE_INDEX)[:, None]  # [B, 1, H, W]
    probs = logits.float().softmax(dim=1) * valid  # [B, C, H, W], 0 on ignored pixels
    classes = torch.arange(num_classes, device=masks.device)[None, :, None, None]
    truth = masks[:, None] == classes  # [B, C, H, W] one-hot; IGNORE_INDEX matches no class
    intersection = (probs * truth).sum(dim=(0, 2, 3))  # [C]
    predicted, actual = probs.sum(dim=(0, 2, 3)), truth.sum(dim=(0, 2, 3))  # [C], [C]
    dice = (2 * intersection + smooth) / (predicted + actual + smooth)  # [C]
    argmax = logits.detach().argmax(dim=1)[valid[:, 0]]  # [N] over the pixels that count
    in_play = (actual > 0) | (torch.bincount(argmax, minlength=num_classes) > 0)  # [C]
    share = in_play.float() if weight is None else in_play * weight  # [C]
    return _safe_divide(((1 - dice) * share).sum(), share.sum())


def cross_entropy_and_dice(logits, masks, weight=None):
    return mean_cross_entropy(logits, masks, weight) + soft_dice_loss(logits, masks, weight)


# train.py --loss: the loss of the labeled crops.
LOSSES = {"ce": mean_cross_entropy, "dice": soft_dice_loss, "both": cross_entropy_and_dice}


def make_criterion(name, weights, device):
    """The loss LOSSES[name] with class `weights` (a list, or None) on `device`: (logits, masks) -> scalar."""
    weight = None if weights is None else torch.tensor(weights, dtype=torch.float32, device=device)  # [C]
    return functools.partial(LOSSES[name], weight=weight)


def add_loss_flags(group):
    """train.py's --loss and --class-weights."""
    group.add_argument("--loss", default="ce", choices=tuple(LOSSES),
                       help="loss of the labeled pixels: ce cross-entropy (the papers'), dice soft Dice, both their "
                            "sum (nnU-Net); the --ssl modes keep their own terms")
    group.add_argument("--class-weights", type=class_weights_flag, default=None, metavar="W1,W2,...",
                       help="weight of each class in the loss: one positive number per class, or median-frequency "
                            "(SegNet: median class share / class share in the labeled pixels; 0 for a class absent "
                            "from them) (default: all 1)")


def class_weights_flag(text):
    """--class-weights: `median-frequency`, or one positive number per class, comma-separated (a tuple)."""
    if text == MEDIAN_FREQUENCY:
        return text
    try:
        return tuple(positive_float(part) for part in text.split(","))
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(f"expected {MEDIAN_FREQUENCY} or comma-separated numbers above 0 (one per "
                                         f"class), got {text!r}") from None


def median_frequency_weights(counts):
    """SegNet's median-frequency balancing: weight_c = median(f) / f_c, f_c the share of class c among the pixels
    `counts` ([C] pixels of each class), the median over the classes that occur; 0 for a class that does not.

    SegNet divides a class's pixels by those of the images it occurs in; with one total per class we divide by all
    labeled pixels, the same when every class occurs in every image.
    """
    counts = np.asarray(counts, dtype=np.float64)
    present = counts > 0
    if not present.any():
        raise ValueError("no labeled pixel to count the classes of")
    frequency = counts / counts.sum()
    weights = np.zeros_like(frequency)
    weights[present] = np.median(frequency[present]) / frequency[present]
    return weights.tolist()


def class_weights(spec, class_names, counts):
    """The [C] class weights of --class-weights `spec` (None: unweighted) as a list of floats; `counts` are the [C]
    pixels of each class in the labeled area (for median-frequency). A UserError when the count of weights is not
    that of the classes, known once the dataset is open."""
    if spec is None:
        return None
    if spec == MEDIAN_FREQUENCY:
        return median_frequency_weights(counts)
    if len(spec) != len(class_names):
        shown = ", ".join(class_names[:10]) + (", ..." if len(class_names) > 10 else "")
        raise UserError(f"--class-weights: {len(spec)} weights given, but the dataset has {len(class_names)} "
                        f"classes ({shown})")
    return list(spec)
