"""Typed experiment configuration: the single source of truth for the trigger form and every step.

Light on purpose: imported by the DAG files at parse time, so only pydantic and the stdlib here.
"""

from __future__ import annotations

import os
import re
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from tasks.scoring import plugins as scoring_plugins

SLUG = r"^[a-z0-9][a-z0-9._-]{0,62}$"
SlugStr = Annotated[str, Field(pattern=SLUG)]

TrainingType = Literal["pretrain", "sft", "dpo"]
TrainingMethod = Literal["full", "lora", "qlora"]

# Which (type, method) pairs this build can run, and why the others are refused up front.
ALLOWED_METHODS: dict[str, tuple[str, ...]] = {
    "pretrain": ("full",),
    "sft": ("full", "lora", "qlora"),
    "dpo": ("full", "lora", "qlora"),
}
NOT_YET = {
    ("pretrain", "lora"): "pretraining adapts every weight; use method 'full'",
    ("pretrain", "qlora"): "pretraining adapts every weight; use method 'full'",
}
GPU_METHODS = {
    "qlora": "QLoRA needs a CUDA device (bitsandbytes quantizes the base model to 4-bit NF4 there)"
}


def cuda_visible() -> bool:
    """Whether the train step will find a CUDA device, judged without importing torch (the Airflow
    worker validates the conf at parse and trigger time): the kubernetes backend runs the train step in
    GPU pods (include/configs/kubernetes.yaml); the local backend runs it here, where an NVIDIA driver
    shows /dev/nvidiactl. TUNERFLOW_CUDA=1 or 0 overrides both, e.g. for a worker whose GPUs the driver
    exposes elsewhere."""
    forced = os.environ.get("TUNERFLOW_CUDA", "").strip()
    if forced in ("0", "1"):
        return forced == "1"
    if os.environ.get("TUNERFLOW_BACKEND", "local").strip().lower() == "kubernetes":
        return True
    return os.path.exists("/dev/nvidiactl")


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


EXPORT_FORMATS = ("onnx", "onnx-int8", "onnx-fp16")
INT8_MODES = ("auto", "static", "dynamic")
CALIBRATION_SETS = ("experiment", "c4", "ceval")
CALIBRATION_FORMATS = ("auto", "c4", "ceval")
CALIBRATION_METHODS = ("minmax", "entropy", "percentile")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


BUILTIN_FORMATS = ("alpaca", "sharegpt", "moss", "guanaco", "messages", "text", "preference")
PII_MODES = ("off", "redact", "drop")
DEFAULT_SPLIT = "90,5,5"


def _check_format(value: str) -> str:
    """A built-in format, `auto`, or one a data plugin registers (plugins are loaded only when asked)."""
    if value == "auto" or value in BUILTIN_FORMATS:
        return value
    from tasks.data.plugins import format_names

    known = format_names()
    if value not in known:
        raise ValueError(f"unknown format '{value}'; use auto or one of: {', '.join(known)}")
    return value


def _check_columns(value: dict[str, str]) -> dict[str, str]:
    from tasks.data.formats import check_columns

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
            from tasks.data.plugins import filter_names

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


class EvalQuestion(_Strict):
    """One fixed question with its expected answer, scored like a held-out row."""

    question: str = Field(min_length=1, description="The user turn the model answers.")
    answer: str = Field(
        min_length=1, description="The expected answer: the reference the metrics compare to."
    )
    system: str | None = Field(None, description="An optional system prompt before the question.")


class ModelConfig(_Strict):
    name: SlugStr = Field(description="Catalog name (include/configs/models.yaml) or your own short name.")
    uri: str | None = Field(
        None,
        description="Where the weights are when the model is not in the catalog: a local directory or "
        "file:// URI of a Hugging Face model (safetensors), or `hf:<hub id>`.",
    )


