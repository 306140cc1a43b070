r"""Train a segmentation model on the labeled items of an index file.

    python train.py --dataset synthetic --data-root data/synthetic \
        --index runs/x/cycle0/index.json --out runs/x/cycle0/model.pt --resume

Images, patches or regions: with patch and region units an image is trained on
with its labeled items only, and the loss ignores every other pixel; with
--item-crops each labeled item is a sample of its own, cut to its box (MEAL).

With --ssl selftrain or --ssl s4gan the unlabeled pixels of the pool take part too:
through a teacher's pseudo labels (S4AL+), or through s4GAN's discriminator (the AL
study's -SSL methods).

With --contrastive reco the model gets ReCo's representation head, trained with the
regional contrastive loss beside the cross-entropy (S4AL+); select.py and evaluate.py
ignore the head.

Under `torchrun --nproc-per-node N train.py ...` the same flags train with N processes
(DistributedDataParallel): each step's batch of -b is split between them, and rank 0
writes the files (lib/distributed.py).

A checkpoint is written after every epoch next to --out (`<out>.resume`); with
--resume a killed run continues from it and reaches the same final weights as an
uninterrupted run. The finished model is written to --out and the resume file is
removed, so "--out exists" means "training is done". With --keep-best the model is
evaluated on a validation split after every epoch, and --out gets the best epoch's
weights (lib/best_epoch.py).
"""
import argparse
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import torch

from lib import fast_path, seeding
from lib.best_epoch import add_keep_best_flags, best_epoch_tracker, check_keep_best_flags
from lib.checkpoint import check_dataset, load_checkpoint, save_checkpoint
from lib.cli import (
    MAX_SIDE,
    add_resolution_flags,
    add_runtime_flags,
    float_in,
    non_negative_float,
    positive_float,
    positive_int,
    scale_range,
    script_parser,
    seed,
    size_pair_up_to,
)
from lib.data import DATASETS, open_dataset
from lib.data.pool_file import restrict_to_pool
from lib.data.resolution import Resolution, check_placed_resolution
from lib.data.transforms import IMAGENET_MEAN, IMAGENET_STD, RandomScale
from lib.distributed import SINGLE, joined, mean_across, sum_across
from lib.engine import (
    LR_SCHEDULES,
    EpochBatches,
    ItemCrops,
    LabeledCrops,
    default_crop,
    largest_item,
    majority_class_warning,
    train_one_epoch,
    training_loader,
)
from lib.errors import UserError, run_cli
from lib.fileio import sha256_of
from lib.fixed_steps import epoch_steps, sample_order, total_steps
from lib.index import load_index
from lib.label_stats import check_class_pixels
from lib.losses import add_loss_flags, class_weights, make_criterion
from lib.models import ARCHS, build_model
from lib.outputs import check_outputs
from lib.pretrained import load_pretrained_backbone, pretrained_location
from lib.progress import Progress, format_duration
from lib.resume import as_train_args, earlier_progress, resume_errors, resume_state
from lib.semisup.contrastive import (
    add_contrastive_flags,
    check_contrastive_flags,
    contrastive_head,
    contrastive_model_args,
)
from lib.semisup.modes import SSL_MODES, add_ssl_flags, check_ssl_flags
from lib.semisup.unlabeled import TrainingImages
from lib.state_dicts import first_non_finite, key_mismatch
from lib.text import plural
from lib.threads import use_threads
from lib.units import items_by_image, labeled_fractions, require_fit


