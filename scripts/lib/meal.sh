# MEAL's protocol (Sreenivasaiah et al. 2021), shared by its settings' scripts: 4x4
# patches, 2 random images (32 patches) to start, then 32 patches per cycle; MEAL and
# MEAL-FT take the 200 most uncertain patches and cluster their UMAP embedding.
# DeepLabv3+ MobileNetV2 with the ImageNet backbone frozen, Adam 1e-3 without schedule
# or weight decay, batch 8, 25 epochs per cycle and 32 in the last ("for 25 epochs and
# for 32 epochs after the final acquisition step": LAST_TRAIN_ARGS, LAST_EPOCHS), retrained
# from scratch, no augmentation; mIoU on the validation split (the paper, meal.md l.197-203).
# Training samples are the acquired patches themselves ("query and acquire image patches
# rather than the complete image", l.180; 32 labelled patches to start, l.203):
# --item-crops, so cycle 0 is 4 steps of 8 patches per epoch, not 1 step of 2 images.
# It costs accuracy in our runs: cycle 0 at 360x480 scored 18.2 mIoU (3 seeds, last of 25
# epochs) against 21.9 trained on the 2 images with the loss masked outside the patches,
# and at 120x160 (30x40 patches, 2x3 backbone positions) 7.0 against 18.6; train.py warns
# of items under 4 positions a side. We keep the paper's protocol.
# "chose the best model among them" (l.197) by a criterion the paper does not state: we
# keep the epoch of the highest mIoU on VAL_SPLIT (--keep-best), the metric it reports.
# Every cycle trains a new model from the ImageNet backbone (train.py starts from
# --pretrained whatever the cycle), as the paper retrains "from scratch" (l.197).
# Resolution (the paper, meal.md l.186-188; no code was published): CamVid as on disk,
# 360x480, 16 patches of 90x120. Cityscapes at 512x1024, inferred: the paper's 16
# patches of 128x256 tile a 512x1024 frame, though it calls its frames 2048x1024 and
# never says it downsamples them; the patches are placed in those pixels (UNIT_ARGS).
# The evaluation resolution is not stated: the training one.
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
source "$REPO_ROOT/scripts/lib/al_loop.sh"

run_meal() {  # run_meal DATASET CYCLES
    DATASET=$1
    SETTING=$(basename "$0" .sh)
    OUT=${OUT:-$REPO_ROOT/runs/$SETTING}
    METHODS=${METHODS:-random entropy meal meal-ft}
    SEEDS=${SEEDS:-0 1 2}
    PRETRAINED=${PRETRAINED:-imagenet}
    TRAIN_FLAGS=(--pretrained "$PRETRAINED")  # an array: a path with spaces stays one word
    local resolution=
    [ "$DATASET" != cityscapes ] || resolution="--resize 512x1024"
    UNIT_ARGS="--unit patch --grid 4x4 $resolution"
    INITIAL_METHOD=random-images INITIAL=32 STEP=32 CYCLES=${CYCLES:-$2}
    TRAIN_ARGS="--arch mobilenet_v2 --freeze-backbone --optimizer adam --lr 1e-3
        --weight-decay 0 --lr-schedule constant --epochs ${EPOCHS:-25} --batch-size 8 --item-crops --no-flip"
    TRAIN_ARGS+=" $resolution"
    LAST_TRAIN_ARGS="--epochs ${LAST_EPOCHS:-32}"  # after the final acquisition step (see the header)
    # The best epoch is chosen on the split evaluate.py reports (al_loop.sh's VAL_* variables).
    TRAIN_FLAGS+=(--keep-best --val-split "${VAL_SPLIT:-val}")
    [ -z "${VAL_DATASET:-}" ] || TRAIN_FLAGS+=(--val-dataset "$VAL_DATASET")
    [ -z "${VAL_DATA_ROOT:-}" ] || TRAIN_FLAGS+=(--val-data-root "$VAL_DATA_ROOT")
    SELECT_ARGS="--informative 200"
    run_experiment
}
