"""The model registry: fine-tuned versions with their lineage.

Layout under `layout.registry(root, name)`:

    versions/<n>/entry.json     one registered version (immutable once written), n = 1, 2, 3, ...
    versions/<n>/decision.json  the promotion decision taken for it (written by tasks.registry.promotion)

A version number is claimed by creating its entry exclusively (the storage backend's create-if-absent:
a hard link on file://, `IfNoneMatch="*"` on S3): whoever creates `versions/<n>/entry.json` first owns
n; the loser retries with n + 1. A directory `versions/<n>/` without an entry still counts as taken, so
no number is handed out twice, and is left out of the listing.

The production pointer is `tasks.registry.production`; its functions are importable from here too, so a
caller needs one module for the whole registry. See docs/registry.md.
"""

from __future__ import annotations

import re
import time
from typing import Any

from tasks.registry.production import history, pointer, production, refused, rollback, set_production
from tasks.registry.records import Records, RegistryError, now, version_path
from tasks.storage import layout

__all__ = [
    "RegistryError",
    "base_models",
    "find_versions",
    "get_version",
    "history",
    "list_versions",
    "names",
    "now",
    "pointer",
    "production",
    "read_decision",
    "refused",
    "register",
    "registry_uri",
    "rollback",
    "set_production",
    "version_numbers",
    "write_decision",
]

DECISION = "decision.json"
# While a concurrent create of the same entry is still in flight (S3 answers 409), wait this long.
CLAIM_RETRY_S = 0.05
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


def registry_uri(root: str, name: str) -> str:
    return layout.registry(root, name)


def names(root: str) -> list[str]:
    """The registries under a store root that hold at least one version, sorted."""
    return [n for n in Records(root, "").names() if version_numbers(root, n)]


def _numbers(records: Records) -> list[int]:
    return sorted(int(n) for n in records.names("versions") if re.fullmatch(r"\d+", n))


def register(root: str, name: str, entry: dict[str, Any]) -> dict[str, Any]:
    """Add a new version with its lineage; returns the stored entry including its `version`.

    Lineage keys (missing ones are stored as empty): run_uri, job_id, label, base_model {name, hub_id},
    dataset {name, version}, hparams, metrics, exports {format: uri}, model_uri, created_at.
    Extra keys are kept as given.
    """
    records = Records(root, name)
    defaults: dict[str, Any] = {key: None for key in LINEAGE_KEYS}
    defaults.update(hparams={}, metrics={}, exports={})
    created_at = entry.get("created_at") or now()
    numbers = _numbers(records)
    n = (numbers[-1] if numbers else 0) + 1
    while True:
        stored = {**defaults, **entry, "registry": name, "version": n, "created_at": created_at}
        if records.create(stored, *version_path(n)):
            return stored
        if records.read(*version_path(n)) is not None:
            n += 1
        else:
            time.sleep(CLAIM_RETRY_S)  # another create of the same entry is in flight: retry the same n


def version_numbers(root: str, name: str) -> list[int]:
    """The registered version numbers, ascending (a listing only; no entry is read)."""
    return _numbers(Records(root, name))


def get_version(root: str, name: str, version: int) -> dict[str, Any] | None:
    return Records(root, name).read(*version_path(version))


def list_versions(root: str, name: str) -> list[dict[str, Any]]:
    """Every registered version, oldest first (a version whose entry is not written is left out)."""
    records = Records(root, name)
    entries = (records.read(*version_path(n)) for n in _numbers(records))
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
    return Records(root, name).read(*version_path(version, DECISION))


def write_decision(root: str, name: str, version: int, decision: dict[str, Any]) -> None:
    Records(root, name).write(decision, *version_path(version, DECISION))
