# The active-learning loop shared by every experiment script. Source it, set the
# variables below, then call run_experiment.
#
#   DATASET DATA_ROOT   dataset layout and root (required)
#   OUT                 experiment directory
#   SPLIT VAL_SPLIT     pool split and evaluation split       (train, val)
#   VAL_DATASET VAL_DATA_ROOT   where the evaluation split lives  (DATASET, DATA_ROOT)
#   METHODS SEEDS       acquisition methods and seeds          ("random entropy", "0 1 2"); a
#                       method named <m>-ssl is <m> on models trained with --ssl $SSL $SSL_ARGS,
#                       uniform5-entropy is entropy on every 5th frame (the study's Uniform(@5)+Entropy)
#   INITIAL STEP        initial random budget, budget per cycle (10%, 10%); STEP= (empty)
#                       leaves it to select.py (per-image region ranking: regions x images)
#   INITIAL_METHOD      how the initial items are drawn (random; random-images for MEAL)
#   CYCLES              acquisition cycles after the initial one (4)
#   BUDGET              B of mIoU@B / AUC@B in % (default: the last budget)
#   UNIT_ARGS           unit of annotation for select.py (e.g. --unit patch --grid 4x4)
#   PRETRAINED          ImageNet backbone weights, for MEAL's map of the pool
#   POOL                JSON list of image ids: the pool is these images of SPLIT (--pool)
#   TRAIN_ARGS SELECT_ARGS EVAL_ARGS   extra flags for the three scripts
#   TRAIN_FLAGS         more train.py flags, as a bash array: each element is one word, so a
#                       path may hold spaces and quotes (TRAIN_FLAGS=(--pretrained "$PRETRAINED"))
#   SETTING             the paper setting whose published table evaluate.py prints beside ours
#   SUMMARY_ARGS        extra flags for evaluate.py --experiment (e.g. --x-axis pixels)
#   PREPARE             a command run first, under the lock (e.g. building the setting's pools)
#   FULL                1: also train and evaluate on the whole pool (OUT/_full/seed<k>), the
#                       fully supervised reference
#   WAIT                1: wait for another run on OUT to finish instead of exiting 75
#
# Layout: OUT/<method>/seed<k>/cycle<c>/{index.json, model.pt, metrics.json}. The
# initial cycle is the same random draw for every method of a seed, so it is
# trained once under OUT/_initial/seed<k> and hard-linked into each method; methods
# whose models need other training flags (bald: --mc-dropout) share their own
# initial model in a subfolder named after the flags. MEAL's UMAP map of the pool
# is fitted once per seed, next to the initial cycle (_initial/seed<k>/umap.pt).
# Every step is skipped when its output exists: running the script again resumes it.
# The *_ARGS variables are word lists, split on whitespace on purpose; every path (OUT,
# DATA_ROOT, POOL, PRETRAINED and those made of them) reaches the scripts as one word.
#
# For cron: one run per OUT at a time (OUT/.lock; a second one exits 75 at once, or
# waits with WAIT=1), and everything printed is also appended to OUT/log.txt. Call
# run_experiment as a plain command (not after `if`, `||` or `&&`, where bash turns
# off set -e): a failing step stops the run and is its exit code.

run_step() {  # run_step OUTPUT SCRIPT ARGS...: run a script unless OUTPUT exists
    local output=$1 script=$2
    shift 2
    if [ -e "$output" ]; then
        echo "skip $script: $output exists"
        return 0
    fi
    echo "run $script -> $output"
    "$PYTHON" "$REPO_ROOT/$script" "$@"
}

link_files() {  # link_files FROM_DIR TO_DIR FILES...: share finished files without copying them
    local from=$1 to=$2 name
    shift 2
    mkdir -p "$to"
    for name in "$@"; do
        [ -e "$to/$name" ] || ln "$from/$name" "$to/$name" 2>/dev/null \
            || { cp "$from/$name" "$to/.$name.tmp" && mv "$to/.$name.tmp" "$to/$name"; }
    done
}

