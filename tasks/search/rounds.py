"""One round of a search at a time: what round 1 trains, and after a round what the next one trains
(sampled trials, or halving's survivors continuing to the next rung), who is pruned, and the budget's
stop. Each round's planned jobs are kept in `search/round-<k>.json`, so a planning task that is cleared
and re-run returns the same jobs."""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field

from pydantic import Field

from tasks.config.search import MAX_ROUNDS, SearchConfig
from tasks.contracts.base import Contract
from tasks.contracts.planning import PlannedJob
from tasks.search.study import StudyRecord, TrialRecord, sample
from tasks.search.trials import grid_points
from tasks.storage import store


class RoundPlan(Contract):
    """`search/round-<k>.json`: what one round's planning task returned, and the study as it left it
    (written last: a re-run finding this file returns it, and puts the study back if a crash lost it)."""

    round: int = Field(ge=1, description="The round.")
    train: list[PlannedJob] = Field(description="The jobs this round trains.")
    evaluate: list[PlannedJob] = Field(description="The jobs this round scores: its final ones.")
    study: StudyRecord | None = Field(None, description="The study after this round was planned.")


def round_uri(run_uri: str, round_number: int) -> str:
    return store.join(run_uri, "search", f"round-{round_number}.json")


def read_round(run_uri: str, round_number: int) -> RoundPlan | None:
    uri = round_uri(run_uri, round_number)
    return RoundPlan.load(store.read_json(uri), uri) if store.exists(uri) else None


def round_task(round_number: int, task: str) -> str:
    """The DAG's task id of a round's mapped `train` or `evaluate`; round 1's are the top-level tasks."""
    return task if round_number == 1 else f"round_{round_number}.{task}"


def mapped_jobs(run_uri: str) -> dict[tuple[str, int], str]:
    """(task id, map index) -> job id of every round's train and evaluate task instances: a mapped
    task's index is the job's place in the list its round's planning returned."""
    out: dict[tuple[str, int], str] = {}
    for round_number in range(1, MAX_ROUNDS + 1):
        plan = read_round(run_uri, round_number)
        if plan is None:
            break  # a round is planned only after the one before
        for task, listed in (("train", plan.train), ("evaluate", plan.evaluate)):
            for index, job in enumerate(listed):
                out[(round_task(round_number, task), index)] = job.job_id
    return out


def write_round(run_uri: str, plan: RoundPlan) -> RoundPlan:
    store.write_json(round_uri(run_uri, plan.round), plan.model_dump(mode="json"))
    return plan


@dataclass
class RoundDecision:
    """What a round does. `train`: the trials trained (new ones, or survivors continuing), to
    `stop_at_step` (None: to max_steps), scored and ranked when `final`. `evaluate_previous`: a halving
    search stopped by the budget scores these trials' jobs of the round before instead."""

    train: list[str] = field(default_factory=list)
    stop_at_step: int | None = None
    final: bool = True
    evaluate_previous: list[str] = field(default_factory=list)


def is_search(search: SearchConfig) -> bool:
    """Whether a run keeps a study: anything but the hyperparameter groups trained as given, once."""
    return search.strategy != "grid" or bool(search.space) or search.halving is not None


def _train(trials: list[TrialRecord], round_number: int, steps: int | None) -> list[str]:
    for trial in trials:
        trial.rounds.append(round_number)
        trial.state, trial.steps = "running", steps
    return [trial.name for trial in trials]


def start(search: SearchConfig, groups: list[str]) -> tuple[StudyRecord, RoundDecision]:
    """The study and round 1: every grid trial (the groups as given, or the space's points), or the
    first sampled trials (all `max_trials` at once with halving, else `parallel`)."""
    study = StudyRecord(strategy=search.strategy, seed=search.seed, halving=search.halving is not None)
    if search.strategy != "grid":
        count = search.max_trials if search.halving else min(search.parallel, search.max_trials)
        study.trials = sample(study, search, 1, count)
    else:
        points = grid_points(search) if search.space else [(name, {}) for name in groups]
        study.trials = [TrialRecord(name=name, params=params, asked_in=1) for name, params in points]
    rungs = search.halving.rungs() if search.halving else [None]
    decision = RoundDecision(
        train=_train(study.trials, 1, rungs[0]), stop_at_step=rungs[0] if len(rungs) > 1 else None
    )
    decision.final = len(rungs) == 1
    study.finished = _finished_after(search, study, 1)
    return study, decision


def _finished_after(search: SearchConfig, study: StudyRecord, round_number: int) -> bool:
    if search.halving is not None:
        return round_number >= len(search.halving.rungs())
    return search.strategy == "grid" or len(study.trials) >= search.max_trials


def tell(study: StudyRecord, round_number: int, losses: dict[str, list[float | None]]) -> None:
    """Record the validation losses of the trials that trained in `round_number` (one per job of the
    trial): their mean is the objective; a trial with a job lacking it (failed) failed."""
    for trial in study.trials:
        if trial.state != "running" or not trial.rounds or trial.rounds[-1] != round_number:
            continue
        values = losses.get(trial.name, [])
        if values and all(v is not None for v in values):
            trial.state, trial.objective = "complete", statistics.fmean(values)
        else:
            trial.state, trial.objective = "failed", None


def survivors(study: StudyRecord, round_number: int, eta: int) -> list[str]:
    """The best max(1, n // eta) of the n trials that trained in `round_number`, by objective (then name);
    failed trials never survive."""
    ran = [t for t in study.trials if t.rounds and t.rounds[-1] == round_number]
    done = sorted((t for t in ran if t.state == "complete"), key=lambda t: (t.objective, t.name))
    return [t.name for t in done[: max(1, len(ran) // eta)]]


def _prune(study: StudyRecord, round_number: int, keep: list[str]) -> None:
    for trial in study.trials:
        ended_here = trial.rounds and trial.rounds[-1] == round_number
        if ended_here and trial.state == "complete" and trial.name not in keep:
            trial.state = "pruned"


def advance(
    study: StudyRecord,
    search: SearchConfig,
    round_number: int,
    losses: dict[str, list[float | None]],
    spent: float,
    max_device_hours: float | None,
) -> RoundDecision:
    """Round `round_number` (> 1), once the round before ended: tell its losses, then stop (finished, or
    over the budget) or sample the next trials or continue halving's survivors to the next rung."""
    previous = round_number - 1
    tell(study, previous, losses)
    if study.finished:
        return RoundDecision(train=[])
    study.rounds = round_number
    halving = search.halving
    keep = survivors(study, previous, halving.eta) if halving else []
    if max_device_hours is not None and spent >= max_device_hours:
        study.stopped = (
            f"stopped by the budget before round {round_number}: {spent:.3g} of {max_device_hours:g} "
            "device-hours used"
        )
        study.finished = True
        _prune(study, previous, keep)
        return RoundDecision(train=[], evaluate_previous=keep)
    if halving is None:
        remaining = search.max_trials - len(study.trials)
        asked = sample(study, search, round_number, min(search.parallel, remaining))
        study.trials += asked
        study.finished = _finished_after(search, study, round_number)
        return RoundDecision(train=_train(asked, round_number, None))
    _prune(study, previous, keep)
    rungs = halving.rungs()
    last = round_number >= len(rungs)
    study.finished = last or not keep
    steps = rungs[round_number - 1]
    trained = _train([study.trial(name) for name in keep], round_number, steps)
    return RoundDecision(train=trained, stop_at_step=None if last else steps, final=last)
