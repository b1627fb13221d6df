"""THE MLflow test: a tiny experiment through the DAG (dag.test) with the `tunerflow_mlflow` connection
pointing at a real `mlflow server` (SQLite, local artifacts), checked with MlflowClient."""

from __future__ import annotations

import pytest

from tasks.registry import versions as registry
from tasks.storage import layout, store
from tests.conftest import REPO
from tests.fixtures.confs import tiny_conf
from tests.fixtures.connections import connection_in_db
from tests.fixtures.mlflow_server import mlflow_server

EXPERIMENT = "tiny-tracked"


@pytest.fixture
def dag(airflow_db):
    """A freshly parsed DAG (dag.test leaves a conf's values in the DAG object's Params)."""
    import importlib
    import sys

    sys.path.insert(0, str(REPO / "dags"))
    import finetune_experiment

    return importlib.reload(finetune_experiment).dag


def _tagged(client, experiment_id: str, **tags: str) -> list:
    where = " and ".join(f"tags.`tunerflow.{key}` = '{value}'" for key, value in tags.items())
    return client.search_runs([experiment_id], filter_string=where)


@pytest.mark.slow
def test_a_tiny_experiment_is_recorded_in_a_real_mlflow_server(dag, tiny_model_dir, store_root, tmp_path):
    from mlflow import MlflowClient

    # Two jobs of two steps, no export (promotion still registers the winner's adapter).
    base = tiny_conf(tiny_model_dir)
    conf = tiny_conf(
        tiny_model_dir,
        scoring={**base["scoring"], "max_samples": 4},
        export={"enabled": False},
        promotion={"registry_name": "tiny-tracked"},
    )
    with (
        mlflow_server(tmp_path / "mlflow") as uri,
        connection_in_db("tunerflow_mlflow", "http", {"experiment_name": EXPERIMENT}, host=uri),
    ):
        run = dag.test(run_conf=conf)
        states = {ti.task_id: str(ti.state) for ti in run.get_task_instances() if ti.map_index < 1}
        assert str(run.state) == "success" and states["track_mlflow"] == "success", states

        client = MlflowClient(tracking_uri=uri, registry_uri=uri)
        experiment_id = client.get_experiment_by_name(EXPERIMENT).experiment_id
        run_uri = layout.run(store_root, "tiny-exp", run.run_id)
        [parent] = _tagged(client, experiment_id, run_uri=run_uri, kind="experiment")
        assert parent.info.status == "FINISHED"
        assert parent.data.tags["airflow.dag_id"] == "finetune_experiment"
        assert parent.data.tags["airflow.run_id"] == run.run_id
        assert parent.data.params["name"] == "tiny-exp" and parent.data.params["scoring.primary"] == "rouge_l"
        artifacts = {a.path for a in client.list_artifacts(parent.info.run_id)}
        assert {"leaderboard.json", "report", "datasets"} <= artifacts
        report = {a.path for a in client.list_artifacts(parent.info.run_id, "report")}
        assert {"report/index.html", "report/loss.png", "report/metrics.png"} <= report
        cards = {a.path for a in client.list_artifacts(parent.info.run_id, "datasets/tuna")}
        assert "datasets/tuna/README.md" in cards

        jobs = _tagged(client, experiment_id, run_uri=run_uri, kind="train")
        assert sorted(j.data.tags["tunerflow.label"] for j in jobs) == ["tuna|tiny|a", "tuna|tiny|b"]
        for job in jobs:
            assert job.data.tags["mlflow.parentRunId"] == parent.info.run_id
            assert job.info.status == "FINISHED"
            assert job.data.params["max_steps"] == "2" and job.data.params["base_model"] == "tiny"
            assert job.data.params["dataset"] == "tuna" and job.data.params["method"] == "lora"
            assert "rouge_l" in job.data.metrics
            curve = store.local_path(
                store.join(
                    layout.step(layout.job(run_uri, job.data.tags["tunerflow.job_id"]), "train"),
                    "metrics.jsonl",
                )
            ).read_text()
            steps = [m.step for m in client.get_metric_history(job.info.run_id, "loss")]
            assert steps and steps == sorted(steps) and f'"step": {steps[-1]}' in curve
        by_label = {j.data.tags["tunerflow.label"]: j for j in jobs}
        assert by_label["tuna|tiny|b"].data.params["learning_rate"] == "0.0001"

        production = registry.production(store_root, "tiny-tracked")
        [version] = client.search_model_versions("name='tiny-tracked'")
        tags = version.tags
        assert tags["tunerflow.version"] == str(production["version"])
        assert tags["tunerflow.run_uri"] == run_uri
        assert tags["tunerflow.job_id"] == production["entry"]["job_id"]
        assert tags["tunerflow.dataset"] == "tuna" and tags["tunerflow.base_model"] == "tiny"
        assert tags["tunerflow.dataset_version"] == production["entry"]["dataset"]["version"]
        assert "metric.rouge_l" in tags
        assert version.run_id == by_label[production["entry"]["label"]].info.run_id
        assert client.get_model_version_by_alias("tiny-tracked", "production").version == version.version
