"""What every benchmark shares: timing, the --quick switch, result lines, and the line describing the machine."""
import argparse
import os
import time

import torch


def timed(fn, *args, **kwargs):
    """(result, seconds) of one call."""
    start = time.perf_counter()
    result = fn(*args, **kwargs)
    return result, time.perf_counter() - start


def bench_parser(doc, quick, quick_also=""):
    """The argument parser of a benchmark, with --quick: smoke-test values for the flags named in `quick`."""
    parser = argparse.ArgumentParser(description=doc.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    shown = ", ".join(f"{key.replace('_', '-')}={value}" for key, value in quick.items())
    parser.add_argument("--quick", action="store_true",
                        help=f"smoke-test sizes for every flag left at its default{quick_also}: {shown}")
    return parser


def parse_with_quick(parser, quick, argv=None):
    """Parse argv; with --quick, every flag named in `quick` and left at its default takes the quick value."""
    args = parser.parse_args(argv)
    if args.quick:
        for key, value in quick.items():
            if getattr(args, key) == parser.get_default(key):
                setattr(args, key, value)
    return args


def print_row(template, name, ours="-", reference="-", ratio="-", target="-", ok=None, note=""):
    """One result line of a benchmark's table `template` (str.format fields: name, ours, reference, ratio, target,
    result[, note]); the result is "ok" or "MISSED" against the target, "-" where there is none."""
    result = "-" if ok is None else ("ok" if ok else "MISSED")
    print(template.format(name, ours, reference, ratio, target, result, note).rstrip(), flush=True)


def machine_line():
    # Other processes on the cores distort every figure (torch's threads wait on each
    # other), so the load is part of the result.
    return (f"torch {torch.__version__}, {torch.get_num_threads()} threads on {os.cpu_count()} cores, "
            f"cuda {'yes' if torch.cuda.is_available() else 'no'}, load average {os.getloadavg()[0]:.2f}")
