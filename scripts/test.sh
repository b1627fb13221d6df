#!/usr/bin/env bash
# Quick start, step 2: install, then lint and run the tests (GPU and Kubernetes-cluster tests skip
# themselves where there is no GPU or cluster). Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
PYTHON="${PYTHON:-python3}"
"$PYTHON" -m ruff check .
"$PYTHON" -m ruff format --check .
exec "$PYTHON" -m pytest -m "not gpu and not k8s" "$@"
