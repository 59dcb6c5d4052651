#!/usr/bin/env bash
# Set everything up, then run the main job on the bundled defaults.
set -euo pipefail
cd "$(dirname "$0")/.."
MOBILEFACE_SKIP_BROWSER=1 bash scripts/setup.sh  # the browser is for the web page test only
export MOBILEFACE_DATA=${MOBILEFACE_DATA:-$(cd .. && pwd)/shared/data}
.venv/bin/mobileface demo "$@"
