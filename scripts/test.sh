#!/usr/bin/env bash
# Quick start, step 2: install, then lint and run the tests (GPU and Kubernetes-cluster tests skip
# themselves where there is no GPU or cluster). Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
# docker-compose.yaml is checked with `docker-compose config`, which needs no Docker engine. Install
# Debian's docker-compose where that is possible (root with apt-get); elsewhere its test skips.
if ! command -v docker-compose >/dev/null && ! docker compose version >/dev/null 2>&1; then
    if command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
        export DEBIAN_FRONTEND=noninteractive
        apt-get install -y -q docker-compose >/dev/null 2>&1 \
            || { apt-get update -q && apt-get install -y -q docker-compose; } >/dev/null 2>&1 \
            || echo "note: could not install docker-compose; the compose test will skip" >&2
    else
        echo "note: docker-compose is not installed; the compose test will skip" >&2
    fi
fi
PYTHON="${PYTHON:-python3}"
"$PYTHON" -m ruff check .
"$PYTHON" -m ruff format --check .
exec "$PYTHON" -m pytest -m "not gpu and not k8s" "$@"
