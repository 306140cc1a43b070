"""train.py's labeled data: the index's labeled items, checked to be trainable, and the samples an epoch draws
from them (random crops of labeled images, or each item's box with --item-crops)."""
from lib.data import open_dataset
from lib.data.pool_file import restrict_to_pool
from lib.data.resolution import Resolution, check_placed_resolution
from lib.data.transforms import IMAGENET_MEAN, IMAGENET_STD, RandomScale
from lib.engine import ItemCrops, LabeledCrops, default_crop, largest_item
from lib.errors import UserError
from lib.index import load_index
from lib.semisup.unlabeled import TrainingImages
from lib.text import plural
from lib.units import items_by_image, require_fit


def labeled_items(path, index, dataset):
    """{image id: its labeled items} of an index, checked to be trainable."""
    try:
        items = items_by_image(index.unit, index.labeled)
        if index.unit.type != "image":  # a grid too fine for an image has empty cells, a region may not fit
            require_fit(index.unit, items, dataset.image_size, dataset.image_path,
                        f"{path}: unit {index.unit.describe()}")
        for image_id, image_items in items.items():
            if index.unit.type == "region":
                for item_id in image_items:  # a region placed beyond its image's border
                    index.unit.box(item_id, *dataset.image_size(image_id))
    except ValueError as err:
        raise UserError(f"{path}: {err}") from None
    if len(items) < 2:
        raise UserError(f"{path}: at least 2 labeled images are needed to train (BatchNorm), got {len(items)}")
    unlabeled = [image_id for image_id in items if not dataset.has_mask(image_id)]
    if unlabeled:
        shown = ", ".join(unlabeled[:5]) + (" ..." if len(unlabeled) > 5 else "")
        raise UserError(f"{path}: {plural(len(unlabeled), 'labeled image has', 'labeled images have')} no mask file: "
                        f"{shown}")
    return items


def training_images(args):
    """The run's TrainingImages, their labeled items checked to be trainable, and its index."""
    dataset = open_dataset(args.dataset, args.data_root, args.split, args.cache_dir,
                           Resolution.from_flags(args.resize, args.scale))
    if args.pool:
        restrict_to_pool(dataset, args.pool)
    index = load_index(args.index, dataset.ids, dataset=args.dataset)
    check_placed_resolution(index, args.index, dataset.resolution)
    labeled = labeled_items(args.index, index, dataset)
    # Without --crop, fit to the images cropped from: the labeled ones; with --ssl the pool's, each labeled or with
    # unlabeled pixels the mode crops (the whole pool in every cycle, so an experiment's cycles crop alike).
    if args.item_crops:  # the size every item is padded to
        crop = largest_item(index.unit, labeled, dataset.image_size)
    else:
        crop = args.crop or default_crop(map(dataset.image_size, dataset.ids if args.ssl != "none" else labeled))
    random_scale = RandomScale(*args.random_scale) if args.random_scale else None
    return TrainingImages(dataset, index.unit, labeled, list(IMAGENET_MEAN), list(IMAGENET_STD), crop,
                          random_scale), index


def labeled_samples(args, images):
    """The labeled samples of an epoch (lib.engine.epoch_order): each labeled item's box with --item-crops, else a
    random crop of each labeled image."""
    if args.item_crops:
        return ItemCrops(images.dataset, images.unit, images.labeled, images.crop, args.flip, args.seed, images.mean,
                         images.std)
    return LabeledCrops(images.dataset, images.unit, images.labeled, images.crop, args.flip, args.seed, images.mean,
                        images.std, images.random_scale)


# Fewer backbone positions than this down an item's shorter side are warned of (small_items_warning).
MIN_ITEM_POSITIONS = 4


def small_items_warning(item_size, output_stride):
    """A warning when --item-crops' samples, at most `item_size` (H, W) pixels, are so small that the backbone sees
    fewer than MIN_ITEM_POSITIONS positions down a side at `output_stride`; else None.

    ASPP's image pooling and the BatchNorm statistics of the head then learn from a few
    positions and are applied to whole images: MEAL's cycle 0 on CamVid at 120x160
    (patches 30x40, 2x3 positions at stride 16) scored 7.0 mIoU against 18.6 trained on
    masked whole images, at 360x480 (90x120, 6x8 positions) 18.2 against 21.9 (3 seeds).
    """
    positions = [-(-side // output_stride) for side in item_size]
    if min(positions) >= MIN_ITEM_POSITIONS:
        return None
    return (f"--item-crops: the labeled items are at most {item_size[0]}x{item_size[1]} pixels, "
            f"{positions[0]}x{positions[1]} positions of the backbone at output stride {output_stride}: a model "
            f"trained on so little context does poorly on whole images (MEAL's CamVid patches are 90x120 pixels); "
            f"label larger items or train on a larger --resize/--scale")