def get_args_parser():
    parser = script_parser(__doc__)
    data = parser.add_argument_group("data")
    data.add_argument("--dataset", required=True, choices=sorted(DATASETS), help="dataset layout")
    data.add_argument("--data-root", required=True, help="dataset root folder")
    data.add_argument("--split", default="train", help="split the pool is drawn from")
    data.add_argument("--pool", default=None,
                      help="JSON list of image ids: the pool is these images of --split, as in select.py "
                           "(default: all of them)")
    data.add_argument("--index", required=True, help="index file listing the labeled items")
    add_resolution_flags(data, "the files' resolution")
    model = parser.add_argument_group("model")
    model.add_argument("--arch", default="mobilenet_v2", choices=ARCHS, help="DeepLabv3+ backbone")
    model.add_argument("--output-stride", type=int, default=16, choices=(8, 16), help="backbone output stride")
    model.add_argument("--mc-dropout", action="store_true",
                       help="three dropout layers (p=0.1) in the decoder, for --method bald in select.py")
    model.add_argument("--pretrained", default=None,
                       help="ImageNet backbone weights: a torchvision state-dict file, or 'imagenet' for the torch "
                            "hub cache")
    model.add_argument("--freeze-backbone", action="store_true",
                       help="train ASPP and decoder only, the backbone keeps its weights and BatchNorm statistics "
                            "(MEAL)")
    model.add_argument("--init-head-from", default=None, metavar="CHECKPOINT",
                       help="start ASPP, decoder and contrastive head from this train.py checkpoint of the same "
                            "--arch, --output-stride and classes, the backbone from --pretrained (the AL study's "
                            "supervised cycles build on the previous cycle's model); default: a fresh head")
    optim = parser.add_argument_group("optimisation")
    optim.add_argument("--epochs", type=positive_int, default=50,
                       help="passes over the labeled images (items with --item-crops), each seeing every one (full "
                            "batches: the last is filled up with images of the first, an image may appear twice, "
                            "never zero times)")
    optim.add_argument("--steps-per-epoch", type=positive_int, default=None,
                       help="steps of an epoch instead: the labeled samples in the epoch's order over and over, as "
                            "many as the steps take; the lr schedule counts them (S4AL+: 50 or 100 steps of -b 4, 100 "
                            "or 300 of -b 2 with self-training; lib/fixed_steps.py) (default: every sample once)")
    optim.add_argument("-b", "--batch-size", type=positive_int, default=8, help="images per step")
    optim.add_argument("--crop", type=size_pair_up_to(MAX_SIDE), default=None,
                       help="random crop HxW (or one number), smaller images padded (default: 256 a side, or the "
                            "smallest height and width of the images cropped from where less: no padding)")
    optim.add_argument("--item-crops", action="store_true",
                       help="every labeled item is a sample of its own, cropped to its box (patches, regions; an "
                            "image unit's is the whole image), no random crop; smaller boxes padded to the largest "
                            "with ignored pixels (MEAL)")
    add_loss_flags(optim)
    optim.add_argument("--random-scale", type=scale_range, default=None, metavar="MIN,MAX[,STEP]",
                       help="rescale each sample (labeled, and unlabeled with --ssl) by a factor drawn uniformly from "
                            "[MIN, MAX], or from MIN, MIN+STEP, ..., MAX, before its crop (default: none)")
    optim.add_argument("--flip", action=argparse.BooleanOptionalAction, default=True,
                       help="random horizontal flips (--no-flip with --item-crops: no augmentation, as in MEAL)")
    optim.add_argument("--optimizer", default="sgd", choices=("sgd", "adam"), help="optimiser")
    optim.add_argument("--lr", type=positive_float, default=0.01, help="initial learning rate")
    optim.add_argument("--head-lr-mult", type=positive_float, default=1.0,
                       help="ASPP, decoder and contrastive head learn at this times --lr, the backbone at --lr, both "
                            "on --lr-schedule (the AL study's and S4AL+'s code: 10)")
    optim.add_argument("--lr-schedule", default="poly", choices=sorted(LR_SCHEDULES),
                       help="poly: lr * (1 - step/total)^0.9 (DeepLab); constant: no schedule (MEAL)")
    optim.add_argument("--momentum", type=float_in(0, 1, open_high=True), default=0.9, help="SGD momentum")
    optim.add_argument("--nesterov", action="store_true", help="SGD with Nesterov momentum (S4AL+'s code)")
    optim.add_argument("--weight-decay", type=non_negative_float, default=1e-4, help="L2 weight decay")
    add_ssl_flags(parser.add_argument_group("semi-supervised training"))
    add_contrastive_flags(parser.add_argument_group("contrastive learning"))
    run = parser.add_argument_group("run")
    run.add_argument("--out", required=True, help="checkpoint file to write when training is done")
    run.add_argument("--resume", action="store_true", help="continue from <out>.resume if a killed run left one")
    run.add_argument("--seed", type=seed, default=0, help="seed for initialisation, order and augmentation")
    add_runtime_flags(run, "train")
    run.add_argument("--sync-bn", action="store_true",
                     help="under torchrun: BatchNorm statistics of the whole batch, across the processes "
                          "(SyncBatchNorm), instead of each process's share")
    add_keep_best_flags(run)
    run.add_argument("--log-interval", type=positive_float, default=30.0,
                     help="seconds between progress lines when not on a terminal")
    return parser


