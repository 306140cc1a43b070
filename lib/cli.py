"""Argument types and checks shared by the three scripts."""
import argparse
import math
from fractions import Fraction

import numpy as np

from lib.errors import EXIT_USER_ERROR

# Sides beyond this are a slip of the hand (a crop or model input of 100000 pixels would exhaust any memory).
MAX_SIDE = 8192
MAX_SCALE = 4  # --scale and --random-scale: a larger factor is a slip of the hand too (16x the pixels)
SEED_LIMIT = 2 ** 32  # numpy's and torch's seeding takes [0, 2**32)


def positive_int(text):
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def non_negative_int(text):
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be at least 0, got {value}")
    return value


def seed(text):
    value = int(text)
    if not 0 <= value < SEED_LIMIT:
        raise argparse.ArgumentTypeError(f"must be in [0, 2**32), got {text!r}")
    return value


def float_in(low=-math.inf, high=math.inf, *, open_low=False, open_high=False):
    """An argparse type: a finite float in an interval; float_in(0, 1, open_high=True) takes [0, 1).

    Checked where the flag is parsed, so a NaN momentum or an infinite weight decay is
    blamed on its flag, not later on the learning rate as a diverged training. The
    value is checked as float32, where it ends up: 1e300 is infinite there, and a std
    of 1e-46 is 0.
    """
    open_low, open_high = open_low or math.isinf(low), open_high or math.isinf(high)
    interval = f"{'(' if open_low else '['}{low:g}, {high:g}{')' if open_high else ']'}"

    def parse(text):
        try:
            value = float(text)
        except ValueError:
            value = math.nan
        stored = as_float32(value)  # 1e300 becomes inf there, 1e-46 becomes 0
        below = stored <= low if open_low else stored < low
        above = stored >= high if open_high else stored > high
        if not math.isfinite(stored) or below or above:
            raise argparse.ArgumentTypeError(f"must be a finite number in {interval}, got {text!r}")
        return value

    return parse


def as_float32(value):
    """`value` rounded to float32 (overflowing to inf), as the tensors it meets will hold it."""
    with np.errstate(over="ignore"):
        return float(np.float32(value))


positive_float = float_in(0, open_low=True)
non_negative_float = float_in(0)
# evaluate.py --budget: B of mIoU@B and AUC@B in % of the pool, above 0 (no model is trained on nothing)
# and at most all of it.
budget_percent = float_in(0, 100, open_low=True)


def size_pair(text):
    """`HxW` (a crop) or `RxC` (a grid), or a single number for a square -> (height, width)."""
    height, sep, width = text.lower().partition("x")
    try:
        size = (int(height), int(width)) if sep else (int(text),) * 2
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected two sizes like 256x512 or 4x4, got {text!r}") from None
    if min(size) <= 0:
        raise argparse.ArgumentTypeError(f"sizes must be positive, got {text!r}")
    return size


def size_pair_up_to(limit):
    """size_pair with at most `limit` pixels a side."""
    def parse(text):
        size = size_pair(text)
        if max(size) > limit:
            raise argparse.ArgumentTypeError(f"at most {limit} pixels a side, got {text!r}")
        return size

    return parse


def scale_factor(text):
    """--scale F: a decimal or a fraction (0.5, 1/3) in (0, MAX_SCALE], kept exact as its canonical fraction text
    ("1/2"): what a checkpoint records, and a factor without float rounding (lib.data.resolution)."""
    try:
        value = Fraction(text.strip())
    except (ValueError, ZeroDivisionError):
        value = None
    if value is None or not 0 < value <= MAX_SCALE:
        raise argparse.ArgumentTypeError(f"expected a factor in (0, {MAX_SCALE}] such as 0.5 or 1/3, got {text!r}")
    return str(value)


