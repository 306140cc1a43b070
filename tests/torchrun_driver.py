"""Run scripts' mains one after another in each process of a torchrun, for tests/test_distributed.py.

    python -m torch.distributed.run --standalone --nproc-per-node 2 tests/torchrun_driver.py STEPS.json

STEPS.json lists {"script": "train.py", "argv": [...]} in order; "stop_after_epoch": E
makes train.py stop, as a killed run, once epoch E's checkpoint is written. One launch
runs every step in one process group (gloo), joined here: torchrun's start-up is paid
once, not once per script.
"""
import json
import os
import sys
from pathlib import Path

import torch.distributed as dist

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from lib.errors import exit_code_of  # noqa: E402
from lib.steps import import_script  # noqa: E402


class Killed(Exception):
    """Raised where a kill would have stopped the run."""


def stopping_after(save_epoch, last_epoch):
    def save_then_stop(args, run, ssl, description, epoch, *rest):
        save_epoch(args, run, ssl, description, epoch, *rest)
        if epoch == last_epoch:
            if dist.is_initialized():  # every process stops here, not one process ahead into the next step
                dist.barrier()
            raise Killed

    return save_then_stop


def main(steps_file):
    dist.init_process_group("gloo")
    for step in json.loads(Path(steps_file).read_text()):
        script = import_script(step["script"])
        if "stop_after_epoch" in step:
            script.save_epoch = stopping_after(script.save_epoch, step["stop_after_epoch"])
        try:
            code = exit_code_of(script.main, step["argv"])
        except Killed:
            continue
        if code:
            sys.exit(code)
    # Every step's files are written and every process is here: leave without the interpreter's teardown, where
    # gloo's threads were seen to abort a process that had finished its work once in CI ("terminate called without
    # an active exception"; torch's teardown, pytorch/pytorch#179291), which failed the run's exit code, not a check.
    dist.barrier()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


if __name__ == "__main__":
    main(sys.argv[1])
