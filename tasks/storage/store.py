"""The artifact store: a URI root under which every step writes, committed by a manifest written last.

`file://` is the embedded default; `s3://bucket/prefix` (AWS, MinIO) goes through boto3 (`tasks.storage.s3`).
Keys come from (experiment, run, job), never from try numbers, so a retried step lands in the same place
and a committed step is skipped.

The commit protocol is the same on both: a step writes its files under a prefix, then `commit()` writes
`manifest.json` (every file with its size and sha256, and the step's result) LAST. `is_committed(prefix)`
is "manifest.json exists"; a retry of an uncommitted output calls `reset(prefix)` first.

S3 and local files. Steps need real files (models load from a directory, training writes into one), so
on S3 every prefix has a deterministic local mirror, `<cache>/s3/<bucket>/<key>` (cache =
`$TUNERFLOW_CACHE_DIR`, default `~/.cache/tunerflow`):

- outputs: `local_dir(prefix)` is where a step writes; `commit(prefix, result)` uploads every file of the
  mirror (boto3's transfer manager: multipart above `$TUNERFLOW_S3_PART_MB` MiB, default 64, each part
  carrying a SHA-256 checksum that S3 verifies), and only when every upload has succeeded puts
  `manifest.json`. An upload that fails leaves no manifest, so nothing is committed; a multipart upload
  that fails is aborted by the transfer manager, and objects of a failed try that the new manifest
  does not list are never read (`reset` removes them before the retry).
- inputs: `fetch(uri)` downloads what a committed manifest lists under `uri` into the mirror, skipping
  files already there with the right sha256 and checking every download against the manifest's
  sha256 (a mismatch removes the bad copy and raises, naming the file and the prefix). On `file://`
  it returns the path itself.

Small JSON files (job specs, error.json, registry records) are read and written directly
(`read_json`, `write_json`, `create_json` = PutObject with IfNoneMatch="*").
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

log = logging.getLogger("tunerflow.store")

MANIFEST = "manifest.json"
DEFAULT_ROOT_ENV = "TUNERFLOW_STORE"
CACHE_ENV = "TUNERFLOW_CACHE_DIR"
PART_MB_ENV = "TUNERFLOW_S3_PART_MB"
DEFAULT_PART_MB = 64
MIN_PART_MB = 5  # S3's smallest multipart part (all but the last)
DELETE_BATCH = 1000  # DeleteObjects' limit


class StoreError(RuntimeError):
    """An artifact cannot be read as committed: not committed, or a file does not match its sha256."""


def default_root() -> str:
    return os.environ.get(DEFAULT_ROOT_ENV) or (Path.home() / ".tunerflow" / "store").as_uri()


def join(uri: str, *parts: str) -> str:
    return "/".join([uri.rstrip("/"), *(p.strip("/") for p in parts if p)])


def slug(text: str, max_len: int = 80) -> str:
    """A key-safe rendering of free text such as an Airflow run_id."""
    cleaned = re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-._")
    return cleaned[:max_len] or "x"


def is_s3(uri: str) -> bool:
    return urlparse(str(uri)).scheme == "s3"


def local_path(uri: str) -> Path:
    """The filesystem path of a file:// URI or a plain path. An s3:// URI has none: write under
    `local_dir(prefix)` and `commit`, read through `fetch(uri)`."""
    parsed = urlparse(str(uri))
    if parsed.scheme in ("", "file"):
        return Path(parsed.path if parsed.scheme else uri)
    raise ValueError(
        f"'{uri}' is not a local path: use store.fetch() to read it or store.local_dir() + store.commit() "
        "to write it"
    )


def to_uri(path: str | Path) -> str:
    return Path(path).resolve().as_uri()


def cache_root() -> Path:
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "tunerflow")


def mirror(uri: str) -> Path:
    """Where the local copy of an s3:// URI lives (deterministic, so a retry on the same machine and every
    step reading the same input share it)."""
    from tasks.storage import s3

    bucket, key = s3.split(uri)
    return cache_root() / "s3" / bucket / key.strip("/")


def local_dir(prefix: str) -> Path:
    """The local directory a step writes `prefix`'s files into (created): the path itself for file://,
    the mirror for s3:// (uploaded by `commit`)."""
    path = mirror(prefix) if is_s3(prefix) else local_path(prefix)
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


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def _dumps(payload: Any) -> str:
    return json.dumps(payload, indent=2, sort_keys=True, default=str)


