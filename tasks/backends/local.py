"""The local backend: run `python -m tasks.<step> --job <uri>` in a subprocess and stream its log."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from collections import deque
from typing import Any

from tasks import store

log = logging.getLogger("tunerflow.local")


class StepFailed(RuntimeError):
    """A step subprocess exited non-zero; the message is the step's own reason."""


def _reason(spec_uri: str, tail: deque[str]) -> str:
    try:
        spec = store.read_json(spec_uri)
        error_uri = store.join(spec["output"], "error.json")
        if store.exists(error_uri):
            return store.read_json(error_uri)["message"]
    except (OSError, KeyError, ValueError):
        pass
    return "\n".join(tail) or "no output"


def run_step(argv: list[str]) -> dict[str, Any]:
    """Run one step command (see tasks.plan.step_argv) with this interpreter; return its JSON result."""
    command = [sys.executable, *argv[1:]] if argv[0] == "python" else argv
    log.info("running %s", " ".join(command))
    tail: deque[str] = deque(maxlen=30)
    result: dict[str, Any] | None = None
    with subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1
    ) as process:
        for line in process.stdout:
            line = line.rstrip()
            if line.startswith("{"):
                try:
                    result = json.loads(line)
                    continue
                except json.JSONDecodeError:
                    pass
            if line:
                tail.append(line)
                log.info("%s", line)
        code = process.wait()
    if code != 0:
        raise StepFailed(f"{argv[2]} failed (exit {code}): {_reason(argv[-1], tail)}")
    if result is None:
        raise StepFailed(f"{argv[2]} exited 0 without printing its JSON result line")
    return result
