"""The study's state in the run's store prefix, `search/study.json`: every trial asked (its values, the
rounds it trained in, its state and objective), why the search stopped. No Optuna database: each
planning task rebuilds an in-memory study from this file, with the sampler seeded from `search.seed`
and the round number, so the same seed gives the same trials and a re-run planning task asks the same.

The objective is the validation loss (`TrainResult.eval_loss`, the mean over the trial's jobs), to
minimize. TPE's first round is random (its startup trials are one round's worth), later rounds learn
from the objectives told; with halving every trial is sampled in round 1, so TPE has nothing to learn
from and samples as random search does.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from tasks.config.base import StrictModel
from tasks.config.search import SearchConfig, SearchParam
from tasks.search.trials import indexed_name
from tasks.storage import store


class TrialRecord(StrictModel):
    """One trial of the study."""

    name: str = Field(description="The trial's name, its hyperparameter group's name in job labels.")
    params: dict[str, Any] = Field(description="Its values of the search space ({} for a group as given).")
    asked_in: int = Field(description="The round it was asked (sampled) in.")
    rounds: list[int] = Field(default_factory=list, description="The rounds it trained in.")
    state: Literal["running", "complete", "failed", "pruned"] = Field(
        "running", description="running until its last round's jobs are told; pruned by halving."
    )
    objective: float | None = Field(None, description="Mean validation loss of its last round's jobs.")
    steps: int | None = Field(None, description="With halving: the global step its last round stopped at.")


# Not a Contract (written as given): a trial's rounds grow in place, and every field is always written.
class StudyRecord(StrictModel):
    """`search/study.json`."""

    strategy: str = Field(description="grid, random or tpe.")
    seed: int = Field(description="search.seed.")
    halving: bool = Field(False, description="Whether trials are pruned by successive halving.")
    trials: list[TrialRecord] = Field(default_factory=list, description="Every trial asked, in order.")
    rounds: int = Field(1, description="The last round planned.")
    finished: bool = Field(False, description="No further round will be planned.")
    stopped: str | None = Field(None, description="Why the search stopped early (the budget).")

    def trial(self, name: str) -> TrialRecord:
        return next(t for t in self.trials if t.name == name)


def study_uri(run_uri: str) -> str:
    return store.join(run_uri, "search", "study.json")


def load_study(run_uri: str) -> StudyRecord | None:
    """The run's study, or None for a run without a search."""
    uri = study_uri(run_uri)
    return StudyRecord.model_validate(store.read_json(uri)) if store.exists(uri) else None


def save_study(run_uri: str, study: StudyRecord) -> None:
    store.write_json(study_uri(run_uri), study.model_dump(mode="json"))


def _distribution(param: SearchParam) -> Any:
    import optuna  # heavy (sqlalchemy, numpy): loaded by the planning task that samples only

    if param.choices is not None or param.type == "categorical":
        return optuna.distributions.CategoricalDistribution(param.choices)
    if param.type == "int":
        step = int(param.step or 1)
        return optuna.distributions.IntDistribution(int(param.low), int(param.high), log=param.log, step=step)
    return optuna.distributions.FloatDistribution(param.low, param.high, log=param.log, step=param.step)


def _sampler(search: SearchConfig, round_number: int) -> Any:
    import optuna  # heavy (sqlalchemy, numpy): loaded by the planning task that samples only

    # One seed per round: a re-run of round k's planning draws exactly what its first run drew.
    seed = search.seed * 100 + round_number
    if search.strategy == "tpe":
        return optuna.samplers.TPESampler(seed=seed, n_startup_trials=search.parallel)
    return optuna.samplers.RandomSampler(seed=seed)


def _frozen(record: TrialRecord, distributions: dict[str, Any]) -> Any:
    from optuna.trial import TrialState, create_trial  # heavy: see _distribution

    state = {
        "running": TrialState.RUNNING,
        "complete": TrialState.COMPLETE,
        "failed": TrialState.FAIL,
        "pruned": TrialState.PRUNED,
    }[record.state]
    value = record.objective if record.state == "complete" else None
    return create_trial(params=record.params, distributions=distributions, state=state, value=value)


def sample(study: StudyRecord, search: SearchConfig, round_number: int, count: int) -> list[TrialRecord]:
    """`count` new trials from an Optuna study rebuilt from `study` (every trial told as recorded)."""
    import optuna  # heavy (sqlalchemy, numpy): loaded by the planning task that samples only

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    distributions = {name: _distribution(param) for name, param in search.space.items()}
    rebuilt = optuna.create_study(direction="minimize", sampler=_sampler(search, round_number))
    for record in study.trials:
        rebuilt.add_trial(_frozen(record, distributions))
    asked = []
    for index in range(len(study.trials), len(study.trials) + count):
        trial = rebuilt.ask(distributions)
        params = {name: trial.params[name] for name in search.space}
        asked.append(TrialRecord(name=indexed_name(index), params=params, asked_in=round_number))
    return asked
