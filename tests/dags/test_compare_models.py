"""compare_models as Airflow runs it (dag.test): two tiny models compared on one prompt, the result
committed where the Compare page reads it; a refused conf fails the first task and says why."""

from __future__ import annotations

import pytest

from tasks.compare.plan import comparison_prefix
from tasks.contracts.compare import CompareResult
from tasks.storage import store
from tests.conftest import REPO


@pytest.fixture
def dag(airflow_db):
    """A freshly parsed DAG for each test: dag.test(run_conf=...) leaves the conf in the DAG's Params."""
    import importlib
    import sys

    sys.path.insert(0, str(REPO / "dags"))
    import compare_models

    return importlib.reload(compare_models).dag


def _states(run) -> dict[str, str]:
    return {ti.task_id: str(ti.state) for ti in run.get_task_instances()}


def test_two_tiny_models_are_compared_on_one_prompt(dag, tiny_model_dir, store_root):
    conf = {
        "models": [
            {"path": str(tiny_model_dir), "label": "greedy"},
            {"path": str(tiny_model_dir), "label": "sampled", "temperature": 0.9},
        ],
        "prompts": ["Who are you?"],
        "max_new_tokens": 6,
    }
    run = dag.test(run_conf=conf)
    assert str(run.state) == "success", _states(run)
    assert _states(run) == {"plan_compare": "success", "compare_models": "success"}
    committed = store.committed_result(store.join(comparison_prefix(store_root, run.run_id), "results"))
    result = CompareResult.model_validate(committed)
    assert result.run_id == run.run_id
    assert [(m.label, m.temperature) for m in result.models] == [("greedy", 0.0), ("sampled", 0.9)]
    for column in result.models:
        [answer] = column.answers
        assert answer.error is None and answer.completion_tokens >= 1 and answer.ttft_s <= answer.latency_s


def test_a_conf_naming_a_missing_model_fails_planning_and_records_why(dag, tiny_model_dir, store_root):
    conf = {"models": [{"path": str(tiny_model_dir)}, {"registry": "nowhere"}], "prompts": ["hi"]}
    run = dag.test(run_conf=conf)
    assert str(run.state) == "failed"
    assert _states(run)["plan_compare"] == "failed"
    error = store.read_json(store.join(comparison_prefix(store_root, run.run_id), "error.json"))
    assert error["message"].startswith("models.1.registry: no registry 'nowhere'")


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("models", [{"registry": "tuna"}]),  # one model
        ("models", [{"registry": "tuna"}, {"weights": "x"}]),  # not a kind of model
        ("models", [{"registry": "tuna"}, {"catalog": "a", "path": "/b"}]),  # two kinds at once
        ("temperature", 5),
        ("max_new_tokens", 0),
    ],
)
def test_the_params_refuse_what_the_rest_api_must_refuse(dag, name, value):
    from airflow.sdk.definitions.param import ParamValidationError

    with pytest.raises(ParamValidationError):
        dag.params.get_param(name).resolve(value=value)


def test_the_params_accept_every_kind_of_model(dag):
    models = [
        {"registry": "tuna", "version": "production", "format": "onnx-int8"},
        {"experiment": "e", "run": "r", "job": "j", "temperature": 0.5},
        {"catalog": "smollm2-135m-instruct", "label": "base"},
        {"connection": "my_llm", "model": "gpt-4o-mini"},
    ]
    assert dag.params.get_param("models").resolve(value=models) == models


def test_a_conf_without_models_is_refused_not_defaulted(dag):
    from airflow.sdk.definitions.param import ParamValidationError

    with pytest.raises(ParamValidationError, match="No value passed"):
        dag.params.get_param("models").resolve()
    assert dag.params.get_param("prompts").resolve() == ["Who are you?"]
