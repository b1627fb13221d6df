"""Airflow connections read from the environment, in Airflow's JSON and URI forms."""

from __future__ import annotations

import json

import pytest

from tasks.storage import connections


def test_env_var_is_airflows_name():
    assert connections.env_var("aws_default") == "AIRFLOW_CONN_AWS_DEFAULT"


def test_json_and_uri_forms_give_the_same_fields():
    as_json = json.dumps(
        {
            "conn_type": "aws",
            "host": "minio",
            "login": "key",
            "password": "p@ss/word",
            "port": "9000",
            "extra": {"region_name": "us-east-1"},
        }
    )
    as_uri = "aws://key:p%40ss%2Fword@minio:9000/?region_name=us-east-1"
    expected = {
        "conn_type": "aws",
        "host": "minio",
        "login": "key",
        "password": "p@ss/word",
        "schema": "",
        "port": 9000,
        "extra": {"region_name": "us-east-1"},
    }
    assert connections.parse_connection("c", as_uri) == expected
    assert connections.parse_connection("c", as_json) == {**expected, "schema": None}


def test_read_is_none_when_the_variable_is_unset():
    assert connections.read("nope", environ={}) is None
    assert connections.read("x", environ={"AIRFLOW_CONN_X": "aws://k:s@h"})["password"] == "s"


def test_bad_values_name_the_connection_not_the_secret():
    with pytest.raises(connections.ConnectionInvalid, match="'c': port 'x' is not a number"):
        connections.parse_connection("c", '{"port": "x", "password": "hunter2"}')
    with pytest.raises(connections.ConnectionInvalid, match="neither JSON nor a URI like conn-type://") as e:
        connections.parse_connection("c", "key:hunter2@host")
    assert "hunter2" not in str(e.value)
