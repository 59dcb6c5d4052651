#!/usr/bin/env bash
# Set everything up, then run lint and the whole test suite. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export MOBILEFACE_DATA=${MOBILEFACE_DATA:-$(cd .. && pwd)/shared/data}
.venv/bin/ruff check src tests
.venv/bin/ruff format --check src tests
.venv/bin/python -m pytest "$@"
