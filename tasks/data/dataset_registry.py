"""The dataset registry: dataset definitions registered once by name and referenced from experiments.

Layout under `<root>/dataset_registry/<name>/`:

    revisions/<NNNN>.json   one revision of the definition (never rewritten): the DatasetConfig dict with
                            `name` = the registered name, plus `revision`, `created_at` and `note`
    current.json            a copy of the latest revision, written last (atomically)

Prepared versions are not kept here: the prepare step writes them to `layout.dataset_version(root, name,
version)` and commits each with a manifest; this module only reads them back.

Concurrency: a revision number is claimed by an exclusive create (`store.create_json`), so two updates
racing on one name cannot both write revision n; the loser re-reads the latest revision, merges its
changes onto it and claims n + 1. `current.json` is then republished until it matches the highest revision,
so it converges on the latest one whatever order the writers finish in.

Every read and write goes through `tasks.storage.store`, so an S3 store slots in behind the same functions.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError

from tasks.config import allowed_paths
from tasks.config.base import SLUG, format_validation_error
from tasks.config.dataset import DatasetConfig
from tasks.storage import layout, store

REGISTRY_DIR = "dataset_registry"
CURRENT = "current.json"
REVISION_FILE = re.compile(r"^(\d+)\.json$")
# Keys a revision record holds beside the DatasetConfig fields.
META_KEYS = ("revision", "created_at", "note")
# Each way to give the rows, with the keys that belong to it; setting one clears the others.
SOURCE_MODES: dict[str, tuple[str, ...]] = {
    "uri": ("uri",),
    "sources": ("sources",),
    "train_uri": ("train_uri", "validation_uri", "test_uri"),
}
# The names the OpenAI-compatible API registers uploaded files under (`file-<hex>`, tasks.openai_api.files):
# jobs use them by file id, so the trigger form leaves them out of its pick list.
UPLOAD_PREFIX = "file-"
# How many times an update re-merges after losing a race for the next revision number.
MAX_ATTEMPTS = 20


class DatasetRegistryError(ValueError):
    """A registry request that cannot be honoured (unknown name or revision, duplicate, no change)."""


class DefinitionError(DatasetRegistryError):
    """A definition that does not validate; the message has one `field: problem` line per problem."""


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _check_name(name: str) -> str:
    # Names become store keys: refuse anything but a slug before it is joined into a path.
    if not isinstance(name, str) or not re.match(SLUG, name):
        raise DatasetRegistryError(
            f"'{name}' is not a valid dataset name: use a-z, 0-9, '.', '_' or '-', starting with a letter "
            "or digit (at most 63 characters)"
        )
    return name


def _prefix(store_root: str, name: str) -> str:
    return store.join(store_root, REGISTRY_DIR, _check_name(name))


def _revision_uri(store_root: str, name: str, revision: int) -> str:
    return store.join(_prefix(store_root, name), "revisions", f"{revision:04d}.json")


def _current_uri(store_root: str, name: str) -> str:
    return store.join(_prefix(store_root, name), CURRENT)


def _revision_numbers(store_root: str, name: str) -> list[int]:
    names = store.list_dir(store.join(_prefix(store_root, name), "revisions"))
    return sorted(int(match.group(1)) for n in names if (match := REVISION_FILE.match(n)))


def registered_names(store_root: str) -> list[str]:
    """Every name with a published registration (a `current.json`), sorted."""
    names = store.list_dir(store.join(store_root, REGISTRY_DIR))
    return [n for n in names if re.match(SLUG, n) and store.exists(_current_uri(store_root, n))]


def _unknown(store_root: str, name: str) -> DatasetRegistryError:
    known = ", ".join(registered_names(store_root)) or "none"
    return DatasetRegistryError(f"no registered dataset '{name}'; registered: {known}")


def definition_of(record: dict[str, Any]) -> dict[str, Any]:
    """The DatasetConfig dict of a revision record (its revision, created_at and note left out)."""
    return {key: value for key, value in record.items() if key not in META_KEYS}


def validate(name: str, candidate: dict[str, Any]) -> dict[str, Any]:
    """The full DatasetConfig dict of a definition, or DefinitionError naming every bad field."""
    if candidate.get("registered") is not None:
        raise DefinitionError(
            f"invalid definition of dataset '{name}':\nregistered: a registered definition must give its "
            "rows itself (uri, sources or train_uri), not point at another registration"
        )
    try:
        config = DatasetConfig.model_validate(candidate)
    except ValidationError as error:
        raise DefinitionError(
            f"invalid definition of dataset '{name}':\n{format_validation_error(error)}"
        ) from None
    # Every setting is stored, defaults included, so a later change of a default does not silently
    # change what a registered dataset prepares.
    definition = config.model_dump(mode="json", exclude={"registered"})
    # Registering a file the deployment does not allow is refused (every path when the setting is unset).
    outside = allowed_paths.problems(allowed_paths.dataset_uris("", definition), allowed_paths.configured())
    if outside:
        raise DefinitionError(f"invalid definition of dataset '{name}':\n" + "\n".join(outside))
    return definition


def merge(base: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    """`changes` applied onto `base`; a None value resets that field to its default.

    Giving the rows another way (uri, sources or train_uri) drops the other ways, and the settings that
    only fit them: `split` when switching to pre-split inputs, dataset-level `format` and `columns` when
    switching to sources (they are set per source there).
    """
    merged = dict(base)
    for mode in SOURCE_MODES:
        if changes.get(mode) in (None, [], ""):
            continue
        for other, other_keys in SOURCE_MODES.items():
            if other != mode:
                for key in other_keys:
                    merged.pop(key, None)
        if mode == "train_uri" and "split" not in changes:
            merged.pop("split", None)
        if mode == "sources":
            for key in ("format", "columns"):
                if key not in changes:
                    merged.pop(key, None)
    for key, value in changes.items():
        if value is None:
            merged.pop(key, None)
        else:
            merged[key] = value
    return merged


def changed_fields(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """The definition fields that differ between two records (revision metadata left out)."""
    before, after = definition_of(old), definition_of(new)
    return sorted(key for key in before.keys() | after.keys() if before.get(key) != after.get(key))


def _record(name: str, config: dict[str, Any], revision: int, note: str) -> dict[str, Any]:
    return {**config, "name": name, "revision": revision, "created_at": _now(), "note": note}


def _publish_current(store_root: str, name: str) -> None:
    """Point current.json at the highest revision, repeating while newer revisions keep appearing."""
    while True:
        latest = _revision_numbers(store_root, name)[-1]
        store.write_json(
            _current_uri(store_root, name), store.read_json(_revision_uri(store_root, name, latest))
        )
        if _revision_numbers(store_root, name)[-1] == latest:
            return


def create(store_root: str, definition: dict[str, Any], note: str = "") -> dict[str, Any]:
    """Register a new dataset definition as revision 1; returns its record."""
    name = _check_name(definition.get("name", ""))
    if store.exists(_current_uri(store_root, name)):
        raise DatasetRegistryError(
            f"dataset '{name}' is already registered; use `tunerflow dataset update {name}` to change it"
        )
    config = validate(name, definition_of(definition))
    record = _record(name, config, 1, note)
    try:
        store.create_json(_revision_uri(store_root, name, 1), record)
    except FileExistsError:
        # Revision 1 without current.json: another create is in flight, or one was interrupted.
        raise DatasetRegistryError(
            f"dataset '{name}' is already registered or being registered; if an earlier create or delete "
            f"was interrupted, run `tunerflow dataset delete {name} --yes` first"
        ) from None
    _publish_current(store_root, name)
    return record


def get(store_root: str, name: str, revision: int | None = None) -> dict[str, Any]:
    """The current record of a registered dataset, or one of its earlier revisions."""
    current_uri = _current_uri(store_root, name)
    if not store.exists(current_uri):
        raise _unknown(store_root, name)
    if revision is None:
        return store.read_json(current_uri)
    uri = _revision_uri(store_root, name, revision)
    if not store.exists(uri):
        known = ", ".join(str(n) for n in _revision_numbers(store_root, name))
        raise DatasetRegistryError(f"dataset '{name}' has no revision {revision}; revisions: {known}")
    return store.read_json(uri)


def update(store_root: str, name: str, changes: dict[str, Any], note: str = "") -> dict[str, Any]:
    """Merge `changes` into the latest definition and write it as a new revision; returns its record."""
    get(store_root, name)  # unknown names fail here, before anything is merged
    if changes.get("name", name) != name:
        raise DefinitionError(
            f"invalid definition of dataset '{name}':\nname: a registered dataset cannot be renamed; "
            "create it under the new name and delete the old one"
        )
    for _ in range(MAX_ATTEMPTS):
        # Merge onto the highest revision, not current.json, which may still lag a concurrent update.
        latest = _revision_numbers(store_root, name)[-1]
        base = definition_of(store.read_json(_revision_uri(store_root, name, latest)))
        config = validate(name, merge(base, {**definition_of(changes), "name": name}))
        if config == validate(name, base):
            raise DatasetRegistryError(
                f"dataset '{name}': nothing changes (revision {latest} already has these settings)"
            )
        record = _record(name, config, latest + 1, note)
        try:
            store.create_json(_revision_uri(store_root, name, latest + 1), record)
        except FileExistsError:
            continue  # another update claimed this number: merge again onto its revision
        _publish_current(store_root, name)
        return record
    raise DatasetRegistryError(f"dataset '{name}': too many concurrent updates, try again")


def history(store_root: str, name: str) -> list[dict[str, Any]]:
    """Every revision record of a registered dataset, oldest first."""
    get(store_root, name)
    return [store.read_json(_revision_uri(store_root, name, n)) for n in _revision_numbers(store_root, name)]


def source_summary(config: dict[str, Any]) -> str:
    """One short phrase saying where a definition's rows come from."""
    if config.get("sources"):
        count = len(config["sources"])
        return f"{count} source{'s' if count != 1 else ''}"
    if config.get("train_uri"):
        given = [split for split in ("validation", "test") if config.get(f"{split}_uri")]
        return "pre-split: train" + "".join(f", {split}" for split in given)
    return str(config.get("uri"))


