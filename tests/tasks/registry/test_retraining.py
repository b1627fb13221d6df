"""Retraining: the config model, the retrain conf built from the registry's champion, asset-event data."""

from __future__ import annotations

import copy
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

from tasks.config.base import ConfError
from tasks.config.catalog import config_dir
from tasks.config.experiment import ExperimentConfig
from tasks.contracts.planning import RunInfo
from tasks.contracts.promotion import PromotionDecision
from tasks.registry import versions as registry
from tasks.registry.promotion_event import promotion_event_extra
from tasks.registry.retraining_conf import (
    NoChampion,
    apply_data_update,
    asset_event_dicts,
    build_retrain_conf,
    champion_model,
    data_update,
    retrain_outcome,
)
from tasks.registry.retraining_settings import (
    CONFIG_ENV,
    RetrainingConfig,
    RetrainingError,
    config_path,
    load_settings,
)
from tasks.storage import layout, store

TEMPLATE = {
    "datasets": [{"name": "tuna", "uri": "builtin:tuna_identity", "split": "80,10,10"}],
    "hparams": [{"name": "a", "preset": "lora-fast", "max_steps": 2}],
    "scoring": {"metrics": ["rouge_l"], "primary": "rouge_l"},
    "export": {"enabled": False},
    "promotion": {"margin": 0.05},
}


def _settings(**overrides) -> dict:
    raw = {"registry_name": "tiny", "assets": ["tunerflow://datasets/tuna"], "experiment": TEMPLATE}
    raw.update(overrides)
    return raw


def _refusal(raw: dict) -> str:
    with pytest.raises(ValueError) as error:
        RetrainingConfig.model_validate(raw)
    return str(error.value)


# -- the config ---------------------------------------------------------------------------------------


def test_the_shipped_config_validates_and_its_template_is_a_valid_experiment():
    path = config_dir() / "retraining.yaml"
    settings = load_settings(path)
    raw = yaml.safe_load(path.read_text())
    assert settings.registry_name == raw["registry_name"] == "tuna"
    assert settings.schedule == raw["schedule"] and settings.assets == ["tunerflow://datasets/tuna"]
    conf = settings.experiment_conf({"name": "tuna-v3", "uri": "/models/tuna-v3"})
    experiment = ExperimentConfig.model_validate(conf)
    assert experiment.registry_name == "tuna" and experiment.models[0].uri == "/models/tuna-v3"


def test_the_location_comes_from_the_environment(tmp_path, monkeypatch):
    path = tmp_path / "mine.yaml"
    path.write_text(yaml.safe_dump(_settings(schedule=None)))
    monkeypatch.setenv(CONFIG_ENV, str(path))
    assert config_path() == path
    assert load_settings().registry_name == "tiny"
    monkeypatch.setenv(CONFIG_ENV, str(tmp_path / "missing.yaml"))
    with pytest.raises(RetrainingError, match=f"missing.yaml does not exist.*{CONFIG_ENV}"):
        load_settings()


def test_name_and_registry_default_from_the_registry_name():
    settings = RetrainingConfig.model_validate(_settings())
    conf = settings.experiment_conf({"name": "tiny-v1", "uri": "/m"})
    assert conf["name"] == "tiny-retrain"
    assert conf["promotion"] == {"margin": 0.05, "registry_name": "tiny"}
    assert "models" not in settings.experiment  # the template itself is left alone


