"""compare_models on the backends: the worker hands the endpoints' connections to the step's environment
(never the spec), and on kubernetes the step's pod asks for evaluate's resources."""

from __future__ import annotations

import json

import pytest

from tasks.backends import heavy
from tasks.backends import kubernetes as pods
from tasks.backends import kubernetes_settings as pod_settings
from tasks.compare.plan import plan_compare, spec_uri
from tasks.storage import store

KEY = "sk-compare-0123456789"


def test_each_endpoints_connection_goes_to_the_steps_environment_only(stocked_store, monkeypatch):
    monkeypatch.setenv("AIRFLOW_CONN_MY_LLM", f"http://:{KEY}@127.0.0.1:8000/v1?model=chat-1")
    models = [{"connection": "my_llm"}, {"connection": "my_llm", "temperature": 1.0}, {"registry": "tiny"}]
    plan_compare({"models": models}, "r1", stocked_store)
    env = heavy.endpoint_env(spec_uri(stocked_store, "r1"))
    assert list(env) == ["AIRFLOW_CONN_MY_LLM"]
    assert json.loads(env["AIRFLOW_CONN_MY_LLM"])["password"] == KEY
    assert KEY not in json.dumps(store.read_json(spec_uri(stocked_store, "r1")))


def test_a_missing_connection_fails_the_task_saying_how_to_add_it(stocked_store, monkeypatch):
    from airflow.sdk.exceptions import AirflowFailException

    monkeypatch.delenv("AIRFLOW_CONN_NOWHERE", raising=False)
    plan_compare({"models": [{"connection": "nowhere"}, {"registry": "tiny"}]}, "r2", stocked_store)
    with pytest.raises(
        AirflowFailException, match="connection 'nowhere' of a compared endpoint is not defined"
    ):
        heavy.endpoint_env(spec_uri(stocked_store, "r2"))


def test_the_compare_pod_asks_for_evaluates_resources():
    settings = pod_settings.parse_settings({"resources": {"evaluate": {"gpus": 2, "memory_limit": "48Gi"}}})
    assert pods.pool_kwargs("compare_models", settings) == {"pool": "tunerflow_gpu", "pool_slots": 2}
    kwargs = pods.pod_operator_kwargs("compare_models", settings)
    assert kwargs["name"] == "tunerflow-compare-models"
    assert kwargs["container_resources"].limits["nvidia.com/gpu"] == "2"
    assert kwargs["container_resources"].limits["memory"] == "48Gi"
