#!/usr/bin/env bash
# Create .venv beside the checkout and install mobileface with its training and test extras.
# Safe to run again: it reinstalls only when pyproject.toml has changed.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    echo "setup: creating .venv with $($PYTHON --version)"
    "$PYTHON" -m venv .venv
fi
stamp=.venv/.mobileface-installed
want=$(sha256sum pyproject.toml | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    echo "setup: installing mobileface[train,dev] into .venv (torch 2.13.0, CPU build)"
    .venv/bin/python -m pip install --quiet --upgrade pip 2>&1 | grep -v "is ignored" || true
    # torch is pinned in pyproject.toml; here that pin resolves to a local CPU wheel.
    .venv/bin/python -m pip install --quiet -e ".[train,dev]" 2>&1 | grep -v "is ignored" || true
    .venv/bin/python -c "import mobileface, torch, onnxruntime, cv2" \
        || { echo "setup: installation failed" >&2; exit 1; }
    echo "$want" > "$stamp"
fi
