"""lib/engine.py: batches of images of mixed sizes, an epoch of training on the CPU (a plain float32 loop) and its
divergence error, and what a training step hands from the --ssl mode to the contrastive head."""
import numpy as np
import pytest
import torch

from conftest import RecordedProgress
from lib import fast_path
from lib.engine import (
    default_crop,
    epoch_order,
    iterate_batches,
    majority_class_warning,
    steps_per_epoch,
    train_one_epoch,
)
from lib.errors import UserError
from lib.losses import mean_cross_entropy
from lib.models import build_model
from lib.semisup.mode import SslMode

CPU = torch.device("cpu")


class SizedImages:
    """A pool of images of the given sizes (H, W), ids "0", "1", ...; image and mask of id k are filled with k."""

    def __init__(self, sizes):
        self.sizes = sizes

    def load_image(self, image_id):
        height, width = self.sizes[int(image_id)]
        return np.full((height, width, 3), int(image_id), np.uint8)

    def load_pair(self, image_id):
        image = self.load_image(image_id)
        return image, np.full(image.shape[:2], int(image_id), np.uint8)


@pytest.mark.parametrize("workers", [0, 1])  # 1: batches stacked in a worker process (the collate_fn pickled)
def test_a_pool_of_mixed_sizes_gives_batches_of_one_size_with_every_image_once_in_order(workers):
    sizes = [(4, 6), (4, 6), (6, 4), (4, 6), (4, 6), (4, 6), (6, 4), (8, 8)]
    ids = [str(k) for k in range(len(sizes))]
    batches = list(iterate_batches(SizedImages(sizes), ids, [0, 0, 0], [1, 1, 1], 3, workers, with_masks=True))
    assert [image_id for batch_ids, _, _ in batches for image_id in batch_ids] == ids
    for batch_ids, images, masks in batches:  # images [B, 3, H, W], masks [B, H, W]
        assert 1 <= len(batch_ids) <= 3 and len(images) == len(masks) == len(batch_ids)
        assert all(tuple(images.shape[-2:]) == sizes[int(image_id)] for image_id in batch_ids)
        assert [int(mask.unique()) for mask in masks] == [int(image_id) for image_id in batch_ids]
    assert [len(batch_ids) for batch_ids, _, _ in batches] == [2, 1, 3, 1, 1]  # loader batches of 3, split by size
    _, images, masks = next(iterate_batches(SizedImages(sizes), ids, [0, 0, 0], [1, 1, 1], 3, workers))
    assert images.shape == (2, 3, 4, 6) and masks is None


class RelabelingMode(SslMode):
    """A mode with one unlabeled crop behind every labeled batch, which labels every pixel of the batch class 1."""

    def batches(self, epoch, steps):
        return iter([(torch.randn(1, 3, 32, 32), torch.zeros(1, 32, 32, dtype=torch.long))] * steps)

    def loss(self, images, logits, masks, num_labeled):
        return logits.new_zeros((), dtype=torch.float32), torch.ones_like(masks)

    def after_step(self, images, logits, masks, num_labeled, scaler):
        return {"batch": len(images)}


class RecordingHead:
    """A contrastive term of 0 that records the targets, epoch and step it is called with."""

    def __init__(self):
        self.calls = []

    def __call__(self, logits, embeddings, masks, epoch, step):
        self.calls.append((masks.clone(), epoch, step))
        return embeddings.sum() * 0


def test_the_contrastive_head_learns_from_the_targets_of_the_ssl_mode():
    torch.manual_seed(0)
    model = build_model({"arch": "tiny", "num_classes": 4, "output_stride": 16, "mc_dropout": False, "embed_dim": 8})
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    labeled = [(torch.randn(2, 3, 32, 32), torch.zeros(2, 32, 32, dtype=torch.long))] * 2  # 2 steps, class 0
    head, progress = RecordingHead(), RecordedProgress()
    train_one_epoch(model, 5, labeled, RelabelingMode(), head, optimizer, scheduler,
                    torch.amp.GradScaler("cpu", enabled=False), CPU, progress)
    assert [(epoch, step) for _, epoch, step in head.calls] == [(5, 0), (5, 1)]
    assert all(masks.shape == (3, 32, 32) and (masks == 1).all() for masks, _, _ in head.calls)
    assert [values["batch"] for values in progress.values] == [3, 3]  # after_step's values join the progress


def tiny_run(seed=0):
    """A tiny model with its SGD optimiser and constant schedule, the same for the same seed."""
    torch.manual_seed(seed)
    model = build_model({"arch": "tiny", "num_classes": 3, "output_stride": 16, "mc_dropout": False})
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
    return model, optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)


def labeled_batches(steps, seed=0):
    """`steps` batches of 2 random 32x32 crops and masks of 3 classes with ignored pixels."""
    generator = torch.Generator().manual_seed(seed)
    return [(torch.randn(2, 3, 32, 32, generator=generator), torch.randint(0, 3, (2, 32, 32), generator=generator)
             .masked_fill_(torch.rand(2, 32, 32, generator=generator) < 0.2, 255)) for _ in range(steps)]


