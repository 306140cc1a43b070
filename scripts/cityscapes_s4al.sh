#!/usr/bin/env bash
# S4AL+'s Cityscapes setting (papers/s4al_plus.md): 10 % of the images labeled whole
# to start (as the regions tiling them), then 4 regions per image per cycle for 7 cycles
# (to 15.5 %) of the paper's 43x43 regions, on frames resized to 688x688 as the paper's
# (DEAL's loader). The protocol is in scripts/lib/s4al.sh. Curves are drawn against the
# labeled share of pixels, and the share needed for 95 % of the fully supervised mIoU is
# reported (published: 15 %).
#
#   DATA_ROOT=/data/cityscapes bash scripts/cityscapes_s4al.sh
#
# DATA_ROOT is Cityscapes (leftImg8bit/, gtFine/).
# Overridable: OUT, METHODS, SEEDS, EPOCHS, LAST_EPOCHS, CYCLES, CROP, DEVICE, PRETRAINED,
# FULL.
# Run it again after a kill and it resumes where it stopped.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib/usage.sh"
source "$(dirname "${BASH_SOURCE[0]}")/lib/s4al.sh"
run_s4al cityscapes 43 7 688x688
