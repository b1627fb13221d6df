"""Dataset URIs to picklable shards of raw rows, so a process pool can read a large dataset in parallel.

`open_source(uri, cache_dir=...)` resolves a URI (local path or glob, `file://`, `builtin:`, `s3://`,
`hf:`) to sorted local files, a label per file for row ids and a content fingerprint. `Source.shards()`
cuts the files into `Shard`s; each shard's `records()` yields `(row id, dict | RowError)` in file order,
and the shards of a source, read one after the other, give exactly the rows of its files read whole.

Row ids are `f"{label}:{number}"`: JSONL line numbers (from 1, blank lines counted but skipped), JSON
list indexes (from 0), CSV rows under the header (from 1) and Parquet rows (from 1). A bad row is a
`RowError`; a file that cannot be read at all is a `SourceError`.
"""

from __future__ import annotations

import fnmatch
import glob
import hashlib
import json
import os
import re
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote

from tasks.config.catalog import data_dir
from tasks.data.rows import RowError
from tasks.storage.s3 import MISSING_CODES, error_code

BLOCK = 1 << 20  # read size for hashing and newline counting: large enough that bytes.count dominates
WILDCARDS = "*?["
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

    def records(self) -> Iterator[tuple[str, Any]]:
        if self.kind not in READERS:
            raise SourceError(f"{self.label}: unknown file kind '{self.kind}' (known: {', '.join(READERS)})")
        return READERS[self.kind](self)


def _jsonl_records(shard: Shard) -> Iterator[tuple[str, Any]]:
    with open(shard.path, "rb") as handle:
        position = shard.start
        if shard.start > 0:
            handle.seek(shard.start - 1)
            if handle.read(1) != b"\n":
                # start is inside a line: that line belongs to the shard holding its first byte.
                position += len(handle.readline())
        number = shard.first_number
        for raw in handle:
            if shard.stop is not None and position >= shard.stop:
                return
            position += len(raw)
            row_id = f"{shard.label}:{number}"
            number += 1
            if not raw.strip():
                continue
            try:
                yield row_id, json.loads(raw.decode("utf-8"))
            except UnicodeDecodeError:
                yield row_id, RowError("not_utf8")
            except json.JSONDecodeError:
                yield row_id, RowError("unparseable")


def _json_records(shard: Shard) -> Iterator[tuple[str, Any]]:
    try:
        records = json.loads(Path(shard.path).read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise SourceError(
            f"{shard.label}: not a JSON list of rows ({error}); save it as UTF-8 JSON or as JSONL"
        ) from None
    if not isinstance(records, list):
        raise SourceError(
            f"{shard.label}: a .json dataset must hold a list of rows, found {type(records).__name__}; "
            "wrap the rows in a list or save them as JSONL"
        )
    for index, record in enumerate(records):
        yield f"{shard.label}:{index}", record


def _csv_records(shard: Shard) -> Iterator[tuple[str, Any]]:
    import csv

    csv.field_size_limit(2**31 - 1)  # long documents are normal in training data
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
            f"{shard.label}: not a readable CSV file after row {number} ({error}); check its quoting"
        ) from None


def _open_parquet(path: str | Path, label: str) -> Any:
    import pyarrow.parquet as pq

    try:
        return pq.ParquetFile(path)
    except Exception as error:  # pyarrow raises its own ArrowInvalid/OSError family
        raise SourceError(f"{label}: not a readable Parquet file ({error}); re-export it") from None


def _parquet_records(shard: Shard) -> Iterator[tuple[str, Any]]:
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
        for record in batch.to_pylist():
            yield f"{shard.label}:{number}", record
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


# ------------------------------------------------------------------------------------------- sources


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

    def records(self) -> Iterator[tuple[str, Any]]:
        """Every row of every file in order, in this process."""
        for path, label in zip(self.files, self.labels, strict=True):
            yield from Shard(label, file_kind(path), str(path)).records()


