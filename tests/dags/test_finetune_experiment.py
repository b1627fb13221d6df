"""A real Airflow run of the whole DAG (dag.test) on a tiny random model, checking each stage's outputs."""

from __future__ import annotations

import json

import pytest

from tasks.registry import versions as registry
from tasks.storage import layout, store
from tests.conftest import DAG_TASKS, MERGE_TASKS, REPO, ROUND_TASKS
from tests.fixtures.confs import tiny_conf
from tests.fixtures.connections import connection_in_db
from tests.fixtures.mlflow_records import check_mlflow_records
from tests.fixtures.mlflow_server import mlflow_server
from tests.fixtures.openlineage import check_lineage_chain


def _conf(tiny_model_dir, **overrides):
    broken = {
        "name": "broken",
        "preset": "lora-fast",
        "max_steps": 2,
        "lora_target_modules": ["no_such_module"],
    }
    base = tiny_conf(tiny_model_dir)
    conf = tiny_conf(
        tiny_model_dir,
        hparams=[*base["hparams"], broken],
        scoring={**base["scoring"], "max_samples": 8},
        promotion={"registry_name": "tiny"},
    )
    conf.update(overrides)
    return conf


@pytest.fixture
def dag(airflow_db):
    """A freshly parsed DAG for each test: `dag.test(run_conf=...)` leaves the conf's values in the DAG
    object's Params, where a later test's run would take them as defaults."""
    import importlib
    import sys

    sys.path.insert(0, str(REPO / "dags"))
    import finetune_experiment

    return importlib.reload(finetune_experiment).dag


def _states(run) -> dict[str, list[str]]:
    states: dict[str, list[str]] = {}
    for ti in run.get_task_instances():
        states.setdefault(ti.task_id, []).append(str(ti.state))
    return states


@pytest.mark.slow
def test_whole_experiment_runs_and_one_failed_job_still_gives_a_winner(
    dag, tiny_model_dir, store_root, openlineage_events, tmp_path
):
    # With OpenLineage on (a file transport) and the `tunerflow_mlflow` connection pointing at a real
    # `mlflow server`: the run's lineage chain and its MLflow records are checked below, on this one run.
    with (
        mlflow_server(tmp_path / "mlflow") as mlflow_uri,
        connection_in_db("tunerflow_mlflow", "http", {"experiment_name": "tiny-tracked"}, host=mlflow_uri),
    ):
        run = dag.test(run_conf=_conf(tiny_model_dir))
        assert str(run.state) == "success"
        states = _states(run)
        assert states["track_mlflow"] == ["success"]
        check_mlflow_records(mlflow_uri, "tiny-tracked", run, store_root, "tiny", "tuna|tiny|broken")
    assert states["train"].count("success") == 2 and states["train"].count("failed") == 1
    assert sorted(states["evaluate"]) == ["skipped", "success", "success"]
    # No champion yet: nothing to score it against, and the winner is promoted.
    assert states["plan_champion"] == ["skipped"] and states["score_champion"] == ["skipped"]
    for task in set(DAG_TASKS) - {"train", "evaluate", "plan_champion", "score_champion"}:
        assert set(states[task]) == {"success"}, (task, states[task])
    # No search, no merge: the later rounds skip, and the merge's tasks, planned nothing, skip too.
    for task in (*ROUND_TASKS, *MERGE_TASKS):
        assert set(states[task]) == {"skipped"}, (task, states[task])

    run_uri = layout.run(store_root, "tiny-exp", run.run_id)
    experiment = store.read_json(store.join(run_uri, "experiment.json"))
    assert experiment["hparams"][0]["max_steps"] == 2  # presets resolved and recorded

    jobs = store.read_json(store.join(run_uri, "jobs.json"))
    assert [j["label"] for j in jobs] == ["tuna|tiny|a", "tuna|tiny|b", "tuna|tiny|broken"]
    for job in jobs[:2]:
        prefix = layout.job(run_uri, job["job_id"])
        assert store.verify(layout.step(prefix, "train")) == []
        assert store.exists(store.join(layout.step(prefix, "train"), "adapter", "adapter_model.safetensors"))
        assert store.exists(store.join(layout.step(prefix, "evaluate"), "predictions.jsonl"))

    board = store.read_json(store.join(run_uri, "leaderboard.json"))
    assert board["winner"]["label"] in {"tuna|tiny|a", "tuna|tiny|b"}
    assert board["failed"][0]["label"] == "tuna|tiny|broken"
    assert "no_such_module" in board["failed"][0]["error"]
    assert any(r["status"] == "reference" and r["label"] == "tuna|tiny|base" for r in board["rows"])

    exported = store.committed_result(store.join(run_uri, "export"))
    assert set(exported["formats"]) == {"onnx", "onnx-int8"}
    checks = store.committed_result(store.join(run_uri, "check_export"))
    assert checks["passed"] is True

    champion = registry.production(store_root, "tiny")
    assert champion["entry"]["job_id"] == board["winner"]["job_id"]
    # The promotion was announced to deployment DAGs as an Asset event carrying the new version.
    assert states["publish_promotion"] == ["success"]
    event = _production_events(run.run_id)[-1]
    assert (event["registry"], event["version"]) == ("tiny", champion["version"])
    assert event["model_uri"] == exported["merged_uri"]
    summary = store.read_json(store.join(run_uri, "summary.json"))
    html = store.local_path(summary["report_uri"]).read_text()
    assert "tuna|tiny|broken" in html and "no_such_module" in html
    assert store.exists(store.join(run_uri, "report", "loss.png"))

    if openlineage_events is not None:  # the provider is installed (the `openlineage` extra)
        check_lineage_chain(openlineage_events, "tiny", champion["version"])

    # A second run reuses the prepared dataset version (same content, same settings).
    versions = list(store.local_path(store.join(store_root, "datasets", "tuna")).iterdir())
    assert len(versions) == 1


