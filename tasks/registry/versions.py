"""The model registry: fine-tuned versions with their lineage, and a "production" pointer moved by CAS.

Layout under `layout.registry(root, name)`:

    versions/<n>/entry.json     one registered version (immutable once written), n = 1, 2, 3, ...
    versions/<n>/decision.json  the promotion decision taken for it (written by tasks.registry.promotion)
    production.json             the pointer: {"version", "sequence", "etag", "updated_at", "previous", ...}
    production_history.jsonl    file://: every pointer record ever written, one JSON line each, oldest first
    history/<seq>.json          s3://: the same records, one object per sequence (S3 has no append)
    .production.lock            file://: the lock file serialising read-compare-write of the pointer

Concurrency contract (what every backend must provide):

* version allocation is an exclusive create: whoever creates version n first owns it; the loser
  retries with n + 1. file://: `os.mkdir(versions/<n>)`; s3://: `PutObject(versions/<n>/entry.json,
  IfNoneMatch="*")`.
* the pointer moves by compare-and-swap on its `sequence` (exposed as the string `etag` too):
  `set_production(..., expected=seq)` writes only while the stored sequence still equals `expected`
  (`None`: only while no pointer exists yet). file://: a `filelock.FileLock` around read-compare-write
  plus an atomic `os.replace`. s3://: read `production.json` with its object ETag, compare the sequence,
  then `PutObject(production.json, IfMatch=<ETag>)` (`IfNoneMatch="*"` for the first pointer); S3
  answers 412 when another writer got there first. No lock: the conditional write is the whole
  protocol. Every record carries its own sequence, so two records never share an ETag (no ABA).

The functions dispatch on the root's URI scheme through `_backend()`; callers never see which one.
See docs/registry.md.
"""

from __future__ import annotations

import json
import os
import re
import time
from datetime import UTC, datetime
from typing import Any

from tasks.storage import layout, store
from tasks.storage.s3 import LOST_RACE_CODES, MISSING_CODES, error_code

ENTRY = "entry.json"
DECISION = "decision.json"
POINTER = "production.json"
HISTORY = "production_history.jsonl"
S3_HISTORY = "history"
LOCK = ".production.lock"
# How many earlier production versions the pointer remembers for rollback.
MAX_STACK = 100
LINEAGE_KEYS = (
    "run_uri",
    "job_id",
    "label",
    "base_model",
    "dataset",
    "hparams",
    "metrics",
    "exports",
    "model_uri",
)


class RegistryError(RuntimeError):
    """A registry request that cannot be honoured (unknown version, nothing to roll back to)."""


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


