"""Faults on the session's real `airflow standalone` (tests/fixtures/airflow_standalone.py): a training
subprocess killed with SIGKILL mid-run, and two experiments on the same dataset and model started at once.

Two runs of one small conf are triggered back to back, differing only in their experiment name: `KILLED`,
whose training subprocess this module kills once it has committed a checkpoint, and its twin `TWIN`, left
alone. The killed run must end with the twin's leaderboard (its training resumed from the committed
checkpoint instead of starting over); the two experiments, started at once, must share one prepared
dataset version.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import time
from pathlib import Path

import psutil
import pytest

from tasks.storage import layout, store
from tests.fixtures.airflow_standalone import tiny_run_conf, wait_gone
from tests.fixtures.leaderboards import assert_same_board

pytestmark = pytest.mark.slow

KILLED = "fault-kill"
TWIN = "fault-twin"
RUNS = (KILLED, TWIN)
MAX_STEPS = 30
SAVE_STEPS = 5
CHECKPOINT_TIMEOUT_S = 600


def fault_conf(model_dir: Path, name: str) -> dict:
    """One training job long enough to be killed between two checkpoints, saving every SAVE_STEPS."""
    hparams = [{"name": "a", "preset": "lora-fast", "max_steps": MAX_STEPS, "save_steps": SAVE_STEPS}]
    return {**tiny_run_conf(model_dir), "name": name, "hparams": hparams}


def _train_processes(run_dir: Path) -> list[psutil.Process]:
    """The `python -m tasks.train` processes whose job spec lies under this run's store prefix."""
    found = []
    for process in psutil.process_iter():
        with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            command = process.cmdline()
            if "tasks.train" in command and any(str(run_dir) in part for part in command):
                found.append(process)
    return found


def _committed_steps(checkpoints: Path) -> list[int]:
    return sorted(
        int(child.name.removeprefix("checkpoint-"))
        for child in checkpoints.glob("checkpoint-*")
        if (child / store.MANIFEST).exists()
    )


def _first_checkpoint(airflow, name: str, run_id: str) -> tuple[Path, list[psutil.Process]]:
    """(the job's checkpoints directory, its training processes) once the run's training has committed a
    checkpoint and is still running."""
    run_dir = store.local_path(layout.run(airflow.store_root, name, run_id))
    deadline = time.monotonic() + CHECKPOINT_TIMEOUT_S
    while time.monotonic() < deadline:
        manifests = sorted(run_dir.glob("jobs/*/checkpoints/checkpoint-*/manifest.json"))
        processes = _train_processes(run_dir)
        if manifests and processes:
            return manifests[0].parent.parent, processes
        assert airflow.run(run_id)["state"] in ("queued", "running"), airflow.logs(run_id)
        time.sleep(0.05)
    pytest.fail(f"no committed checkpoint within {CHECKPOINT_TIMEOUT_S}s\n{airflow.logs(run_id)}")


def _kill_after_first_checkpoint(airflow, run_id: str) -> dict:
    """SIGKILL the run's training subprocess as soon as a checkpoint of its job is committed."""
    checkpoints, processes = _first_checkpoint(airflow, KILLED, run_id)
    for process in processes:
        os.kill(process.pid, signal.SIGKILL)
    killed_at = time.time()
    psutil.wait_procs(processes, timeout=30)
    return {
        "pids": [p.pid for p in processes],
        "killed_at": killed_at,
        "job_dir": checkpoints.parent,
        "committed_at_kill": _committed_steps(checkpoints),
    }


@pytest.fixture(scope="module")
def fault_runs(airflow_server, tiny_model_dir) -> dict:
    """The killed run and its undisturbed twin, triggered back to back and run to their end."""
    run_ids = {}
    for name in RUNS:
        response = airflow_server.trigger(fault_conf(tiny_model_dir, name))
        assert response.status_code == 200, response.text
        run_ids[name] = response.json()["dag_run_id"]
    started = time.monotonic()
    kill = _kill_after_first_checkpoint(airflow_server, run_ids[KILLED])
    states = {name: airflow_server.wait_for(run_id) for name, run_id in run_ids.items()}
    return {"run_ids": run_ids, "states": states, "kill": kill, "elapsed_s": time.monotonic() - started}


def _board(airflow, name: str, run_id: str) -> dict:
    return store.read_json(store.join(layout.run(airflow.store_root, name, run_id), "leaderboard.json"))


def _prepared(airflow, run_id: str) -> dict:
    """The committed PreparedDataset the run's (mapped) prepare_dataset task returned."""
    path = f"{airflow.run_path(run_id)}/taskInstances/prepare_dataset/xcomEntries/return_value"
    response = airflow.http.get(path, params={"map_index": 0})
    response.raise_for_status()
    return response.json()["value"]


