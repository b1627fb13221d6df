from __future__ import annotations

import json
import subprocess
import sys
import threading
import time

import pytest

from tasks.backends.local import StepFailed, machine_slot, run_step
from tasks.pipeline.plan import step_argv
from tasks.storage import store


def test_run_step_returns_the_json_result_line(tmp_path):
    spec_uri = store.to_uri(tmp_path / "spec.json")
    store.write_json(
        spec_uri, {"store_root": tmp_path.as_uri(), "dataset": {"name": "t", "uri": "builtin:tuna_identity"}}
    )
    result = run_step(step_argv("prepare_dataset", spec_uri))
    assert result["name"] == "t" and result["counts"]["train"] > 0


def test_a_failing_step_raises_with_the_steps_own_reason(tmp_path):
    spec_uri = store.to_uri(tmp_path / "spec.json")
    store.write_json(
        spec_uri, {"store_root": tmp_path.as_uri(), "dataset": {"name": "t", "uri": "builtin:nope"}}
    )
    with pytest.raises(StepFailed, match="no builtin dataset of that name") as failure:
        run_step(step_argv("prepare_dataset", spec_uri))
    assert failure.value.retryable is False  # the same input fails the same way: not worth a retry


def test_an_interrupted_step_is_retryable(tmp_path):
    spec_uri = store.to_uri(tmp_path / "spec.json")
    output = store.to_uri(tmp_path / "out")
    store.write_json(spec_uri, {"output": output})
    killed = "import os, signal; os.kill(os.getpid(), signal.SIGKILL)"
    with pytest.raises(StepFailed, match="exit -9") as failure:
        run_step(["python", "-c", killed, "--job", spec_uri])
    assert failure.value.retryable is True
    preempted = (
        "from tasks.storage import store; "
        f"store.write_json('{output}/error.json', "
        "{'type': 'Preempted', 'message': 'preempted at step 4'}); "
        "raise SystemExit(1)"
    )
    with pytest.raises(StepFailed, match="preempted at step 4") as failure:
        run_step(["python", "-c", preempted, "--job", spec_uri])
    assert failure.value.retryable is True


@pytest.mark.parametrize(
    ("error", "retryable"),
    [("StoreUnavailable", True), ("NoSpace", True), ("StoreError", False), ("ValueError", False)],
)
def test_a_store_that_did_not_answer_or_is_full_is_worth_a_retry(tmp_path, error, retryable):
    spec_uri = store.to_uri(tmp_path / "spec.json")
    output = store.to_uri(tmp_path / "out")
    store.write_json(spec_uri, {"output": output})
    failing = (
        "from tasks.storage import store; "
        f"store.write_json('{output}/error.json', {{'type': '{error}', 'message': 'the store said no'}}); "
        "raise SystemExit(1)"
    )
    with pytest.raises(StepFailed, match="the store said no") as failure:
        run_step(["python", "-c", failing, "--job", spec_uri])
    assert failure.value.retryable is retryable


def test_machine_slots_serialise_heavy_steps(tmp_path, monkeypatch):
    monkeypatch.setenv("TUNERFLOW_LOCK_DIR", str(tmp_path))
    monkeypatch.setenv("TUNERFLOW_LOCAL_SLOTS", "1")
    spans = []

    def hold():
        with machine_slot():
            start = time.monotonic()
            time.sleep(0.3)
            spans.append((start, time.monotonic()))

    threads = [threading.Thread(target=hold) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    (_, a_end), (b_start, _) = sorted(spans)
    assert b_start >= a_end, json.dumps(spans)


# A step that starts, then on SIGTERM "checkpoints" for 2 s, writes when it stopped and exits as preempted.
ORPHANED_STEP = """
import pathlib, signal, sys, time
from tasks.runtime import orphan
orphan.stop_with_parent()
folder = pathlib.Path(sys.argv[1])
def stopped(signum, frame):
    print("checkpointing", flush=True)  # the task's end of the pipe is gone: this must not raise
    time.sleep(2)
    (folder / "stopped_at").write_text(repr(time.time()))
    raise SystemExit(1)
signal.signal(signal.SIGTERM, stopped)
(folder / "started").write_text("")
time.sleep(60)
"""


def test_a_step_whose_task_is_killed_stops_and_holds_the_slot_until_it_has(tmp_path, monkeypatch):
    """SIGKILL to the task process (as when its scheduler or worker dies with it): the step is told to stop,
    and the slot is not free for the task's retry until the step has exited."""
    monkeypatch.setenv("TUNERFLOW_LOCK_DIR", str(tmp_path / "locks"))
    monkeypatch.setenv("TUNERFLOW_LOCAL_SLOTS", "1")
    spec_uri = store.to_uri(tmp_path / "spec.json")
    task = (
        "import sys; from tasks.backends.local import run_step; "
        "run_step(['python', '-c', sys.argv[1], sys.argv[2], '--job', sys.argv[3]])"
    )
    process = subprocess.Popen([sys.executable, "-c", task, ORPHANED_STEP, str(tmp_path), spec_uri])
    deadline = time.monotonic() + 60
    while not (tmp_path / "started").exists():
        assert process.poll() is None and time.monotonic() < deadline, "the step never started"
        time.sleep(0.05)
    process.kill()
    process.wait()

    with machine_slot():
        acquired_at = time.time()
    assert (tmp_path / "stopped_at").exists(), "the orphaned step was not told to stop"
    assert acquired_at >= float((tmp_path / "stopped_at").read_text())
