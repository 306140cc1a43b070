"""Per-pixel scores on hand-made probability maps and toy models whose answers are known.

Values are derived in the tests from the definitions (Shannon entropy in nats, JS =
H(mean) - mean H), never copied from a run.
"""
import math

import numpy as np
import pytest
import torch
from torch import nn

from lib.acquire.reduce import REDUCTIONS
from lib.acquire.scores import (
    dropout_active, entropy_map, js_divergence_map, pixel_entropy, pixel_flip_disagreement,
    embed_items, pixel_mutual_information, score_items,
)
from lib.units import Unit


def entropy(p):
    """Shannon entropy in nats of one distribution, from the definition (0 log 0 = 0)."""
    return -sum(x * math.log(x) for x in p if x > 0)


def as_map(distributions):
    """A [1, C, 1, P] probability map from P per-pixel distributions of C classes."""
    return torch.tensor(distributions, dtype=torch.float32).T[None, :, None, :]


def random_probs(seed, shape=(2, 5, 3, 4)):
    """Softmax of random logits: a [B, C, H, W] map with no zero."""
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed)).softmax(dim=1)


# --- entropy and Jensen-Shannon ----------------------------------------------------------


@pytest.mark.parametrize("classes", [2, 3, 19])
def test_entropy_of_uniform_is_log_c_and_of_one_hot_is_zero(classes):
    uniform = torch.full((2, classes, 3, 4), 1 / classes)  # [B, C, H, W]
    one_hot = nn.functional.one_hot(torch.arange(24).reshape(2, 3, 4) % classes, classes).permute(0, 3, 1, 2).float()
    np.testing.assert_allclose(entropy_map(uniform).numpy(), np.full((2, 3, 4), math.log(classes)), rtol=1e-6)
    assert entropy_map(one_hot).shape == (2, 3, 4)
    assert entropy_map(one_hot).abs().max() == 0


def test_js_of_identical_distributions_is_zero():
    p = random_probs(0)
    np.testing.assert_allclose(js_divergence_map(p, p.clone()).numpy(), 0, atol=1e-6)


def test_js_of_disjoint_one_hots_is_log_2():
    p = as_map([[1, 0, 0], [0, 1, 0], [0, 0, 1]])  # [1, 3, 1, 3]
    q = as_map([[0, 1, 0], [0, 0, 1], [1, 0, 0]])
    np.testing.assert_allclose(js_divergence_map(p, q)[0, 0].numpy(), [math.log(2)] * 3, rtol=1e-6)


def test_js_of_a_hand_computed_pair():
    """p = [1/2, 1/2], q = [1, 0]: mean [3/4, 1/4], so JS = H(3/4, 1/4) - (log 2 + 0) / 2."""
    expected = -(0.75 * math.log(0.75) + 0.25 * math.log(0.25)) - math.log(2) / 2  # about 0.2158
    js = js_divergence_map(as_map([[0.5, 0.5]]), as_map([[1.0, 0.0]]))  # [1, 1, 1]
    assert js.item() == pytest.approx(expected, rel=1e-6)


def test_js_is_symmetric_and_bounded():
    p, q = random_probs(1), random_probs(2)
    np.testing.assert_allclose(js_divergence_map(p, q).numpy(), js_divergence_map(q, p).numpy(), atol=1e-7)
    assert (js_divergence_map(p, q) > 0).all() and (js_divergence_map(p, q) <= math.log(2)).all()


# --- EqualAL: flip disagreement ------------------------------------------------------------


class ColumnLogits(nn.Module):
    """Logits [f(column), 0] at every pixel, whatever the image: not flip-equivariant."""

    def __init__(self, per_column):
        super().__init__()
        self.per_column = torch.as_tensor(per_column, dtype=torch.float32)  # [W]

    def forward(self, x):  # [B, 3, H, W]
        b, _, h, w = x.shape
        first = self.per_column.expand(b, 1, h, w)  # [B, 1, H, W]
        return torch.cat([first, torch.zeros_like(first)], dim=1)  # [B, 2, H, W]


def test_flip_disagreement_is_zero_for_a_per_pixel_model():
    """A 1x1 convolution sees one pixel at a time, so mirroring the image mirrors its output."""
    torch.manual_seed(0)
    model = nn.Conv2d(3, 5, kernel_size=1)
    images = torch.rand(2, 3, 6, 7)  # [B, 3, H, W], odd width: a middle column too
    with torch.no_grad():
        score = pixel_flip_disagreement(model, images)
    assert score.shape == (2, 6, 7)
    np.testing.assert_allclose(score.numpy(), 0, atol=1e-6)