@pytest.mark.parametrize(
    ("overrides", "says"),
    [
        ({"schedule": "every monday"}, "schedule 'every monday' is not a cron expression"),
        ({"timezone": "Mars/Olympus"}, "timezone 'Mars/Olympus' is not an IANA time zone"),
        ({"assets": ["datasets-tuna"]}, "asset 'datasets-tuna' is not a URI"),
        ({"assets": ["airflow://x"]}, "airflow:// is reserved"),
        ({"assets": ["tunerflow://registry/production"]}, "in a loop"),
        ({"assets": ["s3://b/d", "s3://b/d"]}, "assets: repeated s3://b/d"),
        (
            {"experiment": {**TEMPLATE, "models": [{"name": "x", "uri": "/x"}]}},
            "experiment.models must not be set",
        ),
        (
            {"experiment": {**TEMPLATE, "promotion": {"registry_name": "other"}}},
            "experiment.promotion.registry_name 'other' differs from registry_name 'tiny'",
        ),
        (
            {"experiment": {**TEMPLATE, "promotion": {"enabled": False}}},
            "could never replace the champion",
        ),
        (
            {"experiment": {**TEMPLATE, "datasets": [{"name": "tuna", "uri": "x", "split": "90,20,0"}]}},
            "experiment.datasets.0.split: split '90,20,0' sums to 110",
        ),
    ],
)
def test_bad_settings_are_refused_naming_the_field(overrides, says):
    assert says in _refusal(_settings(**overrides))


def test_every_problem_is_reported_at_once(tmp_path):
    path = tmp_path / "retraining.yaml"
    path.write_text(yaml.safe_dump(_settings(schedule="nope", timezone="Nowhere", assets=["airflow://a"])))
    with pytest.raises(RetrainingError) as error:
        load_settings(path)
    message = str(error.value)
    assert message.startswith(f"invalid retraining config {path}:")
    assert "'nope' is not a cron" in message and "'Nowhere'" in message and "reserved" in message


def test_unknown_keys_are_refused():
    assert "Extra inputs are not permitted" in _refusal(_settings(cron="0 3 * * *"))


# -- the champion -------------------------------------------------------------------------------------


def _model_dir(path: Path) -> str:
    path.mkdir(parents=True)
    (path / "config.json").write_text("{}")
    return path.as_uri()


def _promote(root: str, name: str, **entry) -> int:
    version = registry.register(root, name, {"metrics": {"rouge_l": 0.5}, **entry})["version"]
    current = registry.production(root, name)
    assert registry.set_production(root, name, version, current["sequence"] if current else None)
    return version


def test_no_champion_says_to_run_the_experiment_first(store_root):
    with pytest.raises(
        NoChampion, match=r"run finetune_experiment with promotion\.registry_name 'tiny' first"
    ):
        champion_model(store_root, "tiny")


def test_the_champion_is_its_registered_full_weights(store_root, tmp_path):
    _promote(store_root, "tiny", model_uri=_model_dir(tmp_path / "v1"))
    uri = _model_dir(tmp_path / "v2")
    _promote(store_root, "tiny", model_uri=uri)
    assert champion_model(store_root, "tiny") == {"version": 2, "model": {"name": "tiny-v2", "uri": uri}}


def test_a_lora_champion_uses_the_model_its_training_merged(store_root, tmp_path):
    run_uri = layout.run(store_root, "exp", "manual__1")
    train = layout.step(layout.job(run_uri, "tuna--tiny--a"), "train")
    merged = _model_dir(store.local_path(train) / "merged")
    store.commit(train, {"adapter_uri": "file:///adapter", "model_uri": None, "merged_uri": merged})
    _promote(store_root, "tiny", adapter_uri="file:///adapter", run_uri=run_uri, job_id="tuna--tiny--a")
    assert champion_model(store_root, "tiny")["model"]["uri"] == merged


def test_a_lora_champion_without_full_weights_says_how_to_get_them(store_root):
    _promote(store_root, "tiny", adapter_uri="file:///adapter", run_uri="file:///nowhere", job_id="j")
    with pytest.raises(RetrainingError, match=r"export enabled .* or with hparams merge_adapter: true"):
        champion_model(store_root, "tiny")


def test_a_champion_whose_weights_are_gone_is_named(store_root, tmp_path):
    _promote(store_root, "tiny", model_uri=(tmp_path / "deleted").as_uri())
    with pytest.raises(RetrainingError, match=r"champion v1 of 'tiny': its weights at .*deleted are gone"):
        champion_model(store_root, "tiny")


# -- asset events and new data ------------------------------------------------------------------------


def _event(uri: str, extra: dict, minute: int) -> SimpleNamespace:
    """The shape of Airflow's AssetEventDagRunReferenceResult that the DAG reads."""
    return SimpleNamespace(
        asset=SimpleNamespace(uri=uri, name=uri),
        extra=extra,
        timestamp=datetime(2026, 11, 23, 12, minute, tzinfo=UTC),
    )


