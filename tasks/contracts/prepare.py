"""prepare_dataset: its job spec, the prepared dataset it commits (which train and evaluate specs embed as
`dataset` and `eval_set`), and the planned entry XCom carries per dataset."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from tasks.config.catalog import CatalogEntry
from tasks.config.dataset import DatasetConfig
from tasks.contracts.base import Contract, OpenContract

DatasetKind = Literal["chat", "text", "preference", "unpaired", "vision"]


class EvalPrompt(Contract):
    """A prompt of the fixed eval questions, which training rows are decontaminated against."""

    id: str = Field(description="Row id naming its place in the conf, e.g. `eval_questions:0`.")
    text: str = Field(description="The prompt's text as the n-gram check reads it.")


class PrepareSpec(Contract):
    """What `python -m tasks.prepare_dataset` reads (written by `validate_conf`)."""

    step: Literal["prepare_dataset"] = Field("prepare_dataset", description="The step this spec is for.")
    store_root: str = Field(description="Root URI of the artifact store.")
    dataset: DatasetConfig = Field(description="The dataset definition, `max_tokens` filled in.")
    tokenizers: list[CatalogEntry] = Field(
        default_factory=list, description="One catalog entry per distinct tokenizer rows must fit."
    )
    role: Literal["train", "eval"] = Field(
        "train", description="`eval` for `scoring.eval_dataset`: every row goes to the test split."
    )
    eval_prompts: list[EvalPrompt] | None = Field(
        None, description="Prompts of `scoring.eval_questions` to decontaminate the training rows against."
    )
    eval_sets: list[DatasetConfig] | None = Field(
        None, description="`scoring.eval_dataset`'s definition, read to decontaminate against its prompts."
    )
    version: str | None = Field(None, description="Content hash, filled in by the step from its inputs.")
    output: str | None = Field(None, description="Output prefix, filled in by the step from the version.")


class PreparedDataset(OpenContract):
    """A committed dataset as steps read it: prepare_dataset's result, or the eval questions' set."""

    name: str = Field(description="The dataset's name (the experiment's label once planned).")
    uri: str = Field(description="Prefix holding `<split>.jsonl`.")
    kind: DatasetKind = Field(
        description="What its rows hold: chat, text, preference, unpaired (KTO's good/bad answers) or "
        "vision (chat rows with images)."
    )
    counts: dict[str, int] = Field(default_factory=dict, description="Rows per split.")
    version: str | None = Field(None, description="Content hash of the sources and settings.")
    format: str | None = Field(None, description="Source format the rows were read as, or `mixed`.")
    dropped: int | None = Field(None, description="Rows dropped in all.")
    drop_reasons: dict[str, int] | None = Field(None, description="Dropped rows per reason code.")


class PlannedDataset(Contract):
    """One dataset to prepare, as `validate_conf` returns it to XCom."""

    name: str = Field(description="The experiment's label for the dataset.")
    spec_uri: str = Field(description="URI of its PrepareSpec.")
    argv: list[str] = Field(description="The command both backends run.")
    role: Literal["train", "eval"] = Field("train", description="`eval` for the experiment's eval set.")