def test_flip_disagreement_is_positive_when_the_output_depends_on_the_column():
    """Logits growing left to right: the mirrored prediction, flipped back, grows right to left."""
    score = pixel_flip_disagreement(ColumnLogits(torch.arange(6.0)), torch.rand(1, 3, 2, 6))  # [1, 2, 6]
    assert (score > 1e-3).all()
    # Column j is compared with column W-1-j: both sides of the middle mirror each other.
    np.testing.assert_allclose(score.numpy(), score.flip(-1).numpy(), rtol=1e-5)


def test_flip_disagreement_matches_a_hand_computed_value():
    """Logits [0, 0] in column 0 and [log 3, 0] in column 1: predictions [1/2, 1/2] and [3/4, 1/4].

    The mirrored image gets the same column-dependent output; flipped back, column 0 holds
    [3/4, 1/4] and column 1 holds [1/2, 1/2], so both columns score
    JS([1/2, 1/2], [3/4, 1/4]) = H(5/8, 3/8) - (log 2 + H(3/4, 1/4)) / 2.
    """
    expected = entropy([5 / 8, 3 / 8]) - (math.log(2) + entropy([0.75, 0.25])) / 2
    score = pixel_flip_disagreement(ColumnLogits([0.0, math.log(3)]), torch.rand(2, 3, 3, 2))  # [2, 3, 2]
    np.testing.assert_allclose(score.numpy(), np.full((2, 3, 2), expected), rtol=1e-5)


def test_flip_disagreement_really_flips():
    """Class 0 on the left half, class 1 on the right, whatever the image. Flipped back, the
    mirrored prediction says the opposite everywhere: log 2 at every pixel. (A no-op flip,
    as in the study's published code, would give 0.)"""
    model = ColumnLogits([50.0] * 4 + [-50.0] * 4)  # exp(-100) underflows: exact one-hots
    score = pixel_flip_disagreement(model, torch.rand(2, 3, 5, 8))  # [2, 5, 8]
    np.testing.assert_allclose(score.numpy(), math.log(2), rtol=1e-6)


# --- BALD: mutual information under MC dropout ------------------------------------------------


class CountingSegmenter(nn.Module):
    """encode/decode split like lib.models.DeepLabV3Plus, with call counts.

    `decode_probs`: None for a deterministic decoder (logits from the encoded image), or a
    list of [C] distributions that successive decode calls return in turn, at every pixel.
    """

    def __init__(self, decode_probs=None, dropout=0.0):
        super().__init__()
        self.mix = nn.Conv2d(3, 4, kernel_size=1)
        self.dropout = nn.Dropout(dropout)
        self.decode_probs = decode_probs
        self.encodes = self.decodes = 0

    def encode(self, x):  # [B, 3, H, W]
        self.encodes += 1
        return self.mix(x), x.mean(dim=1, keepdim=True)  # low [B, 4, H, W], high [B, 1, H, W]

    def decode(self, low, high, size):
        assert tuple(size) == low.shape[-2:]
        self.decodes += 1
        if self.decode_probs is None:
            return self.dropout(low + high)  # [B, 4, H, W]
        p = torch.tensor(self.decode_probs[(self.decodes - 1) % len(self.decode_probs)])  # [C]
        return p.log()[None, :, None, None].expand(low.shape[0], -1, *low.shape[-2:])  # softmax gives p back


@pytest.mark.parametrize("samples", [1, 5])
def test_mutual_information_of_a_deterministic_model_is_zero(samples):
    torch.manual_seed(0)
    model = CountingSegmenter().eval()
    with torch.no_grad():
        mi = pixel_mutual_information(model, torch.rand(2, 3, 4, 5), samples)
    assert mi.shape == (2, 4, 5)
    np.testing.assert_allclose(mi.numpy(), 0, atol=1e-6)


def test_mutual_information_of_known_samples():
    """Decoder passes give [0.9, 0.1], [0.1, 0.9], [0.5, 0.5], twice over (T = 6): the mean
    is [1/2, 1/2], so MI = log 2 - (2 H(0.9, 0.1) + log 2) / 3."""
    samples = [[0.9, 0.1], [0.1, 0.9], [0.5, 0.5]]
    model = CountingSegmenter(decode_probs=samples).eval()
    mi = pixel_mutual_information(model, torch.rand(3, 3, 2, 4), samples=6)  # [3, 2, 4]
    expected = math.log(2) - (2 * entropy([0.9, 0.1]) + math.log(2)) / 3
    np.testing.assert_allclose(mi.numpy(), np.full((3, 2, 4), expected), rtol=1e-5)
    assert (model.encodes, model.decodes) == (1, 6)  # the encoder once, the decoder T times


