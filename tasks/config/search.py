"""How one experiment searches: the trials it trains (the hyperparameter groups as given, a grid over a
search space, or trials sampled by Optuna), successive halving over training steps, and the budget that
stops a search.

Light on purpose: imported by the DAG files at parse time (pydantic only; Optuna loads in the task that
samples, `tasks.search`).
"""

from __future__ import annotations

import math
import types
import typing
from typing import Any, Literal, Self

from pydantic import Field, ValidationError, model_validator

from tasks.config.base import StrictModel
from tasks.config.hparam_fields import HPARAM_FIELDS
from tasks.config.hparams import HParams

# Rounds a run can hold: the DAG's graph is fixed when it is parsed, so the planning, training and
# scoring of later rounds are task groups declared up front; a search needing more is refused.
MAX_ROUNDS = 6

SearchStrategy = Literal["grid", "random", "tpe"]

# Halving sets every trial's max_steps itself (the LR schedule spans the whole budget).
HALVING_OWNS = "max_steps"


class SearchParam(StrictModel):
    """One dimension of the search space: a range or a list of choices for one hyperparameter."""

    type: Literal["float", "int", "categorical"] = Field(
        description="float (a range), int (a range of whole numbers) or categorical (a list of choices)."
    )
    low: float | None = Field(None, description="Lowest value of a float or int range.")
    high: float | None = Field(None, description="Highest value of a float or int range (included).")
    log: bool = Field(False, description="Sample a float or int range on a log scale (learning rates).")
    step: float | None = Field(None, description="Spacing of an int or float range; a grid needs it.")
    choices: list[str | int | float | bool] | None = Field(
        None, description="The values of a categorical dimension (also usable for int and float)."
    )

    @model_validator(mode="after")
    def _range_or_choices(self) -> Self:
        ranged = [name for name in ("low", "high", "step") if getattr(self, name) is not None]
        ranged += ["log"] if self.log else []
        if self.choices is not None:
            if not self.choices:
                raise ValueError("choices is empty; give at least one value")
            if ranged:
                raise ValueError(f"give choices or a range, not both (also set: {', '.join(ranged)})")
            wrong = [c for c in self.choices if not _is_type(c, self.type)]
            if wrong:
                raise ValueError(f"choices {wrong} are not {self.type} values")
            return self
        if self.type == "categorical":
            raise ValueError("a categorical dimension needs `choices`")
        if self.low is None or self.high is None:
            raise ValueError(f"a {self.type} range needs `low` and `high` (or give `choices`)")
        if self.low >= self.high:
            raise ValueError(f"low {self.low:g} must be below high {self.high:g}")
        if self.log and self.low <= 0:
            raise ValueError(f"a log range needs low above 0 (got {self.low:g})")
        if self.log and self.step is not None:
            raise ValueError("a log range takes no `step` (Optuna samples it continuously); drop one")
        if self.step is not None and self.step <= 0:
            raise ValueError(f"step must be above 0 (got {self.step:g})")
        if self.type == "int":
            fractional = [n for n in ("low", "high", "step") if not _whole(getattr(self, n))]
            if fractional:
                raise ValueError(f"an int range needs whole numbers for {', '.join(fractional)}")
        return self

    def grid_values(self) -> list[Any]:
        """Every value of the dimension on a grid: the choices, or low, low + step, ... up to high."""
        if self.choices is not None:
            return list(self.choices)
        if self.step is None:
            raise ValueError("a range needs `step` on a grid")
        count = math.floor((self.high - self.low) / self.step + 1e-9) + 1
        values = [self.low + i * self.step for i in range(count)]
        # Rounded so that 0.1 + 2 * 0.1 reads 0.3 in trial names and specs.
        return [round(v) if self.type == "int" else round(v, 12) for v in values]

    def edges(self) -> list[Any]:
        """The values whose limits decide whether every value is allowed: the choices, or low and high."""
        if self.choices is not None:
            return list(self.choices)
        return [int(self.low), int(self.high)] if self.type == "int" else [self.low, self.high]


def _whole(value: float | None) -> bool:
    return value is None or float(value).is_integer()


def _is_type(value: Any, kind: str) -> bool:
    if kind == "categorical":
        return True
    if isinstance(value, bool):
        return False
    return isinstance(value, int) if kind == "int" else isinstance(value, int | float)


def _base_type(declared: Any) -> Any:
    """The declared type without its `| None`."""
    if isinstance(declared, types.UnionType) or typing.get_origin(declared) is typing.Union:
        rest = [arg for arg in typing.get_args(declared) if arg is not type(None)]
        return rest[0] if len(rest) == 1 else declared
    return declared


# The dimension types each declared hyperparameter type can be searched with.
_KINDS = {float: {"float", "int", "categorical"}, int: {"int", "categorical"}}
_DECLARED = {spec.name: spec for spec in HPARAM_FIELDS}


def space_problems(name: str, param: SearchParam) -> list[str]:
    """Why `param` cannot vary hyperparameter `name`: an unknown name, a dimension type the declared type
    cannot take, or a value outside the declared limits."""
    where = f"search.space.{name}"
    if name not in _DECLARED:
        return [f"{where}: not a hyperparameter (`tunerflow hparams` lists them)"]
    kinds = _KINDS.get(_base_type(_DECLARED[name].type), {"categorical"})
    if param.type not in kinds:
        return [f"{where}: a {param.type} dimension cannot vary it; use {' or '.join(sorted(kinds))}"]
    problems = []
    for value in param.edges():
        try:
            HParams.model_validate({name: value})
        except ValidationError as error:
            problems.append(f"{where}: value {value!r} refused: {error.errors()[0]['msg']}")
    return problems


