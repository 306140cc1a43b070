# S4AL+'s protocol (papers/s4al_plus.md), shared by its settings' scripts: 10 % of the
# pool's pixels labeled in random square regions to start, then the 4 regions of
# highest mean entropy of every image per cycle (the published code's per-image
# ranking); DeepLabv3+ MobileNetV2 (ImageNet), SGD lr 1e-2 poly, momentum 0.9 with
# Nesterov, weight decay 1e-4, ASPP, decoder and ReCo head at 10x lr (MMLAL
# core_models.py configure_optimizers l.312-343; its poly steps per epoch, ours per
# step), 100 epochs, batch 4. entropy-ssl is S4AL+ itself: self-training with pseudo
# labels (confidence >= 0.7) and the ReCo contrastive head. FULL=1 (the default here)
# trains the fully supervised reference, for the labeled share needed to reach 95 % of it.
# Resolution (MMLAL helpers/dataset_builder.py l.134-151): CamVid as on disk, 360x480;
# Cityscapes resized to 688x688, aspect ratio not kept (the prepared dataset of the
# authors; DEAL datasets/cityscapes/Cityscapes.py resizes so, bilinear, labels nearest),
# its regions placed in those pixels (UNIT_ARGS) and evaluated there, as the code does.
# Weak augmentation: each sample rescaled by a factor drawn uniformly from [0.5, 2]
# before its crop and flip (helpers/dataset_transforms.py do_transforms l.61-111), a
# smaller one padded with ignored pixels, at its bottom and right (theirs: centred).
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
    local resolution=
    [ "$DATASET" != cityscapes ] || resolution="--resize 688x688"
    UNIT_ARGS="--unit region --region-size $2 $resolution"
    INITIAL=10%px STEP= CYCLES=${CYCLES:-$3}
    SELECT_ARGS="--region-ranking per-image --regions-per-image 4"
    local pretrained=${PRETRAINED-imagenet}
    TRAIN_FLAGS=(${pretrained:+--pretrained "$pretrained"})  # an array: a path with spaces stays one word
    TRAIN_ARGS="--arch mobilenet_v2 --optimizer sgd --lr 1e-2
        --lr-schedule poly --momentum 0.9 --nesterov --weight-decay 1e-4 --head-lr-mult 10
        --epochs ${EPOCHS:-100} --batch-size 4 --crop ${CROP:-$4}"
    TRAIN_ARGS+=" --random-scale 0.5,2.0 $resolution"
    SUMMARY_ARGS="--x-axis pixels"
    run_experiment
}
