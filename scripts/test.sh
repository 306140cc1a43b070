#!/usr/bin/env bash
# Run the test suite (creates .venv with requirements.txt when needed).
# Arguments replace the default `tests` and go to pytest, e.g. `bash scripts/test.sh tests/test_index.py`.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib/env.sh"
cd "$REPO_ROOT"
exec "$PYTHON" -m pytest -q "${@:-tests}"
