"""Presets shipped under include/configs/: the model catalog and the hyperparameter groups."""

from __future__ import annotations

import json
import re
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import Field, model_validator

from tasks.config.base import AddedLaterAsGiven, StrictModel
from tasks.config.experiment import ExperimentConfig
from tasks.config.hparams import HPARAM_DEFAULTS, HParams, ResolvedHParams, training_hparam_problems
from tasks.config.models import ModelConfig
from tasks.config.parallel import parallel_problems

# Re-exported: the steps and the CLI find the shipped configuration through the catalog.
from tasks.config.paths import REPO_ROOT as REPO_ROOT
from tasks.config.paths import config_dir
from tasks.config.paths import data_dir as data_dir
from tasks.config.peft_fields import method_hparam_problems
from tasks.config.training import VISION_TYPES, reward_problem
from tasks.storage import store

PINNED_REVISION = re.compile(r"[0-9a-f]{40}")


class GGUFSource(StrictModel):
    package: str = Field(description="Installed Python package that ships the GGUF file.")
    file: str = Field(description="GGUF file name inside the package.")


class ModelSource(StrictModel):
    gguf: GGUFSource | None = Field(None, description="Weights from a packaged GGUF file.")
    hub: str | None = Field(None, description="Hugging Face Hub id.")
    path: str | None = Field(None, description="Local directory or file:// URI of a Hugging Face model.")

    @model_validator(mode="after")
    def _exactly_one(self) -> ModelSource:
        given = [k for k in ("gguf", "hub", "path") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError(f"a model source needs exactly one of gguf, hub, path; got {given or 'none'}")
        return self


class CatalogEntry(StrictModel, AddedLaterAsGiven):
    """A base model as the steps receive it: where its weights are and how to tokenize for it."""

    # Added after specs were first stored with their model (see AddedLaterAsGiven).
    ADDED_LATER = frozenset({"modality"})

    name: str = Field(description="Catalog name.")
    family: str = Field("unknown", description="Architecture family (llama, qwen2, mistral, gemma2, ...).")
    hub_id: str | None = Field(None, description="The upstream Hugging Face Hub id, for lineage.")
    params: str | None = Field(None, description="Parameter count, for humans.")
    chat: bool = Field(True, description="Has a chat template (instruction-tuned).")
    gated: bool = Field(False, description="The hub needs an accepted licence and a token.")
    trust_remote_code: bool = Field(
        False,
        description="Run the model's own modelling code from the hub. Only a catalog entry can set it, "
        "and only with `source.hub` and a pinned `revision`: the catalog is the allowlist a platform team "
        "reviews.",
    )
    revision: str | None = Field(
        None,
        description="Hub commit the weights (and any custom code) are pinned to: a 40-character hash. "
        "Required with trust_remote_code; recommended for every hub model.",
    )
    source: ModelSource = Field(description="Where the weights come from.")
    tokenizer: dict[str, str] = Field(default_factory=dict, description="Special-token overrides.")
    chat_template: str | None = Field(
        None, description="Jinja chat template for a base model whose tokenizer ships none."
    )
    lora_target_modules: list[str] | str = Field("all-linear", description="Default LoRA targets.")
    modality: Literal["text", "vision"] = Field(
        "text",
        description="text: a causal language model; vision: an image-text-to-text model (LLaVA, Qwen2-VL) "
        "with a processor, trained only by the vision types (training.type vlm_pretrain, vlm_sft).",
    )
    kind: Literal["catalog", "uri"] = Field("catalog", description="Catalog entry or a user-given uri.")

    @model_validator(mode="after")
    def _remote_code_is_pinned(self) -> CatalogEntry:
        if self.revision is not None and not PINNED_REVISION.fullmatch(self.revision):
            raise ValueError(
                f"model '{self.name}': revision '{self.revision}' is not a commit hash; pin the 40-character "
                "commit (a branch or tag can move)"
            )
        if self.trust_remote_code and (self.kind != "catalog" or self.source.hub is None):
            raise ValueError(
                f"model '{self.name}': trust_remote_code is only allowed for a hub model listed in the "
                "catalog (include/configs/models.yaml) with a pinned revision"
            )
        return self


def remote_code_problem(entry: CatalogEntry) -> str | None:
    """Why this model cannot be used yet: it needs remote code but its catalog entry pins no commit. The
    catalog may list such a model (so it is known), but it is refused when a conf names it."""
    if entry.trust_remote_code and entry.revision is None:
        return (
            f"model '{entry.name}' needs trust_remote_code, which runs the model's own code; it is refused "
            "until its catalog entry (include/configs/models.yaml) pins `revision` to a reviewed "
            "40-character commit hash"
        )
    return None


def pretrained_kwargs(entry: CatalogEntry) -> dict[str, Any]:
    """What every `from_pretrained` of a base model passes: safetensors only (a pickle can run code on
    load), remote code only for an allowlisted entry, and the pinned revision for hub weights."""
    problem = remote_code_problem(entry)
    if problem:
        raise ValueError(problem)
    kwargs: dict[str, Any] = {"use_safetensors": True, "trust_remote_code": entry.trust_remote_code}
    if entry.source.hub and entry.revision:
        kwargs["revision"] = entry.revision
    return kwargs


@lru_cache(maxsize=4)
def _load_models(path: Path) -> dict[str, CatalogEntry]:
    raw = yaml.safe_load(path.read_text())["models"]
    return {name: CatalogEntry(name=name, **entry) for name, entry in raw.items()}


def models() -> dict[str, CatalogEntry]:
    return _load_models(config_dir() / "models.yaml")


def default_model() -> CatalogEntry:
    """The model whose tokenizer counts tokens when a dataset sets a length check and no model is named:
    the catalog's first model whose weights ship inside an installed package (works offline), else its
    first model."""
    catalog = models()
    bundled = [entry for entry in catalog.values() if entry.source.gguf is not None]
    return (bundled or list(catalog.values()))[0]


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
    problem = remote_code_problem(catalog[model.name])
    if problem:
        raise ValueError(problem)
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


# What the GGUF export converts (tasks.exporting.gguf_export.LLAMA_FAMILIES; not imported: that module is
# heavier than the DAG parse may load).
GGUF_FAMILIES = ("llama",)


def model_family(entry: CatalogEntry) -> str:
    """The catalog's family, or for a user-given local model directory its config.json model_type."""
    if entry.family != "unknown" or not entry.source.path:
        return entry.family
    directory = store.local_path_or_none(entry.source.path)
    if directory is None:
        return "unknown"
    path = directory / "config.json"
    try:
        return str(json.loads(path.read_text()).get("model_type") or "unknown")
    except (OSError, ValueError):
        return "unknown"  # not readable here (s3://, another worker): the export step checks it


def model_modality(entry: CatalogEntry) -> str:
    """The catalog's modality, or for a user-given local model directory `vision` when its config.json has
    a `vision_config` (LLaVA, Qwen2-VL); `unknown` when that cannot be read here."""
    if entry.kind == "catalog" or not entry.source.path:
        return entry.modality
    directory = store.local_path_or_none(entry.source.path)
    try:
        config = json.loads((directory / "config.json").read_text()) if directory else None
    except (OSError, ValueError):
        config = None  # not readable here (s3://, another worker): the train step finds out
    if config is None:
        return "unknown"
    return "vision" if "vision_config" in config else "text"


def modality_problems(experiment: ExperimentConfig, entries: list[CatalogEntry]) -> list[str]:
    """The vision types train image-text-to-text models only, and the text types causal language models."""
    vision_type = experiment.training.type in VISION_TYPES
    problems = []
    for entry in entries:
        modality = model_modality(entry)
        if modality == "unknown" or (modality == "vision") == vision_type:
            continue
        if vision_type:
            problems.append(
                f"models: training.type '{experiment.training.type}' trains vision-language models and "
                f"model '{entry.name}' is a text model; use a model whose catalog entry is modality: vision "
                "(e.g. llava-1.5-7b, qwen2-vl-2b-instruct) or a text training.type"
            )
        else:
            problems.append(
                f"models: model '{entry.name}' is a vision-language model and training.type "
                f"'{experiment.training.type}' trains text models; set training.type vlm_pretrain or vlm_sft"
            )
    return problems


def gguf_problems(experiment: ExperimentConfig, entries: list[CatalogEntry]) -> list[str]:
    """export.formats with gguf: every model must be llama-family (any of them may win). A model whose
    family cannot be told here is left to the export step, which reads its config.json."""
    if not experiment.export.enabled or "gguf" not in experiment.export.formats:
        return []
    problems = []
    for entry in entries:
        family = model_family(entry)
        if family not in (*GGUF_FAMILIES, "unknown"):
            problems.append(
                f"export.formats: gguf is written for {', '.join(GGUF_FAMILIES)}-family models only and "
                f"model '{entry.name}' is family '{family}'; remove gguf from export.formats or that model "
                "from models"
            )
    return problems


def resolve_experiment(experiment: ExperimentConfig) -> dict[str, Any]:
    """Every preset replaced by its values: what the run actually used, stored beside its outputs."""
    problems: list[str] = []
    models_resolved, hparams_resolved = [], []
    entries = []
    for index, model in enumerate(experiment.models):
        try:
            entries.append(resolve_model(model))
            models_resolved.append(entries[-1].model_dump())
        except ValueError as error:
            problems.append(f"models.{index}: {error}")
    problems += gguf_problems(experiment, entries) + modality_problems(experiment, entries)
    for index, group in enumerate(experiment.hparams):
        try:
            resolved = resolve_hparams(group)
        except ValueError as error:
            problems.append(f"hparams.{index}: {error}")
            continue
        problems += [
            f"hparams.{index}: {problem}"
            for problem in training_hparam_problems(resolved, experiment.training.type)
            + parallel_problems(resolved, experiment.training.method)
            + method_hparam_problems(resolved, experiment.training.method)
        ]
        if experiment.training.type == "grpo":
            reward = reward_problem(resolved.grpo_reward or experiment.scoring.primary, resolved.name)
            problems += [f"hparams.{index}: {reward}"] if reward else []
        hparams_resolved.append(resolved.model_dump())
    if problems:
        raise ValueError("\n".join(problems))
    return {
        "experiment": experiment.model_dump(mode="json"),
        "models": models_resolved,
        "hparams": hparams_resolved,
    }
