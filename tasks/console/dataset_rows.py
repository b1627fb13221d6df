"""A prepared version's rows as the Datasets pages show them: the rejected rows by id and reason only,
a page at a time, and one row opened on explicit request.

`rejected.jsonl` (written by the prepare step) holds `{"id", "reason", "detail", "source"}` per dropped
row and never the row's text; a kept row's text is in its split file. Both are read as a stream from a
local copy (the file itself on file://, the verified mirror on S3), stopping as soon as the page or the
row is found, so a large file is never held in memory. A dropped row's text is read from its source
(`source` indexes the validation report's sources) by `tasks.data.row_lookup`, which also says whether
that source is still the one that was prepared.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from itertools import islice
from typing import Any

from pydantic import BaseModel, Field

from tasks.data import row_lookup
from tasks.storage import layout, store

PAGE_SIZE = 50
REJECTED = "rejected.jsonl"
SPLITS = ("train", "validation", "test")


class RejectedRow(BaseModel):
    """A dropped row as the list shows it: which row and why, never what it holds."""

    id: str = Field(description="The row's id (`<source file>:<line>`).")
    reason: str = Field(description="The reason code it was dropped for.")


class RejectedPage(BaseModel):
    """One page of a version's rejected rows."""

    rows: list[RejectedRow] = Field(description="The rows on this page.")
    page: int = Field(description="This page's number (1 = first).")
    has_next: bool = Field(description="There are more rows after this page.")
    reason: str | None = Field(None, description="The reason the list is filtered to (None: every reason).")


class OpenedRow(BaseModel):
    """One row opened by id: why it was dropped, or the split that kept it, and its text when stored."""

    id: str = Field(description="The row's id.")
    rejected: bool = Field(description="The prepare step dropped it.")
    reason: str | None = Field(None, description="The reason code, when dropped.")
    detail: str | None = Field(None, description="What the check found, when dropped (may quote the row).")
    source: str | None = Field(None, description="The URI of the source it was read from, when known.")
    split: str | None = Field(None, description="The split holding it, when kept.")
    text: str | None = Field(
        None, description="The row as JSON: from its split when kept, from its source (now) when dropped."
    )
    source_state: str | None = Field(
        None, description="When dropped: same, changed, unverified or unreadable (`row_lookup.SourceRow`)."
    )
    source_note: str | None = Field(None, description="When dropped: where the text came from, in words.")


def _lines(uri: str) -> Iterator[dict[str, Any]]:
    """The JSON records of a JSON-lines file in the store; nothing when it does not exist."""
    try:
        handle = open(store.fetch_file(uri), encoding="utf-8")  # noqa: SIM115 (closed below)
    except FileNotFoundError:
        return
    with handle:
        for line in handle:
            if line.strip():
                yield json.loads(line)


def rejected_page(
    root: str, name: str, version: str, page: int = 1, reason: str | None = None
) -> RejectedPage:
    """Page `page` of the rejected rows (optionally those of one reason), id and reason only."""
    page = max(1, page)
    uri = store.join(layout.dataset_version(root, name, version), REJECTED)
    matching = (r for r in _lines(uri) if reason is None or r.get("reason") == reason)
    # One row past the page says whether there is a next one, without reading the rest of the file.
    found = list(islice(matching, (page - 1) * PAGE_SIZE, page * PAGE_SIZE + 1))
    rows = [RejectedRow(id=str(r.get("id")), reason=str(r.get("reason"))) for r in found[:PAGE_SIZE]]
    return RejectedPage(rows=rows, page=page, has_next=len(found) > PAGE_SIZE, reason=reason)


def _from_source(row_id: str, record: dict[str, Any], sources: list[dict[str, Any]]) -> OpenedRow:
    index = record.get("source")
    opened = OpenedRow(id=row_id, rejected=True, reason=record.get("reason"), detail=record.get("detail"))
    if not isinstance(index, int) or not 0 <= index < len(sources) or not sources[index].get("uri"):
        return opened.model_copy(update={"source_note": "the validation report names no source for this row"})
    source = sources[index]
    found = row_lookup.read_row(str(source["uri"]), row_id, source.get("fingerprint"), store.cache_root())
    return opened.model_copy(
        update={
            "source": str(source["uri"]),
            "text": found.text,
            "source_state": found.state,
            "source_note": found.message,
        }
    )


def open_row(
    root: str, name: str, version: str, row_id: str, sources: list[dict[str, Any]]
) -> OpenedRow | None:
    """The row `row_id` of a version: dropped, its reason and its text read from its source now; kept,
    the split holding it and its text. None when the version has no row of that id. `sources` are the
    validation report's (`uri`, `fingerprint`, ...), by index."""
    prefix = layout.dataset_version(root, name, version)
    for record in _lines(store.join(prefix, REJECTED)):
        if record.get("id") == row_id:
            return _from_source(row_id, record, sources)
    for split in SPLITS:
        for record in _lines(store.join(prefix, f"{split}.jsonl")):
            if record.get("id") == row_id:
                text = json.dumps(record, indent=2, ensure_ascii=False)
                return OpenedRow(id=row_id, rejected=False, split=split, text=text)
    return None
