"""What a hyperparameter declaration is (`HParam`) and the training types it may name; the declarations
themselves are in `tasks.config.hparam_fields` and `tasks.config.peft_fields`. Stdlib only."""

from __future__ import annotations

import typing
from dataclasses import dataclass, field
from typing import Any

from tasks.config.training import TrainingType

TRAINING_TYPES: tuple[str, ...] = typing.get_args(TrainingType)


@dataclass(frozen=True)
class HParam:
    """One hyperparameter.

    `limits` are pydantic `Field` keywords (gt, ge, lt) checked on a conf's inline values. A type outside
    `training_types` is handed nothing; one with no default (a feature that is off unless asked for) is
    refused there when set, while one with a default may sit in a preset shared by several types.
    `required_in_spec`: job specs have held it from the start, so `ResolvedHParams` has no default for it;
    a field added later takes its default there too, so that specs written before it still load.
    """

    name: str
    type: Any
    default: Any
    description: str
    limits: dict[str, Any] = field(default_factory=dict)
    training_types: tuple[str, ...] = TRAINING_TYPES
    trainer_args: tuple[str, ...] = ()
    required_in_spec: bool = False
