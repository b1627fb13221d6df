"""The production pointer of a model registry: which registered version serves, moved by compare-and-swap.

Layout under `layout.registry(root, name)`:

    production.json             the pointer: {"version", "sequence", "etag", "updated_at", "previous",
                                "action", "reason", "actor", ...}
    history/<seq>.json          every pointer record ever written, one per sequence (zero-padded)
    production_history.jsonl    the same, one JSON line each, as file:// registries kept it before: still read
    refused/<at>-<id>.json      every move that lost the race (a promotion or a rollback whose expected
                                sequence was no longer the pointer's): what it tried, what it found, why

The pointer moves by compare-and-swap on its `sequence` (exposed as the string `etag` too):
`set_production(..., expected=seq)` writes only while the stored sequence still equals `expected` (`None`:
only while no pointer exists yet). The backend decides the race: the pointer is read with its tag, the
sequence compared, then written with replace-if-unchanged (the first one with create-if-absent); a
writer that lost is told False, and its attempt is kept as a refused record (`history(..., refused=True)`
shows it among the moves, after the record that beat it), so a promotion racing a rollback leaves both
in the history: the winner's move and the loser's refusal with its reason. Every record carries its own
sequence, so two records never share a tag (no ABA). A history record is an exclusive create too, so
writing one twice is harmless. See docs/registry.md.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

from tasks.registry.records import ENTRY, Records, RegistryError, now, version_path

POINTER = "production.json"
HISTORY = "history"
LEGACY_HISTORY = "production_history.jsonl"
REFUSED = "refused"
# How many earlier production versions the pointer remembers for rollback.
MAX_STACK = 100


class PointerMoved(RegistryError):
    """The pointer is no longer at the sequence the caller decided on: nothing was written."""


def _history_name(sequence: int) -> str:
    # Zero-padded so the listing's lexical order is the sequence order.
    return f"{int(sequence):012d}.json"


def _swap(
    records: Records, expected: int | None, make_record: Callable[[dict[str, Any] | None], dict[str, Any]]
) -> dict[str, Any] | None:
    """Write `make_record(current)` only while the pointer's sequence equals `expected`.

    Returns the record written, or None when the pointer moved under us.
    """
    found = records.read_tagged(POINTER)
    current, tag = found if found else (None, None)
    sequence = current["sequence"] if current else None
    if sequence != expected:
        return None
    if current is not None:
        # The record being replaced goes into the history first (a no-op when its writer already put it
        # there), so a writer that died between its pointer write and its history write loses no record.
        records.create(current, HISTORY, _history_name(current["sequence"]))
    record = make_record(current)
    written = records.replace(record, tag, POINTER) if tag else records.create(record, POINTER)
    if not written:
        return None
    records.create(record, HISTORY, _history_name(record["sequence"]))
    return record


def _refuse(
    records: Records, attempted: str, version: int | None, expected: int | None, actor: str | None
) -> dict[str, Any]:
    """Keep a move that lost the race, with the pointer that beat it; returns the record written.

    Its own key (time + random id, created exclusively) so refusals never collide with each other or
    with the pointer's history, whose names are sequences."""
    found = records.read(POINTER) or {}
    at = now()
    seen = f"sequence {expected}" if expected is not None else "no pointer"
    target = f" to version {version}" if version is not None else ""
    reason = (
        f"{attempted}{target} refused: it was decided at {seen}, but production had moved "
        f"to version {found.get('version')} (sequence {found.get('sequence')}, "
        f"{found.get('action') or 'first move'}) before it could be written; re-read and decide again"
    )
    record = {
        "action": "refused",
        "attempted": attempted,
        "version": version,
        "expected": expected,
        "found_sequence": found.get("sequence"),
        "found_version": found.get("version"),
        "reason": reason,
        "actor": actor,
        "updated_at": at,
    }
    records.create(record, REFUSED, f"{at.replace(':', '')}-{uuid.uuid4().hex[:12]}.json")
    return record


def refused(root: str, name: str) -> list[dict[str, Any]]:
    """Every move that lost the race, oldest first."""
    return _refused(Records(root, name))


def pointer(root: str, name: str) -> dict[str, Any] | None:
    """The raw production pointer record, without the entry."""
    return Records(root, name).read(POINTER)