class RecordingCriterion:
    """mean_cross_entropy, recording the loss of every step as a float, and NaN from step `nan_at` (1-based) on."""

    def __init__(self, nan_at=None):
        self.nan_at, self.losses = nan_at, []

    def __call__(self, logits, masks):
        loss = mean_cross_entropy(logits, masks)
        if self.nan_at is not None and len(self.losses) + 1 >= self.nan_at:
            loss = loss * float("nan")
        self.losses.append(loss.item())
        return loss


def test_on_the_cpu_an_epoch_trains_and_reports_as_a_plain_float32_loop():
    """The fast path changes nothing on the CPU, --amp or not: the weights of a plain loop, bit for bit, and the
    mean loss as the sum of the steps' losses read one by one over the steps."""
    batches = labeled_batches(3)
    model, optimizer, scheduler = tiny_run()
    criterion, progress = RecordingCriterion(), RecordedProgress()
    loss = train_one_epoch(model, 1, batches, SslMode(), None, optimizer, scheduler,
                           torch.amp.GradScaler("cpu", enabled=False), CPU, progress, criterion, amp=True)

    reference, reference_optimizer, reference_scheduler = tiny_run()
    reference.train()
    total = 0.0
    for images, masks in batches:
        step_loss = mean_cross_entropy(reference(images), masks)
        reference_optimizer.zero_grad(set_to_none=True)
        step_loss.backward()
        reference_optimizer.step()
        reference_scheduler.step()
        total += step_loss.item()
    assert loss == total / len(batches) and criterion.losses == [values["loss"] for values in progress.values]
    assert all(torch.equal(ours, theirs) for ours, theirs in zip(model.state_dict().values(),
                                                                  reference.state_dict().values()))
    assert all(p.is_contiguous() for p in model.parameters())  # no channels_last off CUDA


@pytest.mark.parametrize("read_every, progress_lines", [(1, 1), (fast_path.LOSS_READ_STEPS, 3)])
def test_a_diverged_loss_is_an_error_also_when_read_steps_later(monkeypatch, read_every, progress_lines):
    """Step 2 of 3 has a NaN loss: read at once (the CPU), the error comes at that step; read every 20 steps (CUDA),
    at the end of the epoch, which still fails rather than returns a mean."""
    monkeypatch.setattr(fast_path, "loss_read_steps", lambda device: read_every)
    model, optimizer, scheduler = tiny_run()
    progress = RecordedProgress()
    with pytest.raises(UserError, match=r"^training diverged, the loss is nan: lower --lr \(0.1\) or "
                                        r"--weight-decay \(0.0001\)$"):
        train_one_epoch(model, 1, labeled_batches(3), SslMode(), None, optimizer, scheduler,
                        torch.amp.GradScaler("cpu", enabled=False), CPU, progress, RecordingCriterion(nan_at=2))
    assert len(progress.values) == progress_lines
    assert all(values["loss"] == progress.values[0]["loss"] for values in progress.values)  # the loss last read


@pytest.mark.parametrize("count, batch_size", [(5, 2), (6, 2), (7, 3), (9, 4), (3, 4), (4, 4), (1, 8)])
def test_an_epoch_sees_every_image_in_full_batches(count, batch_size):
    order = epoch_order(7, 3, count, batch_size)
    batches = [order[k:k + batch_size] for k in range(0, len(order), batch_size)]
    assert len(batches) == steps_per_epoch(count, batch_size)
    assert sorted({i % count for i in order}) == list(range(count))  # every image, some a second time as count + i
    assert sorted(order[:count]) == list(range(count)) and all(i >= count for i in order[count:])
    assert all(len(batch) == min(batch_size, count) for batch in batches)
    assert all(len({i % count for i in batch}) == len(batch) for batch in batches)  # no image twice in a batch
    assert epoch_order(7, 3, count, batch_size) == order


def test_the_default_crop_is_256_or_the_smallest_side():
    assert default_crop([(1024, 2048), (480, 640)]) == (256, 256)
    assert default_crop([(120, 160), (130, 150)]) == (120, 150)
    assert default_crop([(24, 1000)]) == (24, 256)


def test_the_majority_class_warning():
    names = ["background", "lesion", "other"]
    majority_everywhere = torch.tensor([[90, 0, 0], [10, 0, 0], [0, 0, 0]])
    warning = majority_class_warning(majority_everywhere, names)  # mIoU (0.9 + 0) / 2, as the baseline's
    assert warning.startswith("the model's mIoU on its training crops of the last epoch (45.00 %) is no better than "
                              "predicting 'background' everywhere (45.00 %)")
    worse = torch.tensor([[50, 40, 0], [10, 0, 0], [0, 0, 0]])  # (50 / 100 + 0) / 2
    assert "(25.00 %) is no better" in majority_class_warning(worse, names)
    assert majority_class_warning(torch.tensor([[85, 5, 0], [5, 5, 0], [0, 0, 0]]), names) is None
    assert majority_class_warning(torch.zeros(3, 3, dtype=torch.long), names) is None
