"""The trigger form's schema is what Airflow validates at trigger time (UI and REST), before a run exists."""

from __future__ import annotations

import copy

import pytest

from tasks.params import demo_conf_path, field_schemas, load_conf, param_specs


def _params():
    from airflow.sdk import Param
    from airflow.sdk.definitions.param import ParamsDict

    return ParamsDict({name: Param(default, **schema) for name, (default, schema) in param_specs().items()})


def _validate(conf: dict):
    params = _params()
    for key, value in conf.items():
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
        "training",
        "scoring",
        "export",
        "promotion",
    }
    for name, schema in schemas.items():
        assert schema.get("description"), name
        assert "$ref" not in str(schema), f"{name} still has unresolved refs"


def test_defaults_are_the_demo_conf_and_validate():
    validated = _validate({})
    assert validated["name"] == load_conf(demo_conf_path())["name"]
    assert validated["training"] == {"type": "sft", "method": "lora"}


@pytest.mark.parametrize(
    ("key", "value", "fragment"),
    [
        ("datasets", [{"name": "d", "uri": "x", "split": "98-2"}], "split"),
        ("training", {"type": "sft", "method": "qlora-x"}, "method"),
        ("training", {"type": "pretrain", "method": "lora"}, "method"),
        ("scoring", {"metrics": ["exact_match"], "primary": "bleu"}, "metrics"),
        (
            "hparams",
            [{"preset": "lora-fast", "learning_rate": -1}],
            "-1 is less than or equal to the minimum",
        ),
        ("name", "Has Spaces", "name"),
    ],
)
def test_bad_values_are_refused_by_the_param_schema(key, value, fragment):
    from airflow.sdk.definitions.param import ParamValidationError

    with pytest.raises(ParamValidationError) as error:
        _validate({key: copy.deepcopy(value)})
    assert key in str(error.value) and fragment in str(error.value)