def production(root: str, name: str) -> dict[str, Any] | None:
    """The production pointer ({"version", "sequence", "etag", "updated_at", "previous", ...}) plus
    `entry`, the registered version it points at; None while nothing is in production.

    `previous` is the version that `rollback` would return to (None: nothing to roll back to).
    """
    records = Records(root, name)
    record = records.read(POINTER)
    if record is None:
        return None
    return {**record, "entry": records.read(*version_path(record["version"], ENTRY))}


def history(root: str, name: str, refused: bool = False) -> list[dict[str, Any]]:
    """Every pointer record ever written, oldest first; with `refused`, the moves that lost the race too
    (`action` "refused"), each after the pointer record it lost to."""
    records = Records(root, name)
    found = {record["sequence"]: record for record in records.lines(LEGACY_HISTORY)}
    for entry in records.names(HISTORY):
        record = records.read(HISTORY, entry)
        if record is not None:
            found[record["sequence"]] = record
    current = records.read(POINTER)
    # The newest record reaches the history just after the pointer; show it already.
    if current is not None:
        found.setdefault(current["sequence"], current)
    moves = [found[sequence] for sequence in sorted(found)]
    if not refused:
        return moves
    # A refusal sorts after the record it lost to (its found_sequence), refusals among themselves by time.
    keyed = [((r["sequence"], 0, ""), r) for r in moves]
    keyed += [((r.get("found_sequence") or 0, 1, r["updated_at"]), r) for r in _refused(records)]
    return [record for _, record in sorted(keyed, key=lambda pair: pair[0])]


def _refused(records: Records) -> list[dict[str, Any]]:
    found = (records.read(REFUSED, entry) for entry in records.names(REFUSED))
    return sorted((r for r in found if r is not None), key=lambda r: r["updated_at"])


def _record(
    current: dict[str, Any] | None,
    version: int,
    stack: list[int],
    action: str,
    reason: str | None,
    actor: str | None,
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
        "actor": actor,
    }


def set_production(
    root: str,
    name: str,
    version: int,
    expected: int | None,
    reason: str | None = None,
    actor: str | None = None,
) -> bool:
    """Point production at `version` if the pointer's sequence is still `expected` (None: no pointer yet).

    `actor` (who moved it: a user's name; None for the pipeline's own promotion) is kept in the record.

    Returns False, writing nothing, when someone else moved the pointer first: re-read and decide again.
    """
    records = Records(root, name)
    version = int(version)
    if records.read(*version_path(version, ENTRY)) is None:
        raise RegistryError(f"registry '{name}' has no version {version}")

    def make(current: dict[str, Any] | None) -> dict[str, Any]:
        stack = list(current.get("stack", [])) if current else []
        if current and current["version"] != version:
            stack.append(current["version"])
        return _record(current, version, stack, "promote", reason, actor)

    if _swap(records, expected, make) is not None:
        return True
    _refuse(records, "promote", version, expected, actor)
    return False


def rollback(
    root: str, name: str, attempts: int = 10, actor: str | None = None, expected: int | None = None
) -> int:
    """Move production back to the version that was production before the current one; returns it.

    Uses the same CAS as `set_production`, retrying when the pointer moves concurrently. Rolling back
    repeatedly walks further back (v1 -> v2 -> v3, rollback: v2, rollback: v1). `actor` is recorded as by
    `set_production`. With `expected` (the pointer's sequence the caller saw), `PointerMoved` is raised and
    nothing written once the pointer is elsewhere, also when it moves between two attempts: a person who
    confirmed "roll back from v3" must not roll back whatever replaced v3 meanwhile.
    """
    records = Records(root, name)
    for _ in range(attempts):
        current = records.read(POINTER)
        if current is None:
            raise RegistryError(f"registry '{name}' has no production version yet, so nothing to roll back")
        if expected is not None and current["sequence"] != expected:
            # What it would have rolled back to was decided from the record at `expected`: not known here.
            _refuse(records, "rollback", None, expected, actor)
            raise PointerMoved(
                f"registry '{name}': production moved to version {current['version']} (sequence "
                f"{current['sequence']}, not {expected}) before the rollback; nothing was written"
            )
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
            reason = f"rollback from version {cur['version']}"
            return _record(cur, target, stack, "rollback", reason, actor)

        if _swap(records, current["sequence"], make) is not None:
            return target
        refusal = _refuse(records, "rollback", target, current["sequence"], actor)
        if expected is not None:
            # Lost to a move made after the caller's confirmation: it is not retried (one record, one error).
            raise PointerMoved(f"registry '{name}': {refusal['reason']}; nothing was written")
    raise RegistryError(f"registry '{name}': the production pointer kept moving; rollback gave up")
