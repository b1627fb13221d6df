"""A step whose task died stops like a preempted one: checkpoint, `error.json`, exit.

The local backend runs a step as a child of the Airflow task process and sets `TUNERFLOW_PARENT_PID`.
When that process dies without stopping the step first (SIGKILL, the OOM killer, a scheduler or worker
killed with its task supervisors), the step would otherwise go on training unseen while Airflow retries the
task beside it in the same job directory. So the step asks Linux for SIGHUP when its parent dies
(`PR_SET_PDEATHSIG`), and on SIGHUP points its stdout and stderr at /dev/null (the pipe to the dead task is
gone: a write to it would raise mid-training) and raises SIGTERM on itself: the trainer commits a checkpoint
at the next step boundary and stops, as for a preemption, and the retry resumes from it. The local
backend's machine slot is held by the step too, so the retry waits for the orphan to have stopped.

Elsewhere (a pod, where the step is the container's main process; macOS) this does nothing. Stdlib only.
"""

from __future__ import annotations

import ctypes
import logging
import os
import signal
import sys
from typing import Any

PARENT_ENV = "TUNERFLOW_PARENT_PID"
PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
log = logging.getLogger("tunerflow")


def _orphaned(signum: int, frame: Any) -> None:
    # What is still buffered for the dead pipe goes to /dev/null with everything written from now on.
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    os.dup2(devnull, 2)
    os.close(devnull)
    signal.raise_signal(signal.SIGTERM)


def stop_with_parent() -> None:
    """Arrange for this step to stop when the task process named by `TUNERFLOW_PARENT_PID` dies.

    The variable is removed from the environment, so the processes this step starts (torchrun's workers,
    whose parent is torchrun) do not take it for their own parent."""
    value = os.environ.pop(PARENT_ENV, None)
    if not value or not sys.platform.startswith("linux"):
        return
    signal.signal(signal.SIGHUP, _orphaned)
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_PDEATHSIG, signal.SIGHUP, 0, 0, 0) != 0:
        errno = ctypes.get_errno()
        log.warning("prctl(PR_SET_PDEATHSIG) failed (errno %d): this step would outlive its task", errno)
        return
    if os.getppid() != int(value):
        # The task died before the kernel was asked: it will not send the signal any more.
        signal.raise_signal(signal.SIGHUP)
