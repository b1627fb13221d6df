"""The s3:// backend (AWS, MinIO) through boto3, imported inside functions so that parsing a DAG never
loads it. The client, error codes and credentials are `tasks.storage.s3`'s.

Exclusive create is `PutObject(..., IfNoneMatch="*")`, replace-if-unchanged `PutObject(..., IfMatch=<ETag>)`:
S3 decides either atomically, so no lock is needed anywhere. Big files move through boto3's transfer
manager: multipart above `$TUNERFLOW_S3_PART_MB` MiB (default 64), each uploaded part carrying a SHA-256
checksum S3 verifies; every download is checked against its expected sha256 (`tasks.storage.mirror`)
before it is renamed into place.

A write that still fails once the client's bounded retries (`tasks.storage.s3.retry_settings`) are spent
raises StoreUnavailable (the endpoint did not answer) or StoreError (it refused) naming the object and the
endpoint; the manifest is only written after every upload
succeeded, so such a failure leaves nothing committed, and the retried step uploads again.
"""

from __future__ import annotations

import fnmatch
import hashlib
import logging
import os
import re
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC
from pathlib import Path
from typing import Any

from tasks.storage import mirror, s3
from tasks.storage.errors import MissingBucket, StoreError, StoreUnavailable
from tasks.storage.uris import mirror as mirror_path

log = logging.getLogger("tunerflow.store")

PART_MB_ENV = "TUNERFLOW_S3_PART_MB"
DEFAULT_PART_MB = 64
MIN_PART_MB = 5  # S3's smallest multipart part (all but the last)
DELETE_BATCH = 1000  # DeleteObjects' limit
WILDCARDS = "*?["


def transfer_config() -> Any:
    """Multipart above one part size: parts of $TUNERFLOW_S3_PART_MB MiB (at least S3's 5 MiB)."""
    from boto3.s3.transfer import TransferConfig

    part = max(float(os.environ.get(PART_MB_ENV) or DEFAULT_PART_MB), MIN_PART_MB)
    size = int(part * 1024 * 1024)
    return TransferConfig(multipart_threshold=size, multipart_chunksize=size, max_concurrency=8)


def _dir_key(key: str) -> str:
    """`key/`, so that a prefix never matches a sibling that merely starts with the same letters."""
    return f"{key.rstrip('/')}/" if key.strip("/") else ""


def _fixed_prefix(key: str) -> str:
    return re.split(r"[*?\[]", key, maxsplit=1)[0]


@contextmanager
def _bucket_named(bucket: str) -> Iterator[None]:
    """A request on a bucket that does not exist raises MissingBucket, which callers can name."""
    from botocore.exceptions import ClientError

    try:
        yield
    except ClientError as error:
        if s3.is_missing_bucket(error):
            raise MissingBucket(f"bucket '{bucket}' does not exist") from None
        raise


def _write_failed(client: Any, uri: str, error: Exception) -> StoreError:
    """The error a write that did not succeed raises: the object, the endpoint and the cause, never a
    credential (`s3.describe` reads codes and messages only)."""
    bucket, _ = s3.split(uri)
    kind = StoreUnavailable if s3.is_unavailable(error) else StoreError
    return kind(
        f"could not write '{uri}' to the S3 endpoint {s3.endpoint_of(client)} "
        f"({s3.describe(error, bucket)}) after {s3.retry_settings()['max_attempts']} attempts; nothing "
        "partial is visible (the manifest is written only after every file): retry the step once the "
        "endpoint answers (TUNERFLOW_S3_MAX_ATTEMPTS and TUNERFLOW_S3_READ_TIMEOUT_S set how long it waits)"
    )


def download_objects(client: Any, bucket: str, targets: dict[str, Path]) -> None:
    """Download each key into its path (concurrently, multipart for big objects); the first failure
    re-raises, and leaving the transfer manager cancels the rest."""
    from boto3.s3.transfer import create_transfer_manager

    with create_transfer_manager(client, transfer_config()) as manager:
        futures = [manager.download(bucket, key, str(path)) for key, path in targets.items()]
        for future in futures:
            future.result()


