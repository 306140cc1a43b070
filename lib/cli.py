"""Argument types and checks shared by the three scripts."""
import argparse
import math

from lib.errors import EXIT_USER_ERROR

# Sides beyond this are a slip of the hand (a crop or model input of 100000 pixels would exhaust any memory).
MAX_SIDE = 8192
SEED_LIMIT = 2 ** 32  # numpy's and torch's seeding takes [0, 2**32)
FLOAT32_MAX = 3.4028234663852886e38  # flags meet float32 tensors: a larger learning rate overflows there


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
    blamed on its flag, not later on the learning rate as a diverged training. Finite
    means finite in float32, where the values end up (1e300 is inf there).
    """
    open_low, open_high = open_low or math.isinf(low), open_high or math.isinf(high)
    interval = f"{'(' if open_low else '['}{low:g}, {high:g}{')' if open_high else ']'}"

    def parse(text):
        try:
            value = float(text)
        except ValueError:
            value = math.nan
        below = value <= low if open_low else value < low
        above = value >= high if open_high else value > high
        if not abs(value) <= FLOAT32_MAX or below or above:  # NaN fails the first test
            raise argparse.ArgumentTypeError(f"must be a finite number in {interval}, got {text!r}")
        return value

    return parse


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


def script_parser(description):
    """The argument parser of a script: --help shows defaults, a bad flag is one error line."""
    return _OneLineErrorParser(description=description, formatter_class=_HelpFormatter)
