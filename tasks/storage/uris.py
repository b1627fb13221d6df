"""Store URIs: joining, slugs, schemes, local paths and the fixed local mirror of remote ones.

The only module that reads a URI's scheme; everything else asks it (or a backend) instead. On a remote
store every URI has a deterministic local mirror, `<cache>/s3/<bucket>/<key>` (cache =
`$TUNERFLOW_CACHE_DIR`, default `~/.cache/tunerflow`), so a retry on the same machine and every step
reading the same input share one copy.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

from tasks.storage.errors import UnsupportedScheme

DEFAULT_ROOT_ENV = "TUNERFLOW_STORE"
CACHE_ENV = "TUNERFLOW_CACHE_DIR"
LOCAL_SCHEMES = ("", "file")
REMOTE_SCHEMES = ("s3",)


def default_root() -> str:
    return os.environ.get(DEFAULT_ROOT_ENV) or (Path.home() / ".tunerflow" / "store").as_uri()


def join(uri: str, *parts: str) -> str:
    return "/".join([uri.rstrip("/"), *(p.strip("/") for p in parts if p)])


def slug(text: str, max_len: int = 80) -> str:
    """A key-safe rendering of free text such as an Airflow run_id."""
    cleaned = re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-._")
    return cleaned[:max_len] or "x"


def scheme(uri: str) -> str:
    """'' for a plain path (a name with a colon but no `://` included), else the URI's scheme;
    UnsupportedScheme when no backend serves it."""
    match = re.match(r"^([A-Za-z][A-Za-z0-9+.-]*)://", str(uri))
    found = match.group(1).lower() if match else ""
    if found not in LOCAL_SCHEMES + REMOTE_SCHEMES:
        raise UnsupportedScheme(
            f"no storage backend for '{found}://' URIs ('{uri}'); use a local path, file:// or s3://"
        )
    return found


def is_s3(uri: str) -> bool:
    return urlparse(str(uri)).scheme == "s3"


def is_local(uri: str) -> bool:
    """Whether `uri` is a path on this machine (a plain path or file://) rather than a remote object;
    UnsupportedScheme for a scheme no backend serves."""
    return scheme(uri) in LOCAL_SCHEMES


def split_bucket(uri: str) -> tuple[str, str]:
    """(bucket, key) of an s3:// URI; the key has no leading slash and may be empty (the bucket root)."""
    parsed = urlparse(uri)
    if parsed.scheme != "s3" or not parsed.netloc:
        raise ValueError(f"'{uri}' is not an s3://bucket/key URI")
    return parsed.netloc, parsed.path.lstrip("/")


def local_path(uri: str) -> Path:
    """The filesystem path of a file:// URI or a plain path. An s3:// URI has none: write under
    `local_dir(prefix)` and `commit`, read through `fetch(uri)`."""
    found = urlparse(str(uri)).scheme if "://" in str(uri) else ""
    if found in LOCAL_SCHEMES:
        # Path.as_uri() percent-encodes (a space is %20), so a file:// URI's path is decoded back.
        return Path(unquote(urlparse(str(uri)).path) if found else uri)
    raise ValueError(
        f"'{uri}' is not a local path: use store.fetch() to read it or store.local_dir() + store.commit() "
        "to write it"
    )


def local_path_or_none(uri: str) -> Path | None:
    """The filesystem path `uri` names, or None for a remote object or a scheme no backend serves
    (what a check of which local files a conf reads needs)."""
    try:
        local = is_local(uri)
    except UnsupportedScheme:
        return None
    return local_path(uri) if local else None


def to_uri(path: str | Path) -> str:
    return Path(path).resolve().as_uri()


def cache_root() -> Path:
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "tunerflow")


def mirror(uri: str, cache: Path | None = None) -> Path:
    """Where the local copy of an s3:// URI lives, under `cache` (default `cache_root()`)."""
    bucket, key = split_bucket(uri)
    parts = [p for p in key.split("/") if p]
    if any(p in (".", "..") for p in parts):
        raise ValueError(f"'{uri}': key '{key}' cannot be mirrored safely; rename the object")
    return (cache or cache_root()).joinpath("s3", bucket, *parts)


def local_root(uri: str) -> Path:
    """The local copy of `uri`: the path itself for a local URI, the mirror for a remote one."""
    return local_path(uri) if is_local(uri) else mirror(uri)


def local_dir(prefix: str) -> Path:
    """The local directory a step writes `prefix`'s files into (created): the path itself for file://,
    the mirror for s3:// (uploaded by `commit`)."""
    path = local_root(prefix)
    path.mkdir(parents=True, exist_ok=True)
    return path


ensure_dir = local_dir


def local_file(uri: str) -> Path:
    """The local path a step writes file `uri` to (its directory created); committed with its prefix."""
    parent, _, name = uri.rstrip("/").rpartition("/")
    return local_dir(parent) / name


def uri_of(path: str | Path) -> str:
    """The store URI of a local path: the s3:// URI a mirror path stands for, else a file:// URI."""
    resolved = Path(path).resolve()
    mirrors = (cache_root() / "s3").resolve()
    if resolved.is_relative_to(mirrors):
        return f"s3://{resolved.relative_to(mirrors).as_posix()}"
    return to_uri(resolved)


def dumps(payload: Any) -> str:
    """The one JSON rendering of everything the store writes (manifests, specs, registry records)."""
    return json.dumps(payload, indent=2, sort_keys=True, default=str)
