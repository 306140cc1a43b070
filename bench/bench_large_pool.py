"""Benchmark of select.py on large pools: its peak memory against the pool size (issue "Large pools").

Writes one `folder` pool of small images (--image-size, blocks of colour) per --sizes
entry, each image 16 items (--unit patch --grid 4x4: 200,000 items are 12,500 images),
trains a tiny model (train.py --arch tiny, one epoch on 8 images of a pool of its own),
and runs, in a fresh process per figure, on --device:

1. select.py --method random --unit patch --grid 4x4 --budget 1% (cycle 0, no model),
2. select.py --method M --index <cycle 0> --checkpoint <tiny model> --budget 1%, each of --methods,

printing each command, its peak resident memory, on CUDA the peak of torch's
allocator, and its seconds. The peak is the kernel's VmHWM read when select.py's main
returns: the interpreter's exit pages in about 130 MiB of torch's libraries whatever
the pool, which would hide smaller growth from ru_maxrss. Per method, the growth
between consecutive sizes, in bytes per item, is checked against what the issue
allows: one score per item (an id, its dict entry and a float: SCORE_BYTES) and, for
the methods that read features, one float32 feature row (4 x d bytes, d the tiny
model's ASPP channels). Others on the cores change the seconds, not the memory.
Between small pools coreset's figure also holds the block of k-center's first
distances (lib.acquire.distances.CHUNK_ELEMENTS, 64 MiB), which grows with the pool
up to that cap (about 33k items at a 1% budget): compare the largest two sizes.

    .venv/bin/python bench/bench_large_pool.py                  # 12.8k, 50k, 200k items: a few minutes on 2 cores
    .venv/bin/python bench/bench_large_pool.py --quick          # 1.6k and 6.4k items, seconds
    .venv/bin/python bench/bench_large_pool.py --device cuda    # also the GPU peaks
"""
import functools
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from bench.common import bench_parser, machine_line, parse_with_quick, print_row  # noqa: E402
from lib.acquire import METHODS  # noqa: E402
from lib.checkpoint import load_checkpoint, model_from_checkpoint  # noqa: E402
from lib.cli import size_pair  # noqa: E402
from lib.steps import import_script  # noqa: E402

QUICK = {"sizes": "1600,6400"}
GRID = "4x4"  # MEAL's patches
ITEMS_PER_IMAGE = 16
SCORE_BYTES = 200  # one score per item: its id (a str, ~62 B, and a list slot), a dict entry and a float
CLASSES = '["road", "car", "sky", "building"]'
TRAIN_IMAGES = 8
MIB = 1 << 20

ROW = "{:<34} {:>12} {:>12} {:>8}  {:<14} {:<6} {}"
row = functools.partial(print_row, ROW)


def item_counts(text):
    """--sizes: "12500,50000" -> [12500, 50000], each a whole number of images."""
    sizes = [int(part) for part in text.split(",")]
    if any(size <= 0 or size % ITEMS_PER_IMAGE for size in sizes) or sizes != sorted(set(sizes)):
        raise ValueError(f"sizes must be increasing multiples of {ITEMS_PER_IMAGE}, got {text!r}")
    return sizes