def _production_events(run_id: str) -> list[dict]:
    """The extras of the production-model Asset events that `run_id` emitted, oldest first."""
    from airflow.models.asset import AssetEvent, AssetModel
    from airflow.utils.session import create_session

    from tasks.registry.promotion_event import PRODUCTION_ASSET_URI

    with create_session() as session:
        events = (
            session.query(AssetEvent)
            .join(AssetModel, AssetEvent.asset_id == AssetModel.id)
            .filter(AssetModel.uri == PRODUCTION_ASSET_URI, AssetEvent.source_run_id == run_id)
            .order_by(AssetEvent.id)
            .all()
        )
        return [dict(event.extra) for event in events]


def test_a_conf_the_schema_refuses_creates_no_task(dag, tiny_model_dir, store_root):
    from airflow.sdk.definitions.param import ParamValidationError

    conf = _conf(tiny_model_dir, training={"type": "sft", "method": "qlora-x"})
    with pytest.raises(ParamValidationError, match="training"):
        dag.test(run_conf=conf)


def test_a_cross_field_error_fails_validate_conf_before_any_other_task(dag, tiny_model_dir, store_root):
    conf = _conf(
        tiny_model_dir, datasets=[{"name": "tuna", "uri": "builtin:tuna_identity", "split": "90,20,0"}]
    )
    run = dag.test(run_conf=conf)
    states = _states(run)
    assert states["validate_conf"] == ["failed"]
    ran = {task for task, values in states.items() if set(values) & {"success", "failed", "running"}}
    # Only the verdict leaf runs after the refusal, to fail the run for pollers of its state.
    assert ran == {"validate_conf", "report"} and states["report"] == ["failed"]
    assert str(run.state) == "failed"


def test_a_run_where_every_job_fails_reports_why_and_fails(dag, tiny_model_dir, store_root):
    bad = {"preset": "lora-fast", "max_steps": 2, "lora_target_modules": ["no_such_module"]}
    conf = _conf(tiny_model_dir, hparams=[{**bad, "name": "x"}], scoring={"compare_base": False})
    run = dag.test(run_conf=conf)
    states = _states(run)
    assert states["select_best"] == ["failed"] and states["report"] == ["failed"]
    assert str(run.state) == "failed"
    board = store.read_json(store.join(layout.run(store_root, "tiny-exp", run.run_id), "leaderboard.json"))
    assert board["winner"] is None and "no_such_module" in board["failed"][0]["error"]


