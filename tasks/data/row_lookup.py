"""One row of a dataset source read again by its id. The prepare step keeps a dropped row's id and reason,
never its text, so a person who asks to see that row gets it from the source, as the source holds it now.

A row id is `<file label>:<number>` (`tasks.data.shards`: JSONL line numbers from 1, JSON list indexes
from 0, CSV and Parquet rows from 1). The source is opened as preparation opens it (`open_source`: a
builtin dataset is its file in include/data, an S3 object is copied into the store's mirror), cut into
shards of about `SEEK_BYTES` so that only the shard holding the row is parsed, and the row is read through
the same readers. Opening a source hashes its files as a stream, which also says whether it is still the
source that was prepared: its fingerprint is compared with the one the validation report recorded.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from tasks.data.raw_rows import jsonl_lines
from tasks.data.rows import DEFAULT_MAX_ROW_BYTES, RowError
from tasks.data.sources import Shard, SourceError, open_source

SEEK_BYTES = 4 << 20
State = Literal["same", "changed", "unverified", "unreadable"]


@dataclass(frozen=True)
class SourceRow:
    """What a source holds at a row id now, and whether the source is the one that was prepared.

    state: `same` (its fingerprint is the recorded one), `changed` (it is not: the row at this position
    may be another row), `unverified` (no fingerprint was recorded) or `unreadable` (the source cannot be
    opened now). text: the row as its reader gives it (JSON), or a JSONL line that does not parse as it
    is in the file; None when the source has no row at that position."""

    state: State
    text: str | None
    message: str


def read_row(uri: str, row_id: str, fingerprint: str | None, cache_dir: Path) -> SourceRow:
    """The row `row_id` of the source `uri` as it is now, checked against the recorded `fingerprint`."""
    label, _, number = row_id.rpartition(":")
    if not label or not number.isdigit():
        return SourceRow("unreadable", None, f"'{row_id}' is not a row id of the form <file>:<number>")
    try:
        source = open_source(uri, cache_dir=cache_dir)
        text = _row_text(source.shards(SEEK_BYTES), label, int(number))
    except (SourceError, OSError) as error:
        return SourceRow("unreadable", None, f"the source cannot be read now ({error})")
    if fingerprint is None:
        state: State = "unverified"
        message = "read from the source now; no fingerprint was recorded to tell whether it changed since"
    elif source.fingerprint == fingerprint:
        state, message = "same", "read from the source, unchanged since this version was prepared"
    else:
        state = "changed"
        message = (
            "the source changed since this version was prepared: the row now at this position may not be "
            "the one that was dropped"
        )
    if text is None:
        message = f"the source has no row {row_id} now; {message}"
    return SourceRow(state, text, message)


def _row_text(shards: list[Shard], label: str, number: int) -> str | None:
    mine = [shard for shard in shards if shard.label == label]
    if not mine:
        return None
    # The shard holding the row is the last one starting at or before it (JSON lists count from 0).
    before = [shard for shard in mine if shard.first_number <= number]
    holding = max(before, key=lambda shard: shard.first_number) if before else mine[0]
    wanted = f"{label}:{number}"
    for row_id, record in holding.records():
        if row_id == wanted:
            return _shown(holding, number, record)
    return None


def _shown(shard: Shard, number: int, record: Any) -> str | None:
    if not isinstance(record, RowError):
        return json.dumps(record, indent=2, ensure_ascii=False, default=str)
    # A line the reader could not parse is worth seeing exactly as it is; other kinds keep no raw form.
    return _raw_line(shard, number) if shard.kind == "jsonl" else None


def _raw_line(shard: Shard, number: int) -> str | None:
    with open(shard.path, "rb") as handle:
        handle.seek(shard.start)  # shards of a JSONL file start at a line start
        # A line at a time under the row cap: a line over it (too_long) is described, never held whole.
        lines = jsonl_lines(handle, None, shard.start, DEFAULT_MAX_ROW_BYTES)
        for line_number, raw in enumerate(lines, start=shard.first_number):
            if line_number == number:
                if isinstance(raw, RowError):
                    return f"(not shown: {raw.detail})"
                return raw.decode("utf-8", errors="replace").rstrip("\r\n")
    return None
