"""export and check_export: the specs `select_best` writes for the winner and what the steps commit."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, model_validator

from tasks.config.catalog import CatalogEntry
from tasks.config.export import ExportConfig
from tasks.config.scoring import ScoringConfig
from tasks.contracts.base import Contract, OpenContract
from tasks.contracts.prepare import PreparedDataset


class ExportSpec(Contract):
    """What `python -m tasks.export` reads."""

    step: Literal["export"] = Field("export", description="The step this spec is for.")
    store_root: str = Field(description="Root URI of the artifact store.")
    output: str = Field(description="Prefix the step writes and commits.")
    model: CatalogEntry = Field(description="The winner's base model.")
    adapter_uri: str | None = Field(None, description="The winner's LoRA adapter.")
    model_uri: str | None = Field(None, description="The winner's full model, for a full fine-tune.")
    formats: list[str] = Field(default_factory=list, description="ONNX formats to build.")
    export_config: ExportConfig = Field(description="The run's export settings.")
    dataset: PreparedDataset | None = Field(None, description="The winner's dataset, for calibration.")

    @model_validator(mode="after")
    def _one_kind_of_weights(self) -> ExportSpec:
        if self.adapter_uri and self.model_uri:
            raise ValueError("give either adapter_uri (LoRA) or model_uri (full fine-tune), not both")
        return self


class ExportedFormat(OpenContract):
    """One exported format and how it was built (its details depend on the format)."""

    uri: str = Field(description="Prefix of the format's files.")
    size_bytes: int = Field(description="Size on disk.")


class ExportResult(OpenContract):
    """What the export step commits."""

    merged_uri: str = Field(description="The merged PyTorch model (safetensors): what is promoted.")
    pytorch_size_bytes: int = Field(description="Size of the merged weights.")
    formats: dict[str, ExportedFormat] = Field(default_factory=dict, description="Each exported format.")


class CheckExportSpec(Contract):
    """What `python -m tasks.check_export` reads."""

    step: Literal["check_export"] = Field("check_export", description="The step this spec is for.")
    store_root: str = Field(description="Root URI of the artifact store.")
    output: str = Field(description="Prefix the step writes and commits.")
    model: CatalogEntry = Field(description="The winner's base model (its tokenizer overrides).")
    export_output: str | None = Field(None, description="The export step's output.")
    export: ExportResult | None = Field(None, description="The export result given directly.")
    dataset: PreparedDataset = Field(description="The rows the winner was scored on.")
    scoring: ScoringConfig = Field(description="How the winner was scored.")
    export_config: ExportConfig = Field(description="The gates.")
    reference_metrics: dict[str, float | None] = Field(
        default_factory=dict, description="The winner's PyTorch metrics on the same rows."
    )

    @model_validator(mode="after")
    def _knows_the_export(self) -> CheckExportSpec:
        if self.export is None and not self.export_output:
            raise ValueError("give export_output (the export step's output) or export (its result)")
        return self


class CheckExportResult(OpenContract):
    """What check_export commits (and writes to `checks.json`)."""

    gated_metric: str | None = Field(description="The text metric gated, or None.")
    reference_metrics: dict[str, float | None] = Field(description="PyTorch metrics compared against.")
    test_rows: int = Field(description="Rows scored.")
    pytorch: dict[str, Any] = Field(description="Size and latency of the merged model.")
    formats: dict[str, dict[str, Any]] = Field(description="Checks of each format.")
    passed: bool = Field(description="Every format passed its gates.")
