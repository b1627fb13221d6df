"""Leaderboard and winner: argmax of the primary metric over the jobs that succeeded, read from the store.

Reading committed outputs (not XCom) means a job that failed, was skipped or never ran is still
listed, with the reason its step wrote to error.json.

The score ranked is the primary metric of the PyTorch model, or with `scoring.rank_on: onnx-int8` the
primary metric of each job's INT8 export (scored by the evaluate step), so that the winner is the best
model as deployed; both are on the leaderboard. A job without the ranked value ranks last.

In a search, a trial's job appears once, at the furthest round it was planned in: a final job is
ranked as any job; a job of a halving rung that did not continue is `pruned` (never failed, never the
winner) with its validation loss and the step it stopped at. Its device-hours are those of every round.

Tie-breaks, in order: the better ranked value (higher, or lower for eval_loss, perplexity and plugins
with GREATER_IS_BETTER = False); then the better PyTorch value (when ranking on the export); then the
lower validation loss measured at the end of training; then the label, alphabetically, so that the
choice is stable.
"""

from __future__ import annotations

import math
from typing import Any

from tasks.config.experiment import load_experiment
from tasks.config.export import ExportConfig
from tasks.config.scoring import ScoringConfig
from tasks.contracts.evaluate import EvaluateResult, EvaluateSpec
from tasks.contracts.export import CheckExportSpec, ExportSpec
from tasks.contracts.planning import PlannedJob, step_argv
from tasks.contracts.selection import Failure, Leaderboard, LeaderboardRow, Selection
from tasks.contracts.train import TrainResult
from tasks.pipeline.costs import add_costs, device_prices
from tasks.scoring.plugins import lower_is_better
from tasks.search.jobs import device_hours_by_label
from tasks.search.study import load_study
from tasks.storage import layout, store


def _error(prefix: str) -> str | None:
    path = store.join(prefix, "error.json")
    if store.exists(path):
        error = store.read_json(path)
        return f"{error['step']}: {error['message']}"
    return None


def _committed(prefix: str, model: type[TrainResult] | type[EvaluateResult]) -> Any:
    result = store.committed_result(prefix)
    return None if result is None else model.load(result, f"the result committed at {prefix}")


def job_row(run_uri: str, job: PlannedJob) -> LeaderboardRow:
    prefix = layout.job(run_uri, job.job_id)
    # A merge "trains" its candidate: its step commits a TrainResult where a job's training does.
    train = _committed(layout.step(prefix, "train"), TrainResult) if job.kind != "reference" else None
    evaluation = _committed(layout.step(prefix, "evaluate"), EvaluateResult)
    if job.kind == "reference":
        status = "reference" if evaluation else "failed"
    elif not job.final and train:
        status = "pruned"
    else:
        status = "succeeded" if train and evaluation else "failed"
    row = LeaderboardRow(
        job_id=job.job_id,
        label=job.label,
        kind=job.kind,
        train=train,
        metrics=evaluation.metrics if evaluation else {},
        scored_on=evaluation.scored_on if evaluation else None,
        metrics_jsonl=train.metrics_uri if train else None,
        status=status,
        **({"quantized": evaluation.quantized} if evaluation and evaluation.quantized else {}),
    )
    if job.trial is not None:
        row.round = job.round
    if train is not None and train.merged_from:
        row.parts, row.merge_method = train.merged_from, train.merge_method
    if status == "pruned":
        row.stopped = f"stopped by halving at step {train.steps}"
    if status == "failed":
        row.error = (
            _error(layout.step(prefix, "train"))
            or _error(layout.step(prefix, "evaluate"))
            or "did not run: an upstream task failed or was skipped"
        )
    return row


def _better_first(value: float | None, lower: bool) -> float:
    if value is None or math.isnan(value):
        return math.inf  # without the metric a job ranks last, whichever way the metric points
    return value if lower else -value


def ranked_metrics(row: LeaderboardRow, rank_on: str) -> dict[str, Any]:
    """The metrics a row is ranked on: the PyTorch model's, or its export's for `rank_on`."""
    if rank_on == "pytorch":
        return row.metrics
    return row.quantized.metrics if row.quantized else {}


def _sort_key(row: LeaderboardRow, primary: str, lower: bool, rank_on: str) -> tuple:
    first = _better_first(ranked_metrics(row, rank_on).get(primary), lower)
    pytorch = _better_first(row.metrics.get(primary), lower)
    eval_loss = row.train.eval_loss if row.train else None
    return (first, pytorch, eval_loss if eval_loss is not None else math.inf, row.label)