def test_mutual_information_with_dropout_is_positive():
    torch.manual_seed(0)
    model = CountingSegmenter(dropout=0.5).eval()
    with torch.no_grad():
        mi = pixel_mutual_information(model, torch.rand(2, 3, 4, 5), samples=8)
    assert mi.mean() > 1e-3 and (mi >= 0).all()
    assert (model.encodes, model.decodes) == (1, 8)
    assert not model.dropout.training  # back in eval mode afterwards


class DropoutAndBatchNorm(nn.Module):
    def __init__(self):
        super().__init__()
        self.norm = nn.BatchNorm2d(3)
        self.dropout = nn.Dropout(0.5)

    def forward(self, x):
        return self.dropout(self.norm(x))


def test_dropout_active_samples_dropout_but_keeps_batchnorm_in_eval():
    model = DropoutAndBatchNorm().eval()
    x = torch.rand(4, 3, 8, 8) + 1  # [B, 3, H, W], no zero: dropped entries show as zeros
    stats = model.norm.running_mean.clone()
    with dropout_active(model):
        assert model.dropout.training and not model.norm.training
        out = model(x)
        assert (out == 0).any()  # dropout sampled
    assert not model.dropout.training and not model.norm.training
    assert torch.equal(model.norm.running_mean, stats)  # BatchNorm used, never updated, its statistics
    assert torch.equal(model(x), model(x))  # deterministic again
    with pytest.raises(RuntimeError), dropout_active(model):
        raise RuntimeError
    assert not model.dropout.training  # restored on errors too


# --- score_items and embed_items ------------------------------------------------------------


def _pixel_model_batches():
    torch.manual_seed(0)
    model = nn.Conv2d(3, 4, kernel_size=1).train()  # scoring must switch to eval itself
    images = torch.rand(5, 3, 4, 6)  # [N, 3, H, W]
    ids = ["a", "b", "c", "d", "e"]
    batches = [(ids[:2], images[:2], None), (ids[2:4], images[2:4], None), (ids[4:], images[4:], None)]
    return model, images, ids, batches


def test_score_items_keeps_one_mean_score_per_image():
    """Per-pixel model: the mean entropy of each image, computed directly, keyed by its id."""
    model, images, ids, batches = _pixel_model_batches()
    scores = score_items(model, batches, pixel_entropy, REDUCTIONS["mean"], Unit().layout, torch.device("cpu"), False)
    assert list(scores) == ids
    assert not model.training
    with torch.no_grad():
        expected = entropy_map(model(images).softmax(dim=1)).mean(dim=(1, 2))  # [N]
    np.testing.assert_allclose([scores[i] for i in ids], expected.numpy(), rtol=1e-6)
    assert len(set(scores.values())) == len(ids)  # the images really differ


@pytest.mark.parametrize("reduce", sorted(REDUCTIONS))
def test_score_items_reduces_each_patch_over_its_own_pixels(reduce):
    """A 2x3 grid on 4x6 images: every cell is a 2x2 block, scored from its pixels alone."""
    model, images, ids, batches = _pixel_model_batches()
    scores = score_items(model, batches, pixel_entropy, REDUCTIONS[reduce], Unit("patch", (2, 3)).layout,
                         torch.device("cpu"), False)
    assert len(scores) == 5 * 6
    with torch.no_grad():
        pixel = entropy_map(model(images).softmax(dim=1))  # [N, 4, 6]
    for n, image_id in enumerate(ids):
        for row in range(2):
            for col in range(3):
                block = pixel[n, 2 * row:2 * row + 2, 2 * col:2 * col + 2]
                expected = {"mean": block.mean(), "sum": block.sum(), "max": block.max()}[reduce]
                assert scores[f"{image_id}#r{row}c{col}"] == pytest.approx(expected.item(), rel=1e-6)


def test_embed_items_averages_the_feature_map_over_each_item():
    """Features at half resolution: a 2x2 grid cell of an 8x8 image covers a 2x2 block of the 4x4 map."""
    images = torch.arange(2 * 3 * 8 * 8, dtype=torch.float32).reshape(2, 3, 8, 8)
    half = lambda model, x: torch.nn.functional.avg_pool2d(x, 2)  # noqa: E731  [B, 3, 4, 4]
    ids, features = embed_items(nn.Identity(), half, [(["p", "q"], images, None)], Unit("patch", (2, 2)).layout,
                                torch.device("cpu"), False)
    assert ids == [f"{i}#r{r}c{c}" for i in "pq" for r in range(2) for c in range(2)]
    expected = torch.stack([images[n, :, 4 * r:4 * r + 4, 4 * c:4 * c + 4].mean(dim=(1, 2))
                            for n in range(2) for r in range(2) for c in range(2)])  # [8, 3]
    torch.testing.assert_close(features, expected)