class _FileBackend:
    """The file:// implementation of the three primitives the registry needs."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.path = store.local_path(prefix)

    # -- versions ---------------------------------------------------------------------------------
    def version_numbers(self) -> list[int]:
        versions = self.path / "versions"
        if not versions.is_dir():
            return []
        return sorted(int(p.name) for p in versions.iterdir() if p.is_dir() and re.fullmatch(r"\d+", p.name))

    def create_version(self, entry_for: Any) -> dict[str, Any]:
        """Claim the next free version number exclusively, then write its entry atomically."""
        versions = self.path / "versions"
        versions.mkdir(parents=True, exist_ok=True)
        numbers = self.version_numbers()
        n = (numbers[-1] if numbers else 0) + 1
        while True:
            try:
                os.mkdir(versions / str(n))
            except FileExistsError:
                n += 1
                continue
            entry = entry_for(n)
            store.write_json(self.version_uri(n, ENTRY), entry)
            return entry

    def version_uri(self, version: int, filename: str = ENTRY) -> str:
        return store.join(self.prefix, "versions", str(version), filename)

    def read_version(self, version: int, filename: str = ENTRY) -> dict[str, Any] | None:
        path = store.local_path(self.version_uri(version, filename))
        if not path.is_file():
            return None  # never registered, or its entry is still being written
        return store.read_json(self.version_uri(version, filename))

    def write_version_file(self, version: int, filename: str, payload: dict[str, Any]) -> None:
        store.write_json(self.version_uri(version, filename), payload)

    # -- pointer ----------------------------------------------------------------------------------
    def read_pointer(self) -> dict[str, Any] | None:
        uri = store.join(self.prefix, POINTER)
        return store.read_json(uri) if store.exists(uri) else None

    def swap_pointer(self, expected: int | None, make_record: Any) -> dict[str, Any] | None:
        """Write `make_record(current)` only while the pointer's sequence equals `expected`.

        Returns the record written, or None when the pointer moved under us.
        """
        from filelock import FileLock

        self.path.mkdir(parents=True, exist_ok=True)
        with FileLock(str(self.path / LOCK), timeout=60):
            current = self.read_pointer()
            sequence = current["sequence"] if current else None
            if sequence != expected:
                return None
            record = make_record(current)
            store.write_json(store.join(self.prefix, POINTER), record)
            with open(self.path / HISTORY, "a") as handle:
                handle.write(json.dumps(record, sort_keys=True, default=str) + "\n")
                handle.flush()
                os.fsync(handle.fileno())
            return record

    def read_history(self) -> list[dict[str, Any]]:
        path = self.path / HISTORY
        if not path.is_file():
            return []
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _dumps(payload: dict[str, Any]) -> bytes:
    return json.dumps(payload, indent=2, sort_keys=True, default=str).encode()


class _S3Backend:
    """The s3:// implementation: exclusive create and CAS with S3 conditional writes, no lock anywhere."""

    def __init__(self, prefix: str, name: str) -> None:
        from tasks.storage import s3

        self.prefix = prefix
        self.name = name
        self.bucket, key = s3.split(prefix)
        self.key = key.rstrip("/")
        self.client = s3.client()

    def _key(self, *parts: str) -> str:
        return "/".join([self.key, *parts]) if self.key else "/".join(parts)

    def _call(self, method: str, **kwargs: Any) -> Any:
        """One S3 request; a missing bucket becomes a RegistryError naming the registry."""
        from botocore.exceptions import ClientError

        try:
            return getattr(self.client, method)(Bucket=self.bucket, **kwargs)
        except ClientError as error:
            if error_code(error) == "NoSuchBucket":
                raise RegistryError(
                    f"registry '{self.name}' at {self.prefix}: bucket '{self.bucket}' does not exist; "
                    "create it or point --store / TUNERFLOW_STORE at an existing one"
                ) from None
            raise

    def _get(self, key: str) -> tuple[dict[str, Any], str] | None:
        """(the JSON object, its ETag), or None when the key does not exist."""
        from botocore.exceptions import ClientError

        try:
            response = self._call("get_object", Key=key)
        except ClientError as error:
            if error_code(error) in MISSING_CODES:
                return None
            raise
        return json.loads(response["Body"].read()), response["ETag"]

    def _put(self, key: str, payload: dict[str, Any], **condition: str) -> bool:
        """Write `payload`; with a condition (IfNoneMatch="*" or IfMatch=<ETag>), False when it lost."""
        from botocore.exceptions import ClientError

        try:
            self._call(
                "put_object", Key=key, Body=_dumps(payload), ContentType="application/json", **condition
            )
        except ClientError as error:
            # An If-Match on a key that vanished is answered 404: the pointer is not what we read either.
            if condition and error_code(error) in LOST_RACE_CODES + MISSING_CODES:
                return False
            raise
        return True

    def _keys(self, prefix: str) -> list[str]:
        from botocore.exceptions import ClientError

        paginator = self.client.get_paginator("list_objects_v2")
        keys: list[str] = []
        try:
            for page in paginator.paginate(Bucket=self.bucket, Prefix=prefix):
                keys.extend(item["Key"] for item in page.get("Contents", []))
        except ClientError as error:
            if error_code(error) == "NoSuchBucket":
                return []  # no bucket, no registry: the callers report "nothing registered"
            raise
        return keys

    # -- versions ---------------------------------------------------------------------------------
    def version_numbers(self) -> list[int]:
        # A version exists once its entry.json does: the exclusive create is the entry itself, so there
        # is no half-claimed state to skip as on file:// (where the directory comes before the entry).
        pattern = re.compile(re.escape(self._key("versions")) + r"/(\d+)/" + re.escape(ENTRY) + "$")
        found = (pattern.match(key) for key in self._keys(self._key("versions") + "/"))
        return sorted(int(match.group(1)) for match in found if match)

    def create_version(self, entry_for: Any) -> dict[str, Any]:
        numbers = self.version_numbers()
        n = (numbers[-1] if numbers else 0) + 1
        while True:
            entry = entry_for(n)
            if self._put(self._key("versions", str(n), ENTRY), entry, IfNoneMatch="*"):
                return entry
            if self._get(self._key("versions", str(n), ENTRY)) is not None:
                n += 1
            else:
                time.sleep(0.05)  # a 409 (a concurrent write still in flight): retry the same n

    def version_uri(self, version: int, filename: str = ENTRY) -> str:
        return store.join(self.prefix, "versions", str(version), filename)

    def read_version(self, version: int, filename: str = ENTRY) -> dict[str, Any] | None:
        found = self._get(self._key("versions", str(version), filename))
        return found[0] if found else None

    def write_version_file(self, version: int, filename: str, payload: dict[str, Any]) -> None:
        self._put(self._key("versions", str(version), filename), payload)

    # -- pointer ----------------------------------------------------------------------------------
    def _read_pointer(self) -> tuple[dict[str, Any], str] | None:
        return self._get(self._key(POINTER))

    def read_pointer(self) -> dict[str, Any] | None:
        found = self._read_pointer()
        return found[0] if found else None

    def _history_key(self, sequence: int) -> str:
        # Zero-padded so the listing's lexical order is the sequence order.
        return self._key(S3_HISTORY, f"{int(sequence):012d}.json")

    def swap_pointer(self, expected: int | None, make_record: Any) -> dict[str, Any] | None:
        """Write `make_record(current)` only while the pointer's sequence equals `expected`.

        Returns the record written, or None when the pointer moved under us (S3 answered 412/409).
        """
        found = self._read_pointer()
        current, etag = found if found else (None, None)
        sequence = current["sequence"] if current else None
        if sequence != expected:
            return None
        if current is not None:
            # The record being replaced goes into the history first (a no-op when its writer already
            # put it there), so a writer that died between its pointer write and its history write
            # loses no record.
            self._put(self._history_key(current["sequence"]), current, IfNoneMatch="*")
        record = make_record(current)
        condition = {"IfMatch": etag} if etag else {"IfNoneMatch": "*"}
        if not self._put(self._key(POINTER), record, **condition):
            return None
        self._put(self._history_key(record["sequence"]), record, IfNoneMatch="*")
        return record

    def read_history(self) -> list[dict[str, Any]]:
        records = [found[0] for key in self._keys(self._key(S3_HISTORY) + "/") if (found := self._get(key))]
        records.sort(key=lambda record: record["sequence"])
        current = self.read_pointer()
        # The newest record reaches the history just after the pointer; show it already.
        if current is not None and (not records or records[-1]["sequence"] < current["sequence"]):
            records.append(current)
        return records