def check_args(args):
    check_ssl_flags(args)
    check_optimizer_flags(args)
    if args.freeze_backbone and not args.pretrained:
        raise UserError("--freeze-backbone keeps the backbone's weights: give the --pretrained ones to keep")
    check_contrastive_flags(args)
    check_item_crop_flags(args)
    check_keep_best_flags(args)


def check_item_crop_flags(args):
    """--item-crops takes each item's box as it is: no flag may ask for crops of another size."""
    if not args.item_crops:
        return
    for flag, value in (("--crop", args.crop), ("--random-scale", args.random_scale)):
        if value is not None:
            raise UserError(f"{flag}: with --item-crops a sample is its labeled item's box, neither cropped nor "
                            f"rescaled: leave {flag} out")
    if args.ssl != "none":  # the mode's unlabeled crops go into the batches of the labeled ones
        raise UserError(f"--item-crops trains on labeled items only, --ssl {args.ssl} on crops of unlabeled pixels "
                        f"beside them: give one of the two")


def check_world(args, world, device):
    """What does not run under torchrun (yet), or not on `device`: a refusal before any work, not a hang or a wrong
    result."""
    if args.sync_bn and not world.distributed:
        raise UserError("--sync-bn synchronises BatchNorm across the processes of torchrun; this run has one")
    if args.sync_bn and device.type != "cuda":
        raise UserError("--sync-bn: torch's SyncBatchNorm runs on GPUs only, this run is on the CPU")
    if not world.distributed:
        return
    # s4GAN's discriminator and the teacher's pseudo labels are not shared between processes, and ReCo's
    # representation head is not reached through DistributedDataParallel's forward.
    for flag, value in (("--ssl", args.ssl), ("--contrastive", args.contrastive)):
        if value != "none":
            raise UserError(f"{flag} {value} trains in one process only: run train.py without torchrun")
    if args.batch_size < world.size:
        raise UserError(f"-b {args.batch_size} is split between the {world.size} processes of torchrun: give at "
                        f"least {world.size}")


def resume_path(args):
    return f"{args.out}.resume"


def check_paths(args):
    """Before any work: no output may overwrite or bury an input, or another output (lib.outputs)."""
    mode = SSL_MODES[args.ssl]
    inputs = {"--data-root": args.data_root, "--index": args.index, "--pool": args.pool, **mode.input_paths(args),
              "--val-data-root": args.val_data_root, "--cache-dir": args.cache_dir,
              "--pretrained": args.pretrained and pretrained_location(args.pretrained),
              "--init-head-from": args.init_head_from}
    files = {"--out": args.out, "--out's .resume file": resume_path(args)}
    folders = {**mode.output_folders(args), "--cache-dir": args.cache_dir}
    check_outputs(inputs, files, folders)
    mode.check_folders(args)


def check_optimizer_flags(args):
    if args.nesterov and args.optimizer != "sgd":
        raise UserError(f"--nesterov is a momentum of SGD, but --optimizer is {args.optimizer}")
    if args.nesterov and args.momentum == 0:
        raise UserError("--nesterov needs a momentum: give --momentum above 0")


def parameter_groups(model, lr, head_lr_mult):
    """The optimiser's groups of the model's trainable parameters: the backbone's at `lr`, the others' (ASPP,
    decoder, contrastive head) at `head_lr_mult` x `lr`; one group at `lr` when the multiplier is 1, as before
    --head-lr-mult, so that .resume files of then still load. A frozen backbone has no group.

    Both papers' code trains ASPP and decoder at 10x the backbone's rate: the AL study's
    (sud0301/best_practices_ALSS model/deeplabv3p.py l.183-185) and S4AL+'s, whose representation head is in the
    10x groups too (Nishant213/MMLAL core_models.py l.314-336).
    """
    if head_lr_mult == 1:
        return [{"params": [p for p in model.parameters() if p.requires_grad], "lr": lr}]
    backbone, head = model.backbone_and_head_parameters()
    groups = ({"params": backbone, "lr": lr}, {"params": head, "lr": lr * head_lr_mult})
    return [group for group in groups if group["params"]]


def make_optimizer(args, model):
    """The model's optimiser; every group follows --lr-schedule (one LambdaLR scales them all)."""
    groups = parameter_groups(model, args.lr, args.head_lr_mult)
    if args.optimizer == "adam":
        return torch.optim.Adam(groups, lr=args.lr, weight_decay=args.weight_decay)
    # The AL study's code trains without Nesterov (sud0301/best_practices_ALSS query_strategies/strategy.py l.104),
    # S4AL+'s with (Nishant213/MMLAL core_models.py l.338-343).
    return torch.optim.SGD(groups, lr=args.lr, momentum=args.momentum, weight_decay=args.weight_decay,
                           nesterov=args.nesterov)


