#!/usr/bin/env bash
# S4AL+'s CamVid setting (papers/s4al_plus.md): 30x30 regions, 10 % of the images
# labeled whole to start (as the regions tiling them), then 4 regions per image per
# cycle for 5 cycles; the protocol is in scripts/lib/s4al.sh. Curves are drawn against
# the labeled share of pixels, and the share needed for 95 % of the fully supervised
# mIoU is reported (published: 12.1 %).
#
#   DATA_ROOT=/data/camvid bash scripts/camvid_s4al.sh
#
# DATA_ROOT is CamVid in the SegNet layout (train/, trainannot/, val/, valannot/).
# Overridable: OUT, METHODS, SEEDS, EPOCHS, LAST_EPOCHS, CYCLES, CROP, DEVICE, PRETRAINED,
# FULL.
# Run it again after a kill and it resumes where it stopped.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib/usage.sh"
source "$(dirname "${BASH_SOURCE[0]}")/lib/s4al.sh"
run_s4al camvid 30 5 360x480
