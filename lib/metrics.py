"""Segmentation and active-learning metrics.

Per evaluation: a confusion matrix (one `torch.bincount`, as in torchvision's
segmentation reference), per-class IoU and Dice (F1), their means, and pixel accuracy.
In a two-class task class 0 is the background and class 1 the foreground (the
medical convention: lesion, organ, vessel): lib/report.py records class 1's IoU and
Dice as the foreground's, the numbers such papers report.

Per experiment, over the active-learning curve (one point per cycle):
mIoU@B and AUC@B, the area under the budget curve of "Best Practices in Active
Learning for Semantic Segmentation", appendix C, Eq. (1):

    AUC@B = sum_i (b_{i+1} - b_i) (p_i + p_{i+1}) / 2

with b_i the labeled budget in % of the pool and p_i the mIoU in %, from the
initial budget up to B. The paper's tables report that sum divided by 100, and so
does `auc_at_budget` (a flat curve at 68.42 from 10 % to 50 % gives 27.37). The
curve may be of another metric (mean Dice): the functions only see numbers in %.

A B that lies between two cycles (a 96-item pool labels 31.25 % and 41.67 %, and
B = 40) is read off the straight line between them: value@B is that line at B, and
AUC@B ends with the trapezoid from the cycle before B to that point. A B beyond the
last cycle or before the first is never extrapolated: ValueError.

Units: the confusion-matrix metrics return fractions in [0, 1]; the curve
functions take percentages (budgets in % of the pool, mIoU in %), the units the
paper reports, so a curve can be checked against its tables by eye.
"""
import json

import numpy as np
import torch

from lib.fileio import is_number
from lib.text import plural

# Two budgets closer than this are the same point of the curve: budgets come from
# float arithmetic (e.g. 3 * 2.5) and from JSON, so exact equality is too strict.
BUDGET_TOL = 1e-6


def confusion_matrix(pred, target, num_classes, ignore_index=255):
    """Confusion matrix [C, C] of integer label maps; rows = ground truth, cols = prediction.

    `pred` and `target` are integer tensors of the same shape (any shape: one image
    or a batch). Pixels whose target is `ignore_index` are left out. Sum the
    matrices of several batches to evaluate a whole split.

    Raises ValueError for a target label outside [0, C) that is not `ignore_index`
    or for a prediction outside [0, C): either would silently land in another
    class's cell of the flattened bincount.
    """
    if pred.shape != target.shape:
        raise ValueError(f"pred shape {tuple(pred.shape)} != target shape {tuple(target.shape)}")
    if pred.is_floating_point() or target.is_floating_point():
        raise ValueError("pred and target must be integer label maps, not scores")
    # int64 before `num_classes * target`: a uint8 target would overflow past 255.
    pred = pred.reshape(-1).long()
    target = target.reshape(-1).long()

    valid = target != ignore_index
    bad = valid & ((target < 0) | (target >= num_classes))
    if bad.any():
        labels = torch.unique(target[bad]).tolist()
        raise ValueError(f"target labels {labels} outside [0, {num_classes}) "
                         f"and not the ignore index {ignore_index}")
    bad = (pred < 0) | (pred >= num_classes)
    if bad.any():
        labels = torch.unique(pred[bad]).tolist()
        raise ValueError(f"predicted labels {labels} outside [0, {num_classes})")

    # Cell (t, p) of the matrix is bin t * C + p of the flattened one.
    counts = torch.bincount(num_classes * target[valid] + pred[valid], minlength=num_classes ** 2)
    return counts.reshape(num_classes, num_classes)


def _as_confusion(confusion):
    confusion = torch.as_tensor(confusion, dtype=torch.float64)
    if confusion.ndim != 2 or confusion.shape[0] != confusion.shape[1]:
        raise ValueError(f"confusion matrix must be square, got shape {tuple(confusion.shape)}")
    if confusion.sum() == 0:
        raise ValueError("confusion matrix is empty: no valid pixels were evaluated")
    return confusion


def iou_per_class(confusion):
    """IoU of each class, tp / (tp + fp + fn), as a list of floats in [0, 1].

    None for a class absent from both the ground truth and the prediction: its IoU
    is 0 / 0, and counting it as 0 or 1 would move the mean for no reason. A class
    predicted but absent from the ground truth gets 0 (all false positives).
    """
    confusion = _as_confusion(confusion)
    tp = confusion.diag()
    union = confusion.sum(dim=0) + confusion.sum(dim=1) - tp  # tp + fp + fn
    return [float(t / u) if u > 0 else None for t, u in zip(tp.tolist(), union.tolist())]


def mean_iou(confusion):
    """Mean IoU in [0, 1] over the classes whose IoU is defined (see `iou_per_class`)."""
    return _mean_of_defined(iou_per_class(confusion))


