"""The conf of one retrain: the retraining template, the registry's champion as the base model, and the new
data of the triggering asset events (or the run's Params), validated as `finetune_experiment` would; and,
once that run is over, what it decided.

Light on purpose (pydantic, the store and the registry): the `retrain_champion` tasks run in the Airflow
worker. jsonschema is imported when a conf is validated.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping
from typing import Any

from tasks.config.base import ConfError
from tasks.config.catalog import resolve_experiment
from tasks.config.experiment import parse_experiment
from tasks.config.params import field_schemas
from tasks.registry import versions as registry
from tasks.registry.retraining_settings import RetrainingConfig, RetrainingError
from tasks.storage import layout, store

# Keys of an asset event's extra (or the retrain DAG's Params) that change the retrain's data.
DATA_KEYS = ("dataset_uri", "dataset_name", "datasets")
# The base-model name is `<registry>-v<version>`; ModelConfig names are at most 63 characters.
_MAX_SLUG = 63


class NoChampion(RetrainingError):
    """The registry has no production version to retrain yet."""


def champion_model(store_root: str, name: str) -> dict[str, Any]:
    """The production version of `name` as a base model: `{"version", "model": {"name", "uri"}}`.

    The registered full weights (`model_uri`: the export's merged model, or a fully fine-tuned model);
    for a LoRA champion registered without them, the merged model its training wrote
    (`hparams.merge_adapter`). NoChampion / RetrainingError say what to run or change.
    """
    champion = registry.production(store_root, name)
    if champion is None:
        raise NoChampion(
            f"registry '{name}' has no production model yet, so there is nothing to retrain; run "
            f"finetune_experiment with promotion.registry_name '{name}' first"
        )
    version, entry = champion["version"], champion["entry"] or {}
    uri = entry.get("model_uri") or _merged_by_training(entry)
    if not uri:
        raise RetrainingError(
            f"champion v{version} of '{name}' is a LoRA adapter without full weights, and a retrain "
            "starts from full weights; promote a version with export enabled (export merges the "
            "adapter) or with hparams merge_adapter: true"
        )
    if not store.exists(store.join(uri, "config.json")):
        raise RetrainingError(
            f"champion v{version} of '{name}': its weights at {uri} are gone (no config.json there)"
        )
    return {"version": version, "model": {"name": _model_name(name, version), "uri": uri}}


def _merged_by_training(entry: dict[str, Any]) -> str | None:
    if not entry.get("run_uri") or not entry.get("job_id"):
        return None
    trained = store.committed_result(layout.step(layout.job(entry["run_uri"], entry["job_id"]), "train"))
    return (trained or {}).get("merged_uri")


def _model_name(name: str, version: int) -> str:
    suffix = f"-v{version}"
    return name[: _MAX_SLUG - len(suffix)] + suffix


def asset_event_dicts(triggering: Mapping[Any, Iterable[Any]] | None) -> list[dict[str, Any]]:
    """`context["triggering_asset_events"]` as plain dicts, oldest first:
    `{"uri", "name", "extra", "timestamp"}` (timestamp in ISO 8601)."""
    events = []
    for asset_events in (triggering or {}).values():
        for event in asset_events:
            timestamp = event.timestamp
            events.append(
                {
                    "uri": event.asset.uri,
                    "name": event.asset.name,
                    "extra": dict(event.extra or {}),
                    "timestamp": timestamp.isoformat() if hasattr(timestamp, "isoformat") else str(timestamp),
                }
            )
    return sorted(events, key=lambda e: e["timestamp"])


def data_update(events: Iterable[dict[str, Any]], params: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The data keys (`DATA_KEYS`) of the events' extras, later events winning, then non-null Params."""
    update: dict[str, Any] = {}
    for event in events:
        extra = event.get("extra") or {}
        found = {key: extra[key] for key in DATA_KEYS if extra.get(key) is not None}
        if found:
            update = found  # one event's data is one coherent change: do not mix keys of two events
    given = {key: (params or {}).get(key) for key in DATA_KEYS}
    given = {key: value for key, value in given.items() if value not in (None, "", [])}
    if given:
        update = given
    return update


def apply_data_update(conf: dict[str, Any], update: Mapping[str, Any]) -> dict[str, Any]:
    """The conf with the new data: `datasets` replaces the list; `dataset_uri` replaces where the rows of
    `dataset_name` (default: the only dataset) come from."""
    conf = copy.deepcopy(conf)
    if "datasets" in update:
        datasets = update["datasets"]
        if not isinstance(datasets, list) or not datasets:
            raise RetrainingError("'datasets' must be a non-empty list of dataset confs")
        conf["datasets"] = datasets
    if "dataset_uri" not in update:
        if "dataset_name" in update:
            raise RetrainingError("'dataset_name' was given without 'dataset_uri'; give both")
        return conf
    uri = update["dataset_uri"]
    if not isinstance(uri, str) or not uri.strip():
        raise RetrainingError(f"'dataset_uri' must be a non-empty string, got {uri!r}")
    datasets = conf["datasets"]
    names = [d.get("name") for d in datasets]
    wanted = update.get("dataset_name")
    if wanted is None:
        if len(datasets) != 1:
            raise RetrainingError(
                f"'dataset_uri' was given without 'dataset_name', but the retrain trains on "
                f"{len(datasets)} datasets ({', '.join(map(str, names))}); name the one it replaces"
            )
        wanted = names[0]
    if wanted not in names:
        raise RetrainingError(
            f"'dataset_name' '{wanted}' is not a dataset of the retrain; it has: {', '.join(map(str, names))}"
        )
    index = names.index(wanted)
    # The new uri is the one way to the rows: drop the template's other ways (the config refuses two).
    kept = {
        k: v
        for k, v in datasets[index].items()
        if k not in ("sources", "train_uri", "validation_uri", "test_uri", "registered")
    }
    datasets[index] = {**kept, "uri": uri}
    return conf


def validate_experiment_conf(conf: dict[str, Any]) -> dict[str, Any]:
    """What finetune_experiment checks: each Param's JSON Schema (as the api-server does when the run is
    created), then the full pydantic model with presets and models resolved (as `validate_conf` does).
    Raises ConfError naming every bad field."""
    import jsonschema  # Airflow's dependency, not tunerflow's: only the worker validates a retrain conf

    problems = []
    for field, schema in field_schemas().items():
        if field in conf:
            try:
                jsonschema.validate(conf[field], schema, format_checker=jsonschema.FormatChecker())
            except jsonschema.ValidationError as error:
                where = ".".join(str(p) for p in error.absolute_path)
                problems.append(f"{field}{'.' + where if where else ''}: {error.message}")
    if problems:
        raise ConfError("invalid experiment conf:\n" + "\n".join(problems))
    experiment = parse_experiment(conf)
    try:
        resolve_experiment(experiment)
    except ValueError as error:
        raise ConfError(f"invalid experiment conf:\n{error}") from None
    return conf


def build_retrain_conf(
    settings: RetrainingConfig,
    store_root: str,
    events: Iterable[dict[str, Any]] = (),
    params: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The finetune_experiment conf of one retrain: the template, the champion as the base model, the
    new data of the triggering asset events (or Params), validated as finetune_experiment would."""
    events = list(events)
    champion = champion_model(store_root, settings.registry_name)
    conf = settings.experiment_conf(champion["model"])
    update = data_update(events, params)
    conf = apply_data_update(conf, update)
    why = (
        f"asset event on {', '.join(sorted({e['uri'] for e in events}))}"
        if events
        else "schedule or manual trigger"
    )
    note = f"Retrain of {settings.registry_name} v{champion['version']} ({why})"
    if update:
        note += f"; new data: {update}"
    conf["description"] = f"{note}. {conf.get('description', '')}".strip()
    return validate_experiment_conf(conf)


def retrain_outcome(store_root: str, conf: dict[str, Any], finetune_run_id: str) -> dict[str, Any]:
    """What the finetune run decided about the retrained model (its `promotion.json`)."""
    run_uri = layout.run(store_root, conf["name"], finetune_run_id)
    decision_uri = store.join(run_uri, "promotion.json")
    decision = store.read_json(decision_uri) if store.exists(decision_uri) else None
    if decision is None:
        return {
            "finetune_run_id": finetune_run_id,
            "run_uri": run_uri,
            "promoted": False,
            "reason": "the finetune run recorded no promotion decision",
        }
    keys = (
        "promoted",
        "reason",
        "version",
        "champion_version",
        "champion_metric",
        "candidate_metric",
        "primary",
    )
    return {"finetune_run_id": finetune_run_id, "run_uri": run_uri, **{k: decision.get(k) for k in keys}}