def furthest_rounds(jobs: list[PlannedJob]) -> list[PlannedJob]:
    """One job per label: a search trial's job of the furthest round it was planned in (the others are
    earlier rungs of the same training)."""
    furthest: dict[tuple[str, str], PlannedJob] = {}
    for job in jobs:
        key = (job.kind, job.label)
        if key not in furthest or job.round > furthest[key].round:
            furthest[key] = job
    return list(furthest.values())


def _device_hours(run_uri: str, jobs: list[PlannedJob]) -> dict[str, float]:
    """label -> device-hours of its training over every round, for the labels that recorded them."""
    trained = (job for job in jobs if job.kind == "train")
    return device_hours_by_label(
        [
            (job.label, _committed(layout.step(layout.job(run_uri, job.job_id), "train"), TrainResult))
            for job in trained
        ]
    )


def search_summary(run_uri: str) -> str | None:
    """One line on the run's search: strategy, trials, rounds, what halving pruned, a budget stop."""
    study = load_study(run_uri)
    if study is None:
        return None
    how = f"{study.strategy} with successive halving" if study.halving else study.strategy
    line = f"{how}: {len(study.trials)} trials in {study.rounds} round{'s' * (study.rounds > 1)}"
    pruned = sum(trial.state == "pruned" for trial in study.trials)
    line += f", {pruned} pruned by halving" if pruned else ""
    return f"{line}; {study.stopped}" if study.stopped else line


def ranking(run_uri: str, jobs: list[PlannedJob], primary: str, rank_on: str = "pytorch") -> Leaderboard:
    """Every planned job as it ended (a search trial's at its furthest round), the successes ranked."""
    rows = [job_row(run_uri, job) for job in furthest_rounds(jobs)]
    hours = _device_hours(run_uri, jobs)
    for row in rows:
        if row.kind == "train" and row.label in hours:
            row.device_hours = hours[row.label]
    lower = lower_is_better(primary)
    ranked = sorted(
        (r for r in rows if r.status == "succeeded"), key=lambda r: _sort_key(r, primary, lower, rank_on)
    )
    for rank, row in enumerate(ranked, start=1):
        row.rank = rank
    others = [r for r in rows if r.status != "succeeded"]
    board = Leaderboard(
        primary=primary,
        rank_on=rank_on,
        rows=ranked + sorted(others, key=lambda r: (r.status, r.label)),
        winner=ranked[0] if ranked else None,
        failed=[Failure(label=r.label, error=r.error) for r in rows if r.status == "failed"],
    )
    add_costs(board, device_prices())
    summary = search_summary(run_uri)
    if summary:
        board.search = summary
    return board


def leaderboard(run_uri: str, jobs: list[PlannedJob], primary: str, rank_on: str = "pytorch") -> Leaderboard:
    """The ranking of every planned job, written to `leaderboard.json`."""
    board = ranking(run_uri, jobs, primary, rank_on)
    store.write_json(store.join(run_uri, "leaderboard.json"), board.model_dump(mode="json"))
    return board


def export_specs(run_uri: str, store_root: str, row: LeaderboardRow) -> Selection:
    """Write the export and check specs for the winner; returns the selection: the winner, their URIs
    and commands."""

    experiment = load_experiment(run_uri)
    export_config = ExportConfig.model_validate(experiment["export"])
    job_prefix = layout.job(run_uri, row.job_id)
    # The evaluate spec, not the train spec: a merged candidate has one too, with the same base model and
    # dataset (its parts' best), where its merge spec is no TrainSpec.
    evaluate_uri = store.join(job_prefix, "evaluate.json")
    evaluate_spec = EvaluateSpec.load(store.read_json(evaluate_uri), evaluate_uri)
    export_output = store.join(run_uri, "export")
    export = ExportSpec(
        step="export",
        output=export_output,
        store_root=store_root,
        model=evaluate_spec.model,
        adapter_uri=row.train.adapter_uri,
        model_uri=row.train.model_uri,
        formats=export_config.formats,
        export_config=export_config,
        dataset=evaluate_spec.dataset,
    )
    check = CheckExportSpec(
        step="check_export",
        output=store.join(run_uri, "check_export"),
        store_root=store_root,
        model=evaluate_spec.model,
        export_output=export_output,
        # The rows the winner was scored on, so the metric drop compares like with like.
        dataset=evaluate_spec.scored_on,
        scoring=ScoringConfig.model_validate(experiment["scoring"]),
        export_config=export_config,
        reference_metrics=row.metrics,
    )
    uris = {}
    for name, spec in (("export", export), ("check_export", check)):
        uris[f"{name}_spec"] = store.join(run_uri, f"{name}.json")
        store.write_json(uris[f"{name}_spec"], spec.model_dump(mode="json"))
        uris[f"{name}_argv"] = step_argv(name, uris[f"{name}_spec"])
    return Selection(winner=row, **uris)
