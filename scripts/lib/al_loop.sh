# The active-learning loop shared by every experiment script. Source it, set the
# variables below, then call run_experiment. The variables are the configuration;
# lib/experiment.py plans the steps from them and lib/steps.py runs them.
#
#   DATASET DATA_ROOT   dataset layout and root (required)
#   OUT                 experiment directory
#   SPLIT VAL_SPLIT     pool split and evaluation split       (train, val)
#   VAL_DATASET VAL_DATA_ROOT   where the evaluation split lives  (DATASET, DATA_ROOT)
#   METHODS SEEDS       acquisition methods and seeds          ("random entropy", "0 1 2"); a
#                       method named <m>-ssl is <m> on models trained with --ssl $SSL $SSL_ARGS,
#                       uniform5-entropy is entropy on every 5th frame (the study's Uniform(@5)+Entropy)
#   SSL SSL_ARGS        the -ssl methods' training             (s4gan, none)
#   SSL_TEACHER         the teacher of an -ssl method's model whose --ssl mode learns from one
#                       (selftrain): previous, the previous cycle's model (none in the initial
#                       cycle), or supervised, a model of the cycle's own labels trained first with
#                       TRAIN_ARGS TEACHER_ARGS in cycle<c>/teacher (the initial one in
#                       _initial/seed<k>), as S4AL+ (previous)
#   TEACHER_ARGS        more train.py flags of those supervised teachers (none)
#   INITIAL STEP        initial random budget, budget per cycle (10%, 10%); STEP= (empty)
#                       leaves it to select.py (per-image region ranking: regions x images)
#   INITIAL_METHOD      how the initial items are drawn (random; random-images: whole images, for MEAL
#                       and S4AL+)
#   CYCLES              acquisition cycles after the initial one (4)
#   LAST_TRAIN_ARGS     more train.py flags of the last cycle's models (teachers included), after all
#                       others, e.g. "--epochs 150" (none; with CYCLES=0 there is no last cycle). With
#                       them CYCLES is a setting (see ACCEPT_CHANGES): more cycles would leave a model
#                       trained as the last one in the middle
#   WARM_START          1: the models of cycles >= 1 of the methods without -ssl start ASPP and
#                       decoder from the previous cycle's model (train.py --init-head-from), the
#                       backbone from --pretrained, as the study's code; the initial cycle and the
#                       -ssl methods train afresh (0; the study's scripts: 1)
#   BUDGET              B of mIoU@B / AUC@B in % (default: the last budget)
#   UNIT_ARGS           unit of annotation for select.py (e.g. --unit patch --grid 4x4)
#   PRETRAINED          ImageNet backbone weights for MEAL's map of the pool
#   POOL                JSON list of image ids: the pool is these images of SPLIT (--pool)
#   DEVICE              --device of train.py, evaluate.py and the selections with a model
#   CACHE_DIR           --cache-dir of those steps: images and masks kept decoded at the resolution they
#                       are read at (.npy), shared by the steps and by experiments on the same data
#   TRAIN_ARGS SELECT_ARGS EVAL_ARGS   extra flags for the three scripts, split into words as
#                       the shell would (quote a path with spaces inside: TRAIN_ARGS="--teacher 'a b.pt'")
#   TRAIN_FLAGS         more train.py flags, as a bash array of words
#   SETTING             the paper setting whose published table evaluate.py prints beside ours
#   SUMMARY_ARGS        extra flags for evaluate.py --experiment (e.g. --x-axis pixels)
#   A2D2_ROOT A2D2_POOLS   build the study's redundant A2D2 pools from A2D2_ROOT into A2D2_POOLS first
#   FULL                1: also train and evaluate on the whole pool (OUT/_full/seed<k>), the
#                       fully supervised reference
#   ACCEPT_CHANGES      1: go on with settings other than those recorded in OUT/experiment.json by the
#                       first run (the variables that shape results; more METHODS, SEEDS or CYCLES are
#                       no change), keeping the finished steps; without it such a run stops at once
#   SEPARATE_PROCESSES  1: every step in a Python of its own (by default the steps share one)
#   NPROC               N > 1: the steps that run a model (train.py, select.py, evaluate.py
#                       --checkpoint) run under `torchrun --nproc-per-node N`, one process per GPU
#                       (lib/distributed.py); train.py steps with an --ssl mode or --contrastive head
#                       run in one process. A setting: N splits each training batch
#   LAUNCHER            the command that starts those steps instead, as words before the script's
#                       path, and returns when all its processes are done (e.g. "torchrun
#                       --nproc-per-node 8 --master-port 29600"); a setting, as NPROC
#   WAIT                1: wait for another run on OUT to finish instead of exiting 75
#   PLAN                1: print the steps, marking those done, and exit (no lock; no step runs)
#
# Layout: OUT/<method>/seed<k>/cycle<c>/{index.json, model.pt, metrics.json}; the initial
# cycle is one random draw per seed, trained once under OUT/_initial/seed<k> and hard-linked
# into each method (lib/experiment.py). Every step is skipped when its output exists:
# running the script again resumes it.
#
# For cron: one run per OUT at a time (OUT/.lock; a second one exits 75 at once, or
# waits with WAIT=1), and everything printed is also appended to OUT/log.txt. Call
# run_experiment as a plain command (not after `if`, `||` or `&&`, where bash turns
# off set -e): a failing step stops the run and is its exit code.

