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

# --- Headless browser for the web page test (tests/test_webui.py) -----------------------------
# Debian's chromium with its matching chromedriver (Selenium, from the dev extra, drives it;
# nothing is downloaded by Selenium or Playwright). Installed only when missing and apt-get is
# there, as root (CI) or with passwordless sudo; otherwise the test skips and says why.
# Only the tests need it: MOBILEFACE_SKIP_BROWSER=1 skips this step (scripts/demo.sh sets it).
if [ -z "${MOBILEFACE_SKIP_BROWSER:-}" ] \
    && ! { command -v chromium >/dev/null && command -v chromedriver >/dev/null; }; then
    sudo_cmd=""
    if [ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null && sudo -n true 2>/dev/null; then
        sudo_cmd="sudo -n"
    fi
    if ! command -v apt-get >/dev/null; then
        echo "setup: no apt-get: install chromium and chromedriver yourself, or the web page test skips" >&2
    elif [ "$(id -u)" -ne 0 ] && [ -z "$sudo_cmd" ]; then
        echo "setup: chromium missing and not root: the web page test will skip" >&2
    else
        echo "setup: installing chromium and chromium-driver (apt-get) for the web page test"
        apt_install() {
            DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq \
                --no-install-recommends chromium chromium-driver >/dev/null 2>&1
        }
        apt_install \
            || { $sudo_cmd apt-get update -qq >/dev/null 2>&1 && apt_install; } \
            || echo "setup: warning: could not install chromium; the web page test will skip" >&2
    fi
fi