Scheduler = Literal["linear", "cosine", "constant"]
Precision = Literal["auto", "bf16", "fp16", "fp32"]
Attention = Literal["sdpa", "eager", "flash_attention_2"]
Optimizer = Literal[
    "adamw_torch",
    "adamw_torch_fused",
    "adafactor",
    "sgd",
    "adamw_8bit",
    "paged_adamw_8bit",
    "paged_adamw_32bit",
]
DpoLoss = Literal[
    "sigmoid", "ipo", "hinge", "robust", "bco_pair", "sppo_hard", "nca_pair", "apo_zero", "apo_down"
]
DeepSpeedStage = Literal["zero2", "zero3"]

HPARAM_DESCRIPTIONS: dict[str, str] = {
    "learning_rate": "Peak learning rate.",
    "min_learning_rate": "Floor of the cosine schedule (0: decay to zero); only with lr_scheduler cosine.",
    "lr_scheduler": "LR schedule after warmup: linear decay, cosine decay, or constant.",
    "warmup_ratio": "Fraction of the optimizer steps spent warming up linearly from 0.",
    "epochs": "Passes over the training split.",
    "max_steps": "Stop after this many optimizer steps (-1: use epochs).",
    "batch_size": "Global batch size: rows per optimizer step over all GPUs. Gradient accumulation = "
    "batch_size / (micro_batch_size x GPUs); the train step refuses a batch size that does not divide.",
    "micro_batch_size": "Rows per forward pass on one device.",
    "max_seq_length": "Longest tokenized row (longer rows are cut); with packing, the packed row length.",
    "precision": "Training dtype: auto (bf16 on a CUDA device that supports it, fp16 on other CUDA devices, "
    "fp32 on CPU), bf16, fp16 or fp32. bf16 and fp16 need a CUDA device.",
    "gradient_checkpointing": "Recompute activations in the backward pass: less memory, about 30% slower.",
    "attn_implementation": "Attention kernel: sdpa (PyTorch), eager, or flash_attention_2 (needs the "
    "flash-attn package and a CUDA device).",
    "packing": "Pack several rows into each max_seq_length row (TRL best-fit packing, no padding). "
    "Default: on for pretrain, off for sft; DPO does not pack.",
    "padding_free": "SFT: concatenate a micro-batch into one row with per-row position ids instead of "
    "padding (packing implies it). Default: on for sft (same losses, fewer tokens computed), off for DPO, "
    "which pads whole preference pairs and refuses it.",
    "weight_decay": "Decoupled weight decay (AdamW).",
    "optim": "Optimizer (a transformers `optim` name); the 8-bit and paged ones need bitsandbytes and CUDA.",
    "max_grad_norm": "Clip the gradient norm to this value (0: no clipping).",
    "lora_r": "LoRA rank.",
    "lora_alpha": "LoRA scaling numerator (alpha / r).",
    "lora_dropout": "Dropout on the LoRA branch.",
    "lora_target_modules": "Modules to adapt: a list of names, or `all-linear`.",
    "dpo_beta": "DPO: how far the policy may move from the reference (higher: less).",
    "dpo_loss_type": "DPO: TRL loss type (sigmoid is the original DPO loss; ipo, hinge, robust, ...).",
    "deepspeed": "DeepSpeed ZeRO stage: zero2 or zero3 (include/configs/deepspeed/<name>.json); none by "
    "default. Needs the deepspeed package and CUDA devices.",
    "seed": "Training seed (model init of new weights, data order, dropout).",
    "logging_steps": "Log metrics every N optimizer steps.",
    "save_steps": "Commit a resumable checkpoint every N optimizer steps; a retried job resumes from the "
    "newest one, so a crash loses at most N steps.",
    "save_total_limit": "Keep the newest N committed checkpoints; older ones are deleted.",
    "merge_adapter": "LoRA only: also write the base model with the adapter merged in (`merged/`, "
    "safetensors) beside the adapter.",
}


def _hp(**kwargs: Any) -> Any:
    """An optional HParams field: unset means "from the preset, then from the defaults"."""
    return Field(None, **kwargs)


