"""The hyperparameter models and everything else derived from the declarations in
`tasks.config.hparam_fields`: `HParams` (a conf's group, every field optional), `ResolvedHParams` (what
the train step receives, every field filled), the defaults, the rules a training type imposes, the
trainer arguments and the README's table."""

from __future__ import annotations

import json
import types
import typing
from typing import Any, Literal, Self

from pydantic import Field, create_model, model_validator

from tasks.config.base import SlugStr, StrictModel, WrittenAsGiven
from tasks.config.hparam_fields import HPARAM_FIELDS, TRAINING_TYPES, HParam

# The types whose trainers pad whole prompts and answers: packing and padding-free are refused there.
PADDED_TYPES = {"dpo": "DPO", "kto": "KTO", "orpo": "ORPO", "simpo": "SimPO", "cpo": "CPO", "grpo": "GRPO"}

HPARAM_DEFAULTS: dict[str, Any] = {spec.name: spec.default for spec in HPARAM_FIELDS}


class _Group(StrictModel):
    name: SlugStr | None = Field(None, description="Label of the group in job names; defaults to the preset.")
    preset: str | None = Field(
        None, description="Name of a preset in include/configs/hparams/ whose values are the base."
    )


HParams = create_model(
    "HParams",
    __base__=_Group,
    __module__=__name__,
    __doc__="One hyperparameter group. Unset fields come from the preset, then from the defaults\n"
    "(tasks/config/hparam_fields.py); `tunerflow hparams show <preset>` prints the result.",
    # Unset means "from the preset, then from the defaults"; the limits hold for inline values.
    **{
        spec.name: (spec.type | None, Field(None, description=spec.description, **spec.limits))
        for spec in HPARAM_FIELDS
    },
)


# Written as given: hyperparameters grow by one declaration each, and a spec's hparams key a job's
# checkpoints (tasks.training.checkpoints). The planner resolves every one, and a spec stored before a
# hyperparameter existed dumps back unchanged, so a retry after an upgrade still resumes its checkpoints.
class _Resolved(StrictModel, WrittenAsGiven):
    name: SlugStr = Field(description="Label of the group in job names.")

    @model_validator(mode="after")
    def _cross_field_rules(self) -> Self:
        # The fields are declared in tasks.config.hparam_fields and added by create_model below.
        name = f"hparams '{self.name}'"
        if self.batch_size % self.micro_batch_size:
            raise ValueError(
                f"{name}: batch_size {self.batch_size} is not a multiple of "
                f"micro_batch_size {self.micro_batch_size}"
            )
        if self.max_steps == 0 or self.max_steps < -1:
            raise ValueError(f"{name}: max_steps must be -1 (use epochs) or above 0")
        if self.save_steps < 1:
            raise ValueError(f"{name}: save_steps must be 1 or more (optimizer steps)")
        if self.save_total_limit < 1:
            raise ValueError(
                f"{name}: save_total_limit must be 1 or more, or no checkpoint would be left to resume from"
            )
        if self.deepspeed and self.fsdp:
            raise ValueError(
                f"{name}: deepspeed '{self.deepspeed}' and fsdp '{self.fsdp}' both shard the model; "
                "choose one of them and unset the other"
            )
        if self.processes_per_node is not None and self.nodes == 1:
            raise ValueError(
                f"{name}: processes_per_node applies to a training over several nodes; unset it (one node "
                "uses every GPU its pod or worker has) or raise nodes above 1"
            )
        stop_problem = _stop_problem(self, name)
        if stop_problem:
            raise ValueError(stop_problem)
        if self.min_learning_rate and self.lr_scheduler != "cosine":
            raise ValueError(
                f"{name}: min_learning_rate {self.min_learning_rate} needs lr_scheduler cosine "
                f"(got {self.lr_scheduler}); set min_learning_rate to 0 or use cosine"
            )
        if self.min_learning_rate >= self.learning_rate:
            raise ValueError(
                f"{name}: min_learning_rate {self.min_learning_rate} must be below learning_rate "
                f"{self.learning_rate}"
            )
        return self


def _stop_problem(hp: Any, name: str) -> str | None:
    """Early stopping's and the time limit's rules, or None when they hold."""
    if hp.eval_steps is not None and hp.eval_steps < 1:
        return (
            f"{name}: eval_steps must be 1 or more (optimizer steps), or unset to evaluate every save_steps"
        )
    if hp.early_stopping_patience is not None and hp.early_stopping_patience < 1:
        return f"{name}: early_stopping_patience must be 1 or more evaluations, or unset to turn it off"
    if hp.early_stopping_threshold < 0:
        return f"{name}: early_stopping_threshold must be 0 or more (a decrease of the validation loss)"
    if hp.max_train_minutes is not None and hp.max_train_minutes <= 0:
        return f"{name}: max_train_minutes must be above 0, or unset for no time limit"
    every = hp.eval_steps or hp.save_steps
    if hp.early_stopping_patience is not None and hp.save_steps % every:
        # transformers keeps the best checkpoint (load_best_model_at_end) only when saves fall on evaluations.
        return (
            f"{name}: early_stopping_patience needs save_steps ({hp.save_steps}) to be a multiple of "
            f"eval_steps ({every}); change one of them"
        )
    return None