def _backend(root: str, name: str) -> _FileBackend | _S3Backend:
    prefix = layout.registry(root, name)
    scheme = prefix.split("://", 1)[0] if "://" in prefix else "file"
    if scheme == "s3":
        return _S3Backend(prefix, name)
    if scheme != "file":
        raise NotImplementedError(
            f"registry '{name}': no backend for '{scheme}://' store roots; use file:// or s3://"
        )
    return _FileBackend(prefix)


# -- public API -------------------------------------------------------------------------------------


def registry_uri(root: str, name: str) -> str:
    return layout.registry(root, name)


def names(root: str) -> list[str]:
    """The registries under a store root that hold at least one version, sorted."""
    parent = layout.registry(root, "")
    if parent.startswith("s3://"):
        from botocore.exceptions import ClientError

        from tasks.storage import s3

        bucket, key = s3.split(parent)
        key = key.rstrip("/") + "/"
        found: list[str] = []
        paginator = s3.client().get_paginator("list_objects_v2")
        try:
            for page in paginator.paginate(Bucket=bucket, Prefix=key, Delimiter="/"):
                found.extend(p["Prefix"][len(key) :].rstrip("/") for p in page.get("CommonPrefixes", []))
        except ClientError as error:
            if error_code(error) == "NoSuchBucket":
                return []
            raise
    else:
        path = store.local_path(parent)
        found = [p.name for p in path.iterdir() if p.is_dir()] if path.is_dir() else []
    return sorted(n for n in found if version_numbers(root, n))


def register(root: str, name: str, entry: dict[str, Any]) -> dict[str, Any]:
    """Add a new version with its lineage; returns the stored entry including its `version`.

    Lineage keys (missing ones are stored as empty): run_uri, job_id, label, base_model {name, hub_id},
    dataset {name, version}, hparams, metrics, exports {format: uri}, model_uri, created_at.
    Extra keys are kept as given.
    """
    backend = _backend(root, name)
    defaults: dict[str, Any] = {key: None for key in LINEAGE_KEYS}
    defaults.update(hparams={}, metrics={}, exports={})
    created_at = entry.get("created_at") or now()

    def entry_for(n: int) -> dict[str, Any]:
        return {**defaults, **entry, "registry": name, "version": n, "created_at": created_at}

    return backend.create_version(entry_for)


def version_numbers(root: str, name: str) -> list[int]:
    """The registered version numbers, ascending (a listing only; no entry is read)."""
    return _backend(root, name).version_numbers()


def get_version(root: str, name: str, version: int) -> dict[str, Any] | None:
    return _backend(root, name).read_version(int(version))


def list_versions(root: str, name: str) -> list[dict[str, Any]]:
    """Every registered version, oldest first (a version whose entry is still being written is left out)."""
    backend = _backend(root, name)
    entries = (backend.read_version(n) for n in backend.version_numbers())
    return [entry for entry in entries if entry is not None]


