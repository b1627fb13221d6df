"""What a run left in the store, read into the plain models the MLflow writers log.

A run is read from its committed outputs only (never XCom): `experiment.json` (the conf, as params),
`leaderboard.json` (every planned job with its status, error, scores and training result; before
selection ran, `jobs.json` and the committed train outputs), each job's `train.json` (resolved
hyperparameters, dataset, base model, method), its `metrics.jsonl` (per-step training metrics), the
report, the dataset cards and `promotion.json` with the registry version it names.

Light: stdlib, pydantic and the store.
"""

from __future__ import annotations

import json
import math
from typing import Any

from pydantic import BaseModel, Field

from tasks.config.experiment import load_experiment
from tasks.config.hparams import HPARAM_DEFAULTS
from tasks.registry import versions as registry
from tasks.storage import layout, store
from tasks.storage.errors import StoreError

# MLflow refuses a param value over 6000 characters (3.x); a longer one is cut, with a marker.
PARAM_MAX = 6000
REPORT_FILES = ("index.html", "loss.png", "metrics.png")
CARD_FILES = ("README.md", "token_lengths.png")


class Artifact(BaseModel):
    """One file to log: where it is in the store, and the directory it goes under in the MLflow run."""

    uri: str = Field(description="The file in the store.")
    path: str = Field(description="The artifact directory in the run ('' for the root).")


class StepMetrics(BaseModel):
    """One line of a job's metrics.jsonl: the numbers logged at an optimizer step."""

    step: int = Field(description="The optimizer step.")
    values: dict[str, float] = Field(description="Every finite number on the line but `step`.")


class JobRecord(BaseModel):
    """One planned job (or base-model reference) as its nested MLflow run shows it."""

    job_id: str = Field(description="Store key of the job: with the run's key, what finds its MLflow run.")
    label: str = Field(description="`dataset|model|hparams`.")
    kind: str = Field(description="train, merge or reference.")
    status: str = Field(description="succeeded, failed, reference or pruned (the leaderboard's status).")
    error: str | None = Field(None, description="Why a failed job failed.")
    params: dict[str, str] = Field(
        default_factory=dict, description="Resolved hyperparameters, dataset, base model and method."
    )
    metrics: dict[str, float] = Field(default_factory=dict, description="The evaluation metrics.")
    summary: dict[str, float] = Field(
        default_factory=dict, description="The training result's numbers: train_loss, eval_loss, steps."
    )
    curve: list[StepMetrics] = Field(default_factory=list, description="Per-step training metrics.")
    model_uri: str | None = Field(None, description="The trained weights (adapter or whole model).")


class RunRecord(BaseModel):
    """One experiment run, as its parent MLflow run shows it."""

    experiment: str = Field(description="The tunerflow experiment's name.")
    run_uri: str = Field(description="The run's prefix in the store: the key its MLflow runs are found by.")
    params: dict[str, str] = Field(default_factory=dict, description="The validated conf, flattened.")
    jobs: list[JobRecord] = Field(default_factory=list, description="Every planned job and reference.")
    artifacts: list[Artifact] = Field(
        default_factory=list, description="Leaderboard, report and plots, dataset cards."
    )
    winner: str | None = Field(None, description="The winning job's label.")
    winner_metrics: dict[str, float] = Field(default_factory=dict, description="The winner's scores.")
    registry_name: str = Field(description="The tunerflow registry model the run promotes into.")
    version: dict[str, Any] | None = Field(
        None, description="The registry entry of the version this run registered, with `version`."
    )
    promoted: bool = Field(False, description="The run moved production to that version.")
    production_version: int | None = Field(None, description="The version production points at now.")


def flatten(value: Any, prefix: str = "") -> dict[str, str]:
    """A nested dict as dotted keys; lists and other leaves as JSON (strings as they are), cut to fit."""
    if isinstance(value, dict):
        flat: dict[str, str] = {}
        for key, inner in value.items():
            flat.update(flatten(inner, f"{prefix}.{key}" if prefix else str(key)))
        return flat
    text = value if isinstance(value, str) else json.dumps(value, sort_keys=True)
    if len(text) > PARAM_MAX:
        text = text[: PARAM_MAX - 14] + "...(truncated)"
    return {prefix: text}


def _numbers(values: dict[str, Any]) -> dict[str, float]:
    """The finite numbers of `values` (MLflow metrics are floats; None and NaN are left out)."""
    return {
        key: float(value)
        for key, value in values.items()
        if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    }


def _read(uri: str) -> Any:
    return store.read_json(uri) if store.exists(uri) else None


def read_curve(metrics_uri: str | None) -> list[StepMetrics]:
    """A job's metrics.jsonl as per-step numbers; empty when it was never written or committed."""
    if not metrics_uri:
        return []
    try:
        path = store.fetch_file(metrics_uri)
        lines = path.read_text(encoding="utf-8").splitlines()
    except (StoreError, FileNotFoundError, IndexError):
        return []
    curve = []
    for line in lines:
        try:
            record = json.loads(line) if line.strip() else {}
        except json.JSONDecodeError:
            continue  # a line cut short when a failed job's process was killed mid-write
        if isinstance(record, dict) and isinstance(record.get("step"), int):
            values = _numbers({k: v for k, v in record.items() if k != "step"})
            if values:
                curve.append(StepMetrics(step=record["step"], values=values))
    return curve


