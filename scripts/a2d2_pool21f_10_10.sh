#!/usr/bin/env bash
# The study's A2D2 Pool-21f (120 random frames and the 21 after each) setting, 10-10
# ("Best Practices in Active Learning for Semantic Segmentation"): the study's methods
# on a redundant pool of 2,640 frames, 10% at random then 10% per cycle up to 50 %;
# mIoU@B and AUC@B on the validation sequence 20180925_112730, at the budgets and
# beside the numbers of the published table. The pools are built once by
# scripts/make_a2d2_pools.py into POOLS (runs/a2d2_pools) and shared by the settings.
#
#   DATA_ROOT=/data/a2d2 bash scripts/a2d2_pool21f_10_10.sh
#
# DATA_ROOT holds camera_lidar_semantic/.
# Overridable: OUT, METHODS, SEEDS, EPOCHS, CYCLES, CROP, DEVICE, ARCH, OUTPUT_STRIDE, PRETRAINED, WARM_START, FULL
# (scripts/lib/study.sh, scripts/lib/al_loop.sh). Run it again after a kill and it resumes.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib/usage.sh"
source "$(dirname "${BASH_SOURCE[0]}")/lib/study.sh"
run_a2d2_pool 21f 10% 10% 4
