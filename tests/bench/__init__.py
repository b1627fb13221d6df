"""Smoke tests of bench/ scripts: each runs a small version of a bench and checks its output."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]


def run_bench(script: str, *args: str, timeout: int) -> tuple[list[str], dict[str, Any]]:
    """Run `bench/<script>` with this interpreter; return its stdout lines and the JSON summary that every
    bench prints as its last line."""
    done = subprocess.run(
        [sys.executable, str(REPO / "bench" / script), *args], capture_output=True, text=True, timeout=timeout
    )
    assert done.returncode == 0, done.stderr[-3000:]
    lines = done.stdout.strip().splitlines()
    return lines, json.loads(lines[-1])
