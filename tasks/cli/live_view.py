"""What the demo's live view shows, as plain data and text: one line per task with its state and duration,
and the step, loss and ETA of the job training now. Rendering only; `live_poll` reads the run."""

from __future__ import annotations

import math
from datetime import datetime

from pydantic import BaseModel, Field


class TaskRow(BaseModel):
    """One task instance of the run."""

    task: str = Field(description="Task id, with `[map index]` for a mapped task.")
    state: str = Field(description="Airflow's state of the task instance (`none` before it is scheduled).")
    started: datetime | None = Field(None, description="When it started, if it has.")
    ended: datetime | None = Field(None, description="When it ended, if it has.")


class TrainingProgress(BaseModel):
    """The job training now, from the last record of its metrics.jsonl."""

    label: str = Field(description="`dataset|model|hparams` of the job.")
    step: int = Field(description="Optimizer steps done.")
    max_steps: int | None = Field(None, description="Steps the job will take, when known.")
    loss: float | None = Field(None, description="Training loss at `step`.")
    elapsed_s: float = Field(description="Training seconds so far, over every try of the job.")


class Snapshot(BaseModel):
    """The run as one poll saw it."""

    run_id: str | None = Field(None, description="The DAG run, once Airflow created it.")
    tasks: list[TaskRow] = Field(default_factory=list, description="Every task instance, in graph order.")
    training: list[TrainingProgress] = Field(default_factory=list, description="Jobs training now.")


def duration(seconds: float | None) -> str:
    """`42s`, `3m05s`, `1h02m`: short enough for a table cell; `-` when unknown."""
    if seconds is None or math.isnan(seconds) or seconds < 0:
        return "-"
    seconds = round(seconds)
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


def task_seconds(row: TaskRow, now: datetime) -> float | None:
    """How long the task ran, or has been running."""
    if row.started is None:
        return None
    return ((row.ended or now) - row.started).total_seconds()


def eta_seconds(progress: TrainingProgress) -> float | None:
    """Seconds left at the job's mean pace so far; None before the first step or without max_steps."""
    if not progress.max_steps or progress.step <= 0:
        return None
    return max(progress.max_steps - progress.step, 0) * progress.elapsed_s / progress.step


def task_line(row: TaskRow, now: datetime) -> str:
    return f"{row.task:<28} {row.state:<16} {duration(task_seconds(row, now)):>7}"


def training_line(progress: TrainingProgress) -> str:
    steps = f"{progress.step}/{progress.max_steps}" if progress.max_steps else str(progress.step)
    loss = f"{progress.loss:.4f}" if progress.loss is not None else "-"
    return f"training {progress.label}: step {steps}  loss {loss}  ETA {duration(eta_seconds(progress))}"


def snapshot_lines(snapshot: Snapshot, now: datetime) -> list[str]:
    """The whole view as text lines: what the rich table shows, and what a plain log gets at the end."""
    head = f"run {snapshot.run_id}" if snapshot.run_id else "waiting for Airflow to create the run..."
    return [head, *(task_line(row, now) for row in snapshot.tasks), *map(training_line, snapshot.training)]


def changes(before: Snapshot, after: Snapshot, now: datetime) -> list[str]:
    """Plain lines for what changed between two polls: a log (CI) gets each change once, not a redraw."""
    lines = []
    if after.run_id and after.run_id != before.run_id:
        lines.append(f"run {after.run_id}")
    seen = {row.task: row.state for row in before.tasks}
    lines += [task_line(row, now) for row in after.tasks if seen.get(row.task, "none") != row.state]
    steps = {progress.label: progress.step for progress in before.training}
    lines += [training_line(p) for p in after.training if steps.get(p.label) != p.step]
    return lines