class S3Backend:
    mirrored = True

    # Stateless: every call asks `s3.client()` for the client of the credentials in effect (one per
    # credentials, shared by threads: boto3 clients are thread-safe), so a rotated credential is picked
    # up by the next call.

    def _head(self, client: Any, bucket: str, key: str) -> dict[str, Any] | None:
        from botocore.exceptions import ClientError

        try:
            return client.head_object(Bucket=bucket, Key=key)
        except ClientError as error:
            if s3.is_missing(error):
                return None
            raise

    def _objects(self, client: Any, bucket: str, prefix: str) -> Iterator[dict[str, Any]]:
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
            yield from page.get("Contents", [])

    def _put(self, uri: str, data: bytes, **condition: str) -> bool:
        """PutObject; with a condition, False when it did not hold (412), when another conditional write
        to the key was in flight (409: it wins) or when an If-Match key vanished (404)."""
        from botocore.exceptions import BotoCoreError, ClientError

        bucket, key = s3.split(uri)
        client = s3.client()
        try:
            with _bucket_named(bucket):
                client.put_object(
                    Bucket=bucket, Key=key, Body=data, ContentType="application/json", **condition
                )
        except ClientError as error:
            if condition and (s3.lost_race(error) or s3.is_missing(error)):
                return False
            raise _write_failed(client, uri, error) from None
        except BotoCoreError as error:  # timeouts and refused connections, once the retries are spent
            raise _write_failed(client, uri, error) from None
        return True

    # --- objects ----------------------------------------------------------------------------------

    def read_tagged(self, uri: str) -> tuple[bytes, str] | None:
        from botocore.exceptions import ClientError

        bucket, key = s3.split(uri)
        try:
            with _bucket_named(bucket):
                response = s3.client().get_object(Bucket=bucket, Key=key)
        except ClientError as error:
            if s3.is_missing(error):
                return None
            raise
        return response["Body"].read(), response["ETag"]

    def read_bytes(self, uri: str) -> bytes:
        found = self.read_tagged(uri)
        if found is None:
            raise FileNotFoundError(f"'{uri}' does not exist")
        return found[0]

    def write_bytes(self, uri: str, data: bytes) -> None:
        self._put(uri, data)

    def create_if_absent(self, uri: str, data: bytes) -> bool:
        return self._put(uri, data, IfNoneMatch="*")

    def replace_if_unchanged(self, uri: str, data: bytes, tag: str) -> bool:
        return self._put(uri, data, IfMatch=tag)

    def exists(self, uri: str) -> bool:
        bucket, key = s3.split(uri)
        client = s3.client()
        if key and self._head(client, bucket, key) is not None:
            return True
        page = client.list_objects_v2(Bucket=bucket, Prefix=_dir_key(key), MaxKeys=1)
        return bool(page.get("Contents"))

    def list_names(self, uri: str) -> list[str]:
        """Names directly under a prefix; empty when nothing is there, bucket included."""
        from botocore.exceptions import ClientError

        bucket, key = s3.split(uri)
        prefix = _dir_key(key)
        names = set()
        try:
            for page in (
                s3.client()
                .get_paginator("list_objects_v2")
                .paginate(Bucket=bucket, Prefix=prefix, Delimiter="/")
            ):
                names.update(p["Prefix"][len(prefix) :].rstrip("/") for p in page.get("CommonPrefixes", []))
                names.update(o["Key"][len(prefix) :] for o in page.get("Contents", []))
        except ClientError as error:
            if s3.is_missing_bucket(error):
                return []
            raise
        return sorted(name for name in names if name)

    def modified_at(self, uri: str) -> str | None:
        bucket, key = s3.split(uri)
        client = s3.client()
        head = self._head(client, bucket, key) if key else None
        if head is not None:
            when = head["LastModified"]
        else:
            stamps = [o["LastModified"] for o in self._objects(client, bucket, _dir_key(key))]
            if not stamps:
                return None
            when = max(stamps)
        return when.astimezone(UTC).isoformat(timespec="seconds")

    def remove(self, uri: str) -> bool:
        """The objects, and the local mirror too, so a later fetch cannot mistake it for the store's
        content."""
        bucket, key = s3.split(uri)
        client = s3.client()
        keys = [o["Key"] for o in self._objects(client, bucket, _dir_key(key))]
        if key and self._head(client, bucket, key) is not None:
            keys.append(key)
        for start in range(0, len(keys), DELETE_BATCH):
            batch = keys[start : start + DELETE_BATCH]
            response = client.delete_objects(
                Bucket=bucket, Delete={"Objects": [{"Key": k} for k in batch], "Quiet": True}
            )
            if response.get("Errors"):
                failed = ", ".join(f"{e['Key']} ({e.get('Code')})" for e in response["Errors"][:5])
                raise StoreError(f"could not delete under '{uri}': {failed}")
        local = mirror_path(uri)
        if local.is_dir():
            shutil.rmtree(local, ignore_errors=True)
        elif local.exists():
            local.unlink()
        return bool(keys)

    # --- files ------------------------------------------------------------------------------------

    def upload_files(self, prefix: str, files: dict[str, Path]) -> None:
        if not files:
            return
        from boto3.s3.transfer import create_transfer_manager
        from botocore.exceptions import BotoCoreError, ClientError

        bucket, key = s3.split(prefix)
        # SHA256 on every (part) upload: S3 recomputes it and refuses a part that was corrupted in transit.
        extra = {"ChecksumAlgorithm": "SHA256"}
        client = s3.client()
        with create_transfer_manager(client, transfer_config()) as manager:
            futures = {
                rel: manager.upload(str(path), bucket, f"{_dir_key(key)}{rel}", extra_args=extra)
                for rel, path in files.items()
            }
            # result() re-raises the first failure; leaving the block then cancels the other uploads, and
            # the transfer manager aborts any multipart upload it started.
            for rel, future in futures.items():
                try:
                    future.result()
                except MissingBucket:
                    raise
                except (BotoCoreError, ClientError) as error:
                    if s3.is_missing_bucket(error):
                        raise MissingBucket(f"bucket '{bucket}' does not exist") from None
                    raise _write_failed(client, f"s3://{bucket}/{_dir_key(key)}{rel}", error) from None
        log.info("uploaded %d files to %s", len(files), prefix)

    def download_files(self, prefix: str, files: dict[str, dict[str, Any]]) -> None:
        """Bring every file of a committed prefix into its mirror, skipping those already there with the
        manifest's sha256 and checking every download against it."""
        bucket, key = s3.split(prefix)
        root = mirror_path(prefix)
        todo = {rel: root / rel for rel, meta in files.items() if not mirror.holds(root / rel, meta)}
        if not todo:
            return
        partial = {rel: mirror.partial_path(target) for rel, target in todo.items()}
        for path in partial.values():
            path.parent.mkdir(parents=True, exist_ok=True)
        try:
            download_objects(s3.client(), bucket, {f"{_dir_key(key)}{rel}": partial[rel] for rel in todo})
            for rel, target in todo.items():
                mirror.place(partial[rel], target, files[rel]["sha256"], f"'{rel}' under '{prefix}'")
        finally:
            for path in partial.values():
                path.unlink(missing_ok=True)
        log.info("fetched %d files from %s", len(todo), prefix)

    def stored_sha256(self, uri: str) -> str | None:
        """The sha256 of the stored object's bytes, read and hashed as they stream (nothing written)."""

        from botocore.exceptions import ClientError

        bucket, key = s3.split(uri)
        digest = hashlib.sha256()
        try:
            body = s3.client().get_object(Bucket=bucket, Key=key)["Body"]
            for block in body.iter_chunks(mirror.BLOCK):
                digest.update(block)
        except ClientError as error:
            if s3.is_missing(error):
                return None
            raise
        return digest.hexdigest()

    def _matching(self, client: Any, bucket: str, key: str) -> list[tuple[str, str]]:
        """(key, ETag) of the objects a key or key glob names ('*' crosses '/', as fnmatch's does)."""
        from botocore.exceptions import ClientError

        if not any(c in key for c in WILDCARDS):
            head = self._head(client, bucket, key)
            if head is None:
                # HEAD answers a bare 404 for a missing key and a missing bucket alike: ask the bucket.
                try:
                    client.head_bucket(Bucket=bucket)
                except ClientError as error:
                    if s3.is_missing(error):
                        error.response.setdefault("Error", {})["Code"] = "NoSuchBucket"
                    raise error from None
                raise FileNotFoundError("could not read from S3 (no such key)")
            return [(key, head["ETag"])]
        found = [
            (item["Key"], item["ETag"])
            for item in self._objects(client, bucket, _fixed_prefix(key))
            if not item["Key"].endswith("/") and fnmatch.fnmatchcase(item["Key"], key)
        ]
        return sorted(found)

    def local_copies(self, pattern: str, cache: Path | None = None) -> list[tuple[str, Path]]:
        """The objects a key or key glob names, each copied into the mirror under `cache` unless its copy
        is current (`mirror.is_current`), with its key below the pattern's last '/' before a wildcard."""
        bucket, key = s3.split(pattern)
        if not key:
            raise FileNotFoundError("expected s3://<bucket>/<key> or s3://<bucket>/<prefix>/*.jsonl")
        try:
            from botocore.exceptions import BotoCoreError, ClientError
        except ImportError:
            raise StoreError("s3:// needs boto3; pip install 'tunerflow[s3]'") from None
        try:
            client = s3.client()
            objects = self._matching(client, bucket, key)
            if not objects:
                raise FileNotFoundError(f"no object in bucket '{bucket}' matches '{key}'")
            targets = {name: mirror_path(f"s3://{bucket}/{name}", cache) for name, _ in objects}
            stale = {name: etag for name, etag in objects if not mirror.is_current(targets[name], etag)}
            self._copy(client, bucket, {name: targets[name] for name in stale}, stale)
        except (BotoCoreError, ClientError) as error:
            kind = StoreUnavailable if s3.is_unavailable(error) else StoreError
            raise kind(f"could not read from S3 ({s3.describe(error, bucket)})") from None
        fixed = _fixed_prefix(key)
        base = fixed[: fixed.rfind("/") + 1]
        return [(name.removeprefix(base), targets[name]) for name, _ in objects]

    def _copy(self, client: Any, bucket: str, targets: dict[str, Path], versions: dict[str, str]) -> None:
        if not targets:
            return
        partial = {name: mirror.partial_path(target) for name, target in targets.items()}
        for target in targets.values():
            target.parent.mkdir(parents=True, exist_ok=True)
            mirror.forget(target)
        try:
            download_objects(client, bucket, partial)
            for name, target in targets.items():
                mirror.record(target, versions[name], mirror.place(partial[name], target, None, name))
        finally:
            for path in partial.values():
                path.unlink(missing_ok=True)
