# The protocol of "Best Practices in Active Learning for Semantic Segmentation"
# (appendix B), shared by the scripts of its settings: DeepLabv3+ with an ImageNet
# backbone, SGD lr 1e-3, momentum 0.9, weight decay 5e-4, poly schedule, batch 8,
# 100 epochs per cycle, random crop and flip (256x512; 321x321 on VOC), 3 seeds.
# The study's WRN-38 is not among our backbones: ARCH (resnet50) and PRETRAINED
# (imagenet: torchvision's file in the torch hub cache; empty: none) choose.
# Methods: Random, Entropy, EqualAL, BALD, Coreset, each also with s4GAN
# semi-supervised training (<method>-ssl): Mittal et al.'s settings, "except for the
# learning rate of the discriminator which is set to 2.5e-5 for Cityscapes and A2D2";
# their unlabeled batch is as large as the labeled one, and the self-training threshold
# is their code's 0.6 (the TPAMI paper's 0.2 passes every crop while the discriminator
# is still at chance, which it is for hundreds of steps).
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
source "$REPO_ROOT/scripts/lib/al_loop.sh"

STUDY_METHODS="random entropy equal bald coreset random-ssl entropy-ssl equal-ssl bald-ssl coreset-ssl"

run_study() {  # run_study DATASET INITIAL STEP CYCLES: budgets as select.py takes them (10%, 1000)
    # B of mIoU@B and AUC@B comes with the published table (published/<setting>.json); BUDGET overrides it.
    DATASET=$1 INITIAL=$2 STEP=$3 CYCLES=${CYCLES:-$4}
    SETTING=$(basename "$0" .sh)
    OUT=${OUT:-$REPO_ROOT/runs/$SETTING}
    METHODS=${METHODS:-$STUDY_METHODS}
    SEEDS=${SEEDS:-0 1 2}
    SSL=s4gan SSL_ARGS="--unlabeled-batch-size 8 --disc-threshold 0.6 --disc-lr 2.5e-5"
    local crop=256x512 pretrained=${PRETRAINED-imagenet}
    TRAIN_FLAGS=(${pretrained:+--pretrained "$pretrained"})  # an array: a path with spaces stays one word
    if [ "$DATASET" = voc ]; then
        crop=321x321 SSL_ARGS="--unlabeled-batch-size 8 --disc-threshold 0.6"
    fi
    TRAIN_ARGS="--arch ${ARCH:-resnet50} --optimizer sgd --lr 1e-3
        --momentum 0.9 --weight-decay 5e-4 --lr-schedule poly --batch-size 8 --epochs ${EPOCHS:-100}
        --crop ${CROP:-$crop}"
    run_experiment
}

run_a2d2_pool() {  # run_a2d2_pool POOL INITIAL STEP CYCLES: the study on a redundant pool (0f 5f 11f 21f aug)
    # The pools of every A2D2 setting are built once (deterministic: seed 0) into POOLS and shared.
    A2D2_ROOT=$DATA_ROOT POOLS=${POOLS:-$REPO_ROOT/runs/a2d2_pools}
    A2D2_POOLS=$POOLS
    if [ "$1" = aug ]; then  # a folder dataset of its own, evaluated on A2D2's validation sequence
        VAL_DATASET=a2d2 VAL_DATA_ROOT=$A2D2_ROOT DATA_ROOT=$POOLS/pool_aug
        run_study folder "$2" "$3" "$4"
    else
        POOL=$POOLS/pool_$1.json
        run_study a2d2 "$2" "$3" "$4"
    fi
}
