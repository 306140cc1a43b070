# MEAL's protocol (Sreenivasaiah et al. 2021), shared by its settings' scripts: 4x4
# patches, 2 random images (32 patches) to start, then 32 patches per cycle; MEAL and
# MEAL-FT take the 200 most uncertain patches and cluster their UMAP embedding.
# DeepLabv3+ MobileNetV2 with the ImageNet backbone frozen, Adam 1e-3 without schedule
# or weight decay, batch 8, 25 epochs per cycle, retrained from scratch, no
# augmentation; mIoU on the validation split.
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
    UNIT_ARGS="--unit patch --grid 4x4"
    INITIAL_METHOD=random-images INITIAL=32 STEP=32 CYCLES=${CYCLES:-$2}
    TRAIN_ARGS="--arch mobilenet_v2 --freeze-backbone --optimizer adam --lr 1e-3
        --weight-decay 0 --lr-schedule constant --epochs ${EPOCHS:-25} --batch-size 8 --crop ${CROP:-$3} --no-flip"
    SELECT_ARGS="--informative 200"
    run_experiment
}
