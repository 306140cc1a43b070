"""Benchmark of training steps: our loop against a plain float32 loop of the same model.

Ours is lib.engine.train_one_epoch with what train.py sets up (start_run's model,
SGD optimiser, poly schedule and GradScaler, train.py's default loss and --amp), fed
from page-locked memory as a CUDA run's loader hands batches over. The plain loop is
the one before the fast path: float32, NCHW, each step's loss read (and checked) on
the host, batches in ordinary memory. Both train DeepLabv3+ from the same initial
weights on the same batch of random crops, already in memory (the loader is
bench_loader.py's subject). After --warmup untimed steps each (kernel choice, cuDNN's
autotuning, allocations), they take turns: --repeats blocks of --steps steps, the
median images/s of each reported.

On CUDA, ours runs in mixed precision (bfloat16 where the GPU has it), channels_last,
with cuDNN's autotuner and the loss read every 20 steps; target: at least 2x the
plain loop's images/s. On the CPU each of those stays off, so both loops do the same
work: the ratio is printed without a target.

    .venv/bin/python bench/bench_train.py            # MobileNetV2 and ResNet-50, 256x512, batch 8
    .venv/bin/python bench/bench_train.py --quick    # smoke test, seconds on a CPU
    .venv/bin/python bench/bench_train.py --archs resnet50 --height 128 --width 256 --batch-size 4 --steps 3
"""
import functools
import io
import os
import statistics
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import bench_parser, machine_line, parse_with_quick, print_row, timed  # noqa: E402

from lib.engine import train_one_epoch  # noqa: E402
from lib.errors import UserError  # noqa: E402
from lib.fast_path import amp_note  # noqa: E402
from lib.losses import make_criterion  # noqa: E402
from lib.models import ARCHS  # noqa: E402
from lib.progress import Progress  # noqa: E402
from lib.semisup.mode import SslMode  # noqa: E402
from lib.steps import import_script  # noqa: E402
from lib.training_run import model_arguments, start_run  # noqa: E402

TRAIN = import_script("train.py")
SPEEDUP = 2.0  # issue 17's target on a GPU
CLASSES = 19  # Cityscapes'

QUICK = {"archs": ["tiny"], "height": 64, "width": 128, "steps": 2, "warmup": 1, "repeats": 1}

ROW = "{:<34} {:>11} {:>11} {:>8}  {:<10} {:<6} {}"
row = functools.partial(print_row, ROW)


def start(arch, batch_size, amp, device, seed):
    """train.py's Run (start_run) for `arch` and `batch_size`, with or without --amp, its other flags at their
    defaults, and the loss of train.py's default --loss. The data paths the parser requires are never read."""
    argv = ["--dataset", "synthetic", "--data-root", "-", "--index", "-", "--out", "-", "--arch", arch,
            "--batch-size", str(batch_size), "--seed", str(seed), "--amp" if amp else "--no-amp"]
    args = TRAIN.get_args_parser().parse_args(argv)
    run = start_run(args, model_arguments(args, CLASSES), batch_size, device)
    return run, make_criterion(args.loss, None, device)


def random_batch(batch_size, height, width, seed):
    """images [B, 3, H, W] standard normal, masks [B, H, W] of CLASSES classes, on the CPU."""
    generator = torch.Generator().manual_seed(seed)
    return (torch.randn(batch_size, 3, height, width, generator=generator),
            torch.randint(0, CLASSES, (batch_size, height, width), generator=generator))


def ours(run, criterion, batches, device):
    """Mean loss of our loop over `batches`."""
    progress = Progress("bench", len(batches), stream=io.StringIO())  # counted as in train.py, printed nowhere
    return train_one_epoch(run.model, 1, batches, SslMode(), None, run.optimizer, run.scheduler, run.scaler, device,
                           progress, criterion, amp=True)  # train.py's default --amp


