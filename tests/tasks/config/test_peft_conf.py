"""The PEFT methods in the conf: which types and settings each accepts, and every refusal names the field
and says what to do."""

from __future__ import annotations

import pytest

from tasks.config.base import ConfError
from tasks.config.catalog import resolve_experiment
from tasks.config.experiment import parse_experiment
from tasks.config.training import ADAPTER_METHODS, ALLOWED_METHODS, MERGEABLE_ADAPTERS, PROMPT_METHODS


def conf(method: str, type_: str = "sft", hparams: dict | None = None, **sections) -> dict:
    return {
        "name": "exp",
        "datasets": [{"name": "d", "uri": "builtin:tuna_identity", "split": "98,2,0"}],
        "models": [{"name": "smollm2-135m-instruct"}],
        "hparams": [{"preset": "lora-fast", **(hparams or {})}],
        "training": {"type": type_, "method": method},
        "export": {"enabled": method not in PROMPT_METHODS},
        **sections,
    }


def problems(conf_: dict) -> str:
    """The refusal of the conf as the validator writes it, checked with presets resolved."""
    with pytest.raises((ConfError, ValueError)) as error:
        resolve_experiment(parse_experiment(conf_))
    return str(error.value)


def test_every_method_trains_sft_and_dpo_and_only_full_and_freeze_pretrain():
    assert set(ALLOWED_METHODS["pretrain"]) == {"full", "freeze"}
    for method in ALLOWED_METHODS["sft"]:
        assert method in ALLOWED_METHODS["dpo"]
    assert set(MERGEABLE_ADAPTERS) | set(PROMPT_METHODS) == set(ADAPTER_METHODS)


@pytest.mark.parametrize(
    ("method", "type_"),
    [
        (m, t)
        for m in ("adalora", "ia3", "prompt_tuning", "prefix_tuning", "p_tuning", "freeze")
        for t in ("sft", "dpo")
    ]
    + [("freeze", "pretrain")],
)
def test_the_pairs_that_run_validate(method, type_):
    hparams = {"adalora_init_r": 8, "adalora_target_r": 2} if method == "adalora" else {}
    experiment = parse_experiment(conf(method, type_, hparams))
    assert resolve_experiment(experiment)["experiment"]["training"]["method"] == method


@pytest.mark.parametrize("method", ["prompt_tuning", "ia3"])
def test_pretraining_with_an_adapter_is_refused_naming_the_method(method):
    assert "training: type 'pretrain' with method '" + method + "' is refused" in problems(
        conf(method, "pretrain")
    )


@pytest.mark.parametrize("method", ["prompt_tuning", "prefix_tuning", "p_tuning"])
def test_exporting_a_prompt_learning_method_is_refused_with_the_reason(method):
    text = problems({**conf(method), "export": {"enabled": True}})
    assert f"export.enabled is refused with training.method '{method}'" in text
    assert "virtual tokens, not weights" in text and "set export.enabled: false" in text


@pytest.mark.parametrize("method", ["prompt_tuning", "adalora", "ia3"])
def test_merging_jobs_of_a_method_peft_cannot_merge_is_refused(method):
    text = problems(conf(method, merge={"enabled": True}))
    assert f"merge.enabled is refused with training.method '{method}'" in text


def test_merging_freeze_jobs_is_accepted_like_full_fine_tunes():
    assert parse_experiment(conf("freeze", merge={"enabled": True})).merge.enabled


@pytest.mark.parametrize(
    ("method", "hparams", "field"),
    [
        ("ia3", {"lora_variant": "dora"}, "lora_variant is read by training.method lora or qlora only"),
        ("lora", {"freeze_trainable_layers": 4}, "freeze_trainable_layers is read by training.method freeze"),
        ("lora", {"num_virtual_tokens": 4}, "num_virtual_tokens is read by training.method prompt_tuning"),
        ("adalora", {"adalora_init_r": 4, "adalora_target_r": 4}, "adalora_target_r (4) must be below"),
        ("adalora", {"adalora_tinit": 20, "adalora_tfinal": 4}, "adalora_tinit (20) + adalora_tfinal (4)"),
        ("lora", {"lora_init": "pissa", "lora_variant": "dora"}, "lora_init pissa with lora_variant dora"),
        ("lora", {"lora_init": "olora", "deepspeed": "zero2"}, "lora_init olora is refused with deepspeed"),
        ("prompt_tuning", {"padding_free": True}, "padding_free are refused for training.method"),
    ],
)
def test_a_setting_the_method_cannot_use_is_refused_naming_it(method, hparams, field):
    assert field in problems(conf(method, hparams=hparams))


def test_pissa_on_a_4bit_base_is_refused(monkeypatch):
    monkeypatch.setenv("TUNERFLOW_CUDA", "1")
    assert "lora_init pissa is refused for qlora" in problems(conf("qlora", hparams={"lora_init": "pissa"}))


def test_lora_variants_are_hparams_of_lora_and_qlora(monkeypatch):
    monkeypatch.setenv("TUNERFLOW_CUDA", "1")
    for method in ("lora", "qlora"):
        resolved = resolve_experiment(parse_experiment(conf(method, hparams={"lora_variant": "rslora"})))
        assert resolved["hparams"][0]["lora_variant"] == "rslora"
