"""Training and inference loops shared by the scripts.

Everything random in training is derived from (seed, epoch): the sample order, each
sample's crop and flip, the torch RNG for dropout, and the contrastive loss's draws
(from (seed, epoch, step)). A run resumed at an epoch boundary therefore continues
exactly as the uninterrupted run would have.
"""
import functools
import random

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset

from lib.data.base import IGNORE_INDEX
from lib.data.transforms import image_to_tensor, mask_to_tensor, random_crop_flip
from lib.errors import UserError
from lib.metrics import confusion_matrix
from lib.sliding import DEFAULT_SLIDE_WINDOW, owned_parts


def resolve_device(name):
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda: no CUDA device is available")
    return torch.device(name)


def poly_lr_lambda(total_steps, power=0.9):
    """The poly schedule of DeepLab: lr * (1 - step / total) ** power."""
    return lambda step: (1 - min(step, total_steps) / total_steps) ** power


def constant_lr_lambda(total_steps):
    return lambda step: 1.0


# Learning-rate factor per step, given the total number of steps (LambdaLR's lambdas).
LR_SCHEDULES = {"poly": poly_lr_lambda, "constant": constant_lr_lambda}


class LabeledCrops(Dataset):
    """Randomly cropped (and flipped) labeled images; set `epoch` before each epoch.

    `items` maps each image to its labeled items of `unit`. Pixels outside them are
    ignored by the loss: a partially labeled image teaches only where it was labeled.
    """

    def __init__(self, dataset, unit, items, crop, flip, seed, mean, std):
        self.dataset, self.unit, self.items, self.ids = dataset, unit, items, list(items)
        self.crop, self.flip, self.seed, self.mean, self.std = crop, flip, seed, mean, std
        self.epoch = 0

    def __len__(self):
        return len(self.ids)

    def __getitem__(self, i):
        image_id = self.ids[i]
        image, mask = self.dataset.load_pair(image_id)
        if self.unit.type != "image":
            mask = np.where(self.unit.labeled_area(self.items[image_id], *mask.shape), mask, IGNORE_INDEX)
        # A string seed is hashed deterministically, independent of worker processes.
        rng = random.Random(f"{self.seed}/{self.epoch}/{i}")
        image, mask = random_crop_flip(image, mask, self.crop, rng, self.flip)
        return image_to_tensor(image, self.mean, self.std), mask_to_tensor(mask)


def epoch_loader(crops, epoch, batch_size, workers):
    """The loader of one epoch, its order drawn from (seed, epoch)."""
    crops.epoch = epoch
    order = torch.randperm(len(crops), generator=torch.Generator().manual_seed(crops.seed * 100_003 + epoch))
    # drop_last: a last batch of one image would break BatchNorm in the ASPP pooling branch.
    return DataLoader(
        crops, batch_size=batch_size, sampler=order.tolist(), num_workers=workers,
        drop_last=len(crops) > batch_size,
    )


def mean_cross_entropy(logits, masks):
    """Cross-entropy averaged over the pixels that are not ignored; 0 when all are (a crop of unconfident pixels)."""
    total = F.cross_entropy(logits.float(), masks, ignore_index=IGNORE_INDEX, reduction="sum")
    return total / (masks != IGNORE_INDEX).sum().clamp_min(1)


def train_one_epoch(model, loader, optimizer, scheduler, scaler, device, progress, unlabeled=None, contrastive=None,
                    adversary=None):
    """One pass over `loader`; returns the mean loss.

    `unlabeled` (lib.semisup.unlabeled.unlabeled_batches) yields a batch of crops of the
    unlabeled pixels per step: it goes through the model with the labeled batch. Their
    cross-entropy is added when their targets are pseudo labels (self-training); with
    `adversary` (lib.semisup.s4gan.S4GAN) the s4GAN terms are added instead, and the
    discriminator takes a step after the model. `contrastive` (lib.semisup.reco.ReCo),
    for a model with a representation head, adds its term over the whole batch, true
    and pseudo labels alike.
    """
    model.train()
    amp = scaler.is_enabled()
    total = 0.0
    for step, (images, masks) in enumerate(loader):
        num_labeled = len(images)
        if unlabeled is not None:
            extra_images, extra_masks = next(unlabeled)
            images, masks = torch.cat([images, extra_images]), torch.cat([masks, extra_masks])
        images, masks = images.to(device, non_blocking=True), masks.to(device, non_blocking=True)
        with torch.autocast(device.type, dtype=torch.float16, enabled=amp):
            if contrastive is None:
                logits = model(images)  # [B, C, H, W]
            else:
                logits, embeddings = model.forward_with_embeddings(images)  # [B, C, H, W], [B, D, H/4, W/4]
            loss = mean_cross_entropy(logits[:num_labeled], masks[:num_labeled])
            if adversary is not None:
                adversarial, masks = adversary.model_loss(images, logits, masks, num_labeled)
                loss = loss + adversarial
            elif num_labeled < len(images):
                # Averaged over its own pixels: a few labels are not drowned by many pseudo labels.
                loss = loss + mean_cross_entropy(logits[num_labeled:], masks[num_labeled:])
        if contrastive is not None:  # outside autocast: similarities over a temperature of 0.5 want float32
            loss = loss + contrastive(logits, embeddings, masks, step)
        if not torch.isfinite(loss):
            raise UserError(f"training diverged, the loss is {loss.item()}: lower --lr ({optimizer.defaults['lr']:g}) "
                            f"or --weight-decay ({optimizer.defaults['weight_decay']:g})")
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        values = {"loss": loss.item()}
        if adversary is not None:
            values["d_loss"] = adversary.discriminator_step(images, logits, masks, num_labeled, scaler)
            values["self_trained"] = adversary.accepted
        scaler.update()
        scheduler.step()
        total += values["loss"]
        progress.update(items=len(images), **values, lr=scheduler.get_last_lr()[0])
    return total / max(len(loader), 1)


