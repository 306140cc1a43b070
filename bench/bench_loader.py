"""Benchmark of the training loader with and without --cache-dir (lib/data/cache.py).

Writes a `folder` pool of Cityscapes-sized frames (2048x1024 RGB PNGs of the synthetic
street-scene generator's kind of content: smooth regions plus texture, and masks of
class ids), then reads random training crops of it the way train.py does
(lib.engine.LabeledCrops: decode, crop, flip, normalise) on one process:

1. without a cache: every sample decodes its PNGs;
2. with a cache, cold: the first epoch decodes and writes the .npy entries;
3. with a cache, warm: later epochs map the entries and read the crop.

Prints images/s of each and the warm/uncached ratio. Loader workers multiply both
figures alike (one core each), so one process is measured.

    .venv/bin/python bench/bench_loader.py            # 16 frames, crop 256x512
    .venv/bin/python bench/bench_loader.py --quick    # smoke test, seconds
"""
import random
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from bench.common import bench_parser, machine_line, parse_with_quick  # noqa: E402
from lib.data import open_dataset  # noqa: E402
from lib.data.transforms import IMAGENET_MEAN, IMAGENET_STD  # noqa: E402
from lib.engine import LabeledCrops  # noqa: E402
from lib.units import Unit  # noqa: E402

QUICK = {"images": 4, "height": 256, "width": 512, "crop": "128x256"}


def write_pool(root, images, height, width, seed):
    """ROOT/classes.json and train/{images,masks}: frames with blocks of colour and noise, like photographs compress."""
    rng = np.random.default_rng(seed)
    (root / "train" / "images").mkdir(parents=True)
    (root / "train" / "masks").mkdir(parents=True)
    (root / "classes.json").write_text('["road", "car", "sky", "building"]')
    for i in range(images):
        mask = np.repeat(np.repeat(rng.integers(0, 4, (height // 64, width // 64)), 64, 0), 64, 1)  # [H, W]
        colours = rng.integers(0, 256, (4, 3))
        image = colours[mask] + rng.normal(0, 12, (height, width, 3))  # [H, W, 3]
        Image.fromarray(image.clip(0, 255).astype(np.uint8)).save(root / "train" / "images" / f"f{i:04d}.png")
        Image.fromarray(mask.astype(np.uint8)).save(root / "train" / "masks" / f"f{i:04d}.png")


def images_per_second(dataset, crop, epochs):
    """Samples of LabeledCrops read per second over `epochs` passes."""
    crops = LabeledCrops(dataset, Unit("image"), {i: [i] for i in dataset.ids}, crop, True, 0, IMAGENET_MEAN,
                         IMAGENET_STD)
    start = time.perf_counter()
    for epoch in range(epochs):
        order = list(range(len(crops)))
        random.Random(epoch).shuffle(order)
        for i in order:
            crops[epoch, i]
    return epochs * len(crops) / (time.perf_counter() - start)


def main(argv=None):
    parser = bench_parser(__doc__, QUICK)
    parser.add_argument("--images", type=int, default=16, help="frames in the pool")
    parser.add_argument("--height", type=int, default=1024, help="frame height")
    parser.add_argument("--width", type=int, default=2048, help="frame width")
    parser.add_argument("--crop", default="256x512", help="training crop HxW")
    parser.add_argument("--epochs", type=int, default=3, help="passes for the uncached and warm figures")
    args = parse_with_quick(parser, QUICK, argv)
    crop = tuple(int(v) for v in args.crop.split("x"))
    print(machine_line())
    with tempfile.TemporaryDirectory() as scratch:
        root, cache = Path(scratch) / "pool", Path(scratch) / "cache"
        write_pool(root, args.images, args.height, args.width, seed=0)
        cache.mkdir()
        plain = images_per_second(open_dataset("folder", root, "train"), crop, args.epochs)
        cached = open_dataset("folder", root, "train", cache)
        cold = images_per_second(cached, crop, 1)
        warm = images_per_second(cached, crop, args.epochs)
        disk = sum(p.stat().st_size for p in cache.rglob("*.npy")) / 2**20
    print(f"{args.images} frames {args.height}x{args.width}, crop {crop[0]}x{crop[1]}, one process")
    print(f"no cache          {plain:8.1f} images/s")
    print(f"cache, first pass {cold:8.1f} images/s (decodes and writes {disk:.0f} MiB)")
    print(f"cache, warm       {warm:8.1f} images/s   {warm / plain:.1f}x the uncached loader")


if __name__ == "__main__":
    main()