def resume(args, train_args, index_sha256, run):
    """With --resume and a .resume file of this very run: its checkpoint, loaded into `run`; else None."""
    path = resume_path(args)
    if not (args.resume and os.path.exists(path)):
        return None
    parser = get_args_parser()
    checkpoint = resume_state(path, train_args, index_sha256, {k: parser.get_default(k) for k in train_args})
    with resume_errors(path):
        run.load_state_dict(checkpoint)
    print(f"resuming {path} after epoch {checkpoint['epoch']}/{args.epochs}")
    return checkpoint


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


def model_arguments(args, num_classes):
    """The model_args of the checkpoint (lib.models.build_model)."""
    return {
        "arch": args.arch, "num_classes": num_classes, "output_stride": args.output_stride,
        "mc_dropout": args.mc_dropout or SSL_MODES[args.ssl].student_dropout,
        **contrastive_model_args(args),
    }


@dataclass
class Run:
    """What the steps of training update and a checkpoint keeps: the model, its optimiser, learning-rate schedule
    (`lr_lambda`: the factor per step) and AMP loss scaler, on `device`; `network` is what the steps call: the model,
    or under torchrun its DistributedDataParallel wrapper, which averages the gradients of the processes."""

    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    lr_lambda: object
    scheduler: torch.optim.lr_scheduler.LambdaLR
    scaler: torch.amp.GradScaler
    device: torch.device
    network: torch.nn.Module

    def state_dict(self):
        return {name: getattr(self, name).state_dict() for name in ("model", "optimizer", "scheduler", "scaler")}

    def load_state_dict(self, state):
        for name in ("model", "optimizer", "scheduler", "scaler"):
            getattr(self, name).load_state_dict(state[name])


BACKBONE_KEYS = "backbone."  # the state-dict keys of DeepLabV3Plus.backbone; every other tensor is the head's


def head_weights(path, model_args, dataset):
    """--init-head-from: the tensors outside the backbone (ASPP, decoder, contrastive head) of the checkpoint at
    `path`, checked to be of a model of this run's architecture, output stride and classes.

    The AL study's supervised cycles build on the previous cycle's model: one network trains through them all, its
    backbone (with its BatchNorm statistics) reloaded from ImageNet before each, ASPP and decoder kept
    (sud0301/best_practices_ALSS query_strategies/strategy.py l.67-89); its SSL cycles re-initialise everything
    (strategy_SSL.py l.133-149).
    """
    checkpoint = load_checkpoint(path)
    check_dataset(checkpoint, path, dataset)
    for key in ("arch", "output_stride"):
        theirs = checkpoint["model_args"].get(key)
        if theirs != model_args[key]:
            raise UserError(f"--init-head-from {path}: a model of {key} {theirs!r}, this run trains one of "
                            f"{model_args[key]!r}")
    head = {name: tensor for name, tensor in checkpoint["model"].items() if not name.startswith(BACKBONE_KEYS)}
    broken = first_non_finite(head)
    if broken is not None:
        raise UserError(f"--init-head-from {path}: NaN or infinite weights ({broken})")
    return head


def load_head(model, head, path):
    """`head` (head_weights, read from `path`) into `model`: every tensor outside its backbone, of the same shape."""
    own = {name: tensor for name, tensor in model.state_dict().items() if not name.startswith(BACKBONE_KEYS)}
    mismatch = key_mismatch(own, head, "this run's model")  # e.g. a --contrastive head on one side only
    if mismatch:
        raise UserError(f"--init-head-from {path}: not the head of this run's model: {mismatch}")
    model.load_state_dict(head, strict=False)  # the backbone's keys, left out, keep --pretrained's weights


def start_run(args, model_args, num_samples, device, world=SINGLE, head=None):
    """The initial model (seeded by --seed: the same on every process) on `device`, with its optimiser, schedule
    (over the steps of `num_samples` labeled samples an epoch) and scaler; `head`: --init-head-from's tensors
    (head_weights), loaded over the initial ones."""
    seeding.seed_initial_weights(args.seed)
    model = build_model(model_args)
    if args.pretrained:
        load_pretrained_backbone(model, args.pretrained, args.arch)
    if head is not None:
        load_head(model, head, args.init_head_from)
    if args.freeze_backbone:
        model.freeze_backbone()
    if args.sync_bn:
        model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)  # the same state dict keys as BatchNorm2d
    model.to(device)
    fast_path.to_channels_last(model, device)  # before DistributedDataParallel, which keeps the layout of its buckets
    network = model
    if world.distributed:
        network = torch.nn.parallel.DistributedDataParallel(model, [device] if device.type == "cuda" else None)
    optimizer = make_optimizer(args, model)
    lr_lambda = LR_SCHEDULES[args.lr_schedule](total_steps(num_samples, args.batch_size, args.epochs,
                                                           args.steps_per_epoch))
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda)
    scaler = fast_path.grad_scaler(device, args.amp)
    return Run(model, optimizer, lr_lambda, scheduler, scaler, device, network)


