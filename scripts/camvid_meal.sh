#!/usr/bin/env bash
# MEAL's CamVid setting (Sreenivasaiah et al. 2021, Table 1, frozen backbone): 4x4
# patches of the 367 training images, 32 to start and 32 per cycle for 8 cycles (288
# patches, about 5 % of the pool); the protocol is in scripts/lib/meal.sh.
#
# Published mIoU at the last cycle (validation): Random 0.509, Entropy 0.516,
# MEAL 0.558, MEAL-FT 0.573.
#
#   DATA_ROOT=/data/camvid bash scripts/camvid_meal.sh
#
# DATA_ROOT is CamVid in the SegNet layout (train/, trainannot/, val/, valannot/).
# Overridable: OUT, METHODS, SEEDS, EPOCHS, LAST_EPOCHS, CYCLES, DEVICE, PRETRAINED (ImageNet
# MobileNetV2 weights: a torchvision state-dict file, or 'imagenet' for the torch
# hub cache), FULL. Run it again after a kill and it resumes where it stopped.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib/usage.sh"
source "$(dirname "${BASH_SOURCE[0]}")/lib/meal.sh"
run_meal camvid 8