# --- S3 primitives --------------------------------------------------------------------------------


def _client() -> Any:
    from tasks.storage import s3

    return s3.client()


def _missing(error: Exception) -> bool:
    from tasks.storage import s3

    return s3.is_missing(error)


def _dir_key(key: str) -> str:
    """`key/`, so that a prefix never matches a sibling that merely starts with the same letters."""
    return f"{key.rstrip('/')}/" if key.strip("/") else ""


def _objects(client: Any, bucket: str, prefix: str) -> Iterator[dict[str, Any]]:
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        yield from page.get("Contents", [])


def _head(client: Any, bucket: str, key: str) -> dict[str, Any] | None:
    from botocore.exceptions import ClientError

    try:
        return client.head_object(Bucket=bucket, Key=key)
    except ClientError as error:
        if _missing(error):
            return None
        raise


def _get_bytes(uri: str) -> bytes:
    from botocore.exceptions import ClientError

    from tasks.storage import s3

    bucket, key = s3.split(uri)
    try:
        return _client().get_object(Bucket=bucket, Key=key)["Body"].read()
    except ClientError as error:
        if _missing(error):
            raise FileNotFoundError(f"'{uri}' does not exist") from None
        raise


def transfer_config() -> Any:
    """Multipart above one part size: parts of $TUNERFLOW_S3_PART_MB MiB (at least S3's 5 MiB)."""
    from boto3.s3.transfer import TransferConfig

    part = max(float(os.environ.get(PART_MB_ENV) or DEFAULT_PART_MB), MIN_PART_MB)
    size = int(part * 1024 * 1024)
    return TransferConfig(multipart_threshold=size, multipart_chunksize=size, max_concurrency=8)


# --- small files ----------------------------------------------------------------------------------


def write_json(uri: str, payload: Any) -> None:
    """Atomic write: readers never see a half-written JSON file (a PutObject is atomic on S3)."""
    if is_s3(uri):
        from tasks.storage import s3

        bucket, key = s3.split(uri)
        _client().put_object(
            Bucket=bucket, Key=key, Body=_dumps(payload).encode(), ContentType="application/json"
        )
        return
    path = local_path(uri)
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", dir=path.parent, delete=False, suffix=".tmp") as handle:
        handle.write(_dumps(payload))
        tmp = handle.name
    os.replace(tmp, path)


def read_json(uri: str) -> Any:
    if is_s3(uri):
        return json.loads(_get_bytes(uri))
    with open(local_path(uri)) as handle:
        return json.load(handle)


def exists(uri: str) -> bool:
    """A file exists, or (like a directory) something is stored under the prefix."""
    if not is_s3(uri):
        return local_path(uri).exists()
    from tasks.storage import s3

    bucket, key = s3.split(uri)
    client = _client()
    if key and _head(client, bucket, key) is not None:
        return True
    page = client.list_objects_v2(Bucket=bucket, Prefix=_dir_key(key), MaxKeys=1)
    return bool(page.get("Contents"))


def is_committed(prefix: str) -> bool:
    manifest = join(prefix, MANIFEST)
    if is_s3(manifest):
        from tasks.storage import s3

        bucket, key = s3.split(manifest)
        return _head(_client(), bucket, key) is not None
    return local_path(manifest).exists()


def committed_result(prefix: str) -> dict[str, Any] | None:
    try:
        return read_json(join(prefix, MANIFEST))["result"]
    except FileNotFoundError:
        return None


def create_json(uri: str, payload: Any) -> None:
    """Write a JSON file that must not exist yet: FileExistsError when it does, so concurrent writers
    claiming the same key cannot both win (on S3 this is `PutObject(..., IfNoneMatch="*")`)."""
    if is_s3(uri):
        from botocore.exceptions import ClientError

        from tasks.storage import s3

        bucket, key = s3.split(uri)
        try:
            _client().put_object(
                Bucket=bucket,
                Key=key,
                Body=_dumps(payload).encode(),
                ContentType="application/json",
                IfNoneMatch="*",
            )
        except ClientError as error:
            # 409: another conditional write to the same key was in flight; it wins, as a 412 would say.
            if s3.lost_race(error):
                raise FileExistsError(f"'{uri}' already exists") from None
            raise
        return
    path = local_path(uri)
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", dir=path.parent, delete=False, suffix=".tmp") as handle:
        handle.write(_dumps(payload))
        tmp = handle.name
    try:
        # A hard link publishes the complete file, and fails instead of replacing an existing one.
        os.link(tmp, path)
    finally:
        os.unlink(tmp)


