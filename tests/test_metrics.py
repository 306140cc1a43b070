import statistics

import pytest
import torch

from lib.metrics import (
    auc_at_budget,
    confusion_matrix,
    dice_per_class,
    iou_per_class,
    mean_dice,
    mean_iou,
    mean_std,
    pixel_accuracy,
    value_at_budget,
)

# Absent-class example used below, C = 4; class 3 is in neither map.
#   (t, p) pairs: (0,0) (0,1) (1,1) (1,1) (2,2) (2,0)
ABSENT_TARGET = torch.tensor([[0, 0, 1], [1, 2, 2]])
ABSENT_PRED = torch.tensor([[0, 1, 1], [1, 2, 0]])
ABSENT_CONFUSION = [
    [1, 1, 0, 0],
    [0, 2, 0, 0],
    [1, 0, 1, 0],
    [0, 0, 0, 0],
]


# ----------------------------------------------------------------- confusion matrix

def test_confusion_matrix_by_hand_with_ignore():
    target = torch.tensor([[0, 0, 1], [1, 2, 255]])
    pred = torch.tensor([[0, 1, 1], [2, 2, 0]])  # the last pixel is ignored whatever its prediction
    cm = confusion_matrix(pred, target, num_classes=3)
    assert cm.dtype == torch.int64
    assert cm.tolist() == [
        [1, 1, 0],  # rows: ground truth
        [0, 1, 1],
        [0, 0, 1],  # cols: prediction
    ]


def test_confusion_matrix_absent_class_row_and_column_are_zero():
    cm = confusion_matrix(ABSENT_PRED, ABSENT_TARGET, num_classes=4)
    assert cm.tolist() == ABSENT_CONFUSION


def test_confusion_matrix_custom_ignore_index_and_batches_add_up():
    target = torch.tensor([[[0, -1], [1, 1]], [[1, 0], [-1, 0]]])  # batch of 2 images
    pred = torch.tensor([[[0, 1], [1, 0]], [[1, 1], [0, 0]]])
    whole = confusion_matrix(pred, target, num_classes=2, ignore_index=-1)
    parts = confusion_matrix(pred[0], target[0], 2, -1) + confusion_matrix(pred[1], target[1], 2, -1)
    assert whole.tolist() == [[2, 1], [1, 2]]
    assert torch.equal(whole, parts)


def test_confusion_matrix_uint8_does_not_overflow():
    # 19 * 18 + 18 = 360 does not fit in uint8; the result must not depend on the dtype.
    target = torch.tensor([18, 18, 0, 255], dtype=torch.uint8)
    pred = torch.tensor([18, 0, 0, 3], dtype=torch.uint8)
    cm = confusion_matrix(pred, target, num_classes=19)
    assert torch.equal(cm, confusion_matrix(pred.long(), target.long(), num_classes=19))
    assert cm[18, 18] == 1 and cm[18, 0] == 1 and cm[0, 0] == 1 and cm.sum() == 3


@pytest.mark.parametrize("pred, target", [
    ([0, 1], [0, 3]),      # target == num_classes
    ([0, 1], [0, 254]),    # large but not the ignore index
    ([0, 1], [0, -1]),     # negative target
    ([0, 3], [0, 1]),      # prediction == num_classes
    ([-1, 1], [0, 1]),     # negative prediction
])
def test_confusion_matrix_out_of_range_labels_raise(pred, target):
    with pytest.raises(ValueError, match="outside"):
        confusion_matrix(torch.tensor(pred), torch.tensor(target), num_classes=3)


@pytest.mark.parametrize("pred, target", [
    (torch.zeros(2, 3, dtype=torch.long), torch.zeros(3, 2, dtype=torch.long)),
    (torch.zeros(4), torch.zeros(4, dtype=torch.long)),  # scores, not labels
])
def test_confusion_matrix_bad_inputs_raise(pred, target):
    with pytest.raises(ValueError):
        confusion_matrix(pred, target, num_classes=3)


# ----------------------------------------------------------------- IoU, accuracy