@pytest.fixture
def judge_connection(airflow_db):
    """The judge endpoint as a connection in Airflow's metadata DB (not in the environment), so a step
    subprocess can only get it the way the DAG passes it."""
    from tests.fixtures.openai_server import OpenAIServer

    with (
        OpenAIServer(api_key="sk-dag-test-key-0123456789", model="judge-1") as server,
        connection_in_db(
            "dag_judge", "http", {"model": server.model}, host=server.base_url, password=server.api_key
        ),
    ):
        yield server


def test_the_champion_is_scored_again_on_the_challengers_fixed_questions(
    dag, tiny_model_dir, store_root, judge_connection
):
    questions = [
        {"question": "Who are you?", "answer": "I am Tuna, a helpful assistant."},
        {"question": "What is your name?", "answer": "My name is Tuna.", "system": "Answer briefly."},
    ]
    base = tiny_conf(
        tiny_model_dir,
        hparams=[{"name": "a", "preset": "lora-fast", "max_steps": 2}],
        scoring={"metrics": ["rouge_l"], "primary": "rouge_l", "max_new_tokens": 4, "compare_base": False},
        export={"enabled": False},
        promotion={"registry_name": "tiny-cc"},
    )
    first = dag.test(run_conf=base)
    assert str(first.state) == "success"
    # No tunerflow_mlflow connection in this test: tracking is off, and the run is not the worse for it.
    assert _states(first)["track_mlflow"] == ["skipped"]
    champion = registry.production(store_root, "tiny-cc")
    assert champion["version"] == 1 and champion["entry"]["adapter_uri"]

    judged = {"metrics": ["rouge_l", "llm_judge"], "judge": {"conn_id": "dag_judge", "backoff_s": 0}}
    conf = {**base, "scoring": {**base["scoring"], **judged, "eval_questions": questions}}
    second = dag.test(run_conf=conf)
    assert str(second.state) == "success"
    states = _states(second)
    assert states["plan_champion"] == ["success"] and states["score_champion"] == ["success"]
    run_uri = layout.run(store_root, "tiny-exp", second.run_id)

    # The challenger and the champion were both scored on the two questions of the conf.
    job = store.read_json(store.join(run_uri, "jobs.json"))[0]
    scored = store.committed_result(layout.step(layout.job(run_uri, job["job_id"]), "evaluate"))
    assert (scored["scored_on"], scored["n"]) == ("eval_questions", 2)
    rescored = store.committed_result(store.join(run_uri, "champion", "v1"))
    assert (rescored["scored_on"], rescored["n"]) == ("eval_questions", 2)
    predictions = store.local_path(store.join(run_uri, "champion", "v1", "predictions.jsonl"))
    ids = [json.loads(line)["id"] for line in predictions.read_text().splitlines()]
    assert ids == ["eval_questions:0", "eval_questions:1"]

    decision = store.read_json(store.join(run_uri, "promotion.json"))
    assert decision["like_for_like"] is True and decision["champion_rescored"] is True
    assert decision["champion_metric"] == rescored["metrics"]["rouge_l"]
    assert decision["candidate_metric"] == scored["metrics"]["rouge_l"]
    assert "same 2 rows of eval_questions" in decision["reason"]
    # An event only when the challenger replaced the champion.
    assert states["publish_promotion"] == (["success"] if decision["promoted"] else ["skipped"])
    assert len(_production_events(second.run_id)) == int(decision["promoted"])

    # The judge graded both answers of the challenger and of the champion through the DB connection.
    assert len(judge_connection.requests) == 4
    assert {r["headers"]["Authorization"] for r in judge_connection.requests} == {
        "Bearer sk-dag-test-key-0123456789"
    }
    assert 0 <= scored["metrics"]["llm_judge"] <= 1 and "llm_judge" in rescored["metrics"]
    # Nothing the run wrote (specs, results, predictions, the report) holds the key.
    written = [p for p in store.local_path(run_uri).rglob("*") if p.is_file()]
    assert written and not any(b"sk-dag-test" in p.read_bytes() for p in written)
