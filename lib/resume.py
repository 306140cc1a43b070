"""train.py --resume: the .resume file a killed run left, checked to belong to this very run.

A .resume file is a checkpoint (lib.checkpoint) written after each epoch but the last, with the
--ssl mode's state; the run that finishes removes it.
"""
import contextlib

from lib.checkpoint import load_checkpoint
from lib.errors import UserError, describe_error
from lib.fileio import is_number

# Flags that do not change the result (--threads: in the last bits on the CPU, as another machine would): a
# resumed run may differ in them.
RESUME_NEUTRAL = {"resume", "workers", "threads", "log_interval", "cache_dir"}


def as_train_args(values):
    """Flags as a checkpoint records them (JSON-like: tuples become lists)."""
    return {k: list(v) if isinstance(v, tuple) else v for k, v in values.items()}


def resume_state(path, train_args, index_sha256, defaults):
    """The checkpoint at `path` when it belongs to this very run (the same `train_args` but RESUME_NEUTRAL, on an
    index of `index_sha256`), else a UserError. `defaults`: {flag: default}, what a flag the file predates did."""
    checkpoint = load_checkpoint(path)
    if not (isinstance(checkpoint.get("train_args"), dict) and isinstance(checkpoint.get("epoch"), int)
            and isinstance(checkpoint["index"].get("sha256"), str)):
        raise UserError(f"{path}: damaged checkpoint: no train_args, epoch or index sha256 to resume from; "
                        f"delete it to start over")
    recorded = as_train_args({**{k: defaults[k] for k in train_args}, **checkpoint["train_args"]})
    saved = {k: v for k, v in recorded.items() if k not in RESUME_NEUTRAL}
    wanted = {k: v for k, v in train_args.items() if k not in RESUME_NEUTRAL}
    changed = sorted(k for k in saved.keys() | wanted.keys() if saved.get(k) != wanted.get(k))
    if changed:
        raise UserError(f"{path}: was started with other settings ({', '.join(changed)}); delete it to start over")
    if checkpoint["index"]["sha256"] != index_sha256:
        raise UserError(f"{path}: was started on another version of {train_args['index']}; delete it to start over")
    return checkpoint


@contextlib.contextmanager
def resume_errors(path):
    """Loading a .resume file's states: one that does not fit this run (damaged, edited) is a UserError."""
    try:
        yield
    except (KeyError, RuntimeError, ValueError, TypeError) as err:
        raise UserError(f"{path}: cannot resume from it ({describe_error(err)}); delete it to start over") from None


def earlier_progress(resumed):
    """{done, items, elapsed} of the steps before a resume, which count too; zeros for a fresh run, or a .resume
    file of a version that did not record them (it counts from the resume on)."""
    recorded = (resumed or {}).get("progress")
    if isinstance(recorded, dict) and all(is_number(recorded.get(key)) for key in ("done", "items", "seconds")):
        return {"done": int(recorded["done"]), "items": int(recorded["items"]), "elapsed": float(recorded["seconds"])}
    return {"done": 0, "items": 0, "elapsed": 0.0}
