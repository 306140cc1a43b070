"""What the study's settings cost: one cycle of cityscapes_10_10 timed at the scripts' resolution against the
files' own, and the GPU-hours of the whole study from FLOP counts.

Part `cycle`: a Cityscapes stand-in in the official layout with 2048x1024 frames
(--train-images, --val-images; blocks of colour, one per class) and one cycle of
cityscapes_10_10's entropy after its initial random 10 %: select.py scores the pool
with the initial model, train.py trains on the 20 %, evaluate.py evaluates on val,
with the flags scripts/lib/study.sh gives them. `scale 1/2` is the scripts' protocol
(frames halved before their 256x512 crops, scored and evaluated at 512x1024, as the
study's code), read from the PNGs or through a --cache-dir (CACHE_DIR) that a first
cycle filled, as it is for an experiment's later cycles and methods; `files` is what
the scripts did before it (crops of the 2048x1024 frames, scoring and evaluation at
that size). --arch stands in for the study's WRN-38
at output stride 8, beyond a CPU; its weights are random, which times alike.

Part `estimate`: the FLOPs of a training image (forward and backward of a 256x512
crop) and of a scored or evaluated Cityscapes frame at 512x1024 and 1024x2048, counted
by torch's FlopCounterMode on the meta device (a multiply-add is 2 FLOPs); the
training images of every setting of the study from its budgets; the GPU-hours at
--tflops sustained, an assumption (bench/gpu.sh measures images/s on a GPU).

    .venv/bin/python bench/bench_study_cost.py                 # both parts, a few minutes on 2 CPU cores
    .venv/bin/python bench/bench_study_cost.py --parts estimate
    .venv/bin/python bench/bench_study_cost.py --quick         # smoke test
"""
import contextlib
import io
import math
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import bench_parser, machine_line, parse_with_quick, timed  # noqa: E402

from lib.acquire.budget import parse_budget  # noqa: E402
from lib.models import build_model  # noqa: E402
from lib.steps import import_script  # noqa: E402
from lib.text import plural  # noqa: E402

QUICK = {"train_images": 20, "val_images": 2, "epochs": 1, "arch": "tiny", "archs": ["tiny"]}
CITYSCAPES_FRAME = (1024, 2048)
# Cityscapes' labelIds of its 19 classes (cityscapesScripts helpers/labels.py): the stand-in's masks.
LABEL_IDS = np.array([7, 8, 11, 12, 13, 17, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 31, 32, 33], np.uint8)
# The runs timed: train.py's flags, and whether the steps keep the frames decoded (CACHE_DIR, --cache-dir).
RUNS = {"scale 1/2": (["--scale", "1/2"], False), "scale 1/2, cache": (["--scale", "1/2"], True),
        "files": ([], False)}

# The study's settings (scripts/*.sh and scripts/lib/study.sh): pool images, initial and per-cycle budget (as
# select.py's --budget), cycles after the initial one, methods trained without and with s4GAN (an -ssl step
# forwards and backs an unlabeled batch as large as the labeled one: twice a supervised step), the training crop's
# pixels against 256x512, whether bald (its own initial model with MC dropout) is among them. 100 epochs, 3 seeds.
SETTINGS = {
    "cityscapes_10_10": (2975, "10%", 4, 5, 5, 1.0, True),
    "cityscapes_2_2": (2975, "2%", 4, 5, 5, 1.0, True),
    "voc_10_10": (10582, "10%", 4, 5, 5, 321 * 321 / (256 * 512), True),
    "voc_5_5": (10582, "5%", 4, 5, 5, 321 * 321 / (256 * 512), True),
    "voc_2_2": (10582, "2%", 4, 5, 5, 321 * 321 / (256 * 512), True),
    **{f"a2d2_pool{pool}_10_10": (2640, "10%", 4, 5, 5, 1.0, True) for pool in ("0f", "5f", "11f", "21f", "aug")},
    **{f"a2d2_pool{pool}_2_2": (2640, "2%", 4, 5, 5, 1.0, True) for pool in ("0f", "11f")},
    "a2d2_3k": (None, "1000", 2, 5, 3, 1.0, False),  # random, entropy, coreset, uniform, uniform5-entropy; 3 -ssl
}
EPOCHS, SEEDS = 100, 3