acquisition_of() {  # acquisition_of METHOD: the select.py --method behind an experiment's method name
    case $1 in
        *-ssl) acquisition_of "${1%-ssl}" ;;
        uniform5-entropy) echo entropy ;;
        *) echo "$1" ;;
    esac
}

method_train_args() {  # method_train_args METHOD: the train.py flags a method needs in its models
    # BALD samples dropout at selection; the study trains every other method without it.
    case $1 in
        *-ssl) echo "--ssl ${SSL:-s4gan} ${SSL_ARGS:-} $(method_train_args "${1%-ssl}")" ;;
        bald) echo "--mc-dropout" ;;
    esac
}

# The two below set an array of the caller (run_cycles' local) rather than echo a word list,
# which would split the paths in it; expand it as ${name[@]+"${name[@]}"}, which bash 3.2's
# set -u accepts when it is empty.
method_select_args() {  # method_select_args METHOD SEED: select_flags=(the select.py flags a method needs)
    case $1 in
        *-ssl) method_select_args "${1%-ssl}" "$2" ;;
        meal) select_flags=(--umap-cache "$OUT/_initial/seed$2/umap.pt" ${PRETRAINED:+--pretrained "$PRETRAINED"}) ;;
        uniform5-entropy) select_flags=(--prefilter uniform@5) ;;
        *) select_flags=() ;;
    esac
}

teacher_args() {  # teacher_args METHOD PREVIOUS_CYCLE_DIR: teacher_flags=(self-training's teacher: the previous cycle's model)
    teacher_flags=()
    case $1 in
        *-ssl) [ "${SSL:-s4gan}" != selftrain ] || teacher_flags=(--teacher "$2/model.pt") ;;
    esac
}

train_and_evaluate() {  # train_and_evaluate CYCLE_DIR SEED [TRAIN FLAGS...]
    local dir=$1 seed=$2
    shift 2
    # shellcheck disable=SC2086  # *_ARGS are word lists on purpose
    run_step "$dir/model.pt" train.py "${DATA_FLAGS[@]}" \
        --index "$dir/index.json" --out "$dir/model.pt" --resume --seed "$seed" ${DEVICE:+--device "$DEVICE"} \
        ${TRAIN_FLAGS[@]+"${TRAIN_FLAGS[@]}"} $TRAIN_ARGS "$@"
    # shellcheck disable=SC2086
    run_step "$dir/metrics.json" evaluate.py --checkpoint "$dir/model.pt" --dataset "$VAL_DATASET" \
        --data-root "$VAL_DATA_ROOT" --split "$VAL_SPLIT" --out "$dir/metrics.json" ${DEVICE:+--device "$DEVICE"} \
        $EVAL_ARGS
}