def scale_range(text):
    """--random-scale MIN,MAX[,STEP] -> (MIN, MAX) or (MIN, MAX, STEP): factors in (0, MAX_SCALE], MIN <= MAX, and
    a STEP that divides MAX - MIN (lib.data.transforms.RandomScale)."""
    parse = float_in(0, MAX_SCALE, open_low=True)
    try:
        values = tuple(parse(part) for part in text.split(","))
    except argparse.ArgumentTypeError:
        values = ()
    if len(values) not in (2, 3) or values[0] > values[1]:
        raise argparse.ArgumentTypeError(f"expected MIN,MAX or MIN,MAX,STEP with 0 < MIN <= MAX <= {MAX_SCALE}, "
                                         f"got {text!r}")
    steps = (values[1] - values[0]) / values[2] if len(values) == 3 else 0
    if abs(steps - round(steps)) > 1e-6:  # 0.5,1.6,0.1 is 11 steps up to float rounding
        raise argparse.ArgumentTypeError(f"STEP must divide MAX - MIN, got {text!r}")
    return values


def _three(text, number, what):
    """`0.485,0.456,0.406` -> [0.485, 0.456, 0.406]: one number per RGB channel, each checked by `number`."""
    try:
        values = [number(part) for part in text.split(",")]
    except argparse.ArgumentTypeError:
        values = []
    if len(values) != 3:
        raise argparse.ArgumentTypeError(f"expected three comma-separated {what} R,G,B, got {text!r}")
    return values


def three_floats(text):
    return _three(text, float_in(), "finite numbers")


def three_positive_floats(text):
    """A normalisation std: 0 would divide by zero."""
    return _three(text, positive_float, "finite numbers above 0")


class _OneLineErrorParser(argparse.ArgumentParser):
    def error(self, message):
        # Like every other user mistake: one `error:` line and exit code 2, no usage dump.
        self.exit(EXIT_USER_ERROR, f"error: {message} (see {self.prog} --help)\n")


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Defaults shown after every flag; the docstring's example commands kept as written.

    A flag whose default is None ("not given") says in its own help what that means.
    """

    def _get_help_string(self, action):
        return action.help if action.default is None else super()._get_help_string(action)


def add_runtime_flags(group, runs, batch_size=None):
    """--device, --amp, -j, --threads and --cache-dir: where and how a script `runs` its model ("train", "score",
    ...), which never changes its results (--threads: but in their last bits on the CPU); with `batch_size`, -b
    as the images per forward pass too (train.py's batch is an optimisation setting of its own)."""
    group.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"), help=f"where to {runs}")
    group.add_argument("--amp", action=argparse.BooleanOptionalAction, default=True,
                       help="mixed precision on CUDA (bfloat16 where the GPU has it, else float16 with loss "
                            "scaling); nothing on the CPU")
    if batch_size is not None:
        group.add_argument("-b", "--batch-size", type=positive_int, default=batch_size,
                           help="images per forward pass")
    group.add_argument("-j", "--workers", type=non_negative_int, default=2, help="data loading processes")
    group.add_argument("--threads", type=positive_int, default=None,
                       help="CPU threads of the model's operations (default: OMP_NUM_THREADS if set, else one per "
                            "CPU but one); on the CPU another count changes results in their last bits "
                            "(lib/threads.py)")
    group.add_argument("--cache-dir", default=None,
                       help="folder keeping images and masks decoded (.npy, memory-mapped): faster loading, more "
                            "disk; filled on first use; new, empty or a cache, apart from the data")


def add_resolution_flags(group, default):
    """--resize and --scale, one or neither: the resolution the dataset is read at (lib.data.resolution);
    `default` says what neither means."""
    exclusive = group.add_mutually_exclusive_group()
    exclusive.add_argument("--resize", type=size_pair_up_to(MAX_SIDE), default=None, metavar="HxW",
                           help="read every image at HxW (bilinear, antialiased), masks with nearest neighbour, "
                                f"aspect ratio not kept (default: {default})")
    exclusive.add_argument("--scale", type=scale_factor, default=None, metavar="F",
                           help="read every image scaled by F, a decimal or fraction (0.5, 1/3): a side of n "
                                f"pixels becomes floor(n * F); 1: the files' resolution (default: {default})")


def add_slide_window_flag(group, default):
    group.add_argument("--slide-window", type=size_pair, default="x".join(map(str, default)), metavar="HxW",
                       help="an image larger than this in either dimension goes through the model in overlapping "
                            "windows of this size, which bounds memory (lib/sliding.py); smaller images, such as "
                            "Cityscapes' 1024x2048 frames, go whole")


def script_parser(description):
    """The argument parser of a script: --help shows defaults, a bad flag is one error line."""
    return _OneLineErrorParser(description=description, formatter_class=_HelpFormatter)
