r"""Train a segmentation model on the labeled items of an index file.

    python train.py --dataset synthetic --data-root data/synthetic \
        --index runs/x/cycle0/index.json --out runs/x/cycle0/model.pt --resume

Images, patches or regions: with patch and region units an image is trained on
with its labeled items only, and the loss ignores every other pixel.

With --ssl selftrain or --ssl s4gan the unlabeled pixels of the pool take part too:
through a teacher's pseudo labels (S4AL+), or through s4GAN's discriminator (the AL
study's -SSL methods).

With --contrastive reco the model gets ReCo's representation head, trained with the
regional contrastive loss beside the cross-entropy (S4AL+); select.py and evaluate.py
ignore the head.

A checkpoint is written after every epoch next to --out (`<out>.resume`); with
--resume a killed run continues from it and reaches the same final weights as an
uninterrupted run. The finished model is written to --out and the resume file is
removed, so "--out exists" means "training is done".
"""
import argparse
import os
import time
from pathlib import Path

import torch

from lib.checkpoint import load_checkpoint, save_checkpoint
from lib.cli import (
    MAX_SIDE, add_cache_dir_flag, float_in, non_negative_float, non_negative_int, positive_float, positive_int,
    script_parser, seed, size_pair_up_to,
)
from lib.data import DATASETS, open_dataset
from lib.data.pool import restrict_to_pool
from lib.data.transforms import IMAGENET_MEAN, IMAGENET_STD
from lib.engine import (
    LR_SCHEDULES, LabeledCrops, epoch_loader, expected_total_steps, resolve_device, steps_per_epoch,
    train_one_epoch,
)
from lib.errors import UserError, describe_error, run_cli
from lib.fileio import sha256_of
from lib.index import load_index
from lib.models import ARCHS, build_model
from lib.outputs import check_outputs
from lib.pretrained import load_pretrained_backbone, pretrained_location
from lib.progress import Progress, format_duration
from lib.semisup.reco import ReCo
from lib.semisup.s4gan import S4GAN
from lib.semisup.selftrain import check_pseudo_folder, pseudo_label_files
from lib.semisup.unlabeled import UnlabeledCrops, images_with_unlabeled_pixels, unlabeled_batches
from lib.sliding import DEFAULT_SLIDE_WINDOW
from lib.state_dicts import first_non_finite
from lib.units import items_by_image, labeled_fractions, require_fit

