"""The commit protocol: a step writes its files under a prefix, then `commit()` writes `manifest.json`
(every file with its size and sha256, and the step's result) LAST. `is_committed(prefix)` is
"manifest.json exists"; a retry of an uncommitted output calls `reset(prefix)` first. Keys come from
(experiment, run, job), never from try numbers, so a retried step lands in the same place and a
committed step is skipped.

On a mirrored (remote) store:

- outputs: `local_dir(prefix)` is where a step writes; `commit(prefix, result)` uploads every file of
  the mirror, and only when every upload has succeeded puts `manifest.json`. An upload that fails leaves
  no manifest, so nothing is committed; objects of a failed try that the new manifest does not list are
  never read (`reset` removes them before the retry).
- inputs: `fetch(uri)` downloads what a committed manifest lists under `uri` into the mirror, skipping
  files already there with the right sha256 and checking every download against the manifest's sha256
  (a mismatch removes the bad copy and raises, naming the file and the prefix). On file:// it returns
  the path itself.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from tasks.storage import mirror
from tasks.storage.backend import backend_for, read_json, remove, write_json
from tasks.storage.errors import StoreError
from tasks.storage.uris import dumps, join, local_file, local_path, local_root

MANIFEST = "manifest.json"


def is_committed(prefix: str) -> bool:
    return backend_for(prefix).exists(join(prefix, MANIFEST))


def committed_result(prefix: str) -> dict[str, Any] | None:
    try:
        return read_json(join(prefix, MANIFEST))["result"]
    except FileNotFoundError:
        return None


def reset(prefix: str) -> None:
    """Drop an uncommitted (half-written) output before a retry rewrites it (on a remote store the
    objects a failed try uploaded and the local mirror)."""
    if not is_committed(prefix):
        remove(prefix)


def _listing(root: Path, skip: Iterable[str]) -> dict[str, Path]:
    skipped = {MANIFEST, *skip}
    found = {}
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root).as_posix()
        if path.is_file() and rel not in skipped and not rel.endswith(".tmp"):
            found[rel] = path
    return found


def commit(prefix: str, result: dict[str, Any], skip: Iterable[str] = ()) -> dict[str, Any]:
    """Write manifest.json (every file under prefix with size and sha256) last, making the output visible.

    On a remote store the files are those of `local_dir(prefix)`: uploaded first (multipart with per-part
    SHA-256 checksums for big ones), the manifest put only once every upload succeeded."""
    backend = backend_for(prefix)
    root = local_root(prefix)
    listing = _listing(root, skip) if root.is_dir() else {}
    files = {rel: {"size": p.stat().st_size, "sha256": mirror.sha256_file(p)} for rel, p in listing.items()}
    manifest = {"files": files, "result": result}
    backend.upload_files(prefix, listing)
    write_json(join(prefix, MANIFEST), manifest)
    if backend.mirrored:
        # The mirror is now a verified copy: a later fetch on this machine downloads nothing.
        (root / MANIFEST).write_text(dumps(manifest))
    return manifest


def publish_file(uri: str) -> None:
    """Make a file a step wrote to `local_file(uri)` readable in the store now, without committing its
    prefix (a refused step's report): uploaded to a remote store, already in place on file://."""
    parent, _, name = uri.rstrip("/").rpartition("/")
    backend_for(uri).upload_files(parent, {name: local_file(uri)})


def _committed_ancestor(uri: str) -> tuple[str, dict[str, Any]] | None:
    """The nearest prefix at or above `uri` (below the bucket) with a manifest, with the manifest."""
    prefix = uri.rstrip("/")
    while prefix.count("/") > 2:  # `<scheme>://<bucket>` is not a prefix anything commits
        try:
            return prefix, read_json(join(prefix, MANIFEST))
        except FileNotFoundError:
            prefix = prefix.rpartition("/")[0]
    return None


def fetch(uri: str) -> Path:
    """A local path holding `uri`'s committed content: the path itself for file://; on a remote store the
    mirror, with every file the manifest of `uri` (or of the committed prefix `uri` lies under) lists under
    it downloaded and checked against its sha256."""
    backend = backend_for(uri)
    if not backend.mirrored:
        return local_path(uri)
    found = _committed_ancestor(uri)
    if found is None:
        raise StoreError(
            f"'{uri}' is not committed (no {MANIFEST} at or above it): the step that writes it has not "
            "finished; run it (or retry it) first"
        )
    prefix, manifest = found
    sub = uri.rstrip("/")[len(prefix) + 1 :]
    wanted = {
        rel: meta
        for rel, meta in manifest["files"].items()
        if not sub or rel == sub or rel.startswith(f"{sub}/")
    }
    if sub and not wanted:
        raise StoreError(f"'{uri}' is not among the files committed under '{prefix}' ({MANIFEST})")
    backend.download_files(prefix, wanted)
    if not sub:
        root = local_root(prefix)
        root.mkdir(parents=True, exist_ok=True)
        (root / MANIFEST).write_text(dumps(manifest))
    return local_root(uri)


def fetch_file(uri: str) -> Path:
    """A local copy of one file: the path itself for file://; on a remote store the file in the mirror
    (verified against the manifest that lists it, else against the sha256 it was downloaded with)."""
    backend = backend_for(uri)
    if not backend.mirrored:
        return local_path(uri)
    try:
        return fetch(uri)
    except StoreError:
        return backend.local_copies(uri)[0][1]


def verify(prefix: str) -> list[str]:
    """Files whose stored bytes no longer match the manifest's sha256 (empty when intact). On a remote
    store the objects are read and hashed (nothing is written locally)."""
    backend = backend_for(prefix)
    manifest = read_json(join(prefix, MANIFEST))
    return [
        rel
        for rel, meta in manifest["files"].items()
        if backend.stored_sha256(join(prefix, rel)) != meta["sha256"]
    ]


def verify_local(prefix: str) -> list[str]:
    """Files of the local copy of a committed prefix that do not match its manifest (empty when intact):
    the path itself on file://, the mirror after a `fetch` (which repairs what it can) on a remote store."""
    root = fetch(prefix)
    manifest = read_json(join(prefix, MANIFEST))
    return [rel for rel, meta in manifest["files"].items() if not mirror.holds(root / rel, meta)]
