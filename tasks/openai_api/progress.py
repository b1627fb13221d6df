"""A job's events and checkpoints, newest first as OpenAI lists them.

Events: the job's creation, each task's start and end (from the DAG run as Airflow reports it), one
`metrics` event per training record with a loss or a validation loss in the training's metrics.jsonl
(step, train_loss or valid_loss, total_steps; timed from the train task's start plus the record's
`elapsed_s`), and the cancel. Ids derive from what an event reports, so a page's `after` keeps working
while new events arrive.

Checkpoints: the training's committed checkpoints (a manifest written), each with the last losses
logged at or before its step.
"""

from __future__ import annotations

from typing import Any

from tasks.openai_api.jobs import TRAIN_TASK, cancelled_at
from tasks.openai_api.objects import CheckpointMetrics, JobCheckpoint, JobEvent
from tasks.openai_api.runs import (
    RunState,
    TaskState,
    committed_checkpoints,
    metrics_records,
    run_uri,
    seconds,
    train_prefix,
)

FINISHED = {"success": "info", "failed": "error", "upstream_failed": "warn", "skipped": "info"}


def _hex(job_id: str) -> str:
    return job_id.removeprefix("ftjob-")


def _label(task: TaskState) -> str:
    return task.task_id if task.map_index < 0 else f"{task.task_id}[{task.map_index}]"


def task_events(job_id: str, tasks: list[TaskState]) -> list[JobEvent]:
    events = []
    for task in tasks:
        key = f"ftevent-{_hex(job_id)}-{_label(task)}"
        if task.start_date and seconds(task.start_date) is not None:
            events.append(
                JobEvent(
                    id=f"{key}-started",
                    created_at=seconds(task.start_date),
                    message=f"{_label(task)} started",
                )
            )
        if task.state in FINISHED and task.end_date and seconds(task.end_date) is not None:
            events.append(
                JobEvent(
                    id=f"{key}-{task.state}",
                    created_at=seconds(task.end_date),
                    level=FINISHED[task.state],
                    message=f"{_label(task)} {task.state}",
                )
            )
    return events


def metric_events(
    job_id: str, records: list[dict[str, Any]], started: int | None, now: int
) -> list[JobEvent]:
    """One event per record holding a training loss or a validation loss."""
    events = []
    for record in records:
        step = record.get("step")
        if not isinstance(step, int):
            continue
        at = started + int(record.get("elapsed_s") or 0) if started is not None else now
        if isinstance(record.get("loss"), int | float):
            data = {"step": step, "train_loss": record["loss"]}
            for source, key in (
                ("learning_rate", "learning_rate"),
                ("mean_token_accuracy", "train_mean_token_accuracy"),
            ):
                if isinstance(record.get(source), int | float):
                    data[key] = record[source]
            events.append(
                JobEvent(
                    id=f"ftevent-{_hex(job_id)}-step-{step}",
                    created_at=at,
                    message=f"Step {step}: training loss={record['loss']:.4f}",
                    data=data,
                    type="metrics",
                )
            )
        if isinstance(record.get("eval_loss"), int | float):
            events.append(
                JobEvent(
                    id=f"ftevent-{_hex(job_id)}-eval-{step}",
                    created_at=at,
                    message=f"Step {step}: validation loss={record['eval_loss']:.4f}",
                    data={"step": step, "valid_loss": record["eval_loss"]},
                    type="metrics",
                )
            )
    return events


def events(root: str, record: dict[str, Any], run: RunState, now: int) -> list[JobEvent]:
    """Every event of a job so far, newest first."""
    job_id = record["id"]
    found = [
        JobEvent(
            id=f"ftevent-{_hex(job_id)}-created",
            created_at=record["created_at"],
            message="Created fine-tuning job",
        )
    ]
    found += task_events(job_id, run.tasks)
    if run.state is not None:
        train = [t for t in run.tasks if TRAIN_TASK.match(t.task_id) and t.start_date]
        started = min((seconds(t.start_date) for t in train), default=None)
        found += metric_events(job_id, metrics_records(train_prefix(run_uri(root, record))), started, now)
    cancelled = cancelled_at(root, job_id)
    if cancelled is not None:
        found.append(
            JobEvent(id=f"ftevent-{_hex(job_id)}-cancelled", created_at=cancelled, message="Job cancelled")
        )
    # Stable order: by time, then by the order they were found in (creation, tasks, steps).
    ordered = sorted(enumerate(found), key=lambda pair: (pair[1].created_at, pair[0]), reverse=True)
    return [event for _, event in ordered]


def _last(records: list[dict[str, Any]], key: str, step: int) -> float | None:
    values = [r[key] for r in records if isinstance(r.get(key), int | float) and (r.get("step") or 0) <= step]
    return values[-1] if values else None


def checkpoint_list(root: str, record: dict[str, Any]) -> list[JobCheckpoint]:
    """The job's committed checkpoints, newest first, with the losses logged by their step."""
    prefix = train_prefix(run_uri(root, record))
    records = metrics_records(prefix)
    listed = []
    for checkpoint in committed_checkpoints(prefix):
        step = checkpoint.step
        metrics = CheckpointMetrics(
            step=step,
            train_loss=_last(records, "loss", step),
            valid_loss=_last(records, "eval_loss", step),
            train_mean_token_accuracy=_last(records, "mean_token_accuracy", step),
            valid_mean_token_accuracy=_last(records, "eval_mean_token_accuracy", step),
        )
        listed.append(
            JobCheckpoint(
                id=f"ftckpt-{_hex(record['id'])}-{step}",
                created_at=seconds(checkpoint.committed_at) or record["created_at"],
                fine_tuned_model_checkpoint=checkpoint.uri,
                fine_tuning_job_id=record["id"],
                metrics=metrics,
                step_number=step,
            )
        )
    return listed[::-1]
