# S4AL+'s protocol (papers/s4al_plus.md), shared by its settings' scripts: 10 % of the
# pool's images labeled whole to start (l.122; MMLAL main_al.py trains on a list of whole
# images, train_al_lab), as the regions tiling them (INITIAL_METHOD=random-images: the
# fewest random images whose regions reach 10 % of the pixels), then the 4 regions of
# highest mean entropy of every image per cycle (the published code's per-image
# ranking); DeepLabv3+ MobileNetV2 (ImageNet), SGD lr 1e-2 poly, momentum 0.9 with
# Nesterov, weight decay 1e-4, ASPP, decoder and ReCo head at 10x lr (MMLAL
# core_models.py configure_optimizers l.312-343; its poly steps per epoch, ours per
# step), 100 epochs, and the last cycle's 150 (CamVid) or 200 (Cityscapes) (Table 1;
# LAST_EPOCHS). Supervised models: batch 4, 50 (CamVid) or 100 (Cityscapes) steps an
# epoch (Table 1). entropy-ssl is S4AL+ itself, in every cycle the initial one included
# (l.66-76; MMLAL main_al.py l.70-106): a supervised teacher of the cycle's labels with
# the ReCo head (Table 1's "10% LD, Yes" row), then the student, which selects the next
# regions: self-training on the teacher's pseudo labels of the unlabeled pixels
# (confidence >= 0.7, logits averaged over the image at scales 0.5, 1 and 2 without
# flips: MMLAL core_models.py predict_step) with ReCo, 2 labeled + 4 unlabeled crops per
# step, 100 (CamVid) or 300 (Cityscapes) steps an epoch (Table 1). The last cycle's
# teacher trains longer too: MMLAL's --max_epochs is one for both models of a run.
# ReCo's values are those of S4AL+'s code (MMLAL core_models.py l.360-364): temperature
# 0.5, 128 queries, 256 negatives, strong threshold 0.95, weight 1, no weak threshold
# but the pseudo labels' 0.7 (l.417-430); its embeddings 256-d (ReCo's; MMLAL's
# --rep_size has no published value). FULL=1 (the default here) trains the fully
# supervised reference, for the labeled share needed to reach 95 % of it.
# An epoch of a fixed number of steps visits the labeled samples in the epoch's order
# over and over (lib/fixed_steps.py); MMLAL draws them with replacement.
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
    # Table 1: steps an epoch of the supervised models and of the students, epochs of the last cycle
    local resolution= supervised_steps=50 student_steps=100 last_epochs=150
    if [ "$DATASET" = cityscapes ]; then
        resolution="--resize 688x688" supervised_steps=100 student_steps=300 last_epochs=200
    fi
    local reco="--contrastive reco --reco-weight 1 --reco-temperature 0.5 --reco-queries 128
        --reco-negatives 256 --reco-strong-threshold 0.95"
    SSL=selftrain SSL_TEACHER=supervised TEACHER_ARGS=$reco
    SSL_ARGS="$reco --batch-size 2 --unlabeled-batch-size 4 --steps-per-epoch $student_steps
        --pseudo-threshold 0.7 --pseudo-scales 0.5,1,2"
    UNIT_ARGS="--unit region --region-size $2 $resolution"
    INITIAL_METHOD=random-images INITIAL=10%px STEP= CYCLES=${CYCLES:-$3}
    SELECT_ARGS="--region-ranking per-image --regions-per-image 4"
    local pretrained=${PRETRAINED-imagenet}
    TRAIN_FLAGS=(${pretrained:+--pretrained "$pretrained"})  # an array: a path with spaces stays one word
    TRAIN_ARGS="--arch mobilenet_v2 --optimizer sgd --lr 1e-2
        --lr-schedule poly --momentum 0.9 --nesterov --weight-decay 1e-4 --head-lr-mult 10
        --epochs ${EPOCHS:-100} --batch-size 4 --steps-per-epoch $supervised_steps --crop ${CROP:-$4}"
    TRAIN_ARGS+=" --random-scale 0.5,2.0 $resolution"
    LAST_TRAIN_ARGS="--epochs ${LAST_EPOCHS:-$last_epochs}"
    SUMMARY_ARGS="--x-axis pixels"
    run_experiment
}
