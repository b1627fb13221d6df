"""Where a dataset's rows come from: a URI resolved to local files, cut into picklable shards that worker
processes read in parallel.

URIs: a local path or `file://` URI, or a glob over them (`**` recursive); `builtin:<name>` (include/data);
`s3://bucket/key` or an S3 glob, downloaded once into a cache keyed by ETag; `hf:<name or dir>[:<config>]
[@<split>]`, a Hugging Face dataset materialised once to Parquet. Row ids are `<label>:<number>`: JSONL
line numbers, JSON list indexes, CSV rows under the header and Parquet rows (1-based), so a rejected row
can be found in the user's own file.
"""

from __future__ import annotations

import fnmatch
import glob
import hashlib
import json
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tasks.data import RowError

BLOCK = 1 << 20
KINDS = {".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "json", ".csv": "csv", ".parquet": "parquet"}


class SourceError(ValueError):
    """A source that cannot be read as a whole; the message names it and says what to do."""


@dataclass(frozen=True)
class Shard:
    label: str
    kind: str
    path: str
    start: int = 0
    stop: int | None = None
    first_number: int = 1

    def records(self) -> Iterator[tuple[str, Any]]:
        reader = {"jsonl": _read_jsonl, "json": _read_json, "csv": _read_csv, "parquet": _read_parquet}
        yield from reader[self.kind](self)


@dataclass
class Source:
    uri: str
    files: list[Path]
    labels: list[str]
    fingerprint: str

    def shards(self, target_bytes: int = 64 << 20) -> list[Shard]:
        out: list[Shard] = []
        for path, label in zip(self.files, self.labels, strict=True):
            kind = KINDS.get(path.suffix.lower(), "jsonl")
            if kind == "jsonl":
                out += _jsonl_shards(path, label, target_bytes)
            elif kind == "parquet":
                out += _parquet_shards(path, label, target_bytes)
            else:
                out.append(Shard(label, kind, str(path)))
        return out


# ------------------------------------------------------------------------------------------------ readers


def _read_jsonl(shard: Shard) -> Iterator[tuple[str, Any]]:
    with open(shard.path, "rb") as handle:
        handle.seek(shard.start)
        position, number = shard.start, shard.first_number
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


def _read_json(shard: Shard) -> Iterator[tuple[str, Any]]:
    try:
        records = json.loads(Path(shard.path).read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise SourceError(f"{shard.label}: not a JSON list of rows ({error})") from None
    if not isinstance(records, list):
        raise SourceError(f"{shard.label}: a .json dataset must hold a list of rows")
    for index, record in enumerate(records):
        yield f"{shard.label}:{index}", record


def _read_csv(shard: Shard) -> Iterator[tuple[str, Any]]:
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
        raise SourceError(f"{shard.label}: not a readable CSV file after row {number} ({error})") from None


def _parquet_file(path: str, label: str):
    import pyarrow.parquet as pq

    try:
        return pq.ParquetFile(path)
    except Exception as error:  # pyarrow raises its own ArrowInvalid/OSError family
        raise SourceError(f"{label}: not a readable Parquet file ({error})") from None


def _read_parquet(shard: Shard) -> Iterator[tuple[str, Any]]:
    parquet = _parquet_file(shard.path, shard.label)
    stop = parquet.num_row_groups if shard.stop is None else shard.stop
    number = shard.first_number
    for batch in parquet.iter_batches(batch_size=1024, row_groups=list(range(shard.start, stop))):
        for record in batch.to_pylist():
            yield f"{shard.label}:{number}", record
            number += 1


# ------------------------------------------------------------------------------------------------ shards


def _jsonl_shards(path: Path, label: str, target_bytes: int) -> list[Shard]:
    """Byte ranges starting at line starts, each knowing the line number it starts at."""
    size = path.stat().st_size
    if size <= target_bytes:
        return [Shard(label, "jsonl", str(path))]
    shards, start, number = [], 0, 1
    with open(path, "rb") as handle:
        while start < size:
            handle.seek(min(start + target_bytes, size))
            if handle.tell() < size:
                handle.readline()  # finish the line the cut fell into
            stop = handle.tell()
            handle.seek(start)
            lines = _count_newlines(handle, stop - start)
            shards.append(Shard(label, "jsonl", str(path), start, stop, number))
            number += lines
            start = stop
    return shards


def _count_newlines(handle, length: int) -> int:
    count = 0
    while length > 0:
        block = handle.read(min(BLOCK, length))
        if not block:
            break
        count += block.count(b"\n")
        length -= len(block)
    return count


def _parquet_shards(path: Path, label: str, target_bytes: int) -> list[Shard]:
    parquet = _parquet_file(str(path), label)
    metadata = parquet.metadata
    shards, group, number = [], 0, 1
    while group < metadata.num_row_groups:
        first, size = group, 0
        while group < metadata.num_row_groups and (group == first or size < target_bytes):
            size += metadata.row_group(group).total_byte_size
            group += 1
        shards.append(Shard(label, "parquet", str(path), first, group, number))
        number += sum(metadata.row_group(g).num_rows for g in range(first, group))
    return shards or [Shard(label, "parquet", str(path), 0, 0, 1)]


# ------------------------------------------------------------------------------------------------ resolution


def _fingerprint(files: list[Path], labels: list[str]) -> str:
    from tasks.store import sha256_file

    digest = hashlib.sha256()
    for path, label in zip(files, labels, strict=True):
        digest.update(f"{label}\0{sha256_file(path)}\0".encode())
    return digest.hexdigest()


def _has_magic(text: str) -> bool:
    return any(c in text for c in "*?[")


def _fixed_base(pattern: str) -> str:
    """The directory part of a glob before its first wildcard."""
    parts = re.split(r"[*?\[]", pattern, maxsplit=1)[0]
    return parts.rsplit("/", 1)[0] if "/" in parts else ""


def _local(uri: str) -> tuple[list[Path], list[str]]:
    from tasks.store import local_path

    pattern = str(local_path(uri))
    if not _has_magic(pattern):
        path = Path(pattern)
        if not path.is_file():
            raise SourceError(f"dataset uri '{uri}': no such file {path}")
        return [path], [path.name]
    files = sorted(Path(p) for p in glob.glob(pattern, recursive=True) if Path(p).is_file())
    if not files:
        raise SourceError(f"dataset uri '{uri}': the pattern {pattern} matches no file")
    base = Path(_fixed_base(pattern) or ".")
    return files, [path.relative_to(base).as_posix() for path in files]


def _builtin(uri: str) -> tuple[list[Path], list[str]]:
    from tasks.catalog import data_dir

    path = data_dir() / f"{uri.removeprefix('builtin:')}.jsonl"
    if not path.exists():
        known = ", ".join(sorted(p.stem for p in data_dir().glob("*.jsonl")))
        raise SourceError(f"dataset uri '{uri}': no builtin dataset of that name (known: {known})")
    return [path], [path.name]


def open_source(uri: str, *, cache_dir: Path) -> Source:
    if uri.startswith("builtin:"):
        files, labels = _builtin(uri)
    elif uri.startswith("s3://"):
        files, labels = _s3(uri, cache_dir)
    elif uri.startswith("hf:"):
        return _hf(uri, cache_dir)
    else:
        files, labels = _local(uri)
    return Source(uri, files, labels, _fingerprint(files, labels))


# ------------------------------------------------------------------------------------------------ S3


def s3_client():
    """A boto3 S3 client from the standard AWS environment (AWS_ENDPOINT_URL for MinIO, keys, region)."""
    import boto3

    return boto3.client("s3")


def _s3_error(uri: str, error: Exception) -> SourceError:
    code = getattr(error, "response", {}).get("Error", {}).get("Code", type(error).__name__)
    hints = {
        "NoSuchBucket": "the bucket does not exist",
        "NoSuchKey": "the object does not exist",
        "404": "the object does not exist",
        "AccessDenied": "access denied; check the credentials' permissions",
        "403": "access denied; check the credentials' permissions",
        "NoCredentialsError": "no AWS credentials; set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or a profile",
        "EndpointConnectionError": "the S3 endpoint cannot be reached; check AWS_ENDPOINT_URL",
    }
    return SourceError(f"dataset uri '{uri}': {hints.get(code, code)}")


def _s3(uri: str, cache_dir: Path) -> tuple[list[Path], list[str]]:
    from botocore.exceptions import BotoCoreError, ClientError

    bucket, _, key = uri.removeprefix("s3://").partition("/")
    client = s3_client()
    try:
        if _has_magic(key):
            prefix = re.split(r"[*?\[]", key, maxsplit=1)[0]
            pages = client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
            objects = [
                (item["Key"], item["ETag"])
                for page in pages
                for item in page.get("Contents", [])
                if fnmatch.fnmatchcase(item["Key"], key)
            ]
            if not objects:
                raise SourceError(f"dataset uri '{uri}': no object matches the pattern")
        else:
            objects = [(key, client.head_object(Bucket=bucket, Key=key)["ETag"])]
        files = [_download(client, bucket, name, etag, cache_dir) for name, etag in sorted(objects)]
    except (ClientError, BotoCoreError) as error:
        raise _s3_error(uri, error) from None
    base = _fixed_base(key)
    labels = [name[len(base) :].lstrip("/") if base else name for name, _ in sorted(objects)]
    return files, labels


def _download(client, bucket: str, key: str, etag: str, cache_dir: Path) -> Path:
    """The object in the local cache, downloaded only when its ETag changed; never half-written."""
    target = cache_dir / "s3" / bucket / key
    marker = target.with_name(target.name + ".etag")
    if target.exists() and marker.exists() and marker.read_text() == etag:
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f".{target.name}.{os.getpid()}.part")
    client.download_file(bucket, key, str(partial))
    os.replace(partial, target)
    marker.write_text(etag)
    return target


# ------------------------------------------------------------------------------------------- Hugging Face


def _parse_hf(uri: str) -> tuple[str, str | None, str]:
    rest = uri.removeprefix("hf:")
    rest, _, split = rest.partition("@")
    if not Path(rest).exists() and rest.count(":") == 1:
        name, config = rest.split(":")
        return name, config, split or "train"
    return rest, None, split or "train"


def _hf(uri: str, cache_dir: Path) -> Source:
    name, config, split = _parse_hf(uri)
    dataset = _load_hf(uri, name, config, split)
    label = f"{Path(name).name if Path(name).exists() else name}@{split}"
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("_") or "dataset"
    target = cache_dir / "hf" / safe / dataset._fingerprint / f"{split}.parquet"
    if not target.exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(f".{target.name}.{os.getpid()}.part")
        dataset.to_parquet(str(partial))
        os.replace(partial, target)
    fingerprint = hashlib.sha256(f"{label}\0{dataset._fingerprint}".encode()).hexdigest()
    return Source(uri, [target], [label], fingerprint)


def _load_hf(uri: str, name: str, config: str | None, split: str):
    import datasets

    path = Path(name)
    try:
        if path.is_dir() and ((path / "dataset_dict.json").exists() or (path / "dataset_info.json").exists()):
            loaded = datasets.load_from_disk(str(path))
            if isinstance(loaded, datasets.DatasetDict):
                if split not in loaded:
                    raise SourceError(f"dataset uri '{uri}': no split '{split}' (has {', '.join(loaded)})")
                return loaded[split]
            return loaded
        return datasets.load_dataset(name, config, split=split)
    except SourceError:
        raise
    except (FileNotFoundError, ConnectionError, OSError, ValueError) as error:
        if path.exists():
            raise SourceError(
                f"dataset uri '{uri}': cannot load {path} as a Hugging Face dataset ({error})"
            ) from None
        raise SourceError(
            f"dataset uri '{uri}': could not load from the Hugging Face Hub "
            f"({type(error).__name__}: {error}); "
            "on a machine without hub access, save it with `save_to_disk` and use hf:<that dir>, or export "
            "it to JSONL/Parquet"
        ) from None