def _fingerprint(parts: list[tuple[str, str]]) -> str:
    digest = hashlib.sha256()
    for label, content in parts:
        digest.update(f"{label}\0{content}\n".encode())
    return digest.hexdigest()


def _file_source(uri: str, files: list[Path], labels: list[str]) -> Source:
    parts: list[tuple[str, str]] = []
    indexes: dict[Path, _LineIndex] = {}
    for path, label in zip(files, labels, strict=True):
        sha, index = _hash_file(path, file_kind(path) == "jsonl")
        parts.append((label, sha))
        if index is not None:
            indexes[path] = index
    source = Source(uri=uri, files=files, labels=labels, fingerprint=_fingerprint(parts))
    source._line_indexes.update(indexes)
    return source


def open_source(uri: str, *, cache_dir: Path) -> Source:
    """Resolve a dataset URI to local files (downloading into cache_dir where needed)."""
    if uri.startswith("builtin:"):
        return _builtin_source(uri)
    if uri.startswith("s3://"):
        return _s3_source(uri, Path(cache_dir))
    if uri.startswith("hf:"):
        return _hf_source(uri, Path(cache_dir))
    if re.match(r"^[A-Za-z][A-Za-z0-9+.-]*://", uri) and not uri.startswith("file://"):
        raise SourceError(
            f"dataset uri '{uri}': unsupported scheme; use a local path, file://, s3://, hf: or builtin:"
        )
    return _local_source(uri)


def _builtin_source(uri: str) -> Source:
    name = uri.removeprefix("builtin:")
    known = sorted(p.stem for p in data_dir().glob("*.jsonl"))
    if name not in known:
        raise SourceError(f"dataset uri '{uri}': no builtin dataset of that name (known: {', '.join(known)})")
    path = data_dir() / f"{name}.jsonl"
    return _file_source(uri, [path], [path.name])


# ------------------------------------------------------------------------------------ local and globs


def _local_pattern(uri: str) -> str:
    """The filesystem path or pattern of a plain path or file:// URI (a '?' stays a wildcard)."""
    if not uri.startswith("file://"):
        return uri
    rest = uri.removeprefix("file://")
    if rest.startswith("localhost/"):
        rest = rest.removeprefix("localhost")
    return unquote(rest)


def _glob_base(pattern: str) -> Path:
    """The directory part of a pattern before its first component holding a wildcard."""
    fixed: list[str] = []
    for part in Path(pattern).parts:
        if any(c in part for c in WILDCARDS):
            break
        fixed.append(part)
    return Path(*fixed) if fixed else Path(".")


def _local_source(uri: str) -> Source:
    pattern = _local_pattern(uri)
    literal = Path(pattern)
    if literal.is_file() or not any(c in pattern for c in WILDCARDS):
        if literal.is_dir():
            raise SourceError(
                f"dataset uri '{uri}': {literal} is a directory; give a file or a glob such as "
                f"{literal / '*.jsonl'}"
            )
        if not literal.is_file():
            raise SourceError(f"dataset uri '{uri}': no such file {literal.absolute()}; check the path")
        return _file_source(uri, [literal], [literal.name])
    files = sorted(Path(p) for p in glob.glob(pattern, recursive=True) if Path(p).is_file())
    if not files:
        raise SourceError(
            f"dataset uri '{uri}': no file matches {Path(pattern).absolute()}; "
            "check the directory and the pattern"
        )
    base = _glob_base(pattern)
    # Relative to the fixed base dir so files of the same name in different directories keep unique ids.
    labels = [p.relative_to(base).as_posix() for p in files]
    return _file_source(uri, files, labels)


# ------------------------------------------------------------------------------------------------ S3


def s3_client() -> Any:
    """The project's S3 client (tasks.storage.s3): the store's connection, else boto3's own chain."""
    from tasks.storage import s3

    return s3.client()


def _error_code(error: Any) -> str:
    return error_code(error) or "unknown"