def base_models(root: str, name: str) -> list[dict[str, Any]]:
    """The base models this registry's versions were fine-tuned from, in order of first use:
    {"name", "hub_id", "family", "versions": [n, ...], "production": n or None}.

    Derived from the versions' lineage, not stored: the model catalog defines base models, and a
    second copy here could only drift from what the entries say.
    """
    live = (pointer(root, name) or {}).get("version")
    found: dict[tuple[Any, Any], dict[str, Any]] = {}
    for entry in list_versions(root, name):
        base = entry.get("base_model") or {}
        key = (base.get("name"), base.get("hub_id"))
        row = found.setdefault(
            key,
            {
                "name": key[0],
                "hub_id": key[1],
                "family": base.get("family"),
                "versions": [],
                "production": None,
            },
        )
        row["versions"].append(entry["version"])
        if entry["version"] == live:
            row["production"] = live
    return list(found.values())


def find_versions(root: str, name: str, **match: Any) -> list[dict[str, Any]]:
    """Versions whose entry has every given key equal to the given value, e.g. run_uri=..., job_id=..."""
    return [e for e in list_versions(root, name) if all(e.get(k) == v for k, v in match.items())]


def read_decision(root: str, name: str, version: int) -> dict[str, Any] | None:
    return _backend(root, name).read_version(int(version), DECISION)


def write_decision(root: str, name: str, version: int, decision: dict[str, Any]) -> None:
    _backend(root, name).write_version_file(int(version), DECISION, decision)


def pointer(root: str, name: str) -> dict[str, Any] | None:
    """The raw production pointer record, without the entry."""
    return _backend(root, name).read_pointer()


def production(root: str, name: str) -> dict[str, Any] | None:
    """The production pointer ({"version", "sequence", "etag", "updated_at", "previous", ...}) plus
    `entry`, the registered version it points at; None while nothing is in production.

    `previous` is the version that `rollback` would return to (None: nothing to roll back to).
    """
    backend = _backend(root, name)
    record = backend.read_pointer()
    if record is None:
        return None
    return {**record, "entry": backend.read_version(record["version"])}


def history(root: str, name: str) -> list[dict[str, Any]]:
    """Every pointer record ever written, oldest first."""
    return _backend(root, name).read_history()


def _record(
    current: dict[str, Any] | None, version: int, stack: list[int], action: str, reason: str | None
) -> dict[str, Any]:
    sequence = (current["sequence"] if current else 0) + 1
    return {
        "version": version,
        "sequence": sequence,
        "etag": str(sequence),
        "updated_at": now(),
        "previous": stack[-1] if stack else None,
        "stack": stack[-MAX_STACK:],
        "replaced": current["version"] if current else None,
        "action": action,
        "reason": reason,
    }


def set_production(
    root: str, name: str, version: int, expected: int | None, reason: str | None = None
) -> bool:
    """Point production at `version` if the pointer's sequence is still `expected` (None: no pointer yet).

    Returns False, writing nothing, when someone else moved the pointer first: re-read and decide again.
    """
    backend = _backend(root, name)
    version = int(version)
    if backend.read_version(version) is None:
        raise RegistryError(f"registry '{name}' has no version {version}")

    def make(current: dict[str, Any] | None) -> dict[str, Any]:
        stack = list(current.get("stack", [])) if current else []
        if current and current["version"] != version:
            stack.append(current["version"])
        return _record(current, version, stack, "promote", reason)

    return backend.swap_pointer(expected, make) is not None


def rollback(root: str, name: str, attempts: int = 10) -> int:
    """Move production back to the version that was production before the current one; returns it.

    Uses the same CAS as `set_production`, retrying when the pointer moves concurrently. Rolling back
    repeatedly walks further back (v1 -> v2 -> v3, rollback: v2, rollback: v1).
    """
    backend = _backend(root, name)
    for _ in range(attempts):
        current = backend.read_pointer()
        if current is None:
            raise RegistryError(f"registry '{name}' has no production version yet, so nothing to roll back")
        if not current.get("stack"):
            raise RegistryError(
                f"registry '{name}': no earlier production version to roll back to from version "
                f"{current['version']}; promote one by number instead (`tunerflow registry promote N`)"
            )
        stack = list(current["stack"])
        target = stack.pop()

        def make(
            cur: dict[str, Any] | None, target: int = target, stack: list[int] = stack
        ) -> dict[str, Any]:
            return _record(cur, target, stack, "rollback", f"rollback from version {cur['version']}")

        if backend.swap_pointer(current["sequence"], make) is not None:
            return target
    raise RegistryError(f"registry '{name}': the production pointer kept moving; rollback gave up")
