"""Local files of a dataset source cut into picklable shards of raw rows, so a process pool can read a
large dataset in parallel.

`Source` holds sorted local files, a label per file for row ids and a content fingerprint;
`Source.shards()` cuts the files into `Shard`s, each shard's `records()` yields `(row id, dict | RowError)`
in file order, and the shards of a source, read one after the other, give exactly the rows of its files
read whole.

Row ids are `f"{label}:{number}"`: JSONL line numbers (from 1, blank lines counted but skipped), JSON
list indexes (from 0), CSV rows under the header (from 1) and Parquet rows (from 1). A bad row is a
`RowError`; a file that cannot be read at all is a `SourceError`. Malformed input is handled in
`tasks.data.raw_rows`: a row over `max_row_bytes` is dropped as `too_long` before it is parsed (JSONL
lines are read in chunks, so memory is bounded by the shard, not the longest line), a row nested too deep
as `too_deep`, and a UTF-8 BOM is skipped in every format.
"""

from __future__ import annotations

import csv
import hashlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tasks.data.raw_rows import (
    MalformedFile,
    json_list_rows,
    jsonl_lines,
    parse_line,
    skip_line,
    too_long,
    value_bytes,
)
from tasks.data.rows import DEFAULT_MAX_ROW_BYTES, RowError

