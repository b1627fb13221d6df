"""Shared outputs built once across processes and machines (`build_once`)."""

from __future__ import annotations

import logging
import os
import socket
import time
from typing import Any

from tasks.storage.backend import create_json, read_json, remove
from tasks.storage.manifests import commit, committed_result, is_committed, reset
from tasks.storage.uris import local_dir

log = logging.getLogger("tunerflow.store")

CLAIM_STALE_S = 3600.0


def _claim_is_stale(claim: str, stale_after_s: float) -> bool:
    """A claim left by a builder that cannot finish: its process is gone on this host, or it is older
    than `stale_after_s` (a builder on another machine that died)."""
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
    `<prefix>.claim.json` (the backend's exclusive create) resets the prefix, calls `build(local_dir)` for
    the result and commits; the others wait for the manifest. A stale claim (see `_claim_is_stale`) is
    taken over. Returns the committed result."""
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