def list_dir(uri: str) -> list[str]:
    """Names directly under a prefix (files and "directories"), sorted; empty when nothing is there."""
    if not is_s3(uri):
        path = local_path(uri)
        if not path.is_dir():
            return []
        return sorted(child.name for child in path.iterdir())
    from tasks.storage import s3

    bucket, key = s3.split(uri)
    prefix = _dir_key(key)
    names = set()
    paginator = _client().get_paginator("list_objects_v2")
    for page in paginator.paginate(Bucket=bucket, Prefix=prefix, Delimiter="/"):
        names.update(p["Prefix"][len(prefix) :].rstrip("/") for p in page.get("CommonPrefixes", []))
        names.update(o["Key"][len(prefix) :] for o in page.get("Contents", []))
    return sorted(name for name in names if name)


def modified_at(uri: str) -> str | None:
    """When a file or prefix was last written, as ISO-8601 UTC; None when it does not exist."""
    from datetime import UTC, datetime

    if is_s3(uri):
        from tasks.storage import s3

        bucket, key = s3.split(uri)
        client = _client()
        head = _head(client, bucket, key) if key else None
        if head is not None:
            when = head["LastModified"]
        else:
            stamps = [o["LastModified"] for o in _objects(client, bucket, _dir_key(key))]
            if not stamps:
                return None
            when = max(stamps)
        return when.astimezone(UTC).isoformat(timespec="seconds")
    path = local_path(uri)
    if not path.exists():
        return None
    return datetime.fromtimestamp(path.stat().st_mtime, UTC).isoformat(timespec="seconds")


def remove(uri: str) -> bool:
    """Delete a file or everything under a prefix; False when nothing was there. On S3 the local
    mirror goes too, so a later fetch cannot mistake it for the store's content."""
    if not is_s3(uri):
        path = local_path(uri)
        if path.is_dir():
            shutil.rmtree(path)
            return True
        if path.exists():
            path.unlink()
            return True
        return False
    from tasks.storage import s3

    bucket, key = s3.split(uri)
    client = _client()
    keys = [o["Key"] for o in _objects(client, bucket, _dir_key(key))]
    if key and _head(client, bucket, key) is not None:
        keys.append(key)
    for start in range(0, len(keys), DELETE_BATCH):
        batch = keys[start : start + DELETE_BATCH]
        response = client.delete_objects(
            Bucket=bucket, Delete={"Objects": [{"Key": k} for k in batch], "Quiet": True}
        )
        if response.get("Errors"):
            failed = ", ".join(f"{e['Key']} ({e.get('Code')})" for e in response["Errors"][:5])
            raise StoreError(f"could not delete under '{uri}': {failed}")
    local = mirror(uri)
    if local.is_dir():
        shutil.rmtree(local, ignore_errors=True)
    elif local.exists():
        local.unlink()
    return bool(keys)


def reset(prefix: str) -> None:
    """Drop an uncommitted (half-written) output before a retry rewrites it (on S3 the objects a failed
    try uploaded and the local mirror)."""
    if is_committed(prefix):
        return
    if is_s3(prefix):
        remove(prefix)
        return
    path = local_path(prefix)
    if path.exists():
        shutil.rmtree(path)


