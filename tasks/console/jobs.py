"""The job page: resolved hyperparameters, training curves, committed checkpoints, the answers with
their per-row scores, and the TensorBoard event files."""

from __future__ import annotations

import re
from typing import Any

from pydantic import BaseModel, Field

from tasks.console.answers import AnswerColumn, AnswersPage, answers_page, eval_split_uri
from tasks.console.charts import Chart, Series
from tasks.console.reading import json_of, lines_of, parse_all, read_bytes, read_json, read_many
from tasks.console.runs import NotFound, TaskLink, job_task_links, key, planned_jobs, run_prefix, task_links
from tasks.pipeline.report_data import curves
from tasks.storage import layout, store

CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")
TENSORBOARD = "tensorboard/"
# metrics.jsonl keys charted on the job page: (chart title, y axis, record keys).
CURVES = (
    ("Loss", "loss", ("loss", "eval_loss")),
    ("Learning rate", "learning rate", ("learning_rate",)),
    ("Gradient norm", "grad norm", ("grad_norm",)),
    ("Tokens per second", "tokens/s", ("tokens_per_s",)),
)


class Checkpoint(BaseModel):
    """A committed checkpoint (its manifest verifies), the one a retry resumes from being the newest."""

    step: int = Field(description="The optimizer step it holds.")
    committed_at: str | None = Field(None, description="When it was committed.")
    tokens_seen: int | None = Field(None, description="Training tokens seen by then.")
    uri: str = Field(description="Where it is stored.")


class EventFile(BaseModel):
    """A TensorBoard event file of the training."""

    name: str = Field(description="Its name below the tensorboard directory.")
    size: int | None = Field(description="Bytes.")


class JobPage(BaseModel):
    """Everything the job page shows."""

    experiment: str = Field(description="The experiment's name.")
    run: str = Field(description="The run's store key.")
    run_id: str | None = Field(description="Airflow's run id.")
    job_id: str = Field(description="The job's store key.")
    label: str = Field(description="`dataset|model|hparams`.")
    kind: str = Field(description="train, or reference (a base model scored as it is).")
    status: str = Field(description="succeeded, failed, reference or pending.")
    error: str | None = Field(None, description="Why it failed.")
    settings: list[tuple[str, Any]] = Field(description="Model, dataset, training type and method.")
    hparams: list[tuple[str, Any]] = Field(description="The resolved hyperparameters (train spec).")
    metrics: dict[str, float | None] = Field(description="Its evaluation scores.")
    generation: dict[str, Any] = Field(description="Evaluation generation statistics.")
    charts: list[Chart] = Field(description="Loss, learning rate, grad norm and tokens/s over steps.")
    checkpoints: list[Checkpoint] = Field(description="The committed checkpoints, by step.")
    predictions: AnswersPage = Field(description="A page of its answers with per-row scores.")
    event_files: list[EventFile] = Field(description="TensorBoard event files.")
    tensorboard_uri: str | None = Field(description="Where the event files are stored.")
    logs: list[TaskLink] = Field(description="Its tasks' logs in Airflow.")

    @property
    def tensorboard_command(self) -> str | None:
        """The command that opens the event files where they are stored (a path for a local store)."""
        if not self.tensorboard_uri:
            return None
        uri = self.tensorboard_uri
        return f"tensorboard --logdir {store.local_path(uri) if store.is_local(uri) else uri}"


def job_prefix(root: str, experiment: str, run: str, job_id: str) -> str:
    return layout.job(run_prefix(root, experiment, run), key(job_id, "job"))


def event_files(train_manifest: Any) -> list[EventFile]:
    """The TensorBoard files the committed training lists (name and size from its manifest)."""
    files = (train_manifest or {}).get("files") or {}
    return [
        EventFile(name=name[len(TENSORBOARD) :], size=meta.get("size"))
        for name, meta in sorted(files.items())
        if name.startswith(TENSORBOARD)
    ]


def checkpoints(prefix: str) -> list[Checkpoint]:
    """Checkpoints with a manifest (committed), read side by side; a half-written one is not listed."""
    root = store.join(prefix, "checkpoints")
    found = sorted((int(m.group(1)), n) for n in store.list_dir(root) if (m := CHECKPOINT.match(n)))
    uris = [store.join(root, name) for _, name in found]
    manifests = read_many([store.join(uri, store.MANIFEST) for uri in uris])
    listed = []
    for (step, _), uri, data in zip(found, uris, manifests, strict=True):
        if data is not None:
            result = (json_of(data) or {}).get("result") or {}
            listed.append(
                Checkpoint(
                    step=result.get("step", step),
                    committed_at=result.get("committed_at"),
                    tokens_seen=result.get("tokens_seen"),
                    uri=uri,
                )
            )
    return listed


