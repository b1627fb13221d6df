"""The local backend: run `python -m tasks.<step> --job <uri>` in a subprocess and stream its log."""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from tasks.runtime import orphan
from tasks.storage import store

log = logging.getLogger("tunerflow.local")

# Seconds a step gets to checkpoint and exit after this task is asked to stop; the same default as the
# kubernetes backend's termination_grace_period_seconds.
GRACE_ENV = "TUNERFLOW_STOP_GRACE_S"
DEFAULT_GRACE_S = 600.0


# error.json types of a step that stopped for a reason a later try can get past, not because of its
# inputs: told to stop (it checkpointed), the store not answering, the store's disk full.
INTERRUPTED = ("Preempted", "StoreUnavailable", "NoSpace")


class StepFailed(RuntimeError):
    """A step subprocess exited non-zero; the message is the step's own reason. `retryable` is True when
    the step was interrupted (killed by a signal, preempted and checkpointed, or its store unavailable or
    full), not when it failed on its inputs: retrying a bad conf or a missing module only fails again."""

    def __init__(self, message: str, retryable: bool = False):
        super().__init__(message)
        self.retryable = retryable


def _error(spec_uri: str) -> dict[str, Any] | None:
    try:
        spec = store.read_json(spec_uri)
        error_uri = store.join(spec["output"], "error.json")
        if store.exists(error_uri):
            return store.read_json(error_uri)
    except (OSError, KeyError, ValueError, store.StoreError):
        pass
    return None


def _reason(error: dict[str, Any] | None, tail: deque[str]) -> str:
    if error and error.get("message"):
        return error["message"]
    return "\n".join(tail) or "no output"


@contextlib.contextmanager
def machine_slot() -> Iterator[int]:
    """Hold one of TUNERFLOW_LOCAL_SLOTS (default 1) machine-wide slots while a heavy step runs; yields
    the descriptor of the slot's locked file.

    Two trainings sharing one GPU or a few CPU cores run slower together than one after the other
    (measured here: a 5 s step became 60 s), and Airflow pools must be created before use, so the
    local backend queues its subprocesses itself. The lock is a `flock` on that descriptor, which the step
    inherits: the slot stays taken until the step has exited too, so the retry of a task that died
    waits for its orphaned step to checkpoint and stop (`tasks.runtime.orphan`) instead of training
    beside it in the same job directory.
    """
    slots = max(int(os.environ.get("TUNERFLOW_LOCAL_SLOTS", "1")), 1)
    directory = Path(os.environ.get("TUNERFLOW_LOCK_DIR", Path.home() / ".tunerflow" / "locks"))
    directory.mkdir(parents=True, exist_ok=True)
    waited = time.monotonic()
    while True:
        for slot in range(slots):
            fd = os.open(directory / f"local-slot-{slot}.lock", os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                continue
            try:
                if time.monotonic() - waited > 1:
                    log.info("got local slot %d after %.0fs", slot, time.monotonic() - waited)
                yield fd
            finally:
                # Closing (not LOCK_UN, which would unlock the step's inherited copy as well) releases
                # the slot once no process holds the descriptor any more.
                os.close(fd)
            return
        time.sleep(1.0)


@contextlib.contextmanager
def forward_sigterm(process: subprocess.Popen) -> Iterator[None]:
    """Pass a SIGTERM of this task on to the step, then give it up to TUNERFLOW_STOP_GRACE_S to exit.

    A worker shutting down sends SIGTERM to the task process only (Airflow's supervisor forwards it
    with `os.kill`, not to the process group), so without this the step would be killed with the
    worker, or orphaned, instead of committing a checkpoint. Airflow's own handler (which calls the
    operator's `on_kill`) still runs. Only the main thread may install signal handlers; elsewhere the
    step is left to the default behaviour.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    grace = float(os.environ.get(GRACE_ENV) or DEFAULT_GRACE_S)
    previous = signal.getsignal(signal.SIGTERM)
    asked_at: list[float] = []

    def kill_after_grace() -> None:
        if process.poll() is None:
            log.error("step pid %d did not exit %.0fs after SIGTERM; killing it", process.pid, grace)
            process.kill()

    deadline = threading.Timer(grace, kill_after_grace)
    deadline.daemon = True

    def forward(signum: int, frame: Any) -> None:
        if process.poll() is None:
            if not asked_at:
                log.warning(
                    "SIGTERM: asking step pid %d to checkpoint and stop (grace %.0fs)", process.pid, grace
                )
                asked_at.append(time.monotonic())
                deadline.start()
            process.send_signal(signal.SIGTERM)
        if callable(previous):
            previous(signum, frame)

    signal.signal(signal.SIGTERM, forward)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
        if asked_at and process.poll() is None:
            # Leaving early (Airflow's handler raised): the step still gets its grace to commit.
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=max(grace - (time.monotonic() - asked_at[0]), 0))
            if process.poll() is None:
                process.kill()
        deadline.cancel()


def run_step(argv: list[str], env: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Run one step command (see tasks.pipeline.plan.step_argv) with this interpreter; return its JSON result.
    `env` is added to the subprocess's environment only (connections with secrets: never logged)."""
    with machine_slot() as slot:
        return _run(argv, env, slot)


def _run(argv: list[str], env: Mapping[str, str] | None, slot: int) -> dict[str, Any]:
    command = [sys.executable, *argv[1:]] if argv[0] == "python" else argv
    log.info("running %s", " ".join(command))
    tail: deque[str] = deque(maxlen=30)
    result: dict[str, Any] | None = None
    said: dict[str, Any] | None = None  # the step's own `{"error": ...}` line (tasks.runtime.step)
    with (
        subprocess.Popen(
            command,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            bufsize=1,
            env={**os.environ, **(env or {}), orphan.PARENT_ENV: str(os.getpid())},
            pass_fds=(slot,),
        ) as process,
        forward_sigterm(process),
    ):
        for line in process.stdout:
            line = line.rstrip()
            if line.startswith("{"):
                try:
                    parsed = json.loads(line)
                except json.JSONDecodeError:
                    parsed = None
                if isinstance(parsed, dict) and parsed.keys() == {"error"}:
                    said = parsed["error"]
                    continue
                if parsed is not None:
                    result = parsed
                    continue
            if line:
                tail.append(line)
                log.info("%s", line)
        code = process.wait()
    if code != 0:
        # The step's own line first: error.json cannot be written to a full or unreachable store.
        error = said or _error(argv[-1])
        interrupted = code < 0 or (error or {}).get("type") in INTERRUPTED
        raise StepFailed(f"{argv[2]} failed (exit {code}): {_reason(error, tail)}", retryable=interrupted)
    if result is None:
        raise StepFailed(f"{argv[2]} exited 0 without printing its JSON result line")
    return result
