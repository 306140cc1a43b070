# MEAL's protocol (Sreenivasaiah et al. 2021), shared by its settings' scripts: 4x4
# patches, 2 random images (32 patches) to start, then 32 patches per cycle; MEAL and
# MEAL-FT take the 200 most uncertain patches and cluster their UMAP embedding.
# DeepLabv3+ MobileNetV2 with the ImageNet backbone frozen, Adam 1e-3 without schedule
# or weight decay, batch 8, 25 epochs per cycle, retrained from scratch, no
# augmentation; mIoU on the validation split.
# Resolution (the paper, meal.md l.186-188; no code was published): CamVid as on disk,
# 360x480, 16 patches of 90x120. Cityscapes at 512x1024, inferred: the paper's 16
# patches of 128x256 tile a 512x1024 frame, though it calls its frames 2048x1024 and
# never says it downsamples them; the patches are placed in those pixels (UNIT_ARGS).
# The evaluation resolution is not stated: the training one.
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
source "$REPO_ROOT/scripts/lib/al_loop.sh"

run_meal() {  # run_meal DATASET CYCLES CROP
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
        --weight-decay 0 --lr-schedule constant --epochs ${EPOCHS:-25} --batch-size 8 --crop ${CROP:-$3} --no-flip"
    TRAIN_ARGS+=" $resolution"
    SELECT_ARGS="--informative 200"
    run_experiment
}