lock_experiment() {  # hold OUT/.lock until this shell and its children exit; exit 75 if another run holds it
    # flock(1) is missing on macOS, and a POSIX lock (fcntl/lockf) dies with the process
    # that took it; a flock(2) lock belongs to the open file description, so a helper
    # that locks the fd it inherits from this shell leaves it held when it exits. The
    # kernel drops it once the last holder of the fd exits, SIGKILL included; the steps
    # inherit the fd, so a step that outlives a killed shell keeps OUT locked.
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

run_experiment() {
    : "${DATASET:?set DATASET}" "${DATA_ROOT:?set DATA_ROOT}" "${OUT:?set OUT}"
    mkdir -p "$OUT"
    (
        set -euo pipefail  # a step's failure ends the run, and its exit code gets through tee
        lock_experiment
        # Python block-buffers a pipe: unbuffered, the log keeps the order of events and
        # loses nothing when a run is killed.
        export PYTHONUNBUFFERED=1
        { echo "== $(date '+%Y-%m-%d %H:%M:%S') $0 (pid $$)"; ${PREPARE:-}; run_cycles; } 2>&1 | tee -a "$OUT/log.txt"
    )
}

run_cycles() {
    SPLIT=${SPLIT:-train} VAL_SPLIT=${VAL_SPLIT:-val} VAL_DATASET=${VAL_DATASET:-$DATASET}
    VAL_DATA_ROOT=${VAL_DATA_ROOT:-$DATA_ROOT}
    METHODS=${METHODS:-random entropy} SEEDS=${SEEDS:-0 1 2}
    INITIAL=${INITIAL:-10%} STEP=${STEP-10%} CYCLES=${CYCLES:-4} INITIAL_METHOD=${INITIAL_METHOD:-random}
    UNIT_ARGS=${UNIT_ARGS:-} TRAIN_ARGS=${TRAIN_ARGS:-} SELECT_ARGS=${SELECT_ARGS:-} EVAL_ARGS=${EVAL_ARGS:-}
    DATA_FLAGS=(--dataset "$DATASET" --data-root "$DATA_ROOT" --split "$SPLIT" ${POOL:+--pool "$POOL"})
    local seed method cycle dir previous initial variant extra select_flags teacher_flags
    for seed in $SEEDS; do
        initial="$OUT/_initial/seed$seed"
        mkdir -p "$initial"
        # shellcheck disable=SC2086
        run_step "$initial/index.json" select.py "${DATA_FLAGS[@]}" \
            --method "$INITIAL_METHOD" --budget "$INITIAL" --seed "$seed" --out "$initial/index.json" $UNIT_ARGS
        [ "${FULL:-0}" = 0 ] || train_full "$seed"
        for method in $METHODS; do
            extra=$(method_train_args "$method")
            variant=$initial${extra:+/$(echo "$extra" | tr -d ' -')}  # --mc-dropout -> _initial/seed<k>/mcdropout
            [ "$variant" = "$initial" ] || link_files "$initial" "$variant" index.json
            # shellcheck disable=SC2086
            train_and_evaluate "$variant" "$seed" $extra
            link_files "$variant" "$OUT/$method/seed$seed/cycle0" index.json model.pt metrics.json
            method_select_args "$method" "$seed"
            for ((cycle = 1; cycle <= CYCLES; cycle++)); do
                dir="$OUT/$method/seed$seed/cycle$cycle"
                previous="$OUT/$method/seed$seed/cycle$((cycle - 1))"
                mkdir -p "$dir"
                # shellcheck disable=SC2086
                run_step "$dir/index.json" select.py "${DATA_FLAGS[@]}" \
                    --method "$(acquisition_of "$method")" --index "$previous/index.json" --checkpoint "$previous/model.pt" \
                    ${STEP:+--budget "$STEP"} --seed "$seed" --out "$dir/index.json" --scores-out "$dir/scores.json" \
                    ${DEVICE:+--device "$DEVICE"} $UNIT_ARGS $SELECT_ARGS ${select_flags[@]+"${select_flags[@]}"}
                teacher_args "$method" "$previous"
                # shellcheck disable=SC2086
                train_and_evaluate "$dir" "$seed" $extra ${teacher_flags[@]+"${teacher_flags[@]}"}
            done
        done
    done
    # shellcheck disable=SC2086
    "$PYTHON" "$REPO_ROOT/evaluate.py" --experiment "$OUT" ${BUDGET:+--budget "$BUDGET"} ${SETTING:+--setting "$SETTING"} \
        ${SUMMARY_ARGS:-}
}

train_full() {  # train_full SEED: the fully supervised reference, every image of the pool labeled whole
    local dir="$OUT/_full/seed$1"
    mkdir -p "$dir"
    run_step "$dir/index.json" select.py "${DATA_FLAGS[@]}" --method random --budget 100% --seed "$1" \
        --out "$dir/index.json"
    train_and_evaluate "$dir" "$1"
}