def describe(args, train_args, model_args, images, index, index_sha256, weights):
    """What every checkpoint of the run says of it, beside the states; `weights`: the loss's class weights."""
    item_fraction, pixel_fraction = labeled_fractions(index.unit, index.labeled, images.dataset.ids,
                                                      images.dataset.image_size)
    return {
        "model_args": model_args,
        "preprocess": {"mean": images.mean, "std": images.std},
        "class_names": images.dataset.class_names,
        "dataset": {"name": args.dataset, "split": args.split},
        "index": {
            "path": str(Path(args.index).resolve()),
            "sha256": index_sha256,
            "labeled": len(index.labeled),
            "labeled_images": len(images.labeled),
            "labeled_fraction": item_fraction,
            "labeled_pixel_fraction": pixel_fraction,
            "pool_size": index.pool_size,
            "unit": index.unit.to_json(),
            "cycle": index.next_cycle - 1,
        },
        "train_args": train_args,
        "training": {"crop": list(images.crop), "class_weights": weights},  # --crop and --class-weights resolved
        "epochs": args.epochs,
    }


def save_epoch(args, run, ssl, description, epoch, loss, progress, world=SINGLE, best=None):
    """The checkpoint of `epoch`: the .resume file, --out after the last epoch, written by rank 0; nothing of broken
    weights. With --keep-best's `best` (lib.best_epoch.BestEpoch) the .resume file keeps the best epoch so far, and
    --out gets its weights (the other states stay the last epoch's)."""
    state = {**description, "epoch": epoch, **run.state_dict(), "loss": loss, "progress": progress.state_dict()}
    broken = first_non_finite(state["model"])
    if broken is not None:  # a finite loss can still end in broken weights (the last step's update)
        raise UserError(f"training diverged, NaN or infinite weights ({broken}) after epoch {epoch}, nothing "
                        f"saved: lower --lr ({args.lr:g}) or --weight-decay ({args.weight_decay:g})")
    if not world.is_writer:
        return
    if epoch == args.epochs:
        if best is not None:
            state = {**state, "model": best.weights, "training": {**state["training"], **best.record()}}
        save_checkpoint(args.out, state)  # without the --ssl mode's state: nothing uses it after training
    else:
        save_checkpoint(resume_path(args), {**state, **ssl.state_dict(),
                                            **({"keep_best": best.state_dict()} if best is not None else {})})


def labeled_samples(args, images):
    """The labeled samples of an epoch (lib.engine.epoch_order): each labeled item's box with --item-crops, else a
    random crop of each labeled image."""
    if args.item_crops:
        return ItemCrops(images.dataset, images.unit, images.labeled, images.crop, args.flip, args.seed, images.mean,
                         images.std)
    return LabeledCrops(images.dataset, images.unit, images.labeled, images.crop, args.flip, args.seed, images.mean,
                        images.std, images.random_scale)