class HParams(_Strict):
    """One hyperparameter group. Unset fields come from the preset, then from the defaults
    (tasks/config/catalog.py HPARAM_DEFAULTS); `tunerflow hparams show <preset>` prints the result."""

    name: SlugStr | None = Field(None, description="Label of the group in job names; defaults to the preset.")
    preset: str | None = Field(
        None, description="Name of a preset in include/configs/hparams/ whose values are the base."
    )
    learning_rate: float | None = _hp(gt=0, description=HPARAM_DESCRIPTIONS["learning_rate"])
    min_learning_rate: float | None = _hp(ge=0, description=HPARAM_DESCRIPTIONS["min_learning_rate"])
    lr_scheduler: Scheduler | None = _hp(description=HPARAM_DESCRIPTIONS["lr_scheduler"])
    warmup_ratio: float | None = _hp(ge=0, lt=1, description=HPARAM_DESCRIPTIONS["warmup_ratio"])
    epochs: float | None = _hp(gt=0, description=HPARAM_DESCRIPTIONS["epochs"])
    max_steps: int | None = _hp(description=HPARAM_DESCRIPTIONS["max_steps"])
    batch_size: int | None = _hp(ge=1, description=HPARAM_DESCRIPTIONS["batch_size"])
    micro_batch_size: int | None = _hp(ge=1, description=HPARAM_DESCRIPTIONS["micro_batch_size"])
    max_seq_length: int | None = _hp(ge=8, description=HPARAM_DESCRIPTIONS["max_seq_length"])
    precision: Precision | None = _hp(description=HPARAM_DESCRIPTIONS["precision"])
    gradient_checkpointing: bool | None = _hp(description=HPARAM_DESCRIPTIONS["gradient_checkpointing"])
    attn_implementation: Attention | None = _hp(description=HPARAM_DESCRIPTIONS["attn_implementation"])
    packing: bool | None = _hp(description=HPARAM_DESCRIPTIONS["packing"])
    padding_free: bool | None = _hp(description=HPARAM_DESCRIPTIONS["padding_free"])
    weight_decay: float | None = _hp(ge=0, description=HPARAM_DESCRIPTIONS["weight_decay"])
    optim: Optimizer | None = _hp(description=HPARAM_DESCRIPTIONS["optim"])
    max_grad_norm: float | None = _hp(ge=0, description=HPARAM_DESCRIPTIONS["max_grad_norm"])
    lora_r: int | None = _hp(ge=1, description=HPARAM_DESCRIPTIONS["lora_r"])
    lora_alpha: int | None = _hp(ge=1, description=HPARAM_DESCRIPTIONS["lora_alpha"])
    lora_dropout: float | None = _hp(ge=0, lt=1, description=HPARAM_DESCRIPTIONS["lora_dropout"])
    lora_target_modules: list[str] | str | None = _hp(description=HPARAM_DESCRIPTIONS["lora_target_modules"])
    dpo_beta: float | None = _hp(gt=0, description=HPARAM_DESCRIPTIONS["dpo_beta"])
    dpo_loss_type: DpoLoss | None = _hp(description=HPARAM_DESCRIPTIONS["dpo_loss_type"])
    deepspeed: DeepSpeedStage | None = _hp(description=HPARAM_DESCRIPTIONS["deepspeed"])
    seed: int | None = _hp(ge=0, description=HPARAM_DESCRIPTIONS["seed"])
    logging_steps: int | None = _hp(ge=1, description=HPARAM_DESCRIPTIONS["logging_steps"])
    save_steps: int | None = _hp(ge=1, description=HPARAM_DESCRIPTIONS["save_steps"] + " Default 100.")
    save_total_limit: int | None = _hp(
        ge=1, description=HPARAM_DESCRIPTIONS["save_total_limit"] + " Default 2."
    )
    merge_adapter: bool | None = _hp(description=HPARAM_DESCRIPTIONS["merge_adapter"] + " Default false.")


