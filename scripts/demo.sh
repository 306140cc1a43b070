#!/usr/bin/env bash
# A whole active-learning experiment on the built-in synthetic pool, on a CPU in minutes,
# telling the story of the study "Best Practices in AL for Semantic Segmentation": on a
# redundant pool (sequences of similar frames), 10 % labeled at random, then 4 cycles of
# 10 % chosen by `random`, `entropy` (single-sample), `coreset` (batch) and `auto` (the
# study's guide: it measures the pool's redundancy and picks one of them), 2 seeds; the
# table of mIoU@50 and AUC@50, curves.png, and the selection maps of the last cycle:
# where each method's picks lie in the pool. Run it again after a kill and it resumes.
#
# Overridable: DATA_ROOT, OUT, METHODS, SEEDS, EPOCHS, DEVICE, ARCH. With --wait (or
# WAIT=1) it waits for another run on the same OUT instead of exiting 75.
set -euo pipefail
if [ "${1:-}" = --wait ]; then export WAIT=1; fi
source "$(dirname "${BASH_SOURCE[0]}")/lib/env.sh"
source "$REPO_ROOT/scripts/lib/al_loop.sh"

DATASET=synthetic
# Sequences of 12 frames (not the 4 of earlier versions: new folders, so that an older demo's stay as they were).
DATA_ROOT=${DATA_ROOT:-$REPO_ROOT/data/synthetic-12f}
OUT=${OUT:-$REPO_ROOT/runs/demo-12f}
METHODS=${METHODS:-random entropy coreset auto}
SEEDS=${SEEDS:-0 1}
INITIAL=10% STEP=10% CYCLES=4
EPOCHS=${EPOCHS:-20}
# The tiny backbone and 96x128 images keep the demo to minutes on two CPU cores.
TRAIN_ARGS="--arch ${ARCH:-tiny} --epochs $EPOCHS --batch-size 4 --crop 96x128 --lr 0.02 --workers 0"
SELECT_ARGS="--workers 0"
EVAL_ARGS="--workers 0"

[ "${PLAN:-0}" != 0 ] || "$PYTHON" "$REPO_ROOT/scripts/make_synthetic.py" "$DATA_ROOT" --sequences 10 --frames 12 --val-images 40 \
    --height 96 --width 128 --seed 0
time run_experiment
[ "${PLAN:-0}" != 0 ] && exit 0
"$PYTHON" "$REPO_ROOT/evaluate.py" --selection-maps "$OUT" --workers 0 >/dev/null
echo "selection maps of the last cycle (the pool's items placed by the initial model's features; grey"
echo "unlabeled, blue labeled before, orange the cycle's picks):"
ls "$OUT"/*/seed"${SEEDS%% *}"/cycle"$CYCLES"/selection_map.png
