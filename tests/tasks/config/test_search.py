"""The search, halving and budget sections: what they accept, and every refusal naming its field."""

from __future__ import annotations

import copy

import pytest

from tasks.config.base import ConfError
from tasks.config.experiment import parse_experiment
from tasks.config.search import MAX_ROUNDS, HalvingConfig, SearchParam

BASE = {
    "name": "exp",
    "datasets": [{"name": "d", "uri": "builtin:tuna_identity", "split": "80,10,10"}],
    "models": [{"name": "smollm2-135m-instruct"}],
    "hparams": [{"preset": "lora-fast"}],
}
LR = {"type": "float", "low": 1e-5, "high": 1e-3, "log": True}


def _conf(search=None, **sections) -> dict:
    conf = copy.deepcopy(BASE)
    if search is not None:
        conf["search"] = search
    conf.update(sections)
    return conf


def _refused(conf: dict) -> str:
    with pytest.raises(ConfError) as caught:
        parse_experiment(conf)
    return str(caught.value)


def test_a_tpe_search_with_halving_validates():
    search = {
        "strategy": "tpe",
        "space": {
            "learning_rate": LR,
            "lora_r": {"type": "int", "low": 4, "high": 32, "step": 4},
            "lr_scheduler": {"type": "categorical", "choices": ["cosine", "linear"]},
        },
        "max_trials": 9,
        "halving": {"eta": 3, "min_steps": 4, "max_steps": 36},
    }
    experiment = parse_experiment(_conf(search, budget={"max_device_hours": 2}))
    assert experiment.search.halving.rungs() == [4, 12, 36]
    assert experiment.search.rounds() == 3


def test_rungs_end_at_max_steps():
    assert HalvingConfig(eta=3, min_steps=8, max_steps=24).rungs() == [8, 24]
    assert HalvingConfig(eta=2, min_steps=5, max_steps=30).rungs() == [5, 10, 20, 30]
    assert HalvingConfig(eta=3, min_steps=10, max_steps=10).rungs() == [10]


def test_grid_values_of_a_stepped_range_and_of_choices():
    assert SearchParam(type="float", low=0.1, high=0.3, step=0.1).grid_values() == [0.1, 0.2, 0.3]
    assert SearchParam(type="int", low=8, high=32, step=8).grid_values() == [8, 16, 24, 32]
    assert SearchParam(type="categorical", choices=["cosine", "linear"]).grid_values() == ["cosine", "linear"]


@pytest.mark.parametrize(
    ("space", "field", "words"),
    [
        ({"learning_rte": LR}, "search.space.learning_rte", "not a hyperparameter"),
        ({"learning_rate": {**LR, "low": -1e-3, "log": False}}, "search.space.learning_rate",
         "greater than 0"),
        ({"learning_rate": {**LR, "low": 1e-2}}, "search.space.learning_rate", "must be below high"),
        ({"learning_rate": {"type": "float", "low": 0, "high": 1, "log": True}}, "search.space.learning_rate",
         "log range needs low above 0"),
        ({"lora_r": {"type": "int", "low": 4, "high": 8, "choices": [4, 8]}}, "search.space.lora_r",
         "not both"),
        ({"lora_r": {"type": "float", "low": 4, "high": 8}}, "search.space.lora_r", "cannot vary it"),
        ({"lora_r": {"type": "int", "choices": [4, 8.5]}}, "search.space.lora_r", "not int values"),
        ({"lr_scheduler": {"type": "categorical", "choices": ["cosine", "sawtooth"]}},
         "search.space.lr_scheduler", "'sawtooth' refused"),
        ({"lr_scheduler": {"type": "categorical"}}, "search.space.lr_scheduler", "needs `choices`"),
        ({"warmup_ratio": {"type": "float", "low": 0.1, "high": 1.0}}, "search.space.warmup_ratio",
         "less than 1"),
    ],
)  # fmt: skip
def test_a_bad_search_space_is_refused_naming_the_dimension(space, field, words):
    message = _refused(_conf({"strategy": "random", "space": space, "max_trials": 4}))
    assert field in message and words in message


@pytest.mark.parametrize(
    ("search", "sections", "field", "words"),
    [
        ({"strategy": "tpe", "space": {"learning_rate": LR}}, {}, "search.max_trials", "needs how many"),
        ({"strategy": "random", "max_trials": 3}, {}, "search.space", "give one"),
        ({"space": {"learning_rate": LR}}, {}, "search.space.learning_rate", "a grid needs `choices`"),
        ({"space": {"lora_r": {"type": "int", "low": 4, "high": 32, "step": 4}}, "max_trials": 4}, {},
         "search.max_trials", "has 8 trials, more than max_trials 4"),
        ({"max_trials": 1}, {"hparams": [{"preset": "lora-fast"}, {"name": "b", "preset": "lora-fast"}]},
         "search.max_trials", "2 trials (the hparams groups)"),
        ({"space": {"lora_r": {"type": "int", "choices": [4, 8]}}},
         {"hparams": [{"preset": "lora-fast"}, {"name": "b", "preset": "lora-fast"}]},
         "search.space", "hparams has 2"),
        ({"strategy": "random", "space": {"learning_rate": LR}, "max_trials": 20, "parallel": 2}, {},
         "search.parallel", f"need 10 rounds, at most {MAX_ROUNDS} fit; raise parallel to 4"),
        ({"halving": {"eta": 2, "min_steps": 1, "max_steps": 1000}}, {}, "search.halving",
         "raise min_steps or eta"),
        ({"halving": {"eta": 2, "min_steps": 50, "max_steps": 10}}, {}, "search.halving.min_steps",
         "above max_steps"),
        ({"strategy": "random", "space": {"max_steps": {"type": "int", "choices": [10, 20]}}, "max_trials": 2,
          "halving": {"min_steps": 5, "max_steps": 20}}, {}, "search.space.max_steps", "drop it"),
        ({}, {"budget": {"max_device_hours": 1}}, "budget.max_device_hours", "could never stop it"),
        ({}, {"budget": {"max_device_hours": 0}}, "budget.max_device_hours", "greater than 0"),
    ],
)  # fmt: skip
def test_a_bad_search_or_budget_is_refused_naming_the_field(search, sections, field, words):
    message = _refused(_conf(search, **sections))
    assert field in message and words in message


def test_without_a_search_the_groups_are_one_round_of_trials():
    experiment = parse_experiment(_conf())
    assert experiment.search.strategy == "grid" and experiment.search.rounds() == 1
