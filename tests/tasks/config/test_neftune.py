"""neftune_noise_alpha is declared once (tasks/config/hparam_fields.py) and nothing else names it: the
trigger form, the presets, the training-type check and the trainer's arguments all follow from it."""

from __future__ import annotations

import shutil

import pytest

from tasks.config.catalog import REPO_ROOT, resolve_experiment, resolve_hparams
from tasks.config.experiment import parse_experiment
from tasks.config.hparams import HParams, ResolvedHParams
from tasks.config.params import demo_conf_path, field_schemas, load_conf
from tasks.contracts.train import TrainSpec
from tasks.training.train_types import build_trainer

DESCRIPTION = "SFT: NEFTune, uniform noise on the input embeddings while training"


def test_the_trigger_form_offers_it_with_its_description_and_limit():
    field = field_schemas()["hparams"]["items"]["properties"]["neftune_noise_alpha"]
    assert field["description"].startswith(DESCRIPTION)
    assert {"type": "number", "exclusiveMinimum": 0} in field["anyOf"]


def test_it_resolves_from_a_preset_and_from_an_inline_value(tmp_path, monkeypatch):
    target = tmp_path / "configs"
    shutil.copytree(REPO_ROOT / "include" / "configs", target)
    (target / "hparams" / "noisy.yaml").write_text("learning_rate: 1.0e-4\nneftune_noise_alpha: 5\n")
    monkeypatch.setenv("TUNERFLOW_CONFIG_DIR", str(target))
    assert resolve_hparams(HParams(preset="noisy")).neftune_noise_alpha == 5
    assert resolve_hparams(HParams(preset="noisy", neftune_noise_alpha=0.5)).neftune_noise_alpha == 0.5
    assert resolve_hparams(HParams(preset="lora-fast")).neftune_noise_alpha is None
    with pytest.raises(ValueError, match="greater than 0"):
        HParams(neftune_noise_alpha=0)


@pytest.mark.parametrize(("type_", "method"), [("dpo", "lora"), ("pretrain", "full")])
def test_a_training_type_without_it_refuses_it_naming_the_group(type_, method):
    conf = load_conf(demo_conf_path())
    conf["training"] = {"type": type_, "method": method}
    conf["hparams"] = [
        {"preset": "lora-fast"},
        {"name": "noisy", "preset": "lora-fast", "neftune_noise_alpha": 5},
    ]
    with pytest.raises(ValueError) as error:
        resolve_experiment(parse_experiment(conf))
    assert str(error.value) == (
        f"hparams.1: hparams 'noisy': neftune_noise_alpha is used by sft training only, not by "
        f"training.type '{type_}'; unset neftune_noise_alpha"
    )


def test_sft_accepts_it():
    conf = load_conf(demo_conf_path())
    conf["hparams"] = [{"name": "noisy", "preset": "lora-fast", "neftune_noise_alpha": 5}]
    assert resolve_experiment(parse_experiment(conf))["hparams"][0]["neftune_noise_alpha"] == 5


def test_the_sft_trainer_gets_it(tiny_model_dir, tmp_path):
    pytest.importorskip("trl")
    rows = [
        {
            "id": f"train:{i}",
            "messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}],
        }
        for i in range(4)
    ]
    hp = ResolvedHParams.model_validate(
        {**resolve_hparams(HParams(preset="lora-fast")).model_dump(), "neftune_noise_alpha": 5.0}
    )
    job = TrainSpec.model_validate(
        {
            "store_root": tmp_path.as_uri(),
            "job_id": "j",
            "label": "d|tiny|neftune",
            "output": (tmp_path / "jobs" / "j" / "train").as_uri(),
            "dataset": {"name": "d", "kind": "chat", "uri": (tmp_path / "data").as_uri()},
            "model": {"name": "tiny", "source": {"path": str(tiny_model_dir)}, "kind": "uri"},
            "hparams": hp.model_dump(),
            "training": {"type": "sft", "method": "lora"},
        }
    )
    common = {
        "output_dir": str(tmp_path / "out"),
        "save_strategy": "no",
        "report_to": [],
        "disable_tqdm": True,
    }
    trainer, _ = build_trainer(job, rows, [], common, [])
    assert trainer.args.neftune_noise_alpha == 5.0