def plain(run, criterion, batches, device):
    """Mean loss of the plain float32 loop over `batches`, with cuDNN's autotuner off as torch starts (ours turns it
    on for the process)."""
    torch.backends.cudnn.benchmark = False
    run.model.train()
    total = 0.0
    for images, masks in batches:
        images, masks = images.to(device), masks.to(device)
        loss = criterion(run.model(images), masks)
        if not torch.isfinite(loss):  # a host sync, as every step had one
            raise UserError(f"the plain loop diverged, the loss is {loss.item()}")
        run.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        run.optimizer.step()
        run.scheduler.step()
        total += loss.item()
    return total / len(batches)


def timed_steps(loop, run, criterion, batch, steps, device):
    """(images/s, mean loss) of `steps` steps of `loop` on `batch`."""
    if device.type == "cuda":
        torch.cuda.synchronize()
    loss, seconds = timed(loop, run, criterion, [batch] * steps, device)  # each loop reads its last loss: synced
    return steps * len(batch[0]) / seconds, loss


def bench_arch(arch, args, device):
    """Both loops warmed up, then timed in turns (--repeats blocks of --steps each), so that a change in the load
    of the machine falls on both; the median rate of each."""
    batch = random_batch(args.batch_size, args.height, args.width, args.seed)
    pinned = tuple(tensor.pin_memory() for tensor in batch) if device.type == "cuda" else batch
    loops = {"plain": (plain, *start(arch, args.batch_size, False, device, args.seed), batch),
             "ours": (ours, *start(arch, args.batch_size, True, device, args.seed), pinned)}
    for loop, run, criterion, data in loops.values():
        loop(run, criterion, [data] * args.warmup, device)
    rates, losses = {name: [] for name in loops}, {}
    for _ in range(args.repeats):
        for name, (loop, run, criterion, data) in loops.items():
            rate, losses[name] = timed_steps(loop, run, criterion, data, args.steps, device)
            rates[name].append(rate)
    our_rate, plain_rate = statistics.median(rates["ours"]), statistics.median(rates["plain"])
    ratio = our_rate / plain_rate
    on_gpu = device.type == "cuda"
    row(f"{arch} {args.batch_size}x3x{args.height}x{args.width}", f"{our_rate:.1f} img/s", f"{plain_rate:.1f} img/s",
        f"{ratio:.2f}x", f">= {SPEEDUP:g}x" if on_gpu else "-", ratio >= SPEEDUP if on_gpu else None,
        f"ours{amp_note(device, True) or ' in float32'}; last block's mean loss {losses['ours']:.4f} ours, "
        f"{losses['plain']:.4f} plain")


def parse_args(argv=None):
    parser = bench_parser(__doc__, QUICK)
    parser.add_argument("--archs", nargs="+", choices=ARCHS, default=["mobilenet_v2", "resnet50"],
                        help="DeepLabv3+ backbones to measure")
    parser.add_argument("--height", type=int, default=256, help="crop height")
    parser.add_argument("--width", type=int, default=512, help="crop width")
    parser.add_argument("--batch-size", type=int, default=8, help="crops per step")
    parser.add_argument("--steps", type=int, default=20, help="timed steps of each loop")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps of each loop before the timed ones")
    parser.add_argument("--repeats", type=int, default=3, help="timed blocks of --steps per loop, median reported")
    parser.add_argument("--device", choices=("cuda", "cpu"), default="cuda" if torch.cuda.is_available() else "cpu",
                        help="where to train")
    parser.add_argument("--seed", type=int, default=0, help="initial weights and data")
    return parse_with_quick(parser, QUICK, argv)


def main(argv=None):
    args = parse_args(argv)
    device = torch.device(args.device)
    print(machine_line(), flush=True)
    if device.type == "cuda":
        print(torch.cuda.get_device_name(), flush=True)
    print(ROW.format("training steps", "ours", "plain", "ratio", "target", "result", "").rstrip())
    for arch in args.archs:
        bench_arch(arch, args, device)
    print(f"load average {os.getloadavg()[0]:.2f} at the end", flush=True)


if __name__ == "__main__":
    main()
