"""The jobs of a search's later rounds, written from round 1's: a new trial trains on every dataset x
model with round 1's inputs and its own hyperparameters; a halving survivor continues its round-1 job
from the shared checkpoints prefix to the next rung, as a new job with its own output."""

from __future__ import annotations

from typing import Any

from tasks.config.search import SearchConfig
from tasks.contracts.evaluate import EvaluateSpec
from tasks.contracts.planning import PlannedJob, step_argv
from tasks.contracts.train import TrainResult, TrainSpec
from tasks.search.rounds import RoundDecision
from tasks.search.study import StudyRecord
from tasks.search.trials import trial_hparams
from tasks.storage import layout, store


def job_id_of(dataset: str, model: str, trial: str) -> str:
    """A round-1 job's store key; a halving survivor's round-k job adds `--r<k>`."""
    return store.slug(f"{dataset}--{model}--{trial}")


def _train_spec(job: PlannedJob) -> TrainSpec:
    return TrainSpec.load(store.read_json(job.train_spec), job.train_spec)


def committed_train(job: PlannedJob) -> TrainResult | None:
    """The job's committed train result, or None (not trained, failed)."""
    output = _train_spec(job).output
    result = store.committed_result(output)
    return None if result is None else TrainResult.load(result, f"the result committed at {output}")


def device_hours_by_label(results: list[tuple[str, TrainResult | None]]) -> dict[str, float]:
    """label -> device-hours its training used, from (label, committed result) of every round's job.

    A result counts the training time of every try of its checkpoints (`TrainResult.device_hours`),
    and a halving survivor's later round resumes from its round-1 checkpoints, carrying their time on:
    so a label's furthest round holds its whole, and the rounds are not added up."""
    hours: dict[str, float] = {}
    for label, result in results:
        if result is not None and result.device_hours is not None:
            hours[label] = max(hours.get(label, 0.0), result.device_hours)
    return hours


def derived_job(
    run_uri: str, source: PlannedJob, job_id: str, label: str, train: dict[str, Any], place: dict[str, Any]
) -> PlannedJob:
    """A later round's job: the specs of `source` (a round-1 job of the same dataset x model) with its
    own id, label and outputs, and `train`'s changes (a value of None leaves the field out)."""
    prefix = layout.job(run_uri, job_id)
    ids = {"job_id": job_id, "label": label}
    given = _train_spec(source).model_dump(mode="json")
    given.pop("stop_at_step", None)  # a rung's stop is the new round's to set
    changes = {k: v for k, v in train.items() if v is not None}
    train_output = layout.step(prefix, "train")
    train_spec = TrainSpec.model_validate({**given, **ids, "output": train_output, **changes})
    evaluate_given = EvaluateSpec.load(store.read_json(source.evaluate_spec), source.evaluate_spec)
    evaluate_spec = EvaluateSpec.model_validate(
        {
            **evaluate_given.model_dump(mode="json"),
            **ids,
            "output": layout.step(prefix, "evaluate"),
            "train_output": train_output,
        }
    )
    uris = {}
    for step, spec in (("train", train_spec), ("evaluate", evaluate_spec)):
        uris[f"{step}_spec"] = store.join(prefix, f"{step}.json")
        store.write_json(uris[f"{step}_spec"], spec.model_dump(mode="json"))
        uris[f"{step}_argv"] = step_argv(step, uris[f"{step}_spec"])
    return PlannedJob(job_id=job_id, label=label, kind="train", **place, **uris)


def round_jobs(
    run_uri: str,
    base: dict[str, Any],
    search: SearchConfig,
    study: StudyRecord,
    first: list[PlannedJob],
    round_number: int,
    decision: RoundDecision,
) -> list[PlannedJob]:
    """Round k's jobs for `decision.train`, from round 1's jobs `first` (`base`: the resolved base group
    a new trial's values go over)."""
    jobs = []
    cells = list(dict.fromkeys(job.label.rpartition("|")[0] for job in first))
    for name in decision.train:
        place = {"round": round_number, "trial": name, "final": decision.final}
        if search.halving is not None:
            for source in (job for job in first if job.trial == name):
                checkpoints = _train_spec(source).checkpoints
                train = {"checkpoints": checkpoints, "stop_at_step": decision.stop_at_step}
                job_id = f"{source.job_id}--r{round_number}"
                jobs.append(derived_job(run_uri, source, job_id, source.label, train, place))
            continue
        hparams = trial_hparams(base, name, study.trial(name).params, None)
        for cell in cells:
            source = next(job for job in first if job.label.rpartition("|")[0] == cell)
            job_id = job_id_of(*cell.split("|"), name)
            jobs.append(derived_job(run_uri, source, job_id, f"{cell}|{name}", {"hparams": hparams}, place))
    return jobs
