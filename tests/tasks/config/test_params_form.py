"""The trigger form as a person fills it: sections and titles for people, datasets, models and presets as
choices, the demo one choice away; a choice parses to the same ExperimentConfig as the JSON it stands for."""

from __future__ import annotations

import pytest

from tasks.config import params
from tasks.config.base import ConfError
from tasks.config.catalog import hparam_presets
from tasks.config.experiment import parse_experiment
from tasks.config.form import expand
from tasks.config.params import NO_DEFAULT, demo_conf_path, load_conf, param_specs
from tasks.data import dataset_registry

DEMO = load_conf(demo_conf_path())
# The datasets shipped under include/data/, offered as built-in choices (sorted).
BUILTINS = [
    "builtin:tuna_feedback",
    "builtin:tuna_identity",
    "builtin:tuna_images",
    "builtin:tuna_preference",
]
CHOICES_ONLY = {
    "name": "identity",
    "datasets": ["builtin:tuna_identity"],
    "models": ["smollm2-135m-instruct"],
    "hparams": ["lora-fast", "lora-default"],
}


def _params(store_root: str | None = None):
    from airflow.sdk import Param
    from airflow.sdk.definitions.param import ParamsDict

    return ParamsDict(
        {
            name: Param(**schema) if default is NO_DEFAULT else Param(default, **schema)
            for name, (default, schema) in param_specs(store_root).items()
        }
    )


def _as_the_form_sends(**filled) -> dict:
    """Every Param as the trigger form posts it: the value the api-server shows (null for a Param without
    a default), then what the person filled in."""
    params = _params()
    return {**{key: params.get_param(key).dump()["value"] for key in params}, **filled}


def test_the_form_is_laid_out_in_sections_titled_for_people():
    specs = param_specs()
    layout = [(name, schema["title"], schema["section"]) for name, (_, schema) in specs.items()]
    assert layout == [
        ("template", "Start from", "Experiment"),
        ("name", "Name", "Experiment"),
        ("description", "Description", "Experiment"),
        ("datasets", "Datasets", "Data, models and hyperparameters"),
        ("models", "Base models", "Data, models and hyperparameters"),
        ("hparams", "Hyperparameter groups", "Data, models and hyperparameters"),
        ("search", "Search", "Search and budget"),
        ("budget", "Budget", "Search and budget"),
        ("training", "Training type and method", "Training"),
        ("scoring", "Scoring", "Scoring"),
        ("merge", "Merged candidates", "Merge"),
        ("export", "Export", "Export"),
        ("promotion", "Promotion", "Promotion"),
    ]
    assert "Config" not in str([schema.get("title") for _, schema in specs.values()])
    assert all(schema["description"] for _, schema in specs.values())


def test_only_the_prefilled_name_is_marked_required_and_rest_must_give_the_lists():
    specs = param_specs()
    # Airflow's form marks a field required when its type does not allow null.
    marked = [name for name, (_, schema) in specs.items() if "null" not in schema["type"]]
    assert marked == ["name"]
    assert specs["name"][0] == DEMO["name"]
    assert [name for name, (default, _) in specs.items() if default is NO_DEFAULT] == [
        "datasets",
        "models",
        "hparams",
    ]
    assert all(default is None for name, (default, _) in specs.items() if name not in ("name", *CHOICES_ONLY))


def test_datasets_models_and_presets_are_offered_as_choices_with_labels():
    specs = param_specs()
    datasets, models, hparams = (specs[key][1] for key in ("datasets", "models", "hparams"))
    assert datasets["examples"] == BUILTINS
    assert datasets["values_display"]["builtin:tuna_identity"] == "tuna_identity (built-in)"
    assert "smollm2-135m-instruct" in models["examples"]
    assert "bundled, works offline" in models["values_display"]["smollm2-135m-instruct"]
    assert "internlm2.5-7b-chat" not in models["examples"]  # refused until its revision is pinned
    assert hparams["examples"] == list(hparam_presets())
    assert hparams["values_display"]["lora-fast"].startswith("lora-fast: A short, high learning-rate")
    template = specs["template"][1]
    assert template["enum"] == [
        None,
        "adalora",
        "cpo",
        "demo",
        "freeze",
        "grpo",
        "ia3",
        "kto",
        "llava-instruct",
        "lora-variants",
        "merge-ties",
        "multinode-fsdp2",
        "orpo",
        "p-tuning",
        "prefix-tuning",
        "prompt-tuning",
        "search-halving",
        "search-tpe",
        "simpo",
    ]
    assert template["values_display"]["demo"].startswith("demo: The demo experiment")


