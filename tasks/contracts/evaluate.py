"""evaluate: the spec of a job's, a base model's or the champion's scoring, and its result."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, model_validator

from tasks.config.export import ExportConfig
from tasks.config.hparams import ResolvedHParams
from tasks.config.scoring import ScoringConfig
from tasks.contracts.base import Contract, OpenContract
from tasks.contracts.job import JobSpec
from tasks.contracts.prepare import PreparedDataset


class TrainedWeights(Contract):
    """Weights that replace or extend the base model: a full model directory or a LoRA adapter."""

    model_uri: str | None = Field(None, description="A full model directory.")
    adapter_uri: str | None = Field(None, description="A LoRA adapter over the base model.")


class EvaluateSpec(JobSpec):
    """What `python -m tasks.evaluate` reads (written by the planner or by `plan_champion_scoring`)."""

    step: Literal["evaluate"] = Field("evaluate", description="The step this spec is for.")
    scoring: ScoringConfig = Field(description="How to score.")
    hparams: ResolvedHParams | None = Field(None, description="The trained job's hyperparameters.")
    train_output: str | None = Field(None, description="The train step's output whose weights are scored.")
    trained: TrainedWeights | None = Field(None, description="Weights given directly (the champion).")
    reference: bool = Field(False, description="An untouched base model or the champion: never exported.")
    champion_version: int | None = Field(None, description="The registry version scored as champion.")
    export_config: ExportConfig | None = Field(
        None, description="The run's export settings, for `scoring.rank_on` other than pytorch."
    )

    @model_validator(mode="after")
    def _one_source_of_weights(self) -> EvaluateSpec:
        if self.train_output and self.trained:
            raise ValueError("give train_output (a job's training) or trained (given weights), not both")
        return self

    @property
    def scored_on(self) -> PreparedDataset:
        """The experiment's eval set (`scoring.eval_dataset` or `scoring.eval_questions`) when it has one,
        so every job sees the same rows, else the job's dataset."""
        return self.eval_set or self.dataset


class QuantizedScores(OpenContract):
    """The job scored as it would be deployed (`scoring.rank_on`), with the export's details."""

    format: str = Field(description="The export format scored.")
    metrics: dict[str, float | None] = Field(description="Metrics of the exported model.")
    generation: dict[str, Any] = Field(default_factory=dict, description="Generation statistics.")


class EvaluateResult(OpenContract):
    """What the evaluate step commits. Only the metrics are required: they are what every reader needs."""

    metrics: dict[str, float | None] = Field(description="Metric values in the conf's order.")
    job_id: str | None = Field(None, description="Store key of the job.")
    label: str | None = Field(None, description="Row label.")
    reference: bool = Field(False, description="A base model or champion scoring.")
    split: str | None = Field(None, description="The split scored: test, else validation.")
    scored_on: str | None = Field(None, description="Name of the dataset scored on.")
    n: int | None = Field(None, description="Rows scored.")
    generation: dict[str, Any] = Field(default_factory=dict, description="Generated tokens, seconds, rate.")
    quantized: QuantizedScores | None = Field(None, description="Scores of the export, with `rank_on`.")