def test_triggering_events_become_plain_dicts_oldest_first():
    later = _event("tunerflow://datasets/tuna", {"dataset_uri": "/new.jsonl", "from_rest_api": True}, 5)
    earlier = _event("s3://b/datasets/x", {}, 1)
    events = asset_event_dicts({"tuna": [later], "x": [earlier]})
    assert [e["uri"] for e in events] == ["s3://b/datasets/x", "tunerflow://datasets/tuna"]
    assert events[1]["extra"] == {"dataset_uri": "/new.jsonl", "from_rest_api": True}
    assert events[1]["timestamp"] == "2026-11-23T12:05:00+00:00"
    assert asset_event_dicts(None) == []


def test_the_latest_event_with_data_wins_and_params_win_over_events():
    events = [
        {"extra": {"dataset_uri": "/old.jsonl", "dataset_name": "tuna"}},
        {"extra": {"dataset_uri": "/new.jsonl"}},
        {"extra": {"from_rest_api": True}},  # no data keys: leaves the data alone
    ]
    assert data_update(events) == {"dataset_uri": "/new.jsonl"}  # keys of two events are not mixed
    params = {"dataset_uri": "/manual.jsonl", "dataset_name": None}
    assert data_update(events, params) == {"dataset_uri": "/manual.jsonl"}
    assert data_update([], {"dataset_uri": None, "dataset_name": None}) == {}


def test_a_new_dataset_uri_replaces_every_other_way_to_the_rows():
    conf = {"datasets": [{"name": "tuna", "train_uri": "/t", "test_uri": "/e", "format": "alpaca"}]}
    updated = apply_data_update(conf, {"dataset_uri": "s3://b/tuna.jsonl"})
    assert updated["datasets"] == [{"name": "tuna", "format": "alpaca", "uri": "s3://b/tuna.jsonl"}]
    assert conf["datasets"][0]["train_uri"] == "/t"  # the input is not modified


def test_dataset_updates_that_cannot_be_applied_say_why():
    two = {"datasets": [{"name": "a", "uri": "/a"}, {"name": "b", "uri": "/b"}]}
    with pytest.raises(RetrainingError, match="trains on 2 datasets \\(a, b\\); name the one"):
        apply_data_update(two, {"dataset_uri": "/new"})
    with pytest.raises(RetrainingError, match="'c' is not a dataset of the retrain; it has: a, b"):
        apply_data_update(two, {"dataset_uri": "/new", "dataset_name": "c"})
    with pytest.raises(RetrainingError, match="without 'dataset_uri'"):
        apply_data_update(two, {"dataset_name": "a"})
    assert (
        apply_data_update(two, {"dataset_uri": "/new", "dataset_name": "b"})["datasets"][1]["uri"] == "/new"
    )
    replaced = apply_data_update(two, {"datasets": [{"name": "c", "uri": "/c"}]})
    assert replaced["datasets"] == [{"name": "c", "uri": "/c"}]


# -- the retrain conf ---------------------------------------------------------------------------------


def test_the_retrain_conf_starts_from_the_champion_and_takes_the_events_data(store_root, tmp_path):
    settings = RetrainingConfig.model_validate(_settings())
    uri = _model_dir(tmp_path / "champion")
    _promote(store_root, "tiny", model_uri=uri)
    events = asset_event_dicts(
        {"tuna": [_event("tunerflow://datasets/tuna", {"dataset_uri": "/data/new.jsonl"}, 3)]}
    )
    conf = build_retrain_conf(settings, store_root, events, {"dataset_uri": None, "dataset_name": None})
    assert conf["models"] == [{"name": "tiny-v1", "uri": uri}]
    assert conf["datasets"] == [{"name": "tuna", "split": "80,10,10", "uri": "/data/new.jsonl"}]
    assert conf["promotion"] == {"margin": 0.05, "registry_name": "tiny"}
    assert conf["name"] == "tiny-retrain"
    assert conf["description"].startswith("Retrain of tiny v1 (asset event on tunerflow://datasets/tuna)")
    assert ExperimentConfig.model_validate(conf).registry_name == "tiny"
    # Without an event, the template's data.
    plain = build_retrain_conf(settings, store_root)
    assert plain["datasets"] == TEMPLATE["datasets"]
    assert "schedule or manual trigger" in plain["description"]


