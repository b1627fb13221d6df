"""Typed experiment configuration: the single source of truth for the trigger form and every step.

Light on purpose: imported by the DAG files at parse time, so only pydantic and the stdlib here.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from tasks import scoring_plugins

SLUG = r"^[a-z0-9][a-z0-9._-]{0,62}$"
SlugStr = Annotated[str, Field(pattern=SLUG)]

TrainingType = Literal["pretrain", "sft", "dpo"]
TrainingMethod = Literal["full", "lora", "qlora"]

# Which (type, method) pairs this build can run, and why the others are refused up front.
ALLOWED_METHODS: dict[str, tuple[str, ...]] = {
    "pretrain": ("full",),
    "sft": ("full", "lora"),
    "dpo": (),
}
NOT_YET = {
    ("sft", "qlora"): "QLoRA needs bitsandbytes and a CUDA device; it is not available in this build yet",
    ("dpo", "lora"): "DPO is not available in this build yet",
    ("dpo", "qlora"): "DPO is not available in this build yet",
    ("dpo", "full"): "DPO is not available in this build yet",
}

# Which prepared dataset kinds each training type learns from.
DATASET_KINDS: dict[str, tuple[str, ...]] = {
    "pretrain": ("text", "chat"),
    "sft": ("chat",),
    "dpo": ("preference",),
}


def dataset_kind_problem(training_type: str, dataset: str, kind: str) -> str | None:
    """Why `training_type` cannot train on a dataset of this kind, or None."""
    if kind in DATASET_KINDS[training_type]:
        return None
    wanted = " or ".join(DATASET_KINDS[training_type])
    return (
        f"dataset '{dataset}' holds {kind} rows, but training.type '{training_type}' trains on {wanted} "
        "rows; use a dataset of that kind or change training.type"
    )


EXPORT_FORMATS = ("onnx", "onnx-int8")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


BUILTIN_FORMATS = ("alpaca", "sharegpt", "moss", "guanaco", "messages", "text", "preference")
PII_MODES = ("off", "redact", "drop")
DEFAULT_SPLIT = "90,5,5"


def _check_format(value: str) -> str:
    """A built-in format, `auto`, or one a data plugin registers (plugins are loaded only when asked)."""
    if value == "auto" or value in BUILTIN_FORMATS:
        return value
    from tasks.data_plugins import format_names

    known = format_names()
    if value not in known:
        raise ValueError(f"unknown format '{value}'; use auto or one of: {', '.join(known)}")
    return value


def _check_columns(value: dict[str, str]) -> dict[str, str]:
    from tasks.formats import check_columns

    check_columns(value)
    return value


FORMAT_DESCRIPTION = (
    "Row format. `auto` detects it from the first row's keys (after `columns`): a data plugin's format "
    "(plugins/data), then preference (prompt/chosen/rejected, DPO pairs), messages (OpenAI chat), sharegpt "
    "(conversations with from/value), moss (chat with turn_N), alpaca (instruction/input/output, optional "
    "system and history), then guanaco (text with '### Human:' / '### Assistant:') or text (raw text for "
    "pretraining). Set it when the rows match several formats."
)
COLUMNS_DESCRIPTION = (
    "Rename source columns to the format's keys before conversion: format key -> your column, e.g. "
    '{"instruction": "question", "output": "answer"}.'
)
URI_DESCRIPTION = (
    "A local path or file:// URI to a JSONL, JSON (a list of rows), CSV (UTF-8, header row) or Parquet file; "
    "a glob over such files (`data/*.jsonl`, `**` recursive); `s3://bucket/key` or an S3 glob "
    "(credentials and endpoint from the standard AWS environment); `hf:<name or dir>[:<config>][@<split>]` "
    "for a Hugging Face dataset (a hub name where a hub is reachable, or a `save_to_disk` directory); or "
    "`builtin:<name>` for a dataset shipped under include/data/."
)


class DataSource(_Strict):
    """One source of a mixed dataset."""

    uri: str = Field(description=URI_DESCRIPTION, title="URI", min_length=1)
    weight: float = Field(
        1.0,
        gt=0,
        le=100,
        description="Sampling weight of this source's training rows: 1 keeps each once, 0.5 a deterministic "
        "half, 2 each twice. Validation and test rows are never resampled.",
        title="Weight",
    )
    format: str = Field("auto", description="Format of this source's rows; see the dataset's `format`.")
    columns: dict[str, str] = Field(default_factory=dict, description=COLUMNS_DESCRIPTION)

    @field_validator("format")
    @classmethod
    def _known_format(cls, value: str) -> str:
        return _check_format(value)

    @field_validator("columns")
    @classmethod
    def _known_columns(cls, value: dict[str, str]) -> dict[str, str]:
        return _check_columns(value)


class DatasetConfig(_Strict):
    """One dataset: where its rows are (one uri, several weighted sources, pre-split uris, or a dataset
    registered with `tunerflow dataset create`), how to read them and which checks drop rows."""

    name: SlugStr = Field(
        description="Short name of the dataset, used in job labels and store keys (a-z, 0-9, . _ -).",
        title="Name",
    )
    uri: str | None = Field(None, description="Where the rows are. " + URI_DESCRIPTION, title="URI")
    sources: list[DataSource] = Field(
        default_factory=list,
        description="Several sources mixed into one dataset, each with a sampling weight (instead of `uri`).",
        title="Mixed sources",
    )
    train_uri: str | None = Field(
        None,
        description="Pre-split input: the training rows (instead of `uri`); `split` is then not used.",
        title="Train URI",
    )
    validation_uri: str | None = Field(
        None, description="Pre-split input: the validation rows (optional).", title="Validation URI"
    )
    test_uri: str | None = Field(
        None, description="Pre-split input: the test rows the jobs are scored on.", title="Test URI"
    )
    registered: SlugStr | None = Field(
        None,
        description="Name of a dataset registered with `tunerflow dataset create`: its definition is used "
        "(give only `name` beside it).",
        title="Registered dataset",
    )
    format: str = Field("auto", description=FORMAT_DESCRIPTION, title="Format")
    columns: dict[str, str] = Field(default_factory=dict, description=COLUMNS_DESCRIPTION, title="Columns")
    split: str = Field(
        DEFAULT_SPLIT,
        description="train,validation,test percentages: three integers summing to 100, train above 0. "
        "Not used with pre-split inputs.",
        title="Split ratios",
        pattern=r"^\s*\d{1,3}\s*,\s*\d{1,3}\s*,\s*\d{1,3}\s*$",
    )
    seed: int = Field(42, description="Seed of the deterministic split.", title="Split seed", ge=0)
    min_tokens: int = Field(
        1,
        ge=0,
        description="Drop rows shorter than this many tokens (counted with every model's tokenizer).",
        title="Min tokens",
    )
    max_tokens: int | None = Field(
        None,
        ge=1,
        description="Drop rows longer than this many tokens under any of the experiment's tokenizers, so "
        "no answer is cut off in training. Default: the smallest max_seq_length of the hparams groups.",
        title="Max tokens",
    )
    dedup: bool = Field(
        True, description="Drop exact duplicates after case, width and spacing are folded.", title="Dedup"
    )
    decontaminate_ngram: int = Field(
        13,
        ge=0,
        le=64,
        description="Drop training rows whose prompt shares a run of this many words with a validation or "
        "test prompt (0 turns it off).",
        title="Decontamination n-gram",
    )
    pii: Literal["off", "redact", "drop"] = Field(
        "off",
        description="Emails, phone numbers, IP addresses and API keys: `redact` replaces them with "
        "placeholders such as <EMAIL>, `drop` drops the row, `off` leaves them.",
        title="PII",
    )
    filters: list[str] = Field(
        default_factory=list,
        description="Row filters from data plugins (plugins/data), applied in order; each drops the rows "
        "it rejects with its own reason code.",
        title="Filters",
    )
    max_drop_ratio: float = Field(
        0.2,
        description="Fail the dataset when more than this fraction of rows is dropped by validation.",
        title="Max drop ratio",
        ge=0.0,
        le=1.0,
    )

    @field_validator("format")
    @classmethod
    def _known_format(cls, value: str) -> str:
        return _check_format(value)

    @field_validator("columns")
    @classmethod
    def _known_columns(cls, value: dict[str, str]) -> dict[str, str]:
        return _check_columns(value)

    @field_validator("filters")
    @classmethod
    def _known_filters(cls, value: list[str]) -> list[str]:
        if value:
            from tasks.data_plugins import filter_names

            unknown = [name for name in value if name not in filter_names()]
            if unknown:
                raise ValueError(
                    f"unknown filters {unknown}; data plugins provide: {', '.join(filter_names()) or 'none'}"
                )
        return value

    @field_validator("split")
    @classmethod
    def _split_sums_to_100(cls, value: str) -> str:
        parts = [int(p) for p in value.split(",")]
        if sum(parts) != 100:
            raise ValueError(f"split '{value}' sums to {sum(parts)}; the three percentages must sum to 100")
        if parts[0] <= 0:
            raise ValueError(f"split '{value}' gives no rows to train; the first number must be above 0")
        return ",".join(str(p) for p in parts)

    @model_validator(mode="after")
    def _one_way_to_the_rows(self) -> DatasetConfig:
        modes = {
            "uri": self.uri is not None,
            "sources": bool(self.sources),
            "train_uri": self.train_uri is not None,
            "registered": self.registered is not None,
        }
        chosen = [mode for mode, on in modes.items() if on]
        if len(chosen) != 1:
            raise ValueError(
                f"dataset '{self.name}': give exactly one of uri, sources, train_uri (with validation_uri "
                f"and test_uri) or registered; got {', '.join(chosen) or 'none'}"
            )
        if (self.validation_uri or self.test_uri) and not self.train_uri:
            raise ValueError(f"dataset '{self.name}': validation_uri and test_uri need train_uri beside them")
        if self.train_uri and self.split != DEFAULT_SPLIT:
            raise ValueError(
                f"dataset '{self.name}': split does not apply to pre-split inputs (train_uri, "
                "validation_uri, test_uri); remove it"
            )
        changed = [
            key
            for key, field in type(self).model_fields.items()
            if key not in ("name", "registered")
            and getattr(self, key) != field.get_default(call_default_factory=True)
        ]
        if self.registered and changed:
            extra = ", ".join(changed)
            raise ValueError(
                f"dataset '{self.name}': a registered dataset takes its settings from the registry; remove "
                f"{extra} or change the registration with `tunerflow dataset update`"
            )
        if self.sources and (self.format != "auto" or self.columns):
            raise ValueError(
                f"dataset '{self.name}': with sources, set format and columns on each source instead"
            )
        if self.max_tokens is not None and self.min_tokens > self.max_tokens:
            raise ValueError(
                f"dataset '{self.name}': min_tokens {self.min_tokens} is above max_tokens {self.max_tokens}"
            )
        return self

    @property
    def ratios(self) -> tuple[int, int, int]:
        train, validation, test = (int(p) for p in self.split.split(","))
        return train, validation, test

    @property
    def presplit(self) -> bool:
        return self.train_uri is not None


class ModelConfig(_Strict):
    name: SlugStr = Field(description="Catalog name (include/configs/models.yaml) or your own short name.")
    uri: str | None = Field(
        None,
        description="Where the weights are when the model is not in the catalog: a local directory or "
        "file:// URI of a Hugging Face model (safetensors), or `hf:<hub id>`.",
    )


class HParams(_Strict):
    """One hyperparameter group. Unset fields come from the preset, then from these defaults."""

    name: SlugStr | None = Field(None, description="Label of the group in job names; defaults to the preset.")
    preset: str | None = Field(
        None, description="Name of a preset in include/configs/hparams/ whose values are the base."
    )
    learning_rate: float | None = Field(None, gt=0, description="Peak learning rate.")
    lr_scheduler: Literal["linear", "cosine", "constant"] | None = Field(None, description="LR schedule.")
    warmup_ratio: float | None = Field(None, ge=0, lt=1, description="Fraction of steps spent warming up.")
    epochs: float | None = Field(None, gt=0, description="Passes over the training split.")
    max_steps: int | None = Field(None, description="Stop after this many optimizer steps (-1: use epochs).")
    batch_size: int | None = Field(None, ge=1, description="Global batch size (rows per optimizer step).")
    micro_batch_size: int | None = Field(
        None,
        ge=1,
        description="Rows per forward pass; gradient accumulation = batch_size / micro_batch_size.",
    )
    max_seq_length: int | None = Field(None, ge=8, description="Longest tokenized row; longer rows are cut.")
    weight_decay: float | None = Field(None, ge=0, description="AdamW weight decay.")
    lora_r: int | None = Field(None, ge=1, description="LoRA rank.")
    lora_alpha: int | None = Field(None, ge=1, description="LoRA scaling numerator (alpha / r).")
    lora_dropout: float | None = Field(None, ge=0, lt=1, description="Dropout on the LoRA branch.")
    lora_target_modules: list[str] | str | None = Field(
        None, description="Modules to adapt: a list of names, or `all-linear`."
    )
    seed: int | None = Field(None, ge=0, description="Training seed.")
    logging_steps: int | None = Field(None, ge=1, description="Log metrics every N steps.")


class ResolvedHParams(_Strict):
    """A hyperparameter group with every value filled in, as the train step receives it."""

    name: SlugStr
    learning_rate: float = Field(description="Peak learning rate.")
    lr_scheduler: Literal["linear", "cosine", "constant"] = Field(description="LR schedule.")
    warmup_ratio: float = Field(description="Fraction of steps spent warming up.")
    epochs: float = Field(description="Passes over the training split.")
    max_steps: int = Field(description="Stop after this many optimizer steps (-1: use epochs).")
    batch_size: int = Field(description="Global batch size.")
    micro_batch_size: int = Field(description="Rows per forward pass.")
    max_seq_length: int = Field(description="Longest tokenized row.")
    weight_decay: float = Field(description="AdamW weight decay.")
    lora_r: int = Field(description="LoRA rank.")
    lora_alpha: int = Field(description="LoRA alpha.")
    lora_dropout: float = Field(description="LoRA dropout.")
    lora_target_modules: list[str] | str = Field(description="Modules to adapt.")
    seed: int = Field(description="Training seed.")
    logging_steps: int = Field(description="Log metrics every N steps.")

    @model_validator(mode="after")
    def _batch_divides(self) -> ResolvedHParams:
        if self.batch_size % self.micro_batch_size:
            raise ValueError(
                f"hparams '{self.name}': batch_size {self.batch_size} is not a multiple of "
                f"micro_batch_size {self.micro_batch_size}"
            )
        if self.max_steps == 0 or self.max_steps < -1:
            raise ValueError(f"hparams '{self.name}': max_steps must be -1 (use epochs) or above 0")
        return self


class TrainingConfig(_Strict):
    type: TrainingType = Field("sft", description="pretrain (loss on all text), sft (loss on answers), dpo.")
    method: TrainingMethod = Field("lora", description="full fine-tuning, LoRA adapters, or QLoRA (4-bit).")


class ScoringConfig(_Strict):
    metrics: list[str] = Field(
        default_factory=lambda: ["exact_match", "rouge_l"],
        description="Metrics computed for every job on the test split: exact_match, token_f1, accuracy "
        "(multiple-choice labels), bleu, rouge_l, composite (0.75 rouge_l + 0.25 bleu), eval_loss and "
        "perplexity (from the answer loss), or a scoring plugin's name (plugins/scoring, "
        "$TUNERFLOW_SCORING_PLUGINS).",
        min_length=1,
    )
    primary: str = Field(
        "rouge_l",
        description="The metric that picks the winner: the highest wins, except for eval_loss, perplexity "
        "and plugins that declare GREATER_IS_BETTER = False, where the lowest wins.",
    )
    max_new_tokens: int = Field(48, ge=1, le=4096, description="Generation budget per answer.")
    batch_size: int = Field(16, ge=1, description="Rows per generation batch.")
    max_samples: int | None = Field(None, ge=1, description="Score at most this many test rows.")
    compare_base: bool = Field(
        True, description="Also score each base model untouched, as a reference row on the leaderboard."
    )

    # Names, not a Literal: scoring plugins add metrics, found by listing directories (no evaluate import).
    @field_validator("metrics")
    @classmethod
    def _known_metrics(cls, value: list[str]) -> list[str]:
        unknown = [name for name in value if name not in scoring_plugins.metric_names()]
        if unknown:
            raise ValueError(scoring_plugins.unknown_message(*unknown))
        return value

    @field_validator("primary")
    @classmethod
    def _known_primary(cls, value: str) -> str:
        if value not in scoring_plugins.metric_names():
            raise ValueError(scoring_plugins.unknown_message(value))
        return value


class ExportConfig(_Strict):
    enabled: bool = Field(True, description="Export the winner to ONNX.")
    formats: list[Literal[EXPORT_FORMATS]] = Field(  # type: ignore[valid-type]
        default_factory=lambda: ["onnx", "onnx-int8"],
        description="onnx (fp32, with KV cache) and onnx-int8 (dynamic INT8 with onnxruntime).",
    )
    max_logit_diff: float = Field(
        1e-2, gt=0, description="Largest allowed |logit| difference of fp32 ONNX against PyTorch."
    )
    min_next_token_agreement: float = Field(
        0.9, ge=0, le=1, description="Least share of fixed prompts whose greedy next token matches PyTorch."
    )
    max_metric_drop: float = Field(
        0.05,
        ge=0,
        description="Largest allowed drop (absolute) of scoring.primary on the test split, ONNX against "
        "the PyTorch winner (a rise, for lower-is-better metrics); gated for every format. When primary is a "
        "loss metric (eval_loss, perplexity), the first text metric in scoring.metrics.",
    )


class PromotionConfig(_Strict):
    enabled: bool = Field(True, description="Register the winner and move the production pointer.")
    registry_name: SlugStr | None = Field(
        None, description="Name of the model in the registry; defaults to the experiment name."
    )
    margin: float = Field(
        0.0, ge=0, description="The candidate must beat the champion's primary metric by more than this."
    )


class ExperimentConfig(_Strict):
    """One experiment: every dataset x model x hyperparameter group becomes one training job."""

    name: SlugStr = Field(description="Experiment name, used in store keys and the registry.")
    description: str = Field("", description="Free text shown in the report.")
    datasets: list[DatasetConfig] = Field(min_length=1, description="Datasets to train on, one job row each.")
    models: list[ModelConfig] = Field(min_length=1, description="Base models, from the catalog or by uri.")
    hparams: list[HParams] = Field(
        min_length=1, description="Hyperparameter groups: presets or inline values."
    )
    training: TrainingConfig = Field(default_factory=TrainingConfig, description="Training type and method.")
    scoring: ScoringConfig = Field(default_factory=ScoringConfig, description="How every job is scored.")
    export: ExportConfig = Field(default_factory=ExportConfig, description="How the winner is exported.")
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
        if self.scoring.primary not in self.scoring.metrics:
            problems.append(
                f"scoring.primary '{self.scoring.primary}' must be one of "
                f"scoring.metrics {self.scoring.metrics}"
            )
        if problems:
            raise ValueError("; ".join(problems))
        return self

    @property
    def registry_name(self) -> str:
        return self.promotion.registry_name or self.name


def format_validation_error(error: ValidationError) -> str:
    """One line per problem, naming the field path, e.g. `datasets.0.split: ...`."""
    lines = []
    for item in error.errors():
        path = ".".join(str(p) for p in item["loc"]) or "conf"
        message = re.sub(r"^Value error, ", "", item["msg"])
        lines.append(f"{path}: {message}")
    return "\n".join(lines)


class ConfError(ValueError):
    """A trigger conf that does not validate; the message names every bad field."""


def parse_experiment(conf: dict[str, Any]) -> ExperimentConfig:
    try:
        return ExperimentConfig.model_validate(conf)
    except ValidationError as error:
        raise ConfError("invalid experiment conf:\n" + format_validation_error(error)) from None
