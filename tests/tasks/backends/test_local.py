from __future__ import annotations

import json
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
