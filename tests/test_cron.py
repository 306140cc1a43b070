"""Cron safety of scripts/lib/al_loop.sh: one run per experiment directory, a log in it,
and a pipeline killed in a training, an evaluation and a selection that resumes to the
results of an uninterrupted run."""
import fcntl
import json
import os
import random
import re
import signal
import subprocess
import sys
import time

import pytest
import torch

from conftest import LOOP_COMMAND, REPO_ROOT, loop_env
from lib.data.synthetic import write_synthetic_pool
from lib.fileio import write_json
from lib.report_files import PLOTS_RECORD

# One method and more epochs than test_cli: fewer steps to kill, and a training long
# enough for a kill to land between its epochs.
TINY = {"METHODS": "entropy",
        "TRAIN_ARGS": "--arch tiny --epochs 10 --batch-size 2 --crop 32x48 --workers 0 --device cpu"}
LOCKED = 75
TEMP_FILE = re.compile(r"^\..+\.tmp$")  # atomic_write's .<name>.<random>.tmp, link_files' .<name>.tmp


def start_loop(pool, out, **overrides):
    """LOOP_COMMAND in a process group of its own, so that a kill takes every step with it."""
    return subprocess.Popen(LOOP_COMMAND, env=loop_env(pool, out, **TINY, **overrides), cwd=REPO_ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)


