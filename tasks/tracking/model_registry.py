"""The tunerflow registry's versions mirrored to the MLflow Model Registry.

The registered model is named as the tunerflow registry model. The version a run registered becomes an
MLflow model version tagged with its lineage (`tunerflow.version`, experiment, run, job, dataset name and
version, base model, metrics) and linked to its job's run; it is found again by `tunerflow.version`, so
a retry creates nothing twice. The `production` alias follows tunerflow's production pointer whenever a
run is tracked: set on the mirrored version production points at (after a promotion, or a rollback to
a mirrored version), removed when production points at a version MLflow does not have.

Its source is the version's weights in the store (`s3://...`). A tracking server accepts a local path
(`file://`) only inside the run's artifacts, so on a `file://` store the source is
`runs:/<job run>/tunerflow-model`, where a `model.json` names the store URI (tag `tunerflow.store_uri`
carries it in both cases).

`client` is an `mlflow.MlflowClient`; mlflow is imported inside the functions (it is heavy).
"""

from __future__ import annotations

import contextlib
import json
import tempfile
from pathlib import Path
from typing import Any

from tasks.storage import store
from tasks.tracking.collect import RunRecord

ALIAS = "production"
TAG_VERSION = "tunerflow.version"
POINTER_DIR = "tunerflow-model"


def lineage_tags(record: RunRecord, entry: dict[str, Any]) -> dict[str, str]:
    """The MLflow model version's tags: where the tunerflow version came from."""
    dataset, base = entry.get("dataset") or {}, entry.get("base_model") or {}
    tags = {
        TAG_VERSION: str(entry["version"]),
        "tunerflow.registry": record.registry_name,
        "tunerflow.experiment": record.experiment,
        "tunerflow.run_uri": str(entry.get("run_uri")),
        "tunerflow.job_id": str(entry.get("job_id")),
        "tunerflow.label": str(entry.get("label")),
        "tunerflow.dataset": str(dataset.get("name")),
        "tunerflow.dataset_version": str(dataset.get("version")),
        "tunerflow.base_model": str(base.get("name")),
        "tunerflow.base_model_source": str(base.get("hub_id") or ""),
        "tunerflow.store_uri": str(source_uri(entry)),
        "tunerflow.primary": str(entry.get("primary")),
    }
    tags.update({f"metric.{key}": str(value) for key, value in (entry.get("metrics") or {}).items()})
    return tags


def source_uri(entry: dict[str, Any]) -> str | None:
    """The version's weights in the store: the merged or whole model, else the adapter."""
    return entry.get("model_uri") or entry.get("adapter_uri")


def _ensure_model(client: Any, name: str) -> None:
    # Imported when it runs: mlflow is heavy (see the module docstring).
    from mlflow.exceptions import MlflowException

    try:
        client.get_registered_model(name)
    except MlflowException as error:
        if error.error_code != "RESOURCE_DOES_NOT_EXIST":
            raise
        try:
            client.create_registered_model(
                name, tags={"tunerflow.registry": name}, description=f"tunerflow registry model {name}"
            )
        except MlflowException as again:  # created in between by a concurrent run
            if again.error_code != "RESOURCE_ALREADY_EXISTS":
                raise


def mirrored(client: Any, name: str) -> dict[str, Any]:
    """The MLflow model versions of `name` that mirror a tunerflow version, by tunerflow version number."""
    found = {}
    for version in client.search_model_versions(f"name='{name}'"):
        number = version.tags.get(TAG_VERSION)
        if number is not None:
            found.setdefault(number, version)
    return found


def _pointer_source(client: Any, job_run_id: str, entry: dict[str, Any]) -> str:
    """`runs:/<job run>/tunerflow-model`, after logging model.json (the store URIs) there."""
    pointer = {key: entry.get(key) for key in ("registry", "version", "model_uri", "adapter_uri", "exports")}
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "model.json"
        path.write_text(json.dumps(pointer, indent=2, sort_keys=True))
        client.log_artifact(job_run_id, str(path), POINTER_DIR)
    return f"runs:/{job_run_id}/{POINTER_DIR}"


def mirror_version(client: Any, record: RunRecord, job_runs: dict[str, str], tracking_uri: str) -> Any:
    """The MLflow model version mirroring the version this run registered (created once); None when the
    run registered none."""
    entry = record.version
    if not entry:
        return None
    name = record.registry_name
    _ensure_model(client, name)
    existing = mirrored(client, name).get(str(entry["version"]))
    if existing is not None:
        return existing
    run_id = job_runs.get(str(entry.get("job_id")))
    source = source_uri(entry) or ""
    remote_server = tracking_uri.startswith(("http://", "https://"))
    if run_id and (not source or (store.is_local(source) and remote_server)):
        source = _pointer_source(client, run_id, entry)
    return client.create_model_version(
        name,
        source,
        run_id=run_id,
        tags=lineage_tags(record, entry),
        description=f"tunerflow {name} v{entry['version']}: {entry.get('label')}",
    )


def sync_alias(client: Any, record: RunRecord) -> str | None:
    """Point `production` at the MLflow version mirroring tunerflow's production version (or remove it
    when that version is not mirrored). Returns the MLflow version it points at, or None."""
    # Imported when it runs: mlflow is heavy (see the module docstring).
    from mlflow.exceptions import MlflowException

    name = record.registry_name
    if record.production_version is None and record.version is None:
        return None
    try:
        client.get_registered_model(name)
    except MlflowException:
        return None
    target = mirrored(client, name).get(str(record.production_version))
    if target is not None:
        client.set_registered_model_alias(name, ALIAS, target.version)
        return str(target.version)
    with contextlib.suppress(MlflowException):  # no alias to remove
        client.delete_registered_model_alias(name, ALIAS)
    return None