def test_the_training_field_says_every_type_and_the_methods_each_takes():
    from tasks.config.training import ALLOWED_METHODS

    description = param_specs()["training"][1]["description"]
    for kind, methods in ALLOWED_METHODS.items():
        assert f"{kind}: {', '.join(methods)}" in description
    assert "grpo: full, lora, qlora, freeze" in description and "vlm_sft: lora, full" in description


def test_registered_datasets_are_offered_from_a_local_store_only(store_root):
    dataset_registry.create(store_root, {"name": "support", "uri": "builtin:tuna_identity"})
    offered = param_specs(store_root)["datasets"][1]["examples"]
    assert offered == [*BUILTINS, "registered:support"]
    assert param_specs("s3://bucket/store")["datasets"][1]["examples"] == BUILTINS


def test_the_form_lists_no_openai_uploads_and_at_most_form_datasets_max_registered(store_root, monkeypatch):
    monkeypatch.setattr(params, "FORM_DATASETS_MAX", 2)
    for name in ("file-0a1b2c", "alpha", "beta", "gamma"):
        dataset_registry.create(store_root, {"name": name, "uri": "builtin:tuna_identity"})
    offered = param_specs(store_root)["datasets"][1]["examples"]
    assert [choice for choice in offered if choice.startswith("registered:")] == [
        "registered:alpha",
        "registered:beta",
    ]


def test_a_conf_of_choices_only_passes_the_schema_and_parses_to_the_objects_they_stand_for():
    params = _params()
    for key, value in CHOICES_ONLY.items():
        params[key] = value
    validated = dict(params.validate())
    experiment = parse_experiment(validated)
    assert experiment.model_dump(mode="json", exclude_defaults=True) == {
        "name": "identity",
        "datasets": [{"name": "tuna_identity", "uri": "builtin:tuna_identity"}],
        "models": [{"name": "smollm2-135m-instruct"}],
        "hparams": [{"preset": "lora-fast"}, {"preset": "lora-default"}],
    }
    assert experiment == parse_experiment(
        {**CHOICES_ONLY, **{key: expand(CHOICES_ONLY)[key] for key in ("datasets", "models", "hparams")}}
    )


def test_registered_choice_names_the_dataset_after_its_registration():
    experiment = parse_experiment({**CHOICES_ONLY, "datasets": ["registered:support"]})
    dataset = experiment.datasets[0].model_dump(exclude_defaults=True)
    assert dataset == {"name": "support", "registered": "support"}


def test_choosing_the_demo_in_the_form_runs_the_demo_conf():
    conf = _as_the_form_sends(template="demo")
    assert conf["datasets"] is None and conf["training"] is None  # nothing typed but the choice
    params = _params()
    for key, value in conf.items():
        params[key] = value
    validated = dict(params.validate())
    assert parse_experiment(validated) == parse_experiment(DEMO)


def test_fields_filled_beside_a_template_replace_its_values_but_never_its_name():
    conf = expand({"template": "demo", "name": "mine", "hparams": ["lora-default"], "scoring": None})
    assert conf["name"] == "mine"
    assert conf["hparams"] == [{"preset": "lora-default"}]
    assert conf["datasets"] == DEMO["datasets"] and conf["scoring"] == DEMO["scoring"]
    assert "name" not in expand({"template": "demo"})


def test_an_unknown_template_is_refused_naming_the_known_ones():
    with pytest.raises(ConfError, match="template: unknown 'nope'; known: adalora, cpo, demo, freeze"):
        parse_experiment({"template": "nope", "name": "x"})


@pytest.mark.parametrize("template", [{}, ["demo"], 3, True])
def test_a_template_that_is_not_a_string_is_refused_naming_the_field(template):
    """Found by tests/tasks/config/test_hostile_confs.py: a dict here raised TypeError (unhashable)."""
    with pytest.raises(ConfError, match=r"template: unknown .*; known: adalora, cpo, demo, freeze"):
        parse_experiment({"template": template, "name": "x"})


def test_the_full_json_conf_still_passes_the_schema_and_parses_unchanged():
    params = _params()
    for key, value in DEMO.items():
        params[key] = value
    validated = dict(params.validate())
    assert parse_experiment(validated) == parse_experiment(DEMO)
    assert parse_experiment(DEMO).model_dump(mode="json", exclude_defaults=True)["hparams"] == DEMO["hparams"]


@pytest.mark.parametrize("missing", ["datasets", "models", "hparams"])
def test_a_rest_conf_of_choices_missing_a_required_list_is_refused(missing):
    from airflow.sdk.definitions.param import ParamValidationError

    params = _params()
    for key, value in CHOICES_ONLY.items():
        if key != missing:
            params[key] = value
    with pytest.raises(ParamValidationError, match=f"param {missing}: No value passed"):
        params.validate()