class _Images(Dataset):
    def __init__(self, dataset, ids, mean, std, with_masks):
        self.dataset, self.ids, self.mean, self.std, self.with_masks = dataset, ids, mean, std, with_masks

    def __len__(self):
        return len(self.ids)

    def __getitem__(self, i):
        image_id = self.ids[i]
        if self.with_masks:
            image, mask = self.dataset.load_pair(image_id)
            return image_id, image_to_tensor(image, self.mean, self.std), mask_to_tensor(mask)
        return image_id, image_to_tensor(self.dataset.load_image(image_id), self.mean, self.std), None


def _same_size_runs(items):
    """Split a list of (id, image, mask) into runs of equal image size, so they can be stacked."""
    run = []
    for item in items:
        if run and item[1].shape != run[0][1].shape:
            yield run
            run = []
        run.append(item)
    if run:
        yield run


def _batch(tensors):
    """Stacked along a new first axis; a single tensor as a view, not a copy (a huge image is held once)."""
    return tensors[0][None] if len(tensors) == 1 else torch.stack(tensors)


def iterate_batches(dataset, ids, mean, std, batch_size, workers, with_masks=False):
    """Yield (ids, images [B, 3, H, W], masks [B, H, W] or None) over `ids`, in order.

    Images of a batch have the same size; pools of mixed sizes give smaller batches.
    """
    loader = DataLoader(
        _Images(dataset, list(ids), mean, std, with_masks), batch_size=batch_size, num_workers=workers,
        collate_fn=list,
    )
    for items in loader:
        for run in _same_size_runs(items):
            batch_ids = [item[0] for item in run]
            images = _batch([item[1] for item in run])
            masks = _batch([item[2] for item in run]) if with_masks else None
            yield batch_ids, images, masks


def predicted_classes(model, device, amp, images):
    """images [B, 3, H, W] (on any device) -> the model's class ids [B, H, W] on `device`."""
    with torch.autocast(device.type, dtype=torch.float16, enabled=amp):
        logits = model(images.to(device, non_blocking=True))  # [B, C, H, W]
    if not torch.isfinite(logits).all():  # an argmax of NaN is class 0: an mIoU of garbage
        raise UserError("--checkpoint: the model's logits are NaN or infinite (on CUDA, try --no-amp)")
    return logits.argmax(dim=1)


@torch.no_grad()
def evaluate_confusion(model, batches, num_classes, device, amp, progress=None, window=DEFAULT_SLIDE_WINDOW):
    """Accumulate the [C, C] confusion matrix (rows = truth) of the model over `batches`.

    Images larger than `window` (height, width) are predicted window by window, and
    counted window by window (lib.sliding.owned_parts): neither the predictions nor
    the confusion matrix's int64 temporaries ever span a whole large image.
    """
    model.eval()
    confusion = torch.zeros(num_classes, num_classes, dtype=torch.long, device=device)
    predict = functools.partial(predicted_classes, model, device, amp)
    for _, images, masks in batches:
        for _, owned, predictions in owned_parts(predict, images, window):  # predictions [B, h, w]: the owned part
            truth = masks[..., owned.top:owned.bottom, owned.left:owned.right]  # [B, h, w]
            confusion += confusion_matrix(predictions, truth.to(device), num_classes)
        if progress:
            progress.update(steps=len(images), items=len(images))
    return confusion.cpu()


def steps_per_epoch(num_images, batch_size):
    return num_images // batch_size if num_images > batch_size else 1


def expected_total_steps(num_images, batch_size, epochs):
    return max(steps_per_epoch(num_images, batch_size) * epochs, 1)

