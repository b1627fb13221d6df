"""The `track_mlflow` task's work: record a finished run in MLflow, or say clearly why it could not.

A tracking server that does not answer (refused connection, timeout, HTTP 5xx) raises
`TrackingUnavailable`, which the task lets Airflow retry; the message names the tracking URI, never the
credentials. Training, selection and promotion are committed before this task runs and never wait for
it, so a server that is down costs the run its MLflow record only: clear the task once the server is
back, and the retry finds what an earlier try wrote by its tags. Anything else MLflow refuses
(credentials, permissions, a bad registry URI) raises `TrackingError`: fix the connection, then clear.
"""

from __future__ import annotations

import contextlib
import os
from typing import Any

from pydantic import BaseModel, Field

from tasks.contracts.planning import RunInfo
from tasks.runtime.errors import StepError
from tasks.tracking import model_registry, runs
from tasks.tracking.collect import collect
from tasks.tracking.connection import MlflowTarget, TrackingError, credentials_env, environment, shown

# How long one MLflow request may take, and how often MLflow's client retries it itself: short, since
# the Airflow task retries (with backoff) and its try should not hang for minutes on a dead server.
HTTP_LIMITS = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "30",
}
UNAVAILABLE_CODES = ("INTERNAL_ERROR", "TEMPORARILY_UNAVAILABLE", "REQUEST_LIMIT_EXCEEDED")


class TrackingUnavailable(StepError):
    """The tracking server did not answer: a later try may succeed (the task is retried)."""


class Tracked(BaseModel):
    """What the task returns (XCom): the MLflow ids of what it recorded. No URI with credentials."""

    tracking_uri: str = Field(description="The tracking server, without credentials.")
    experiment_id: str = Field(description="The MLflow experiment.")
    parent_run_id: str = Field(description="The experiment run's MLflow run.")
    job_runs: dict[str, str] = Field(description="Each job's nested MLflow run, by job id.")
    model_version: str | None = Field(None, description="The MLflow model version mirroring the registry's.")
    production: str | None = Field(None, description="The MLflow version the `production` alias points at.")


def _http_limits() -> contextlib.AbstractContextManager[None]:
    return environment({name: os.environ.get(name) or value for name, value in HTTP_LIMITS.items()})


def _scrubbed(target: MlflowTarget, text: str) -> str:
    """`text` without the connection's password or a user:password@ part of a URL."""
    text = " ".join(shown(word) if "://" in word else word for word in text.split())
    secret = target.password.get_secret_value() if target.password else ""
    return text.replace(secret, "***") if secret else text


def _classified(target: MlflowTarget, error: Exception) -> StepError:
    """A retryable TrackingUnavailable for a server that does not answer, else a TrackingError."""
    code = getattr(error, "error_code", None)
    status = error.get_http_status_code() if hasattr(error, "get_http_status_code") else None
    detail = _scrubbed(target, str(error))[:1000]
    if code is None or code in UNAVAILABLE_CODES or (status or 0) >= 500:
        return TrackingUnavailable(
            f"the MLflow tracking server at {target.shown_uri} (connection '{target.conn_id}') did not "
            f"answer: {detail}. The run's outputs and promotion are committed; this task retries, and can be "
            "cleared once the server is back"
        )
    return TrackingError(
        f"the MLflow tracking server at {target.shown_uri} refused the request (connection "
        f"'{target.conn_id}'): {detail}"
    )


def track(run: RunInfo, target: MlflowTarget, airflow: dict[str, str]) -> Tracked:
    """Record `run` in MLflow: the parent run, a nested run per job, the registry version and alias.
    `airflow` is {dag_id, run_id}, set as tags on the parent run."""
    record = collect(run.run_uri, run.store_root)
    try:
        # mlflow is heavy (seconds to import): loaded only when a run is tracked.
        from mlflow import MlflowClient
        from mlflow.exceptions import MlflowException
    except ImportError:
        raise TrackingError(
            f"the Airflow connection '{target.conn_id}' asks for MLflow tracking, but mlflow is not "
            "installed on this worker: install tunerflow[mlflow] (the image: TUNERFLOW_EXTRAS=...,mlflow)"
        ) from None

    with credentials_env(target), _http_limits():
        try:
            client = MlflowClient(
                tracking_uri=target.tracking_uri, registry_uri=target.registry_uri or target.tracking_uri
            )
            exp_id = runs.experiment_id(client, target.experiment_name or record.experiment)
            parent = runs.parent_run(client, exp_id, record, airflow)
            job_runs = {job.job_id: runs.job_run(client, exp_id, parent, record, job) for job in record.jobs}
            version = model_registry.mirror_version(client, record, job_runs, target.tracking_uri)
            alias = model_registry.sync_alias(client, record)
            runs.finish_parent(client, parent, record)
        except (MlflowException, OSError) as error:
            raise _classified(target, error) from None
    return Tracked(
        tracking_uri=target.shown_uri,
        experiment_id=exp_id,
        parent_run_id=parent,
        job_runs=job_runs,
        model_version=str(version.version) if version is not None else None,
        production=alias,
    )


def describe(tracked: Tracked) -> str:
    """One log line per thing recorded."""
    lines = [
        f"MLflow {tracked.tracking_uri}: experiment {tracked.experiment_id}, run {tracked.parent_run_id}",
        *(f"  job {job}: run {run_id}" for job, run_id in tracked.job_runs.items()),
    ]
    if tracked.model_version:
        lines.append(f"  model version {tracked.model_version} (production alias: {tracked.production})")
    return "\n".join(lines)


def as_xcom(tracked: Tracked) -> dict[str, Any]:
    return tracked.model_dump(mode="json")
