#!/usr/bin/env bash
# A whole active-learning experiment on the built-in synthetic pool, on a CPU in minutes:
# a redundant pool (sequences of 4 similar frames), 10 % labeled at random, then
# 4 cycles of 10 % chosen by `random` and by `entropy`, 2 seeds, and the table of
# mIoU@50 and AUC@50. Run it again after a kill and it resumes where it stopped.
#
# Overridable: DATA_ROOT, OUT, METHODS, SEEDS, EPOCHS, DEVICE, ARCH. With --wait (or
# WAIT=1) it waits for another run on the same OUT instead of exiting 75.
set -euo pipefail
if [ "${1:-}" = --wait ]; then export WAIT=1; fi
source "$(dirname "${BASH_SOURCE[0]}")/lib/env.sh"
source "$REPO_ROOT/scripts/lib/al_loop.sh"

DATASET=synthetic
DATA_ROOT=${DATA_ROOT:-$REPO_ROOT/data/synthetic}
OUT=${OUT:-$REPO_ROOT/runs/demo}
METHODS=${METHODS:-random entropy}
SEEDS=${SEEDS:-0 1}
INITIAL=10% STEP=10% CYCLES=4
EPOCHS=${EPOCHS:-30}
# The tiny backbone and 96x128 images keep the demo to minutes on two CPU cores.
TRAIN_ARGS="--arch ${ARCH:-tiny} --epochs $EPOCHS --batch-size 4 --crop 96x128 --lr 0.02 --workers 0"
SELECT_ARGS="--workers 0"
EVAL_ARGS="--workers 0"

[ "${PLAN:-0}" != 0 ] || "$PYTHON" "$REPO_ROOT/scripts/make_synthetic.py" "$DATA_ROOT" --sequences 30 --frames 4 --val-images 40 \
    --height 96 --width 128 --seed 0
time run_experiment
