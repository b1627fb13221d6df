"""Retraining the champion: the `retrain_champion` DAG's settings and logic, as plain functions.

A retrain is an ordinary `finetune_experiment` run whose base model is the registry's current production
version, so the experiment's own champion gate (`promotion.margin`, champion rescored on the new rows)
decides whether the retrained model replaces it. This module builds and validates that run's conf.

Light on purpose (pydantic, yaml, the store and the registry): the DAG file loads the settings at parse
time, and the tasks run in the Airflow worker. `build_schedule` imports `airflow.sdk` inside itself.
"""

from __future__ import annotations

import copy
import os
import zoneinfo
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from tasks.config.base import SlugStr, format_validation_error
from tasks.config.catalog import config_dir
from tasks.registry import versions as registry
from tasks.storage import layout, store

CONFIG_ENV = "TUNERFLOW_RETRAIN_CONFIG"
FINETUNE_DAG_ID = "finetune_experiment"

# The Asset every promotion updates, whatever the registry: an outlet URI is fixed when the DAG is
# parsed, so the registry name, version and model travel in the event's extra (`promotion_event_extra`).
PRODUCTION_ASSET_NAME = "tunerflow_production_model"
PRODUCTION_ASSET_URI = "tunerflow://registry/production"
# The convention for upstream data assets; any URI Airflow accepts (s3://bucket/datasets/x, ...) works.
DATA_ASSET_PREFIX = "tunerflow://datasets/"

# Keys of an asset event's extra (or the retrain DAG's Params) that change the retrain's data.
DATA_KEYS = ("dataset_uri", "dataset_name", "datasets")
# The base-model name is `<registry>-v<version>`; ModelConfig names are at most 63 characters.
_MAX_SLUG = 63


class RetrainingError(ValueError):
    """A retraining config or retrain request that cannot be honoured; the message says what to change."""


class NoChampion(RetrainingError):
    """The registry has no production version to retrain yet."""


def _cron_problem(expression: str) -> str | None:
    from croniter import croniter

    if croniter.is_valid(expression):
        return None
    return (
        f"schedule '{expression}' is not a cron expression; give five fields "
        "(minute hour day-of-month month day-of-week, e.g. '0 3 * * 1') or a preset such as @daily, "
        "or null for no time schedule"
    )


def _asset_problem(uri: str) -> str | None:
    parts = urlsplit(uri)
    if not parts.scheme or not (parts.netloc or parts.path.strip("/")):
        return (
            f"asset '{uri}' is not a URI; use e.g. '{DATA_ASSET_PREFIX}<dataset>' or "
            "'s3://bucket/datasets/<dataset>'"
        )
    if parts.scheme.lower() == "airflow":
        return f"asset '{uri}': the scheme airflow:// is reserved by Airflow"
    if uri.rstrip("/") == PRODUCTION_ASSET_URI:
        return (
            f"asset '{uri}' is the promotion event this DAG's own runs emit; scheduling on it would "
            "retrain after every promotion, in a loop"
        )
    return None


class RetrainingConfig(BaseModel):
    """`include/configs/retraining.yaml` (or `$TUNERFLOW_RETRAIN_CONFIG`): when and how to retrain."""

    model_config = ConfigDict(extra="forbid")

    registry_name: SlugStr = Field(
        description="Registry model whose production version is retrained; the retrain's promotion "
        "gate compares against it and moves its production pointer."
    )
    schedule: str | None = Field(
        None,
        description="Cron expression for time-based retraining (five fields, e.g. '0 3 * * 1', or a "
        "preset such as @daily), or null for none. With assets too, either one starts a run.",
    )
    timezone: str = Field("UTC", description="IANA time zone the cron schedule is read in.")
    assets: list[str] = Field(
        default_factory=list,
        description="Asset URIs whose events start a retrain, e.g. 'tunerflow://datasets/tuna' that an "
        "upstream pipeline updates through POST /api/v2/assets/events when new data lands. Any one of "
        "them starts a run.",
    )
    poll_interval_s: int = Field(
        30,
        ge=1,
        le=3600,
        description="How often the retrain run checks the finetune_experiment run it started.",
    )
    experiment: dict[str, Any] = Field(
        description="The experiment conf of each retrain (datasets, hparams, training, scoring, export, "
        "promotion), as in include/configs/experiments/*.yaml but without `models`: the base model is "
        "the current champion. `name` defaults to '<registry_name>-retrain'; `promotion.registry_name` "
        "is registry_name."
    )

    @model_validator(mode="after")
    def _cross_field_rules(self) -> RetrainingConfig:
        problems: list[str] = []
        if self.schedule is not None:
            problem = _cron_problem(self.schedule)
            if problem:
                problems.append(problem)
        try:
            zoneinfo.ZoneInfo(self.timezone)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            problems.append(
                f"timezone '{self.timezone}' is not an IANA time zone such as UTC or Europe/Berlin"
            )
        problems += [p for p in (_asset_problem(uri) for uri in self.assets) if p]
        repeated = sorted({uri for uri in self.assets if self.assets.count(uri) > 1})
        if repeated:
            problems.append(f"assets: repeated {', '.join(repeated)}")
        problems += self._experiment_problems()
        if problems:
            raise ValueError("; ".join(problems))
        return self

    def _experiment_problems(self) -> list[str]:
        template = self.experiment
        if "models" in template:
            return [
                "experiment.models must not be set: a retrain's base model is always the current "
                f"champion of '{self.registry_name}'"
            ]
        promotion = template.get("promotion") or {}
        problems = []
        named = promotion.get("registry_name")
        if named is not None and named != self.registry_name:
            problems.append(
                f"experiment.promotion.registry_name '{named}' differs from registry_name "
                f"'{self.registry_name}'; leave it out (the retrain promotes into registry_name)"
            )
        if promotion.get("enabled") is False:
            problems.append(
                "experiment.promotion.enabled is false: a retrain could never replace the champion"
            )
        if problems:
            return problems
        # The template must be a valid experiment once the champion is filled in: checked now, with a
        # stand-in model, so a broken template is a DAG import error instead of a failed run each week.
        from tasks.config.experiment import ExperimentConfig

        stand_in = {"name": "champion", "uri": "/champion"}
        try:
            ExperimentConfig.model_validate(self.experiment_conf(stand_in))
        except ValidationError as error:
            return [f"experiment.{line}" for line in format_validation_error(error).splitlines()]
        return []

    def experiment_conf(self, model: dict[str, Any]) -> dict[str, Any]:
        """The template with `model` as the only base model and promotion into `registry_name`."""
        conf = copy.deepcopy(self.experiment)
        conf.setdefault("name", f"{self.registry_name}-retrain")
        conf["models"] = [model]
        conf["promotion"] = {**(conf.get("promotion") or {}), "registry_name": self.registry_name}
        return conf