class ResolvedHParams(_Strict):
    """A hyperparameter group with every value filled in, as the train step receives it."""

    name: SlugStr = Field(description="Label of the group in job names.")
    learning_rate: float = Field(description=HPARAM_DESCRIPTIONS["learning_rate"])
    lr_scheduler: Scheduler = Field(description=HPARAM_DESCRIPTIONS["lr_scheduler"])
    warmup_ratio: float = Field(description=HPARAM_DESCRIPTIONS["warmup_ratio"])
    epochs: float = Field(description=HPARAM_DESCRIPTIONS["epochs"])
    max_steps: int = Field(description=HPARAM_DESCRIPTIONS["max_steps"])
    batch_size: int = Field(description=HPARAM_DESCRIPTIONS["batch_size"])
    micro_batch_size: int = Field(description=HPARAM_DESCRIPTIONS["micro_batch_size"])
    max_seq_length: int = Field(description=HPARAM_DESCRIPTIONS["max_seq_length"])
    weight_decay: float = Field(description=HPARAM_DESCRIPTIONS["weight_decay"])
    lora_r: int = Field(description=HPARAM_DESCRIPTIONS["lora_r"])
    lora_alpha: int = Field(description=HPARAM_DESCRIPTIONS["lora_alpha"])
    lora_dropout: float = Field(description=HPARAM_DESCRIPTIONS["lora_dropout"])
    lora_target_modules: list[str] | str = Field(description=HPARAM_DESCRIPTIONS["lora_target_modules"])
    seed: int = Field(description=HPARAM_DESCRIPTIONS["seed"])
    logging_steps: int = Field(description=HPARAM_DESCRIPTIONS["logging_steps"])
    # Defaults here rather than only in HPARAM_DEFAULTS so that job specs written before these fields
    # existed still validate and train as they did: 100 steps bound the work a crash loses at minutes
    # on a GPU, and a LoRA checkpoint (adapter plus its optimizer state) is small enough to write that often.
    save_steps: int = Field(100, description=HPARAM_DESCRIPTIONS["save_steps"])
    save_total_limit: int = Field(2, description=HPARAM_DESCRIPTIONS["save_total_limit"])
    merge_adapter: bool = Field(False, description=HPARAM_DESCRIPTIONS["merge_adapter"])
    min_learning_rate: float = Field(0.0, description=HPARAM_DESCRIPTIONS["min_learning_rate"])
    precision: Precision = Field("auto", description=HPARAM_DESCRIPTIONS["precision"])
    gradient_checkpointing: bool = Field(False, description=HPARAM_DESCRIPTIONS["gradient_checkpointing"])
    attn_implementation: Attention = Field("sdpa", description=HPARAM_DESCRIPTIONS["attn_implementation"])
    packing: bool | None = Field(None, description=HPARAM_DESCRIPTIONS["packing"])
    padding_free: bool | None = Field(None, description=HPARAM_DESCRIPTIONS["padding_free"])
    optim: Optimizer = Field("adamw_torch", description=HPARAM_DESCRIPTIONS["optim"])
    max_grad_norm: float = Field(1.0, description=HPARAM_DESCRIPTIONS["max_grad_norm"])
    dpo_beta: float = Field(0.1, description=HPARAM_DESCRIPTIONS["dpo_beta"])
    dpo_loss_type: DpoLoss = Field("sigmoid", description=HPARAM_DESCRIPTIONS["dpo_loss_type"])
    deepspeed: DeepSpeedStage | None = Field(None, description=HPARAM_DESCRIPTIONS["deepspeed"])

    @model_validator(mode="after")
    def _cross_field_rules(self) -> ResolvedHParams:
        name = f"hparams '{self.name}'"
        if self.batch_size % self.micro_batch_size:
            raise ValueError(
                f"{name}: batch_size {self.batch_size} is not a multiple of "
                f"micro_batch_size {self.micro_batch_size}"
            )
        if self.max_steps == 0 or self.max_steps < -1:
            raise ValueError(f"{name}: max_steps must be -1 (use epochs) or above 0")
        if self.save_steps < 1:
            raise ValueError(f"{name}: save_steps must be 1 or more (optimizer steps)")
        if self.save_total_limit < 1:
            raise ValueError(
                f"{name}: save_total_limit must be 1 or more, or no checkpoint would be left to resume from"
            )
        if self.min_learning_rate and self.lr_scheduler != "cosine":
            raise ValueError(
                f"{name}: min_learning_rate {self.min_learning_rate} needs lr_scheduler cosine "
                f"(got {self.lr_scheduler}); set min_learning_rate to 0 or use cosine"
            )
        if self.min_learning_rate >= self.learning_rate:
            raise ValueError(
                f"{name}: min_learning_rate {self.min_learning_rate} must be below learning_rate "
                f"{self.learning_rate}"
            )
        return self


