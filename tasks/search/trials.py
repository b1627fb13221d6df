"""A search's trials as hyperparameter groups: the points of a grid, readable trial names, and a trial's
resolved hyperparameters (its base group with the trial's values)."""

from __future__ import annotations

import itertools
import re
from typing import Any

from tasks.config.base import SLUG
from tasks.config.hparams import ResolvedHParams
from tasks.config.search import HalvingConfig, SearchConfig

# Short keys for the hyperparameters most often searched, so names read `lr3e-4-r8-cosine`; any other
# name is written whole (underscores dropped: names are slugs).
SHORT = {
    "learning_rate": "lr",
    "min_learning_rate": "minlr",
    "lora_r": "r",
    "lora_alpha": "alpha",
    "lora_dropout": "drop",
    "warmup_ratio": "warm",
    "weight_decay": "wd",
    "batch_size": "bs",
    "epochs": "ep",
    "lr_scheduler": "",
}


def indexed_name(index: int) -> str:
    """`t00`, `t01`, ...: the name of a sampled trial (and of grid points without a readable name)."""
    return f"t{index:02d}"


def _value_text(value: Any) -> str:
    if isinstance(value, float) and not isinstance(value, bool):
        if value and abs(value) < 1e-2:
            mantissa, exponent = f"{value:.3e}".split("e")
            return f"{mantissa.rstrip('0').rstrip('.')}e{int(exponent)}"
        return f"{value:g}"
    return str(value).lower()


def readable_name(params: dict[str, Any]) -> str:
    return "-".join(f"{SHORT.get(k, k.replace('_', ''))}{_value_text(v)}" for k, v in params.items())


def grid_points(search: SearchConfig) -> list[tuple[str, dict[str, Any]]]:
    """(name, values) of every combination of the space's values, in the space's order. Names read from
    the values (`lr3e-4-r8`) when they are distinct slugs, else `t00`, `t01`, ..."""
    names = list(search.space)
    points = [
        dict(zip(names, values, strict=True))
        for values in itertools.product(*(search.space[n].grid_values() for n in names))
    ]
    readable = [readable_name(point) for point in points]
    if len(set(readable)) != len(readable) or not all(re.fullmatch(SLUG, name) for name in readable):
        readable = [indexed_name(i) for i in range(len(points))]
    return list(zip(readable, points, strict=True))


def trial_hparams(
    base: dict[str, Any], name: str, params: dict[str, Any], halving: HalvingConfig | None
) -> dict[str, Any]:
    """The resolved hyperparameters of a trial: its base group with the trial's values; with halving,
    max_steps is the last rung's, so the learning-rate schedule spans the whole budget."""
    values = {**base, **params, "name": name}
    if halving is not None:
        values["max_steps"] = halving.max_steps
    try:
        return ResolvedHParams.model_validate(values).model_dump(mode="json")
    except ValueError as error:
        raise ValueError(f"search.space: trial {name} {params} is not a valid group: {error}") from None
