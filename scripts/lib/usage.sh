# Sourced first by every paper script, before anything is installed: --help prints
# the script's header comment (its usage) and exits 0; a missing DATA_ROOT prints
# it and exits 2.
print_usage() {
    sed -n '2,/^[^#]/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'
}

case "${1:-}" in
    -h | --help) print_usage; exit 0 ;;
esac
if [ -z "${DATA_ROOT:-}" ]; then
    print_usage
    echo "error: set DATA_ROOT" >&2
    exit 2
fi