def test_iou_per_class_by_hand_absent_class_is_none():
    ious = iou_per_class(torch.tensor(ABSENT_CONFUSION))
    # class 0: tp 1, fp 1, fn 1; class 1: tp 2, fp 1, fn 0; class 2: tp 1, fp 0, fn 1
    assert ious[:3] == pytest.approx([1 / 3, 2 / 3, 1 / 2])
    assert ious[3] is None


def test_mean_iou_excludes_classes_absent_from_both():
    # (1/3 + 2/3 + 1/2) / 3, not / 4 (which would give 0.375).
    assert mean_iou(torch.tensor(ABSENT_CONFUSION)) == pytest.approx(0.5)


def test_class_predicted_but_not_in_ground_truth_counts_as_zero():
    cm = confusion_matrix(torch.tensor([0, 1]), torch.tensor([0, 0]), num_classes=2)
    assert iou_per_class(cm) == pytest.approx([0.5, 0.0])
    assert mean_iou(cm) == pytest.approx(0.25)


def test_perfect_prediction():
    labels = torch.tensor([0, 1, 2, 2])
    cm = confusion_matrix(labels, labels, num_classes=3)
    assert mean_iou(cm) == 1.0 and pixel_accuracy(cm) == 1.0


def test_dice_against_a_confusion_matrix_by_hand():
    # A binary task, background 0 and lesion 1: 100 pixels.
    #   background: 70 right, 10 called lesion (fp of lesion); lesion: 15 right, 5 missed (fn of lesion).
    confusion = torch.tensor([[70, 10], [5, 15]])
    # Dice = 2 tp / (2 tp + fp + fn): background 140 / (140 + 5 + 10), lesion 30 / (30 + 10 + 5).
    assert dice_per_class(confusion) == pytest.approx([140 / 155, 30 / 45])
    assert mean_dice(confusion) == pytest.approx((140 / 155 + 30 / 45) / 2)
    # Per class Dice = 2 IoU / (1 + IoU): lesion IoU 15 / 30.
    assert iou_per_class(confusion)[1] == pytest.approx(0.5) and dice_per_class(confusion)[1] == pytest.approx(2 / 3)


def test_dice_absent_class_is_none_and_left_out_of_the_mean():
    dices = dice_per_class(torch.tensor(ABSENT_CONFUSION))
    # class 0: tp 1, fp 1, fn 1 -> 2/4; class 1: tp 2, fp 1, fn 0 -> 4/5; class 2: tp 1, fp 0, fn 1 -> 2/3
    assert dices[:3] == pytest.approx([2 / 4, 4 / 5, 2 / 3]) and dices[3] is None
    assert mean_dice(torch.tensor(ABSENT_CONFUSION)) == pytest.approx((2 / 4 + 4 / 5 + 2 / 3) / 3)


def test_pixel_accuracy_by_hand():
    assert pixel_accuracy(torch.tensor(ABSENT_CONFUSION)) == pytest.approx(4 / 6)


@pytest.mark.parametrize("metric", [iou_per_class, mean_iou, dice_per_class, mean_dice, pixel_accuracy])
def test_empty_confusion_raises(metric):
    with pytest.raises(ValueError, match="empty"):
        metric(torch.zeros(3, 3, dtype=torch.long))


# ----------------------------------------------------------------- AUC@B, mIoU@B

TEN_TEN = [10, 20, 30, 40, 50]


@pytest.mark.parametrize("miou, expected", [
    (68.42, 27.37),  # Table 2, Cityscapes "100%" row
    (56.87, 22.75),  # Table 2, A2D2 Pool-0f "100%" row
    (67.07, 26.83),  # Table 2, Cityscapes "100%-MCD" row
])
def test_auc_flat_curve_matches_paper_rows(miou, expected):
    auc = auc_at_budget(TEN_TEN, [miou] * 5, 50)
    assert auc == pytest.approx(miou * 40 / 100)
    assert round(auc, 2) == expected


def test_auc_flat_curve_two_two_setting():
    assert auc_at_budget([2, 4, 6, 8, 10], [40.0] * 5, 10) == pytest.approx(8 * 40 / 100)