# The configuration, handed to scripts/run_experiment.py in its environment.
CONFIG_VARIABLES="DATASET DATA_ROOT OUT SPLIT VAL_SPLIT VAL_DATASET VAL_DATA_ROOT METHODS SEEDS SSL SSL_ARGS
    SSL_TEACHER TEACHER_ARGS LAST_TRAIN_ARGS WARM_START INITIAL STEP INITIAL_METHOD CYCLES BUDGET UNIT_ARGS
    PRETRAINED POOL DEVICE CACHE_DIR TRAIN_ARGS SELECT_ARGS EVAL_ARGS SETTING SUMMARY_ARGS A2D2_ROOT A2D2_POOLS FULL
    ACCEPT_CHANGES NPROC LAUNCHER"

lock_experiment() {  # hold OUT/.lock until this shell and its children exit; exit 75 if another run holds it
    # flock(1) is missing on macOS, and a POSIX lock (fcntl/lockf) dies with the process
    # that took it; a flock(2) lock belongs to the open file description, so a helper
    # that locks the fd it inherits from this shell leaves it held when it exits. The
    # kernel drops it once the last holder of the fd exits, SIGKILL included; the steps
    # inherit the fd (lib/steps.py passes it to steps in processes of their own), so a step
    # that outlives a killed shell keeps OUT locked.
    # fd 9 rather than {fd}: macOS's /bin/bash 3.2 lacks the latter.
    exec 9>>"$OUT/.lock"
    "$PYTHON" -c '
import fcntl, os, sys, time
out, pid, wait = sys.argv[1], sys.argv[2], sys.argv[3] not in ("", "0")
try:
    fcntl.flock(9, fcntl.LOCK_EX | fcntl.LOCK_NB)
except BlockingIOError:
    with open(os.path.join(out, ".lock")) as lock:
        holder = lock.read().strip() or "starting"
    if not wait:
        print(f"error: {out} is used by another run ({holder}); WAIT=1 or --wait waits for it", file=sys.stderr)
        sys.exit(75)
    print(f"waiting for {out}: used by another run ({holder})", flush=True)
    fcntl.flock(9, fcntl.LOCK_EX)
stamp = time.strftime("%Y-%m-%d %H:%M:%S")
os.ftruncate(9, 0)
os.write(9, f"pid {pid} since {stamp}\n".encode())
' "$OUT" "$$" "${WAIT:-}"
}

run_plan() {  # run_plan [FLAGS...]: scripts/run_experiment.py on this configuration, TRAIN_FLAGS after --
    # shellcheck disable=SC2086  # a list of names
    export $CONFIG_VARIABLES
    "$PYTHON" "$REPO_ROOT/scripts/run_experiment.py" "$@" -- ${TRAIN_FLAGS[@]+"${TRAIN_FLAGS[@]}"}
}

run_experiment() {
    : "${DATASET:?set DATASET}" "${DATA_ROOT:?set DATA_ROOT}" "${OUT:?set OUT}"
    if [ "${PLAN:-0}" != 0 ]; then
        run_plan --plan
        return
    fi
    mkdir -p "$OUT"
    (
        set -euo pipefail  # a step's failure ends the run, and its exit code gets through tee
        lock_experiment
        # Python block-buffers a pipe: unbuffered, the log keeps the order of events and
        # loses nothing when a run is killed.
        export PYTHONUNBUFFERED=1
        local separate=()
        [ "${SEPARATE_PROCESSES:-0}" = 0 ] || separate=(--separate-processes)
        { echo "== $(date '+%Y-%m-%d %H:%M:%S') $0 (pid $$)"; run_plan ${separate[@]+"${separate[@]}"}; } 2>&1 \
            | tee -a "$OUT/log.txt"
    )
}
