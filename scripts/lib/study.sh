# The protocol of "Best Practices in Active Learning for Semantic Segmentation"
# (appendix B), shared by the scripts of its settings: DeepLabv3+ with an ImageNet
# backbone, SGD lr 1e-3, momentum 0.9, weight decay 5e-4, poly schedule, batch 8,
# 100 epochs per cycle, random crop and flip (256x512; 321x321 on VOC), 3 seeds.
# ASPP and decoder learn at 10x lr (--head-lr-mult 10), the backbone at lr, no Nesterov
# (ALSS:model/deeplabv3p.py optim_parameters l.183-185; query_strategies/strategy.py
# l.51-55, l.104). Their code lists each parameter once per module above it (l.142-181:
# `modules()` then recursive `parameters()`), and SGD steps every copy: a parameter's
# effective rate and weight decay are 1 to 6 times its group's, by layer. We do not
# reproduce that quirk: each parameter is stepped once at its group's rate.
# Backbone: the study's WRN-38 at output stride 8 (ALSS:model/wider_resnet.py `wrn38`,
# model/deeplabv3p.py) when PRETRAINED names its ImageNet checkpoint by the name the
# study's code restores, wider_resnet38.pth.tar (torchvision has none); otherwise, with a
# printed note, resnet50 at output stride 16 stands in (PRETRAINED imagenet: torchvision's
# file in the torch hub cache; empty: none). ARCH and OUTPUT_STRIDE override the choice.
# Resolution, from the study's code (the paper names only the crops): Cityscapes frames
# are halved (1024x512) before their 256x512 crops, as semisup-semseg's RandomCrop_city
# does (data/augmentations.py l.82-90; ALSS has no Cityscapes loader), and evaluated at
# 512x1024 (semisup-semseg evaluate.py l.216-221): --scale 1/2 for both. A2D2 is
# downsampled by 3, int(w/3) = 640x402, before its 256x512 crops (ALSS
# data/dataloaders/a2d2.py l.82-108): --scale 1/3. Its code evaluates the whole frame
# resized to 256x512 (a2d2.py l.63-76), another scale and aspect ratio than it trains at
# (x0.27 across and x0.21 down, against x0.33): we evaluate as that code does
# (EVAL_ARGS --resize 256x512), since the published numbers were measured so. VOC: each
# sample rescaled by one of the 12 factors 0.5, 0.6, ..., 1.6 before its 321x321 crop
# (ALSS data/dataloaders/pascal_voc.py l.39-43): --random-scale 0.5,1.6,0.1; evaluated at
# full resolution (query_strategies/strategy.py l.167-170). Selections score the pool
# at the resolution the model was trained at.
# Methods: Random, Entropy, EqualAL, BALD, Coreset, each also with s4GAN
# semi-supervised training (<method>-ssl): Mittal et al.'s settings, "except for the
# learning rate of the discriminator which is set to 2.5e-5 for Cityscapes and A2D2";
# their unlabeled batch is as large as the labeled one, and the self-training threshold
# is their code's 0.6 (the TPAMI paper's 0.2 passes every crop while the discriminator
# is still at chance, which it is for hundreds of steps).
# Where the paper is silent its code decides. Coreset's features, "the pooled output of
# the ASPP module" in the paper: the ASPP output after its 1x1 projection (256 channels)
# average-pooled on a 2x2 grid, 1024-d (ALSS model/deeplabv3p.py l.102-108). That code
# pools 20x20 windows, a 2x2 grid at VOC's 321x321 crops only (1x3 at 256x512, which its
# view(-1, 1024) cannot hold): we pool every image to 2x2, adaptively (select.py
# --feature-pooling grid2x2, in SELECT_ARGS; the methods without features ignore it). Its
# code embeds one random 321x321 crop of each image (query_strategies/coreset.py l.44-63);
# we embed the whole image, at the training resolution. Warm start: the paper trains "a
# model in each AL cycle"; the code trains one network through the cycles of a supervised
# method, its backbone reloaded from ImageNet before each, ASPP and decoder kept
# (query_strategies/strategy.py l.67-89), and re-initialises every -ssl cycle
# (strategy_SSL.py l.133-149). WARM_START=1 (the default here) does the same: train.py
# --init-head-from the previous cycle's model for the methods without -ssl;
# WARM_START=0 trains every cycle from ImageNet and a fresh head.
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
    local arch=${ARCH:-wrn38}
    if [ -z "${ARCH:-}" ] && [[ $(basename -- "${pretrained:-none}") != wider_resnet38* ]]; then
        arch=resnet50
        echo "note: PRETRAINED is not the study's wider_resnet38.pth.tar: resnet50 at output stride 16 stands in" \
            "for its WRN-38 at 8" >&2
    fi
    local output_stride=${OUTPUT_STRIDE:-$([ "$arch" = wrn38 ] && echo 8 || echo 16)}
    if [ "$DATASET" = voc ]; then
        crop=321x321 SSL_ARGS="--unlabeled-batch-size 8 --disc-threshold 0.6"
    fi
    local resolution=  # see the header; folder: A2D2's Pool-Aug, frames of A2D2's size
    case $DATASET in
        cityscapes) resolution="--scale 1/2" ;;
        a2d2 | folder) resolution="--scale 1/3" EVAL_ARGS="${EVAL_ARGS:+$EVAL_ARGS }--resize 256x512" ;;
        voc) resolution="--random-scale 0.5,1.6,0.1" ;;
    esac
    TRAIN_ARGS="--arch $arch --output-stride $output_stride --optimizer sgd --lr 1e-3
        --momentum 0.9 --weight-decay 5e-4 --lr-schedule poly --batch-size 8 --epochs ${EPOCHS:-100}
        --head-lr-mult 10
        --crop ${CROP:-$crop} $resolution"
    WARM_START=${WARM_START:-1}  # see the header
    SELECT_ARGS="--feature-pooling grid2x2${SELECT_ARGS:+ $SELECT_ARGS}"  # first: a user's SELECT_ARGS override it
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
