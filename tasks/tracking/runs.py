"""The MLflow runs of one experiment run: a parent run, and a nested run per job, found again by tags.

Keys come from the store, never from a try: the parent is the run tagged `tunerflow.run_uri=<run prefix>`
and `tunerflow.kind=experiment`, a job's run the one tagged with the same run prefix and
`tunerflow.job_id=<job>`. A job run is written whole and then tagged `tunerflow.logged=true` (the last
write, as a manifest is); a retry reuses a run so tagged and deletes one without the tag (an earlier try
died half-way) before writing it again, so no metric is logged twice. The parent's params, tags and
artifacts are the same on every try, and are written again.

`client` is an `mlflow.MlflowClient`; mlflow itself is imported by the caller (`tasks.tracking.track`).
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

from tasks.storage import store
from tasks.tracking.collect import JobRecord, RunRecord
from tasks.tracking.connection import TrackingError

TAG_RUN = "tunerflow.run_uri"
TAG_JOB = "tunerflow.job_id"
TAG_KIND = "tunerflow.kind"
TAG_DONE = "tunerflow.logged"
PARENT_TAG = "mlflow.parentRunId"
NOTE_TAG = "mlflow.note.content"
# MLflow's limits on one log_batch call, and on a tag's value (3.x: 8000).
BATCH_PARAMS, BATCH_METRICS, TAG_MAX = 100, 1000, 5000


def _filter(tags: dict[str, str]) -> str:
    for value in tags.values():
        if "'" in value:
            raise TrackingError(f"a tunerflow key holds a quote, which MLflow's filters cannot take: {value}")
    return " and ".join(f"tags.`{key}` = '{value}'" for key, value in tags.items())


def find_runs(client: Any, experiment_id: str, tags: dict[str, str]) -> list[Any]:
    """The active runs of the experiment carrying every given tag, oldest first."""
    found = client.search_runs([experiment_id], filter_string=_filter(tags), max_results=1000)
    return sorted(found, key=lambda run: run.info.start_time or 0)


def experiment_id(client: Any, name: str) -> str:
    """The MLflow experiment `name` (created, or restored when deleted)."""
    # mlflow is installed wherever this runs (the caller imported it); its error type is needed here.
    from mlflow.exceptions import MlflowException

    found = client.get_experiment_by_name(name)
    if found is None:
        try:
            return client.create_experiment(name, tags={"tunerflow": "true"})
        except MlflowException:  # created in between by a concurrent run of the same experiment
            found = client.get_experiment_by_name(name)
            if found is None:
                raise
    if found.lifecycle_stage == "deleted":
        client.restore_experiment(found.experiment_id)
    return found.experiment_id


def _chunks(items: list[Any], size: int) -> Iterable[list[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def log_params(client: Any, run_id: str, params: dict[str, str]) -> None:
    from mlflow.entities import Param  # see experiment_id: mlflow is there when this runs

    for chunk in _chunks([Param(k, v) for k, v in sorted(params.items())], BATCH_PARAMS):
        client.log_batch(run_id, params=chunk)


def log_metrics(client: Any, run_id: str, points: list[tuple[str, float, int]]) -> None:
    """(key, value, step) points, with one timestamp: the order of a history is its step."""
    from mlflow.entities import Metric  # see experiment_id: mlflow is there when this runs

    now = int(time.time() * 1000)
    metrics = [Metric(key, value, now, step) for key, value, step in points]
    for chunk in _chunks(metrics, BATCH_METRICS):
        client.log_batch(run_id, metrics=chunk)


def parent_run(client: Any, exp_id: str, record: RunRecord, airflow: dict[str, str]) -> str:
    """The run's parent MLflow run (found by its tags, else created) with params, tags and artifacts."""
    keys = {TAG_RUN: record.run_uri, TAG_KIND: "experiment"}
    found = find_runs(client, exp_id, keys)
    tags = {
        **keys,
        "tunerflow.experiment": record.experiment,
        **{f"airflow.{key}": value for key, value in airflow.items()},
        **({"tunerflow.winner": record.winner} if record.winner else {}),
    }
    if found:
        run_id = found[0].info.run_id
        for key, value in tags.items():
            client.set_tag(run_id, key, value)
    else:
        name = f"{record.experiment} {airflow.get('run_id', '')}".strip()
        run_id = client.create_run(exp_id, run_name=name, tags=tags).info.run_id
    log_params(client, run_id, record.params)
    logged = client.get_run(run_id).data.metrics
    winner = [(f"winner.{k}", v, 0) for k, v in record.winner_metrics.items() if f"winner.{k}" not in logged]
    log_metrics(client, run_id, winner)
    for artifact in record.artifacts:
        client.log_artifact(run_id, str(store.fetch_file(artifact.uri)), artifact.path or None)
    return run_id


def finish_parent(client: Any, run_id: str, record: RunRecord) -> None:
    """FINISHED when the run has a winner, FAILED when it shipped nothing."""
    client.set_terminated(run_id, "FINISHED" if record.winner else "FAILED")


def _job_points(job: JobRecord) -> list[tuple[str, float, int]]:
    points = [(key, value, point.step) for point in job.curve for key, value in point.values.items()]
    last = max((point.step for point in job.curve), default=int(job.summary.get("steps", 0)))
    points += [(key, value, last) for key, value in job.metrics.items()]
    points += [(f"final_{key}", value, last) for key, value in job.summary.items()]
    return points


def job_run(client: Any, exp_id: str, parent_id: str, record: RunRecord, job: JobRecord) -> str:
    """The job's nested run: params, per-step training metrics, evaluation metrics, FAILED with its error
    for a failed job. Logged once: a complete run is reused, a half-logged one replaced."""
    keys = {TAG_RUN: record.run_uri, TAG_JOB: job.job_id}
    found = find_runs(client, exp_id, keys)
    for run in found:
        if run.data.tags.get(TAG_DONE) == "true":
            return run.info.run_id
    for run in found:
        client.delete_run(run.info.run_id)
    tags = {
        **keys,
        PARENT_TAG: parent_id,
        TAG_KIND: job.kind,
        "tunerflow.experiment": record.experiment,
        "tunerflow.label": job.label,
        "tunerflow.status": job.status,
    }
    if job.model_uri:
        tags["tunerflow.model_uri"] = job.model_uri
    if job.error:
        tags["tunerflow.error"] = job.error[:TAG_MAX]
        tags[NOTE_TAG] = f"Failed: {job.error}"[:TAG_MAX]
    run_id = client.create_run(exp_id, run_name=job.label, tags=tags).info.run_id
    log_params(client, run_id, job.params)
    log_metrics(client, run_id, _job_points(job))
    client.set_terminated(run_id, "FAILED" if job.status == "failed" else "FINISHED")
    client.set_tag(run_id, TAG_DONE, "true")
    return run_id
