"""What the specs of one matrix job's steps share (train and evaluate): where the job's output goes,
which job it is, and the data and base model it works on."""

from __future__ import annotations

from pydantic import Field

from tasks.config.catalog import CatalogEntry
from tasks.contracts.base import Contract
from tasks.contracts.prepare import PreparedDataset


class JobSpec(Contract):
    """The fields every spec of a job's step holds; each step's spec adds its own."""

    store_root: str = Field(description="Root URI of the artifact store.")
    job_id: str = Field(description="Store key of the job (`champion` for the champion's scoring).")
    label: str = Field(description="`dataset|model|hparams`: the job's row label on the leaderboard.")
    output: str = Field(description="Prefix the step writes and commits.")
    dataset: PreparedDataset = Field(description="The job's prepared dataset.")
    model: CatalogEntry = Field(description="The base model.")
    eval_set: PreparedDataset | None = Field(None, description="The experiment's shared eval set, if any.")