def job_params(spec: dict[str, Any] | None) -> dict[str, str]:
    """A train spec's hyperparameters (defaults filled in), dataset, base model and training method."""
    if not spec:
        return {}
    hparams = {key: value for key, value in HPARAM_DEFAULTS.items() if value is not None}
    hparams.update(spec.get("hparams") or {})
    dataset, model, training = spec.get("dataset") or {}, spec.get("model") or {}, spec.get("training") or {}
    params = flatten(hparams)
    params.update(
        {
            "dataset": str(dataset.get("name")),
            "dataset_version": str(dataset.get("version")),
            "base_model": str(model.get("name")),
            "base_model_source": str(model.get("hub_id") or model.get("uri") or ""),
            "training_type": str(training.get("type")),
            "method": str(training.get("method")),
        }
    )
    return params


def _rows(run_uri: str) -> list[dict[str, Any]]:
    """Every job as the leaderboard lists it; before selection ran, the planned jobs and their train
    outputs (failed unless committed)."""
    board = _read(store.join(run_uri, "leaderboard.json"))
    if board is not None:
        return board["rows"]
    rows = []
    for job in _read(store.join(run_uri, "jobs.json")) or []:
        train = store.committed_result(layout.step(layout.job(run_uri, job["job_id"]), "train"))
        error = _read(store.join(layout.step(layout.job(run_uri, job["job_id"]), "train"), "error.json"))
        rows.append(
            {
                "job_id": job["job_id"],
                "label": job["label"],
                "kind": job["kind"],
                "train": train,
                "metrics": {},
                "status": "succeeded" if train else "failed",
                "error": None if train else (error or {}).get("error", "training did not finish"),
            }
        )
    return rows


def job_record(run_uri: str, row: dict[str, Any]) -> tuple[JobRecord, dict[str, Any] | None]:
    """A leaderboard row as a JobRecord, with the job's train spec (None for a reference)."""
    spec = _read(store.join(layout.job(run_uri, row["job_id"]), "train.json"))
    train = row.get("train") or {}
    metrics_uri = train.get("metrics_uri") or row.get("metrics_jsonl")
    record = JobRecord(
        job_id=row["job_id"],
        label=row["label"],
        kind=row.get("kind") or "train",
        status=row.get("status") or "failed",
        error=row.get("error"),
        params=job_params(spec),
        metrics=_numbers(row.get("metrics") or {}),
        summary=_numbers({k: train.get(k) for k in ("train_loss", "eval_loss", "steps", "device_hours")}),
        curve=read_curve(metrics_uri) if row.get("kind") != "reference" else [],
        model_uri=train.get("model_uri") or train.get("adapter_uri"),
    )
    return record, spec


def _artifacts(run_uri: str, specs: list[dict[str, Any]]) -> list[Artifact]:
    found = []
    if store.exists(store.join(run_uri, "leaderboard.json")):
        found.append(Artifact(uri=store.join(run_uri, "leaderboard.json"), path=""))
    report = store.join(run_uri, "report")
    found += [
        Artifact(uri=store.join(report, name), path="report")
        for name in REPORT_FILES
        if store.exists(store.join(report, name))
    ]
    datasets = {(s.get("dataset") or {}).get("uri"): (s.get("dataset") or {}).get("name") for s in specs}
    for uri, name in datasets.items():
        if uri:
            found += [
                Artifact(uri=store.join(uri, card), path=f"datasets/{name}")
                for card in CARD_FILES
                if store.exists(store.join(uri, card))
            ]
    return found


def collect(run_uri: str, store_root: str) -> RunRecord:
    """Everything the MLflow runs of `run_uri` show, read from the store."""
    experiment = load_experiment(run_uri)
    jobs, specs = [], []
    for row in _rows(run_uri):
        record, spec = job_record(run_uri, row)
        jobs.append(record)
        specs += [spec] if spec else []
    board = _read(store.join(run_uri, "leaderboard.json")) or {}
    winner = board.get("winner") or {}
    name = (experiment.get("promotion") or {}).get("registry_name") or experiment["name"]
    promotion = _read(store.join(run_uri, "promotion.json")) or {}
    version = None
    if promotion.get("version") is not None:
        version = registry.get_version(store_root, name, int(promotion["version"]))
    live = registry.pointer(store_root, name) or {}
    return RunRecord(
        experiment=experiment["name"],
        run_uri=run_uri,
        params=flatten(experiment),
        jobs=jobs,
        artifacts=_artifacts(run_uri, specs),
        winner=winner.get("label"),
        winner_metrics=_numbers(winner.get("metrics") or {}),
        registry_name=name,
        version=version,
        promoted=bool(promotion.get("promoted")),
        production_version=live.get("version"),
    )
