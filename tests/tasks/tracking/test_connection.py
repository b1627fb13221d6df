"""The MLflow connection: every form Airflow writes it in, read into a tracking URI and credentials that
reach MLflow's variables only and no message."""

from __future__ import annotations

import json
import os

import pytest

from tasks.tracking import connection
from tasks.tracking.connection import TrackingError, credentials_env, credentials_vars, target


def test_the_json_form_gives_uri_credentials_and_extras():
    value = json.dumps(
        {
            "conn_type": "http",
            "host": "http://mlflow.internal:5000/",
            "login": "alice",
            "password": "s3cret-pw",
            "extra": {"registry_uri": "http://registry:5001", "experiment_name": "team-llm"},
        }
    )
    found = target("tunerflow_mlflow", value)
    assert found.tracking_uri == "http://mlflow.internal:5000"
    assert (found.registry_uri, found.experiment_name) == ("http://registry:5001", "team-llm")
    assert credentials_vars(found) == {
        "MLFLOW_TRACKING_USERNAME": "alice",
        "MLFLOW_TRACKING_PASSWORD": "s3cret-pw",
    }
    assert "s3cret-pw" not in repr(found)


def test_a_bare_host_is_completed_and_a_password_alone_is_a_token():
    found = target("m", "http://:tok-123@mlflow.internal:5000")
    assert found.tracking_uri == "http://mlflow.internal:5000"
    assert credentials_vars(found) == {"MLFLOW_TRACKING_TOKEN": "tok-123"}
    assert target("m", json.dumps({"conn_type": "generic", "host": "mlflow.example"})).tracking_uri == (
        "https://mlflow.example"
    )


def test_a_connection_without_host_says_how_to_add_one():
    with pytest.raises(TrackingError, match=r"has no host.*airflow connections add m"):
        target("m", json.dumps({"conn_type": "http", "password": "pw"}))


def test_the_shown_uri_never_holds_credentials():
    found = target("m", json.dumps({"conn_type": "http", "host": "https://bob:pw@mlflow.example"}))
    assert found.shown_uri == "https://mlflow.example"


def test_credentials_reach_the_block_only_and_replace_the_workers_own(monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", "worker-token")
    found = target("m", json.dumps({"conn_type": "http", "host": "http://h", "login": "u", "password": "p"}))
    with credentials_env(found):
        assert os.environ["MLFLOW_TRACKING_USERNAME"] == "u"
        assert "MLFLOW_TRACKING_TOKEN" not in os.environ
    assert os.environ["MLFLOW_TRACKING_TOKEN"] == "worker-token"
    assert "MLFLOW_TRACKING_USERNAME" not in os.environ


def test_one_setting_names_another_connection():
    assert connection.conn_id({}) == "tunerflow_mlflow"
    assert connection.conn_id({"TUNERFLOW_MLFLOW_CONN_ID": "mlflow_prod"}) == "mlflow_prod"
