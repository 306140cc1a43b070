"""ReCo (train.py --contrastive reco): the loss by hand, its sampling, the representation head, the command line."""
import json
import math

import pytest
import torch

from conftest import fail, import_script, train_tiny_model
from lib.data import IGNORE_INDEX
from lib.semisup.reco import ReCo, reco_loss, sample_negatives

train, select = import_script("train.py"), import_script("select.py")


def as_map(rows):
    """[P, X] per-pixel rows -> [1, X, 1, P]: one image, one row of P pixels."""
    return torch.tensor(rows, dtype=torch.float32).T.reshape(1, -1, 1, len(rows))


def labels_map(labels):
    return torch.tensor(labels).reshape(1, 1, -1)  # [1, 1, P]


def loss_of(embeddings, labels, probs, num_negatives=3, seed=0):
    return reco_loss(embeddings, labels, probs, strong_threshold=0.97, temperature=0.5, num_queries=256,
                     num_negatives=num_negatives, generator=torch.Generator().manual_seed(seed))


# Class 0: a and b, both hard (b is confidently mistaken for class 1, the hardest kind of query).
# Class 1: c alone, easy (0.99 >= 0.97): a key and a negative, never a query. d has no label.
HAND_EMBEDDINGS = as_map([[1, 0], [0.6, 0.8], [0, 1], [-1, 0]])  # [1, 2, 1, 4]: a, b, c, d
HAND_LABELS = labels_map([0, 0, 1, IGNORE_INDEX])
HAND_PROBS = as_map([[0.6, 0.4], [0.1, 0.9], [0.01, 0.99], [0.5, 0.5]])  # [1, 2, 1, 4]


def test_loss_matches_a_hand_computation():
    # Key of class 0: the mean (0.8, 0.4) normalised, (2, 1) / sqrt 5; a.k = b.k = 2 / sqrt 5. Every negative of
    # class 0 is c, the only other labeled pixel: a.c = 0, b.c = 0.8. Each query's loss is
    # -log(e^(q.k/t) / (e^(q.k/t) + 3 e^(q.c/t))) = log(1 + 3 e^((q.c - q.k)/t)), t = 0.5.
    qk = 2 / math.sqrt(5)
    class0 = (math.log(1 + 3 * math.exp((0 - qk) / 0.5)) + math.log(1 + 3 * math.exp((0.8 - qk) / 0.5))) / 2
    expected = (class0 + 0) / 2  # class 1 has no hard query: it adds nothing but counts among the 2 classes
    assert loss_of(HAND_EMBEDDINGS, HAND_LABELS, HAND_PROBS).item() == pytest.approx(expected, rel=1e-6)


def test_only_hard_labeled_queries_get_a_gradient():
    embeddings = HAND_EMBEDDINGS.clone().requires_grad_()
    loss_of(embeddings, HAND_LABELS, HAND_PROBS).backward()
    moved = embeddings.grad.abs().sum(dim=1)[0, 0]  # [4]
    assert moved[0] > 0 and moved[1] > 0  # a and b: the queries
    assert moved[2] == 0 and moved[3] == 0  # c is only a key (no gradient through keys), d has no label


def test_loss_decreases_when_a_class_is_pulled_together():
    torch.manual_seed(0)
    labels = torch.randint(0, 3, (2, 6, 6))  # [B, h, w]
    centres = torch.nn.functional.normalize(torch.randn(3, 8), dim=1)  # [3 classes, D]
    noisy = centres[labels] + 0.8 * torch.randn(2, 6, 6, 8)  # [B, h, w, D]
    probs = torch.full((2, 3, 6, 6), 1 / 3)  # every pixel is a hard query
    losses = []
    for pull in (0.0, 0.5, 0.9):
        embeddings = noisy.clone()
        ones = labels == 0
        embeddings[ones] += pull * (embeddings[ones].mean(dim=0) - embeddings[ones])  # towards the class's mean
        embeddings = torch.nn.functional.normalize(embeddings, dim=-1).permute(0, 3, 1, 2)  # [B, D, h, w]
        losses.append(loss_of(embeddings, labels, probs, num_negatives=64).item())
    assert losses[0] > losses[1] > losses[2]


@pytest.mark.parametrize("labels", [[1, 1, 1, IGNORE_INDEX], [IGNORE_INDEX] * 4], ids=["one class", "no label"])
def test_no_loss_without_two_classes(labels):
    loss = loss_of(HAND_EMBEDDINGS, labels_map(labels), HAND_PROBS)
    assert torch.isfinite(loss) and loss.item() == 0


def test_no_loss_when_every_pixel_is_easy():
    easy = as_map([[0.99, 0.01], [0.98, 0.02], [0.01, 0.99], [0.5, 0.5]])
    assert loss_of(HAND_EMBEDDINGS, HAND_LABELS, easy).item() == 0


def test_negative_classes_are_drawn_by_similarity():
    # Keys of 3 classes; class 1 is close to class 0, class 2 opposite. Pixel rows: 0-1 class 0, 2-4 class 1, 5 class 2.
    keys = torch.nn.functional.normalize(torch.tensor([[1.0, 0.0], [0.8, 0.6], [-1.0, 0.0]]), dim=1)  # [3, 2]
    counts, starting = torch.tensor([2, 3, 1]), torch.tensor([0, 2, 5])
    rows = sample_negatives(keys, 0, counts, starting, 20_000, 0.5, torch.Generator().manual_seed(0))  # [20000]
    assert rows.min() >= 2 and rows.max() <= 5  # never class 0's own pixels
    expected = torch.softmax(torch.tensor([0.8, -1.0]) / 0.5, dim=0)  # cosine similarities to class 0, over t
    assert (rows < 5).float().mean().item() == pytest.approx(expected[0].item(), abs=0.01)
    assert torch.bincount(rows)[2:5].tolist() == pytest.approx([(rows < 5).sum().item() / 3] * 3, rel=0.05)