def format_summary(config: dict[str, Any]) -> str:
    """The row format, or each source's when the rows come from several sources."""
    if config.get("sources"):
        return ",".join(dict.fromkeys(source.get("format", "auto") for source in config["sources"]))
    return str(config.get("format", "auto"))


def _version_entry(store_root: str, name: str, version: str) -> dict[str, Any]:
    uri = layout.dataset_version(store_root, name, version)
    result = store.committed_result(uri)
    if result is not None:
        return {
            "version": version,
            "uri": uri,
            "ready": True,
            "state": "committed",
            "committed_at": store.modified_at(store.join(uri, store.MANIFEST)),
            "result": result,
        }
    error_uri = store.join(uri, "error.json")
    error = store.read_json(error_uri) if store.exists(error_uri) else None
    return {
        "version": version,
        "uri": uri,
        "ready": False,
        # No manifest: the preparation failed (it left error.json), or it is running or was interrupted.
        "state": "failed" if error else "incomplete",
        "committed_at": None,
        "modified_at": store.modified_at(uri),
        "error": error.get("message") if error else None,
    }


def prepared_versions(store_root: str, name: str) -> list[dict[str, Any]]:
    """Every version directory under datasets/<name>/, newest first; only `ready` ones are committed."""
    root = store.join(store_root, "datasets", _check_name(name))
    entries = [_version_entry(store_root, name, v) for v in store.list_dir(root) if not v.startswith(".")]
    entries.sort(key=lambda e: (e["committed_at"] or e.get("modified_at") or "", e["version"]), reverse=True)
    return entries


