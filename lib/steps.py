"""Run an experiment's planned steps (lib.experiment.plan): each one whose output is missing.

By default every step runs in this process by calling its script's `main(argv)`: torch
is imported and CUDA set up once for the whole experiment instead of once per step.
A step starts from the global state a fresh process has (unseeded generators, thread
count, backend flags) and leaves nothing behind (DataLoader workers, cached GPU
memory), so its outputs are those of `python <script> <argv>`, which
`separate_processes=True` runs instead. With a `launcher` (the experiment's NPROC or
LAUNCHER), the steps that run a model (Step.distributed) are `<launcher> <script>
<argv>`: torchrun's processes, each a fresh Python.
"""
import contextlib
import gc
import importlib.util
import multiprocessing
import os
import random
import shutil
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch

from lib.errors import UserError, exit_code_of
from lib.experiment import Link, Step
from lib.fileio import atomic_write
from lib.progress import format_duration

REPO_ROOT = Path(__file__).resolve().parent.parent


def run_plan(steps, separate_processes=False, where=None, launcher=()):
    """Run `steps` in order; the exit code of the first that fails, else 0. Before each step with an output, a
    line says how far the run is: `[n/N] where(step); about H:MM:SS left` once every kind of step left is timed.
    `launcher`: the words that start a Step.distributed (torchrun), () for none."""
    timings = Timings({step.output: step.script for step in steps
                       if isinstance(step, Step) and step.output is not None and not why_done(step)})
    for step in steps:
        done = why_done(step)
        if isinstance(step, Link):
            if not done:
                link_files(Path(step.source), Path(step.target), step.names, step.optional)
            continue
        if done:
            print(f"skip {step.script}: {done}")
            timings.forget(step)  # done since the run began (a later method's share of a variant)
            continue
        if step.output is not None:
            print(timings.progress(step, where))
            print(f"run {step.script} -> {step.output}")
            Path(step.output).parent.mkdir(parents=True, exist_ok=True)
        started = time.monotonic()
        if launcher and step.distributed:
            code = run_separately(step, launcher)
        else:
            code = run_separately(step) if separate_processes else run_here(step)
        if code:
            return code
        timings.record(step, time.monotonic() - started)
    return 0


class Timings:
    """How long this run's steps took, by script: the time left is the mean of each script's steps so far times
    the steps of it left."""

    def __init__(self, todo):
        self.todo = todo  # {output: script} of the steps left to run, each output once
        self.total = len(todo)
        self.seconds = {}  # script -> [seconds of each step run]

    def record(self, step, seconds):
        self.seconds.setdefault(step.script, []).append(seconds)
        self.forget(step)

    def forget(self, step):
        self.todo.pop(step.output, None)

    def left(self):
        """Seconds left, or None while a script left to run has no timed step yet."""
        if any(script not in self.seconds for script in self.todo.values()):
            return None
        return sum(sum(self.seconds[script]) / len(self.seconds[script]) for script in self.todo.values())

    def progress(self, step, where=None):
        number = self.total - len(self.todo) + 1
        left = self.left()
        return (f"[{number}/{self.total}]" + (f" {where(step)}" if where else "")
                + (f"; about {format_duration(left)} left" if left is not None else ""))


def why_done(step):
    """Why `step` needs no run (its output exists, or what it feeds does), or None when it does."""
    if isinstance(step, Step) and step.output is not None and os.path.exists(step.output):
        return f"{step.output} exists"
    if isinstance(step, Link) and all((Path(step.target) / name).exists() for name in step.names):
        return f"{step.target} has {', '.join(step.names)}"
    if step.needed_for and all(os.path.exists(path) for path in step.needed_for):
        return f"{step.output if isinstance(step, Step) else step.target} is not needed, " \
               f"{Path(step.needed_for[0]).parent} is done"
    return None


