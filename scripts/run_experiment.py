"""Run the active-learning experiment configured by the environment (scripts/lib/al_loop.sh).

    DATASET=synthetic DATA_ROOT=data/synthetic OUT=runs/x python scripts/run_experiment.py
    ... python scripts/run_experiment.py --plan     # print the steps and whether each is done
    ... python scripts/run_experiment.py -- --pretrained "/my weights.pth"   # TRAIN_FLAGS, one word each

The shell scripts call it under their lock, with their log; every step whose output
exists is skipped, so running it again resumes a killed experiment. Its settings are
recorded in OUT/experiment.json, and a later run with other ones stops unless
ACCEPT_CHANGES=1 (lib/recorded_settings.py).
"""
import os
import shlex
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from lib.cli import script_parser  # noqa: E402
from lib.errors import run_cli  # noqa: E402
from lib.experiment import Config, Link, plan  # noqa: E402
from lib.recorded_settings import check_settings  # noqa: E402
from lib.steps import run_plan, why_done  # noqa: E402


def get_args_parser():
    parser = script_parser(__doc__)
    parser.add_argument("--plan", action="store_true", help="print the steps, marking those done, and exit")
    parser.add_argument("--separate-processes", action="store_true",
                        help="run every step in a new Python process, as `python <script> ...` (by default they "
                             "share this one: torch is imported and the GPU set up once)")
    parser.add_argument("train_flags", nargs="*", metavar="TRAIN_FLAG",
                        help="more train.py flags after --, each one word (a path with spaces stays whole)")
    return parser


def describe(step, launcher=()):
    """One line of --plan: `done` or `todo`, then the step as a command line."""
    if isinstance(step, Link):
        line = f"link {', '.join(step.names)}: {shlex.quote(step.source)} -> {shlex.quote(step.target)}"
    else:
        line = shlex.join([*(launcher if step.distributed and launcher else ("python",)), step.script, *step.argv])
    return f"{'done' if why_done(step) else 'todo'} {line}"


def main(argv=None):
    args = get_args_parser().parse_args(argv)
    config = Config.from_environ(os.environ, args.train_flags)
    steps = plan(config)
    if args.plan:
        print("\n".join(describe(step, config.step_launcher) for step in steps))
        return
    check_settings(config, accept_changes=os.environ.get("ACCEPT_CHANGES", "0") not in ("", "0"))
    code = run_plan(steps, args.separate_processes, lambda step: config.layout.where(step.output, config.cycles),
                    config.step_launcher)
    if code:
        sys.exit(code)


if __name__ == "__main__":
    run_cli(main)
