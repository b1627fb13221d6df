"""The artifact store: a URI root under which every step writes, committed by a manifest written last.

`file://` is the embedded default. Keys come from (experiment, run, job), never from try numbers, so
a retried step lands in the same place and a committed step is skipped.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

MANIFEST = "manifest.json"
DEFAULT_ROOT_ENV = "TUNERFLOW_STORE"


def default_root() -> str:
    return os.environ.get(DEFAULT_ROOT_ENV) or (Path.home() / ".tunerflow" / "store").as_uri()


def join(uri: str, *parts: str) -> str:
    return "/".join([uri.rstrip("/"), *(p.strip("/") for p in parts if p)])


def slug(text: str, max_len: int = 80) -> str:
    """A key-safe rendering of free text such as an Airflow run_id."""
    cleaned = re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-._")
    return cleaned[:max_len] or "x"


def local_path(uri: str) -> Path:
    """The filesystem path of a file:// URI or a plain path."""
    parsed = urlparse(uri)
    if parsed.scheme in ("", "file"):
        return Path(parsed.path if parsed.scheme else uri)
    raise ValueError(f"'{uri}' is not a local path; only file:// store roots are supported in this build")


def to_uri(path: str | Path) -> str:
    return Path(path).resolve().as_uri()


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def write_json(uri: str, payload: Any) -> None:
    """Atomic write: readers never see a half-written JSON file."""
    path = local_path(uri)
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", dir=path.parent, delete=False, suffix=".tmp") as handle:
        json.dump(payload, handle, indent=2, sort_keys=True, default=str)
        tmp = handle.name
    os.replace(tmp, path)


def read_json(uri: str) -> Any:
    with open(local_path(uri)) as handle:
        return json.load(handle)


def exists(uri: str) -> bool:
    return local_path(uri).exists()


def is_committed(prefix: str) -> bool:
    return exists(join(prefix, MANIFEST))


def ensure_dir(uri: str) -> Path:
    path = local_path(uri)
    path.mkdir(parents=True, exist_ok=True)
    return path


def commit(prefix: str, result: dict[str, Any], skip: Iterable[str] = ()) -> dict[str, Any]:
    """Write manifest.json (every file under prefix with size and sha256) last, making the output visible."""
    root = local_path(prefix)
    skipped = {MANIFEST, *skip}
    files = {}
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root).as_posix()
        if path.is_file() and rel not in skipped and not rel.endswith(".tmp"):
            files[rel] = {"size": path.stat().st_size, "sha256": sha256_file(path)}
    manifest = {"files": files, "result": result}
    write_json(join(prefix, MANIFEST), manifest)
    return manifest


def committed_result(prefix: str) -> dict[str, Any] | None:
    if not is_committed(prefix):
        return None
    return read_json(join(prefix, MANIFEST))["result"]


def verify(prefix: str) -> list[str]:
    """Files whose sha256 no longer matches the manifest (empty when intact)."""
    manifest = read_json(join(prefix, MANIFEST))
    root = local_path(prefix)
    return [
        rel
        for rel, meta in manifest["files"].items()
        if not (root / rel).exists() or sha256_file(root / rel) != meta["sha256"]
    ]


def reset(prefix: str) -> None:
    """Drop an uncommitted (half-written) output before a retry rewrites it."""
    path = local_path(prefix)
    if path.exists() and not is_committed(prefix):
        shutil.rmtree(path)


def create_json(uri: str, payload: Any) -> None:
    """Write a JSON file that must not exist yet: FileExistsError when it does, so concurrent writers
    claiming the same key cannot both win (on S3 this is `PutObject(..., IfNoneMatch="*")`)."""
    path = local_path(uri)
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", dir=path.parent, delete=False, suffix=".tmp") as handle:
        json.dump(payload, handle, indent=2, sort_keys=True, default=str)
        tmp = handle.name
    try:
        # A hard link publishes the complete file, and fails instead of replacing an existing one.
        os.link(tmp, path)
    finally:
        os.unlink(tmp)


def list_dir(uri: str) -> list[str]:
    """Names directly under a prefix, sorted; empty when nothing is there."""
    path = local_path(uri)
    if not path.is_dir():
        return []
    return sorted(child.name for child in path.iterdir())


def modified_at(uri: str) -> str | None:
    """When a file or prefix was last written, as ISO-8601 UTC; None when it does not exist."""
    from datetime import UTC, datetime

    path = local_path(uri)
    if not path.exists():
        return None
    return datetime.fromtimestamp(path.stat().st_mtime, UTC).isoformat(timespec="seconds")


def remove(uri: str) -> bool:
    """Delete a file or everything under a prefix; False when nothing was there."""
    path = local_path(uri)
    if path.is_dir():
        shutil.rmtree(path)
        return True
    if path.exists():
        path.unlink()
        return True
    return False
