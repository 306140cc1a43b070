"""Benchmark of pool scoring as select.py runs it: images/s of entropy, equal and bald, and the data-wait share.

Scores every image of a pool through select.py's path (lib.acquire.context.ItemReader.scores:
lib.engine.iterate_batches feeding lib.acquire.scores.score_items, image units, mean
reduction) with a DeepLabv3+ of random weights (MobileNetV2 unless --arch; the study's
MC-dropout layers in its decoder, which only bald samples). The pool is the --split of
--data-root when given (CamVid's layout unless --dataset, e.g. ../shared/data/camvid),
else a synthetic pool of --images frames of --height x --width (CamVid's size by
default) written to a temporary folder.

For each method, after one untimed batch (CUDA context, cuDNN's choice of kernels):

- images/s over the pool, wall time of the whole call;
- data wait: the share of that time spent in the batch iterator's next(), i.e. decoding and
  normalising with -j 0, waiting for the loader's workers otherwise. Target on a GPU:
  below 10 %, the model and not the loader setting the pace;
- images/s without the wait: what the model alone would reach, the bound on faster loading.

    .venv/bin/python bench/bench_score.py                      # 256 synthetic 360x480 frames
    .venv/bin/python bench/bench_score.py --data-root ../shared/data/camvid --images 0 -j 8
    .venv/bin/python bench/bench_score.py --quick              # smoke test, seconds
"""
import functools
import os
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import bench_parser, machine_line, parse_with_quick, print_row, timed  # noqa: E402
from lib.acquire.context import ItemReader  # noqa: E402
from lib.acquire.reduce import REDUCTIONS  # noqa: E402
from lib.acquire.scores import pixel_entropy, pixel_flip_disagreement, pixel_mutual_information  # noqa: E402
from lib.cli import add_runtime_flags  # noqa: E402
from lib.data import DATASETS, open_dataset  # noqa: E402
from lib.data.synthetic import write_synthetic_pool  # noqa: E402
from lib.data.transforms import IMAGENET_MEAN, IMAGENET_STD  # noqa: E402
from lib.distributed import resolve_device  # noqa: E402
from lib.fast_path import amp_note  # noqa: E402
from lib.models import ARCHS, build_model  # noqa: E402
from lib.threads import use_threads  # noqa: E402
from lib.units import Unit  # noqa: E402

WAIT_SHARE = 0.10  # on a GPU: above this, the loader and not the model sets the pace

QUICK = {"images": 8, "height": 64, "width": 96, "samples": 3}

ROW = "{:<34} {:>9} {:>9} {:>11}  {:<8} {:<6} {}"


class WaitClock:
    """The seconds spent in next() of the iterators it wraps: the time the model waited for its data."""

    def __init__(self):
        self.seconds = 0.0

    def wrap(self, iterable):
        iterator, end = iter(iterable), object()
        while True:
            start = time.perf_counter()
            item = next(iterator, end)
            self.seconds += time.perf_counter() - start
            if item is end:
                return
            yield item


@dataclass(frozen=True)
class TimedReader(ItemReader):
    """select.py's ItemReader, its batches timed by `clock`."""

    clock: WaitClock = None

    def batches(self, image_ids, preprocess):
        return self.clock.wrap(super().batches(image_ids, preprocess))


def pixel_scores(samples):
    """{method: the pixel score select.py's method runs}: bald with `samples` stochastic decoder passes."""
    return {
        "entropy": pixel_entropy,
        "equal": pixel_flip_disagreement,
        "bald": functools.partial(pixel_mutual_information, samples=samples),
    }


def open_pool(args, scratch):
    """(dataset, the ids to score, a line describing them): --data-root's split, or a synthetic pool in `scratch`."""
    if args.data_root:
        dataset = open_dataset(args.dataset, args.data_root, args.split, args.cache_dir)
        ids = dataset.ids[:args.images] if args.images else dataset.ids
        return dataset, ids, f"{args.dataset} {args.split} of {args.data_root}"
    _, seconds = timed(write_synthetic_pool, scratch, sequences=args.images, frames_per_sequence=1, val_images=1,
                       height=args.height, width=args.width, seed=args.seed)
    dataset = open_dataset("synthetic", scratch, "train", args.cache_dir)
    return dataset, dataset.ids, f"synthetic {args.height}x{args.width} frames (written in {seconds:.1f} s)"