def test_auc_non_flat_curve_by_hand():
    mious = [50.0, 60.0, 64.0, 66.0, 67.0]
    # trapezoids: 10*(50+60)/2 + 10*(60+64)/2 + 10*(64+66)/2 + 10*(66+67)/2 = 2485
    assert auc_at_budget(TEN_TEN, mious, 50) == pytest.approx(24.85)
    # intermediate budget: only the first two trapezoids, 550 + 620
    assert auc_at_budget(TEN_TEN, mious, 30) == pytest.approx(11.70)
    assert value_at_budget(TEN_TEN, mious, 30) == 64.0


def test_auc_uneven_spacing_by_hand():
    # 2*(30+40)/2 + 6*(40+46)/2 = 70 + 258
    assert auc_at_budget([2, 4, 10], [30.0, 40.0, 46.0], 10) == pytest.approx(3.28)


def test_auc_at_first_budget_is_zero():
    assert auc_at_budget(TEN_TEN, [50.0, 60.0, 64.0, 66.0, 67.0], 10) == 0.0


def test_budget_matching_tolerates_float_noise():
    budgets = [0.1, 0.2, 0.1 * 3]  # 0.30000000000000004
    assert value_at_budget(budgets, [1.0, 2.0, 3.0], 0.3) == 3.0
    assert auc_at_budget(budgets, [1.0, 1.0, 1.0], 0.3) == pytest.approx(0.2 / 100)


@pytest.mark.parametrize("curve_fn", [auc_at_budget, value_at_budget])
@pytest.mark.parametrize("budget", [55, 9.5])
def test_budget_outside_the_curve_is_not_extrapolated(curve_fn, budget):
    with pytest.raises(ValueError, match=rf"budget {budget:g} is not a point of the curve nor between two of its "
                                         r"points \(budgets: 10, 20, 30, 40, 50\)"):
        curve_fn(TEN_TEN, [50.0] * 5, budget)


def test_budget_between_cycles_is_read_off_the_straight_line():
    # A 96-item pool, 10 items a cycle: 10/96, 20/96, 30/96, 40/96 of it; B = 40 % lies between the last two.
    budgets = [100 * n / 96 for n in (10, 20, 30, 40)]
    mious = [40.0, 50.0, 56.0, 60.0]
    t = (40 - budgets[2]) / (budgets[3] - budgets[2])  # 0.84 of the way from 31.25 % to 41.67 %
    at_40 = 56.0 + t * (60.0 - 56.0)
    assert value_at_budget(budgets, mious, 40) == pytest.approx(at_40)
    step = 100 * 10 / 96
    whole = step * (40 + 50) / 2 + step * (50 + 56) / 2  # the trapezoids up to 31.25 %
    part = (40 - budgets[2]) * (56.0 + at_40) / 2  # the last one ends at the interpolated point
    assert auc_at_budget(budgets, mious, 40) == pytest.approx((whole + part) / 100)
    # On a straight line the interpolated area is the exact one: 10 % to 25 % under 50 + (b - 10).
    assert auc_at_budget([10, 20, 30], [50.0, 60.0, 70.0], 25) == pytest.approx(15 * (50 + 65) / 2 / 100)


@pytest.mark.parametrize("curve_fn", [auc_at_budget, value_at_budget])
@pytest.mark.parametrize("budgets, mious", [
    ([10, 20, 20], [50.0, 60.0, 61.0]),  # repeated budget
    ([10, 30, 20], [50.0, 60.0, 61.0]),  # decreasing budget
    ([10, 20, 30], [50.0, 60.0]),        # lengths differ
    ([], []),                            # no curve at all
    ([10, 20], [0.5, 120.0]),            # mIoU not in %
])
def test_bad_curves_raise(curve_fn, budgets, mious):
    with pytest.raises(ValueError):
        curve_fn(budgets, mious, 10)


# ----------------------------------------------------------------- mean_std

@pytest.mark.parametrize("values, expected", [
    ([1.0, 2.0, 3.0], (2.0, 1.0)),  # sample std: sqrt(2 / (3 - 1))
    ([5.0], (5.0, 0.0)),
    ([58.90, 61.83, 62.41], (statistics.mean([58.90, 61.83, 62.41]),
                             statistics.stdev([58.90, 61.83, 62.41]))),
])
def test_mean_std(values, expected):
    assert mean_std(values) == pytest.approx(expected)


def test_mean_std_of_nothing_raises():
    with pytest.raises(ValueError):
        mean_std([])