SSL_MODES = ("none", "selftrain", "s4gan")
CONTRASTIVE_MODES = ("none", "reco")
# The flags of one mode: name -> (type, default, help). They parse to None, so that one given without its mode
# is caught, and take the default afterwards (fill_mode_flags).
S4GAN_FLAGS = {  # Mittal et al.'s defaults
    "disc_lr": (positive_float, 1e-4, "Adam learning rate of the discriminator, on --lr-schedule like the model's "
                             "(the AL study: 2.5e-5 on Cityscapes and A2D2)"),
    "lambda_fm": (non_negative_float, 0.1, "weight of the feature-matching loss"),
    "lambda_st": (non_negative_float, 1.0, "weight of the self-training loss"),
    "disc_threshold": (float_in(0, 1, open_high=True), 0.2,
                       "an unlabeled crop is trained on its own argmax when the discriminator scores its prediction "
                       "above this (TPAMI paper; the AL study's code: 0.6)"),
}
RECO_FLAGS = {  # Liu et al.'s defaults
    "embed_dim": (positive_int, 256, "channels of the head's unit-norm embeddings"),
    "reco_weight": (positive_float, 1.0, "weight of the loss beside the cross-entropy"),
    "reco_temperature": (positive_float, 0.5, "temperature of the similarities and of the negative classes' sampling"),
    "reco_queries": (positive_int, 256, "hard pixels per class and step that are pulled to their class mean"),
    "reco_negatives": (positive_int, 512, "pixels of other classes each query is pushed from"),
    "reco_strong_threshold": (float_in(0, 1, open_low=True), 0.97,
                              "a pixel is a query while its label's probability is below this"),
}
# Flags that do not change the result: a resumed run may differ in them.
RESUME_NEUTRAL = {"resume", "workers", "log_interval", "cache_dir"}


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
    model = parser.add_argument_group("model")
    model.add_argument("--arch", default="mobilenet_v2", choices=ARCHS, help="DeepLabv3+ backbone")
    model.add_argument("--output-stride", type=int, default=16, choices=(8, 16), help="backbone output stride")
    model.add_argument("--mc-dropout", action="store_true",
                       help="three dropout layers (p=0.1) in the decoder, for --method bald in select.py")
    model.add_argument("--pretrained", default=None,
                       help="ImageNet backbone weights: a torchvision state-dict file, or 'imagenet' for the torch hub cache")
    model.add_argument("--freeze-backbone", action="store_true",
                       help="train ASPP and decoder only, the backbone keeps its weights and BatchNorm statistics (MEAL)")
    optim = parser.add_argument_group("optimisation")
    optim.add_argument("--epochs", type=positive_int, default=50, help="passes over the labeled images")
    optim.add_argument("-b", "--batch-size", type=positive_int, default=8, help="images per step")
    optim.add_argument("--crop", type=size_pair_up_to(MAX_SIDE), default=(256, 256),
                       help="random crop HxW (or one number)")
    optim.add_argument("--flip", action=argparse.BooleanOptionalAction, default=True,
                       help="random horizontal flips (--no-flip with a full-image --crop: no augmentation, as in MEAL)")
    optim.add_argument("--optimizer", default="sgd", choices=("sgd", "adam"), help="optimiser")
    optim.add_argument("--lr", type=positive_float, default=0.01, help="initial learning rate")
    optim.add_argument("--lr-schedule", default="poly", choices=sorted(LR_SCHEDULES),
                       help="poly: lr * (1 - step/total)^0.9 (DeepLab); constant: no schedule (MEAL)")
    optim.add_argument("--momentum", type=float_in(0, 1, open_high=True), default=0.9, help="SGD momentum")
    optim.add_argument("--weight-decay", type=non_negative_float, default=1e-4, help="L2 weight decay")
    ssl = parser.add_argument_group("semi-supervised training")
    ssl.add_argument("--ssl", default="none", choices=SSL_MODES,
                     help="selftrain: also train on the teacher's confident labels of the unlabeled pixels (S4AL+), "
                          "with dropout in the decoder as the student's noise; s4gan: a discriminator of predicted "
                          "vs true label maps, feature matching and self-training on the predictions it accepts "
                          "(the AL study's SSL)")
    ssl.add_argument("--teacher", default=None,
                     help="selftrain: checkpoint that labels the unlabeled pixels (the experiment scripts pass the "
                          "previous cycle's model); without it the run is supervised only")
    ssl.add_argument("--pseudo-threshold", type=float_in(0, 1, open_low=True), default=0.7,
                     help="selftrain: softmax confidence a teacher's label needs; below it the pixel is ignored")
    ssl.add_argument("-u", "--unlabeled-batch-size", type=positive_int, default=4,
                     help="crops of unlabeled pixels added to every step's labeled batch")
    ssl.add_argument("--pseudo-dir", default=None,
                     help="selftrain: folder caching the pseudo labels as PNGs (default: pseudo/ next to --out)")
    add_mode_flags(ssl, "s4gan", S4GAN_FLAGS)
    contrastive = parser.add_argument_group("contrastive learning")
    contrastive.add_argument("--contrastive", default="none", choices=CONTRASTIVE_MODES,
                             help="reco: a representation head trained with ReCo's regional contrastive loss beside "
                                  "the cross-entropy (S4AL+), on every pixel with a true or pseudo label")
    add_mode_flags(contrastive, "reco", RECO_FLAGS)
    run = parser.add_argument_group("run")
    run.add_argument("--out", required=True, help="checkpoint file to write when training is done")
    run.add_argument("--resume", action="store_true", help="continue from <out>.resume if a killed run left one")
    run.add_argument("--seed", type=seed, default=0, help="seed for initialisation, order and augmentation")
    run.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"), help="where to train")
    run.add_argument("--amp", action=argparse.BooleanOptionalAction, default=True,
                     help="float16 mixed precision (CUDA only)")
    run.add_argument("-j", "--workers", type=non_negative_int, default=2, help="data loading processes")
    add_cache_dir_flag(run)
    run.add_argument("--log-interval", type=positive_float, default=30.0,
                     help="seconds between progress lines when not on a terminal")
    return parser


