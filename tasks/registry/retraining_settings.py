"""The `retrain_champion` DAG's settings: the retraining config, its schedule and the Assets it listens to.

A retrain is an ordinary `finetune_experiment` run whose base model is the registry's current production
version, so the experiment's own champion gate (`promotion.margin`, champion rescored on the new rows)
decides whether the retrained model replaces it. `tasks.registry.retraining_conf` builds that run's conf
from these settings.

Light on purpose (pydantic, yaml): the DAG file loads the settings at parse time. `airflow.sdk` and
`croniter` (Airflow's dependencies, not tunerflow's) are imported where the schedule is checked and built.
"""

from __future__ import annotations

import copy
import os
import zoneinfo
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from tasks.config.base import SlugStr, format_validation_error
from tasks.config.catalog import config_dir
from tasks.config.experiment import ExperimentConfig
from tasks.registry.promotion_event import PRODUCTION_ASSET_URI

CONFIG_ENV = "TUNERFLOW_RETRAIN_CONFIG"
FINETUNE_DAG_ID = "finetune_experiment"
# The convention for upstream data assets; any URI Airflow accepts (s3://bucket/datasets/x, ...) works.
DATA_ASSET_PREFIX = "tunerflow://datasets/"


class RetrainingError(ValueError):
    """A retraining config or retrain request that cannot be honoured; the message says what to change."""


def _cron_problem(expression: str) -> str | None:
    from croniter import croniter  # Airflow's dependency: present wherever a DAG is parsed

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
    from airflow.sdk import Asset, AssetOrTimeSchedule, CronTriggerTimetable  # only where a DAG is parsed

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
