"""tunerflow's own OpenLineage dataset facets, beside the standard ones (`version`, `outputStatistics`).

Each is an attrs class deriving from the client's `DatasetFacet`, as the OpenLineage client declares its
own, so it serializes with the client's `Serde` (None fields left out) and the provider's redactor knows
it. The key each goes under in a dataset's `facets` is its `KEY`. Their `_schemaURL` is an identifier
(`urn:tunerflow:openlineage:facets:1#<Name>`); docs/lineage.md describes every field.

Imports the `openlineage` client at its top, so it is only ever loaded from inside a function (the
builders in `tasks.lineage.steps` and `tasks.lineage.promotion`), never while a DAG is parsed.
"""

from __future__ import annotations

from typing import Any, ClassVar

import attr
from openlineage.client.facet_v2 import DatasetFacet

SCHEMA_URL = "urn:tunerflow:openlineage:facets:1"


def _schema(name: str) -> str:
    return f"{SCHEMA_URL}#{name}"


@attr.define
class ContentFacet(DatasetFacet):
    """A committed output as its `manifest.json` lists it: one hash over every file's sha256."""

    KEY: ClassVar[str] = "tunerflow_content"

    contentHash: str  # OpenLineage facets name fields in camelCase
    """`sha256:<hex>` over the sorted (path, sha256) pairs of the files under the dataset's prefix."""
    files: int = attr.field(default=0)
    """Files under the prefix."""
    sizeBytes: int = attr.field(default=0)
    """Their total size."""
    manifest: str | None = attr.field(default=None)
    """URI of the manifest.json the files are listed in."""

    @staticmethod
    def _get_schema() -> str:
        return _schema("ContentFacet")


@attr.define
class PreparedDatasetFacet(DatasetFacet):
    """A prepared dataset version: its version key and the rows kept and dropped."""

    KEY: ClassVar[str] = "tunerflow_prepared"

    version: str | None = attr.field(default=None)
    """The version key: a content hash of the sources and the preparation settings."""
    kind: str | None = attr.field(default=None)
    """What its rows hold: chat, text or preference."""
    format: str | None = attr.field(default=None)
    """The source format the rows were read as, or `mixed`."""
    rows: dict[str, int] = attr.field(factory=dict)
    """Rows kept per split."""
    kept: int = attr.field(default=0)
    """Rows kept in all."""
    dropped: int | None = attr.field(default=None)
    """Rows dropped in all."""
    dropReasons: dict[str, int] | None = attr.field(default=None)
    """Rows dropped per reason code."""
    split: str | None = attr.field(default=None)
    """On an evaluate input: the split scored."""

    @staticmethod
    def _get_schema() -> str:
        return _schema("PreparedDatasetFacet")


@attr.define
class ModelFacet(DatasetFacet):
    """Weights a step read or wrote: a base model, checkpoints, an adapter, a model, an export."""

    KEY: ClassVar[str] = "tunerflow_model"

    role: str
    """base_model, checkpoints, adapter, model, merged, or an export format (onnx, onnx-int8, gguf, ...)."""
    baseModel: str | None = attr.field(default=None)
    """The catalog name of the base model."""
    hubId: str | None = attr.field(default=None)
    """The base model's Hugging Face Hub id."""
    job: str | None = attr.field(default=None)
    """The job's label (`dataset|model|hparams`)."""
    method: str | None = attr.field(default=None)
    """full, lora or qlora."""
    steps: list[int] | None = attr.field(default=None)
    """Checkpoints: the steps kept."""
    sizeBytes: int | None = attr.field(default=None)
    """An export: its size on disk."""

    @staticmethod
    def _get_schema() -> str:
        return _schema("ModelFacet")


@attr.define
class TrainingFacet(DatasetFacet):
    """How a trained model was trained: its hyperparameters and final training metrics."""

    KEY: ClassVar[str] = "tunerflow_training"

    hyperparameters: dict[str, Any] = attr.field(factory=dict)
    """The job's hyperparameter group, presets resolved."""
    metrics: dict[str, Any] = attr.field(factory=dict)
    """Final training metrics: train_loss, eval_loss, steps, runtime_s, tokens_per_s, device_hours."""
    trainingType: str | None = attr.field(default=None)
    """sft, dpo, ..."""
    stopped: str | None = attr.field(default=None)
    """Why training ended before max_steps, if it did."""
    mergedFrom: list[str] | None = attr.field(default=None)
    """A merged candidate: the labels of its parts."""

    @staticmethod
    def _get_schema() -> str:
        return _schema("TrainingFacet")


@attr.define
class MetricsFacet(DatasetFacet):
    """Scores: an evaluation's metrics, or the export checks' verdict."""

    KEY: ClassVar[str] = "tunerflow_metrics"

    metrics: dict[str, Any] = attr.field(factory=dict)
    """Metric name -> value."""
    split: str | None = attr.field(default=None)
    """The split scored."""
    rows: int | None = attr.field(default=None)
    """Rows scored."""
    scoredOn: str | None = attr.field(default=None)
    """Name of the dataset scored on."""
    reference: bool | None = attr.field(default=None)
    """A base model's or the champion's scoring, not a fine-tune's."""
    passed: bool | None = attr.field(default=None)
    """Export checks: every format passed its gates."""

    @staticmethod
    def _get_schema() -> str:
        return _schema("MetricsFacet")


@attr.define
class RegistryFacet(DatasetFacet):
    """A registry version, or the registry's production pointer: the promotion decision and the champion
    comparison it rests on."""

    KEY: ClassVar[str] = "tunerflow_registry"

    registry: str
    """The registered model's name."""
    version: int | None = attr.field(default=None)
    """The candidate's registry version."""
    promoted: bool = attr.field(default=False)
    """Production now points at this version."""
    reason: str | None = attr.field(default=None)
    """Why, in words."""
    metrics: dict[str, Any] = attr.field(factory=dict)
    """The candidate's metrics as registered."""
    primary: str | None = attr.field(default=None)
    """The metric compared."""
    candidateMetric: float | None = attr.field(default=None)
    """The candidate's primary metric."""
    championVersion: int | None = attr.field(default=None)
    """The production version compared with."""
    championMetric: float | None = attr.field(default=None)
    """The champion's primary metric."""
    likeForLike: bool | None = attr.field(default=None)
    """Both were scored on the same rows."""

    @staticmethod
    def _get_schema() -> str:
        return _schema("RegistryFacet")