def add_mode_flags(group, mode, flags):
    for name, (kind, default, text) in flags.items():
        group.add_argument("--" + name.replace("_", "-"), type=kind, default=None,
                           help=f"{mode}: {text} (default: {default})")


def fill_mode_flags(args, flags, mode_flag, mode):
    """Refuse the `flags` of a mode that is off; when it is on, fill in their defaults (recorded in the checkpoint)."""
    on = getattr(args, mode_flag) == mode
    for name, (_, default, _) in flags.items():
        if getattr(args, name) is None:
            setattr(args, name, default if on else None)
        elif not on:
            raise UserError(f"--{name.replace('_', '-')} configures --{mode_flag} {mode}, "
                            f"but --{mode_flag} is {getattr(args, mode_flag)}")


def check_args(args):
    if args.ssl != "selftrain":
        given = [flag for flag, value in (("--teacher", args.teacher), ("--pseudo-dir", args.pseudo_dir)) if value]
        if given:
            raise UserError(f"{given[0]} labels unlabeled pixels for --ssl selftrain, but --ssl is {args.ssl}")
    if args.freeze_backbone and not args.pretrained:
        raise UserError("--freeze-backbone keeps the backbone's weights: give the --pretrained ones to keep")
    fill_mode_flags(args, S4GAN_FLAGS, "ssl", "s4gan")
    fill_mode_flags(args, RECO_FLAGS, "contrastive", "reco")


def resume_path(args):
    return f"{args.out}.resume"


def pseudo_folder(args):
    """Where --ssl selftrain keeps the teacher's labels; None when no teacher labels anything."""
    if args.ssl != "selftrain" or args.teacher is None:
        return None
    return Path(args.pseudo_dir) if args.pseudo_dir else Path(args.out).parent / "pseudo"


def check_paths(args):
    """Before any work: no output may overwrite or bury an input, or another output (lib.outputs)."""
    inputs = {"--data-root": args.data_root, "--index": args.index, "--pool": args.pool, "--teacher": args.teacher,
              "--cache-dir": args.cache_dir,
              "--pretrained": args.pretrained and pretrained_location(args.pretrained)}
    files = {"--out": args.out, "--out's .resume file": resume_path(args)}
    folders = {"--pseudo-dir": pseudo_folder(args), "--cache-dir": args.cache_dir}
    check_outputs(inputs, files, folders)
    if folders["--pseudo-dir"] is not None:
        check_pseudo_folder(folders["--pseudo-dir"])


def make_optimizer(args, model):
    parameters = [p for p in model.parameters() if p.requires_grad]
    if args.optimizer == "adam":
        return torch.optim.Adam(parameters, lr=args.lr, weight_decay=args.weight_decay)
    return torch.optim.SGD(parameters, lr=args.lr, momentum=args.momentum, weight_decay=args.weight_decay)


def as_train_args(values):
    """Flags as a checkpoint records them (JSON-like: tuples become lists)."""
    return {k: list(v) if isinstance(v, tuple) else v for k, v in values.items()}


def resume_state(path, train_args, index_sha256):
    """The in-progress checkpoint when it belongs to this very run, else a UserError."""
    checkpoint = load_checkpoint(path)
    if not (isinstance(checkpoint.get("train_args"), dict) and isinstance(checkpoint.get("epoch"), int)
            and isinstance(checkpoint["index"].get("sha256"), str)):
        raise UserError(f"{path}: damaged checkpoint: no train_args, epoch or index sha256 to resume from; "
                        f"delete it to start over")
    parser = get_args_parser()
    # A flag added after the file was written reads as its default: what that run did.
    recorded = as_train_args({**{k: parser.get_default(k) for k in train_args}, **checkpoint["train_args"]})
    saved = {k: v for k, v in recorded.items() if k not in RESUME_NEUTRAL}
    wanted = {k: v for k, v in train_args.items() if k not in RESUME_NEUTRAL}
    changed = sorted(k for k in saved.keys() | wanted.keys() if saved.get(k) != wanted.get(k))
    if changed:
        raise UserError(f"{path}: was started with other settings ({', '.join(changed)}); delete it to start over")
    if checkpoint["index"]["sha256"] != index_sha256:
        raise UserError(f"{path}: was started on another version of {train_args['index']}; delete it to start over")
    return checkpoint


