#!/usr/bin/env bash
# The benchmarks of a GPU machine in one run, each part under a header (issue 17):
#
#   score      bench/bench_score.py: images/s of entropy, equal and bald over CamVid's train split
#              (a synthetic pool of its size without CamVid) and the data-wait share, with
#              select.py's -j 2 and with -j 8 (not with --quick)
#   select     bench/bench_select.py: k-center and K-Means++ on 200,000 x 256 features, k = 2,000,
#              on the CPU (time, peak memory) and on CUDA
#   umap       bench/bench_umap.py: our UMAP on CUDA, 50,000 points (MEAL's map of a pool)
#   pool       bench/bench_large_pool.py: select.py's peak host and GPU memory on pools of 50,000
#              and 200,000 patch items (entropy, coreset)
#   train      bench/bench_train.py: our training loop against a plain float32 one
#   cycle      scripts/camvid_meal.sh, one cycle of MEAL's CamVid setting (train, evaluate, select
#              with meal, train, evaluate): OUT, METHODS=meal, SEEDS=0 and CYCLES=1 overridden
#
#   bash bench/gpu.sh [--quick] [--out DIR] [--camvid DIR]
#
# About 5 minutes on one H200. --quick: every part at smoke-test sizes on a tiny synthetic
# pool, a couple of minutes on a CPU. The machine's line comes first. A failing part does
# not stop the others; the exit code is 1 when any failed, and they are named at the end.
# Everything written goes under --out (default: a new temporary folder), temporary files
# included. Without CamVid (--camvid, default ../shared/data/camvid beside the repository)
# the score and cycle parts run on a synthetic pool of CamVid's size, seen through CamVid's
# layout. MEAL's ImageNet backbone: PRETRAINED, else ../shared/weights' MobileNetV2, else
# random weights written to --out (the times are those of real weights). EPOCHS (25, the
# paper's; 1 with --quick) is the cycle's training.
set -uo pipefail  # no -e: a part's failure is recorded, and the next part runs
source "$(dirname "${BASH_SOURCE[0]}")/../scripts/lib/env.sh"

SHARED=$REPO_ROOT/../shared
QUICK="" OUT_DIR="" CAMVID=$SHARED/data/camvid
while [ $# -gt 0 ]; do
    case $1 in
        --quick) QUICK=--quick ;;
        --out) OUT_DIR=${2:?--out needs a folder}; shift ;;
        --camvid) CAMVID=${2:?--camvid needs a folder}; shift ;;
        -h | --help) sed -n '2,/^[^#]/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "error: unknown argument $1 (--quick, --out DIR, --camvid DIR)" >&2; exit 2 ;;
    esac
    shift
done
OUT_DIR=${OUT_DIR:-$(mktemp -d "${TMPDIR:-/tmp}/gpu-bench.XXXXXX")}
if [ -n "$(ls -A "$OUT_DIR" 2>/dev/null)" ]; then  # a finished cycle there would be skipped, its time 0
    echo "error: --out $OUT_DIR is not empty" >&2
    exit 2
fi
mkdir -p "$OUT_DIR/tmp" || exit 1
OUT_DIR=$(cd "$OUT_DIR" && pwd)  # before cd: relative to where the script was started
[ ! -d "$CAMVID" ] || CAMVID=$(cd "$CAMVID" && pwd)
cd "$REPO_ROOT" || exit 1

