"""How one experiment searches: the trials it trains (the hyperparameter groups as given, a grid over a
search space, or trials sampled by Optuna), successive halving over training steps, and the budget that
stops a search.

Light on purpose: imported by the DAG files at parse time (pydantic only; Optuna loads in the task that
samples, `tasks.search`).
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from tasks.config.base import StrictModel

# Rounds a run can hold: the DAG's graph is fixed when it is parsed, so the planning, training and
# scoring of later rounds are task groups declared up front; a search needing more is refused.
MAX_ROUNDS = 6

SearchStrategy = Literal["grid", "random", "tpe"]


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


class HalvingConfig(StrictModel):
    """Successive halving: every trial trains `min_steps`, the best 1/eta (by validation loss) continue
    from their committed checkpoints to eta times the steps, and so on up to `max_steps`."""

    eta: int = Field(3, ge=2, description="Keep the best 1/eta of the trials at each rung.")
    min_steps: int = Field(ge=1, description="Optimizer steps every trial trains in the first rung.")
    max_steps: int = Field(ge=1, description="Optimizer steps of the trials that reach the last rung.")


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


class BudgetConfig(StrictModel):
    """What an experiment may spend. Device-hours are GPUs x hours (CPU cores x hours on CPU)."""

    max_device_hours: float | None = Field(
        None,
        gt=0,
        description="No further round of a search starts once the jobs so far used this many device-hours.",
    )