def write_cityscapes_standin(root, train_images, val_images, seed=0):
    """leftImg8bit/ and gtFine/ of `train_images` and `val_images` frames of Cityscapes' size: 64x64 blocks of one
    class each, its colour plus noise."""
    rng = np.random.default_rng(seed)
    height, width = CITYSCAPES_FRAME
    for split, count, city in (("train", train_images, "aachen"), ("val", val_images, "frankfurt")):
        for i in range(count):
            frame = f"{city}_{i:06d}_000019"
            classes = np.kron(rng.integers(0, len(LABEL_IDS), (height // 64, width // 64)), np.ones((64, 64), int))
            colours = rng.integers(0, 256, (len(LABEL_IDS), 3))
            image = (colours[classes] + rng.normal(0, 20, (height, width, 3))).clip(0, 255).astype(np.uint8)
            for folder, array, suffix in (("leftImg8bit", image, "leftImg8bit"),
                                          ("gtFine", LABEL_IDS[classes], "gtFine_labelIds")):
                path = root / folder / split / city / f"{frame}_{suffix}.png"
                path.parent.mkdir(parents=True, exist_ok=True)
                Image.fromarray(array).save(path)


def quietly(script, argv):
    """(seconds) of a script's main, its progress lines swallowed."""
    with contextlib.redirect_stdout(io.StringIO()):
        return timed(import_script(script).main, argv)[1]


def time_cycle(root, folder, resolution, cache, arch, epochs):
    """{step: seconds} of the cycle after the initial one, at `resolution` (train.py's flags), every step reading
    through the --cache-dir `cache` where one is given."""
    cache = ["--cache-dir", str(cache)] if cache else []
    data = ["--dataset", "cityscapes", "--data-root", str(root), "--split", "train", *cache]
    training = [*data, "--arch", arch, "--output-stride", "16", "--optimizer", "sgd", "--lr", "1e-3", "--momentum",
                "0.9", "--weight-decay", "5e-4", "--lr-schedule", "poly", "--batch-size", "8", "--epochs", str(epochs),
                "--head-lr-mult", "10", "--crop", "256x512", "--seed", "0", *resolution]
    quietly("select.py", [*data, "--method", "random", "--budget", "10%", "--seed", "0",
                          "--out", str(folder / "initial.json")])
    quietly("train.py", [*training, "--index", str(folder / "initial.json"), "--out", str(folder / "initial.pt")])
    return {  # select.py and evaluate.py read the resolution from the checkpoint
        "select (entropy)": quietly("select.py", [
            *data, "--method", "entropy", "--index", str(folder / "initial.json"), "--checkpoint",
            str(folder / "initial.pt"), "--budget", "10%", "--seed", "0", "--feature-pooling", "grid2x2",
            "--out", str(folder / "cycle1.json")]),
        "train": quietly("train.py", [*training, "--index", str(folder / "cycle1.json"), "--out",
                                      str(folder / "cycle1.pt"), "--init-head-from", str(folder / "initial.pt")]),
        "evaluate": quietly("evaluate.py", ["--checkpoint", str(folder / "cycle1.pt"), "--dataset", "cityscapes",
                                            "--data-root", str(root), "--split", "val", *cache,
                                            "--out", str(folder / "metrics.json")]),
    }


def cycle_part(args):
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch) / "cityscapes"
        write_cityscapes_standin(root, args.train_images, args.val_images)
        times = {}
        for number, (name, (resolution, cached)) in enumerate(RUNS.items()):
            cache = Path(scratch) / f"cache{number}" if cached else None
            folders = [Path(scratch) / f"run{number}", Path(scratch) / f"run{number}-again"][:1 + cached]
            for folder in folders:  # a cache filled by a first cycle (untimed): later cycles' and methods' reads
                folder.mkdir()
                times[name] = time_cycle(root, folder, resolution, cache, args.arch, args.epochs)
    labeled = math.ceil(0.2 * args.train_images)
    print(f"one cycle of cityscapes_10_10's entropy, {args.arch}: {args.train_images} train frames of 2048x1024 "
          f"({labeled} labeled, {plural(args.epochs, 'epoch')}), {args.val_images} val; seconds, start-up included")
    print(f"{'step':<18}" + "".join(f"{name:>18}" for name in RUNS) + f"{'files / scale 1/2':>19}")
    for step in [*times["files"], "cycle"]:
        seconds = {name: sum(run.values()) if step == "cycle" else run[step] for name, run in times.items()}
        print(f"{step:<18}" + "".join(f"{value:>18.1f}" for value in seconds.values())
              + f"{seconds['files'] / seconds['scale 1/2']:>18.2f}x")


def gflops(arch, output_stride, size, train):
    """GFLOPs of one image of `size` (H, W) through `arch`: forward, and backward too when `train`."""
    with torch.device("meta"):
        model = build_model({"arch": arch, "num_classes": 19, "output_stride": output_stride, "mc_dropout": False})
    model.train(train)
    counter = FlopCounterMode(display=False)
    with counter:
        logits = model(torch.empty(1, 3, *size, device="meta"))
        if train:
            logits.sum().backward()
    return counter.get_total_flops() / 1e9


def images_trained(setting):
    """Training images (256x512 crop equivalents) of one seed of `setting`, every epoch of every model."""
    pool, budget, cycles, supervised, ssl, crop_share, bald = SETTINGS[setting]
    step = parse_budget(budget, pool, None, None)  # as select.py counts it: a share rounds half up
    initial_models = (2 if bald else 1) + 2 * (ssl > 0)  # the initial cycle's: plain (and MC dropout), s4GAN
    later = sum((1 + cycle) * step for cycle in range(1, cycles + 1)) * (supervised + 2 * ssl)
    return EPOCHS * crop_share * (step * initial_models + later)


def estimate_part(args):
    print(f"FLOPs per image (GFLOP), {', '.join(args.archs)}:")
    sizes = {"train 256x512 fwd+bwd": ((256, 512), True), "score/eval 512x1024": ((512, 1024), False),
             "score/eval 1024x2048": ((1024, 2048), False)}
    flops = {}
    for arch in args.archs:
        output_stride = 8 if arch == "wrn38" else 16
        flops[arch] = {name: gflops(arch, output_stride, size, train) for name, (size, train) in sizes.items()}
        print(f"  {arch} OS{output_stride}: " + ", ".join(f"{name} {value:.0f}" for name, value in flops[arch].items()))
    images = {setting: SEEDS * images_trained(setting) for setting in SETTINGS}
    total = sum(images.values())
    print(f"training images of the study ({SEEDS} seeds, {EPOCHS} epochs, 256x512 equivalents): {total / 1e6:.1f} M; "
          + ", ".join(f"{setting} {count / 1e6:.1f} M" for setting, count in images.items()))
    # cityscapes_10_10's scoring of the unlabeled pool before each cycle and evaluation of 500 val frames after each
    pool, budget, cycles = 2975, "10%", 4
    scored = sum(pool - parse_budget(budget, pool, None, None) * cycle for cycle in range(1, cycles + 1))
    inference = SEEDS * 10 * (scored + 500 * (cycles + 1))  # 10 methods, each scores and evaluates its own models
    for arch in args.archs:
        train_eflop = total * flops[arch]["train 256x512 fwd+bwd"] / 1e9
        hours = train_eflop * 1e18 / (args.tflops * 1e12) / 3600
        city = {name: inference * flops[arch][f"score/eval {name}"] / 1e9 for name in ("512x1024", "1024x2048")}
        print(f"  {arch}: training {train_eflop:.0f} EFLOP, {hours:.0f} GPU-hours at {args.tflops:g} TFLOP/s; "
              f"cityscapes_10_10's scoring and evaluation {city['512x1024']:.1f} EFLOP at 512x1024 "
              f"({city['1024x2048']:.1f} at the files' 1024x2048)")


def main(argv=None):
    parser = bench_parser(__doc__, QUICK)
    parser.add_argument("--parts", nargs="+", choices=["cycle", "estimate"], default=["cycle", "estimate"])
    parser.add_argument("--train-images", type=int, default=30, help="the stand-in's train frames")
    parser.add_argument("--val-images", type=int, default=10, help="the stand-in's val frames")
    parser.add_argument("--epochs", type=int, default=2, help="epochs of the cycle's training")
    parser.add_argument("--arch", default="mobilenet_v2", help="the model of the timed cycle")
    parser.add_argument("--archs", nargs="+", default=["wrn38", "resnet50"], help="models whose FLOPs are counted")
    parser.add_argument("--tflops", type=float, default=250.0,
                        help="sustained TFLOP/s of a GPU for the estimate (a quarter of an H100's dense bf16 peak)")
    args = parse_with_quick(parser, QUICK, argv)
    print(machine_line(), flush=True)
    if "cycle" in args.parts:
        cycle_part(args)
    if "estimate" in args.parts:
        estimate_part(args)


if __name__ == "__main__":
    main()
