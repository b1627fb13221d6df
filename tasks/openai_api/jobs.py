"""Fine-tuning jobs: the record kept per job, and the Job object built from it, its DAG run and the store.

A job's id is its DAG run's id (`ftjob-<hex>`), so the run needs no other link. What the run cannot
say is kept under `<root>/openai_api/jobs/<job id>/`: `job.json` (the request, the conf it became, the
resolved hyperparameters, created_at; written once, before the run is triggered, and removed again
when Airflow refuses the run) and `cancelled.json` (written by cancel, so the job reads `cancelled`
even though Airflow records the run as failed).

Status: cancelled when cancelled.json is there; else from the run: queued (run queued, or not yet
visible in Airflow), validating_files (running, before training starts: conf checks and data
preparation), running (a train task has started), succeeded (run success), failed (run failed, or no
run long after the request).
"""

from __future__ import annotations

import contextlib
import re
import secrets
import time
from typing import Any

from tasks.openai_api import files
from tasks.openai_api.objects import ApiError, FineTuningJob, JobError, JobStatus, not_found
from tasks.openai_api.requests import CreateJobRequest
from tasks.openai_api.runs import (
    RunState,
    metrics_records,
    registered_version,
    run_uri,
    seconds,
    step_error,
    train_prefix,
    trained_tokens,
)
from tasks.storage import layout, store

JOB_ID = re.compile(r"^ftjob-[a-z0-9]{1,64}$")
# How long a job may wait for its DAG run to show in Airflow before it reads failed.
NO_RUN_GRACE_S = 120
TRAIN_TASK = re.compile(r"^(round_\d+\.)?train$")
STARTED = {"running", "success", "failed", "up_for_retry", "up_for_reschedule", "restarting"}


def jobs_prefix(root: str) -> str:
    return store.join(root, "openai_api", "jobs")


def job_prefix(root: str, job_id: str) -> str:
    return store.join(jobs_prefix(root), job_id)


def new_id() -> str:
    return f"ftjob-{secrets.token_hex(12)}"


def save(
    root: str, job_id: str, request: CreateJobRequest, conf: dict[str, Any], hyper: Any, seed: int
) -> dict[str, Any]:
    """Record a job before its run is triggered; returns the record."""
    record = {
        "id": job_id,
        "created_at": int(time.time()),
        "seed": seed,
        "request": request.model_dump(mode="json", exclude_none=True),
        "conf": conf,
        "hyperparameters": hyper.model_dump(mode="json"),
    }
    store.create_json(store.join(job_prefix(root, job_id), "job.json"), record)
    return record


def forget(root: str, job_id: str) -> None:
    """Drop the record of a job whose run Airflow refused."""
    store.remove(job_prefix(root, job_id))


def load(root: str, job_id: str) -> dict[str, Any]:
    """A job's record; 404 ApiError for an id this API never created."""
    uri = store.join(job_prefix(root, job_id), "job.json")
    if not JOB_ID.match(job_id) or not store.exists(uri):
        raise not_found("fine-tuning job", job_id, "fine_tuning_job_id")
    return store.read_json(uri)


def cancelled_at(root: str, job_id: str) -> int | None:
    uri = store.join(job_prefix(root, job_id), "cancelled.json")
    return store.read_json(uri)["cancelled_at"] if store.exists(uri) else None


def _record_cancel(uri: str) -> None:
    """Write the cancel's time at `uri` once (a second cancel keeps the first time)."""
    with contextlib.suppress(FileExistsError):
        store.create_json(uri, {"cancelled_at": int(time.time())})


def stop_at_start(root: str, record: dict[str, Any]) -> None:
    """Record in the job's DAG run that it is cancelled, before Airflow is told: a run the scheduler starts
    after all (it can write back a queued run's state over the cancel) stops at validate_conf."""
    _record_cancel(layout.cancel_request(layout.run(root, record["conf"]["name"], record["id"])))


def mark_cancelled(root: str, job_id: str) -> None:
    """Record the cancel once (a second cancel keeps the first time)."""
    _record_cancel(store.join(job_prefix(root, job_id), "cancelled.json"))


def ids(root: str) -> list[str]:
    """Every job's id, newest first."""
    found = []
    for name in store.list_dir(jobs_prefix(root)):
        uri = store.join(job_prefix(root, name), "job.json")
        if JOB_ID.match(name) and store.exists(uri):
            found.append((store.read_json(uri)["created_at"], name))
    return [name for _, name in sorted(found, reverse=True)]


def check_cancellable(status: str, job_id: str) -> None:
    if status in ("succeeded", "failed", "cancelled"):
        raise ApiError(
            f"fine_tuning_job_id: job '{job_id}' is already {status} and cannot be cancelled",
            param="fine_tuning_job_id",
            code="job_not_cancellable",
        )


def status_of(
    record: dict[str, Any], run: RunState, cancelled: int | None, now: float | None = None
) -> JobStatus:
    if cancelled is not None:
        return "cancelled"
    if run.state is None:
        waited = (now or time.time()) - record["created_at"]
        return "queued" if waited < NO_RUN_GRACE_S else "failed"
    if run.state == "success":
        return "succeeded"
    if run.state == "failed":
        return "failed"
    if run.state == "queued":
        return "queued"
    training = any(TRAIN_TASK.match(t.task_id) and t.state in STARTED for t in run.tasks)
    return "running" if training else "validating_files"


def _error(root: str, record: dict[str, Any], run: RunState) -> JobError:
    if run.state is None:
        return JobError(code="no_run", message="Airflow has no DAG run for this job; it was never started")
    message = step_error(run_uri(root, record))
    failed = sorted(
        (t for t in run.tasks if t.state == "failed"), key=lambda t: (t.end_date or "", t.task_id)
    )
    task = failed[0].task_id if failed else None
    if message is None:
        message = (
            f"task {task} failed; its log in Airflow says why" if task else "the DAG run failed in Airflow"
        )
    return JobError(code=f"{task}_failed" if task else "run_failed", message=message)


def job_object(root: str, record: dict[str, Any], run: RunState, now: float | None = None) -> FineTuningJob:
    """The Job object of a job from its record, its DAG run and the store."""
    request = record["request"]
    job_id = record["id"]
    cancelled = cancelled_at(root, job_id)
    status = status_of(record, run, cancelled, now)
    method = request.get("method") or {"type": "supervised"}
    kind = method["type"]
    hyper = {k: v for k, v in record["hyperparameters"].items() if v is not None}
    method = {"type": kind, kind: {"hyperparameters": hyper}}
    prefix = train_prefix(run_uri(root, record)) if run.state is not None else None
    result_files = []
    if status == "succeeded" and prefix and metrics_records(prefix):
        result_files.append(files.results_file(root, job_id, store.join(prefix, "metrics.jsonl")))
    finished = seconds(run.end_date) if status in ("succeeded", "failed") else None
    if status == "cancelled":
        finished = cancelled
    return FineTuningJob(
        id=job_id,
        created_at=record["created_at"],
        error=_error(root, record, run) if status == "failed" else None,
        fine_tuned_model=registered_version(root, record) if run.state is not None else None,
        finished_at=finished,
        hyperparameters={k: v for k, v in hyper.items() if k != "beta"},
        model=request["model"],
        result_files=result_files,
        seed=record["seed"],
        status=status,
        trained_tokens=trained_tokens(prefix),
        training_file=request["training_file"],
        validation_file=request.get("validation_file"),
        metadata=request.get("metadata"),
        method=method,
        user_provided_suffix=request.get("suffix"),
    )