def measure(reader, model, ids, pixel_score, seed):
    """(seconds, seconds waiting for data) of scoring `ids`, after an untimed first batch; `seed`: of the pixel
    score's random draws, None for a score without any (as select.py passes them)."""
    preprocess = {"mean": IMAGENET_MEAN, "std": IMAGENET_STD}
    reduce = REDUCTIONS["mean"]
    reader.scores(model, preprocess, ids[:reader.batch_size], pixel_score, reduce, seed=seed)
    reader.clock.seconds = 0.0
    _, seconds = timed(reader.scores, model, preprocess, ids, pixel_score, reduce, seed=seed)
    return seconds, reader.clock.seconds


def parse_args(argv=None):
    parser = bench_parser(__doc__, QUICK)
    parser.add_argument("--data-root", default=None, help="dataset whose --split is scored (none: a synthetic pool)")
    parser.add_argument("--dataset", default="camvid", choices=sorted(DATASETS), help="layout of --data-root")
    parser.add_argument("--split", default="train", help="split of --data-root to score")
    parser.add_argument("--images", type=int, default=256,
                        help="images to score: the synthetic pool's size, or the first N of --data-root's split "
                             "(0: all of it)")
    parser.add_argument("--height", type=int, default=360, help="synthetic frame height")
    parser.add_argument("--width", type=int, default=480, help="synthetic frame width")
    parser.add_argument("--arch", default="mobilenet_v2", choices=ARCHS, help="DeepLabv3+ backbone")
    parser.add_argument("--methods", nargs="+", choices=("entropy", "equal", "bald"),
                        default=["entropy", "equal", "bald"], help="pixel scores to measure")
    parser.add_argument("--samples", type=int, default=20, help="bald: stochastic decoder passes (--mc-samples)")
    parser.add_argument("--seed", type=int, default=0, help="synthetic pool, weights and dropout seed")
    add_runtime_flags(parser, "score", batch_size=4)
    args = parse_with_quick(parser, QUICK, argv)
    if args.images < (0 if args.data_root else 1):
        parser.error(f"--images {args.images}: a synthetic pool needs at least 1, --data-root's split 0 (all)")
    return args


def main(argv=None):
    args = parse_args(argv)
    use_threads(args.threads)
    device = resolve_device(args.device)
    print(machine_line(), flush=True)
    with tempfile.TemporaryDirectory() as scratch:
        dataset, ids, described = open_pool(args, Path(scratch))
        torch.manual_seed(args.seed)
        model_args = {"arch": args.arch, "num_classes": dataset.num_classes, "output_stride": 16, "mc_dropout": True}
        model = build_model(model_args).to(device).eval()
        reader = TimedReader(dataset, Unit("image"), device, amp=args.amp and device.type == "cuda",
                             batch_size=args.batch_size, workers=args.workers, clock=WaitClock())
        print(f"{len(ids)} images: {described}; {args.arch}, random weights, on {device}"
              f"{amp_note(device, reader.amp)}, -b {args.batch_size} -j {args.workers}", flush=True)
        print(ROW.format("method", "images/s", "data wait", "w/o wait", "target", "result", "").rstrip())
        on_gpu = device.type == "cuda"
        for method in args.methods:
            seed = args.seed if method == "bald" else None  # bald's dropout masks, seeded as select.py does
            seconds, waiting = measure(reader, model, ids, pixel_scores(args.samples)[method], seed)
            share = waiting / seconds
            print_row(ROW, method + (f" T={args.samples}" if method == "bald" else ""), f"{len(ids) / seconds:.1f}",
                      f"{share:.1%}", f"{len(ids) / (seconds - waiting):.1f}",
                      f"< {WAIT_SHARE:.0%}" if on_gpu else "-", share < WAIT_SHARE if on_gpu else None,
                      f"{seconds:.2f} s")
    print(f"load average {os.getloadavg()[0]:.2f} at the end", flush=True)


if __name__ == "__main__":
    main()
