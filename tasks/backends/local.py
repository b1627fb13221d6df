"""The local backend: run `python -m tasks.<step> --job <uri>` in a subprocess and stream its log."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import subprocess
import sys
import time
from collections import deque
from collections.abc import Iterator
from pathlib import Path
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


@contextlib.contextmanager
def machine_slot() -> Iterator[int]:
    """Hold one of TUNERFLOW_LOCAL_SLOTS (default 1) machine-wide slots while a heavy step runs.

    Two trainings sharing one GPU or a few CPU cores run slower together than one after the other
    (measured here: a 5 s step became 60 s), and Airflow pools must be created before use, so the
    local backend queues its subprocesses itself.
    """
    from filelock import FileLock, Timeout

    slots = max(int(os.environ.get("TUNERFLOW_LOCAL_SLOTS", "1")), 1)
    directory = Path(os.environ.get("TUNERFLOW_LOCK_DIR", Path.home() / ".tunerflow" / "locks"))
    directory.mkdir(parents=True, exist_ok=True)
    waited = time.monotonic()
    while True:
        for slot in range(slots):
            lock = FileLock(str(directory / f"local-slot-{slot}.lock"))
            try:
                lock.acquire(timeout=0)
            except Timeout:
                continue
            try:
                if time.monotonic() - waited > 1:
                    log.info("got local slot %d after %.0fs", slot, time.monotonic() - waited)
                yield slot
            finally:
                lock.release()
            return
        time.sleep(1.0)


def run_step(argv: list[str]) -> dict[str, Any]:
    """Run one step command (see tasks.plan.step_argv) with this interpreter; return its JSON result."""
    with machine_slot():
        return _run(argv)


def _run(argv: list[str]) -> dict[str, Any]:
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