def _task_log(airflow, run_id: str, task_id: str, attempt: int, map_index: int = 0) -> str:
    where = airflow.home / "logs" / "dag_id=finetune_experiment" / f"run_id={run_id}" / f"task_id={task_id}"
    log = where / f"map_index={map_index}" / f"attempt={attempt}.log"
    return log.read_text(errors="replace") if log.exists() else ""


def test_a_killed_training_resumes_from_its_last_committed_checkpoint(airflow_server, fault_runs):
    run_id, kill = fault_runs["run_ids"][KILLED], fault_runs["kill"]
    assert fault_runs["states"][KILLED] == "success", airflow_server.logs(run_id)
    committed = kill["committed_at_kill"]
    assert committed, "the kill came before any checkpoint was committed"
    assert committed[-1] < MAX_STEPS, "the training had finished before it was killed"

    # The try that was killed failed, the retry succeeded.
    assert airflow_server.task_states(run_id)["train"] == ["success"]
    [train_ti] = [ti for ti in airflow_server.task_instances(run_id) if ti["task_id"] == "train"]
    assert train_ti["try_number"] == 2, train_ti

    job_dir = kill["job_dir"]
    result = store.read_json(str(job_dir / "train" / store.MANIFEST))["result"]
    # The retry resumed from the newest checkpoint committed when the process died: what was lost is
    # what the killed try trained after it, less than one save interval.
    assert result["resumed_from_step"] == committed[-1], (result, committed)
    assert result["steps"] == MAX_STEPS
    retry_log = _task_log(airflow_server, run_id, "train", attempt=2)
    assert f"resuming from checkpoint-{committed[-1]} (step {committed[-1]})" in retry_log
    newest = job_dir / "checkpoints" / f"checkpoint-{result['checkpoints']['steps'][-1]}"
    state = json.loads((newest / "trainer_state.json").read_text())
    assert state["global_step"] == MAX_STEPS

    # Nothing half-written is left: every checkpoint directory kept has its manifest.
    for directory in (job_dir / "checkpoints").glob("checkpoint-*"):
        assert (directory / store.MANIFEST).exists(), directory

    assert_same_board(
        _board(airflow_server, KILLED, run_id), _board(airflow_server, TWIN, fault_runs["run_ids"][TWIN])
    )
    recovered_at = (job_dir / "train" / store.MANIFEST).stat().st_mtime
    print(
        f"\nkilled pids {kill['pids']} with checkpoints {committed} committed; resumed from step "
        f"{result['resumed_from_step']}; train committed {recovered_at - kill['killed_at']:.0f}s after the "
        f"kill; both runs took {fault_runs['elapsed_s']:.0f}s"
    )


def test_two_experiments_at_once_prepare_the_dataset_once(airflow_server, fault_runs):
    run_ids = [fault_runs["run_ids"][name] for name in RUNS]
    for name, run_id in zip(RUNS, run_ids, strict=True):
        assert fault_runs["states"][name] == "success", airflow_server.logs(run_id)

    results = [_prepared(airflow_server, run_id) for run_id in run_ids]
    assert results[0]["uri"] == results[1]["uri"]
    assert results[0]["version"] == results[1]["version"]

    # One committed version of the dataset in the store, no claim or half-written version beside it.
    datasets = store.local_path(store.join(airflow_server.store_root, "datasets", "tuna"))
    versions = sorted(child.name for child in datasets.iterdir())
    assert versions == [results[0]["version"]], versions
    assert (datasets / versions[0] / store.MANIFEST).exists()

    # Of the two runs on it, at most one prepared it (none where an earlier test of the session did); the
    # other found the committed version and did not prepare it again.
    logs = [_task_log(airflow_server, run_id, "prepare_dataset", attempt=1) for run_id in run_ids]
    skipped = ["output already committed" in log for log in logs]
    assert skipped.count(False) <= 1, skipped


# -- the scheduler killed mid-training ---------------------------------------------------------------

SCHEDULER_KILLED = "fault-scheduler"
# How long the orphaned training may take to commit its checkpoint and exit once its task is gone.
ORPHAN_STOP_S = 120
# The restarted scheduler looks for the dead one's tasks every 10 s instead of 300 s: a test need not
# wait five minutes for what a deployment would also do.
RESTART_SETTINGS = {"AIRFLOW__SCHEDULER__ORPHANED_TASKS_CHECK_INTERVAL": "10"}


def _commits(*folders: Path) -> dict[str, tuple[int, int]]:
    """Every committed output under `folders`: its manifest's path -> (inode, mtime): a commit made again
    writes a new manifest file (a temp file renamed over it), so either changes."""
    found = {}
    for folder in folders:
        for manifest in folder.rglob(store.MANIFEST):
            stat = manifest.stat()
            found[str(manifest)] = (stat.st_ino, stat.st_mtime_ns)
    return found


