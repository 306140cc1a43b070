#!/usr/bin/env bash
# The study's A2D2-3K task ("Best Practices in Active Learning for Semantic
# Segmentation", Table 5): pick 3,000 frames of A2D2's training sequences in 3 cycles
# of 1,000 (the first at random), with Random, Entropy and Coreset (and their -ssl
# variants), against the time-based baselines Uniform (evenly spaced frames) and
# Uniform(@5)+Entropy (entropy among every 5th frame); mIoU and AUC at the last budget.
#
#   DATA_ROOT=/data/a2d2 bash scripts/a2d2_3k.sh
#
# DATA_ROOT holds camera_lidar_semantic/.
# Overridable: OUT, METHODS, SEEDS, EPOCHS, CYCLES, CROP, DEVICE, ARCH, OUTPUT_STRIDE, PRETRAINED, WARM_START, FULL
# (scripts/lib/study.sh, scripts/lib/al_loop.sh). Run it again after a kill and it resumes.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib/usage.sh"
source "$(dirname "${BASH_SOURCE[0]}")/lib/study.sh"
METHODS=${METHODS:-random entropy coreset random-ssl entropy-ssl coreset-ssl uniform uniform5-entropy}
run_study a2d2 1000 1000 2
