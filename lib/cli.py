"""Argument types and checks shared by the three scripts."""
import argparse
import os
from pathlib import Path

from lib.errors import EXIT_USER_ERROR, UserError


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


def three_floats(text):
    """`0.485,0.456,0.406` -> [0.485, 0.456, 0.406]: one number per RGB channel."""
    try:
        values = [float(v) for v in text.split(",")]
    except ValueError:
        values = []
    if len(values) != 3:
        raise argparse.ArgumentTypeError(f"expected three comma-separated numbers R,G,B, got {text!r}")
    return values


def check_output_folders(**paths):
    """Fail before any work when an output's folder is missing: flag=path pairs, None skipped."""
    for flag, path in paths.items():
        if path is None:
            continue
        folder = Path(path).parent
        if not folder.resolve().is_dir():
            raise UserError(f"--{flag.replace('_', '-')} {path}: folder {folder} does not exist")
        if not os.access(folder, os.W_OK):  # before training for hours, not at the first save
            raise UserError(f"--{flag.replace('_', '-')} {path}: folder {folder} is not writable")


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
