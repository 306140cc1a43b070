#!/usr/bin/env bash
# The study's PASCAL VOC 2012, 2-2 setting ("Best Practices in Active Learning for
# Semantic Segmentation"): 2 % of the 10,582 train_aug images at random, then 2 % per
# cycle up to 10 %; mIoU@B and AUC@B on the validation split, at the budgets and
# beside the numbers of the published table.
#
#   DATA_ROOT=/data/voc bash scripts/voc_2_2.sh
#
# DATA_ROOT is the folder holding VOCdevkit/VOC2012 (with SegmentationClassAug for train_aug).
# Overridable: OUT, METHODS, SEEDS, EPOCHS, CYCLES, CROP, DEVICE, ARCH, OUTPUT_STRIDE, PRETRAINED, WARM_START, FULL
# (scripts/lib/study.sh, scripts/lib/al_loop.sh). Run it again after a kill and it resumes.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib/usage.sh"
source "$(dirname "${BASH_SOURCE[0]}")/lib/study.sh"
SPLIT=train_aug
run_study voc 2% 2% 4