def config_path() -> Path:
    return Path(os.environ.get(CONFIG_ENV) or config_dir() / "retraining.yaml")


def load_settings(path: Path | str | None = None) -> RetrainingConfig:
    """The validated retraining config; RetrainingError names the file and every bad field."""
    path = Path(path) if path is not None else config_path()
    if not path.is_file():
        raise RetrainingError(
            f"retraining config {path} does not exist; write one (see docs/retraining.md) or point "
            f"${CONFIG_ENV} at it"
        )
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as error:
        raise RetrainingError(f"retraining config {path} is not valid YAML: {error}") from None
    if not isinstance(raw, dict):
        raise RetrainingError(f"retraining config {path} must be a mapping of settings")
    try:
        return RetrainingConfig.model_validate(raw)
    except ValidationError as error:
        raise RetrainingError(
            f"invalid retraining config {path}:\n{format_validation_error(error)}"
        ) from None


def build_schedule(settings: RetrainingConfig) -> Any:
    """The DAG schedule: cron and assets (either starts a run), one of them, or None (manual only)."""
    from airflow.sdk import Asset, AssetOrTimeSchedule, CronTriggerTimetable

    timetable = (
        CronTriggerTimetable(settings.schedule, timezone=settings.timezone) if settings.schedule else None
    )
    assets = [Asset(uri) for uri in settings.assets]
    if not assets:
        return timetable
    # Any one of the assets, not all of them: each upstream pipeline announces its own data.
    condition = assets[0]
    for asset in assets[1:]:
        condition = condition | asset
    if timetable is None:
        return condition
    return AssetOrTimeSchedule(timetable=timetable, assets=condition)


# -- the champion -----------------------------------------------------------------------------------


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


# -- asset events and new data ----------------------------------------------------------------------


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


# -- the retrain conf -------------------------------------------------------------------------------


def validate_experiment_conf(conf: dict[str, Any]) -> dict[str, Any]:
    """What finetune_experiment checks: each Param's JSON Schema (as the api-server does when the run is
    created), then the full pydantic model with presets and models resolved (as `validate_conf` does).
    Raises ConfError naming every bad field."""
    import jsonschema

    from tasks.config.base import ConfError
    from tasks.config.catalog import resolve_experiment
    from tasks.config.experiment import parse_experiment
    from tasks.config.params import field_schemas

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


# -- the promotion event ----------------------------------------------------------------------------


def promotion_event_extra(run: dict[str, Any], decision: dict[str, Any]) -> dict[str, Any] | None:
    """The extra of the production-model Asset event, or None when nothing was promoted (no event)."""
    from tasks.pipeline.plan import load_experiment

    if not decision.get("promoted") or decision.get("version") is None:
        return None
    experiment = load_experiment(run["run_uri"])
    name = experiment["promotion"]["registry_name"] or experiment["name"]
    entry = registry.get_version(run["store_root"], name, decision["version"]) or {}
    return {
        "registry": name,
        "version": decision["version"],
        "registry_uri": decision.get("registry_uri") or registry.registry_uri(run["store_root"], name),
        "model_uri": entry.get("model_uri"),
        "adapter_uri": entry.get("adapter_uri"),
        "exports": entry.get("exports") or {},
        "primary": decision.get("primary"),
        "metric": decision.get("candidate_metric"),
        "replaced_version": decision.get("champion_version"),
        "run_uri": run["run_uri"],
        "reason": decision.get("reason"),
    }
