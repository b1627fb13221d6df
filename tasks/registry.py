"""The model registry: fine-tuned versions with their lineage, and a "production" pointer moved by CAS.

Layout under `layout.registry(root, name)`:

    versions/<n>/entry.json     one registered version (immutable once written), n = 1, 2, 3, ...
    versions/<n>/decision.json  the promotion decision taken for it (written by tasks.promote)
    production.json             the pointer: {"version", "sequence", "etag", "updated_at", "previous", ...}
    production_history.jsonl    every pointer record ever written, one JSON line each, oldest first
    .production.lock            the lock file serialising read-compare-write of the pointer

Concurrency contract (what every backend must provide):

* version allocation is an exclusive create: whoever creates `versions/<n>` first owns n; the loser
  retries with n + 1. Here that is `os.mkdir` (fails when the directory exists).
* the pointer moves by compare-and-swap on its `sequence` (exposed as the string `etag` too):
  `set_production(..., expected=seq)` writes only while the stored sequence still equals `expected`
  (`None`: only while no pointer exists yet). Here that is a `filelock.FileLock` around
  read-compare-write plus an atomic `os.replace`.

The functions dispatch on the root's URI scheme through `_backend()`. Only `file://` (and plain paths)
is implemented. An S3 backend slots in behind the same API without touching callers: exclusive create
becomes `PutObject(versions/<n>/entry.json, IfNoneMatch="*")`, the CAS becomes `PutObject(production.json,
IfMatch=<object ETag>)` (or `IfNoneMatch="*"` for the first pointer), and the history becomes one object
per sequence (`history/<seq>.json`) instead of an appended file. The caller-visible `sequence` stays the
contract; the S3 backend would map it to the object's ETag internally.
"""

from __future__ import annotations

import json
import os
import re
from datetime import UTC, datetime
from typing import Any

from tasks import layout, store

ENTRY = "entry.json"
DECISION = "decision.json"
POINTER = "production.json"
HISTORY = "production_history.jsonl"
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

    def read_version(self, version: int) -> dict[str, Any] | None:
        path = store.local_path(self.version_uri(version))
        if not path.is_file():
            return None  # never registered, or its entry is still being written
        return store.read_json(self.version_uri(version))

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


def _backend(root: str, name: str) -> _FileBackend:
    prefix = layout.registry(root, name)
    scheme = prefix.split("://", 1)[0] if "://" in prefix else "file"
    if scheme != "file":
        raise NotImplementedError(f"registry backend for '{scheme}://' is not available in this build")
    return _FileBackend(prefix)


# -- public API -------------------------------------------------------------------------------------


def registry_uri(root: str, name: str) -> str:
    return layout.registry(root, name)


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


def get_version(root: str, name: str, version: int) -> dict[str, Any] | None:
    return _backend(root, name).read_version(int(version))


def list_versions(root: str, name: str) -> list[dict[str, Any]]:
    """Every registered version, oldest first (a version whose entry is still being written is left out)."""
    backend = _backend(root, name)
    entries = (backend.read_version(n) for n in backend.version_numbers())
    return [entry for entry in entries if entry is not None]


def find_versions(root: str, name: str, **match: Any) -> list[dict[str, Any]]:
    """Versions whose entry has every given key equal to the given value, e.g. run_uri=..., job_id=..."""
    return [e for e in list_versions(root, name) if all(e.get(k) == v for k, v in match.items())]


def read_decision(root: str, name: str, version: int) -> dict[str, Any] | None:
    backend = _backend(root, name)
    uri = backend.version_uri(int(version), DECISION)
    return store.read_json(uri) if store.exists(uri) else None


def write_decision(root: str, name: str, version: int, decision: dict[str, Any]) -> None:
    store.write_json(_backend(root, name).version_uri(int(version), DECISION), decision)


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
        if current is None or not current.get("stack"):
            raise RegistryError(f"registry '{name}' has no earlier production version to roll back to")
        stack = list(current["stack"])
        target = stack.pop()

        def make(
            cur: dict[str, Any] | None, target: int = target, stack: list[int] = stack
        ) -> dict[str, Any]:
            return _record(cur, target, stack, "rollback", f"rollback from version {cur['version']}")

        if backend.swap_pointer(current["sequence"], make) is not None:
            return target
    raise RegistryError(f"registry '{name}': the production pointer kept moving; rollback gave up")