def test_draws_follow_the_seed_of_the_step():
    torch.manual_seed(0)
    embeddings = torch.nn.functional.normalize(torch.randn(2, 8, 6, 6), dim=1)  # [B, D, h, w]
    logits, masks = torch.randn(2, 3, 24, 24), torch.randint(0, 3, (2, 24, 24))  # [B, C, H, W], [B, H, W]
    term = ReCo(weight=2.0, strong_threshold=0.97, temperature=0.5, num_queries=4, num_negatives=8, seed=1)
    first = term(logits, embeddings, masks, epoch=1, step=0)
    assert term(logits, embeddings, masks, epoch=1, step=0).item() == first.item()
    assert term(logits, embeddings, masks, epoch=1, step=1).item() != first.item()
    assert term(logits, embeddings, masks, epoch=2, step=0).item() != first.item()


def test_the_term_brings_targets_and_predictions_to_the_embeddings_resolution():
    # Full resolution 4x16, four times the embeddings' 1x4: each 4x4 block holds one pixel's label and prediction.
    masks = HAND_LABELS.repeat_interleave(4, dim=1).repeat_interleave(4, dim=2)  # [1, 4, 16]
    logits = HAND_PROBS.log().repeat_interleave(4, dim=2).repeat_interleave(4, dim=3)  # [1, 2, 4, 16]
    term = ReCo(weight=2.0, strong_threshold=0.97, temperature=0.5, num_queries=256, num_negatives=3, seed=0)
    expected = 2 * loss_of(HAND_EMBEDDINGS, HAND_LABELS, HAND_PROBS).item()
    assert term(logits, HAND_EMBEDDINGS, masks, epoch=1, step=0).item() == pytest.approx(expected, rel=1e-5)


@pytest.fixture(scope="module")
def teacher(synthetic_pool, tmp_path_factory):
    return train_tiny_model(synthetic_pool, tmp_path_factory.mktemp("teacher"))


def train_argv(pool, index, out):
    return ["--dataset", "synthetic", "--data-root", str(pool), "--index", str(index), "--arch", "tiny",
            "--epochs", "1", "--batch-size", "2", "--crop", "32x48", "--workers", "0", "--device", "cpu",
            "--out", str(out)]


def select_with(pool, checkpoint, index, out):
    select.main(["--dataset", "synthetic", "--data-root", str(pool), "--index", str(index), "--checkpoint",
                 str(checkpoint), "--method", "entropy", "--budget", "2", "--workers", "0", "--device", "cpu",
                 "--out", str(out)])
    return json.loads(out.read_text())


def test_reco_on_patches_through_the_command_line(synthetic_pool, tmp_path):
    data = ["--dataset", "synthetic", "--data-root", str(synthetic_pool)]
    index = tmp_path / "index.json"
    select.main([*data, "--method", "random", "--unit", "patch", "--grid", "2x2", "--budget", "12",
                 "--out", str(index)])
    out = tmp_path / "model.pt"
    train.main([*train_argv(synthetic_pool, index, out), "--contrastive", "reco", "--embed-dim", "8"])
    checkpoint = torch.load(out, weights_only=True)
    assert checkpoint["model_args"]["embed_dim"] == 8
    assert checkpoint["train_args"]["reco_queries"] == 256 and checkpoint["train_args"]["reco_negatives"] == 512
    assert checkpoint["model"]["representation.3.weight"].shape[0] == 8
    assert len(select_with(synthetic_pool, out, index, tmp_path / "next.json")["labeled"]) == 14


def test_reco_with_selftrain_through_the_command_line(synthetic_pool, teacher, tmp_path):
    out = tmp_path / "student.pt"
    train.main([*train_argv(synthetic_pool, teacher / "index.json", out), "--ssl", "selftrain",
                "--teacher", str(teacher / "model.pt"), "-u", "3", "--contrastive", "reco"])
    checkpoint = torch.load(out, weights_only=True)
    assert checkpoint["model_args"]["embed_dim"] == 256 and checkpoint["model_args"]["mc_dropout"]
    assert len(select_with(synthetic_pool, out, teacher / "index.json", tmp_path / "next.json")["labeled"]) == 6


def test_misplaced_reco_flags_are_one_line_errors(synthetic_pool, teacher, tmp_path, capsys):
    argv = train_argv(synthetic_pool, teacher / "index.json", tmp_path / "model.pt")
    assert "--embed-dim configures --contrastive reco, but --contrastive is none" in fail(
        train, [*argv, "--embed-dim", "8"], capsys)
    assert "--reco-weight configures --contrastive reco" in fail(train, [*argv, "--reco-weight", "0.5"], capsys)
    assert "argument --reco-strong-threshold: must be a finite number in (0, 1], got '1.5'" in fail(
        train, [*argv, "--contrastive", "reco", "--reco-strong-threshold", "1.5"], capsys)
    assert "argument --reco-temperature: must be a finite number in (0, inf), got '0'" in fail(
        train, [*argv, "--contrastive", "reco", "--reco-temperature", "0"], capsys)
    assert "--reco-queries: must be at least 1" in fail(
        train, [*argv, "--contrastive", "reco", "--reco-queries", "0"], capsys)