def charts(metrics_jsonl: bytes | None) -> list[Chart]:
    records = parse_all(lines_of(metrics_jsonl))
    return [
        Chart(
            title=title,
            y=axis,
            series=[
                Series(label=name, points=points, dashed=name.startswith("eval_"))
                for name, points in curves(records, names).items()
                if points
            ],
        )
        for title, axis, names in CURVES
    ]


def _board_entry(prefix: str, job_id: str) -> dict[str, Any]:
    board = read_json(store.join(prefix, "leaderboard.json")) or {}
    return next((row for row in board.get("rows") or [] if row.get("job_id") == job_id), {})


def job_page(root: str, experiment: str, run: str, job_id: str, page: int = 1) -> JobPage:
    """The page of one job (or base-model reference) of a run; NotFound when the run never planned it."""
    prefix = run_prefix(root, experiment, run)
    jobs, references = planned_jobs(prefix)
    merges = read_json(store.join(prefix, "merges.json"))
    lists = {"train": jobs, "reference": references, "merge": merges if isinstance(merges, list) else []}
    planned = [job for listed in lists.values() for job in listed]
    entry = next((job for job in planned if job.get("job_id") == key(job_id, "job")), None)
    if entry is None:
        raise NotFound(f"no job {job_id!r} in run {run!r} of experiment {experiment!r}")
    index = lists[entry["kind"]].index(entry)
    here = layout.job(prefix, job_id)
    record, spec, train_manifest, evaluated, metrics_jsonl = read_many(
        [
            layout.experiment_record(prefix),
            store.join(here, "train.json"),
            store.join(here, "train", store.MANIFEST),
            store.join(here, "evaluate", store.MANIFEST),
            store.join(here, "train", "metrics.jsonl"),
        ]
    )
    record, spec, train_manifest, evaluated = (
        json_of(data) for data in (record, spec, train_manifest, evaluated)
    )
    spec = spec or read_json(store.join(here, "evaluate.json")) or {}
    result = (evaluated or {}).get("result") or {}
    row = _board_entry(prefix, job_id)
    train_result = (train_manifest or {}).get("result") or {}
    column = AnswerColumn(label=entry["label"], kind="reference" if entry["kind"] == "reference" else "job")
    answers = store.join(here, "evaluate", "predictions.jsonl")
    predictions, eval_rows = read_many([answers, eval_split_uri(here)])
    run_id = (record or {}).get("run_id")
    return JobPage(
        experiment=experiment,
        run=run,
        run_id=run_id,
        job_id=job_id,
        label=entry["label"],
        kind=entry["kind"],
        status=row.get("status") or ("succeeded" if evaluated else "pending"),
        error=row.get("error"),
        settings=_settings(spec),
        hparams=sorted((spec.get("hparams") or {}).items()),
        metrics=result.get("metrics") or row.get("metrics") or {},
        generation=result.get("generation") or {},
        charts=charts(metrics_jsonl),
        checkpoints=checkpoints(here),
        predictions=answers_page([(column, predictions)], eval_rows, page),
        event_files=event_files(train_manifest),
        tensorboard_uri=train_result.get("tensorboard_uri"),
        logs=job_task_links(prefix, run_id).get(job_id) or task_links(run_id, entry["kind"], index),
    )


def _settings(spec: dict[str, Any]) -> list[tuple[str, Any]]:
    training = spec.get("training") or {}
    dataset = spec.get("dataset") or {}
    return [
        ("model", (spec.get("model") or {}).get("name")),
        ("dataset", f"{dataset.get('name')} {dataset.get('version') or ''}".strip() if dataset else None),
        ("eval set", (spec.get("eval_set") or {}).get("name")),
        ("training type", training.get("type")),
        ("method", training.get("method")),
    ]


def event_file(root: str, experiment: str, run: str, job_id: str, name: str) -> bytes:
    """One TensorBoard event file's bytes; NotFound unless the committed training lists it."""
    here = job_prefix(root, experiment, run, job_id)
    manifest = read_json(store.join(here, "train", store.MANIFEST))
    if name not in {f.name for f in event_files(manifest)}:
        raise NotFound(f"no TensorBoard file {name!r} in job {job_id!r}")
    data = read_bytes(store.join(here, "train", TENSORBOARD, name))
    if data is None:
        raise NotFound(f"TensorBoard file {name!r} of job {job_id!r} is listed but not stored")
    return data
