"""tasks.runtime.orphan: a step whose task process is gone is sent SIGTERM (through SIGHUP) and can still
write once its pipe is gone."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap

import pytest

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")

# A step stand-in: reports what it saw of the variable, then waits for SIGTERM and says it got it.
STEP = textwrap.dedent(
    """
    import os, signal, sys, time
    from tasks.runtime import orphan
    orphan.stop_with_parent()
    print("variable left:", os.environ.get(orphan.PARENT_ENV), flush=True)
    def stopped(signum, frame):
        print("a write after the task died does not raise", flush=True)
        open(sys.argv[1], "w").write("SIGTERM")
        raise SystemExit(3)
    signal.signal(signal.SIGTERM, stopped)
    time.sleep(30)
    raise SystemExit(0)
    """
)


def _step(tmp_path, parent: str | None) -> subprocess.CompletedProcess:
    env = {key: value for key, value in os.environ.items() if key != "TUNERFLOW_PARENT_PID"}
    if parent is not None:
        env["TUNERFLOW_PARENT_PID"] = parent
    marker = tmp_path / "stopped"
    return subprocess.run(
        [sys.executable, "-c", STEP, str(marker)], env=env, capture_output=True, text=True, timeout=60
    )


def test_a_step_whose_task_is_already_gone_stops_at_once(tmp_path):
    # Not the step's parent (this test is): as if the task had died before the step asked the kernel. It
    # stops before it has started anything, so SIGTERM's default action ends it.
    done = _step(tmp_path, parent=str(os.getpid() + 1_000_000))
    assert done.returncode == -signal.SIGTERM
    assert done.stdout == "" and not (tmp_path / "stopped").exists()


def test_a_step_with_its_task_alive_is_left_alone(tmp_path):
    env = {**os.environ, "TUNERFLOW_PARENT_PID": str(os.getpid())}
    step = subprocess.Popen(
        [sys.executable, "-c", STEP.replace("time.sleep(30)", "time.sleep(2)"), str(tmp_path / "stopped")],
        env=env,
        stdout=subprocess.PIPE,
        text=True,
    )
    output, _ = step.communicate(timeout=60)
    assert step.returncode == 0 and not (tmp_path / "stopped").exists()
    assert "variable left: None" in output


def test_without_the_variable_nothing_changes(tmp_path):
    step = subprocess.Popen(
        [sys.executable, "-c", STEP.replace("time.sleep(30)", "time.sleep(1)"), str(tmp_path / "stopped")],
        env={key: value for key, value in os.environ.items() if key != "TUNERFLOW_PARENT_PID"},
        stdout=subprocess.PIPE,
        text=True,
    )
    step.communicate(timeout=60)
    assert step.returncode == 0 and not (tmp_path / "stopped").exists()