@pytest.fixture(scope="module")
def scheduler_killed(airflow_server, tiny_model_dir, fault_runs) -> dict:
    """A run whose scheduler is SIGKILLed with everything under it once its training has committed a
    checkpoint; the training subprocess is left to notice; a new scheduler is started at once."""
    response = airflow_server.trigger(fault_conf(tiny_model_dir, SCHEDULER_KILLED))
    assert response.status_code == 200, response.text
    run_id = response.json()["dag_run_id"]
    started = time.monotonic()
    checkpoints, _ = _first_checkpoint(airflow_server, SCHEDULER_KILLED, run_id)
    datasets = store.local_path(store.join(airflow_server.store_root, "datasets"))
    run_dir = checkpoints.parent.parent.parent
    before = _commits(run_dir, datasets)
    committed_at_kill = _committed_steps(checkpoints)
    killed_at = time.monotonic()
    killed, orphans = airflow_server.kill_scheduler(spare="tasks.train")
    airflow_server.start_scheduler(**RESTART_SETTINGS)
    alive = wait_gone(orphans, timeout_s=ORPHAN_STOP_S)
    assert not alive, f"the orphaned training did not stop within {ORPHAN_STOP_S}s: {alive}"
    orphan_stopped_s = time.monotonic() - killed_at
    committed_by_orphan = _committed_steps(checkpoints)
    # What the orphan said as it stopped, before the retry's reset removes it.
    error = checkpoints.parent / "train" / "error.json"
    orphan_error = json.loads(error.read_text()) if error.exists() else None
    state = airflow_server.wait_for(run_id)
    return {
        "run_id": run_id,
        "state": state,
        "killed": killed,
        "orphans": [p.pid for p in orphans],
        "job_dir": checkpoints.parent,
        "datasets": datasets,
        "before": before,
        "committed_at_kill": committed_at_kill,
        "committed_by_orphan": committed_by_orphan,
        "orphan_error": orphan_error,
        "orphan_stopped_s": orphan_stopped_s,
        "recovered_s": time.monotonic() - killed_at,
        "elapsed_s": time.monotonic() - started,
    }


def test_a_scheduler_killed_mid_training_and_restarted_completes_the_run(
    airflow_server, fault_runs, scheduler_killed
):
    run = scheduler_killed
    run_id, job_dir = run["run_id"], run["job_dir"]
    assert run["state"] == "success", airflow_server.logs(run_id)
    assert len(run["killed"]) >= 3, run["killed"]  # the scheduler, a LocalExecutor worker, a supervisor...
    assert run["orphans"], "the training subprocess was not running when the scheduler was killed"

    # The orphaned training checkpointed when its task died (at the next step boundary) and stopped; the
    # train task ran again and resumed from that checkpoint: nothing trained after the kill was lost.
    at_kill, by_orphan = run["committed_at_kill"], run["committed_by_orphan"]
    assert by_orphan and by_orphan[-1] >= at_kill[-1], (at_kill, by_orphan)
    if by_orphan[-1] > at_kill[-1]:  # else the retry's reset came first; the result below still holds
        message = (run["orphan_error"] or {}).get("message", "")
        assert f"preempted at step {by_orphan[-1]}; checkpoint-{by_orphan[-1]} committed" in message, run
    [train_ti] = [ti for ti in airflow_server.task_instances(run_id) if ti["task_id"] == "train"]
    assert train_ti["state"] == "success" and train_ti["try_number"] >= 2, train_ti
    result = store.read_json(str(job_dir / "train" / store.MANIFEST))["result"]
    assert result["resumed_from_step"] == by_orphan[-1], (result, by_orphan)
    assert result["steps"] == MAX_STEPS
    newest = job_dir / "checkpoints" / f"checkpoint-{result['checkpoints']['steps'][-1]}"
    history = json.loads((newest / "trainer_state.json").read_text())["log_history"]
    logged = [entry["step"] for entry in history if "loss" in entry]
    assert logged == sorted(set(logged)), logged  # no step trained twice

    # No output committed before the kill was committed again (a checkpoint may have been pruned since).
    after = _commits(job_dir.parent.parent, run["datasets"])
    again = [path for path, stamp in run["before"].items() if path in after and after[path] != stamp]
    assert again == [], again
    for directory in (job_dir / "checkpoints").glob("checkpoint-*"):
        assert (directory / store.MANIFEST).exists(), directory

    assert_same_board(
        _board(airflow_server, SCHEDULER_KILLED, run_id),
        _board(airflow_server, TWIN, fault_runs["run_ids"][TWIN]),
    )
    print(
        f"\nkilled {len(run['killed'])} processes (scheduler and everything under it) with checkpoints "
        f"{at_kill} committed; the orphaned training committed {by_orphan} and stopped "
        f"{run['orphan_stopped_s']:.0f}s after the kill; train try {train_ti['try_number']} resumed from "
        f"step {result['resumed_from_step']}; the run succeeded {run['recovered_s']:.0f}s after the kill "
        f"({run['elapsed_s']:.0f}s in all)"
    )