# --- commit ---------------------------------------------------------------------------------------


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

    On S3 the files are those of `local_dir(prefix)`: uploaded first (multipart with per-part SHA-256
    checksums for big ones), the manifest put only once every upload succeeded."""
    root = mirror(prefix) if is_s3(prefix) else local_path(prefix)
    listing = _listing(root, skip) if root.is_dir() else {}
    files = {rel: {"size": path.stat().st_size, "sha256": sha256_file(path)} for rel, path in listing.items()}
    manifest = {"files": files, "result": result}
    if is_s3(prefix):
        _upload(prefix, listing)
        write_json(join(prefix, MANIFEST), manifest)
        # The mirror is now a verified copy: a later fetch on this machine downloads nothing.
        (root / MANIFEST).write_text(_dumps(manifest))
    else:
        write_json(join(prefix, MANIFEST), manifest)
    return manifest


def _upload(prefix: str, listing: dict[str, Path]) -> None:
    if not listing:
        return
    from boto3.s3.transfer import create_transfer_manager

    from tasks.storage import s3

    bucket, key = s3.split(prefix)
    client = _client()
    # SHA256 on every (part) upload: S3 recomputes it and refuses a part that was corrupted in transit.
    extra = {"ChecksumAlgorithm": "SHA256"}
    with create_transfer_manager(client, transfer_config()) as manager:
        futures = [
            manager.upload(str(path), bucket, f"{_dir_key(key)}{rel}", extra_args=extra)
            for rel, path in listing.items()
        ]
        # result() re-raises the first failure; leaving the block then cancels the other uploads, and
        # the transfer manager aborts any multipart upload it started.
        for future in futures:
            future.result()
    log.info("uploaded %d files to %s", len(listing), prefix)


# --- fetch ----------------------------------------------------------------------------------------


def _committed_ancestor(uri: str) -> tuple[str, dict[str, Any]] | None:
    """The nearest prefix at or above `uri` with a manifest, with the manifest."""
    from tasks.storage import s3

    bucket, key = s3.split(uri)
    parts = [p for p in key.split("/") if p]
    for depth in range(len(parts), 0, -1):
        prefix = f"s3://{bucket}/{'/'.join(parts[:depth])}"
        try:
            return prefix, read_json(join(prefix, MANIFEST))
        except FileNotFoundError:
            continue
    return None


def fetch(uri: str) -> Path:
    """A local path holding `uri`'s committed content: the path itself for file://; for s3:// the mirror,
    with every file the manifest of `uri` (or of the committed prefix `uri` lies under) lists under it
    downloaded and checked against its sha256."""
    if not is_s3(uri):
        return local_path(uri)
    found = _committed_ancestor(uri)
    if found is None:
        raise StoreError(
            f"'{uri}' is not committed (no {MANIFEST} at or above it): the step that writes it has not "
            "finished; run it (or retry it) first"
        )
    prefix, manifest = found
    bucket_key_len = len(prefix.rstrip("/")) + 1
    sub = uri.rstrip("/")[bucket_key_len:] if uri.rstrip("/") != prefix.rstrip("/") else ""
    wanted = {
        rel: meta
        for rel, meta in manifest["files"].items()
        if not sub or rel == sub or rel.startswith(f"{sub}/")
    }
    if sub and not wanted:
        raise StoreError(f"'{uri}' is not among the files committed under '{prefix}' ({MANIFEST})")
    _download(prefix, wanted)
    root = mirror(prefix)
    if not sub:
        root.mkdir(parents=True, exist_ok=True)
        (root / MANIFEST).write_text(_dumps(manifest))
    return mirror(uri)


# sha256 of mirror files this process has hashed, keyed by path and valid while (size, mtime) hold: a
# step fetches the same base model for its tokenizer and its weights, and hashing GBs twice is waste.
_HASHED: dict[Path, tuple[int, int, str]] = {}


def _remember(path: Path, digest: str) -> None:
    stat = path.stat()
    _HASHED[path] = (stat.st_size, stat.st_mtime_ns, digest)


def _holds(path: Path, meta: dict[str, Any]) -> bool:
    """The mirror file already has the manifest's content (size, then sha256)."""
    if not path.is_file():
        return False
    stat = path.stat()
    if stat.st_size != meta["size"]:
        return False
    known = _HASHED.get(path)
    if known is None or known[:2] != (stat.st_size, stat.st_mtime_ns):
        _remember(path, sha256_file(path))
    return _HASHED[path][2] == meta["sha256"]


def _download(prefix: str, files: dict[str, dict[str, Any]]) -> None:
    from boto3.s3.transfer import create_transfer_manager

    from tasks.storage import s3

    bucket, key = s3.split(prefix)
    root = mirror(prefix)
    todo = {}
    for rel, meta in files.items():
        target = root / rel
        if _holds(target, meta):
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        todo[rel] = target
    if not todo:
        return
    client = _client()
    partial = {rel: target.with_name(f".{target.name}.{os.getpid()}.part") for rel, target in todo.items()}
    try:
        with create_transfer_manager(client, transfer_config()) as manager:
            futures = [manager.download(bucket, f"{_dir_key(key)}{rel}", str(partial[rel])) for rel in todo]
            for future in futures:
                future.result()
        for rel, target in todo.items():
            digest = sha256_file(partial[rel])
            if digest != files[rel]["sha256"]:
                raise StoreError(
                    f"'{rel}' under '{prefix}' does not match its sha256 in {MANIFEST} (expected "
                    f"{files[rel]['sha256'][:12]}..., downloaded {digest[:12]}...): the object changed after "
                    "it was committed; re-run the step that wrote it (remove the prefix first)"
                )
            os.replace(partial[rel], target)
            _remember(target, digest)
    finally:
        for path in partial.values():
            path.unlink(missing_ok=True)
    log.info("fetched %d files from %s", len(todo), prefix)


