# Sourced first by every paper script, before anything is installed: --help prints
# the script's header comment (its usage) and exits 0; a missing DATA_ROOT prints
# it and exits 2; --wait is WAIT=1 and --plan is PLAN=1 (see scripts/lib/al_loop.sh).
print_usage() {
    sed -n '2,/^[^#]/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'
    echo
    echo "--wait (or WAIT=1): if another run uses OUT, wait for it instead of exiting 75."
    echo "--plan (or PLAN=1): print the steps, marking those done, and exit."
    echo "CACHE_DIR=DIR: keep images and masks decoded in DIR (train.py --cache-dir), for data read many times."
}

case "${1:-}" in
    -h | --help) print_usage; exit 0 ;;
    --wait) export WAIT=1 ;;
    --plan) export PLAN=1 ;;
esac
if [ -z "${DATA_ROOT:-}" ]; then
    print_usage
    echo "error: set DATA_ROOT" >&2
    exit 2
fi