def train_epochs(args, run, ssl, images, description, resumed, weights, world=SINGLE, best=None):
    """The epochs after those of the `resumed` checkpoint (None: all), each followed by its checkpoint, with the
    --loss of class `weights` (None: unweighted); the progress of the whole run, which it returns. A warning when
    the last epoch's model did no better than the majority class (lib.engine.majority_class_warning). Under
    torchrun the loss saved is the mean of the processes', the warning is of all their crops. With --keep-best's
    `best` (lib.best_epoch.BestEpoch) every epoch's model is evaluated before its checkpoint."""
    crops = labeled_samples(args, images)
    criterion = make_criterion(args.loss, weights, run.device)
    confusion = torch.zeros((images.dataset.num_classes,) * 2, dtype=torch.long, device=run.device)  # last epoch's
    contrastive = contrastive_head(args)
    start_epoch = resumed["epoch"] + 1 if resumed else 1
    per_epoch = epoch_steps(len(crops), args.batch_size, args.steps_per_epoch)
    before = earlier_progress(resumed)
    progress = Progress("train", per_epoch * (args.epochs - start_epoch + 1) + before["done"],
                        interval=args.log_interval, **before)
    batches = EpochBatches(sample_order(crops.seed, len(crops), args.batch_size, args.steps_per_epoch),
                           args.batch_size, world)
    loader = training_loader(crops, batches, args.workers, pin_memory=run.device.type == "cuda")
    for epoch in range(start_epoch, args.epochs + 1):
        seeding.seed_epoch(args.seed, epoch, world.rank)
        batches.epoch = epoch
        progress.label = f"epoch {epoch}/{args.epochs} step"
        loss = train_one_epoch(run.network, epoch, loader, ssl, contrastive, run.optimizer, run.scheduler,
                               run.scaler, run.device, progress, criterion, confusion if epoch == args.epochs else None,
                               amp=args.amp)
        if best is not None and first_non_finite(run.model.state_dict()) is None:  # else save_epoch says it diverged
            best.update(epoch, run.model, run.device, world)
        save_epoch(args, run, ssl, description, epoch, mean_across(loss, world), progress, world, best)
    warning = majority_class_warning(sum_across(confusion, world).cpu(), images.dataset.class_names)
    if warning and world.is_writer:
        print(f"warning: {warning}", file=sys.stderr)
    return progress


def main(argv=None):
    args = get_args_parser().parse_args(argv)
    use_threads(args.threads)
    check_args(args)
    check_paths(args)
    with joined(args.device) as (world, device):
        check_world(args, world, device)
        train(args, world, device)


def train(args, world, device):
    """Everything after the checks of flags and paths; under torchrun on every process (lib.distributed)."""
    # The number of processes changes how a step's batch is split (BatchNorm sees each share): a run of 2 resumes
    # as a run of 2. Recorded only under torchrun, so single-process checkpoints read as before.
    train_args = as_train_args({**vars(args), **({"processes": world.size} if world.distributed else {})})
    images, index = training_images(args)
    if len(images.labeled) < world.size:
        raise UserError(f"{args.index}: {plural(len(images.labeled), 'labeled image')} cannot be shared between "
                        f"the {world.size} processes of torchrun")
    # A class never seen warns, labels of nothing but ignore are refused; returns the [C] labeled pixels of each class.
    counts = check_class_pixels(images.dataset, list(images.labeled), args.workers, args.index,
                                f"its labeled items of split {args.split!r}", "learn", images.unit, images.labeled)
    weights = class_weights(args.class_weights, images.dataset.class_names, counts)
    best = best_epoch_tracker(args, images) if args.keep_best else None  # its split checked before any training
    model_args = model_arguments(args, images.dataset.num_classes)
    head = head_weights(args.init_head_from, model_args, images.dataset) if args.init_head_from else None
    run = start_run(args, model_args, len(labeled_samples(args, images)), device, world, head)
    index_sha256 = sha256_of(args.index)
    resumed = resume(args, train_args, index_sha256, run)
    # After the resume checks: a refused .resume file costs no teacher's labels.
    ssl = SSL_MODES[args.ssl].start(args, images, run.lr_lambda, device)
    if resumed:
        with resume_errors(resume_path(args)):
            ssl.load_state_dict(resumed)
            if best is not None:
                best.load_state_dict(resumed["keep_best"])
    description = describe(args, train_args, model_args, images, index, index_sha256, weights)
    unit = index.unit
    what = "images" if unit.type == "image" else f"{unit.describe()} items in {len(images.labeled)} images"
    processes = f" in {world.size} processes" if world.distributed else ""
    as_crops = " as crops of their own" if args.item_crops else ""
    print(f"training {args.arch} on {len(index.labeled)} labeled {what}{as_crops} of {args.dataset}/{args.split} "
          f"for {plural(args.epochs, 'epoch')} on {device}{processes}{fast_path.amp_note(device, args.amp)}")
    progress = train_epochs(args, run, ssl, images, description, resumed, weights, world, best)
    if world.is_writer and os.path.exists(resume_path(args)):
        os.remove(resume_path(args))
    if best is not None:
        print(f"kept epoch {best.epoch}/{args.epochs}, val mIoU {100 * best.miou:.2f} % (the last epoch's: "
              f"{100 * best.mious[-1]:.2f} %)")
    print(f"wrote {args.out} ({format_duration(progress.elapsed())})")


if __name__ == "__main__":
    run_cli(main)
