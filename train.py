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
from pathlib import Path

import torch

from lib import fast_path, seeding
from lib.best_epoch import add_keep_best_flags, best_epoch_tracker, check_keep_best_flags
from lib.checkpoint import save_checkpoint
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
from lib.data import DATASETS
from lib.distributed import SINGLE, joined, mean_across, sum_across
from lib.engine import (
    LR_SCHEDULES,
    EpochBatches,
    majority_class_warning,
    persistent_loader,
    train_one_epoch,
)
from lib.errors import UserError, run_cli
from lib.fileio import sha256_of
from lib.fixed_steps import epoch_steps, sample_order
from lib.head_init import head_weights
from lib.label_stats import check_class_pixels
from lib.losses import add_loss_flags, class_weights, make_criterion
from lib.models import ARCHS
from lib.optim import check_optimizer_flags
from lib.outputs import check_outputs
from lib.pretrained import pretrained_location
from lib.progress import Progress, format_duration
from lib.resume import as_train_args, earlier_progress, resume_errors, resume_state
from lib.semisup.contrastive import (
    add_contrastive_flags,
    check_contrastive_flags,
    contrastive_head,
)
from lib.semisup.modes import SSL_MODES, add_ssl_flags, check_ssl_flags
from lib.state_dicts import first_non_finite
from lib.text import plural
from lib.threads import use_threads
from lib.training_run import Run, model_arguments, start_run
from lib.training_set import labeled_samples, small_items_warning, training_images
from lib.units import labeled_fractions


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
    --out gets its weights (its epoch, loss and progress stay the last epoch's)."""
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
        # The model and what describes it: the optimiser's states (SGD's momentum, Adam's moments: one or two more
        # copies of the weights), the schedule's, the scaler's and the --ssl mode's serve a resumed run only.
        save_checkpoint(args.out, {key: value for key, value in state.items() if key not in Run.RESUME_STATES})
    else:
        save_checkpoint(resume_path(args), {**state, **ssl.state_dict(),
                                            **({"keep_best": best.state_dict()} if best is not None else {})})


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
    loader = persistent_loader(crops, batches, args.workers, pin_memory=run.device.type == "cuda")
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
    if args.item_crops and world.is_writer:  # once the run is sure to start
        warning = small_items_warning(images.crop, args.output_stride)
        if warning:
            print(f"warning: {warning}", file=sys.stderr)
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
