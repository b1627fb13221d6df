"""The whole experiment conf: every dataset x model x hyperparameter group becomes one training job.

Light on purpose: imported by the DAG files at parse time, so only pydantic and stdlib-only modules here.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field, ValidationError, model_validator

from tasks.config.base import ConfError, SlugStr, StrictModel, format_validation_error
from tasks.config.dataset import DatasetConfig
from tasks.config.export import ExportConfig
from tasks.config.form import expand
from tasks.config.hparams import HParams
from tasks.config.merge import MergeConfig, method_problem
from tasks.config.models import ModelConfig
from tasks.config.promotion import PromotionConfig
from tasks.config.scoring import ScoringConfig
from tasks.config.search import BudgetConfig, SearchConfig, experiment_problems
from tasks.config.training import (
    ALLOWED_METHODS,
    NOT_YET,
    PROMPT_METHODS,
    REFERENCE_FREE,
    VISION_TYPES,
    TrainingConfig,
)
from tasks.scoring import plugins as scoring_plugins
from tasks.storage import layout, store

# The training methods whose jobs `merge` can combine: full weights (task vectors, SLERP) or LoRA adapters.
MERGE_METHODS = ("full", "freeze", "lora", "qlora")


class ExperimentConfig(StrictModel):
    """One experiment: every dataset x model x hyperparameter group becomes one training job."""

    name: SlugStr = Field(description="Experiment name, used in store keys and the registry.")
    description: str = Field("", description="Free text shown in the report.")
    datasets: list[DatasetConfig] = Field(min_length=1, description="Datasets to train on, one job row each.")
    models: list[ModelConfig] = Field(min_length=1, description="Base models, from the catalog or by uri.")
    hparams: list[HParams] = Field(
        min_length=1, description="Hyperparameter groups: presets or inline values."
    )
    search: SearchConfig = Field(
        default_factory=SearchConfig, description="Which trials are trained: a grid, random or TPE; halving."
    )
    budget: BudgetConfig = Field(default_factory=BudgetConfig, description="What the experiment may spend.")
    training: TrainingConfig = Field(default_factory=TrainingConfig, description="Training type and method.")
    scoring: ScoringConfig = Field(default_factory=ScoringConfig, description="How every job is scored.")
    export: ExportConfig = Field(default_factory=ExportConfig, description="How the winner is exported.")
    merge: MergeConfig = Field(
        default_factory=MergeConfig, description="Merge the best jobs of each base model into a candidate."
    )
    promotion: PromotionConfig = Field(default_factory=PromotionConfig, description="Registry promotion.")

    @model_validator(mode="after")
    def _cross_field_rules(self) -> ExperimentConfig:
        problems: list[str] = []
        for field, items in (("datasets", self.datasets), ("models", self.models)):
            names = [item.name for item in items]
            duplicates = sorted({n for n in names if names.count(n) > 1})
            if duplicates:
                problems.append(f"{field}: names must be unique, repeated: {', '.join(duplicates)}")
        labels = [h.name or h.preset for h in self.hparams]
        if any(label is None for label in labels):
            problems.append("hparams: every group needs a `name` or a `preset`")
        elif len(set(labels)) != len(labels):
            problems.append("hparams: group names must be unique; set `name` on groups sharing a preset")
        pair = (self.training.type, self.training.method)
        if self.training.method not in ALLOWED_METHODS[self.training.type]:
            reason = NOT_YET.get(pair, f"{self.training.type} supports {ALLOWED_METHODS[self.training.type]}")
            problems.append(f"training: type '{pair[0]}' with method '{pair[1]}' is refused: {reason}")
        problems += _reference_problems(self)
        scoring = self.scoring
        if scoring.eval_dataset is not None and scoring.eval_questions:
            problems.append("scoring: give eval_dataset or eval_questions, not both")
        if scoring.eval_dataset is not None:
            if scoring.eval_dataset.presplit:
                problems.append(
                    "scoring.eval_dataset: every row of an eval set is scored; give `uri` instead of "
                    "train_uri/validation_uri/test_uri"
                )
            if scoring.eval_dataset.name in {d.name for d in self.datasets}:
                problems.append(
                    f"scoring.eval_dataset: name '{scoring.eval_dataset.name}' is also a training dataset's; "
                    "give the eval set its own name"
                )
        if scoring.rank_on != "pytorch" and scoring_plugins.is_loss_metric(scoring.primary):
            problems.append(
                f"scoring.rank_on '{scoring.rank_on}' needs a primary metric measured on generated answers; "
                f"'{scoring.primary}' comes from the PyTorch model's loss"
            )
        if self.scoring.primary not in self.scoring.metrics:
            problems.append(
                f"scoring.primary '{self.scoring.primary}' must be one of "
                f"scoring.metrics {self.scoring.metrics}"
            )
        merge_problem = method_problem(self.merge, self.training.method)
        if merge_problem:
            problems.append(merge_problem)
        problems += _weights_problems(self)
        problems += experiment_problems(self.search, self.budget, len(self.hparams))
        if problems:
            raise ValueError("; ".join(problems))
        return self

    @property
    def registry_name(self) -> str:
        return self.promotion.registry_name or self.name


# Settings of DPO's reference model (how far the policy may drift from it, and the loss measuring that).
REFERENCE_SETTINGS = ("dpo_beta", "dpo_loss_type")


def _reference_problems(experiment: ExperimentConfig) -> list[str]:
    """ORPO, SimPO, CPO and GRPO train without a reference model: a group setting DPO's reference-model
    settings inline would be silently ignored, so it is refused, naming what to set instead."""
    kind = experiment.training.type
    if kind not in REFERENCE_FREE:
        return []
    instead = "preference_beta" if kind != "grpo" else "the grpo_* settings"
    return [
        f"hparams.{index}: {name} configures DPO's reference model, and training.type '{kind}' trains "
        f"without one; unset {name} (use {instead})"
        for index, group in enumerate(experiment.hparams)
        for name in REFERENCE_SETTINGS
        if getattr(group, name) is not None
    ]


def _weights_problems(experiment: ExperimentConfig) -> list[str]:
    """Export and merging need weights that merge into the base model; prompt-learning methods learn
    virtual tokens, and AdaLoRA's and IA3's adapters have no merge of several jobs."""
    method = experiment.training.method
    problems = []
    kind = experiment.training.type
    if kind in VISION_TYPES:
        # ONNX, INT8 and GGUF are written here from a causal language model alone; a vision-language
        # model's image tower, projector and image-token inputs have no path through those exports.
        if experiment.export.enabled:
            problems.append(
                f"export.enabled is refused with training.type '{kind}': the ONNX, INT8 and GGUF exports "
                "take a text-only causal language model, and a vision-language model's vision tower and "
                "projector cannot go through them; set export.enabled: false (the trained model or "
                "adapter is still scored and registered)"
            )
        if experiment.merge.enabled:
            problems.append(
                f"merge.enabled is refused with training.type '{kind}': the merge of several jobs loads "
                "causal language models only; set merge.enabled: false"
            )
        if experiment.scoring.rank_on != "pytorch":
            problems.append(
                f"scoring.rank_on '{experiment.scoring.rank_on}' is refused with training.type '{kind}': it "
                "scores an ONNX export, which a vision-language model has none of; set rank_on: pytorch"
            )
        return problems
    if method in PROMPT_METHODS and experiment.export.enabled:
        problems.append(
            f"export.enabled is refused with training.method '{method}': it learns virtual tokens, not "
            "weights, so there is no model to merge and export; set export.enabled: false (the jobs are "
            "still trained, scored and registered)"
        )
    if experiment.merge.enabled and method not in MERGE_METHODS:
        reason = "virtual tokens are not weights" if method in PROMPT_METHODS else "PEFT merges LoRA only"
        problems.append(
            f"merge.enabled is refused with training.method '{method}': {reason}; set merge.enabled: false "
            f"or train with one of {', '.join(MERGE_METHODS)}"
        )
    return problems


def load_run_record(run_uri: str) -> dict[str, Any]:
    """What validate_conf recorded for a run: `experiment` (the conf with every default filled in) and
    the resolved `hparams` groups, among others."""
    return store.read_json(layout.experiment_record(run_uri))


def load_experiment(run_uri: str) -> dict[str, Any]:
    """The conf a run recorded with every default filled in (the raw Params may omit nested fields)."""
    return load_run_record(run_uri)["experiment"]


def parse_experiment(conf: dict[str, Any]) -> ExperimentConfig:
    """The one place a conf is parsed: the trigger form's choices (`tasks.config.form`) are written out,
    then the whole conf is validated."""
    try:
        return ExperimentConfig.model_validate(expand(conf))
    except ValidationError as error:
        raise ConfError("invalid experiment conf:\n" + format_validation_error(error)) from None