class HalvingConfig(StrictModel):
    """Successive halving: every trial trains `min_steps`, the best 1/eta (by validation loss) continue
    from their committed checkpoints to eta times the steps, and so on up to `max_steps`."""

    eta: int = Field(3, ge=2, description="Keep the best 1/eta of the trials at each rung.")
    min_steps: int = Field(ge=1, description="Optimizer steps every trial trains in the first rung.")
    max_steps: int = Field(ge=1, description="Optimizer steps of the trials that reach the last rung.")

    @model_validator(mode="after")
    def _min_below_max(self) -> Self:
        if self.min_steps > self.max_steps:
            raise ValueError(
                f"search.halving.min_steps {self.min_steps} is above max_steps {self.max_steps}; "
                "lower min_steps or raise max_steps"
            )
        return self

    def rungs(self) -> list[int]:
        """The global step each round stops at: min_steps, min_steps * eta, ..., and max_steps last."""
        rungs, steps = [], self.min_steps
        while steps < self.max_steps:
            rungs.append(steps)
            steps *= self.eta
        return [*rungs, self.max_steps]


class SearchConfig(StrictModel):
    """Which trials an experiment trains. A trial is one hyperparameter group; every trial is trained on
    every dataset x model, as the groups are."""

    strategy: SearchStrategy = Field(
        "grid",
        description="grid: the hyperparameter groups as given, or every combination of the space's values; "
        "random or tpe: trials sampled from the space by Optuna (tpe learns from the finished trials).",
    )
    space: dict[str, SearchParam] = Field(
        default_factory=dict,
        description="Hyperparameter name -> its range or choices, varied over the one hyperparameter group "
        "given (the base of every trial).",
    )
    max_trials: int | None = Field(
        None, ge=1, description="Most trials the experiment trains (random and tpe: how many are sampled)."
    )
    parallel: int = Field(
        4, ge=1, description="random and tpe without halving: trials sampled per round, trained at once."
    )
    seed: int = Field(0, description="Seed of the sampler: the same seed gives the same trials.")
    halving: HalvingConfig | None = Field(None, description="Successive halving over training steps.")

    @model_validator(mode="after")
    def _searchable(self) -> Self:
        problems = [p for name, param in self.space.items() for p in space_problems(name, param)]
        if self.halving is not None and HALVING_OWNS in self.space:
            problems.append(
                f"search.space.{HALVING_OWNS}: halving sets every trial's max_steps to "
                "search.halving.max_steps; drop it from the space"
            )
        if self.strategy != "grid":
            if not self.space:
                problems.append(f"search.space: {self.strategy} samples from a space; give one")
            if self.max_trials is None:
                problems.append(f"search.max_trials: {self.strategy} needs how many trials to sample")
        elif self.space:
            ungridded = [n for n, param in self.space.items() if param.choices is None and not param.step]
            if ungridded:
                problems.append(
                    f"search.space.{ungridded[0]}: a grid needs `choices` or a range with `step` "
                    f"(also: {', '.join(ungridded[1:]) or 'none'})"
                )
            elif self.max_trials is not None and self.grid_size() > self.max_trials:
                problems.append(
                    f"search.max_trials: the grid over search.space has {self.grid_size()} trials, more "
                    f"than max_trials {self.max_trials}; shrink the space or raise max_trials"
                )
        if not problems:
            problems += self._round_problems()
        if problems:
            raise ValueError("; ".join(problems))
        return self

    def grid_size(self) -> int:
        return math.prod(len(param.grid_values()) for param in self.space.values())

    def rounds(self) -> int:
        """The planning rounds the search takes at most (1 for a grid without halving)."""
        if self.halving is not None:
            return len(self.halving.rungs())
        if self.strategy == "grid":
            return 1
        return math.ceil(self.max_trials / self.parallel)

    def _round_problems(self) -> list[str]:
        needed = self.rounds()
        if needed <= MAX_ROUNDS:
            return []
        if self.halving is not None:
            h = self.halving
            return [
                f"search.halving: rungs {h.rungs()} (min_steps {h.min_steps} x eta {h.eta} up to max_steps "
                f"{h.max_steps}) need {needed} rounds, at most {MAX_ROUNDS} fit; raise min_steps or eta"
            ]
        least = math.ceil(self.max_trials / MAX_ROUNDS)
        return [
            f"search.parallel: {self.max_trials} trials, {self.parallel} a round, need {needed} rounds, at "
            f"most {MAX_ROUNDS} fit; raise parallel to {least} or lower max_trials to "
            f"{self.parallel * MAX_ROUNDS}"
        ]


def experiment_problems(search: SearchConfig, budget: BudgetConfig, groups: int) -> list[str]:
    """The rules between `search`, `budget` and `hparams` (ExperimentConfig's validator reports them)."""
    problems = []
    if search.space and groups != 1:
        problems.append(
            f"search.space: the space varies one base hyperparameter group, hparams has {groups}; keep "
            "one group, or drop search.space to train the groups as given"
        )
    elif search.strategy == "grid" and not search.space and (search.max_trials or groups) < groups:
        problems.append(
            f"search.max_trials: the grid has {groups} trials (the hparams groups), more than max_trials "
            f"{search.max_trials}; drop groups or raise max_trials"
        )
    if budget.max_device_hours is not None and search.rounds() == 1:
        problems.append(
            "budget.max_device_hours: the search trains in one round, so the budget could never stop it; "
            "add search.halving, or use random or tpe with parallel below max_trials"
        )
    return problems


class BudgetConfig(StrictModel):
    """What an experiment may spend. Device-hours are GPUs x hours (CPU cores x hours on CPU)."""

    max_device_hours: float | None = Field(
        None,
        gt=0,
        description="No further round of a search starts once the jobs so far used this many device-hours.",
    )
