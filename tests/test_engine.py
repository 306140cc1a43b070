"""lib/engine.py: batches of images of mixed sizes, and what a training step hands from the --ssl mode to the
contrastive head."""
import numpy as np
import pytest
import torch

from conftest import RecordedProgress
from lib.engine import (
    default_crop,
    epoch_order,
    iterate_batches,
    majority_class_warning,
    steps_per_epoch,
    train_one_epoch,
)
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


def test_a_pool_of_mixed_sizes_gives_batches_of_one_size_with_every_image_once_in_order():
    sizes = [(4, 6), (4, 6), (6, 4), (4, 6), (4, 6), (4, 6), (6, 4), (8, 8)]
    ids = [str(k) for k in range(len(sizes))]
    batches = list(iterate_batches(SizedImages(sizes), ids, [0, 0, 0], [1, 1, 1], 3, 0, with_masks=True))
    assert [image_id for batch_ids, _, _ in batches for image_id in batch_ids] == ids
    for batch_ids, images, masks in batches:  # images [B, 3, H, W], masks [B, H, W]
        assert 1 <= len(batch_ids) <= 3 and len(images) == len(masks) == len(batch_ids)
        assert all(tuple(images.shape[-2:]) == sizes[int(image_id)] for image_id in batch_ids)
        assert [int(mask.unique()) for mask in masks] == [int(image_id) for image_id in batch_ids]
    assert [len(batch_ids) for batch_ids, _, _ in batches] == [2, 1, 3, 1, 1]  # loader batches of 3, split by size
    _, images, masks = next(iterate_batches(SizedImages(sizes), ids, [0, 0, 0], [1, 1, 1], 3, 0))
    assert images.shape == (2, 3, 4, 6) and masks is None


class RelabelingMode(SslMode):
    """A mode with one unlabeled crop behind every labeled batch, which labels every pixel of the batch class 1."""

    def batches(self, epoch):
        while True:
            yield torch.randn(1, 3, 32, 32), torch.zeros(1, 32, 32, dtype=torch.long)

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