def restore(path, state, model, optimizer, scheduler, scaler, adversary):
    """Load a .resume file's states; one that does not fit this run (damaged, edited) is a UserError."""
    try:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        scaler.load_state_dict(state["scaler"])
        if adversary is not None:
            adversary.load_state_dict(state["discriminator"])
    except (KeyError, RuntimeError, ValueError, TypeError) as err:
        raise UserError(f"{path}: cannot resume from it ({describe_error(err)}); delete it to start over") from None


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
        raise UserError(f"{path}: {len(unlabeled)} labeled images have no mask file: {shown}")
    return items


def unlabeled_crops(args, dataset, index, labeled, images, preprocess, device):
    """The crops of `images` (those with unlabeled pixels) for --ssl, pseudo-labeled by the teacher for selftrain."""
    pseudo_paths = None
    if args.ssl == "selftrain":
        folder = pseudo_folder(args)
        print(f"pseudo labels of {len(images)} images by {args.teacher} (confidence >= {args.pseudo_threshold}) "
              f"in {folder}")
        # Images larger than select.py's and evaluate.py's default --slide-window are labeled window by window.
        pseudo_paths = pseudo_label_files(folder, args.teacher, args.pseudo_threshold, dataset, images, device,
                                          args.batch_size, args.workers, DEFAULT_SLIDE_WINDOW)
    return UnlabeledCrops(dataset, index.unit, images, labeled, args.crop, args.seed, preprocess["mean"],
                          preprocess["std"], pseudo_paths)


