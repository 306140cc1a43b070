"""Training and inference loops shared by the scripts.

Everything random in training is drawn from (seed, epoch, ...) by lib.seeding, so a run
resumed at an epoch boundary continues exactly as the uninterrupted run would have.
"""
import functools

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from lib import fast_path, seeding
from lib.data.base import IGNORE_INDEX
from lib.data.transforms import image_to_tensor, mask_to_tensor, random_crop_flip, random_rescale
from lib.distributed import SINGLE, rank_share
from lib.errors import UserError
from lib.losses import mean_cross_entropy
from lib.metrics import confusion_matrix, mean_iou
from lib.sliding import DEFAULT_SLIDE_WINDOW, owned_parts


def poly_lr_lambda(total_steps, power=0.9):
    """The poly schedule of DeepLab: lr * (1 - step / total) ** power."""
    return lambda step: (1 - min(step, total_steps) / total_steps) ** power


def constant_lr_lambda(total_steps):
    return lambda step: 1.0


# Learning-rate factor per step, given the total number of steps (LambdaLR's lambdas).
LR_SCHEDULES = {"poly": poly_lr_lambda, "constant": constant_lr_lambda}

# train.py's crop side without --crop: the DeepLab recipes' 256, or less where the images are smaller.
DEFAULT_CROP_SIDE = 256


def default_crop(sizes, side=DEFAULT_CROP_SIDE):
    """The crop (H, W) when none is asked for: `side` per dimension, but no more than the smallest of `sizes`
    ((H, W) of the images cropped from) has, so that no crop is mostly padding."""
    heights, widths = zip(*sizes)
    return min(side, *heights), min(side, *widths)


class LabeledCrops(Dataset):
    """Randomly cropped (and flipped) labeled images, indexed by (epoch, index): the draws of each key its own.

    `items` maps each image to its labeled items of `unit`. Pixels outside them are
    ignored by the loss: a partially labeled image teaches only where it was labeled.
    Sample i >= len(self) is image i - len(self) again, with draws of its own (an
    epoch's second visit, see `epoch_order`). With `random_scale`
    (lib.data.transforms.RandomScale) each sample is first rescaled by a factor drawn
    with its crop and flip.
    """

    def __init__(self, dataset, unit, items, crop, flip, seed, mean, std, random_scale=None):
        self.dataset, self.unit, self.items, self.ids = dataset, unit, items, list(items)
        self.crop, self.flip, self.seed, self.mean, self.std = crop, flip, seed, mean, std
        self.random_scale = random_scale

    def __len__(self):
        return len(self.ids)

    def __getitem__(self, key):
        epoch, i = key
        image_id = self.ids[i % len(self.ids)]
        image, mask = self.dataset.load_pair(image_id)
        if self.unit.type != "image":
            mask = np.where(self.unit.labeled_area(self.items[image_id], *mask.shape), mask, IGNORE_INDEX)
        rng = seeding.labeled_sample_rng(self.seed, epoch, i)
        if self.random_scale is not None:  # before the crop: a smaller image is padded with ignored pixels
            image, mask = random_rescale(image, mask, self.random_scale, rng)
        image, mask = random_crop_flip(image, mask, self.crop, rng, self.flip)
        return image_to_tensor(image, self.mean, self.std), mask_to_tensor(mask)


class ItemCrops(Dataset):
    """Every labeled item as a sample of its own (train.py --item-crops): its box of the image and mask, no random
    crop, flipped where `flip` draws it; indexed by (epoch, index) as LabeledCrops.

    `items` maps each image to its labeled items of `unit`; an image unit's item is the
    whole image. A box smaller than `size` (H, W), the largest item's (largest_item), is
    padded at the bottom and right (image 0, mask ignored), so that items of other sizes
    batch together; a grid's cells on images of one size differ by a pixel at most.
    Sample i >= len(self) is item i - len(self) again, with draws of its own, as in
    LabeledCrops. MEAL trains on its acquired patches so: "query and acquire image
    patches rather than the complete image", 32 patches at the start, batches of 8
    (Sreenivasaiah et al. 2021, /work/shared/papers/meal.md l.180, l.197, l.203).
    """

    def __init__(self, dataset, unit, items, size, flip, seed, mean, std):
        self.dataset, self.unit, self.size, self.flip, self.seed = dataset, unit, size, flip, seed
        self.mean, self.std = mean, std
        self.samples = [(image_id, item_id) for image_id, item_ids in items.items() for item_id in item_ids]

    def __len__(self):
        return len(self.samples)

    def __getitem__(self, key):
        epoch, i = key
        image_id, item_id = self.samples[i % len(self.samples)]
        image, mask = self.dataset.load_pair(image_id)  # [H, W, 3], [H, W]
        box = self.unit.box(item_id, *mask.shape)
        image, mask = image[box.top:box.bottom, box.left:box.right], mask[box.top:box.bottom, box.left:box.right]
        # A crop of `size` from the padded box is the box itself: random_crop_flip only pads and flips here.
        image, mask = random_crop_flip(image, mask, self.size, seeding.labeled_sample_rng(self.seed, epoch, i),
                                       self.flip)
        return image_to_tensor(image, self.mean, self.std), mask_to_tensor(mask)


