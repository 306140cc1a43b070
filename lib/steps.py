"""Run an experiment's planned steps (lib.experiment.plan): each one whose output is missing.

By default every step runs in this process by calling its script's `main(argv)`: torch
is imported and CUDA set up once for the whole experiment instead of once per step.
A step starts from the global state a fresh process has (unseeded generators, thread
count, backend flags) and leaves nothing behind (DataLoader workers, cached GPU
memory), so its outputs are those of `python <script> <argv>`, which
`separate_processes=True` runs instead.
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
import tempfile
import warnings
from pathlib import Path

import numpy as np
import torch

from lib.errors import EXIT_USER_ERROR, UserError
from lib.experiment import Link

REPO_ROOT = Path(__file__).resolve().parent.parent


def run_plan(steps, separate_processes=False):
    """Run `steps` in order; the exit code of the first that fails, else 0."""
    for step in steps:
        if isinstance(step, Link):
            if not _all_exist(step.needed_for):
                link_files(Path(step.source), Path(step.target), step.names)
            continue
        if step.output is not None and os.path.exists(step.output):
            print(f"skip {step.script}: {step.output} exists")
            continue
        if step.needed_for and _all_exist(step.needed_for):
            print(f"skip {step.script}: {step.output} is not needed, {Path(step.needed_for[0]).parent} is done")
            continue
        if step.output is not None:
            print(f"run {step.script} -> {step.output}")
            Path(step.output).parent.mkdir(parents=True, exist_ok=True)
        code = run_separately(step) if separate_processes else run_here(step)
        if code:
            return code
    return 0


def _all_exist(paths):
    return bool(paths) and all(os.path.exists(path) for path in paths)


def link_files(source, target, names):
    """Share finished files without copying them; a file system without hard links gets atomic copies."""
    target.mkdir(parents=True, exist_ok=True)
    for name in names:
        if (target / name).exists():
            continue
        try:
            os.link(source / name, target / name)
        except OSError:
            handle, temp = tempfile.mkstemp(prefix=f".{name}.", suffix=".tmp", dir=target)
            os.close(handle)
            shutil.copyfile(source / name, temp)
            os.replace(temp, target / name)


def run_separately(step):
    return subprocess.run([sys.executable, str(REPO_ROOT / step.script), *step.argv], check=False).returncode


def run_here(step):
    """`main(argv)` of the step's script, as `run_cli` would run it: a UserError is one `error:` line."""
    main = _script_main(step.script)
    with fresh_process_state():
        try:
            main(list(step.argv))
        except UserError as err:
            print(f"error: {err}", file=sys.stderr)
            return EXIT_USER_ERROR
        except SystemExit as exit_:  # argparse's usage errors
            return exit_.code if isinstance(exit_.code, int) else 1
    return 0


_MAINS = {}


def _script_main(script):
    """The main function of a script of the repository, imported once under a name that is not the standard
    library's (select.py)."""
    if script not in _MAINS:
        path = REPO_ROOT / script
        spec = importlib.util.spec_from_file_location(f"al_seg_script_{path.stem}", path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        _MAINS[script] = module.main
    return _MAINS[script]


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
