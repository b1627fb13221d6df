"""The file:// backend (plain paths too): the store is a directory tree on a shared or local disk.

Exclusive create is a hard link of a complete temporary file (it fails instead of replacing); a
replace-if-unchanged holds a lock file beside the target around its read-compare-write, then renames.
The local copy of a prefix is the prefix itself, so uploads and downloads have nothing to move.

A full disk: every write first compares its size with the free space of the filesystem it lands on
(`shutil.disk_usage`) and refuses with NoSpace, writing nothing, when it does not fit; a write that
still meets ENOSPC (blocks taken meanwhile, filesystem overhead) removes its temporary file and raises
NoSpace too. Files become visible only by a rename of a complete temporary file, so a full disk never
leaves a truncated file, and a commit's manifest (written last) never exists without its files.
"""

from __future__ import annotations

import errno
import glob
import hashlib
import os
import shutil
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import unquote

from tasks.storage.errors import NoSpace
from tasks.storage.mirror import sha256_file
from tasks.storage.uris import local_path

WILDCARDS = "*?["
LOCK_TIMEOUT_S = 60


# A full disk reports one of these; EDQUOT is a user's quota running out, the same to a caller.
FULL_ERRNOS = (errno.ENOSPC, errno.EDQUOT)


def _no_space(path: Path, needed: int, free: int | None) -> NoSpace:
    free_text = f"{free} bytes free" if free is not None else "the disk reported full"
    return NoSpace(
        f"no space to write {path}: {needed} bytes to write, {free_text} on its filesystem; nothing was "
        "written. Free space there (or point TUNERFLOW_STORE at a larger disk) and retry the step"
    )


def _free_bytes(path: Path) -> int:
    """Free bytes of the filesystem that holds `path` (or would: its nearest existing ancestor)."""
    probe = path
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    return shutil.disk_usage(probe).free


def ensure_room(path: Path, needed: int) -> None:
    """NoSpace, before anything is written, when `needed` bytes do not fit where `path` goes."""
    free = _free_bytes(path)
    if needed > free:
        raise _no_space(path, needed, free)


def _temporary(path: Path, data: bytes) -> str:
    """A complete temporary file beside `path` holding `data` (its directory created); NoSpace, with no
    temporary file left, when the disk cannot hold it."""
    ensure_room(path, len(data))
    name = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile("wb", dir=path.parent, delete=False, suffix=".tmp") as handle:
            name = handle.name
            handle.write(data)
        return name
    except OSError as error:
        if name is not None:
            Path(name).unlink(missing_ok=True)
        if error.errno in FULL_ERRNOS:
            raise _no_space(path, len(data), _free_bytes(path)) from None
        raise


def _pattern(uri: str) -> str:
    """The filesystem path or pattern of a plain path or file:// URI (a '?' stays a wildcard, which
    `local_path` would read as a query)."""
    if not uri.startswith("file://"):
        return uri
    rest = uri.removeprefix("file://")
    if rest.startswith("localhost/"):
        rest = rest.removeprefix("localhost")
    return unquote(rest)


def _glob_base(pattern: str) -> Path:
    """The directory part of a pattern before its first component holding a wildcard."""
    fixed: list[str] = []
    for part in Path(pattern).parts:
        if any(c in part for c in WILDCARDS):
            break
        fixed.append(part)
    return Path(*fixed) if fixed else Path(".")


class FileBackend:
    mirrored = False

    def read_bytes(self, uri: str) -> bytes:
        return local_path(uri).read_bytes()

    def read_tagged(self, uri: str) -> tuple[bytes, str] | None:
        try:
            data = self.read_bytes(uri)
        except FileNotFoundError:
            return None
        return data, hashlib.sha256(data).hexdigest()

    def write_bytes(self, uri: str, data: bytes) -> None:
        path = local_path(uri)
        os.replace(_temporary(path, data), path)

    def create_if_absent(self, uri: str, data: bytes) -> bool:
        path = local_path(uri)
        tmp = _temporary(path, data)
        try:
            os.link(tmp, path)
        except FileExistsError:
            return False
        finally:
            os.unlink(tmp)
        return True

    def replace_if_unchanged(self, uri: str, data: bytes, tag: str) -> bool:
        from filelock import FileLock

        path = local_path(uri)
        path.parent.mkdir(parents=True, exist_ok=True)
        with FileLock(str(path.with_name(f".{path.name}.lock")), timeout=LOCK_TIMEOUT_S):
            current = self.read_tagged(uri)
            if current is None or current[1] != tag:
                return False
            self.write_bytes(uri, data)
        return True

    def exists(self, uri: str) -> bool:
        return local_path(uri).exists()

    def list_names(self, uri: str) -> list[str]:
        path = local_path(uri)
        return sorted(child.name for child in path.iterdir()) if path.is_dir() else []

    def modified_at(self, uri: str) -> str | None:
        path = local_path(uri)
        if not path.exists():
            return None
        return datetime.fromtimestamp(path.stat().st_mtime, UTC).isoformat(timespec="seconds")

    def remove(self, uri: str) -> bool:
        path = local_path(uri)
        if path.is_dir():
            shutil.rmtree(path)
            return True
        if path.exists():
            path.unlink()
            return True
        return False

    def upload_files(self, prefix: str, files: dict[str, Path]) -> None:
        root = local_path(prefix)
        moving = {rel: path for rel, path in files.items() if path.resolve() != (root / rel).resolve()}
        # All of it must fit before the first file is copied; each copy checks again (`_temporary`).
        ensure_room(root, sum(path.stat().st_size for path in moving.values()))
        for rel, path in moving.items():
            target = root / rel
            os.replace(_temporary(target, path.read_bytes()), target)

    def download_files(self, prefix: str, files: dict[str, dict]) -> None:
        """Nothing to download: the prefix is its own local copy."""

    def stored_sha256(self, uri: str) -> str | None:

        path = local_path(uri)
        return sha256_file(path) if path.is_file() else None

    def local_copies(self, pattern: str, cache: Path | None = None) -> list[tuple[str, Path]]:
        """The files a path or glob names (`**` recursive), sorted, each with its name below the
        pattern's fixed directory (a single file: its own name)."""
        pattern = _pattern(pattern)
        literal = Path(pattern)
        if literal.is_file() or not any(c in pattern for c in WILDCARDS):
            if literal.is_dir():
                raise IsADirectoryError(
                    f"{literal} is a directory; give a file or a glob such as {literal / '*.jsonl'}"
                )
            if not literal.is_file():
                raise FileNotFoundError(f"no such file {literal.absolute()}; check the path")
            return [(literal.name, literal)]
        files = sorted(Path(p) for p in glob.glob(pattern, recursive=True) if Path(p).is_file())
        if not files:
            raise FileNotFoundError(
                f"no file matches {Path(pattern).absolute()}; check the directory and the pattern"
            )
        base = _glob_base(pattern)
        return [(path.relative_to(base).as_posix(), path) for path in files]