def _s3_cause(error: Exception, bucket: str) -> str:
    """A readable cause built from the error code and message only, so no credential value is echoed."""
    from botocore.exceptions import ClientError, NoCredentialsError

    if isinstance(error, NoCredentialsError):
        return "no credentials found; set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or an AWS profile)"
    if not isinstance(error, ClientError):
        return f"{type(error).__name__}: {error}"
    code = _error_code(error)
    message = str(error.response.get("Error", {}).get("Message", ""))
    if code == "NoSuchBucket":
        return f"no such bucket '{bucket}'"
    if code in MISSING_CODES:
        return "no such key"
    if code in ("AccessDenied", "403", "Forbidden"):
        return "access denied; check the credentials and the bucket policy"
    if code in ("InvalidAccessKeyId", "SignatureDoesNotMatch"):
        return f"the credentials were rejected ({code})"
    return f"{code}: {message}" if message else code


def _fixed_prefix(key: str) -> str:
    return re.split(r"[*?\[]", key, maxsplit=1)[0]


def _s3_objects(client: Any, bucket: str, key: str) -> list[tuple[str, str]]:
    """(key, ETag) of the objects a key or key glob names."""
    from botocore.exceptions import ClientError

    if not any(c in key for c in WILDCARDS):
        try:
            head = client.head_object(Bucket=bucket, Key=key)
        except ClientError as error:
            if _error_code(error) in MISSING_CODES:
                # HEAD answers a bare 404 for a missing key and a missing bucket alike: ask the bucket.
                try:
                    client.head_bucket(Bucket=bucket)
                except ClientError as bucket_error:
                    if _error_code(bucket_error) in MISSING_CODES:
                        bucket_error.response.setdefault("Error", {})["Code"] = "NoSuchBucket"
                    raise bucket_error from None
            raise
        return [(key, head["ETag"])]
    prefix = _fixed_prefix(key)
    found: list[tuple[str, str]] = []
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for item in page.get("Contents", []):
            if not item["Key"].endswith("/") and fnmatch.fnmatchcase(item["Key"], key):
                found.append((item["Key"], item["ETag"]))
    return sorted(found)


def _cache_path(cache_dir: Path, bucket: str, key: str, uri: str) -> Path:
    parts = [p for p in key.split("/") if p]
    if not parts or any(p in (".", "..") for p in parts):
        raise SourceError(f"dataset uri '{uri}': key '{key}' cannot be cached safely; rename the object")
    return cache_dir.joinpath("s3", bucket, *parts)


def _download(client: Any, bucket: str, key: str, target: Path) -> str:
    """Stream an object into target (temp file, then rename); returns the ETag of the bytes written."""
    target.parent.mkdir(parents=True, exist_ok=True)
    response = client.get_object(Bucket=bucket, Key=key)
    handle, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as out:
            for chunk in response["Body"].iter_chunks(BLOCK):
                out.write(chunk)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return response["ETag"]


def _etag_path(target: Path) -> Path:
    return target.with_name(f".{target.name}.etag")


def _fetch_cached(client: Any, bucket: str, key: str, etag: str, target: Path) -> None:
    marker = _etag_path(target)
    if target.is_file() and marker.is_file() and marker.read_text() == etag:
        return
    # Drop the marker first: a crash between rename and marker write must not pair old ETag and new bytes.
    marker.unlink(missing_ok=True)
    written = _download(client, bucket, key, target)
    tmp = marker.with_name(marker.name + ".tmp")
    tmp.write_text(written)
    os.replace(tmp, marker)


