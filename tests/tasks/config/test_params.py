"""The trigger form's schema is what Airflow validates at trigger time (UI and REST), before a run exists."""

from __future__ import annotations

import copy

import pytest

from tasks.config.experiment import parse_experiment
from tasks.config.params import NO_DEFAULT, demo_conf_path, field_schemas, load_conf, param_specs
from tasks.config.scoring import ScoringConfig


def _params():
    from airflow.sdk import Param
    from airflow.sdk.definitions.param import ParamsDict

    return ParamsDict(
        {
            name: Param(**schema) if default is NO_DEFAULT else Param(default, **schema)
            for name, (default, schema) in param_specs().items()
        }
    )


DEMO = load_conf(demo_conf_path())
REQUIRED = {key: DEMO[key] for key in ("datasets", "models", "hparams")}


def _validate(conf: dict):
    params = _params()
    for key, value in {**REQUIRED, **conf}.items():
        params[key] = value
    return params.validate()


def test_every_experiment_field_is_a_param_with_title_and_description():
    schemas = field_schemas()
    assert set(schemas) == {
        "name",
        "description",
        "datasets",
        "models",
        "hparams",
        "search",
        "budget",
        "training",
        "scoring",
        "merge",
        "export",
        "promotion",
    }
    for name, schema in schemas.items():
        assert schema.get("description"), name
        assert "$ref" not in str(schema), f"{name} still has unresolved refs"


def test_optional_fields_are_left_empty_and_parse_to_the_pydantic_defaults_not_to_the_demo():
    validated = _validate({})
    assert validated["name"] == DEMO["name"]
    assert all(validated[key] is None for key in ("template", "training", "scoring", "export", "promotion"))
    experiment = parse_experiment(dict(validated))
    assert experiment.training.model_dump() == {"type": "sft", "method": "lora"}
    assert experiment.promotion.registry_name is None  # the experiment name, not the demo's registry
    assert experiment.scoring.max_new_tokens == ScoringConfig().max_new_tokens
    assert experiment.description == ""


@pytest.mark.parametrize("missing", ["datasets", "models", "hparams"])
def test_omitting_a_required_field_is_refused(missing):
    from airflow.sdk.definitions.param import ParamValidationError

    params = _params()
    for key, value in REQUIRED.items():
        if key != missing:
            params[key] = value
    with pytest.raises(ParamValidationError, match=missing):
        params.validate()
    assert "Example:" in param_specs()[missing][1]["description"]


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("training", {"method": "lora"}),  # type omitted: pydantic's default (sft) applies
        ("training", {"type": "pretrain", "method": "full"}),
        ("scoring", {"metrics": ["rouge_l"]}),  # primary omitted: default rouge_l is computed
        ("scoring", {"metrics": ["bleu"], "primary": "bleu"}),
    ],
)
def test_omitted_fields_take_their_default_in_the_cross_field_rules(key, value):
    assert _validate({key: value})[key] == value


@pytest.mark.parametrize(
    ("key", "value", "fragment"),
    [
        ("datasets", [{"name": "d", "uri": "x", "split": "98-2"}], "split"),
        ("training", {"type": "sft", "method": "qlora-x"}, "method"),
        ("training", {"type": "pretrain", "method": "lora"}, "method"),
        ("scoring", {"metrics": ["exact_match"], "primary": "bleu"}, "metrics"),
        ("scoring", {"metrics": ["bleu"]}, "metrics"),  # the default primary (rouge_l) is not computed
        ("training", {"type": "pretrain", "method": "qlora"}, "method"),
        (
            "hparams",
            [{"preset": "lora-fast", "learning_rate": -1}],
            "-1 is less than or equal to the minimum",
        ),
        ("name", "Has Spaces", "name"),
        ("datasets", ["data/own.jsonl"], "does not match"),  # a string is a choice, not a path
        ("models", ["Not A Slug"], "does not match"),
        ("template", "nope", "template"),
    ],
)
def test_bad_values_are_refused_by_the_param_schema(key, value, fragment):
    from airflow.sdk.definitions.param import ParamValidationError

    with pytest.raises(ParamValidationError) as error:
        _validate({key: copy.deepcopy(value)})
    assert key in str(error.value) and fragment in str(error.value)