def training_hparam_problems(hp: ResolvedHParams, training_type: str) -> list[str]:
    """Hyperparameters a training type cannot run with. Checked when the conf is validated (presets
    resolved) and again by the train step, which may be handed a spec written by hand."""
    problems = []
    if training_type == "dpo" and hp.packing:
        problems.append(
            f"hparams '{hp.name}': packing is refused for DPO, which trains on whole preference pairs; "
            "unset packing"
        )
    if training_type == "dpo" and hp.padding_free:
        problems.append(
            f"hparams '{hp.name}': padding_free is refused for DPO (TRL pads preference pairs); "
            "unset padding_free"
        )
    if training_type == "pretrain" and hp.packing is False and hp.padding_free:
        problems.append(f"hparams '{hp.name}': padding_free needs packing for pretrain; unset one of them")
    return problems


class TrainingConfig(_Strict):
    """What is trained (type) and which weights move (method)."""

    type: TrainingType = Field(
        "sft",
        description="pretrain (loss on all text, packed), sft (loss on every assistant turn's tokens), "
        "or dpo (preference pairs, TRL DPOTrainer).",
    )
    method: TrainingMethod = Field(
        "lora",
        description="full (every weight), lora (PEFT adapters), or qlora (LoRA on a 4-bit NF4 base, "
        "needs CUDA).",
    )

    @model_validator(mode="after")
    def _method_can_run(self) -> TrainingConfig:
        if self.method in GPU_METHODS and not cuda_visible():
            raise ValueError(
                f"type '{self.type}' with method '{self.method}' is refused: {GPU_METHODS[self.method]} "
                "and none is visible here; use method 'lora', or run the train step on GPUs "
                "(TUNERFLOW_BACKEND=kubernetes, or a worker with an NVIDIA driver; TUNERFLOW_CUDA=1 "
                "declares one)"
            )
        return self