BLOCK = 1 << 20  # read size for hashing and newline counting: large enough that bytes.count dominates
KINDS = {".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "json", ".csv": "csv", ".parquet": "parquet"}
PARQUET_BATCH = 1024


class SourceError(ValueError):
    """A dataset URI or file that cannot be read; the message names it and says what to do."""


def file_kind(path: str | Path) -> str:
    """The reader for a file, by suffix; unknown suffixes are read as JSONL."""
    return KINDS.get(Path(path).suffix.lower(), "jsonl")


# --------------------------------------------------------------------------------------------- shards


@dataclass(frozen=True)
class Shard:
    """A slice of one file, small enough to send to a worker process.

    jsonl: the lines whose first byte lies in [start, stop) (stop None: to the end); `first_number` is
    the line number of the first of them. parquet: row groups [start, stop); `first_number` is the
    1-based row number of the first row. json and csv are always whole files (CSV cells may hold
    newlines, a JSON list is one value): their ids are list indexes from 0 and rows from 1.
    """

    label: str
    kind: str
    path: str
    start: int = 0
    stop: int | None = None
    first_number: int = 1

    def records(self, max_row_bytes: int = DEFAULT_MAX_ROW_BYTES) -> Iterator[tuple[str, Any]]:
        """(row id, record or RowError) in file order; rows over max_row_bytes are `too_long` RowErrors."""
        if self.kind not in READERS:
            raise SourceError(f"{self.label}: unknown file kind '{self.kind}' (known: {', '.join(READERS)})")
        return READERS[self.kind](self, max_row_bytes)


def _jsonl_records(shard: Shard, max_row_bytes: int) -> Iterator[tuple[str, Any]]:
    with open(shard.path, "rb") as handle:
        position = shard.start
        if shard.start > 0:
            handle.seek(shard.start - 1)
            if handle.read(1) != b"\n":
                # start is inside a line: that line belongs to the shard holding its first byte.
                position += skip_line(handle)[0]  # in chunks: the line may be huge
        number = shard.first_number
        for raw in jsonl_lines(handle, shard.stop, position, max_row_bytes):
            row_id = f"{shard.label}:{number}"
            number += 1
            if isinstance(raw, RowError):
                yield row_id, raw
            elif raw.strip():
                yield row_id, parse_line(raw)


def _json_records(shard: Shard, max_row_bytes: int) -> Iterator[tuple[str, Any]]:
    try:
        # utf-8-sig: a BOM before the list is not a parse error. The text is held whole (a JSON list is
        # one value); its elements are parsed one at a time, so a bad one drops only its row.
        text = Path(shard.path).read_text(encoding="utf-8-sig")
        for index, record in enumerate(json_list_rows(text, max_row_bytes)):
            yield f"{shard.label}:{index}", record
    except UnicodeDecodeError as error:
        raise SourceError(
            f"{shard.label}: not a JSON list of rows ({error}); save it as UTF-8 JSON or as JSONL"
        ) from None
    except MalformedFile as error:
        raise SourceError(f"{shard.label}: {error}; fix the file or save the rows as JSONL") from None


def _csv_records(shard: Shard, max_row_bytes: int) -> Iterator[tuple[str, Any]]:
    # A cell over max_row_bytes (often an unclosed quote swallowing the rest of the file) is refused
    # with the file's name instead of being read whole into memory. The limit counts characters.
    csv.field_size_limit(max_row_bytes)
    number = 0
    try:
        with open(shard.path, encoding="utf-8-sig", newline="") as handle:
            reader = csv.DictReader(handle)
            if not reader.fieldnames:
                raise SourceError(f"{shard.label}: a .csv dataset needs a header row naming the columns")
            for number, row in enumerate(reader, start=1):
                if None in row:
                    yield f"{shard.label}:{number}", RowError("unparseable", "more cells than header columns")
                else:
                    yield f"{shard.label}:{number}", row
    except UnicodeDecodeError:
        raise SourceError(f"{shard.label}: not UTF-8 (after row {number}); save the CSV as UTF-8") from None
    except csv.Error as error:
        raise SourceError(
            f"{shard.label}: not a readable CSV file after row {number} ({error}); check its quoting (an "
            f"unclosed quote runs to the end of the file), or raise max_row_bytes ({max_row_bytes}) if a "
            "cell really is that long"
        ) from None


def _open_parquet(path: str | Path, label: str) -> Any:
    import pyarrow.parquet as pq

    try:
        return pq.ParquetFile(path)
    except Exception as error:  # pyarrow raises its own ArrowInvalid/OSError family
        raise SourceError(f"{label}: not a readable Parquet file ({error}); re-export it") from None


def _parquet_records(shard: Shard, max_row_bytes: int) -> Iterator[tuple[str, Any]]:
    parquet = _open_parquet(shard.path, shard.label)
    stop = parquet.metadata.num_row_groups if shard.stop is None else shard.stop
    groups = list(range(shard.start, stop))
    if not groups:
        return  # iter_batches reads every group when given an empty list
    batches = parquet.iter_batches(batch_size=PARQUET_BATCH, row_groups=groups)
    number = shard.first_number
    while True:
        try:
            batch = next(batches)
        except StopIteration:
            return
        except Exception as error:  # a corrupt page surfaces only when it is decoded
            raise SourceError(f"{shard.label}: not a readable Parquet file ({error}); re-export it") from None
        # A batch smaller than the cap cannot hold a row over it: only big batches are measured row by row.
        check = batch.nbytes > max_row_bytes
        for record in batch.to_pylist():
            size = value_bytes(record) if check else 0
            yield f"{shard.label}:{number}", too_long(size, max_row_bytes) if size > max_row_bytes else record
            number += 1


READERS = {"jsonl": _jsonl_records, "json": _json_records, "csv": _csv_records, "parquet": _parquet_records}


# ----------------------------------------------------------------------------- hashing and line index


@dataclass(frozen=True)
class _LineIndex:
    """Newlines before every BLOCK boundary: counts[i] is the number of b"\\n" in bytes [0, i * BLOCK)."""

    size: int
    counts: list[int]


def _hash_file(path: Path, index_lines: bool) -> tuple[str, _LineIndex | None]:
    """sha256 of the bytes, and for JSONL the line index in the same pass (the file is read once)."""
    digest = hashlib.sha256()
    counts = [0]
    size = 0
    with open(path, "rb") as handle:
        while block := handle.read(BLOCK):
            digest.update(block)
            size += len(block)
            if index_lines:
                counts.append(counts[-1] + block.count(b"\n"))
    return digest.hexdigest(), _LineIndex(size, counts) if index_lines else None


def _line_index(path: Path) -> _LineIndex:
    counts = [0]
    size = 0
    with open(path, "rb") as handle:
        while block := handle.read(BLOCK):
            size += len(block)
            counts.append(counts[-1] + block.count(b"\n"))
    return _LineIndex(size, counts)


def _next_line_start(handle: Any, offset: int, size: int) -> int:
    """The first line start at or after `offset` (size when there is none)."""
    handle.seek(offset - 1)
    position = offset - 1
    while block := handle.read(BLOCK):
        found = block.find(b"\n")
        if found >= 0:
            return position + found + 1
        position += len(block)
    return size


def _newlines_before(handle: Any, offset: int, index: _LineIndex) -> int:
    block = offset // BLOCK
    handle.seek(block * BLOCK)
    return index.counts[block] + handle.read(offset - block * BLOCK).count(b"\n")


def _jsonl_shards(path: Path, label: str, target_bytes: int, index: _LineIndex | None) -> list[Shard]:
    size = path.stat().st_size
    if size <= target_bytes:
        return [Shard(label, "jsonl", str(path))]
    if index is None or index.size != size:
        index = _line_index(path)
    cuts = [0]
    numbers = [1]
    with open(path, "rb") as handle:
        while cuts[-1] + target_bytes < size:
            cut = _next_line_start(handle, cuts[-1] + target_bytes, size)
            if cut >= size:
                break
            cuts.append(cut)
            numbers.append(_newlines_before(handle, cut, index) + 1)
    stops: list[int | None] = [*cuts[1:], None]
    return [Shard(label, "jsonl", str(path), a, b, n) for a, b, n in zip(cuts, stops, numbers, strict=True)]


def _parquet_shards(path: Path, label: str, target_bytes: int) -> list[Shard]:
    metadata = _open_parquet(path, label).metadata
    if path.stat().st_size <= target_bytes or metadata.num_row_groups <= 1:
        return [Shard(label, "parquet", str(path))]
    shards: list[Shard] = []
    start, first, rows, size = 0, 1, 0, 0
    for group in range(metadata.num_row_groups):
        meta = metadata.row_group(group)
        rows += meta.num_rows
        size += sum(meta.column(c).total_compressed_size for c in range(meta.num_columns))
        if size >= target_bytes:
            shards.append(Shard(label, "parquet", str(path), start, group + 1, first))
            start, first, size = group + 1, 1 + rows, 0
    if start < metadata.num_row_groups or not shards:
        shards.append(Shard(label, "parquet", str(path), start, None, first))
    else:
        shards[-1] = Shard(label, "parquet", str(path), shards[-1].start, None, shards[-1].first_number)
    return shards


@dataclass
class Source:
    """Local files for a dataset URI, with the labels used in row ids and a content fingerprint."""

    uri: str
    files: list[Path]
    labels: list[str]
    fingerprint: str
    # Newline counts from the fingerprint pass, so cutting a big JSONL file needs no second full read.
    _line_indexes: dict[Path, _LineIndex] = field(default_factory=dict, init=False, repr=False, compare=False)

    def shards(self, target_bytes: int = 64 << 20) -> list[Shard]:
        """JSONL cut at line starts and Parquet at row groups into pieces of about target_bytes."""
        if target_bytes < 1:
            raise ValueError("target_bytes must be positive")
        shards: list[Shard] = []
        for path, label in zip(self.files, self.labels, strict=True):
            kind = file_kind(path)
            if kind == "jsonl":
                shards += _jsonl_shards(path, label, target_bytes, self._line_indexes.get(path))
            elif kind == "parquet":
                shards += _parquet_shards(path, label, target_bytes)
            else:
                shards.append(Shard(label, kind, str(path)))
        return shards

    def records(self, max_row_bytes: int = DEFAULT_MAX_ROW_BYTES) -> Iterator[tuple[str, Any]]:
        """Every row of every file in order, in this process."""
        for path, label in zip(self.files, self.labels, strict=True):
            yield from Shard(label, file_kind(path), str(path)).records(max_row_bytes)


def fingerprint(parts: list[tuple[str, str]]) -> str:
    digest = hashlib.sha256()
    for label, content in parts:
        digest.update(f"{label}\0{content}\n".encode())
    return digest.hexdigest()


def file_source(uri: str, files: list[Path], labels: list[str]) -> Source:
    """A Source over local files: each hashed once, for the fingerprint and (JSONL) the line index."""
    parts: list[tuple[str, str]] = []
    indexes: dict[Path, _LineIndex] = {}
    for path, label in zip(files, labels, strict=True):
        sha, index = _hash_file(path, file_kind(path) == "jsonl")
        parts.append((label, sha))
        if index is not None:
            indexes[path] = index
    source = Source(uri=uri, files=files, labels=labels, fingerprint=fingerprint(parts))
    source._line_indexes.update(indexes)
    return source
