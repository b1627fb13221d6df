"""A job request becomes one validated finetune_experiment conf; a bad one is refused naming the field."""

from __future__ import annotations

import pytest

from tasks.config.catalog import hparam_presets
from tasks.config.experiment import parse_experiment
from tasks.openai_api import files
from tasks.openai_api.job_conf import build_conf, experiment_name, request_param
from tasks.openai_api.objects import ApiError
from tasks.openai_api.requests import parse_request
from tasks.registry import versions as registry
from tasks.storage import layout, store
from tests.tasks.openai_api.test_files import CHAT, DPO, jsonl

MODEL = "smollm2-135m-instruct"


@pytest.fixture
def uploaded(store_root):
    return {
        "chat": files.upload(store_root, "train.jsonl", "fine-tune", jsonl(CHAT, CHAT)).id,
        "valid": files.upload(store_root, "valid.jsonl", "fine-tune", jsonl(CHAT)).id,
        "dpo": files.upload(store_root, "pairs.jsonl", "fine-tune", jsonl(DPO)).id,
    }


def conf_of(store_root, body):
    return build_conf(store_root, parse_request(body), "ftjob-abc")


def test_all_auto_keeps_the_preset_and_the_conf_validates(store_root, uploaded):
    conf, hyper = conf_of(store_root, {"model": MODEL, "training_file": uploaded["chat"]})
    preset = hparam_presets()["lora-default"]
    assert conf["name"] == f"ft-{MODEL}"
    assert conf["models"] == [{"name": MODEL}]
    assert conf["hparams"] == [{"name": "openai", "preset": "lora-default"}]
    assert conf["training"] == {"type": "sft", "method": "lora"}
    train = files.record(store_root, uploaded["chat"])
    assert conf["datasets"] == [{"name": uploaded["chat"], "uri": train["uri"], "format": "messages"}]
    assert (hyper.n_epochs, hyper.batch_size, hyper.learning_rate_multiplier) == (
        preset["epochs"],
        preset["batch_size"],
        1.0,
    )
    parse_experiment(conf)


def test_numbers_override_the_preset_and_the_multiplier_scales_its_learning_rate(store_root, uploaded):
    body = {
        "model": MODEL,
        "training_file": uploaded["chat"],
        "validation_file": uploaded["valid"],
        "hyperparameters": {"n_epochs": 2, "batch_size": 6, "learning_rate_multiplier": 0.5},
        "seed": 7,
        "suffix": "Tuna Bot",
    }
    conf, hyper = conf_of(store_root, body)
    [group] = conf["hparams"]
    assert group["epochs"] == 2 and group["max_steps"] == -1
    # lora-default's micro_batch_size 4 does not divide 6: the largest divisor below it is used.
    assert (group["batch_size"], group["micro_batch_size"]) == (6, 3)
    assert group["learning_rate"] == pytest.approx(hparam_presets()["lora-default"]["learning_rate"] * 0.5)
    assert group["seed"] == 7
    assert conf["name"] == f"ft-{MODEL}-tuna-bot"
    valid = files.record(store_root, uploaded["valid"])["uri"]
    [dataset] = conf["datasets"]
    assert (dataset["validation_uri"], dataset["test_uri"]) == (valid, valid)
    assert (hyper.n_epochs, hyper.batch_size, hyper.learning_rate_multiplier) == (2, 6, 0.5)


def test_dpo_method_with_beta_and_tunerflow_options(store_root, uploaded):
    body = {
        "model": MODEL,
        "training_file": uploaded["dpo"],
        "method": {"type": "dpo", "dpo": {"hyperparameters": {"beta": 0.2, "n_epochs": "auto"}}},
        "tunerflow": {"hparams": {"max_steps": 2}, "conf": {"export": {"enabled": False}}},
    }
    conf, hyper = conf_of(store_root, body)
    assert conf["training"] == {"type": "dpo", "method": "lora"}
    assert conf["hparams"] == [{"name": "openai", "preset": "dpo-lora", "max_steps": 2, "dpo_beta": 0.2}]
    assert conf["export"] == {"enabled": False}
    assert conf["datasets"][0]["format"] == "openai_preference"
    assert hyper.beta == 0.2