def write_pool(root, images, height, width, masks=False):
    """ROOT/classes.json and train/images (and train/masks): 4x4 blocks of 4 random colours per image.

    A scratch pool, deleted with its folder: plain writes, not lib.fileio's atomic ones, whose
    fsync per file would make 12,500 images take minutes instead of seconds.
    """
    rng = np.random.default_rng(images)
    (root / "train" / "images").mkdir(parents=True)
    (root / "classes.json").write_text(CLASSES)
    if masks:
        (root / "train" / "masks").mkdir()
    for i in range(images):
        blocks = rng.integers(0, 4, (4, 4))
        classes = np.repeat(np.repeat(blocks, -(-height // 4), 0), -(-width // 4), 1)[:height, :width]  # [H, W]
        colours = rng.integers(0, 256, (4, 3), dtype=np.uint8)
        Image.fromarray(colours[classes]).save(root / "train" / "images" / f"img{i:05d}.png")
        if masks:
            Image.fromarray(classes.astype(np.uint8)).save(root / "train" / "masks" / f"img{i:05d}.png")


def run_quietly(argv, log):
    """Run argv from the repository root; on failure exit with its command and the end of its output."""
    with open(log, "w") as handle:
        code = subprocess.run(argv, stdout=handle, stderr=subprocess.STDOUT, cwd=REPO_ROOT).returncode
    if code:
        sys.exit(f"failed ({code}): {shlex.join(argv)}\n{Path(log).read_text()[-2000:]}")


def train_tiny_model(scratch, height, width, device):
    """A tiny model, one epoch on every patch of a pool of TRAIN_IMAGES labeled images: its checkpoint path."""
    pool, folder = scratch / "train-pool", scratch / "model"
    write_pool(pool, TRAIN_IMAGES, height, width, masks=True)
    folder.mkdir()
    data = ["--dataset", "folder", "--data-root", str(pool)]
    run_quietly([sys.executable, "select.py", *data, "--method", "random", "--unit", "patch", "--grid", GRID,
                 "--budget", "100%", "--out", str(folder / "index.json")], scratch / "log.txt")
    run_quietly([sys.executable, "train.py", *data, "--index", str(folder / "index.json"), "--out",
                 str(folder / "model.pt"), "--arch", "tiny", "--epochs", "1", "--batch-size", "4", "--crop",
                 f"{height}x{width}", "--workers", "0", "--device", device], scratch / "log.txt")
    return folder / "model.pt"


def feature_dim(checkpoint, height, width):
    """d of the model's "aspp" feature map, the features coreset and kmeanspp read."""
    model = model_from_checkpoint(load_checkpoint(checkpoint), "cpu", checkpoint)
    with torch.no_grad():
        return model.feature_map("aspp", torch.zeros(1, 3, height, width)).shape[1]


def select_peaks(argv):
    """In the child process: select.py's main on argv, then `peak-rss-kib N` (VmHWM) and `peak-cuda-bytes N`."""
    import_script("select.py").main(argv)
    with open("/proc/self/status") as status:
        peak = next(int(line.split()[1]) for line in status if line.startswith("VmHWM:"))
    print(f"peak-rss-kib {peak}")
    print(f"peak-cuda-bytes {torch.cuda.max_memory_allocated() if torch.cuda.is_available() else 0}")


def measured_select(argv, log):
    """(peak resident MiB, peak CUDA MiB, seconds) of select.py on argv, in a fresh process."""
    child = "import sys; from bench.bench_large_pool import select_peaks; select_peaks(sys.argv[1:])"
    start = time.perf_counter()
    run_quietly([sys.executable, "-c", child, *argv], log)
    seconds = time.perf_counter() - start
    figures = dict(line.split() for line in Path(log).read_text().splitlines() if line.startswith("peak-"))
    return int(figures["peak-rss-kib"]) / 1024, int(figures["peak-cuda-bytes"]) / MIB, seconds


def measure_pool(scratch, items, args, checkpoint):
    """{method: (peak MiB, CUDA MiB, seconds)} on a pool of `items` patch items, cycle 0's random first."""
    pool = scratch / f"pool-{items}"
    write_pool(pool, items // ITEMS_PER_IMAGE, *args.image_size)
    common = ["--dataset", "folder", "--data-root", str(pool), "--budget", args.budget, "--workers", "0",
              "--device", args.device, "--batch-size", str(args.batch_size)]
    cycle0 = scratch / f"cycle0-{items}.json"
    runs = {"random": ["--method", "random", "--unit", "patch", "--grid", GRID, "--out", str(cycle0)]}
    for method in args.methods:
        runs[method] = ["--method", method, "--index", str(cycle0), "--checkpoint", str(checkpoint),
                        "--out", str(scratch / f"{method}-{items}.json")]
    figures = {}
    for method, argv in runs.items():
        print(f"  $ {shlex.join([sys.executable, 'select.py', *common, *argv])}", flush=True)
        figures[method] = measured_select(common + argv, scratch / "log.txt")
        peak, cuda, seconds = figures[method]
        cuda_text = f"{cuda:.0f} MiB" if args.device == "cuda" else "-"
        row(f"{items} items {method}", f"{peak:.0f} MiB", cuda_text, f"{seconds:.1f} s")
    return figures


def allowance(method, dim):
    """Bytes per item the issue allows `method` to add: one score, and one float32 feature row if it reads them."""
    return SCORE_BYTES + (4 * dim if "features" in METHODS[method].inputs else 0)


def report_growth(results, dim, device):
    """Per method and pair of consecutive sizes: the peaks' growth in bytes per item, against its allowance."""
    sizes = sorted(results)
    for method in results[sizes[0]]:
        for small, large in zip(sizes, sizes[1:]):
            added = large - small
            for what, column in (("host", 0), ("cuda", 1)) if device == "cuda" else (("host", 0),):
                growth = (results[large][method][column] - results[small][method][column]) * MIB / added
                row(f"{method} {what} {small}->{large}", f"{growth:.0f} B/item", "", "",
                    f"<= {allowance(method, dim)} B/item", growth <= allowance(method, dim),
                    f"{growth * 200_000 / MIB:.0f} MiB at 200k items")


def parse_args(argv=None):
    parser = bench_parser(__doc__, QUICK, quick_also=" (a smoke test: RSS noise swamps growth that small)")
    parser.add_argument("--sizes", default="12800,50000,200000",
                        help=f"pool sizes in patch items, increasing, multiples of {ITEMS_PER_IMAGE}")
    parser.add_argument("--image-size", type=size_pair, default="32x32", help="HxW of the pool's images")
    parser.add_argument("--methods", default="entropy,coreset",
                        help="methods run after cycle 0's random, comma-separated (any of select.py's that read "
                             "a model or nothing)")
    parser.add_argument("--budget", default="1%", help="select.py --budget of every cycle")
    parser.add_argument("--batch-size", type=int, default=32, help="select.py --batch-size, images per batch")
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"), help="select.py --device")
    args = parse_with_quick(parser, QUICK, argv)
    try:
        args.sizes = item_counts(args.sizes)
    except ValueError as err:
        parser.error(str(err))
    args.methods = args.methods.split(",")
    unknown = [method for method in args.methods if method not in METHODS]
    if unknown:
        parser.error(f"unknown method {unknown[0]!r} (choices: {', '.join(METHODS)})")
    return args


def main(argv=None):
    args = parse_args(argv)
    print(machine_line(), flush=True)
    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        checkpoint = train_tiny_model(scratch, *args.image_size, args.device)
        dim = feature_dim(checkpoint, *args.image_size)
        print(f"tiny model, d={dim}; patch {GRID} items of {args.image_size[0]}x{args.image_size[1]} images; "
              f"peak of each select.py process:")
        print(ROW.format("run", "peak RSS", "peak CUDA", "seconds", "", "", "").rstrip())
        results = {items: measure_pool(scratch, items, args, checkpoint) for items in args.sizes}
    print(ROW.format("growth between sizes", "ours", "", "", "target", "result", "").rstrip())
    report_growth(results, dim, args.device)


if __name__ == "__main__":
    main()
