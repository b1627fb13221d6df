#!/usr/bin/env bash
# Quick start, step 2: install, then lint and run the tests (GPU and Kubernetes-cluster tests skip
# themselves where there is no GPU or cluster). Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
# Debian packages some tests need, installed where that is possible (root with apt-get); elsewhere
# those tests skip and say why.
apt_install() {  # apt_install PACKAGE WHAT_SKIPS_WITHOUT_IT
    if command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
        export DEBIAN_FRONTEND=noninteractive
        apt-get install -y -q "$1" >/dev/null 2>&1 \
            || { apt-get update -q && apt-get install -y -q "$1"; } >/dev/null 2>&1 \
            || echo "note: could not install $1; $2 will skip" >&2
    else
        echo "note: $1 is not installed; $2 will skip" >&2
    fi
}
# docker-compose.yaml is checked with `docker-compose config`, which needs no Docker engine.
if ! command -v docker-compose >/dev/null && ! docker compose version >/dev/null 2>&1; then
    apt_install docker-compose "the compose test"
fi
# The UI's browser tests drive Debian's chromium through Playwright (installed by install.sh): never
# Playwright's own browser download, which needs the network.
if [ ! -x /usr/bin/chromium ]; then
    apt_install chromium "the browser tests (tests/integration/test_ui_browser.py)"
fi
PYTHON="${PYTHON:-python3}"
"$PYTHON" -m ruff check .
"$PYTHON" -m ruff format --check .
# Two pytest-xdist workers where there are two cores (PYTEST_WORKERS=N to choose; 0 for one process): a
# module per unit of work, every module on the session's `airflow standalone` one unit (tests/conftest.py),
# the long ones first. Measured on 2 cores: 42.5 min against 64 min in one process (the steps' imports and
# Airflow's scheduling leave a core idle).
if [ "$(nproc 2>/dev/null || echo 1)" -ge 2 ]; then default_workers=2; else default_workers=0; fi
exec "$PYTHON" -m pytest -m "not gpu and not k8s" -n "${PYTEST_WORKERS:-$default_workers}" \
    --no-loadscope-reorder "$@"
