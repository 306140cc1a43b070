"""lib/losses.py: the losses of train.py --loss against hand-computed values, and --class-weights."""
import argparse
import math

import pytest
import torch

from lib.data.base import IGNORE_INDEX
from lib.errors import UserError
from lib.losses import (
    LOSSES,
    class_weights,
    class_weights_flag,
    mean_cross_entropy,
    median_frequency_weights,
    soft_dice_loss,
)

# Four pixels in a row ([1, 3, 1, 4] logits, [1, 1, 4] masks): the logits are log-probabilities, so the softmax
# gives these probabilities back. The last pixel is ignored, and only it would make class 2 an argmax.
PROBS = [[0.1, 0.8, 0.1], [0.3, 0.5, 0.2], [0.7, 0.1, 0.2], [0.1, 0.1, 0.8]]
TRUTH = [1, 1, 0, IGNORE_INDEX]


def batch(probs, truth):
    logits = torch.tensor(probs, dtype=torch.float64).log().T[None, :, None, :].float()  # [1, C, 1, N]
    return logits.requires_grad_(), torch.tensor(truth)[None, None, :]  # [1, 1, N]


def test_dice_of_a_hand_computed_batch_leaves_out_ignored_pixels_and_classes_not_in_play():
    # class 0: 2 * 0.7 over 1.1 predicted and 1 true; class 1: 2 * (0.8 + 0.5) over 1.4 and 2; each smoothed by 1.
    # Class 2 is neither true nor the argmax of a pixel that counts: no term.
    dice = [(1.4 + 1) / (1.1 + 1 + 1), (2.6 + 1) / (1.4 + 2 + 1)]
    assert soft_dice_loss(*batch(PROBS, TRUTH)).item() == pytest.approx(1 - sum(dice) / 2, rel=1e-5)
    weighted = (2 * (1 - dice[0]) + 1 * (1 - dice[1])) / 3  # class 2's weight does not count: not in play
    assert soft_dice_loss(*batch(PROBS, TRUTH), torch.tensor([2.0, 1.0, 5.0])).item() == pytest.approx(weighted,
                                                                                                     rel=1e-5)


def test_dice_counts_a_predicted_class_absent_from_the_truth():
    # The last pixel now counts as class 0, and is class 2's argmax: class 2 has false positives only.
    dice = [(1.6 + 1) / (1.2 + 2 + 1), (2.6 + 1) / (1.5 + 2 + 1), 1 / (1.3 + 1)]
    assert soft_dice_loss(*batch(PROBS, [1, 1, 0, 0])).item() == pytest.approx(1 - sum(dice) / 3, rel=1e-5)


def test_weighted_cross_entropy_is_the_weighted_mean_over_the_pixels_that_count():
    logits, masks = batch(PROBS, TRUTH)
    weight = torch.tensor([2.0, 1.0, 5.0])
    expected = (2 * -math.log(0.7) + -math.log(0.8) + -math.log(0.5)) / (2 + 1 + 1)
    assert mean_cross_entropy(logits, masks, weight).item() == pytest.approx(expected, rel=1e-5)
    assert mean_cross_entropy(logits, masks).item() == pytest.approx(-math.log(0.7 * 0.8 * 0.5) / 3, rel=1e-5)


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_perfect_predictions_cost_nothing_and_ignored_pixels_nothing_at_all(name):
    torch.manual_seed(0)
    masks = torch.randint(0, 4, (2, 8, 8))
    masks[:, :2] = IGNORE_INDEX
    logits = 30.0 * torch.nn.functional.one_hot(masks.clamp(max=3), 4).permute(0, 3, 1, 2).float()
    logits[:, :, :2] = torch.randn(2, 4, 2, 8)  # anything where the pixels are ignored
    for weight in (None, torch.tensor([1.0, 2.0, 3.0, 4.0])):
        assert LOSSES[name](logits, masks, weight).item() == pytest.approx(0, abs=1e-5)
    logits = torch.randn(2, 4, 8, 8, requires_grad=True)
    loss = LOSSES[name](logits, torch.full((2, 8, 8), IGNORE_INDEX))
    loss.backward()
    assert loss.item() == 0 and torch.equal(logits.grad, torch.zeros_like(logits))


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_every_loss_falls_as_the_truth_gains_probability(name):
    masks = torch.tensor([[[0, 1, 1, 0]]])  # [1, 1, 4]
    right = torch.nn.functional.one_hot(masks, 2).permute(0, 3, 1, 2).float()  # [1, 2, 1, 4]
    losses = [LOSSES[name](scale * (2 * right - 1), masks).item() for scale in (-1.0, 0.0, 1.0, 3.0)]
    assert losses == sorted(losses, reverse=True) and len(set(losses)) == 4


def test_median_frequency_weights_of_hand_made_counts():
    # shares 0.6, 0.3, 0.1 of the labeled pixels; median 0.3; the absent class gets 0
    assert median_frequency_weights([600, 300, 100, 0]) == pytest.approx([0.5, 1.0, 3.0, 0.0])
    assert median_frequency_weights([5, 5]) == [1.0, 1.0]
    with pytest.raises(ValueError, match="no labeled pixel"):
        median_frequency_weights([0, 0])


def test_class_weights_flag_and_its_count():
    assert class_weights_flag("1,2.5") == (1.0, 2.5)
    assert class_weights_flag("median-frequency") == "median-frequency"
    for text in ("1,0", "1,,2", "a", "1,nan", "median"):
        with pytest.raises(argparse.ArgumentTypeError, match="median-frequency or comma-separated numbers above 0"):
            class_weights_flag(text)
    names = ["background", "lesion"]
    assert class_weights(None, names, [3, 1]) is None
    assert class_weights((1.0, 4.0), names, [3, 1]) == [1.0, 4.0]
    assert class_weights("median-frequency", names, [3, 1]) == pytest.approx([2 / 3, 2.0])
    with pytest.raises(UserError, match=r"^--class-weights: 3 weights given, but the dataset has 2 classes "
                                        r"\(background, lesion\)$"):
        class_weights((1.0, 2.0, 3.0), names, [3, 1])