def _s3_source(uri: str, cache_dir: Path) -> Source:
    bucket, _, key = uri.removeprefix("s3://").partition("/")
    if not bucket or not key:
        raise SourceError(
            f"dataset uri '{uri}': expected s3://<bucket>/<key> or s3://<bucket>/<prefix>/*.jsonl"
        )
    try:
        from botocore.exceptions import BotoCoreError, ClientError
    except ImportError:
        raise SourceError(f"dataset uri '{uri}': s3:// needs boto3; pip install 'tunerflow[s3]'") from None
    try:
        client = s3_client()
        objects = _s3_objects(client, bucket, key)
        if not objects:
            raise SourceError(f"dataset uri '{uri}': no object in bucket '{bucket}' matches '{key}'")
        files = [_cache_path(cache_dir, bucket, name, uri) for name, _ in objects]
        for (name, etag), target in zip(objects, files, strict=True):
            _fetch_cached(client, bucket, name, etag, target)
    except (BotoCoreError, ClientError) as error:
        raise SourceError(
            f"dataset uri '{uri}': could not read from S3 ({_s3_cause(error, bucket)})"
        ) from None
    # Like local globs: keys relative to the last '/' before the first wildcard, so ids stay unique.
    fixed = _fixed_prefix(key)
    base = fixed[: fixed.rfind("/") + 1]
    return _file_source(uri, files, [name.removeprefix(base) for name, _ in objects])


# ------------------------------------------------------------------------------------ Hugging Face


def _parse_hf(spec: str) -> tuple[str, str | None, str]:
    """(name or directory, config, split) from `<name>[:<config>][@<split>]`."""
    body, at, split = spec.rpartition("@")
    if not at or "/" in split or not split:  # the '@' was part of a path
        body, split = spec, "train"
    if Path(body).is_dir():
        return body, None, split
    name, colon, config = body.rpartition(":")
    if colon and name and "/" not in config:
        return name, config or None, split
    return body, None, split


def _is_saved_dataset(path: Path) -> bool:
    return (path / "dataset_dict.json").is_file() or (path / "state.json").is_file()


def _hf_load(uri: str, name: str, config: str | None, split: str) -> Any:
    import datasets

    path = Path(name)
    if path.is_dir() and _is_saved_dataset(path):
        loaded = datasets.load_from_disk(str(path))
        if isinstance(loaded, datasets.DatasetDict):
            if split not in loaded:
                raise SourceError(
                    f"dataset uri '{uri}': no split '{split}' in {path} (splits: {', '.join(loaded)}); "
                    "add @<split> to the uri"
                )
            return loaded[split]
        return loaded
    try:
        return datasets.load_dataset(name, config, split=split)
    except Exception as error:  # the hub client, fsspec and the builders raise many unrelated types
        cause = f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}"[:500]
        if path.is_dir():
            raise SourceError(
                f"dataset uri '{uri}': could not load the local data directory {path} ({cause}); "
                "check its data files and split names"
            ) from None
        raise SourceError(
            f"dataset uri '{uri}': could not load from the Hugging Face Hub ({cause}); on a machine without "
            "hub access, save it with `save_to_disk` and use hf:<that dir>, or export it to JSONL/Parquet"
        ) from None


def _hf_source(uri: str, cache_dir: Path) -> Source:
    name, config, split = _parse_hf(uri.removeprefix("hf:"))
    if not name:
        raise SourceError(f"dataset uri '{uri}': expected hf:<name or dir>[:<config>][@<split>]")
    try:
        import datasets  # noqa: F401
    except ImportError:
        raise SourceError(
            f"dataset uri '{uri}': hf: needs the datasets package; pip install datasets"
        ) from None
    dataset = _hf_load(uri, name, config, split)
    # A local directory's absolute path differs between machines; its name keeps ids and fingerprint stable.
    shown = Path(name).resolve().name if Path(name).is_dir() else name
    label = f"{shown}@{split}"
    safe = re.sub(r"[^A-Za-z0-9._-]+", "-", f"{shown}-{config}" if config else shown).strip("-.") or "x"
    target = cache_dir / "hf" / safe / dataset._fingerprint / f"{split}.parquet"
    if not target.is_file():
        target.parent.mkdir(parents=True, exist_ok=True)
        handle, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{split}.", suffix=".tmp")
        os.close(handle)
        try:
            dataset.to_parquet(tmp)
            os.replace(tmp, target)
        finally:
            Path(tmp).unlink(missing_ok=True)
    return Source(
        uri=uri, files=[target], labels=[label], fingerprint=_fingerprint([(label, dataset._fingerprint)])
    )
