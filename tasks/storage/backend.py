"""One interface over the stores tunerflow writes to, and the small-file calls built on it.

`backend_for(uri)` picks the implementation from the URI's scheme (`tasks.storage.uris`): `FileBackend`
for plain paths and file://, `S3Backend` for s3://. Nothing outside `tasks.storage` asks which one it
got; the difference that matters to a caller (whether a prefix's local copy is the store itself or a
mirror to upload and download) is the backend's `mirrored`, used by `tasks.storage.manifests`.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any, Protocol

from tasks.storage.file_backend import WILDCARDS, FileBackend
from tasks.storage.s3_backend import S3Backend
from tasks.storage.uris import dumps, is_local, to_uri


class Backend(Protocol):
    """What every store provides. URIs are absolute (`<scheme>://...` or a plain path); a "prefix" is a
    directory-like URI whose files are the keys below it."""

    mirrored: bool  # the local copy of a prefix is a mirror (uploaded, downloaded), not the store itself

    def read_bytes(self, uri: str) -> bytes:
        """The stored bytes; FileNotFoundError when the key does not exist."""

    def read_tagged(self, uri: str) -> tuple[bytes, str] | None:
        """The stored bytes with a tag that changes whenever they do (ETag, sha256); None when absent."""

    def write_bytes(self, uri: str, data: bytes) -> None:
        """Replace atomically: a reader sees the old bytes or the new ones, never a mix."""

    def create_if_absent(self, uri: str, data: bytes) -> bool:
        """Write only if the key does not exist; False (nothing written) when it does."""

    def replace_if_unchanged(self, uri: str, data: bytes, tag: str) -> bool:
        """Write only while the stored tag is still `tag` (from `read_tagged`); False when it moved."""

    def exists(self, uri: str) -> bool:
        """A file exists, or (like a directory) something is stored under the prefix."""

    def list_names(self, uri: str) -> list[str]:
        """Names directly under a prefix (files and "directories"), sorted; empty when nothing is there."""

    def modified_at(self, uri: str) -> str | None:
        """When a file or prefix was last written, as ISO-8601 UTC; None when it does not exist."""

    def remove(self, uri: str) -> bool:
        """Delete a file or everything under a prefix (and its local mirror); False when nothing was there."""

    def upload_files(self, prefix: str, files: dict[str, Path]) -> None:
        """Store local files under `prefix` at their relative names, every transfer checked."""

    def download_files(self, prefix: str, files: dict[str, dict[str, Any]]) -> None:
        """Make `prefix`'s local copy hold the listed files ({rel: {"size", "sha256"}}), each verified."""

    def stored_sha256(self, uri: str) -> str | None:
        """The sha256 of the stored bytes, read from the store itself; None when the key is missing."""

    def local_copies(self, pattern: str, cache: Path | None = None) -> list[tuple[str, Path]]:
        """Local files for a key or glob, each with its name below the pattern's fixed part; a remote
        object is copied into the mirror under `cache` unless its copy is current."""


@cache
def _backend(local: bool) -> Backend:
    return FileBackend() if local else S3Backend()


def backend_for(uri: str) -> Backend:
    """The backend serving `uri`; UnsupportedScheme (a NotImplementedError) for an unknown scheme."""
    return _backend(is_local(uri))


# --- small JSON files --------------------------------------------------------------------------------


def write_json(uri: str, payload: Any) -> None:
    """Atomic write: readers never see a half-written JSON file (a PutObject is atomic on S3)."""
    backend_for(uri).write_bytes(uri, dumps(payload).encode())


def read_json(uri: str) -> Any:
    return json.loads(backend_for(uri).read_bytes(uri))


def create_json(uri: str, payload: Any) -> None:
    """Write a JSON file that must not exist yet: FileExistsError when it does, so concurrent writers
    claiming the same key cannot both win (on S3 this is `PutObject(..., IfNoneMatch="*")`)."""
    if not backend_for(uri).create_if_absent(uri, dumps(payload).encode()):
        raise FileExistsError(f"'{uri}' already exists")


def exists(uri: str) -> bool:
    return backend_for(uri).exists(uri)


def list_dir(uri: str) -> list[str]:
    return backend_for(uri).list_names(uri)


def modified_at(uri: str) -> str | None:
    return backend_for(uri).modified_at(uri)


def remove(uri: str) -> bool:
    return backend_for(uri).remove(uri)


def local_copies(pattern: str, cache: Path | None = None) -> list[tuple[str, Path]]:
    """Local files for a path, key or glob, each with its name below the pattern's fixed part: the files
    themselves on file://, copies in the mirror under `cache` (default `cache_root()`) on a remote store,
    downloaded only when the copy is not current. Raises FileNotFoundError / IsADirectoryError with a
    readable reason, StoreError when the store refuses."""
    return backend_for(pattern).local_copies(pattern, cache)


def located_copies(pattern: str, cache: Path | None = None) -> list[tuple[str, Path]]:
    """(URI, local file) of each file `local_copies` finds for a path, key or glob: the file's own
    `file://` URI on a local store, its object's URI on a remote one (the name below the pattern's fixed
    part, put back under it)."""
    copies = local_copies(pattern, cache)
    if is_local(pattern):
        return [(to_uri(path.resolve()), path) for _, path in copies]
    glob_at = min((pattern.find(c) for c in WILDCARDS if c in pattern), default=len(pattern))
    base = pattern[: pattern.rfind("/", 0, glob_at) + 1]
    return [(base + name, path) for name, path in copies]
