# Sourced by every script: sets REPO_ROOT and PYTHON, an interpreter with the requirements.
# An active virtualenv or conda env that has them is used as it is; otherwise
# .venv is created once and requirements.txt installed into it.
REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"

has_requirements() {
    "$1" -c "import torch, torchvision, numpy, scipy, PIL, pytest" >/dev/null 2>&1
}

if [ -z "${PYTHON:-}" ]; then
    for candidate in python python3 "$REPO_ROOT/.venv/bin/python"; do
        if command -v "$candidate" >/dev/null 2>&1 && has_requirements "$candidate"; then
            PYTHON="$candidate"
            break
        fi
    done
fi
if [ -z "${PYTHON:-}" ]; then
    echo "setting up $REPO_ROOT/.venv (torch, torchvision: a few GB, once)" >&2
    python3 -m venv "$REPO_ROOT/.venv"
    "$REPO_ROOT/.venv/bin/python" -m pip install --quiet --upgrade pip
    "$REPO_ROOT/.venv/bin/python" -m pip install --quiet -r "$REPO_ROOT/requirements.txt"
    PYTHON="$REPO_ROOT/.venv/bin/python"
fi
export PYTHON REPO_ROOT
