"""The retrain_champion DAG: parsed from its config (schedule, assets, poll interval), wired to
finetune_experiment, fast to import, and a clear skip while there is no champion."""

from __future__ import annotations

import importlib.util
import itertools
import json
import subprocess
import sys

import pytest
import yaml

from tests.conftest import REPO

DAG_FILE = REPO / "dags" / "retrain_champion.py"
TEMPLATE = {
    "datasets": [{"name": "tuna", "uri": "builtin:tuna_identity", "split": "80,10,10"}],
    "hparams": [{"name": "a", "preset": "lora-fast", "max_steps": 2}],
    "scoring": {"metrics": ["rouge_l"], "primary": "rouge_l"},
    "export": {"enabled": False},
}
_loaded = itertools.count()


def _load(tmp_path, monkeypatch, **settings):
    """The DAG as the dag processor parses it, with `settings` as the retraining config."""
    path = tmp_path / f"retraining-{next(_loaded)}.yaml"
    path.write_text(yaml.safe_dump({"registry_name": "tiny", "experiment": TEMPLATE, **settings}))
    monkeypatch.setenv("TUNERFLOW_RETRAIN_CONFIG", str(path))
    spec = importlib.util.spec_from_file_location(f"retrain_champion_{path.stem}", DAG_FILE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.dag


def test_cron_and_assets_give_an_asset_or_time_schedule(tmp_path, monkeypatch):
    from airflow.sdk import Asset, AssetOrTimeSchedule, CronTriggerTimetable

    dag = _load(
        tmp_path,
        monkeypatch,
        schedule="0 3 * * 1",
        timezone="Europe/Berlin",
        assets=["tunerflow://datasets/tuna", "s3://bucket/datasets/tuna"],
    )
    timetable = dag.timetable
    assert isinstance(timetable, AssetOrTimeSchedule)
    assert isinstance(timetable.timetable, CronTriggerTimetable)
    assert timetable.timetable.expression == "0 3 * * 1"
    assert str(timetable.timetable.timezone) == "Europe/Berlin"
    # Either asset starts a run (an OR), not both together.
    condition = timetable.asset_condition
    assert type(condition).__name__ == "AssetAny"
    assert {a.uri for a in condition.objects} == {"tunerflow://datasets/tuna", "s3://bucket/datasets/tuna"}
    assert Asset("tunerflow://datasets/tuna") in condition.objects


def test_only_a_cron_schedule_or_only_assets_or_neither(tmp_path, monkeypatch):
    from airflow.sdk import CronTriggerTimetable

    cron = _load(tmp_path, monkeypatch, schedule="@daily")
    assert isinstance(cron.timetable, CronTriggerTimetable)

    assets = _load(tmp_path, monkeypatch, assets=["tunerflow://datasets/tuna"])
    assert type(assets.timetable).__name__ == "AssetTriggeredTimetable"
    assert assets.timetable.asset_condition.uri == "tunerflow://datasets/tuna"

    manual = _load(tmp_path, monkeypatch)
    assert type(manual.timetable).__name__ == "NullTimetable"


def test_the_tasks_trigger_finetune_experiment_and_wait_for_its_verdict(tmp_path, monkeypatch):
    dag = _load(tmp_path, monkeypatch, poll_interval_s=7)
    assert dag.dag_id == "retrain_champion" and dag.max_active_runs == 1
    assert set(dag.task_ids) == {"build_conf", "train_challenger", "outcome"}
    trigger = dag.get_task("train_challenger")
    assert trigger.upstream_task_ids == {"build_conf"}
    assert dag.get_task("outcome").upstream_task_ids == {"build_conf", "train_challenger"}
    assert trigger.trigger_dag_id == "finetune_experiment"
    assert trigger.wait_for_completion is True and trigger.poke_interval == 7
    assert trigger.fail_when_dag_is_paused is True
    assert trigger.trigger_run_id == "retrain__{{ run_id }}"


def test_params_let_a_manual_run_bring_new_data(tmp_path, monkeypatch):
    dag = _load(tmp_path, monkeypatch)
    params = dag.params.dump()
    assert params == {"dataset_uri": None, "dataset_name": None}
    schema = dag.params.get_param("dataset_uri").schema
    param = dag.params.get_param("dataset_uri")
    assert schema["type"] == ["null", "string"] and "replaces" in param.description


def test_a_bad_config_is_an_import_error_naming_the_problem(tmp_path, monkeypatch, airflow_db):
    from airflow.dag_processing.dagbag import DagBag

    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump({"registry_name": "tiny", "schedule": "weekly", "experiment": TEMPLATE}))
    monkeypatch.setenv("TUNERFLOW_RETRAIN_CONFIG", str(path))
    bag = DagBag(dag_folder=str(DAG_FILE))
    [error] = bag.import_errors.values()
    assert f"invalid retraining config {path}" in error
    assert "schedule 'weekly' is not a cron expression" in error


def test_the_dag_imports_fast_without_the_ml_stack(tmp_path):
    probe = f"""
import json, sys, time, importlib.util
import airflow.sdk
started = time.perf_counter()
spec = importlib.util.spec_from_file_location("retrain_champion", {str(DAG_FILE)!r})
spec.loader.exec_module(importlib.util.module_from_spec(spec))
heavy = sorted(m for m in sys.modules if m.split(".")[0] in
               ("torch", "transformers", "peft", "trl", "onnx", "onnxruntime", "datasets", "evaluate"))
print(json.dumps({{"seconds": time.perf_counter() - started, "heavy": heavy}}))
"""
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=REPO, check=True)
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["heavy"] == []
    assert report["seconds"] < 1.0


def test_without_a_champion_the_run_skips_and_says_why(tmp_path, monkeypatch, store_root, airflow_db, capfd):
    dag = _load(tmp_path, monkeypatch)
    run = dag.test()
    out, err = capfd.readouterr()
    assert "registry 'tiny' has no production model yet" in out + err
    states = {ti.task_id: str(ti.state) for ti in run.get_task_instances()}
    assert states == {"build_conf": "skipped", "train_challenger": "skipped", "outcome": "skipped"}
    assert str(run.state) == "success"


@pytest.mark.parametrize("registry_name", ["tiny"])
def test_build_conf_returns_the_validated_retrain_conf(
    tmp_path, monkeypatch, store_root, airflow_db, registry_name
):
    """With a champion, build_conf's XCom is the conf train_challenger sends (the trigger itself needs
    a running api-server: tests/integration/test_rest_api.py)."""
    from tasks.registry import versions as registry

    model = tmp_path / "champion"
    model.mkdir()
    (model / "config.json").write_text("{}")
    version = registry.register(store_root, registry_name, {"model_uri": model.as_uri()})["version"]
    assert registry.set_production(store_root, registry_name, version, None)
    dag = _load(tmp_path, monkeypatch)
    run = dag.test(
        run_conf={"dataset_uri": "/data/new.jsonl", "dataset_name": None},
        mark_success_pattern="train_challenger|outcome",
    )
    ti = next(ti for ti in run.get_task_instances() if ti.task_id == "build_conf")
    assert str(ti.state) == "success"
    conf = ti.xcom_pull(task_ids="build_conf")
    assert conf["models"] == [{"name": "tiny-v1", "uri": model.as_uri()}]
    assert conf["datasets"][0]["uri"] == "/data/new.jsonl"
    assert conf["promotion"]["registry_name"] == "tiny"
