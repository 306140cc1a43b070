"""The unlabeled side of semi-supervised training: which images have unlabeled pixels, their crops and batches.

Both --ssl modes that train on unlabeled pixels (selftrain, s4gan) take crops of every
image an annotator has not fully labeled (unlabeled images, and for patch and region
units the rest of partly labeled ones), -u of them beside every labeled batch. A pixel
with a true label always keeps it; the others carry the teacher's pseudo label
(self-training, made before training) or UNLABELED (s4GAN, whose labels are made during
training from the model's own prediction).
"""
import itertools
from dataclasses import dataclass

import numpy as np
from torch.utils.data import Dataset, Sampler

from lib import seeding
from lib.cli import positive_int
from lib.data.base import UNLABELED, read_label
from lib.data.transforms import image_to_tensor, mask_to_tensor, random_crop_flip, random_rescale
from lib.engine import persistent_loader
from lib.errors import UserError
from lib.semisup.augment import strong_augment


@dataclass(frozen=True)
class TrainingImages:
    """The images of a training run: the pool (`dataset`), the labeled items of each labeled image (`labeled`,
    items of `unit`), the normalisation of the model's input, the (H, W) of every crop, labeled or not, and the
    rescaling before it (lib.data.transforms.RandomScale; None: none)."""

    dataset: object
    unit: object
    labeled: dict
    mean: list
    std: list
    crop: tuple
    random_scale: object = None


def add_unlabeled_batch_flag(group):
    group.add_argument("-u", "--unlabeled-batch-size", type=positive_int, default=None,
                       help="crops of unlabeled pixels added to every step's labeled batch (default: -b with --ssl "
                            "s4gan, as Mittal et al.; 4 otherwise, as S4AL+)")


def images_with_unlabeled_pixels(image_ids, unit, labeled, image_size):
    """The images of `image_ids` not fully covered by their labeled items (`labeled`: image id -> items;
    `image_size(id)` -> (H, W), read for the labeled images of region units only)."""
    return [image_id for image_id in image_ids
            if image_id not in labeled or not _covered(unit, labeled[image_id], image_id, image_size)]


def _covered(unit, items, image_id, image_size):
    """Whether the items cover their image: all of its cells, or regions whose pixels add up to the image's
    (regions never overlap, lib.index), as the tiling of a whole image labeled at the start (select.py --method
    random-images)."""
    if unit.type != "region":
        return len(items) == unit.items_per_image
    height, width = image_size(image_id)
    return len(items) * unit.size ** 2 == height * width


def unlabeled_images(args, images):
    """The images of the run (TrainingImages) with unlabeled pixels; none, said once, when every pixel is labeled."""
    found = images_with_unlabeled_pixels(images.dataset.ids, images.unit, images.labeled, images.dataset.image_size)
    if not found:
        print(f"--ssl {args.ssl}: every pixel of the pool is labeled, training is supervised only")
    return found


def epoch_batches(args, images, ids, device, pseudo_paths=None):
    """(epoch, steps) -> the epoch's `steps` batches of -u crops of the images `ids` (UnlabeledCrops), for
    SslMode.batches: from one DataLoader, whose -j workers serve the whole run (pinned memory on CUDA), as the
    labeled crops'. The epoch's iterator ends with its last labeled step: no crop is loaded in vain."""
    crops = UnlabeledCrops(images.dataset, images.unit, ids, images.labeled, images.crop, args.seed, images.mean,
                           images.std, pseudo_paths, images.random_scale)
    batches = PassBatches(args.seed, len(crops), args.unlabeled_batch_size)
    loader = persistent_loader(crops, batches, args.workers, pin_memory=device.type == "cuda")

    def of_epoch(epoch, steps):
        batches.epoch, batches.steps = epoch, steps
        return iter(loader)

    return of_epoch


class PassBatches(Sampler):
    """The `steps` batches of `batch_size` unlabeled crops of an epoch, both set before each: pass after pass over
    the `count` crops, each in the order drawn from (seed, epoch, pass). A pass drops its short last batch, unless
    it is a single batch of all the crops. Each index goes out as (epoch, pass, index): the key of
    UnlabeledCrops."""

    def __init__(self, seed, count, batch_size):
        self.seed, self.count, self.batch_size = seed, count, batch_size
        self.epoch, self.steps = 0, 0

    def __iter__(self):
        return itertools.islice(self._passes(self.epoch), self.steps)

    def __len__(self):
        return self.steps

    def _passes(self, epoch):
        stop = self.count - self.count % self.batch_size if self.count > self.batch_size else self.count
        for repeat in itertools.count():
            order = seeding.unlabeled_order(self.seed, epoch, repeat, self.count)
            for start in range(0, stop, self.batch_size):
                yield [(epoch, repeat, i) for i in order[start:start + self.batch_size]]


class UnlabeledCrops(Dataset):
    """Random crops of the images `ids`, with targets of true labels where known; indexed by (epoch, pass over
    the images within the epoch, index), the draws of each key its own.

    With `pseudo_paths` (image id -> PNG) the other pixels get the teacher's labels and
    the crop is strongly augmented (self-training); without, they are UNLABELED and
    the crop is only cropped and flipped, as s4GAN's unlabeled images are. `labeled`
    maps partly labeled images to their items, whose masks are read only inside them.
    With `random_scale` (lib.data.transforms.RandomScale) image and targets are first
    rescaled, as the labeled crops are.
    """

    def __init__(self, dataset, unit, ids, labeled, crop, seed, mean, std, pseudo_paths=None, random_scale=None):
        self.dataset, self.unit, self.ids, self.labeled = dataset, unit, list(ids), labeled
        self.crop, self.seed, self.mean, self.std = crop, seed, mean, std
        self.pseudo_paths, self.random_scale = pseudo_paths, random_scale

    def __len__(self):
        return len(self.ids)

    def target(self, image_id, size):
        """[H, W] uint8 for an image of `size` (H, W): the annotators' labels inside its labeled items."""
        if self.pseudo_paths is None:
            target = np.full(size, UNLABELED, np.uint8)
        else:
            target = read_label(self.pseudo_paths[image_id])
            if target.shape != size:  # labels the teacher made at another --resize or --scale
                raise UserError(f"{self.pseudo_paths[image_id]}: pseudo label is {target.shape[1]}x{target.shape[0]} "
                                f"but its image is {size[1]}x{size[0]} here: delete the pseudo labels' folder")
        if image_id not in self.labeled:
            return target
        mask = self.dataset.load_mask(image_id)
        return np.where(self.unit.labeled_area(self.labeled[image_id], *mask.shape), mask, target)

    def __getitem__(self, key):
        epoch, repeat, i = key
        image_id = self.ids[i]
        rng = seeding.unlabeled_sample_rng(self.seed, epoch, repeat, i)
        image = self.dataset.load_image(image_id)
        target = self.target(image_id, image.shape[:2])
        if self.random_scale is not None:
            image, target = random_rescale(image, target, self.random_scale, rng)
        image, target = random_crop_flip(image, target, self.crop, rng)
        if self.pseudo_paths is not None:
            image, target = strong_augment(image, target, rng)
        return image_to_tensor(image, self.mean, self.std), mask_to_tensor(target)