def fetch_file(uri: str) -> Path:
    """A local copy of one file: the path itself for file://; for s3:// the file downloaded into the
    mirror (verified when a manifest lists it, see `fetch`)."""
    if not is_s3(uri):
        return local_path(uri)
    try:
        return fetch(uri)
    except StoreError:
        pass
    target = mirror(uri)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.part")
    tmp.write_bytes(_get_bytes(uri))
    os.replace(tmp, target)
    return target


# --- verify ---------------------------------------------------------------------------------------


def verify(prefix: str) -> list[str]:
    """Files whose sha256 no longer matches the manifest (empty when intact). On S3 the stored objects
    are read and hashed (nothing is written locally)."""
    manifest = read_json(join(prefix, MANIFEST))
    if not is_s3(prefix):
        root = local_path(prefix)
        return [
            rel
            for rel, meta in manifest["files"].items()
            if not (root / rel).exists() or sha256_file(root / rel) != meta["sha256"]
        ]
    from botocore.exceptions import ClientError

    from tasks.storage import s3

    bucket, key = s3.split(prefix)
    client = _client()
    bad = []
    for rel, meta in manifest["files"].items():
        digest = hashlib.sha256()
        try:
            body = client.get_object(Bucket=bucket, Key=f"{_dir_key(key)}{rel}")["Body"]
            for block in body.iter_chunks(1 << 20):
                digest.update(block)
        except ClientError as error:
            if _missing(error):
                bad.append(rel)
                continue
            raise
        if digest.hexdigest() != meta["sha256"]:
            bad.append(rel)
    return bad


# --- shared outputs ---------------------------------------------------------------------------------

CLAIM_STALE_S = 3600.0


def _claim_is_stale(claim: str, stale_after_s: float) -> bool:
    """A claim left by a builder that cannot finish: its process is gone on this host, or it is older
    than `stale_after_s` (a builder on another machine that died)."""
    import socket
    import time

    try:
        holder = read_json(claim)
    except FileNotFoundError:
        return False  # released meanwhile: try to claim again
    if holder.get("host") == socket.gethostname():
        try:
            os.kill(int(holder.get("pid", -1)), 0)
        except (ProcessLookupError, ValueError):
            return True
        except PermissionError:
            pass  # alive, another user's
    return time.time() - float(holder.get("at", 0)) > stale_after_s


def build_once(
    prefix: str,
    build: Any,
    stale_after_s: float = CLAIM_STALE_S,
    poll_s: float = 2.0,
) -> dict[str, Any]:
    """Commit `prefix` once, however many processes and machines share the store and want it at the same
    time (several training jobs needing the same converted base model). Whoever creates the claim
    `<prefix>.claim.json` (an exclusive create: a hard link locally, `IfNoneMatch="*"` on S3) resets the
    prefix, calls `build(local_dir)` for the result and commits; the others wait for the manifest. A
    stale claim (see `_claim_is_stale`) is taken over. Returns the committed result."""
    import socket
    import time

    claim = prefix.rstrip("/") + ".claim.json"
    waited = False
    while not is_committed(prefix):
        try:
            create_json(claim, {"host": socket.gethostname(), "pid": os.getpid(), "at": time.time()})
        except FileExistsError:
            if _claim_is_stale(claim, stale_after_s):
                log.warning("taking over %s: its holder is gone", claim)
                remove(claim)
                continue
            if not waited:
                log.info("waiting for %s: another process is building it", prefix)
                waited = True
            time.sleep(poll_s)
            continue
        try:
            if not is_committed(prefix):
                reset(prefix)
                commit(prefix, build(local_dir(prefix)))
        finally:
            remove(claim)
    return committed_result(prefix) or {}
