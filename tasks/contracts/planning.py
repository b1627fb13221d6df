"""What the planning tasks hand on: where a run lives, the planned jobs, and the champion's scoring."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from tasks.contracts.base import Contract


def step_argv(step: str, spec_uri: str) -> list[str]:
    """The command both backends run: the same in a local subprocess and in a pod."""
    return ["python", "-m", f"tasks.{step}", "--job", spec_uri]


class RunInfo(Contract):
    """Where a run lives, derived from the experiment name and run id only."""

    run_uri: str = Field(description="`experiments/<name>/runs/<slug(run_id)>` under the store root.")
    store_root: str = Field(description="Root URI of the artifact store.")


class PlannedJob(Contract):
    """A training job or a base-model scoring, as XCom and `jobs.json`/`references.json` carry it."""

    job_id: str = Field(description="Store key of the job.")
    label: str = Field(description="`dataset|model|hparams` (`base` for a reference).")
    kind: Literal["train", "reference", "merge"] = Field(
        description="A training job, a base-model reference or a merged candidate."
    )
    round: int = Field(1, ge=1, description="The search round that trains it (1 without a search).")
    trial: str | None = Field(None, description="The trial (hyperparameter group) it trains, in a search.")
    final: bool = Field(
        True, description="Scored and ranked; False for a halving rung that only decides who continues."
    )
    train_spec: str | None = Field(None, description="URI of the TrainSpec (train jobs).")
    train_argv: list[str] | None = Field(None, description="The train command (train jobs).")
    evaluate_spec: str = Field(description="URI of the EvaluateSpec.")
    evaluate_argv: list[str] = Field(description="The evaluate command.")

    @model_validator(mode="after")
    def _train_jobs_train(self) -> PlannedJob:
        if (self.kind == "reference") == (self.train_spec is not None):
            raise ValueError(
                f"job {self.job_id}: a train job (or merge) has a train_spec, a reference has none"
            )
        return self


class ExportPlan(Contract):
    """The winner's export and check specs."""

    export_spec: str = Field(description="URI of the ExportSpec.")
    export_argv: list[str] = Field(description="The export command.")
    check_export_spec: str = Field(description="URI of the CheckExportSpec.")
    check_export_argv: list[str] = Field(description="The check_export command.")


class ChampionPlan(Contract):
    """The champion's evaluate step, or why it is not scored."""

    spec_uri: str | None = Field(None, description="URI of the champion's EvaluateSpec.")
    argv: list[str] | None = Field(None, description="The evaluate command.")
    version: int | None = Field(None, description="The registry version scored.")
    skip: str | None = Field(None, description="Why nothing is scored.")

    @model_validator(mode="after")
    def _planned_or_skipped(self) -> ChampionPlan:
        planned = self.spec_uri is not None and self.argv is not None and self.version is not None
        if planned == (self.skip is not None):
            raise ValueError("a champion plan has spec_uri, argv and version, or a skip reason alone")
        return self