def test_a_registry_version_is_a_base_model(store_root, uploaded, tmp_path):
    weights = tmp_path / "merged"
    weights.mkdir()
    (weights / "config.json").write_text("{}")
    registry.register(store_root, "tuna", {"model_uri": str(weights)})
    conf, _ = conf_of(store_root, {"model": "tuna-v1", "training_file": uploaded["chat"]})
    assert conf["models"] == [{"name": "tuna-v1", "uri": str(weights)}]
    assert conf["name"] == "ft-tuna-v1"
    registry.register(store_root, "tuna", {"run_uri": layout.run(store_root, "x", "r"), "job_id": "j"})
    with pytest.raises(ApiError, match="LoRA adapter without full weights") as refused:
        conf_of(store_root, {"model": "tuna-v2", "training_file": uploaded["chat"]})
    assert refused.value.param == "model"
    assert store.exists(store.join(registry.registry_uri(store_root, "tuna")))


@pytest.mark.parametrize(
    ("change", "param", "mentions"),
    [
        ({"model": "gpt-4o-mini"}, "model", "not in the catalog"),
        ({"model": "/nowhere/at/all"}, "model", "no config.json"),
        ({"training_file": "file-missing"}, "training_file", "No file with id 'file-missing'"),
        ({"validation_file": "file-missing"}, "validation_file", "No file with id"),
        ({"hyperparameters": {"n_epochs": 0}}, "hyperparameters.n_epochs", "outside 1 to 100"),
        ({"hyperparameters": {"n_epochs": "lots"}}, "hyperparameters.n_epochs", 'neither "auto"'),
        ({"hyperparameters": {"batch_size": 2.5}}, "hyperparameters.batch_size", "whole number"),
        (
            {"hyperparameters": {"learning_rate_multiplier": -1}},
            "hyperparameters.learning_rate_multiplier",
            "",
        ),
        ({"hyperparameters": {"epochs": 2}}, "hyperparameters.epochs", "Extra inputs"),
        (
            {"method": {"type": "reinforcement", "reinforcement": {"grader": {"type": "string_check"}}}},
            "method.type",
            "'reinforcement' is not supported: OpenAI's RFT rows end with a user turn",
        ),
        ({"method": {"type": "supervised", "dpo": {}}}, "method", "method.dpo is given"),
        ({"method": {"type": "dpo"}}, "training_file", "holds chat rows, but method 'dpo'"),
        ({"seed": -1}, "seed", ""),
        ({"integrations": [{"type": "wandb"}]}, "integrations", "not supported"),
        ({"tunerflow": {"preset": "nope"}}, "tunerflow.preset", "not a preset"),
        ({"tunerflow": {"conf": {"name": "x"}}}, "tunerflow.conf.name", "set by the request"),
        ({"tunerflow": {"hparams": {"lora_r": 0}}}, "tunerflow.hparams", "lora_r"),
        (
            {"tunerflow": {"conf": {"scoring": {"primary": "bleu", "metrics": ["rouge_l"]}}}},
            "tunerflow.conf.scoring.primary",
            "primary",
        ),
        ({"tunerflow": {"conf": {"training": {"method": "full", "type": "sft"}}}}, None, None),
    ],
)
def test_a_bad_request_is_refused_naming_the_field(store_root, uploaded, change, param, mentions):
    body = {"model": MODEL, "training_file": uploaded["chat"], **change}
    if param is None:  # the request's method.type wins over a type in tunerflow.conf
        assert conf_of(store_root, body)[0]["training"]["type"] == "sft"
        return
    with pytest.raises(ApiError) as refused:
        conf_of(store_root, body)
    error = refused.value
    assert error.status == 400, error.message
    assert error.param == param, error.message
    assert mentions in error.message
    assert error.body()["error"]["type"] == "invalid_request_error"


def test_conf_paths_map_back_to_request_fields():
    assert request_param("hparams.0.epochs") == "hyperparameters.n_epochs"
    assert request_param("hparams.0.dpo_beta") == "method.dpo.hyperparameters.beta"
    assert request_param("datasets.0.uri") == "training_file"
    assert request_param("scoring.primary") == "tunerflow.conf.scoring.primary"
    assert experiment_name("HuggingFaceTB/SmolLM2-135M", "x" * 80).startswith("ft-smollm2-135m-xxx")
    assert len(experiment_name("m" * 100, "x" * 64)) <= 63
