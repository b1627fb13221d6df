#!/usr/bin/env bash
# Quick start, step 1: install, then run the demo experiment end to end on the bundled SmolLM2-135M.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
exec "${PYTHON:-python3}" -m tasks.cli demo "$@"
