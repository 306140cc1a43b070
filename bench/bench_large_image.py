"""Benchmark of sliding-window inference (lib/sliding.py): peak memory on one very large image.

Trains a tiny model (train.py --arch tiny, one epoch) on a small synthetic pool, then
writes a `folder` dataset with the pool's classes holding ONE --size x --size RGB
image (a synthetic frame scaled up, and its mask in val), and runs in fresh
processes, on the CPU, without loader workers:

1. select.py --method entropy --budget 1 (the new experiment's first cycle),
2. evaluate.py on the val split,

each BEFORE (--slide-window 100000x100000: the whole image through the network at
once, as without windows) and AFTER (the default --slide-window). Prints every
command, the peak resident memory of each process (ru_maxrss of the child from
wait4, which counts the process alone) and the before/after ratio. The BEFORE runs
need about 10 GB at 8000x8000; mind the machine's memory.

    .venv/bin/python bench/bench_large_image.py            # one 8000x8000 image, about two minutes on 2 cores
    .venv/bin/python bench/bench_large_image.py --quick    # 3000x3000, seconds
"""
import os
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from PIL import Image

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from bench.common import bench_parser, machine_line, parse_with_quick  # noqa: E402
from lib.data.synthetic import write_synthetic_pool  # noqa: E402

QUICK = {"size": 3000}
WHOLE = "100000x100000"  # larger than any image: sliding off, the behaviour before lib/sliding.py
COMMON = ["--workers", "0", "--device", "cpu"]


def run_measured(command, log):
    """(peak resident MiB, seconds) of `command` in a fresh process; its output goes to `log`. Exits on failure."""
    start = time.perf_counter()
    with open(log, "w") as handle:
        process = subprocess.Popen(command, stdout=handle, stderr=subprocess.STDOUT, cwd=REPO_ROOT)
        _, status, usage = os.wait4(process.pid, 0)  # this child's own rusage, unlike RUSAGE_CHILDREN's running max
    process.returncode = os.waitstatus_to_exitcode(status)
    seconds = time.perf_counter() - start
    if process.returncode != 0:
        sys.exit(f"failed ({process.returncode}): {shlex.join(command)}\n{Path(log).read_text()[-2000:]}")
    return usage.ru_maxrss / 1024, seconds  # Linux: KiB


def train_tiny_model(pool, folder):
    """folder/model.pt: a tiny model, one epoch on 4 random images of the synthetic pool."""
    data = ["--dataset", "synthetic", "--data-root", str(pool)]
    subprocess.run([sys.executable, "select.py", *data, "--method", "random", "--budget", "4",
                    "--out", str(folder / "index.json")], check=True, cwd=REPO_ROOT, capture_output=True)
    subprocess.run([sys.executable, "train.py", *data, "--index", str(folder / "index.json"),
                    "--out", str(folder / "model.pt"), "--arch", "tiny", "--epochs", "1", "--batch-size", "2",
                    "--crop", "32x48", *COMMON], check=True, cwd=REPO_ROOT, capture_output=True)
    return folder / "model.pt"


def write_large_dataset(pool, root, size):
    """ROOT/classes.json (the pool's) and one size x size image: train/images (the pool to score), val/images and
    val/masks (to evaluate). The image is a synthetic frame scaled up, nearest neighbour: regions, edges, colours."""
    for folder in ("train/images", "val/images", "val/masks"):
        (root / folder).mkdir(parents=True)
    (root / "classes.json").write_text((pool / "classes.json").read_text())
    frame = sorted((pool / "val" / "images").iterdir())[0]
    image = Image.open(frame).convert("RGB").resize((size, size), Image.NEAREST)
    mask = Image.open(pool / "val" / "masks" / f"{frame.stem}.png").resize((size, size), Image.NEAREST)
    image.save(root / "train" / "images" / "big.png")
    image.save(root / "val" / "images" / "big.png")
    mask.save(root / "val" / "masks" / "big.png")


def commands(root, checkpoint, out):
    """{name: argv without --slide-window}: select.py entropy on the train split, evaluate.py on val."""
    data = ["--dataset", "folder", "--data-root", str(root), "--checkpoint", str(checkpoint), *COMMON]
    return {
        "select.py --method entropy": [sys.executable, "select.py", *data, "--method", "entropy", "--budget", "1",
                                       "--out", str(out / "index.json")],
        "evaluate.py": [sys.executable, "evaluate.py", *data, "--out", str(out / "metrics.json")],
    }


def main(argv=None):
    parser = bench_parser(__doc__, QUICK)
    parser.add_argument("--size", type=int, default=8000, help="side of the one square image, in pixels")
    args = parse_with_quick(parser, QUICK, argv)
    print(machine_line())
    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        write_synthetic_pool(scratch / "pool", sequences=3, frames_per_sequence=2, val_images=1, height=64,
                             width=96, seed=0)
        (scratch / "model").mkdir()
        checkpoint = train_tiny_model(scratch / "pool", scratch / "model")
        write_large_dataset(scratch / "pool", scratch / "large", args.size)
        print(f"one {args.size}x{args.size} RGB image, tiny model, peak resident memory of each process:")
        for name, command in commands(scratch / "large", checkpoint, scratch).items():
            peaks = {}
            for label, window in (("before", WHOLE), ("after", None)):
                argv = command + (["--slide-window", window] if window else [])
                print(f"  $ {shlex.join(argv)}")
                peaks[label], seconds = run_measured(argv, scratch / "log.txt")
                print(f"    {label:6s} {peaks[label]:8.0f} MiB  {seconds:6.1f} s")
            print(f"  {name}: {peaks['before']:.0f} MiB -> {peaks['after']:.0f} MiB, "
                  f"{peaks['before'] / peaks['after']:.1f}x less with the default window")


if __name__ == "__main__":
    main()