def test_a_retrain_conf_finetune_experiment_would_refuse_is_refused_here(store_root, tmp_path):
    settings = RetrainingConfig.model_validate(_settings())
    _promote(store_root, "tiny", model_uri=_model_dir(tmp_path / "champion"))
    # The shape JSON Schema refuses (the api-server would answer 400).
    bad_shape = {"datasets": [{"name": "tuna", "uri": "/x", "split": "98-2"}]}
    with pytest.raises(ConfError, match=r"datasets\.0\.split: '98-2' does not match"):
        build_retrain_conf(settings, store_root, params=bad_shape)
    # A rule only the pydantic model checks (validate_conf would fail the run).
    bad_sum = {"datasets": [{"name": "tuna", "uri": "/x", "split": "50,10,10"}]}
    with pytest.raises(ConfError, match="split '50,10,10' sums to 70"):
        build_retrain_conf(settings, store_root, params=bad_sum)
    # A preset that does not exist, found when presets are resolved.
    broken = RetrainingConfig.model_validate(
        _settings(experiment={**TEMPLATE, "hparams": [{"name": "x", "preset": "no-such-preset"}]})
    )
    with pytest.raises(ConfError, match="preset 'no-such-preset' not found"):
        build_retrain_conf(broken, store_root)


def test_no_champion_stops_the_conf_before_anything_else(store_root):
    settings = RetrainingConfig.model_validate(_settings())
    with pytest.raises(NoChampion, match="no production model yet"):
        build_retrain_conf(settings, store_root)


# -- after the run ------------------------------------------------------------------------------------


def test_the_outcome_is_the_finetune_runs_promotion_decision(store_root):
    conf = {"name": "tiny-retrain"}
    run_uri = layout.run(store_root, "tiny-retrain", "retrain__scheduled__1")
    missing = retrain_outcome(store_root, conf, "retrain__scheduled__1")
    assert missing["promoted"] is False and "no promotion decision" in missing["reason"]
    decision = {"promoted": True, "reason": "beats", "version": 2, "champion_version": 1, "extra": "x"}
    store.write_json(store.join(run_uri, "promotion.json"), decision)
    outcome = retrain_outcome(store_root, conf, "retrain__scheduled__1")
    assert outcome["promoted"] is True and outcome["version"] == 2 and outcome["champion_version"] == 1
    assert outcome["run_uri"] == run_uri and "extra" not in outcome


def test_the_promotion_event_carries_the_registry_version_and_model(store_root, tmp_path):
    run_uri = layout.run(store_root, "exp", "manual__1")
    experiment = ExperimentConfig.model_validate(
        {**copy.deepcopy(TEMPLATE), "name": "exp", "models": [{"name": "m", "uri": "/m"}]}
    ).model_dump(mode="json")
    store.write_json(store.join(run_uri, "experiment.json"), {"experiment": experiment})
    uri = _model_dir(tmp_path / "merged")
    version = registry.register(store_root, "exp", {"model_uri": uri, "exports": {"onnx": "file:///o"}})[
        "version"
    ]
    run = RunInfo(run_uri=run_uri, store_root=store_root)
    decision = {"promoted": True, "version": version, "primary": "rouge_l", "candidate_metric": 0.7}
    promoted = PromotionDecision(**decision, champion_version=None, reason="no champion yet")
    extra = promotion_event_extra(run, promoted)
    assert extra["registry"] == "exp" and extra["version"] == version
    assert extra["model_uri"] == uri and extra["exports"] == {"onnx": "file:///o"}
    assert extra["registry_uri"] == registry.registry_uri(store_root, "exp")
    assert (extra["metric"], extra["run_uri"]) == (0.7, run_uri)
    assert promotion_event_extra(run, promoted.model_copy(update={"promoted": False})) is None