def validation_report(store_root: str, name: str, version: str) -> dict[str, Any] | None:
    """The validation_report.json the prepare step wrote for a version (failed ones have it too)."""
    uri = store.join(layout.dataset_version(store_root, _check_name(name), version), "validation_report.json")
    return store.read_json(uri) if store.exists(uri) else None


def list_datasets(store_root: str) -> list[dict[str, Any]]:
    """One summary row per registered dataset, sorted by name."""
    rows = []
    for name in registered_names(store_root):
        record = get(store_root, name)
        versions = prepared_versions(store_root, name)
        ready = [v for v in versions if v["ready"]]
        rows.append(
            {
                "name": name,
                "revision": record["revision"],
                "updated_at": record["created_at"],
                "source": source_summary(record),
                "format": format_summary(record),
                "prepared_versions": len(ready),
                "unfinished_versions": len(versions) - len(ready),
                "latest_version": ready[0]["version"] if ready else None,
                "latest_counts": ready[0]["result"].get("counts") if ready else None,
            }
        )
    return rows


def delete(store_root: str, name: str, purge: bool = False) -> dict[str, Any]:
    """Remove a registration (every revision) and, with `purge`, every prepared version of that name."""
    prefix = _prefix(store_root, name)
    revisions = _revision_numbers(store_root, name)
    # A registration interrupted half-way (revisions but no current.json) can be deleted too.
    if not store.exists(_current_uri(store_root, name)) and not revisions:
        raise _unknown(store_root, name)
    purged = [v["version"] for v in prepared_versions(store_root, name)] if purge else []
    # current.json first: the registration disappears at once, before its revisions are removed.
    store.remove(_current_uri(store_root, name))
    store.remove(prefix)
    if purge:
        store.remove(store.join(store_root, "datasets", name))
    return {"name": name, "revisions": revisions, "purged_versions": purged}


def resolve(store_root: str, dataset: dict[str, Any]) -> dict[str, Any]:
    """An experiment's dataset entry with its `registered` reference replaced by the registered definition.

    The definition keeps the registered name, so its prepared versions land beside the ones
    `tunerflow dataset prepare` makes and are listed by `tunerflow dataset show`; the experiment's own
    name stays the job label (the caller keeps it). Entries without `registered` are returned unchanged.
    """
    registered = dataset.get("registered")
    if not registered:
        return dataset
    try:
        # Refuses settings given beside `registered` with the config's own message.
        DatasetConfig.model_validate(dataset)
    except ValidationError as error:
        raise DefinitionError(
            f"invalid dataset entry '{dataset.get('name')}':\n{format_validation_error(error)}"
        ) from None
    return validate(registered, definition_of(get(store_root, registered)))
