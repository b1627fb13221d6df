"""Committed training checkpoints: what a retried training resumes from.

The Trainer writes `checkpoint-<step>/` (weights, optimizer, scheduler, RNG and trainer state); the
train step then writes `manifest.json` into it (every file with its sha256, written last and
atomically). Only a checkpoint whose manifest verifies is resumed from: a process killed while the
Trainer was writing leaves a directory without a manifest, and a file that changed afterwards no
longer matches its sha256. Either is removed when a retry looks for where to resume.

Checkpoints live beside the train output (`<job>/checkpoints/`), not inside it: the step protocol
deletes an uncommitted output before a retry (`tasks.runtime.step.execute`), and the checkpoints must survive
exactly that. The key derives from the job's output key, so a retry finds the same directory.

On an s3:// store the Trainer writes into the prefix's local mirror (`store.local_dir`); `commit` uploads
the checkpoint and then its manifest, the listing of checkpoints is the bucket's (so a retry on another
machine sees them), and the checkpoint chosen to resume from is fetched into the mirror, every file
checked against its sha256 on the way (`store.verify_local`). Functions take the mirror directory; its store
URI is `store.uri_of(directory)`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import shutil
from collections.abc import Collection
from pathlib import Path
from typing import Any

from tasks.storage import store

log = logging.getLogger("tunerflow.checkpoints")

DIR_PATTERN = re.compile(r"^checkpoint-(\d+)$")
# Hyperparameters that change how often things are written, not what is learned: a retry that
# changes them may still resume.
# A time limit only says when to stop: a retry with a longer one still resumes.
NOT_LEARNING = (
    "logging_steps",
    "save_steps",
    "save_total_limit",
    "merge_adapter",
    "name",
    "max_train_minutes",
)


def checkpoints_uri(job: dict[str, Any]) -> str:
    """`<job>/checkpoints`: the train output's sibling, which a retry's reset of the output keeps."""
    if job.get("checkpoints"):
        return job["checkpoints"]
    parent, _, _ = job["output"].rstrip("/").rpartition("/")
    return store.join(parent, "checkpoints")


def fingerprint(job: dict[str, Any]) -> str:
    """What a checkpoint was trained on; a checkpoint of another model, dataset or recipe is not resumed."""
    hparams = {k: v for k, v in job["hparams"].items() if k not in NOT_LEARNING}
    learning = {
        "model": job["model"],
        "dataset": job["dataset"].get("uri"),
        "training": job["training"],
        "hparams": hparams,
    }
    return hashlib.sha256(json.dumps(learning, sort_keys=True, default=str).encode()).hexdigest()


def step_of(directory: Path) -> int | None:
    match = DIR_PATTERN.match(directory.name)
    return int(match.group(1)) if match else None


def _by_step(root: Path) -> list[tuple[int, Path]]:
    # The local directory and the store's listing: on a remote store they differ by what earlier tries,
    # on any machine, uploaded.
    names = {child.name for child in root.iterdir() if child.is_dir()} if root.is_dir() else set()
    names |= set(store.list_dir(store.uri_of(root)))
    found = [(step_of(root / name), root / name) for name in names]
    return sorted((step, child) for step, child in found if step is not None)


def _remove(directory: Path) -> None:
    store.remove(store.uri_of(directory))  # on a remote store the objects and the local mirror
    shutil.rmtree(directory, ignore_errors=True)


def commit(directory: Path, info: dict[str, Any]) -> dict[str, Any]:
    """Make a checkpoint the Trainer finished writing resumable: its manifest, written last."""
    return store.commit(store.uri_of(directory), info)


def problem(directory: Path, expected_fingerprint: str | None = None) -> str | None:
    """Why a checkpoint cannot be resumed from, or None when it can."""
    uri = store.uri_of(directory)
    if not store.is_committed(uri):
        return "no manifest.json (the process stopped while writing it)"
    try:
        manifest = store.read_json(store.join(uri, store.MANIFEST))
        # On a remote store this downloads into `directory` first, each file checked against the manifest.
        changed = store.verify_local(uri)
    except store.StoreError as error:
        return f"files differ from manifest.json: {error}"
    except (OSError, ValueError, KeyError) as error:
        return f"unreadable manifest.json ({error})"
    if changed:
        return f"files differ from manifest.json: {', '.join(changed[:5])}"
    found = (manifest.get("result") or {}).get("fingerprint")
    if expected_fingerprint is not None and found != expected_fingerprint:
        return "written for another model, dataset or hyperparameters"
    return None


def committed(root: Path) -> list[tuple[int, Path]]:
    """Checkpoints with a manifest, oldest first (manifests not verified: see `resumable`)."""
    return [(step, path) for step, path in _by_step(root) if store.is_committed(store.uri_of(path))]


def resumable(root: Path, expected_fingerprint: str) -> tuple[Path, dict[str, Any]] | None:
    """The newest checkpoint whose manifest verifies, with its manifest result; None for a fresh start.

    Every checkpoint that cannot be resumed from is removed on the way, so that a later save at the
    same step never mixes its files with a half-written directory's.
    """
    chosen: tuple[Path, dict[str, Any]] | None = None
    for _step, path in reversed(_by_step(root)):
        reason = problem(path, expected_fingerprint) if chosen is None else None
        if chosen is None and reason is None:
            chosen = (path, store.read_json(store.join(store.uri_of(path), store.MANIFEST))["result"])
            continue
        if chosen is not None and store.is_committed(store.uri_of(path)):
            continue  # an older committed checkpoint: kept, pruning decides its fate
        log.warning("removing checkpoint %s: %s", path.name, reason or "no manifest.json")
        _remove(path)
    return chosen


def prune(root: Path, keep: int, protect: Collection[int] = ()) -> list[int]:
    """Delete all but the newest `keep` committed checkpoints, and those whose step is in `protect`
    (early stopping's best); returns the steps removed.

    Only committed checkpoints count towards `keep`, so a half-written newer one never pushes out
    the last checkpoint a retry could resume from.
    """
    done = committed(root)
    newest = done[-1][0] if done else None
    removed = []
    for step, path in done[: max(len(done) - keep, 0)]:
        if step in protect:
            continue
        _remove(path)
        removed.append(step)
    for step, path in _by_step(root):
        # An uncommitted directory older than the newest commit is the leftover of a killed save.
        if newest is not None and step < newest and not store.is_committed(store.uri_of(path)):
            _remove(path)
            removed.append(step)
    return sorted(removed)


def snapshot(files: list[Path], base: Path, directory: Path) -> None:
    """Copy the run's logs so far (metrics.jsonl, TensorBoard events) into a checkpoint before it is
    committed: a retry restores them and the logs continue from the checkpoint's step without
    repeating the steps the killed process logged after it."""
    for source in files:
        if source.is_file():
            target = directory / "logs" / source.relative_to(base)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)


def restore_logs(directory: Path, base: Path) -> None:
    """Put a checkpoint's log snapshot back under the train output (see `snapshot`)."""
    logs = directory / "logs"
    if logs.is_dir():
        shutil.copytree(logs, base, dirs_exist_ok=True)
