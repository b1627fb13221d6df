"""The REST API path end to end: the session's real `airflow standalone` (LocalExecutor, SQLite; see
tests/fixtures/airflow_standalone.py), driven over HTTP only, as admin with a JWT from `POST /auth/token`.

`finished_run` is the session's tiny experiment run to success; posting an event on the retraining
config's data asset retrains the champion that run promoted.
"""

from __future__ import annotations

import shutil
import time

import pytest

from tasks.registry.promotion_event import PRODUCTION_ASSET_URI
from tasks.storage import layout, store
from tests.conftest import REPO
from tests.fixtures.airflow_standalone import (
    DAG_ID,
    DATA_ASSET,
    RETRAIN_DAG_ID,
    RETRAIN_TIMEOUT_S,
    START_TIMEOUT_S,
    tiny_run_conf,
)

pytestmark = pytest.mark.slow


@pytest.mark.parametrize(
    ("field", "bad", "mentions"),
    [
        ("training", {"type": "sft", "method": "qlora-x"}, ["param training", "qlora-x"]),
        ("datasets", [{"name": "tuna", "uri": "builtin:tuna_identity", "split": "98-2"}], ["split", "98-2"]),
    ],
)
def test_bad_conf_is_refused_with_400_and_creates_no_run(
    airflow_server, tiny_model_dir, field, bad, mentions
):
    before = airflow_server.run_count()
    response = airflow_server.trigger({**tiny_run_conf(tiny_model_dir), field: bad})
    assert response.status_code == 400, response.text
    for text in mentions:
        assert text in response.json()["detail"]
    assert airflow_server.run_count() == before


def test_conf_that_only_pydantic_refuses_fails_the_run(airflow_server, tiny_model_dir):
    conf = tiny_run_conf(tiny_model_dir)
    conf["datasets"][0]["split"] = "50,10,10"  # the right shape for the schema, but sums to 70
    response = airflow_server.trigger(conf)
    assert response.status_code == 200, response.text
    run_id = response.json()["dag_run_id"]
    state = airflow_server.wait_for(run_id)
    assert airflow_server.task_states(run_id)["validate_conf"] == ["failed"]
    assert state == "failed"


def test_good_conf_runs_to_success_and_the_leaderboard_names_the_winner(airflow_server, finished_run):
    run_id, states = finished_run["run_id"], finished_run["states"]
    assert states["train"] == ["success", "success"]
    assert states["export"] == ["skipped"]  # export.enabled is false

    board = store.read_json(
        store.join(layout.run(airflow_server.store_root, "tiny-exp", run_id), "leaderboard.json")
    )
    labels = {row["label"] for row in board["rows"]}
    assert {"tuna|tiny|a", "tuna|tiny|b"} <= labels
    assert board["failed"] == []

    selection = airflow_server.xcom(run_id, "select_best")
    assert selection["winner"]["label"] == board["winner"]["label"]
    assert selection["winner"]["label"] in {"tuna|tiny|a", "tuna|tiny|b"}


def test_registry_name_defaults_to_the_experiment_name(airflow_server, finished_run):
    promotion = airflow_server.xcom(finished_run["run_id"], "promote")
    assert promotion["registry_uri"].endswith("/registry/tiny-exp")


def test_the_promotion_emitted_the_production_asset_event(airflow_server, finished_run):
    [event] = [
        e
        for e in airflow_server.asset_events(PRODUCTION_ASSET_URI)
        if e["source_run_id"] == finished_run["run_id"]
    ]
    assert finished_run["states"]["publish_promotion"] == ["success"]
    assert event["source_dag_id"] == DAG_ID and event["source_task_id"] == "publish_promotion"
    assert (event["extra"]["registry"], event["extra"]["version"]) == ("tiny-exp", 1)
    assert event["extra"]["adapter_uri"] and event["extra"]["registry_uri"].endswith("/registry/tiny-exp")


def test_an_asset_event_retrains_the_champion(airflow_server, finished_run, tmp_path_factory):
    # New rows land upstream; the pipeline announces them on the data asset, saying where they are.
    new_rows = tmp_path_factory.mktemp("upstream") / "tuna-2026-11-23.jsonl"
    shutil.copy(REPO / "include" / "data" / "tuna_identity.jsonl", new_rows)
    before = {run["dag_run_id"] for run in airflow_server.runs(RETRAIN_DAG_ID)}
    response = airflow_server.http.post(
        "/api/v2/assets/events",
        json={"asset_id": airflow_server.asset_id(DATA_ASSET), "extra": {"dataset_uri": str(new_rows)}},
    )
    assert response.status_code == 200, response.text
    assert response.json()["extra"] == {"dataset_uri": str(new_rows), "from_rest_api": True}

    deadline = time.monotonic() + START_TIMEOUT_S
    while not (started := [r for r in airflow_server.runs(RETRAIN_DAG_ID) if r["dag_run_id"] not in before]):
        assert time.monotonic() < deadline, (
            f"no {RETRAIN_DAG_ID} run after the asset event\n{airflow_server.logs()}"
        )
        time.sleep(3)
    [run] = started
    assert run["run_type"] == "asset_triggered"
    run_id = run["dag_run_id"]
    state = airflow_server.wait_for(run_id, RETRAIN_DAG_ID, RETRAIN_TIMEOUT_S)
    assert state == "success", (
        f"{RETRAIN_DAG_ID} run {run_id} ended {state}\n{airflow_server.logs(run_id, RETRAIN_DAG_ID)}"
    )
    assert airflow_server.task_states(run_id, RETRAIN_DAG_ID) == {
        "build_conf": ["success"],
        "train_challenger": ["success"],
        "outcome": ["success"],
    }

    # The finetune run it started: from the champion's weights, on the rows the event named.
    finetune_run_id = f"retrain__{run_id}"
    assert airflow_server.wait_for(finetune_run_id) == "success"
    conf = airflow_server.xcom(run_id, "build_conf", RETRAIN_DAG_ID)
    assert conf["models"][0]["name"] == "tiny-exp-v1"
    assert conf["models"][0]["uri"].endswith("/train/merged")
    assert conf["datasets"][0]["uri"] == str(new_rows)
    experiment = store.read_json(
        store.join(layout.run(airflow_server.store_root, "tiny-retrain", finetune_run_id), "experiment.json")
    )["experiment"]
    assert experiment["models"] == conf["models"] and experiment["promotion"]["registry_name"] == "tiny-exp"

    # Its leaderboard through REST, and the champion gate's verdict as the retrain's outcome.
    selection = airflow_server.xcom(finetune_run_id, "select_best")
    assert selection["winner"]["label"] == "tuna|tiny-exp-v1|a"
    states = airflow_server.task_states(finetune_run_id)
    assert states["score_champion"] == ["success"]  # the champion was rescored on the new rows
    outcome = airflow_server.xcom(run_id, "outcome", RETRAIN_DAG_ID)
    promotion = airflow_server.xcom(finetune_run_id, "promote")
    assert outcome["finetune_run_id"] == finetune_run_id
    assert (outcome["promoted"], outcome["reason"]) == (promotion["promoted"], promotion["reason"])
    assert promotion["champion_version"] == 1 and promotion["like_for_like"] is True
    # A production event only if the retrained model replaced the champion.
    assert states["publish_promotion"] == (["success"] if promotion["promoted"] else ["skipped"])
    emitted = [
        e for e in airflow_server.asset_events(PRODUCTION_ASSET_URI) if e["source_run_id"] == finetune_run_id
    ]
    assert len(emitted) == int(promotion["promoted"])
