"""Where things live in the store. Every key derives from experiment, run and job names only."""

from __future__ import annotations

from tasks.storage.uris import join, slug


def base_model(root: str, model: str) -> str:
    return join(root, "base_models", model)


def dataset_version(root: str, dataset: str, version: str) -> str:
    return join(root, "datasets", dataset, version)


def run(root: str, experiment: str, run_id: str) -> str:
    return join(root, "experiments", experiment, "runs", slug(run_id))


def experiment_record(run_prefix: str) -> str:
    """The conf a run validated, presets resolved (written by validate_conf, read by every later task)."""
    return join(run_prefix, "experiment.json")


def cancel_request(run_prefix: str) -> str:
    """Written when a run is cancelled from outside Airflow (the OpenAI-compatible API) before Airflow is
    told: a run the scheduler starts anyway stops at validate_conf (tasks.pipeline.plan)."""
    return join(run_prefix, "cancelled.json")


def job(run_prefix: str, job_id: str) -> str:
    return join(run_prefix, "jobs", job_id)


def step(job_prefix: str, step_name: str) -> str:
    return join(job_prefix, step_name)


def registry(root: str, name: str) -> str:
    return join(root, "registry", name)


def comparisons(root: str) -> str:
    """Every `compare_models` run's prefix lives under here."""
    return join(root, "compare")


def comparison(root: str, run_id: str) -> str:
    """One `compare_models` run: its spec, its committed `results/` and a planning failure's error.json."""
    return join(comparisons(root), slug(run_id))
