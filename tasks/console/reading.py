"""Reading a run's files for a page: whole small files in one request each, missing ones as None, many
files side by side (on S3 every read is a round trip), one file per job through one listing
(`per_job`), and JSON lines parsed only where a page needs them.

Pages never write to the store; on S3, `per_job` keeps verified copies in the local mirror, as every
reader of the store does.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from tasks.storage import store

# Reads in flight at once when a page needs one file per job (curves, answers).
PARALLEL_READS = 16
T = TypeVar("T")
R = TypeVar("R")
MISSING = (FileNotFoundError, IsADirectoryError, NotADirectoryError)


def read_bytes(uri: str | None) -> bytes | None:
    """The stored bytes, or None when there is no such file."""
    if not uri:
        return None
    try:
        return store.backend_for(uri).read_bytes(uri)
    except MISSING:
        return None


def json_of(data: bytes | None) -> Any:
    """Parsed JSON, or None for no bytes or bytes that are not JSON (a file being written)."""
    try:
        return json.loads(data) if data is not None else None
    except ValueError:
        return None


def read_json(uri: str | None) -> Any:
    """A JSON file's content, or None when it is missing or unreadable (a half-finished run)."""
    return json_of(read_bytes(uri))


def side_by_side(call: Callable[[T], R], items: list[T]) -> list[R]:
    """`call` of every item, in order, several at a time."""
    if len(items) <= 1:
        return [call(item) for item in items]
    with ThreadPoolExecutor(max_workers=min(PARALLEL_READS, len(items))) as pool:
        return list(pool.map(call, items))


def read_many(uris: list[str | None]) -> list[bytes | None]:
    """`read_bytes` of every URI, in order, several at a time."""
    return side_by_side(read_bytes, uris)


def per_job(run_prefix: str, path: str) -> dict[str, bytes]:
    """`jobs/<job>/<path>` of every job of a run, by job id. One listing finds them all and on S3 a
    file is downloaded only when it changed since the mirror's copy, so a page of 100 jobs costs one
    listing, not 100 requests, once it has been opened."""
    try:
        found = store.local_copies(store.join(run_prefix, "jobs", "*", path))
    except MISSING:
        return {}
    suffix = "/" + path
    return {name.removesuffix(suffix): file.read_bytes() for name, file in found if name.endswith(suffix)}


def lines_of(data: bytes | None) -> list[bytes]:
    """The non-blank lines of a JSON-lines file, unparsed."""
    return [line for line in (data or b"").splitlines() if line.strip()]


def parse_all(lines: list[bytes]) -> list[dict[str, Any]]:
    """Many JSON-lines records at once: one decode of them all as a JSON array (a call per line costs
    more than the parsing itself on a page of 100 jobs), line by line only when one is unparsable."""
    try:
        records = json.loads(b"[" + b",".join(lines) + b"]")
    except ValueError:
        return [parse(line) for line in lines]
    return [record if isinstance(record, dict) else {} for record in records]


def parse(line: bytes) -> dict[str, Any]:
    """One JSON-lines record; an unparsable line (a file cut short) is an empty record."""
    try:
        record = json.loads(line)
    except ValueError:
        return {}
    return record if isinstance(record, dict) else {}
