"""The compare_models step on the tiny random model, an ONNX INT8 export of it and a streaming fake
OpenAI-compatible server: every answer timed, one column per model, results committed."""

from __future__ import annotations

import json

import pytest

from tasks.compare.plan import comparison_prefix, plan_compare, spec_uri
from tasks.contracts.compare import CompareResult
from tasks.runtime.step import main
from tasks.storage import store
from tests.fixtures.openai_server import Scripted, connection_json
from tests.fixtures.openai_stream_server import StreamingOpenAIServer

RUN = "manual__compare-1"


def _run_step(root: str, conf: dict, capsys) -> CompareResult:
    spec = plan_compare(conf, RUN, root)
    argv = ["--job", spec_uri(root, RUN)]
    assert main("compare_models", _compare, spec=type(spec), result=CompareResult, argv=argv) == 0
    printed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    committed = store.committed_result(spec.output)
    assert committed == printed
    on_disk = json.loads(store.local_file(store.join(spec.output, "results.json")).read_text())
    assert on_disk == committed
    return CompareResult.model_validate(committed)


def _compare(spec):
    from tasks.compare.step import compare_models

    return compare_models(spec)


def _timed(answer, max_new_tokens: int) -> None:
    assert answer.error is None, answer.error
    assert answer.prompt_tokens > 0 and 1 <= answer.completion_tokens <= max_new_tokens + 1
    assert 0 < answer.ttft_s <= answer.latency_s


def test_two_local_models_answer_every_prompt_one_column_each(stocked_store, tiny_model_dir, capsys):
    conf = {
        "models": [{"registry": "tiny"}, {"path": str(tiny_model_dir), "label": "hot", "temperature": 1.0}],
        "prompts": ["Who are you?"],
        "eval_set": {"dataset": "qa", "version": "v1", "limit": 2},
        "max_new_tokens": 8,
        "seed": 3,
    }
    result = _run_step(stocked_store, conf, capsys)
    assert [p.id for p in result.prompts] == ["typed-1", "test.jsonl:0", "test.jsonl:1"]
    assert result.prompts[1].reference == "a0"
    assert [(m.label, m.kind, m.temperature) for m in result.models] == [
        ("tiny v1", "pytorch", 0.0),
        ("hot", "pytorch", 1.0),
    ]
    for column in result.models:
        assert column.error is None and column.load_s > 0
        assert [a.prompt_id for a in column.answers] == [p.id for p in result.prompts]
        for answer in column.answers:
            _timed(answer, 8)
    assert result.device in ("cpu", "cuda") and result.generation.max_new_tokens == 8


def test_a_second_run_returns_the_committed_result(stocked_store, tiny_model_dir, capsys):
    conf = {"models": [{"registry": "tiny"}, {"registry": "tiny"}], "max_new_tokens": 2}
    first = _run_step(stocked_store, conf, capsys)
    again = _run_step(stocked_store, conf, capsys)
    assert again == first


@pytest.fixture
def server(monkeypatch):
    with StreamingOpenAIServer(model="chat-1") as running:
        monkeypatch.setenv("AIRFLOW_CONN_MY_LLM", connection_json(running))
        yield running


def test_an_endpoint_is_streamed_and_its_key_stays_in_the_header(stocked_store, server, capsys):
    server.queue(Scripted(reply="<script>alert(1)</script> hello there"))
    conf = {
        "models": [{"registry": "tiny"}, {"connection": "my_llm"}],
        "max_new_tokens": 4,
        "temperature": 0.5,
    }
    result = _run_step(stocked_store, conf, capsys)
    endpoint = result.models[1]
    assert (endpoint.label, endpoint.kind, endpoint.load_s) == ("my_llm", "endpoint", None)
    [answer] = endpoint.answers
    assert answer.text == "<script>alert(1)</script> hello there"
    assert (answer.prompt_tokens, answer.completion_tokens) == (3, 9)  # the usage chunk's counts
    assert 0 < answer.ttft_s < answer.latency_s and answer.tokens_per_s > 0
    [request] = server.requests
    assert request["headers"]["Authorization"] == f"Bearer {server.api_key}"
    body = request["body"]
    assert body["stream"] is True and body["model"] == "chat-1"
    assert (body["max_tokens"], body["temperature"], body["seed"]) == (4, 0.5, 0)
    stored = json.dumps(store.committed_result(store.join(comparison_prefix(stocked_store, RUN), "results")))
    assert server.api_key not in stored


def test_a_refused_key_is_that_columns_error_without_the_key(stocked_store, server, monkeypatch, capsys):
    wrong = "sk-wrong-key-0000000000"
    monkeypatch.setenv("AIRFLOW_CONN_MY_LLM", connection_json(server).replace(server.api_key, wrong))
    conf = {"models": [{"registry": "tiny"}, {"connection": "my_llm"}], "max_new_tokens": 2}
    result = _run_step(stocked_store, conf, capsys)
    [answer] = result.models[1].answers
    assert "answered 401" in answer.error and wrong not in answer.error
    assert result.models[0].answers[0].error is None


def test_the_step_fails_when_no_model_answers(stocked_store, monkeypatch, capsys):
    conf = {"models": [{"connection": "absent"}, {"path": "/no/such/model"}], "max_new_tokens": 2}
    spec = plan_compare(conf, RUN, stocked_store)
    argv = ["--job", spec_uri(stocked_store, RUN)]
    assert main("compare_models", _compare, spec=type(spec), result=CompareResult, argv=argv) == 1
    error = store.read_json(store.join(spec.output, "error.json"))
    assert "no model answered" in error["message"] and "AIRFLOW_CONN_ABSENT" in error["message"]


def test_an_onnx_int8_export_answers_through_onnx_runtime(stocked_store, tiny_model_dir, tmp_path, capsys):
    from tasks.exporting.export_step import export_formats

    exported = export_formats(
        tiny_model_dir, tmp_path / "export", ["onnx-int8"], {"int8_block_size": 32, "int8_mode": "dynamic"}
    )
    directory = exported["formats"]["onnx-int8"]["path"]
    conf = {"models": [{"onnx": str(directory)}, {"registry": "tiny"}], "max_new_tokens": 4}
    result = _run_step(stocked_store, conf, capsys)
    assert result.models[0].kind == "onnx"
    _timed(result.models[0].answers[0], 4)
