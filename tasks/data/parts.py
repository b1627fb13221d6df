"""The parts of one dataset to prepare: each source with its role, mixing weight, format and columns,
and the content version that names the prepared output.

The version is a hash of the input bytes and every setting that changes the output (checks, split,
tokenizers), so the same input is prepared once and every later run reuses the committed splits.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from tasks.config.catalog import model_modality
from tasks.config.dataset import DatasetConfig
from tasks.contracts.prepare import PrepareSpec
from tasks.data.format_detection import detect_format
from tasks.data.plugins import kind_of
from tasks.data.sources import Source, SourceError, open_source
from tasks.data.token_counts import tokenizer_identity
from tasks.runtime.errors import StepError
from tasks.storage import store

PREP_VERSION = "3"  # bump when validation or split logic changes, so old versions are not reused


@dataclass
class Part:
    """One source of the dataset's rows, with how to read it and what it feeds."""

    source: Source
    role: str | None  # train/validation/test for pre-split inputs; None: split by ratio
    weight: float
    fmt: str
    columns: dict[str, str]


def cache_dir() -> Path:
    """Where remote sources (S3, Hugging Face) are downloaded once, keyed by their content: the same
    cache as the store's S3 mirror (`TUNERFLOW_CACHE_DIR`)."""
    return store.cache_root()


def plan_parts(dataset: DatasetConfig) -> list[Part]:
    if dataset.registered:
        raise StepError(
            f"dataset '{dataset.name}' still names registered dataset '{dataset.registered}'; "
            "validate_conf resolves it from the registry before preparation"
        )

    def part(uri: str, role: str | None = None, weight: float = 1.0, fmt: str = "", columns=None) -> Part:
        try:
            source = open_source(uri, cache_dir=cache_dir())
        except SourceError as error:
            raise StepError(f"dataset '{dataset.name}': {error}") from None
        return Part(
            source, role, weight, fmt or dataset.format, dataset.columns if columns is None else columns
        )

    if dataset.presplit:
        # Evaluation rows first: a training row equal to one of them is then the duplicate that goes.
        given = [
            ("validation", dataset.validation_uri),
            ("test", dataset.test_uri),
            ("train", dataset.train_uri),
        ]
        return [part(uri, role) for role, uri in given if uri]
    if dataset.sources:
        return [part(s.uri, None, s.weight, s.format, s.columns) for s in dataset.sources]
    return [part(dataset.uri)]


def ratios(job: PrepareSpec) -> tuple[int, int, int]:
    """An eval set (`scoring.eval_dataset`) is scored on every row: all of it is the test split."""
    return (0, 0, 100) if job.role == "eval" else job.dataset.ratios


def content_version(parts: list[Part], job: PrepareSpec) -> str:
    """A hash of the parts' bytes and every setting of `job` that changes the prepared rows. Settings are
    spelled as the planner has always stored them, so a stored spec names the version it always did."""
    dataset = job.dataset
    settings = dataset.model_dump(mode="json", exclude={"name", "max_drop_ratio"})
    if job.role == "eval":
        settings["role"] = "eval"
    # What training rows were decontaminated against is part of what the version holds.
    if job.eval_prompts:
        settings["eval_prompts"] = [prompt.model_dump(mode="json") for prompt in job.eval_prompts]
    if job.eval_sets:
        settings["eval_sets"] = [
            [definition.model_dump(mode="json"), [p.source.fingerprint for p in plan_parts(definition)]]
            for definition in job.eval_sets
        ]
    settings["v"] = PREP_VERSION
    settings["tokenizers"] = sorted({tokenizer_identity(entry) for entry in job.tokenizers})
    if any(model_modality(entry) == "vision" for entry in job.tokenizers):
        # Rows are counted with their image tokens since this key: a version prepared before, when rows
        # too long with them passed, is not reused (datasets prepared for text models keep their versions).
        settings["image_tokens"] = 1
    settings["parts"] = [[p.role, p.weight, p.fmt, p.columns, p.source.fingerprint] for p in parts]
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16]


def part_format(name: str, part: Part) -> str:
    """The part's format; `auto` is detected from its first parseable row."""
    if part.fmt != "auto":
        return part.fmt
    for shard in part.source.shards():
        for _, record in shard.records():
            if isinstance(record, dict):
                try:
                    return detect_format(record, part.columns)
                except ValueError as error:
                    raise StepError(f"dataset '{name}', {part.source.uri}: {error}") from None
    raise StepError(f"dataset '{name}': {part.source.uri} has no parseable row to detect the format from")


def rows_kind(name: str, formats: list[str]) -> str:
    """The one kind of rows (chat, text, preference) the dataset's formats produce."""
    kinds = sorted({kind_of(fmt) for fmt in formats})
    if len(kinds) > 1:
        raise StepError(f"dataset '{name}': its sources hold different kinds of rows ({', '.join(kinds)})")
    return kinds[0]
