#!/usr/bin/env bash
# MEAL's CamVid setting (Sreenivasaiah et al. 2021, Table 1, frozen backbone): 4x4
# patches of the 367 training images, 2 random images (32 patches) to start, then 32
# patches per cycle for 8 cycles (288 patches, about 5 % of the pool); MEAL and
# MEAL-FT take the 200 most uncertain patches and cluster their UMAP embedding.
# DeepLabv3+ MobileNetV2 with the ImageNet backbone frozen, Adam 1e-3 without
# schedule or weight decay, batch 8, 25 epochs per cycle, retrained from scratch,
# no augmentation; mIoU on the validation split.
#
# Published mIoU at the last cycle (validation): Random 0.509, Entropy 0.516,
# MEAL 0.558, MEAL-FT 0.573.
#
#   DATA_ROOT=/data/camvid bash scripts/camvid_meal.sh
#
# DATA_ROOT is CamVid in the SegNet layout (train/, trainannot/, val/, valannot/).
# Overridable: OUT, METHODS, SEEDS, EPOCHS, CYCLES, CROP, DEVICE, PRETRAINED (ImageNet
# MobileNetV2 weights: a torchvision state-dict file, or 'imagenet' for the torch
# hub cache). Run it again after a kill and it resumes where it stopped.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib/usage.sh"
source "$(dirname "${BASH_SOURCE[0]}")/lib/env.sh"
source "$REPO_ROOT/scripts/lib/al_loop.sh"

DATASET=camvid
OUT=${OUT:-$REPO_ROOT/runs/camvid_meal}
METHODS=${METHODS:-random entropy meal meal-ft}
SEEDS=${SEEDS:-0 1 2}
PRETRAINED=${PRETRAINED:-imagenet}
UNIT_ARGS="--unit patch --grid 4x4"
INITIAL_METHOD=random-images INITIAL=32 STEP=32 CYCLES=${CYCLES:-8}
TRAIN_ARGS="--arch mobilenet_v2 --pretrained $PRETRAINED --freeze-backbone --optimizer adam --lr 1e-3
    --weight-decay 0 --lr-schedule constant --epochs ${EPOCHS:-25} --batch-size 8 --crop ${CROP:-360x480} --no-flip"
SELECT_ARGS="--informative 200"

run_experiment