def largest_item(unit, items, image_size):
    """(H, W): the largest height and width of the boxes of `items` (image id -> its item ids of `unit`);
    `image_size(id) -> (H, W)`."""
    boxes = [unit.box(item_id, *image_size(image_id)) for image_id, item_ids in items.items() for item_id in item_ids]
    return max(box.bottom - box.top for box in boxes), max(box.right - box.left for box in boxes)


def epoch_order(seed, epoch, count, batch_size):
    """The samples of an epoch over `count` labeled images (LabeledCrops indices; ItemCrops's items alike), in
    batches of `batch_size`: every image once in the order drawn from (seed, epoch), then, to fill the last batch,
    the first images of that order again as samples count + i. An image may appear twice in an epoch, never zero
    times; with at most `batch_size` images the epoch is one batch of them all.

    Every batch is full, as steps_per_epoch counts them for the learning-rate schedule: a short last batch could be
    a single image, and BatchNorm in training mode raises on one image's 1x1 feature maps (crops of at most
    --output-stride pixels a side). The images filling up come from the first batch, so none is twice in a batch.
    """
    order = seeding.labeled_order(seed, epoch, count)
    missing = -count % batch_size if count > batch_size else 0
    return order + [count + i for i in order[:missing]]


class EpochBatches(Sampler):
    """The batches of one epoch, the one set in `epoch` before each pass, for a DataLoader kept over the whole run.

    `order_of(epoch)` gives the epoch's sample indices in batches of `batch_size`
    (epoch_order, or lib.fixed_steps' order). Each index goes out as (epoch, index), the
    key of LabeledCrops and ItemCrops: the epoch travels with each index, so a worker that
    lives through every epoch, with its own copy of the samples, draws that epoch's
    sample. Under torchrun a rank gets its share of every batch
    (lib.distributed.rank_share): the ranks' shares of a step are together the batch of
    the single-process run, each sample drawn as there.
    """

    def __init__(self, order_of, batch_size, world=SINGLE):
        self.order_of, self.batch_size, self.world = order_of, batch_size, world
        self.epoch = 1

    def __iter__(self):
        order = self.order_of(self.epoch)
        for start in range(0, len(order), self.batch_size):
            yield [(self.epoch, i) for i in rank_share(order[start:start + self.batch_size], self.world)]

    def __len__(self):
        return -(-len(self.order_of(self.epoch)) // self.batch_size)


def persistent_loader(dataset, batch_sampler, workers, pin_memory=False):
    """A DataLoader kept through a training run: its -j workers are started once and serve every epoch, instead of
    a new set of processes per epoch (each index says which epoch's draws it is).

    It has a random generator of its own. Every iterator made draws its workers' base seed, by default from torch's
    global RNG, which dropout and s4GAN draw from after lib.seeding.seed_epoch: without workers a run makes an
    iterator per epoch, with persistent ones a single iterator, and -j changed the weights of --ssl s4gan runs.
    """
    return DataLoader(dataset, batch_sampler=batch_sampler, num_workers=workers, pin_memory=pin_memory,
                      persistent_workers=workers > 0, generator=torch.Generator())


def batch_forward(model, images, split, with_embeddings):
    """The model's outputs for a step's images [B, 3, H, W]: (logits [B, C, H, W], embeddings [B, D, h, w] of its
    contrastive head, or None without `with_embeddings`). Images before `split` and from it on go through the
    model in separate calls, so that BatchNorm normalises each part by its own statistics; `split` = B: one call."""
    parts = [part for part in (images[:split], images[split:]) if len(part)]
    outputs = [model.forward_with_embeddings(part) if with_embeddings else (model(part), None) for part in parts]
    if len(outputs) == 1:
        return outputs[0]
    logits, embeddings = zip(*outputs)
    return torch.cat(logits), None if embeddings[0] is None else torch.cat(embeddings)


def joined_on(device, tensors, **to_kwargs):
    """`tensors` (the batches of the loaders of a step) moved to `device` as they came, from pinned memory on CUDA,
    and concatenated there: joined on the host they would be an ordinary tensor again. One tensor is not copied."""
    moved = [tensor.to(device, non_blocking=True, **to_kwargs) for tensor in tensors]
    return moved[0] if len(moved) == 1 else torch.cat(moved)


def train_one_epoch(model, epoch, loader, ssl, contrastive, optimizer, scheduler, scaler, device, progress,
                    criterion=mean_cross_entropy, confusion=None, amp=False):
    """One pass over `loader`, the labeled batches of `epoch`; returns the mean loss.

    `criterion` (logits, masks) -> the labeled crops' loss (lib.losses.LOSSES). `ssl` is
    the run's --ssl mode (lib.semisup.mode.SslMode): its unlabeled batches, if any, go
    through the model behind the labeled ones (in a call of their own where the mode has
    `separate_forward`), its term joins the labeled crops' loss,
    and it labels the batch for `contrastive` (lib.semisup.reco.ReCo, for a model with a
    representation head; or None), whose term covers every pixel with a true label or
    one of the mode's. With `confusion` ([C, C] int64 on `device`), the confusion matrix
    of the model's argmax on the labeled crops is added to it (see
    majority_class_warning).

    `amp` is --amp: mixed precision on CUDA (lib.fast_path.autocast_dtype; `scaler` is
    fast_path.grad_scaler's). On CUDA, with --amp or without, the model and images are
    channels_last, cuDNN's autotuner is on, and the loss is read every
    fast_path.LOSS_READ_STEPS steps: a diverged run stops a few steps late, and the
    progress line shows the loss last read. The CPU runs the plain float32 loop.
    """
    model.train()
    fast_path.tune_convolutions(device)
    fast_path.to_channels_last(model, device)
    layout = fast_path.memory_format(device)
    losses = fast_path.LossReader(fast_path.loss_read_steps(device),
                                  f"lower --lr ({optimizer.defaults['lr']:g}) or --weight-decay "
                                  f"({optimizer.defaults['weight_decay']:g})")
    unlabeled = ssl.batches(epoch, len(loader))  # one unlabeled batch behind each labeled one
    for step, labeled_batch in enumerate(loader):
        num_labeled = len(labeled_batch[0])
        parts = [labeled_batch] if unlabeled is None else [labeled_batch, next(unlabeled)]
        # images [B, 3, H, W], masks [B, H, W]: the labeled crops first, then the mode's unlabeled ones
        images = joined_on(device, [part_images for part_images, _ in parts], memory_format=layout)
        masks = joined_on(device, [part_masks for _, part_masks in parts])
        with fast_path.autocast(device, amp):
            # logits [B, C, H, W]; embeddings [B, D, H/s, W/s] with a contrastive head, else None
            logits, embeddings = batch_forward(model, images, num_labeled if ssl.separate_forward else len(images),
                                               contrastive is not None)
            loss = criterion(logits[:num_labeled], masks[:num_labeled])
            ssl_loss, targets = ssl.loss(images, logits, masks, num_labeled)  # targets [B, H, W]: the mode's labels
            loss = loss + ssl_loss
        if confusion is not None:  # the logits of the step: no forward pass of its own
            confusion += confusion_matrix(logits[:num_labeled].detach().argmax(dim=1), masks[:num_labeled],
                                          len(confusion))
        if contrastive is not None:  # outside autocast: similarities over a temperature of 0.5 want float32
            loss = loss + contrastive(logits, embeddings, targets, epoch, step)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        values = ssl.after_step(images, logits, masks, num_labeled, scaler)
        scaler.update()
        scheduler.step()
        losses.add(loss)  # a non-finite loss raises here, or at a later read on CUDA
        progress.update(items=len(images), loss=losses.last, **values, lr=scheduler.get_last_lr()[0])
    return losses.mean()


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


def _same_size_batches(items):
    """iterate_batches' collate_fn: (id, image, mask or None) items -> [(ids, images [B, 3, H, W], masks [B, H, W]
    or None)], a batch per run of one size. Stacked in the loader's worker, so that pinned memory holds the batch
    itself, not images that the main process would stack into unpinned memory again."""
    batches = []
    for run in _same_size_runs(items):
        ids, images, masks = zip(*run)
        batches.append((list(ids), _batch(images), None if masks[0] is None else _batch(masks)))
    return batches


def iterate_batches(dataset, ids, mean, std, batch_size, workers, with_masks=False, pin_memory=False):
    """Yield (ids, images [B, 3, H, W], masks [B, H, W] or None) over `ids`, in order.

    Images of a batch have the same size; pools of mixed sizes give smaller batches.
    `pin_memory` (for a CUDA device) hands them over in page-locked memory, which the copy
    to the GPU reads directly and, with non_blocking, while the host goes on.
    """
    loader = DataLoader(
        _Images(dataset, list(ids), mean, std, with_masks), batch_size=batch_size, num_workers=workers,
        collate_fn=_same_size_batches, pin_memory=pin_memory,
    )
    for batches in loader:
        yield from batches


def predicted_classes(model, device, amp, images):
    """images [B, 3, H, W] (on any device) -> the model's class ids [B, H, W] on `device`."""
    images = images.to(device, non_blocking=True, memory_format=fast_path.memory_format(device))
    with fast_path.autocast(device, amp):
        logits = model(images)  # [B, C, H, W]
    if not torch.isfinite(logits).all():  # an argmax of NaN is class 0: an mIoU of garbage
        raise UserError("--checkpoint: the model's logits are NaN or infinite (on CUDA, try --no-amp)")
    return logits.argmax(dim=1)


def evaluate_confusion(model, batches, num_classes, device, amp, progress=None, window=DEFAULT_SLIDE_WINDOW):
    """Accumulate the [C, C] confusion matrix (rows = truth) of the model over `batches`.

    Images larger than `window` (height, width) are predicted window by window, and
    counted window by window (lib.sliding.owned_parts): neither the predictions nor
    the confusion matrix's int64 temporaries ever span a whole large image.
    """
    model.eval()
    fast_path.to_channels_last(model, device)
    confusion = torch.zeros(num_classes, num_classes, dtype=torch.long, device=device)
    predict = functools.partial(predicted_classes, model, device, amp)
    for _, images, masks in batches:
        # Inference mode: no_grad without autograd's version counting either. Entered per batch, so that
        # `confusion`, made outside it, stays a tensor the caller may update in place.
        with torch.inference_mode():
            for _, owned, predictions in owned_parts(predict, images, window):  # predictions [B, h, w]: owned part
                truth = masks[..., owned.top:owned.bottom, owned.left:owned.right]  # [B, h, w]
                confusion += confusion_matrix(predictions, truth.to(device, non_blocking=True), num_classes)
        if progress:
            progress.update(steps=len(images), items=len(images))
    return confusion.cpu()


def steps_per_epoch(num_images, batch_size):
    """The batches of an epoch (epoch_order): every image seen, the last batch filled up."""
    return -(-num_images // batch_size)


def expected_total_steps(num_images, batch_size, epochs):
    return max(steps_per_epoch(num_images, batch_size) * epochs, 1)


def majority_class_warning(confusion, class_names):
    """A warning (text) when the model's mIoU over `confusion` ([C, C], rows = truth) is no better than that of
    predicting the truth's most frequent class everywhere on the same pixels; None otherwise, or without pixels.

    train.py gives the confusion of the last epoch's labeled training crops, as the model
    predicted them in training mode while it learnt (augmented, BatchNorm on batch
    statistics, weights changing): a cheap alarm for a run that learnt nothing, no evaluation.
    """
    if confusion.sum() == 0:
        return None
    truth = confusion.sum(dim=1)  # [C] pixels of each class
    majority = int(truth.argmax())
    everywhere = torch.zeros_like(confusion)  # [C, C]: every pixel predicted as the majority class
    everywhere[:, majority] = truth
    model, baseline = mean_iou(confusion), mean_iou(everywhere)
    if model > baseline:
        return None
    return (f"the model's mIoU on its training crops of the last epoch ({100 * model:.2f} %) is no better than "
            f"predicting {class_names[majority]!r} everywhere ({100 * baseline:.2f} %): train longer (--epochs) or "
            f"with another --lr, and for imbalanced classes try --loss dice or --class-weights median-frequency")
