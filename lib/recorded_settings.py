"""An experiment's settings, recorded in OUT/experiment.json by its first run and checked by every later one.

Every step is skipped when its output exists, so a re-run with other settings (say
--epochs 20 after 10) would skip the finished steps, train the rest differently and
print one table of both. The variables that shape results must therefore stay what
they were, unless the user accepts the change (ACCEPT_CHANGES=1). Extending an
experiment is not a change: more METHODS, SEEDS or CYCLES add curves and points
without touching the finished ones, and BUDGET, SETTING and SUMMARY_ARGS only
choose what the table shows; but with LAST_TRAIN_ARGS, more CYCLES would leave a
cycle that was trained as the last one in the middle of the curve, so CYCLES is a
setting then. Flags of where and how fast a step runs (RUNTIME_FLAGS,
DEVICE, CACHE_DIR) are not settings either; NPROC and LAUNCHER are, as the processes of torchrun
split each training batch, and BatchNorm sees their shares.
"""
import os
import shlex
from dataclasses import fields

from lib.errors import UserError
from lib.experiment import Config
from lib.fileio import read_json, write_json

# The Config fields that shape results; each is set by the variable of its name in capitals.
SETTINGS = ("dataset", "data_root", "split", "pool", "val_dataset", "val_data_root", "val_split", "initial",
            "initial_method", "step", "unit_args", "train_args", "select_args", "eval_args", "ssl", "ssl_args",
            "pretrained", "nproc", "launcher")
# Settings added after experiments were first recorded: recorded only when not at their default, which is what an
# experiment did before them, so that a record without one reads as that default (and records stay as they were).
LATER_SETTINGS = ("ssl_teacher", "teacher_args", "last_train_args", "warm_start")
# Flags that never change a step's outputs (--threads: in the last bits on the CPU, as another machine would),
# with the number of words they take after them.
RUNTIME_FLAGS = {"--device": 1, "-j": 1, "--workers": 1, "--threads": 1, "--cache-dir": 1, "--log-interval": 1}
RECORD = "experiment.json"


def settings_of(config):
    """{variable: value} of the settings that shape the results, word lists without their runtime flags."""
    settings = {field.upper(): _recorded(getattr(config, field)) for field in SETTINGS + LATER_SETTINGS}
    for name, default in LATER_DEFAULTS.items():
        if settings[name] == default:
            del settings[name]
    if config.last_train_args:
        settings["CYCLES"] = config.cycles
    return settings


def _recorded(value):
    if isinstance(value, bool):  # as the variable is set (WARM_START=1), so that a refusal names what to set
        return str(int(value))
    return shlex.join(without_runtime_flags(value)) if isinstance(value, tuple) else value


def without_runtime_flags(words):
    kept, skip = [], 0
    for word in words:
        if skip:
            skip -= 1
        elif word in RUNTIME_FLAGS:
            skip = RUNTIME_FLAGS[word]
        elif word.split("=", 1)[0] not in RUNTIME_FLAGS:  # --workers=0
            kept.append(word)
    return kept


LATER_DEFAULTS = {field.name.upper(): _recorded(field.default) for field in fields(Config)
                  if field.name in LATER_SETTINGS}


def check_settings(config, accept_changes):
    """Record the settings at the first run; refuse other ones later, unless `accept_changes` records them."""
    path = os.path.join(config.out, RECORD)
    settings = settings_of(config)
    if os.path.exists(path):
        recorded = read_json(path, "experiment record")
        if not isinstance(recorded, dict):
            raise UserError(f"{path}: not an experiment record (a JSON object of settings); delete it to record "
                            f"the current settings")
        current, recorded = {**LATER_DEFAULTS, **settings}, {**LATER_DEFAULTS, **recorded}
        changed = [name for name in current if recorded.get(name, current[name]) != current[name]]
        if not changed:
            return
        if not accept_changes:
            shown = "; ".join(f"{name} was {recorded[name]!r}, is {current[name]!r}" for name in changed)
            raise UserError(f"{config.out}: this experiment was run with other settings ({shown}); use another OUT "
                            f"for a new experiment, or ACCEPT_CHANGES=1 to go on with these (finished steps are kept)")
        print(f"{config.out}: settings changed ({', '.join(changed)}), accepted: finished steps are kept")
    os.makedirs(config.out, exist_ok=True)
    write_json(path, settings)