def link_files(source, target, names, optional=False):
    """Share finished files without copying them; a file system without hard links gets atomic copies. A missing
    source is a UserError, or skipped when `optional`."""
    target.mkdir(parents=True, exist_ok=True)
    for name in names:
        if (target / name).exists():
            continue
        if not (source / name).exists():
            if optional:
                continue
            raise UserError(f"{source / name}: missing, a step of the experiment was to write it")
        try:
            os.link(source / name, target / name)
        except OSError:
            with atomic_write(target / name) as handle, open(source / name, "rb") as original:
                shutil.copyfileobj(original, handle)


def run_separately(step, launcher=None):
    """`python <script> <argv>`, or `<launcher> <script> <argv>`, in a process of its own; its exit code."""
    # close_fds=False: the step inherits the experiment's lock (scripts/lib/al_loop.sh), as in a shell.
    return subprocess.run([*(launcher or (sys.executable,)), str(REPO_ROOT / step.script), *step.argv], check=False,
                          close_fds=False).returncode


def run_here(step):
    """`main(argv)` of the step's script, as its own process would run it: a UserError is one `error:` line, and
    usage errors name the script."""
    main = _script_main(step.script)
    with fresh_process_state(), _program_name(REPO_ROOT / step.script):
        try:
            return exit_code_of(main, list(step.argv))
        except SystemExit as exit_:  # argparse's usage errors, --help
            if exit_.code is None or isinstance(exit_.code, int):
                return exit_.code or 0
            print(exit_.code, file=sys.stderr)
            return 1


@contextlib.contextmanager
def _program_name(path):
    """sys.argv[0] as the script's own process has it: argparse names the program after it."""
    argv = sys.argv
    sys.argv = [str(path)]
    try:
        yield
    finally:
        sys.argv = argv


_MAINS = {}


def _script_main(script):
    """The main function of a script of the repository, imported once."""
    if script not in _MAINS:
        _MAINS[script] = import_script(script).main
    return _MAINS[script]


def import_script(script):
    """A script of the repository (its path from the root) as a new module, under a name that is not its own:
    select.py cannot be imported as `select`, the standard library's module."""
    path = REPO_ROOT / script
    spec = importlib.util.spec_from_file_location(f"al_seg_script_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@contextlib.contextmanager
def fresh_process_state():
    """The global state a script may read or change, as a new process has it; restored afterwards."""
    threads = torch.get_num_threads()
    flags = _backend_flags()
    # A new process seeds torch's, Python's and NumPy's global generators from the OS's entropy: a step
    # never draws what an earlier one seeded (each script seeds what its results depend on).
    torch.seed()  # every device's generator
    random.seed()
    np.random.seed()
    try:
        with warnings.catch_warnings():
            yield
    finally:
        torch.set_num_threads(threads)
        _set_backend_flags(flags)
        for child in multiprocessing.active_children():  # DataLoader workers of an iterator a failed step left
            child.terminate()
            child.join()
        gc.collect()  # frees the step's tensors, models and open files now, not at some later step
        if torch.cuda.is_initialized():
            torch.cuda.empty_cache()


def _backend_flags():
    return {
        "grad": torch.is_grad_enabled(),
        "dtype": torch.get_default_dtype(),
        "deterministic": torch.are_deterministic_algorithms_enabled(),
        "matmul_precision": torch.get_float32_matmul_precision(),
        "cudnn_benchmark": torch.backends.cudnn.benchmark,
        "cudnn_deterministic": torch.backends.cudnn.deterministic,
        "cudnn_tf32": torch.backends.cudnn.allow_tf32,
    }


def _set_backend_flags(flags):
    torch.set_grad_enabled(flags["grad"])
    torch.set_default_dtype(flags["dtype"])
    torch.use_deterministic_algorithms(flags["deterministic"])
    torch.set_float32_matmul_precision(flags["matmul_precision"])
    torch.backends.cudnn.benchmark = flags["cudnn_benchmark"]
    torch.backends.cudnn.deterministic = flags["cudnn_deterministic"]
    torch.backends.cudnn.allow_tf32 = flags["cudnn_tf32"]
