"""Presets shipped under include/configs/: the model catalog and the hyperparameter groups."""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, model_validator

from tasks.config import ExperimentConfig, HParams, ModelConfig, ResolvedHParams

REPO_ROOT = Path(__file__).resolve().parents[1]

HPARAM_DEFAULTS: dict[str, Any] = {
    "learning_rate": 2e-4,
    "min_learning_rate": 0.0,
    "lr_scheduler": "cosine",
    "warmup_ratio": 0.03,
    "epochs": 3,
    "max_steps": -1,
    "batch_size": 16,
    "micro_batch_size": 4,
    "max_seq_length": 1024,
    "precision": "auto",
    "gradient_checkpointing": False,
    "attn_implementation": "sdpa",
    "packing": None,  # on for pretrain, off for sft
    "padding_free": False,
    "weight_decay": 0.0,
    "optim": "adamw_torch",
    "max_grad_norm": 1.0,
    "lora_r": 16,
    "lora_alpha": 32,
    "lora_dropout": 0.05,
    "lora_target_modules": "all-linear",
    "dpo_beta": 0.1,
    "dpo_loss_type": "sigmoid",
    "deepspeed": None,
    "seed": 42,
    "logging_steps": 10,
    "save_steps": 100,
    "save_total_limit": 2,
    "merge_adapter": False,
}


def config_dir() -> Path:
    return Path(os.environ.get("TUNERFLOW_CONFIG_DIR") or REPO_ROOT / "include" / "configs")


def data_dir() -> Path:
    return REPO_ROOT / "include" / "data"


class GGUFSource(BaseModel):
    model_config = ConfigDict(extra="forbid")
    package: str = Field(description="Installed Python package that ships the GGUF file.")
    file: str = Field(description="GGUF file name inside the package.")


class ModelSource(BaseModel):
    model_config = ConfigDict(extra="forbid")
    gguf: GGUFSource | None = Field(None, description="Weights from a packaged GGUF file.")
    hub: str | None = Field(None, description="Hugging Face Hub id.")
    path: str | None = Field(None, description="Local directory or file:// URI of a Hugging Face model.")

    @model_validator(mode="after")
    def _exactly_one(self) -> ModelSource:
        given = [k for k in ("gguf", "hub", "path") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError(f"a model source needs exactly one of gguf, hub, path; got {given or 'none'}")
        return self


class CatalogEntry(BaseModel):
    """A base model as the steps receive it: where its weights are and how to tokenize for it."""

    model_config = ConfigDict(extra="forbid")
    name: str = Field(description="Catalog name.")
    family: str = Field("unknown", description="Architecture family (llama, qwen2, mistral, gemma2, ...).")
    hub_id: str | None = Field(None, description="The upstream Hugging Face Hub id, for lineage.")
    params: str | None = Field(None, description="Parameter count, for humans.")
    chat: bool = Field(True, description="Has a chat template (instruction-tuned).")
    gated: bool = Field(False, description="The hub needs an accepted licence and a token.")
    trust_remote_code: bool = Field(False, description="Ships custom modelling code.")
    source: ModelSource = Field(description="Where the weights come from.")
    tokenizer: dict[str, str] = Field(default_factory=dict, description="Special-token overrides.")
    chat_template: str | None = Field(
        None, description="Jinja chat template for a base model whose tokenizer ships none."
    )
    lora_target_modules: list[str] | str = Field("all-linear", description="Default LoRA targets.")
    kind: Literal["catalog", "uri"] = Field("catalog", description="Catalog entry or a user-given uri.")


@lru_cache(maxsize=4)
def _load_models(path: Path) -> dict[str, CatalogEntry]:
    raw = yaml.safe_load(path.read_text())["models"]
    return {name: CatalogEntry(name=name, **entry) for name, entry in raw.items()}


def models() -> dict[str, CatalogEntry]:
    return _load_models(config_dir() / "models.yaml")


def hparam_presets() -> dict[str, dict[str, Any]]:
    directory = config_dir() / "hparams"
    return {path.stem: yaml.safe_load(path.read_text()) for path in sorted(directory.glob("*.yaml"))}


def resolve_model(model: ModelConfig) -> CatalogEntry:
    if model.uri:
        source = (
            ModelSource(hub=model.uri[3:]) if model.uri.startswith("hf:") else ModelSource(path=model.uri)
        )
        return CatalogEntry(name=model.name, source=source, kind="uri")
    catalog = models()
    if model.name not in catalog:
        raise ValueError(
            f"'{model.name}' is not in the catalog ({', '.join(sorted(catalog))}); "
            "add it to include/configs/models.yaml or give a `uri`"
        )
    return catalog[model.name]


def resolve_hparams(group: HParams) -> ResolvedHParams:
    values = dict(HPARAM_DEFAULTS)
    if group.preset:
        presets = hparam_presets()
        if group.preset not in presets:
            raise ValueError(f"preset '{group.preset}' not found; known presets: {', '.join(presets)}")
        values.update(presets[group.preset])
    values.update(group.model_dump(exclude_none=True, exclude={"preset", "name"}))
    values["name"] = group.name or group.preset
    return ResolvedHParams.model_validate(values)


def resolve_experiment(experiment: ExperimentConfig) -> dict[str, Any]:
    """Every preset replaced by its values: what the run actually used, stored beside its outputs."""
    problems: list[str] = []
    models_resolved, hparams_resolved = [], []
    for index, model in enumerate(experiment.models):
        try:
            models_resolved.append(resolve_model(model).model_dump())
        except ValueError as error:
            problems.append(f"models.{index}: {error}")
    for index, group in enumerate(experiment.hparams):
        try:
            hparams_resolved.append(resolve_hparams(group).model_dump())
        except ValueError as error:
            problems.append(f"hparams.{index}: {error}")
    if problems:
        raise ValueError("\n".join(problems))
    return {
        "experiment": experiment.model_dump(mode="json"),
        "models": models_resolved,
        "hparams": hparams_resolved,
    }
