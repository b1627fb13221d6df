"""Every DAG file parses fast, with no errors and without the heavy ML stack."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.conftest import DAG_TASKS, MERGE_TASKS, REPO, ROUND_TASKS

HEAVY = (
    "torch",
    "transformers",
    "peft",
    "trl",
    "onnx",
    "onnxruntime",
    "optimum",
    "datasets",
    "optuna",
    "openlineage",  # the OpenLineage client loads only where a task reports lineage (tasks.lineage)
)

PROBE = """
import importlib.util, json, sys, time
import airflow.sdk  # the scheduler has Airflow loaded already; measure what the DAG file adds
heavy = {heavy!r}
out = {{}}
for path in {paths!r}:
    started = time.perf_counter()
    spec = importlib.util.spec_from_file_location("dag_" + str(len(out)), path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    out[path] = round(time.perf_counter() - started, 3)
loaded = sorted(m for m in sys.modules if m.split(".")[0] in heavy)
print(json.dumps({{"seconds": out, "heavy": loaded}}))
"""


def test_every_dag_imports_fast_without_heavy_modules():
    paths = sorted(str(p) for p in (REPO / "dags").glob("*.py"))
    assert paths
    probe = PROBE.format(heavy=HEAVY, paths=paths)
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=REPO, check=True)
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["heavy"] == [], f"DAG import pulled in {report['heavy']}"
    for path, seconds in report["seconds"].items():
        assert seconds < 1.0, f"{path} took {seconds}s to import"


def test_dagbag_has_no_import_errors(airflow_db):
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(REPO / "dags"))
    assert bag.import_errors == {}
    assert {"finetune_experiment", "retrain_champion"} <= set(bag.dag_ids)
    dag = bag.get_dag("finetune_experiment")
    others = {"publish_promotion", "approve_promotion", "track_mlflow"}
    assert set(dag.task_ids) == set(DAG_TASKS) | set(ROUND_TASKS) | set(MERGE_TASKS) | others
    assert [o.uri for o in dag.get_task("publish_promotion").outlets] == ["tunerflow://registry/production"]
    # MLflow tracking runs last, after the leaves however they ended, and never sets the run's state.
    track = dag.get_task("track_mlflow")
    assert track.is_teardown and track.upstream_task_ids == {"report", "publish_promotion"}
    assert not track.on_failure_fail_dagrun and track.retries == 2


def _served_params():
    """The finetune_experiment Params as the api-server holds them: serialized by the DAG processor and
    read back, where a trigger's conf is validated (HTTP 400 and no run when it fails)."""
    import importlib
    import sys

    from airflow.serialization.serialized_objects import DagSerialization

    sys.path.insert(0, str(REPO / "dags"))
    import finetune_experiment

    dag = importlib.reload(finetune_experiment).dag
    return DagSerialization.from_dict(DagSerialization.to_dict(dag)).params


def test_the_served_trigger_form_keeps_its_sections_choices_and_required_lists():
    params = _served_params()
    template = params.get_param("template")
    assert template.schema["section"] == "Experiment" and template.schema["title"] == "Start from"
    assert "demo" in template.schema["values_display"]
    assert "builtin:tuna_identity" in params.get_param("datasets").schema["examples"]
    # The form posts every field; an empty one as null. The demo, chosen and nothing typed, is accepted.
    as_posted = {key: params.get_param(key).dump()["value"] for key in params} | {"template": "demo"}
    assert params.deep_merge(as_posted).validate()["template"] == "demo"
    # A REST conf that omits a list the run cannot do without is refused.
    choices = {"datasets": ["builtin:tuna_identity"], "models": ["smollm2-135m-instruct"]}
    with pytest.raises(ValueError, match="hparams"):
        params.deep_merge(choices).validate()
    assert params.deep_merge({**choices, "hparams": ["lora-fast"]}).validate()["name"] == "tuna-identity-demo"