def dice_per_class(confusion):
    """Dice (F1) of each class, 2 tp / (2 tp + fp + fn), as a list of floats in [0, 1].

    None where IoU is None (absent from the ground truth and the prediction: 0 / 0).
    Per class, Dice = 2 IoU / (1 + IoU): the same ranking, larger numbers.
    """
    confusion = _as_confusion(confusion)
    tp = confusion.diag()
    total = confusion.sum(dim=0) + confusion.sum(dim=1)  # 2 tp + fp + fn
    return [float(2 * t / n) if n > 0 else None for t, n in zip(tp.tolist(), total.tolist())]


def mean_dice(confusion):
    """Mean Dice in [0, 1] over the classes whose Dice is defined (see `dice_per_class`)."""
    return _mean_of_defined(dice_per_class(confusion))


def _mean_of_defined(values):
    defined = [value for value in values if value is not None]
    return sum(defined) / len(defined)


def pixel_accuracy(confusion):
    """Fraction of the valid pixels whose prediction equals the ground truth."""
    confusion = _as_confusion(confusion)
    return float(confusion.diag().sum() / confusion.sum())


def check_curve(budgets, mious):
    """The curve as two lists of floats, or ValueError naming the first entry at fault.

    JSON gives strings, null and booleans as readily as numbers, and float() would
    take "50" and true: only numbers pass.
    """
    budgets, mious = list(budgets), list(mious)
    if not budgets or len(budgets) != len(mious):
        raise ValueError(f"need one mIoU per budget, got {plural(len(budgets), 'budget')} "
                         f"and {plural(len(mious), 'mIoU')}")
    # Both are percentages; a value outside [0, 100] means fractions or image counts.
    for name, values in (("budgets", budgets), ("miou", mious)):
        for i, v in enumerate(values):
            if not is_number(v):
                raise ValueError(f"{name}[{i}] {json.dumps(v)} is not a number")
            if not 0.0 <= v <= 100.0:  # NaN fails it too, and 1e999 reads as Infinity
                raise ValueError(f"{name}[{i}] {json.dumps(v)} is not a percentage in [0, 100]")
    budgets, mious = [float(b) for b in budgets], [float(p) for p in mious]
    for i in range(1, len(budgets)):
        if not budgets[i] > budgets[i - 1]:
            raise ValueError(f"budgets must be strictly increasing, got budgets[{i - 1}] {budgets[i - 1]:g} "
                             f"then budgets[{i}] {budgets[i]:g}")
    return budgets, mious


def budget_position(budgets, budget):
    """Where `budget` lies on a curve of these budgets (strictly increasing): (i, 0.0) at point i, within
    BUDGET_TOL, or (i, t) with 0 < t < 1 on the straight line from point i to point i + 1. ValueError before
    the first point or after the last: a curve is never extrapolated."""
    for i, b in enumerate(budgets):
        if abs(b - budget) <= BUDGET_TOL:
            return i, 0.0
    for i, (b0, b1) in enumerate(zip(budgets, budgets[1:])):
        if b0 < budget < b1:
            return i, (budget - b0) / (b1 - b0)
    available = ", ".join(f"{b:g}" for b in budgets)
    raise ValueError(f"budget {budget:g} is not a point of the curve nor between two of its points "
                     f"(budgets: {available})")


def _on_line(values, i, t):
    return values[i] if t == 0 else values[i] + t * (values[i + 1] - values[i])


def auc_at_budget(budgets, values, budget):
    """AUC@B of the study's appendix C, Eq. (1), divided by 100 as in its tables.

    `budgets` are the labeled budgets of the cycles in % of the pool, strictly
    increasing, the first being the initial random budget; `values` the metric in %
    (mIoU in the study) after each cycle. The trapezoids run from the first budget up
    to `budget`; at the first budget the area is 0. A `budget` between two cycles ends
    with the trapezoid up to the interpolated point (see `budget_position`).
    """
    budgets, values = check_curve(budgets, values)
    last, t = budget_position(budgets, budget)
    area = sum((budgets[i + 1] - budgets[i]) * (values[i] + values[i + 1]) / 2 for i in range(last))
    area += (budget - budgets[last]) * (values[last] + _on_line(values, last, t)) / 2 if t else 0.0
    return area / 100.0


def value_at_budget(budgets, values, budget):
    """The metric at B in % (mIoU@B): that of the cycle whose budget is `budget`, or the straight line between
    the two cycles around it (see `budget_position`)."""
    budgets, values = check_curve(budgets, values)
    return _on_line(values, *budget_position(budgets, budget))


def mean_std(values):
    """Mean and sample standard deviation (ddof=1) of per-seed results.

    The papers report the spread across a handful of seeds (3 in the study); these
    are a sample of the seeds one could run, so the unbiased-variance estimate
    (ddof=1) is the honest spread, where ddof=0 would understate it. A single value
    has no spread: std 0.0.
    """
    values = np.asarray([float(v) for v in values], dtype=np.float64)
    if values.size == 0:
        raise ValueError("mean_std of no values")
    std = float(values.std(ddof=1)) if values.size > 1 else 0.0
    return float(values.mean()), std
