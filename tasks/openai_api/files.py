"""Uploaded files: the checks a JSONL file passes, where it is stored, and its dataset registration.

Layout under `<root>/openai_api/files/<file id>/`: `content.jsonl` (the bytes as uploaded), then
`file.json` (the File object plus `kind`, `format` and `uri`), written last: a file without it was never
accepted and is not listed. An accepted training file is also registered in the dataset registry under
its id (`tasks.data.dataset_registry`), so it shows on the Datasets page and other experiments can use it
(`{"name": ..., "registered": "file-..."}`).

A file's rows are one of two kinds, judged from the first row and then required of every row: `chat`
(`{"messages": [...]}`, OpenAI's supervised rows; format `messages`) or `preference` (OpenAI's DPO rows,
`input` / `preferred_output` / `non_preferred_output`; format `openai_preference`). Each row is converted
with the project's own converter, so a row the prepare step would drop is refused here, naming its line.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import time
from typing import Any

from tasks.data import dataset_registry
from tasks.data.formats import convert
from tasks.data.rows import RowError
from tasks.openai_api.objects import ApiError, FileObject, not_found
from tasks.storage import store

PURPOSE = "fine-tune"
RESULTS_PURPOSE = "fine-tune-results"
MAX_MB_ENV = "TUNERFLOW_OPENAI_MAX_FILE_MB"
DEFAULT_MAX_MB = 512
# kind -> (the format the dataset is read as, the key its first row is recognised by)
KINDS = {"chat": ("messages", "messages"), "preference": ("openai_preference", "preferred_output")}
META = "file.json"
FILE_ID = re.compile(r"^file-[a-z0-9-]{1,80}$")
CONTENT = "content.jsonl"


def max_bytes() -> int:
    """The largest file accepted: `TUNERFLOW_OPENAI_MAX_FILE_MB` MiB (512 by default)."""
    return int(float(os.environ.get(MAX_MB_ENV) or DEFAULT_MAX_MB) * (1 << 20))


def files_prefix(root: str) -> str:
    return store.join(root, "openai_api", "files")


def file_prefix(root: str, file_id: str) -> str:
    return store.join(files_prefix(root), file_id)


def new_id() -> str:
    return f"{dataset_registry.UPLOAD_PREFIX}{secrets.token_hex(12)}"


def _kind_of(row: dict[str, Any]) -> str:
    for kind, (_, key) in KINDS.items():
        if key in row:
            return kind
    raise ApiError(
        "file: line 1 is neither a chat row (`messages`) nor a DPO row (`input`, `preferred_output`, "
        f"`non_preferred_output`); it has keys {sorted(row)[:10]}",
        param="file",
        code="invalid_file_format",
    )


def check_jsonl(data: bytes) -> tuple[str, int]:
    """(the kind of rows, how many) of an uploaded JSONL file; ApiError naming the first bad line."""

    def refuse(line: int, why: str) -> ApiError:
        return ApiError(f"file: line {line} {why}", param="file", code="invalid_file_format")

    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise ApiError(f"file: not UTF-8 text ({error})", param="file", code="invalid_file_format") from None
    kind, rows = None, 0
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as error:
            raise refuse(number, f"is not JSON: {error.msg}") from None
        if not isinstance(row, dict):
            raise refuse(number, f"is a JSON {type(row).__name__}, not an object")
        kind = kind or _kind_of(row)
        try:
            convert(row, KINDS[kind][0])
        except RowError as error:
            raise refuse(number, f"is not a valid {kind} row ({error.code}: {error.detail})") from None
        rows += 1
    if kind is None:
        raise ApiError("file: the file holds no rows", param="file", code="invalid_file_format")
    return kind, rows


def _public(meta: dict[str, Any]) -> FileObject:
    return FileObject.model_validate({k: v for k, v in meta.items() if k in FileObject.model_fields})


def upload(root: str, filename: str, purpose: str, data: bytes) -> FileObject:
    """Check, store and register an uploaded file; its File object."""
    if purpose != PURPOSE:
        raise ApiError(f"purpose: '{purpose}' is not supported; use '{PURPOSE}'", param="purpose")
    if len(data) > max_bytes():
        raise ApiError(
            f"file: {len(data)} bytes is over this deployment's limit of {max_bytes()} ({MAX_MB_ENV})",
            param="file",
            code="file_too_large",
        )
    kind, rows = check_jsonl(data)
    file_id = new_id()
    prefix = file_prefix(root, file_id)
    uri = store.join(prefix, CONTENT)
    store.backend_for(uri).write_bytes(uri, data)
    fmt = KINDS[kind][0]
    try:
        dataset_registry.create(
            root, {"name": file_id, "uri": uri, "format": fmt}, note=f"uploaded as '{filename}' (OpenAI API)"
        )
    except dataset_registry.DatasetRegistryError as error:
        store.remove(prefix)
        problem = f"file: cannot be registered as a dataset: {error}"
        raise ApiError(problem, param="file", status=500) from None
    meta = {
        **FileObject(
            id=file_id, bytes=len(data), created_at=int(time.time()), filename=filename, purpose=purpose
        ).model_dump(mode="json"),
        "kind": kind,
        "format": fmt,
        "rows": rows,
        "uri": uri,
    }
    store.create_json(store.join(prefix, META), meta)
    return _public(meta)


def record(root: str, file_id: str, param: str | None = None) -> dict[str, Any]:
    """A file's stored record (File object, kind, format, uri); 404 ApiError when unknown."""
    uri = store.join(file_prefix(root, file_id), META)
    if not FILE_ID.match(file_id) or not store.exists(uri):
        raise not_found("file", file_id, param)
    return store.read_json(uri)


def get(root: str, file_id: str) -> FileObject:
    return _public(record(root, file_id))


def listing(root: str, purpose: str | None = None) -> list[FileObject]:
    """Every accepted file, newest first."""
    found = []
    for name in store.list_dir(files_prefix(root)):
        uri = store.join(file_prefix(root, name), META)
        if store.exists(uri):
            found.append(store.read_json(uri))
    found = [f for f in found if purpose is None or f["purpose"] == purpose]
    return [_public(f) for f in sorted(found, key=lambda f: (f["created_at"], f["id"]), reverse=True)]


def content(root: str, file_id: str) -> bytes:
    """The bytes of a file (an upload, or a job's metrics for a results file)."""
    uri = record(root, file_id)["uri"]
    return store.backend_for(uri).read_bytes(uri)


def results_file(root: str, job_id: str, metrics_uri: str) -> str:
    """The id of a job's results file (its training metrics.jsonl), recorded once; idempotent."""
    file_id = f"file-{job_id.removeprefix('ftjob-')}-results"
    uri = store.join(file_prefix(root, file_id), META)
    if not store.exists(uri):
        size = len(store.backend_for(metrics_uri).read_bytes(metrics_uri))
        meta = {
            **FileObject(
                id=file_id,
                bytes=size,
                created_at=int(time.time()),
                filename=f"{job_id}-metrics.jsonl",
                purpose=RESULTS_PURPOSE,
            ).model_dump(mode="json"),
            "kind": "results",
            "uri": metrics_uri,
        }
        # Another request may have recorded it first: the same record.
        with contextlib.suppress(FileExistsError):
            store.create_json(uri, meta)
    return file_id
