"""Why a task of a run does not run: each rule returns the reason to skip, or None to go ahead.

The rules live here once, for both backends: the local backend's tasks check them before starting a
subprocess, the kubernetes backend's `pre_execute` hooks before starting a pod (so no GPU pod starts just
to skip), and the light tasks before doing their work. The caller raises `AirflowSkipException(reason)`;
the reason is what the UI and the task log show.

Light: the DAG processor imports it on every parse (no Airflow, no heavy modules).
"""

from __future__ import annotations

from tasks.config.experiment import load_experiment
from tasks.contracts.evaluate import EvaluateSpec
from tasks.storage import layout, store


def training_failed(evaluate_spec_uri: str) -> str | None:
    """Scoring a fine-tune whose training committed nothing: there is no model to score. The leaderboard
    lists the job with its training error. Base-model scoring (no `train_output`) always runs."""
    spec = EvaluateSpec.load(store.read_json(evaluate_spec_uri), evaluate_spec_uri)
    if spec.train_output and not store.is_committed(spec.train_output):
        return f"{spec.label}: training failed, nothing to score"
    return None


def export_disabled(run_uri: str) -> str | None:
    """Exporting the winner when the validated experiment (experiment.json, every default filled in: the
    raw Params may omit nested fields) has export disabled."""
    if not load_experiment(run_uri)["export"]["enabled"]:
        return "export.enabled is false"
    return None


def nothing_planned(run_uri: str) -> str | None:
    """Selecting a winner when no job was planned: validate_conf or a prepare_dataset failed first."""
    if not store.exists(store.join(run_uri, "jobs.json")):
        return "nothing was planned: validate_conf or prepare_dataset failed"
    return None


def no_search(run_uri: str) -> str | None:
    """Planning a later search round of a run without a search (no study was started): it has one round."""
    if not store.exists(store.join(run_uri, "search", "study.json")):
        return "no search in this run's conf: it trains one round"
    return None


def nothing_to_report(run_uri: str) -> str | None:
    """Writing the HTML report when selection left no leaderboard. The `report` task still runs to give
    the run its verdict (`tasks.pipeline.orchestration.run_problem`); it only skips the page."""
    if not store.exists(store.join(run_uri, "leaderboard.json")):
        return "no leaderboard: selection did not run, nothing to write up"
    return None


def not_tracked(run_uri: str, connection: str | None, conn_id: str) -> str | None:
    """Recording the run in MLflow when the deployment has no MLflow connection (tracking is optional),
    or when the conf was refused before anything was recorded."""
    if connection is None:
        return (
            f"MLflow tracking is off: no Airflow connection '{conn_id}' (docs/mlflow.md says how to add one, "
            "or TUNERFLOW_MLFLOW_CONN_ID names another)"
        )
    if not store.exists(layout.experiment_record(run_uri)):
        return "nothing to track: validate_conf refused the conf"
    return None
