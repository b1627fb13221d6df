"""Vision confs: the vision types take vision rows and vision models only, and what cannot run with a
vision-language model (other methods, export, merging, ONNX ranking) is refused naming the field."""

from __future__ import annotations

import pytest

from tasks.config.base import ConfError
from tasks.config.catalog import resolve_experiment
from tasks.config.experiment import parse_experiment
from tasks.config.training import dataset_kind_problem

CONF = {
    "name": "v",
    "datasets": [{"name": "pics", "uri": "builtin:tuna_images"}],
    "models": [{"name": "llava-1.5-7b"}],
    "hparams": [{"preset": "lora-default"}],
    "training": {"type": "vlm_sft", "method": "lora"},
    "export": {"enabled": False},
}


def refusal(**changes) -> str:
    with pytest.raises((ConfError, ValueError)) as error:
        resolve_experiment(parse_experiment({**CONF, **changes}))
    return str(error.value)


def test_a_vision_conf_validates():
    resolve_experiment(parse_experiment(CONF))
    resolve_experiment(parse_experiment({**CONF, "training": {"type": "vlm_pretrain", "method": "full"}}))


@pytest.mark.parametrize(
    ("changes", "words"),
    [
        ({"training": {"type": "vlm_pretrain", "method": "lora"}}, ["training", "use method 'full'"]),
        ({"training": {"type": "vlm_sft", "method": "prefix_tuning"}}, ["training", "lora", "full"]),
        ({"export": {"enabled": True}}, ["export.enabled", "still scored and registered"]),
        ({"merge": {"enabled": True}}, ["merge.enabled"]),
        ({"scoring": {"rank_on": "onnx"}}, ["scoring.rank_on", "pytorch"]),
        ({"models": [{"name": "smollm2-135m-instruct"}]}, ["models", "modality: vision"]),
        ({"training": {"type": "sft", "method": "lora"}}, ["models", "vlm_sft"]),
    ],
)
def test_what_cannot_run_is_refused_naming_the_field(changes, words):
    message = refusal(**changes)
    assert all(word in message for word in words), message


def test_only_the_vision_types_take_vision_rows():
    assert dataset_kind_problem("vlm_sft", "pics", "vision") is None
    assert "training.type 'vlm_sft' trains on vision rows" in dataset_kind_problem("vlm_sft", "d", "chat")
    assert "training.type 'sft'" in dataset_kind_problem("sft", "pics", "vision")
