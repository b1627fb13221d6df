"""The Datasets pages' data: registered datasets and datasets prepared by runs without a registration,
and one dataset's definition, revisions and prepared versions.

Read through the dataset registry's functions (`tasks.data.dataset_registry`) and the store's
`datasets/<name>/<version>` prefixes; a name is answered for only when the store lists it, so a name
from a URL never reaches a store path unchecked.
"""

from __future__ import annotations

import re
from typing import Any

from pydantic import BaseModel, Field

from tasks.config.base import SLUG
from tasks.data import dataset_registry
from tasks.storage import store


class RegisteredDataset(BaseModel):
    """A registered dataset on the Datasets list."""

    name: str = Field(description="The registered name.")
    revision: int = Field(description="The latest revision of its definition.")
    updated_at: str | None = Field(None, description="When that revision was written.")
    source: str = Field(description="Where its rows come from, in a phrase.")
    format: str = Field(description="The row format (or each source's).")
    prepared_versions: int = Field(description="Committed prepared versions.")
    unfinished_versions: int = Field(description="Versions whose preparation failed or has not finished.")
    latest_version: str | None = Field(None, description="The newest committed version.")
    latest_counts: dict[str, int] | None = Field(None, description="Rows per split of that version.")


class PreparedOnly(BaseModel):
    """A dataset a run prepared from its own definition, never registered."""

    name: str = Field(description="The dataset's name in the run's conf.")
    prepared_versions: int = Field(description="Committed prepared versions.")
    latest_version: str | None = Field(None, description="The newest committed version.")
    latest_counts: dict[str, int] | None = Field(None, description="Rows per split of that version.")
    latest_at: str | None = Field(None, description="When the newest version was committed.")


class DatasetsIndex(BaseModel):
    """The Datasets page."""

    registered: list[RegisteredDataset] = Field(description="Registered datasets, by name.")
    prepared_only: list[PreparedOnly] = Field(description="Prepared but unregistered datasets, by name.")


class Revision(BaseModel):
    """One revision of a registered definition."""

    revision: int = Field(description="Its number (1 = the registration).")
    created_at: str | None = Field(None, description="When it was written.")
    note: str | None = Field(None, description="The note given with it.")
    changed: list[str] = Field(default_factory=list, description="Fields changed from the revision before.")


class PreparedVersion(BaseModel):
    """One prepared version of a dataset."""

    version: str = Field(description="The content version (a hash of the inputs and settings).")
    state: str = Field(description="committed, failed or incomplete.")
    at: str | None = Field(None, description="When it was committed (or last written, if not).")
    counts: dict[str, int] = Field(default_factory=dict, description="Rows per split.")
    dropped: int | None = Field(None, description="Rows dropped in all.")
    error: str | None = Field(None, description="Why its preparation failed.")


class DatasetPage(BaseModel):
    """One dataset: its definition when registered, and every prepared version."""

    name: str = Field(description="The dataset's name.")
    registered: bool = Field(description="It has a registered definition.")
    definition: dict[str, Any] | None = Field(None, description="The current definition's settings.")
    source: str | None = Field(None, description="Where its rows come from, in a phrase.")
    revisions: list[Revision] = Field(default_factory=list, description="Revisions, newest first.")
    versions: list[PreparedVersion] = Field(description="Prepared versions, newest first.")


def _prepared_names(root: str) -> list[str]:
    return [n for n in store.list_dir(store.join(root, "datasets")) if re.match(SLUG, n)]


def known(root: str, name: str) -> bool:
    """Whether the store has a registration or a prepared version of `name`."""
    return name in dataset_registry.registered_names(root) or name in _prepared_names(root)


def _committed(versions: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [v for v in versions if v["ready"]]


def datasets_index(root: str) -> DatasetsIndex:
    registered = [RegisteredDataset.model_validate(row) for row in dataset_registry.list_datasets(root)]
    names = {row.name for row in registered}
    prepared_only = []
    for name in _prepared_names(root):
        if name in names:
            continue
        ready = _committed(dataset_registry.prepared_versions(root, name))
        prepared_only.append(
            PreparedOnly(
                name=name,
                prepared_versions=len(ready),
                latest_version=ready[0]["version"] if ready else None,
                latest_counts=ready[0]["result"].get("counts") if ready else None,
                latest_at=ready[0]["committed_at"] if ready else None,
            )
        )
    return DatasetsIndex(registered=registered, prepared_only=prepared_only)


def _revisions(records: list[dict[str, Any]]) -> list[Revision]:
    rows = []
    for before, record in zip([None, *records], records, strict=False):
        rows.append(
            Revision(
                revision=record["revision"],
                created_at=record.get("created_at"),
                note=record.get("note") or None,
                changed=dataset_registry.changed_fields(before, record) if before else [],
            )
        )
    return rows[::-1]


def prepared_version(entry: dict[str, Any]) -> PreparedVersion:
    result = entry.get("result") or {}
    return PreparedVersion(
        version=entry["version"],
        state=entry["state"],
        at=entry.get("committed_at") or entry.get("modified_at"),
        counts=result.get("counts") or {},
        dropped=result.get("dropped"),
        error=entry.get("error"),
    )


def dataset_page(root: str, name: str) -> DatasetPage | None:
    """One dataset; None when the store has neither a registration nor a prepared version of it."""
    registered = name in dataset_registry.registered_names(root)
    if not registered and name not in _prepared_names(root):
        return None
    current = dataset_registry.get(root, name) if registered else None
    return DatasetPage(
        name=name,
        registered=registered,
        definition=dataset_registry.definition_of(current) if current else None,
        source=dataset_registry.source_summary(current) if current else None,
        revisions=_revisions(dataset_registry.history(root, name)) if registered else [],
        versions=[prepared_version(v) for v in dataset_registry.prepared_versions(root, name)],
    )