def hold_lock(pool, out):
    """A shell that takes OUT's lock as run_experiment does and keeps it until it is killed."""
    out.mkdir(exist_ok=True)
    script = f"source {REPO_ROOT}/scripts/lib/al_loop.sh && lock_experiment && echo locked && exec sleep 600"
    holder = subprocess.Popen(["bash", "-c", script], env=loop_env(pool, out), stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline() == "locked\n"
    return holder


def snapshot(folder):
    return {p.relative_to(folder): (p.stat().st_size, p.stat().st_mtime_ns) for p in folder.rglob("*")}


def log_runs(out):
    """OUT/log.txt split into runs, each the list of its lines after the header."""
    runs = re.split(r"^== \d{4}-\d\d-\d\d \d\d:\d\d:\d\d .*\n", (out / "log.txt").read_text(), flags=re.M)
    assert runs[0] == "", runs[0]
    return [run.splitlines() for run in runs[1:]]


@pytest.fixture(scope="module")
def larger_pool(tmp_path_factory):
    """synthetic_pool with 400 train and 200 val images: the tiny model selects and evaluates
    them in some 300 ms, a window a timed kill cannot overshoot on a busy machine (12 images
    took 20 ms, shorter than the test's own delays)."""
    root = tmp_path_factory.mktemp("larger")
    write_synthetic_pool(root, sequences=100, frames_per_sequence=4, val_images=200, height=32, width=48, seed=0)
    return root


@pytest.fixture(scope="module")
def uninterrupted(larger_pool, tmp_path_factory):
    """The tiny loop run once to the end: its folder, and its steps as [script, output relative
    to the folder, start, start of the work, end of the work] in seconds from the start of the run."""
    out = tmp_path_factory.mktemp("uninterrupted")
    started = time.monotonic()
    loop = start_loop(larger_pool, out)
    steps = []
    for line in loop.stdout:
        now = time.monotonic() - started
        if line.startswith("run "):
            _, script, _, output = line.split()
            steps.append([script, os.path.relpath(output, out), now, now, None])
        elif line.startswith("training "):
            steps[-1][3] = now  # the epochs begin
        elif steps and steps[-1][4] is None and ("wrote " in line or line.startswith("mIoU ")):
            steps[-1][4] = now  # the result is out; what remains is the process exiting
    stderr = loop.stderr.read()
    assert loop.wait() == 0, stderr[-3000:]
    return out, steps


def test_a_second_run_on_a_locked_directory_exits_75_at_once(synthetic_pool, tmp_path):
    out = tmp_path / "experiment"
    holder = hold_lock(synthetic_pool, out)
    try:
        before = snapshot(out)
        started = time.monotonic()
        second = start_loop(synthetic_pool, out)
        stdout, stderr = second.communicate(timeout=60)
        assert second.returncode == LOCKED and time.monotonic() - started < 20  # no step was started
        assert re.fullmatch(rf"error: {out} is used by another run \(pid {holder.pid} since [\d:\- ]+\); "
                            r"WAIT=1 or --wait waits for it\n", stderr), stderr
        assert stdout == "" and snapshot(out) == before
    finally:
        holder.kill()
        holder.wait()


@pytest.mark.slow
def test_with_wait_a_second_run_waits_then_resumes_and_appends_to_the_log(larger_pool, uninterrupted):
    out, _ = uninterrupted
    holder = hold_lock(larger_pool, out)
    try:
        second = start_loop(larger_pool, out, WAIT="1")
        holding = (out / ".lock").read_text().strip()
        assert holding.startswith(f"pid {holder.pid} since ")
        assert second.stdout.readline() == f"waiting for {out}: used by another run ({holding})\n"
        time.sleep(0.5)
        assert second.poll() is None
    finally:
        holder.kill()  # SIGKILL: the kernel drops the lock with the process
        holder.wait()
    stdout, stderr = second.communicate(timeout=120)
    assert second.returncode == 0, (stdout + stderr)[-3000:]
    first, rerun = log_runs(out)
    steps = ("select.py", "train.py", "evaluate.py") * 2  # the initial cycle, then cycle 1
    assert [line.split()[1] for line in first if line.startswith("run ")] == list(steps)
    assert [line.split()[1] for line in rerun if line.startswith("skip ")] == [f"{s}:" for s in steps]
    assert not any(line.startswith("run ") for line in rerun)
    log = (out / "log.txt").read_text()
    assert log.endswith(stdout) and stdout.startswith("== ")  # the console shows what the log gets
    assert "epoch 10/10 step" in log and "\r" not in log and "\033" not in log  # progress as plain lines


@pytest.mark.parametrize("script", sorted(p.name for p in (REPO_ROOT / "scripts").glob("*.sh")
                                         if p.name not in ("demo.sh", "test.sh")))
def test_paper_scripts_take_wait_as_first_argument(synthetic_pool, tmp_path, script):
    out = tmp_path / "experiment"
    holder = hold_lock(synthetic_pool, out)
    env = {**os.environ, "PYTHON": sys.executable, "DATA_ROOT": str(tmp_path / "data"), "OUT": str(out)}
    run = subprocess.Popen(["bash", str(REPO_ROOT / "scripts" / script), "--wait"], env=env, stdout=subprocess.PIPE,
                           stderr=subprocess.DEVNULL, text=True, start_new_session=True)
    try:
        assert run.stdout.readline().startswith(f"waiting for {out}: used by another run (pid {holder.pid} since ")
    finally:
        os.killpg(run.pid, signal.SIGKILL)
        run.wait()
        holder.kill()
        holder.wait()


def test_a_failing_step_stops_the_run_with_its_exit_code(synthetic_pool, tmp_path):
    out = tmp_path / "experiment"
    loop = start_loop(synthetic_pool, out, DATA_ROOT=str(tmp_path / "missing"))
    stdout, stderr = loop.communicate(timeout=120)
    assert loop.returncode == 2, (stdout + stderr)[-3000:]
    [run] = log_runs(out)
    assert run[0].startswith("[1/") and run[1].startswith("run select.py") and run[-1].startswith("error: ")
    assert len(run) == 3
    assert (out / "log.txt").read_text() == stdout


def test_atomic_write_killed_mid_write_leaves_the_previous_file(tmp_path):
    path = tmp_path / "model.pt"
    path.write_bytes(b"previous complete content")
    child = subprocess.Popen([sys.executable, "-c", f"""
import sys
sys.path.insert(0, {str(REPO_ROOT)!r})
from lib.fileio import atomic_write
with atomic_write({str(path)!r}) as handle:
    handle.write(b"x" * (8 << 20))
    handle.flush()
    print("writing", flush=True)
    sys.stdin.read()  # killed here, inside the block
"""], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert child.stdout.readline() == "writing\n"
    [temp] = [p for p in tmp_path.iterdir() if p != path]
    assert TEMP_FILE.match(temp.name) and temp.stat().st_size == 8 << 20  # the kill lands mid-write
    child.kill()
    child.wait()
    assert path.read_bytes() == b"previous complete content"


def test_written_files_get_the_permissions_of_the_umask(tmp_path):
    """A lab shares results: atomic_write's temp file must not keep mkstemp's owner-only 0o600."""
    before = os.umask(0o027)
    try:
        write_json(tmp_path / "index.json", {})
    finally:
        os.umask(before)
    assert (tmp_path / "index.json").stat().st_mode & 0o777 == 0o640


def wait_for_unlock(out):
    """Wait until every process of a killed run has died: the kernel then drops their lock."""
    with open(out / ".lock") as lock:
        for _ in range(600):
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return
            except BlockingIOError:
                time.sleep(0.05)
    raise AssertionError(f"{out}/.lock still held 30 s after the kill")


def kill_phase(out):
    """Where the kill landed, from the last `run` line of the killed run's log."""
    started = [line.split() for line in log_runs(out)[-1] if line.startswith("run ")]
    if not started:
        return "start"
    _, script, _, output = started[-1]
    if os.path.exists(output):
        return "summary" if script == "evaluate.py" and "cycle1" in output else "between steps"
    phase = {"select.py": "selection", "train.py": "training", "evaluate.py": "evaluation"}[script]
    if script == "train.py" and os.path.exists(f"{output}.resume"):
        phase += " after an epoch"
    return phase


@pytest.mark.slow
def test_killed_runs_resume_to_the_uninterrupted_results(larger_pool, uninterrupted, tmp_path):
    reference, steps = uninterrupted
    out = tmp_path / "killed"
    # One kill in a training (its epochs), one in an evaluation, one in the selection that
    # scores the pool with a model: each at a random point of that work as the uninterrupted
    # run timed it, counted from the line that starts it, so that the time the run took to
    # get there does not matter.
    rng = random.Random(0)
    kinds = [[step for step in steps if step[0] == "train.py"], [step for step in steps if step[0] == "evaluate.py"],
             [step for step in steps if step[0] == "select.py" and "cycle1" in step[1]]]
    # At most 80 % into the work: a kill that came after the step's end would leave its phase untested.
    targets = sorted((steps.index(step), 0.8 * rng.random()) for step in map(rng.choice, kinds))
    phases = []
    for index, fraction in targets:
        script, output, _, begin, end = steps[index]
        assert not (out / output).exists()  # each kill landed in its own step, before this one
        loop = start_loop(larger_pool, out)
        for trigger in [f"run {script} -> {out / output}"] + ["training "] * (script == "train.py"):
            assert any(line.startswith(trigger) for line in loop.stdout), loop.communicate()
        time.sleep(fraction * (end - begin))
        # Frozen, the run cannot finish while we check that it holds the lock.
        os.killpg(loop.pid, signal.SIGSTOP)
        assert loop.poll() is None
        second = start_loop(larger_pool, out)
        second.communicate(timeout=60)
        assert second.returncode == LOCKED
        os.killpg(loop.pid, signal.SIGKILL)
        loop.communicate()
        wait_for_unlock(out)
        phases.append(kill_phase(out))
        expected = {"select.py": "selection", "train.py": "training", "evaluate.py": "evaluation"}[script]
        assert phases[-1].startswith(expected), f"a kill meant for {expected} landed {phases[-1]}"
    print(f"{len(phases)} kills: {', '.join(phases)}")
    loop = start_loop(larger_pool, out)
    stdout, stderr = loop.communicate(timeout=300)
    assert loop.returncode == 0, (stdout + stderr)[-3000:]
    assert len(phases) == len(kinds) and len(log_runs(out)) == len(phases) + 1

    def outputs(folder):
        names = {p.relative_to(folder) for p in folder.rglob("*") if p.is_file()}
        return {p for p in names if not TEMP_FILE.match(p.name)} - {p.relative_to(folder) for p in (
            folder / "log.txt", folder / ".lock")}

    # A temp file of a killed write may stay behind; none became an output or a resume file.
    assert outputs(out) == outputs(reference)
    for name in outputs(reference):
        ours, theirs = out / name, reference / name
        if name.suffix == ".pt":
            a, b = torch.load(ours, weights_only=True), torch.load(theirs, weights_only=True)
            assert a["epoch"] == b["epoch"] == 10 and a["model"].keys() == b["model"].keys()
            assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"]), name
        elif name.name == "metrics.json":  # it names its checkpoint by absolute path
            a, b = json.loads(ours.read_text()), json.loads(theirs.read_text())
            assert os.path.samefile(a.pop("checkpoint"), ours.parent / "model.pt")
            b.pop("checkpoint")
            assert a == b, name
        elif name.suffix != ".png" and name.name != PLOTS_RECORD:  # the curves' title is the folder's name
            assert ours.read_bytes() == theirs.read_bytes(), name