class JudgeConfig(_Strict):
    """The `llm_judge` metric's settings; the endpoint's address and key come from an Airflow connection."""

    conn_id: str = Field(
        "tunerflow_judge",
        pattern=r"^[A-Za-z][A-Za-z0-9_]{0,199}$",
        description="Airflow connection of the OpenAI-compatible judge endpoint: host (or extra.base_url) "
        "is the base URL, e.g. https://api.openai.com/v1; password is the API key; extra.model the default "
        "model. Letters, digits and _ only, so that AIRFLOW_CONN_<CONN_ID> is a valid environment variable.",
    )
    model: str | None = Field(
        None, min_length=1, description="The judge model; overrides the connection's extra.model."
    )
    max_concurrency: int = Field(4, ge=1, le=64, description="Rows graded at the same time (threads).")
    timeout_s: float = Field(60.0, gt=0, le=600, description="Seconds one request may take before a retry.")
    max_retries: int = Field(
        4, ge=0, le=10, description="Retries of one row on HTTP 429, 5xx, timeouts and dropped connections."
    )
    backoff_s: float = Field(
        2.0,
        ge=0,
        le=60,
        description="Exponential backoff factor: retry n waits backoff_s * 2^(n-1) s (the first retry is "
        "immediate), or the server's Retry-After, at most 120 s.",
    )
    max_tokens: int = Field(
        256, ge=16, le=8192, description="Completion budget of one grading reply (a grade and a reason)."
    )
    rubric: str | None = Field(
        None,
        min_length=1,
        description="Grading instructions sent as the system message instead of the built-in rubric; the "
        'reply format ({"grade": 1-10, "reason": ...}) is always appended.',
    )
    max_ungraded_share: float = Field(
        0.1,
        ge=0,
        le=1,
        description="Rows the judge could not grade (no parsable grade, or still failing after the "
        "retries) count as 0; above this share of the rows the metric fails instead.",
    )


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
    temperature: float = Field(
        0.0,
        ge=0,
        le=5,
        description="0 (the default) decodes greedily, so scores are reproducible; above 0 samples with "
        "this temperature, top_p and seed.",
    )
    top_p: float = Field(1.0, gt=0, le=1, description="Nucleus sampling mass, when temperature > 0.")
    seed: int = Field(0, ge=0, description="Sampling seed, when temperature > 0: the same for every job.")
    batch_size: int = Field(16, ge=1, description="Rows per generation batch.")
    max_samples: int | None = Field(None, ge=1, description="Score at most this many test rows.")
    eval_dataset: DatasetConfig | None = Field(
        None,
        description="A separate eval set: every job, base model and champion is scored on all its rows "
        "instead of each training dataset's test split (its `split` is not used), and training rows whose "
        "prompt overlaps one of its prompts are dropped. Give `uri`, `sources` or `registered`.",
    )
    eval_questions: list[EvalQuestion] = Field(
        default_factory=list,
        description="A fixed list of questions with expected answers, scored instead of the test split "
        "(training rows overlapping them are dropped). Not together with eval_dataset.",
    )
    rank_on: Literal["pytorch", "onnx-int8"] = Field(
        "pytorch",
        description="Which score picks the winner: the PyTorch model's, or the score of each job's INT8 "
        "ONNX export (every successful job is exported and scored again), so that the winner is the best "
        "model as deployed. Both are on the leaderboard.",
    )
    compare_base: bool = Field(
        True, description="Also score each base model untouched, as a reference row on the leaderboard."
    )
    judge: JudgeConfig = Field(
        default_factory=JudgeConfig,
        description="Settings of the llm_judge metric (used only when scoring.metrics lists llm_judge).",
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


class CalibrationConfig(_Strict):
    """Text that static INT8 quantization measures activation ranges on."""

    dataset: str = Field(
        "experiment",
        min_length=1,
        description="`experiment` (the prepared training split of the run, rendered with the chat template: "
        "works offline), `c4` (allenai/c4, English, one validation shard) or `ceval` (ceval/ceval-exam, "
        "Chinese, the val split of every subject) from the Hugging Face Hub where one is reachable, or a "
        "local path, directory, glob, `s3://` URI or `hf:<name or save_to_disk dir>[:<config>][@<split>]` "
        "holding files in one of those published formats: C4 gzip JSON lines (`c4-*.json.gz`, or plain "
        ".json/.jsonl, with `text`), C-Eval per-subject CSV (`{dev,val,test}/<subject>_<split>.csv` with "
        "id,question,A,B,C,D[,answer,explanation]).",
    )
    format: Literal[CALIBRATION_FORMATS] = Field(  # type: ignore[valid-type]
        "auto",
        description="Row format of a path/URI dataset: c4 (a `text` column) or ceval (question and options "
        "A-D); `auto` tells them apart by their columns.",
    )
    subjects: list[str] = Field(
        default_factory=list,
        description="C-Eval subjects to read (e.g. computer_network); empty reads every subject found.",
    )
    samples: int = Field(128, ge=1, le=4096, description="Calibration sequences fed to the model.")
    seq_length: int = Field(
        256, ge=8, le=8192, description="Tokens per calibration sequence (texts are joined, then cut)."
    )
    seed: int = Field(0, ge=0, description="Seed of the shuffle that picks the calibration texts.")
    method: Literal[CALIBRATION_METHODS] = Field(  # type: ignore[valid-type]
        "minmax",
        description="How activation ranges are set from the calibration data: minmax, entropy or "
        "percentile (onnxruntime's calibrators). entropy and percentile hold every calibration activation in "
        "memory (for a 135M model about 200 MB per 256-token sample): use them with few samples.",
    )


class ExportConfig(_Strict):
    """How the winner is exported. `onnx-fp16` needs a CUDA device where the export step runs; that can
    only be known there (the worker validating the conf may not be the GPU pod), so the export step refuses
    it with a message when no CUDA device is present."""

    enabled: bool = Field(True, description="Export the winner to ONNX.")
    formats: list[Literal[EXPORT_FORMATS]] = Field(  # type: ignore[valid-type]
        default_factory=lambda: ["onnx", "onnx-int8"],
        description="onnx (fp32 with KV cache, for CPU), onnx-int8 (8-bit weights and activations, for CPU; "
        "see int8_mode) and onnx-fp16 (fp16 exported on a CUDA device, for the CUDA execution provider).",
    )
    int8_mode: Literal[INT8_MODES] = Field(  # type: ignore[valid-type]
        "auto",
        description="static: activation ranges calibrated on `calibration`; dynamic: activations quantized "
        "per block at run time; auto: build both and keep static unless it agrees less with fp32 than "
        "dynamic on held-out rows (the choice and the numbers are recorded in the export result).",
    )
    int8_block_size: Literal[16, 32, 64, 128] = Field(
        64,
        description="Weights per INT8 scale along the input dimension (smaller: more accurate, larger and "
        "slower). The embedding is stored in 8 bits only when the hidden size is a multiple of it.",
    )
    int8_exclude: list[str] = Field(
        default_factory=lambda: ["down_proj"],
        description="Node-name substrings kept out of static activation quantization (their weights are "
        "still 8-bit): the MLP down projections see the activation outliers of decoder LLMs.",
    )
    holdout_rows: int = Field(
        32, ge=1, le=1024, description="Held-out rows on which auto compares static with dynamic INT8."
    )
    calibration: CalibrationConfig = Field(
        default_factory=CalibrationConfig, description="Calibration data for static INT8."
    )
    max_logit_diff: float = Field(
        1e-2, gt=0, description="Largest allowed |logit| difference of fp32 ONNX against PyTorch."
    )
    fp16_max_logit_diff: float = Field(
        0.5, gt=0, description="Largest allowed |logit| difference of fp16 ONNX against fp32 PyTorch."
    )
    min_next_token_agreement: float = Field(
        0.9,
        ge=0,
        le=1,
        description="Least share of fixed prompts whose greedy next token matches PyTorch (fp32 and fp16).",
    )
    int8_min_agreement: float = Field(
        0.6,
        ge=0,
        le=1,
        description="Least share of fixed-prompt positions (teacher-forced) whose greedy token in INT8 "
        "matches PyTorch: catches an INT8 export of the wrong or broken weights that the metric alone could "
        "miss.",
    )
    max_metric_drop: float = Field(
        0.05,
        ge=0,
        description="Largest allowed drop (absolute) of scoring.primary on the test split, ONNX against "
        "the PyTorch winner (a rise, for lower-is-better metrics); gated for every format. When primary is a "
        "loss metric (eval_loss, perplexity), the first text metric in scoring.metrics.",
    )

    @model_validator(mode="after")
    def _cross_field_rules(self) -> ExportConfig:
        repeated = sorted({fmt for fmt in self.formats if self.formats.count(fmt) > 1})
        if repeated:
            raise ValueError(f"export.formats: list each format once; repeated: {', '.join(repeated)}")
        return self


class PromotionConfig(_Strict):
    enabled: bool = Field(True, description="Register the winner and move the production pointer.")
    registry_name: SlugStr | None = Field(
        None, description="Name of the model in the registry; defaults to the experiment name."
    )
    margin: float = Field(
        0.0, ge=0, description="The candidate must beat the champion's primary metric by more than this."
    )
    rescore_champion: bool = Field(
        True,
        description="Score the current production model again on this run's eval set, with the same code "
        "and rows as the candidate, so that promotion compares like for like (champion/challenger).",
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
