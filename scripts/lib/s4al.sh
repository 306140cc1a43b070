# S4AL+'s protocol (papers/s4al_plus.md), shared by its settings' scripts: 10 % of the
# pool's pixels labeled in random square regions to start, then the 4 regions of
# highest mean entropy of every image per cycle (the published code's per-image
# ranking); DeepLabv3+ MobileNetV2 (ImageNet), SGD lr 1e-2 poly, weight decay 1e-4,
# 100 epochs, batch 4. entropy-ssl is S4AL+ itself: self-training with pseudo labels
# (confidence >= 0.7) and the ReCo contrastive head. FULL=1 (the default here) trains
# the fully supervised reference, for the labeled share needed to reach 95 % of it.
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
source "$REPO_ROOT/scripts/lib/al_loop.sh"

run_s4al() {  # run_s4al DATASET REGION_SIDE CYCLES CROP
    DATASET=$1
    SETTING=$(basename "$0" .sh)
    OUT=${OUT:-$REPO_ROOT/runs/$SETTING}
    METHODS=${METHODS:-random entropy entropy-ssl}
    SEEDS=${SEEDS:-0 1 2}
    FULL=${FULL:-1}
    SSL=selftrain SSL_ARGS="--contrastive reco"
    UNIT_ARGS="--unit region --region-size $2"
    INITIAL=10%px STEP= CYCLES=${CYCLES:-$3}
    SELECT_ARGS="--region-ranking per-image --regions-per-image 4"
    local pretrained=${PRETRAINED-imagenet}
    TRAIN_FLAGS=(${pretrained:+--pretrained "$pretrained"})  # an array: a path with spaces stays one word
    TRAIN_ARGS="--arch mobilenet_v2 --optimizer sgd --lr 1e-2
        --lr-schedule poly --weight-decay 1e-4 --epochs ${EPOCHS:-100} --batch-size 4 --crop ${CROP:-$4}"
    SUMMARY_ARGS="--x-axis pixels"
    run_experiment
}
