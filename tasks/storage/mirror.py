"""The one integrity scheme for local copies of remote objects: a copy is trusted when its sha256 equals
the one expected for it.

Where the expected sha256 comes from:

- a file under a committed prefix: the prefix's `manifest.json` (`holds`);
- any other object (a dataset file a user uploaded, read by `tasks.data`): the sha256 computed while it
  was downloaded, kept beside the copy in `.<name>.mirror.json` with the object's version (its ETag) at
  that time (`is_current`, `record`). A new version on the remote side, or a copy changed locally (for
  instance rewritten by a `fetch` of a committed prefix), makes the copy stale and it is downloaded again.

A process remembers the sha256 of the files it hashed while their size and mtime hold, so a step that
fetches its base model for its tokenizer and again for its weights hashes it once; a record kept beside a
copy carries the same memo across processes.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from tasks.storage.errors import StoreError

BLOCK = 1 << 20

# sha256 of files this process hashed, keyed by path and valid while (size, mtime) hold.
_HASHED: dict[Path, tuple[int, int, str]] = {}


def sha256_file(path: Path, chunk: int = BLOCK) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def _remember(path: Path, digest: str) -> None:
    stat = path.stat()
    _HASHED[path] = (stat.st_size, stat.st_mtime_ns, digest)


def holds(path: Path, meta: dict[str, Any]) -> bool:
    """The local file has the content `meta` ({"size", "sha256"}) describes (size first, then sha256)."""
    if not path.is_file():
        return False
    stat = path.stat()
    if stat.st_size != meta["size"]:
        return False
    known = _HASHED.get(path)
    if known is None or known[:2] != (stat.st_size, stat.st_mtime_ns):
        _remember(path, sha256_file(path))
    return _HASHED[path][2] == meta["sha256"]


def place(partial: Path, target: Path, expected: str | None, what: str) -> str:
    """Move a finished download into place once its sha256 is the expected one (any, when None);
    returns the sha256. A mismatch removes the download and raises, naming `what`."""
    digest = sha256_file(partial)
    if expected is not None and digest != expected:
        partial.unlink(missing_ok=True)
        raise StoreError(
            f"{what} does not match its sha256 in manifest.json (expected {expected[:12]}..., downloaded "
            f"{digest[:12]}...): the object changed after it was committed; re-run the step that wrote it "
            "(remove the prefix first)"
        )
    os.replace(partial, target)
    _remember(target, digest)
    return digest


def partial_path(target: Path) -> Path:
    """Where a download of `target` is written before `place` checks it (hidden, per process)."""
    return target.with_name(f".{target.name}.{os.getpid()}.part")


# --- copies of objects no manifest lists -------------------------------------------------------------


def _record_path(target: Path) -> Path:
    return target.with_name(f".{target.name}.mirror.json")


def is_current(target: Path, version: str) -> bool:
    """The copy is of the object's `version` and still has the sha256 it was downloaded with."""
    try:
        kept = json.loads(_record_path(target).read_text())
    except (OSError, ValueError):
        return False
    if kept.get("version") != version or not target.is_file():
        return False
    stat = target.stat()
    if (stat.st_size, stat.st_mtime_ns) == (kept.get("size"), kept.get("mtime_ns")):
        _HASHED.setdefault(target, (stat.st_size, stat.st_mtime_ns, kept["sha256"]))
    return holds(target, kept)


def forget(target: Path) -> None:
    """Drop a copy's record before replacing the copy: a crash in between must not pair the old record
    with new bytes."""
    _record_path(target).unlink(missing_ok=True)


def record(target: Path, version: str, digest: str) -> None:
    """Remember that `target` holds the object's `version`, whose sha256 is `digest`."""
    stat = target.stat()
    kept = {"version": version, "sha256": digest, "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}
    path = _record_path(target)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(kept, sort_keys=True))
    os.replace(tmp, path)
