"""What the demo's live view reads while the run goes on: the task states of the run from Airflow's
metadata DB, and the progress of each job training now from its metrics.jsonl in the store."""

from __future__ import annotations

import json
from typing import Any

from tasks.cli.live_view import Snapshot, TaskRow, TrainingProgress
from tasks.contracts.train import TrainSpec
from tasks.pipeline.plan import planned
from tasks.storage import layout, store


def last_records(text: str) -> tuple[dict[str, Any], dict[str, Any]] | None:
    """(the last record, the last one with a training loss) of a metrics.jsonl; None before the first.

    The file grows while it is read: a last line cut mid-write is not a record yet."""
    records = []
    for line in text.splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    with_loss = [record for record in records if "loss" in record]
    return (records[-1], with_loss[-1]) if with_loss else None


def total_steps(spec: TrainSpec, record: dict[str, Any]) -> int | None:
    """The job's optimizer steps: `max_steps`, or epochs x the steps per epoch seen so far."""
    if spec.hparams.max_steps and spec.hparams.max_steps > 0:
        return spec.hparams.max_steps
    epoch, step = record.get("epoch") or 0, record.get("step") or 0
    return round(step / epoch * spec.hparams.epochs) if epoch > 0 else None


def job_progress(train_prefix: str, spec: TrainSpec, label: str) -> TrainingProgress | None:
    """A job still training (metrics written, no manifest or error yet), from its last records."""
    done = any(store.exists(store.join(train_prefix, name)) for name in ("manifest.json", "error.json"))
    metrics = store.join(train_prefix, "metrics.jsonl")
    if done or not store.exists(metrics):
        return None
    found = last_records(store.backend_for(metrics).read_bytes(metrics).decode("utf-8", "replace"))
    if found is None:
        return None
    last, with_loss = found
    return TrainingProgress(
        label=label,
        step=last.get("step", 0),
        max_steps=total_steps(spec, last),
        loss=with_loss["loss"],
        elapsed_s=last.get("elapsed_s", 0.0),
    )


def training_now(run_uri: str) -> list[TrainingProgress]:
    """Every planned training job of the run that is training now."""
    out = []
    for job in planned(run_uri):
        if job.kind != "train" or job.train_spec is None:
            continue
        spec = TrainSpec.model_validate(store.read_json(job.train_spec))
        progress = job_progress(layout.step(layout.job(run_uri, job.job_id), "train"), spec, job.label)
        if progress is not None:
            out.append(progress)
    return out


def task_label(task_id: str, map_index: int) -> str:
    return task_id if map_index < 0 else f"{task_id}[{map_index}]"


def newest_run_id(dag_id: str) -> int:
    """The id of the DAG's newest run so far (0 when none): a run created later is the demo's."""
    # Airflow's ORM (and SQLAlchemy under it) loads only in the demo, where the embedded Airflow runs.
    from airflow.models.dagrun import DagRun
    from airflow.utils.session import create_session
    from sqlalchemy import func, select  # loaded with the ORM, for the same reason

    with create_session() as session:
        return session.scalar(select(func.max(DagRun.id)).where(DagRun.dag_id == dag_id)) or 0


def read_run(dag_id: str, after_id: int, task_order: list[str]) -> tuple[str | None, list[TaskRow]]:
    """(run id, its task instances in graph order) of the DAG's first run created after `after_id`."""
    # As above: the embedded Airflow's ORM and SQLAlchemy, loaded only by the demo.
    from airflow.models.dagrun import DagRun
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session
    from sqlalchemy import select  # loaded with the ORM, for the same reason

    with create_session() as session:
        run = session.scalars(
            select(DagRun).where(DagRun.dag_id == dag_id, DagRun.id > after_id).order_by(DagRun.id).limit(1)
        ).first()
        if run is None:
            return None, []
        instances = session.scalars(
            select(TaskInstance).where(TaskInstance.dag_id == dag_id, TaskInstance.run_id == run.run_id)
        ).all()
        order = {task: index for index, task in enumerate(task_order)}
        instances = sorted(instances, key=lambda ti: (order.get(ti.task_id, len(order)), ti.map_index))
        rows = [
            TaskRow(
                task=task_label(ti.task_id, ti.map_index),
                state=str(ti.state) if ti.state else "none",
                started=ti.start_date,
                ended=ti.end_date,
            )
            for ti in instances
        ]
        return run.run_id, rows


def snapshot(dag_id: str, after_id: int, task_order: list[str], store_root: str, name: str) -> Snapshot:
    run_id, rows = read_run(dag_id, after_id, task_order)
    training = training_now(layout.run(store_root, name, run_id)) if run_id else []
    return Snapshot(run_id=run_id, tasks=rows, training=training)
