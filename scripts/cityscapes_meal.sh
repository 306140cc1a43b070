#!/usr/bin/env bash
# MEAL's Cityscapes setting (Sreenivasaiah et al. 2021, Table 1, frozen backbone,
# initial 32): 4x4 patches of the 2,975 training images, 32 to start and 32 per cycle
# for 14 cycles (480 patches, 1 % of the pool); the protocol is in scripts/lib/meal.sh.
# The paper's patches are 128x256, a 4x4 grid of 512x1024 images: the frames are read
# at 512x1024 (scripts/lib/meal.sh, inferred; the paper does not say it downsamples).
#
# Published mIoU at the last cycle (validation): Random 0.298, Entropy 0.325,
# MEAL 0.326, MEAL-FT 0.330.
#
#   DATA_ROOT=/data/cityscapes bash scripts/cityscapes_meal.sh
#
# DATA_ROOT is Cityscapes (leftImg8bit/, gtFine/).
# Overridable: OUT, METHODS, SEEDS, EPOCHS, LAST_EPOCHS, CYCLES, DEVICE, PRETRAINED, FULL.
# Run it again after a kill and it resumes where it stopped.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib/usage.sh"
source "$(dirname "${BASH_SOURCE[0]}")/lib/meal.sh"
run_meal cityscapes 14
