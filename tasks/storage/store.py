"""The artifact store: a URI root under which every step writes, committed by a manifest written last.

`file://` is the embedded default; `s3://bucket/prefix` (AWS, MinIO) goes through boto3. This module is
the one import the rest of the tree needs; the pieces live beside it:

- `tasks.storage.uris`: join, slug, local paths and the local mirror of remote URIs;
- `tasks.storage.backend`: the `Backend` interface, `backend_for(uri)` and the small-file calls
  (`read_json`, `write_json`, `create_json` = an exclusive create, `exists`, `list_dir`, ...), with
  `tasks.storage.file_backend` and `tasks.storage.s3_backend` behind it;
- `tasks.storage.manifests`: commit / fetch / verify (the commit protocol);
- `tasks.storage.mirror`: the sha256 check every local copy of a remote object passes;
- `tasks.storage.shared`: `build_once`.
"""

from __future__ import annotations

from tasks.storage.backend import (
    Backend,
    backend_for,
    create_json,
    exists,
    list_dir,
    local_copies,
    located_copies,
    modified_at,
    read_json,
    remove,
    write_json,
)
from tasks.storage.errors import MissingBucket, NoSpace, StoreError, StoreUnavailable, UnsupportedScheme
from tasks.storage.manifests import (
    MANIFEST,
    commit,
    committed_result,
    fetch,
    fetch_file,
    is_committed,
    publish_file,
    reset,
    verify,
    verify_local,
)
from tasks.storage.mirror import sha256_file
from tasks.storage.s3_backend import PART_MB_ENV, transfer_config
from tasks.storage.shared import CLAIM_STALE_S, build_once
from tasks.storage.uris import (
    CACHE_ENV,
    DEFAULT_ROOT_ENV,
    cache_root,
    default_root,
    ensure_dir,
    is_local,
    is_s3,
    join,
    local_dir,
    local_file,
    local_path,
    local_path_or_none,
    mirror,
    slug,
    to_uri,
    uri_of,
)

__all__ = [
    "CACHE_ENV",
    "CLAIM_STALE_S",
    "DEFAULT_ROOT_ENV",
    "MANIFEST",
    "PART_MB_ENV",
    "Backend",
    "MissingBucket",
    "NoSpace",
    "StoreError",
    "StoreUnavailable",
    "UnsupportedScheme",
    "backend_for",
    "build_once",
    "cache_root",
    "commit",
    "committed_result",
    "create_json",
    "default_root",
    "ensure_dir",
    "exists",
    "fetch",
    "fetch_file",
    "is_committed",
    "is_local",
    "is_s3",
    "join",
    "list_dir",
    "local_copies",
    "local_dir",
    "local_file",
    "local_path",
    "local_path_or_none",
    "located_copies",
    "mirror",
    "modified_at",
    "publish_file",
    "read_json",
    "remove",
    "reset",
    "sha256_file",
    "slug",
    "to_uri",
    "transfer_config",
    "uri_of",
    "verify",
    "verify_local",
    "write_json",
]
