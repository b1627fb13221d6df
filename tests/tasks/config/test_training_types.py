"""The settings KTO, ORPO, SimPO, CPO and GRPO cannot run are refused when the conf is validated, with a
message naming the field and what to do."""

from __future__ import annotations

import pytest

from tasks.config.base import ConfError
from tasks.config.catalog import resolve_experiment
from tasks.config.experiment import parse_experiment
from tasks.config.training import dataset_kind_problem


def conf(type_: str, method: str = "lora", primary: str = "rouge_l", **group) -> dict:
    return {
        "name": "e",
        "datasets": [{"name": "d", "uri": "x.jsonl"}],
        "models": [{"name": "tiny", "uri": "/m"}],
        "hparams": [{"preset": "lora-fast", **group}],
        "training": {"type": type_, "method": method},
        "scoring": {"metrics": ["rouge_l", "exact_match", "eval_loss"], "primary": primary},
    }


def resolved(type_: str, **kwargs) -> dict:
    return resolve_experiment(parse_experiment(conf(type_, **kwargs)))


@pytest.mark.parametrize("type_", ["kto", "orpo", "simpo", "cpo", "grpo"])
def test_each_type_validates_with_lora_and_refuses_prompt_learning(type_):
    assert resolved(type_)["hparams"][0]["name"] == "lora-fast"
    with pytest.raises(ConfError, match=f"type '{type_}' with method 'prompt_tuning' is refused: TRL's"):
        parse_experiment(conf(type_, method="prompt_tuning"))


@pytest.mark.parametrize("type_", ["orpo", "simpo", "cpo", "grpo"])
def test_reference_model_settings_are_refused_for_reference_free_types(type_):
    with pytest.raises(
        ConfError, match=f"dpo_beta configures DPO's reference model, and training.type '{type_}'"
    ):
        parse_experiment(conf(type_, dpo_beta=0.2))
    assert parse_experiment(conf("kto", dpo_beta=0.2))  # KTO has a reference model


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"grpo_reward": "eval_loss"}, "grpo_reward 'eval_loss' is computed from the model's loss"),
        ({"primary": "eval_loss"}, "grpo_reward 'eval_loss' is computed from the model's loss"),
        ({"grpo_reward": "no_such"}, "grpo_reward 'no_such' is not a metric"),
        (
            {"batch_size": 16, "micro_batch_size": 4, "grpo_num_generations": 6},
            "batch_size 16 must be a multiple of grpo_num_generations 6",
        ),
        ({"packing": True}, "packing is refused for GRPO"),
        ({"early_stopping_patience": 2}, "early_stopping_patience is refused for GRPO"),
    ],
)
def test_grpo_settings_it_cannot_run_are_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        resolved("grpo", **kwargs)


def test_type_settings_are_refused_for_other_types_and_padding_for_preference_types():
    with pytest.raises(ValueError, match="grpo_reward is used by grpo training only"):
        resolved("sft", grpo_reward="exact_match")
    with pytest.raises(ValueError, match="padding_free is refused for ORPO"):
        resolved("orpo", padding_free=True)
    assert resolved("grpo", grpo_reward="keyword_hit")["hparams"][0]["grpo_reward"] == "keyword_hit"


def test_dataset_kinds_each_type_trains_on():
    assert dataset_kind_problem("kto", "d", "unpaired") is None
    assert dataset_kind_problem("kto", "d", "preference") is None  # pairs are split in two
    assert "trains on chat rows" in dataset_kind_problem("grpo", "d", "preference")
    assert "trains on preference rows" in dataset_kind_problem("simpo", "d", "chat")
