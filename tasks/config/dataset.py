"""Where a dataset's rows are and how they are read and checked: `DatasetConfig` and its `DataSource`s.

The format and filter names are checked against the data plugins' registry (`tasks.data.plugins`) and
the column mapping against the formats' keys (`tasks.data.formats`): both are stdlib-only modules, so
importing them keeps DAG parsing light.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AfterValidator, Field, field_validator, model_serializer, model_validator

from tasks.config.base import SlugStr, StrictModel
from tasks.data import plugins as data_plugins
from tasks.data.formats import FORMATS, check_columns
from tasks.data.rows import DEFAULT_MAX_ROW_BYTES

# Below 1 KiB ordinary rows would be dropped; above 1 GiB one row could exhaust a worker (~40x its size).
MIN_ROW_BYTES = 1 << 10
MAX_ROW_BYTES = 1 << 30

DEFAULT_SPLIT = "90,5,5"


def _check_format(value: str) -> str:
    """A built-in format, `auto`, or one a data plugin registers (plugins are loaded only when asked)."""
    if value == "auto" or value in FORMATS:
        return value
    known = data_plugins.format_names()
    if value not in known:
        raise ValueError(f"unknown format '{value}'; use auto or one of: {', '.join(known)}")
    return value


def _check_columns(value: dict[str, str]) -> dict[str, str]:
    check_columns(value)
    return value


FormatName = Annotated[str, AfterValidator(_check_format)]
ColumnMap = Annotated[dict[str, str], AfterValidator(_check_columns)]

FORMAT_DESCRIPTION = (
    "Row format. `auto` detects it from the first row's keys (after `columns`): a data plugin's format "
    "(plugins/data), then preference (prompt/chosen/rejected, DPO pairs), openai_preference (OpenAI's DPO "
    "rows: input/preferred_output/non_preferred_output), messages (OpenAI chat), sharegpt "
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


class DataSource(StrictModel):
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
    format: FormatName = Field(
        "auto", description="Format of this source's rows; see the dataset's `format`."
    )
    columns: ColumnMap = Field(default_factory=dict, description=COLUMNS_DESCRIPTION)


# Vision rows: an image over either limit drops its row as image_too_large (tasks.data.vision_images).
MAX_IMAGE_BYTES = 20 * 1024 * 1024
MAX_IMAGE_PIXELS = 40_000_000


# The limits added after dataset definitions were first stored, with their defaults: written only when set
# to something else (DatasetConfig._as_stored).
_LATER_LIMITS = {
    "max_row_bytes": DEFAULT_MAX_ROW_BYTES,
    "max_image_bytes": MAX_IMAGE_BYTES,
    "max_image_pixels": MAX_IMAGE_PIXELS,
}


class DatasetConfig(StrictModel):
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
    format: FormatName = Field("auto", description=FORMAT_DESCRIPTION, title="Format")
    columns: ColumnMap = Field(default_factory=dict, description=COLUMNS_DESCRIPTION, title="Columns")
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
    dedup: Literal["exact", "near", "none"] = Field(
        "exact",
        description="`exact`: drop rows whose text equals an earlier row's once case, width and spacing "
        "(including whitespace at the ends of every field) are folded. `near`: that, and also rows whose "
        "word shingles resemble an earlier row's (MinHash estimate of Jaccard similarity at least "
        "near_dedup_threshold). `none`: keep duplicates. true/false mean exact/none.",
        title="Dedup",
    )
    near_dedup_threshold: float = Field(
        0.85,
        gt=0.0,
        le=1.0,
        description="With dedup: near, the estimated Jaccard similarity of word shingles from which a row "
        "counts as a near duplicate of an earlier row.",
        title="Near-dedup threshold",
    )
    near_dedup_shingle: int = Field(
        5,
        ge=1,
        le=32,
        description="With dedup: near, the number of consecutive words in one shingle.",
        title="Near-dedup shingle size",
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
    max_row_bytes: int = Field(
        DEFAULT_MAX_ROW_BYTES,
        description="Drop rows longer than this many bytes (a JSONL line, a JSON list element, a Parquet "
        "row; a longer CSV cell refuses the file) as `too_long` before they are converted, so preparation "
        "memory is bounded by the shard size, not by the longest row. Default 1 MiB (about 250k tokens).",
        title="Max row bytes",
    )
    max_image_bytes: int = Field(
        MAX_IMAGE_BYTES,
        gt=0,
        description="Vision rows: drop a row whose image file is larger than this many bytes "
        "(`image_too_large`). Default 20 MiB.",
        title="Max image bytes",
    )
    max_image_pixels: int = Field(
        MAX_IMAGE_PIXELS,
        gt=0,
        description="Vision rows: drop a row whose image has more pixels (width x height) than this "
        "(`image_too_large`), before it is decoded. Default 40 million.",
        title="Max image pixels",
    )
    max_drop_ratio: float = Field(
        0.2,
        description="Fail the dataset when more than this fraction of rows is dropped by validation.",
        title="Max drop ratio",
        ge=0.0,
        le=1.0,
    )

    @field_validator("filters")
    @classmethod
    def _known_filters(cls, value: list[str]) -> list[str]:
        if value:
            known = data_plugins.filter_names()
            unknown = [name for name in value if name not in known]
            if unknown:
                raise ValueError(
                    f"unknown filters {unknown}; data plugins provide: {', '.join(known) or 'none'}"
                )
        return value

    @field_validator("max_row_bytes")
    @classmethod
    def _row_bytes_in_range(cls, value: int) -> int:
        if not MIN_ROW_BYTES <= value <= MAX_ROW_BYTES:
            raise ValueError(
                f"max_row_bytes {value} is outside {MIN_ROW_BYTES} (1 KiB) to {MAX_ROW_BYTES} (1 GiB); rows "
                "longer than it are dropped, so set it above your longest real row"
            )
        return value

    @field_validator("dedup", mode="before")
    @classmethod
    def _dedup_bool(cls, value: object) -> object:
        # Definitions written before the modes existed say true/false.
        if isinstance(value, bool):
            return "exact" if value else "none"
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
        near_settings = [
            key
            for key in ("near_dedup_threshold", "near_dedup_shingle")
            if getattr(self, key) != type(self).model_fields[key].default
        ]
        if near_settings and self.dedup != "near":
            raise ValueError(
                f"dataset '{self.name}': {', '.join(near_settings)} only apply with dedup: near; set dedup "
                "to near or remove them"
            )
        if self.max_tokens is not None and self.min_tokens > self.max_tokens:
            raise ValueError(
                f"dataset '{self.name}': min_tokens {self.min_tokens} is above max_tokens {self.max_tokens}"
            )
        return self

    @model_serializer(mode="wrap")
    def _as_stored(self, handler: Any) -> dict[str, Any]:
        # Stored specs and registry records, and the content version hashed from them, predate the dedup
        # modes and the size limits: exact/none are spelled true/false, the near-dedup settings appear
        # only with dedup: near, and the limits (_LATER_LIMITS) only away from their defaults, so a
        # definition written earlier dumps back unchanged and names the version it always did.
        data = handler(self)
        if self.dedup != "near":
            if "dedup" in data:
                data["dedup"] = self.dedup == "exact"
            data.pop("near_dedup_threshold", None)
            data.pop("near_dedup_shingle", None)
        for key, default in _LATER_LIMITS.items():
            if data.get(key) == default:
                del data[key]
        return data

    @property
    def ratios(self) -> tuple[int, int, int]:
        train, validation, test = (int(p) for p in self.split.split(","))
        return train, validation, test

    @property
    def length_checks(self) -> list[str]:
        """The token-length checks this definition turns on, as `field value`. `min_tokens` 1 (the default)
        is met by every row that passes the empty-field checks, so it needs no tokenizer."""
        checks = []
        if self.min_tokens > 1:
            checks.append(f"min_tokens {self.min_tokens}")
        if self.max_tokens is not None:
            checks.append(f"max_tokens {self.max_tokens}")
        return checks

    @property
    def presplit(self) -> bool:
        return self.train_uri is not None
