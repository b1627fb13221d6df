"""A base model as a conf names it; `tasks.config.catalog` resolves it to a catalog entry."""

from __future__ import annotations

from pydantic import Field

from tasks.config.base import SlugStr, StrictModel


class ModelConfig(StrictModel):
    name: SlugStr = Field(description="Catalog name (include/configs/models.yaml) or your own short name.")
    uri: str | None = Field(
        None,
        description="Where the weights are when the model is not in the catalog: a local directory or "
        "file:// URI of a Hugging Face model (safetensors), or `hf:<hub id>`.",
    )