# The machine's line, then its device on a line of its own: one start of torch for both.
MACHINE=$("$PYTHON" -c '
from bench.common import machine_line
import torch
gpu = torch.cuda.get_device_properties(0) if torch.cuda.is_available() else None
print(machine_line() + (f", {gpu.name}, {gpu.total_memory / 2**30:.0f} GiB" if gpu else ""))
print("cuda" if gpu else "cpu")
') || exit 1
echo "${MACHINE%$'\n'*}"
DEVICE=${MACHINE##*$'\n'}
echo "output: $OUT_DIR"
# Nothing outside OUT_DIR: the benchmarks' temporary folders, CUDA's kernel cache, no bytecode.
export TMPDIR=$OUT_DIR/tmp CUDA_CACHE_PATH=$OUT_DIR/tmp/cuda-cache PYTHONDONTWRITEBYTECODE=1

FAILED=()
part() {  # part NAME COMMAND...: one part under its header; a failure is recorded and the run goes on
    local name=$1 start=$SECONDS
    shift
    echo
    echo "=== $name: $*"
    "$@"
    local code=$?
    echo "=== $name: $([ "$code" = 0 ] && echo ok || echo "FAILED (exit $code)") in $((SECONDS - start)) s"
    [ "$code" = 0 ] || FAILED+=("$name")
}

synthetic_camvid() {  # synthetic_camvid DIR H W SEQUENCES: a synthetic pool in DIR/pool, seen as CamVid in DIR/camvid
    "$PYTHON" scripts/make_synthetic.py "$1/pool" --sequences "$4" --frames 2 --val-images 8 --height "$2" \
        --width "$3" --seed 0 || return
    mkdir -p "$1/camvid"
    for split in train val; do  # CamVid's <sequence>_<frame> names fit the synthetic ids (s0000_f01)
        ln -sfn "../pool/$split/images" "$1/camvid/$split"
        ln -sfn "../pool/$split/masks" "$1/camvid/${split}annot"
    done
}

backbone_weights() {  # the ImageNet MobileNetV2 file of MEAL's setting: PRETRAINED, ../shared's, or random weights
    if [ -n "${PRETRAINED:-}" ]; then
        echo "$PRETRAINED"
    elif [ -f "$SHARED/weights/mobilenet_v2_imagenet_tv.pth" ]; then
        echo "$SHARED/weights/mobilenet_v2_imagenet_tv.pth"
    else
        "$PYTHON" -c 'import sys, torch, torchvision
from lib.fileio import atomic_write
torch.manual_seed(0)
with atomic_write(sys.argv[1]) as handle:
    torch.save(torchvision.models.mobilenet_v2().state_dict(), handle)' "$OUT_DIR/mobilenet_v2_random.pth" &&
            echo "$OUT_DIR/mobilenet_v2_random.pth"
    fi
}

meal_cycle() {  # meal_cycle DATA_ROOT WEIGHTS: scripts/camvid_meal.sh, one cycle of meal, seed 0
    local epochs=${EPOCHS:-25} images
    [ -z "$QUICK" ] || epochs=1
    images=$(find -L "$1/train" -name '*.png' | wc -l)
    # The summary's mIoU@B at a budget the cycle reaches, in % of the pool's 4x4 patches: the one cycle ends at
    # 64 (initial 32 + 32), the paper's setting at 288. Rounded down, it lies between the two cycles' budgets.
    DATA_ROOT=$1 PRETRAINED=$2 OUT=$OUT_DIR/camvid_meal METHODS=meal SEEDS=0 CYCLES=1 EPOCHS=$epochs \
        BUDGET=$((64 * 100 / (16 * images))) bash scripts/camvid_meal.sh
}

# Not POOL: the experiment scripts read it from the environment.
if [ -z "$QUICK" ] && [ -d "$CAMVID" ]; then
    CYCLE_DATA=$CAMVID
else
    # CamVid's size (367 train images), or 8 tiny frames with --quick
    height=360 width=480 sequences=184
    [ -z "$QUICK" ] || height=64 width=96 sequences=4
    part "data: a synthetic pool in CamVid's layout (no CamVid at $CAMVID, or --quick)" \
        synthetic_camvid "$OUT_DIR/synthetic" "$height" "$width" "$sequences"
    CYCLE_DATA=$OUT_DIR/synthetic/camvid
fi

part "score, -j 2 (select.py's default)" "$PYTHON" bench/bench_score.py $QUICK --data-root "$CYCLE_DATA" --images 0 -j 2
[ -n "$QUICK" ] || part "score, -j 8" "$PYTHON" bench/bench_score.py --data-root "$CYCLE_DATA" --images 0 -j 8
part "select: k-center and K-Means++ at scale" "$PYTHON" bench/bench_select.py $QUICK --parts large gpu
part "umap on $DEVICE" "$PYTHON" bench/bench_umap.py $QUICK --device "$DEVICE"
sizes=(--sizes 50000,200000)
[ -z "$QUICK" ] || sizes=()
part "pool: select.py on large pools, $DEVICE" "$PYTHON" bench/bench_large_pool.py $QUICK ${sizes[@]+"${sizes[@]}"} \
    --device "$DEVICE"
part "train" "$PYTHON" bench/bench_train.py $QUICK
WEIGHTS=$(backbone_weights)
part "cycle: one cycle of scripts/camvid_meal.sh" meal_cycle "$CYCLE_DATA" "$WEIGHTS"

echo
if [ ${#FAILED[@]} -gt 0 ]; then
    echo "failed parts:"
    printf '  %s\n' "${FAILED[@]}"
    exit 1
fi
echo "all parts ok, $SECONDS s; output in $OUT_DIR"
