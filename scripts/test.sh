#!/usr/bin/env bash
# Set everything up, then run lint and the whole test suite. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# PostgreSQL 15 + pgvector for the PostgreSQL gallery tests (they start a throwaway cluster
# themselves); where it cannot be installed, those tests skip and say why.
bash scripts/postgres.sh install || echo "test: PostgreSQL gallery tests will skip" >&2
export MOBILEFACE_DATA=${MOBILEFACE_DATA:-$(cd .. && pwd)/shared/data}
.venv/bin/ruff check src tests
.venv/bin/ruff format --check src tests
.venv/bin/python -m pytest "$@"
