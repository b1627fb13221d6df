"""tasks.config.hparams: every model, default, trainer argument and the README table come from one
declaration per hyperparameter (tasks.config.hparam_fields)."""

from __future__ import annotations

import re

import pytest

from tasks.config.catalog import REPO_ROOT
from tasks.config.hparam_fields import HPARAM_FIELDS
from tasks.config.hparams import (
    HPARAM_DEFAULTS,
    HParams,
    ResolvedHParams,
    hparams_table,
    trainer_arguments,
    training_hparam_problems,
)

NAMES = [spec.name for spec in HPARAM_FIELDS]
FILLED = {**HPARAM_DEFAULTS, "name": "g"}


def test_every_declared_field_is_in_both_models_with_its_description_and_default():
    assert list(HParams.model_fields) == ["name", "preset", *NAMES]
    assert list(ResolvedHParams.model_fields) == ["name", *NAMES]
    assert list(HPARAM_DEFAULTS) == NAMES
    for spec in HPARAM_FIELDS:
        optional, resolved = HParams.model_fields[spec.name], ResolvedHParams.model_fields[spec.name]
        assert optional.description == resolved.description == spec.description
        assert optional.default is None
        assert resolved.is_required() == spec.required_in_spec
        if not spec.required_in_spec:
            assert resolved.default == spec.default


def test_a_job_spec_written_before_the_later_fields_still_loads_with_their_defaults():
    original = {spec.name: spec.default for spec in HPARAM_FIELDS if spec.required_in_spec}
    resolved = ResolvedHParams.model_validate({**original, "name": "old"})
    assert {name: getattr(resolved, name) for name in HPARAM_DEFAULTS} == HPARAM_DEFAULTS
    # Written back as it was given: a later field's default does not appear in an earlier spec.
    assert resolved.model_dump() == {**original, "name": "old"}


def test_inline_values_are_held_to_the_declared_limits():
    with pytest.raises(ValueError, match="greater than 0"):
        HParams(learning_rate=0)
    with pytest.raises(ValueError, match="less than 1"):
        HParams(warmup_ratio=1)


def test_the_trainer_gets_the_declared_pass_through_arguments_per_training_type():
    hp = ResolvedHParams.model_validate({**FILLED, "seed": 7, "epochs": 2, "dpo_beta": 0.3})
    sft = trainer_arguments(hp, "sft")
    assert sft == {
        "learning_rate": hp.learning_rate,
        "warmup_ratio": hp.warmup_ratio,
        "num_train_epochs": 2,
        "max_steps": hp.max_steps,
        "gradient_checkpointing": hp.gradient_checkpointing,
        "weight_decay": hp.weight_decay,
        "optim": hp.optim,
        "max_grad_norm": hp.max_grad_norm,
        "use_liger_kernel": False,
        "torch_compile": False,
        "seed": 7,
        "data_seed": 7,
    }
    assert trainer_arguments(hp, "dpo") == {**sft, "beta": 0.3}
    assert trainer_arguments(hp, "pretrain") == sft


def test_a_field_with_a_default_may_sit_in_a_group_another_type_uses():
    """dpo_beta has a value in every group, so a preset shared by SFT and DPO runs is not refused."""
    hp = ResolvedHParams.model_validate({**FILLED, "dpo_beta": 0.3})
    assert training_hparam_problems(hp, "sft") == []


def test_the_readme_table_is_the_generated_one():
    readme = (REPO_ROOT / "README.md").read_text()
    found = re.search(r"<!-- hparams table: begin -->\n(.*?)\n<!-- hparams table: end -->", readme, re.S)
    assert found, "README.md lost its hparams table markers"
    assert found.group(1) == hparams_table(), "run `tunerflow hparams table` and paste it into README.md"


def test_the_table_has_one_row_per_field_with_its_default():
    rows = hparams_table().splitlines()[2:]
    assert [row.split(" | ")[0].strip("| `") for row in rows] == NAMES
    assert "| `lr_scheduler` | `linear`, `cosine` or `constant` | `cosine` | all |" in hparams_table()
    assert "| `dpo_beta` | float, > 0 | `0.1` | dpo |" in hparams_table()
