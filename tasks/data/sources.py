"""Dataset URIs to a `Source` (sorted local files, a label per file for row ids, a content fingerprint),
which `tasks.data.shards` cuts into picklable shards of raw rows.

`open_source(uri, cache_dir=...)` takes `builtin:<name>` (a file under include/data), `hf:` (see
`tasks.data.hub_source`) and anything the artifact store reads: a local path or glob, `file://`, or
`s3://<bucket>/<key or key glob>`. Which of those a URI is, and how its files become local (a remote
object is copied into the store's mirror under `cache_dir`, checked by sha256, and downloaded again only
when it changed), is the store's business (`store.local_copies`). Globs are sorted, `**` recursive for
local paths, and a file's label is its path below the pattern's fixed directory, so files of the same name
in different directories keep unique ids.
"""

from __future__ import annotations

from pathlib import Path

from tasks.config.catalog import data_dir
from tasks.config.form import builtin_datasets
from tasks.data.hub_source import hf_source
from tasks.data.shards import Shard, Source, SourceError, file_kind, file_source
from tasks.storage import store

__all__ = ["Shard", "Source", "SourceError", "file_kind", "open_source"]


def open_source(uri: str, *, cache_dir: Path) -> Source:
    """Resolve a dataset URI to local files (downloading into cache_dir where needed)."""
    if uri.startswith("builtin:"):
        return _builtin_source(uri)
    if uri.startswith("hf:"):
        return hf_source(uri, Path(cache_dir))
    return _store_source(uri, Path(cache_dir))


def _builtin_source(uri: str) -> Source:
    name = uri.removeprefix("builtin:")
    known = builtin_datasets()
    if name not in known:
        raise SourceError(f"dataset uri '{uri}': no builtin dataset of that name (known: {', '.join(known)})")
    path = data_dir() / f"{name}.jsonl"
    return file_source(uri, [path], [path.name])


def _store_source(uri: str, cache_dir: Path) -> Source:
    try:
        found = store.local_copies(uri, cache_dir)
    except store.UnsupportedScheme:
        raise SourceError(
            f"dataset uri '{uri}': unsupported scheme; use a local path, file://, s3://, hf: or builtin:"
        ) from None
    except (store.StoreError, OSError, ValueError) as error:
        raise SourceError(f"dataset uri '{uri}': {error}") from None
    return file_source(uri, [path for _, path in found], [label for label, _ in found])