def main(argv=None):
    args = get_args_parser().parse_args(argv)
    check_args(args)
    check_paths(args)
    train_args = as_train_args(vars(args))
    device = resolve_device(args.device)
    amp = args.amp and device.type == "cuda"

    dataset = open_dataset(args.dataset, args.data_root, args.split, args.cache_dir)
    if args.pool:
        restrict_to_pool(dataset, args.pool)
    index = load_index(args.index, dataset.ids, dataset=args.dataset)
    labeled = labeled_items(args.index, index, dataset)

    model_args = {
        "arch": args.arch, "num_classes": dataset.num_classes, "output_stride": args.output_stride,
        "mc_dropout": args.mc_dropout or args.ssl == "selftrain",  # the noisy student's noise
    }
    if args.contrastive == "reco":
        model_args["embed_dim"] = args.embed_dim
    torch.manual_seed(args.seed)
    model = build_model(model_args)
    if args.pretrained:
        load_pretrained_backbone(model, args.pretrained, args.arch)
    if args.freeze_backbone:
        model.freeze_backbone()
    model.to(device)
    optimizer = make_optimizer(args, model)
    total_steps = expected_total_steps(len(labeled), args.batch_size, args.epochs)
    lr_lambda = LR_SCHEDULES[args.lr_schedule](total_steps)  # the model's, and s4GAN's discriminator's
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda)
    scaler = torch.amp.GradScaler(device.type, enabled=amp)
    semi_supervised = args.ssl == "s4gan" or (args.ssl == "selftrain" and args.teacher is not None)
    unlabeled_images = images_with_unlabeled_pixels(dataset.ids, index.unit, labeled) if semi_supervised else []
    if semi_supervised and not unlabeled_images:
        print(f"--ssl {args.ssl}: every pixel of the pool is labeled, training is supervised only")
    adversary = None
    if args.ssl == "s4gan" and unlabeled_images:
        adversary = S4GAN(dataset.num_classes, args.disc_lr, args.lambda_fm, args.lambda_st, args.disc_threshold,
                          lr_lambda, device)

    index_sha256 = sha256_of(args.index)
    start_epoch = 1
    if args.resume and os.path.exists(resume_path(args)):
        state = resume_state(resume_path(args), train_args, index_sha256)
        restore(resume_path(args), state, model, optimizer, scheduler, scaler, adversary)
        start_epoch = state["epoch"] + 1
        print(f"resuming {resume_path(args)} after epoch {state['epoch']}/{args.epochs}")

    preprocess = {"mean": list(IMAGENET_MEAN), "std": list(IMAGENET_STD)}
    crops = LabeledCrops(
        dataset, index.unit, labeled, args.crop, args.flip, args.seed, preprocess["mean"], preprocess["std"]
    )
    extra_crops = None
    if unlabeled_images:
        extra_crops = unlabeled_crops(args, dataset, index, labeled, unlabeled_images, preprocess, device)
    reco = None
    if args.contrastive == "reco":
        reco = ReCo(args.reco_weight, args.reco_strong_threshold, args.reco_temperature, args.reco_queries,
                    args.reco_negatives, args.seed)
    item_fraction, pixel_fraction = labeled_fractions(index.unit, index.labeled, dataset.ids, dataset.image_size)
    description = {
        "model_args": model_args,
        "preprocess": preprocess,
        "class_names": dataset.class_names,
        "dataset": {"name": args.dataset, "split": args.split},
        "index": {
            "path": str(Path(args.index).resolve()),
            "sha256": index_sha256,
            "labeled": len(index.labeled),
            "labeled_images": len(labeled),
            "labeled_fraction": item_fraction,
            "labeled_pixel_fraction": pixel_fraction,
            "pool_size": index.pool_size,
            "unit": index.unit.to_json(),
            "cycle": index.next_cycle - 1,
        },
        "train_args": train_args,
        "epochs": args.epochs,
    }
    what = "images" if index.unit.type == "image" else f"{index.unit.describe()} items in {len(labeled)} images"
    print(f"training {args.arch} on {len(index.labeled)} labeled {what} of {args.dataset}/{args.split} "
          f"for {args.epochs} epochs on {device}{' with AMP' if amp else ''}")
    started = time.monotonic()
    remaining_steps = steps_per_epoch(len(labeled), args.batch_size) * (args.epochs - start_epoch + 1)
    progress = Progress("train", remaining_steps, interval=args.log_interval)
    for epoch in range(start_epoch, args.epochs + 1):
        torch.manual_seed(args.seed * 100_003 + epoch)  # dropout and any other torch randomness of this epoch
        loader = epoch_loader(crops, epoch, args.batch_size, args.workers)
        progress.label = f"epoch {epoch}/{args.epochs} step"
        unlabeled = extra_crops and unlabeled_batches(extra_crops, epoch, args.unlabeled_batch_size, args.workers)
        if reco is not None:
            reco.epoch = epoch
        loss = train_one_epoch(model, loader, optimizer, scheduler, scaler, device, progress, unlabeled, reco,
                               adversary)
        state = {
            **description,
            "epoch": epoch,
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "scaler": scaler.state_dict(),
            "loss": loss,
        }
        broken = first_non_finite(state["model"])
        if broken is not None:  # a finite loss can still end in broken weights (the last step's update)
            raise UserError(f"training diverged, NaN or infinite weights ({broken}) after epoch {epoch}, nothing "
                            f"saved: lower --lr ({args.lr:g}) or --weight-decay ({args.weight_decay:g})")
        if epoch == args.epochs:
            save_checkpoint(args.out, state)  # without the discriminator: nothing uses it after training
        else:
            discriminator = {"discriminator": adversary.state_dict()} if adversary else {}
            save_checkpoint(resume_path(args), {**state, **discriminator})
    if os.path.exists(resume_path(args)):
        os.remove(resume_path(args))
    print(f"wrote {args.out} ({format_duration(time.monotonic() - started)})")


if __name__ == "__main__":
    run_cli(main)