def _resolved_field(spec: HParam) -> tuple[Any, Any]:
    # No limits here: a spec is checked by the rules above, whose messages say what to change.
    if spec.required_in_spec:
        return spec.type, Field(description=spec.description)
    return spec.type, Field(spec.default, description=spec.description)


ResolvedHParams = create_model(
    "ResolvedHParams",
    __base__=_Resolved,
    __module__=__name__,
    __doc__="A hyperparameter group with every value filled in, as the train step receives it.",
    **{spec.name: _resolved_field(spec) for spec in HPARAM_FIELDS},
)


def training_hparam_problems(hp: ResolvedHParams, training_type: str) -> list[str]:
    """Hyperparameters a training type cannot run with. Checked when the conf is validated (presets
    resolved) and again by the train step, which may be handed a spec written by hand."""
    problems = []
    if training_type in PADDED_TYPES and hp.packing:
        problems.append(
            f"hparams '{hp.name}': packing is refused for {PADDED_TYPES[training_type]}, which trains on "
            "whole prompts and answers; unset packing"
        )
    if training_type in PADDED_TYPES and hp.padding_free:
        problems.append(
            f"hparams '{hp.name}': padding_free is refused for {PADDED_TYPES[training_type]} (TRL pads its "
            "prompts and answers); unset padding_free"
        )
    if training_type == "grpo" and hp.batch_size % hp.grpo_num_generations:
        problems.append(
            f"hparams '{hp.name}': batch_size {hp.batch_size} must be a multiple of grpo_num_generations "
            f"{hp.grpo_num_generations} (each prompt's answers are compared within one batch); change one"
        )
    if training_type == "grpo" and hp.early_stopping_patience is not None:
        # GRPO's validation loss is its policy loss on fresh samples: about 0 whatever the model learned.
        problems.append(
            f"hparams '{hp.name}': early_stopping_patience is refused for GRPO, whose validation loss does "
            "not measure the model; unset early_stopping_patience and set max_steps"
        )
    if training_type == "pretrain" and hp.packing is False and hp.padding_free:
        problems.append(f"hparams '{hp.name}': padding_free needs packing for pretrain; unset one of them")
    for spec in HPARAM_FIELDS:
        unused = training_type not in spec.training_types
        if unused and spec.default is None and getattr(hp, spec.name) is not None:
            problems.append(
                f"hparams '{hp.name}': {spec.name} is used by {' and '.join(spec.training_types)} "
                f"training only, not by training.type '{training_type}'; unset {spec.name}"
            )
    return problems


def trainer_arguments(hp: ResolvedHParams, training_type: str) -> dict[str, Any]:
    """The trainer arguments (`TrainingArguments`, `SFTConfig`, `DPOConfig`) that take a hyperparameter
    of this resolved group unchanged. An unset value is left out, so the trainer's own default holds."""
    arguments: dict[str, Any] = {}
    for spec in HPARAM_FIELDS:
        value = getattr(hp, spec.name)
        if training_type in spec.training_types and value is not None:
            arguments.update(dict.fromkeys(spec.trainer_args, value))
    return arguments


def _type_text(type_: Any) -> str:
    origin = typing.get_origin(type_)
    if origin is Literal:
        *values, last = (f"`{value}`" for value in typing.get_args(type_))
        return f"{', '.join(values)} or {last}"
    if origin is list:
        return "list of names"
    if origin in (types.UnionType, typing.Union):
        return " or ".join(_type_text(arg) for arg in typing.get_args(type_) if arg is not types.NoneType)
    return type_.__name__


LIMIT_SIGNS = {"gt": ">", "ge": ">=", "lt": "<", "le": "<="}


def _cell(spec: HParam) -> list[str]:
    limits = ", ".join(f"{LIMIT_SIGNS[key]} {value}" for key, value in spec.limits.items())
    kind = _type_text(spec.type) + (f", {limits}" if limits else "")
    if spec.default is None:
        default = "unset"
    else:
        default = f"`{spec.default if isinstance(spec.default, str) else json.dumps(spec.default)}`"
    types = "all" if spec.training_types == TRAINING_TYPES else ", ".join(spec.training_types)
    return [f"`{spec.name}`", kind, default, types, spec.description.replace("|", "\\|").replace("<", "&lt;")]


def hparams_table() -> str:
    """The README's hyperparameter table (markdown), one row per declared field."""
    rows = [["field", "type", "default", "training types", "what it does"], ["---"] * 5]
    rows += [_cell(spec) for spec in HPARAM_FIELDS]
    return "\n".join("| " + " | ".join(row) + " |" for row in rows)
