"""The LLM judge: its connection (Airflow -> environment -> step, tasks.scoring.judge_connection), the prompt
and the grade (tasks.scoring.judge), and the HTTP client (tasks.scoring.judge_client) against a real
OpenAI-compatible server on localhost."""

from __future__ import annotations

import json
import logging
import socket
import time

import pytest
from pydantic import ValidationError

from tasks.config.experiment import parse_experiment
from tasks.config.scoring import JudgeConfig, ScoringConfig
from tasks.scoring import judge, judge_connection
from tasks.scoring.judge import judge_env, parse_grade
from tasks.scoring.judge_client import JudgeClient
from tasks.scoring.judge_connection import JudgeError, base_url, parse_connection, read_connection
from tests.fixtures.confs import tiny_conf
from tests.fixtures.openai_server import OpenAIServer, Scripted, connection_json

KEY = "sk-test-0123456789abcdef"
VAR = "AIRFLOW_CONN_TUNERFLOW_JUDGE"


@pytest.fixture
def server(monkeypatch):
    with OpenAIServer(api_key=KEY) as running:
        monkeypatch.setenv(VAR, connection_json(running))
        yield running


def fast(**changes) -> JudgeConfig:
    return JudgeConfig(**{"backoff_s": 0, "timeout_s": 5, **changes})


# --- the grade ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("reply", "grade"),
    [
        ('{"grade": 7, "reason": "close"}', 7),
        ('Here you go:\n```json\n{"reason": "ok", "grade": "9"}\n```', 9),
        ('{"score": 3}', 3),
        ("Grade: 8", 8),
        ("The score is 4.", 4),
        ("**Rating:** 6/10", 6),
        ("I would give it 5 out of 10.", 5),
        ("10", 10),
        ('<think>A 2 would be harsh; grade: 3?</think>\n{"grade": 9}', 9),  # reasoning is skipped
        ('{"grade": 7.0}', 7),
        ('{"grade": 11}', None),  # outside 1-10
        ('{"grade": 6.5}', None),  # not whole
        ('{"grade": true}', None),
        ("It mentions 1040 and Oslo, mostly right.", None),  # numbers, but no grade
        ("", None),
        (None, None),
    ],
)
def test_the_grade_is_read_from_json_or_common_phrasings(reply, grade):
    assert parse_grade(reply) == grade


def test_grades_map_onto_zero_to_one():
    assert judge.normalised(1) == 0.0 and judge.normalised(10) == 1.0
    assert judge.normalised(7) == pytest.approx(6 / 9)


def test_the_prompt_holds_the_rubric_the_reply_format_and_the_row_as_tagged_data():
    system, user = judge.messages("Capital of France?", "Paris.", "Paris")
    assert system["role"] == "system" and system["content"].startswith(judge.DEFAULT_RUBRIC)
    assert system["content"].endswith(judge.REPLY_FORMAT)
    assert user == {
        "role": "user",
        "content": "<question>\nCapital of France?\n</question>\n\n<reference_answer>\nParis\n"
        "</reference_answer>\n\n<answer>\nParis.\n</answer>",
    }
    custom = judge.messages("q", "a", "r", rubric="Grade tone only.")[0]["content"]
    assert custom == f"Grade tone only.\n\n{judge.REPLY_FORMAT}"  # the reply format is always appended


# --- the connection ----------------------------------------------------------------------------------


URIS = [
    "http://:sk-abc@localhost:8000/v1?model=judge-1",
    "https://team:p%40ss%2Fw0rd@api.example.com/v1?model=gpt-4o-mini&headers=%7B%22X-Team%22%3A+%22ml%22%7D",
    "openai://:k@localhost%3A8000%2Fv1",  # Airflow's get_uri of host "localhost:8000/v1"
    "http://https://:sk%2Fx%3Ay%40z@api.openai.com%2Fv1/?__extra__=%7B%22model%22%3A+%22m%22%7D",
    "my-judge://@judge.internal:9000/?model=m",
]


@pytest.mark.parametrize("uri", URIS)
def test_the_uri_form_is_read_as_airflow_reads_it(uri):
    from airflow.sdk import Connection

    expected = Connection.from_uri(uri, conn_id="j")
    fields = parse_connection("j", uri)
    assert fields == {
        "conn_type": expected.conn_type,
        "host": expected.host,
        "login": expected.login,
        "password": expected.password,
        "schema": expected.schema,
        "port": expected.port,
        "extra": expected.extra_dejson,
    }


def test_the_json_form_and_airflows_own_uri_of_it_give_the_same_endpoint():
    from airflow.sdk import Connection

    value = {
        "conn_type": "http",
        "host": "https://api.openai.com/v1",
        "password": "sk/x:y@z",
        "extra": {"model": "gpt-4o-mini", "headers": {"OpenAI-Project": "proj_1"}},
    }
    from_json = judge_connection.endpoint("j", json.dumps(value))
    uri = Connection.from_json(json.dumps(value), conn_id="j").get_uri()
    assert judge_connection.endpoint("j", uri) == from_json
    assert from_json.base_url == "https://api.openai.com/v1"
    assert from_json.api_key.get_secret_value() == "sk/x:y@z"
    assert from_json.model == "gpt-4o-mini" and from_json.headers == {"OpenAI-Project": "proj_1"}
    assert "sk/x:y@z" not in repr(from_json) and "proj_1" not in repr(from_json)
    # extra as a JSON string, as `airflow connections add --conn-extra` stores it, and the port as text.
    as_string = {**value, "extra": json.dumps(value["extra"]), "port": "443"}
    assert judge_connection.endpoint("j", json.dumps(as_string)).base_url == "https://api.openai.com:443/v1"


@pytest.mark.parametrize(
    ("fields", "url"),
    [
        ({"host": "https://api.openai.com/v1/"}, "https://api.openai.com/v1"),
        (
            {"host": "x", "extra": {"base_url": "http://gw.internal/openai/v1/"}},
            "http://gw.internal/openai/v1",
        ),
        (
            {"conn_type": "http", "host": "localhost", "port": 8000, "schema": "v1"},
            "http://localhost:8000/v1",
        ),
        ({"conn_type": "http", "host": "api.example.com", "schema": "https"}, "https://api.example.com"),
        ({"conn_type": "openai", "host": "api.example.com", "schema": "v1"}, "https://api.example.com/v1"),
        ({"host": "http://localhost:8000/v1", "port": 9999}, "http://localhost:8000/v1"),  # the URL's port
        ({"host": "http://localhost/v1", "port": 8000, "schema": "ignored"}, "http://localhost:8000/v1"),
    ],
)
def test_the_base_url_comes_from_extra_or_host_port_and_schema(fields, url):
    assert base_url("j", {"extra": {}, **fields}) == url


def test_a_connection_without_host_or_with_bad_json_is_refused_without_showing_it():
    with pytest.raises(JudgeError, match="'j' has no host: set it to the judge's API root"):
        judge_connection.endpoint("j", json.dumps({"conn_type": "http", "password": KEY}))
    with pytest.raises(JudgeError, match="'j': the JSON form is not valid JSON") as refused:
        judge_connection.endpoint("j", '{"host": "h", "password": "' + KEY + '",}')
    assert KEY not in str(refused.value)
    with pytest.raises(JudgeError, match=r"'j': extra\.headers is not valid JSON") as refused:
        judge_connection.endpoint("j", f"http://:{KEY}@h/v1?headers=not-json")
    assert KEY not in str(refused.value)
    with pytest.raises(JudgeError, match="neither JSON nor a URI") as refused:
        judge_connection.endpoint("j", KEY)
    assert KEY not in str(refused.value)


def test_a_missing_variable_says_how_to_create_the_connection():
    with pytest.raises(JudgeError) as missing:
        read_connection("tunerflow_judge", environ={})
    message = str(missing.value)
    assert "AIRFLOW_CONN_TUNERFLOW_JUDGE is not set" in message
    assert "airflow connections add tunerflow_judge --conn-type http" in message
    assert "env_from_secrets" in message  # the kubernetes route


def test_connection_env_resolves_the_connection_through_airflow(monkeypatch):
    """Airflow's task SDK reads the connection from its environment-variable secrets backend, the same
    call a task makes on a worker (where the metadata DB or Vault may answer instead)."""
    uri = f"http://:{KEY}@127.0.0.1:8000/v1?model=judge-1"
    monkeypatch.setenv("AIRFLOW_CONN_MY_JUDGE", uri)
    env = judge_connection.connection_env("my_judge")
    assert list(env) == ["AIRFLOW_CONN_MY_JUDGE"]
    assert json.loads(env["AIRFLOW_CONN_MY_JUDGE"]) == {
        "conn_type": "http",
        "host": "127.0.0.1",
        "login": "",
        "password": KEY,
        "schema": "v1",
        "port": 8000,
        "extra": {"model": "judge-1"},
    }
    # What the step reads from that environment is the endpoint the URI describes.
    assert read_connection("my_judge", environ=env) == read_connection(
        "my_judge", environ={"AIRFLOW_CONN_MY_JUDGE": uri}
    )
    assert read_connection("my_judge", environ=env).base_url == "http://127.0.0.1:8000/v1"


def test_connection_env_names_the_missing_connection_and_how_to_add_it(monkeypatch):
    monkeypatch.delenv("AIRFLOW_CONN_NO_SUCH_JUDGE", raising=False)
    with pytest.raises(
        JudgeError, match=r"scoring.judge.conn_id: the Airflow connection 'no_such_judge'"
    ) as e:
        judge_connection.connection_env("no_such_judge")
    assert "airflow connections add no_such_judge" in str(e.value)


def test_judge_env_is_empty_unless_llm_judge_is_scored(monkeypatch):
    monkeypatch.setenv("AIRFLOW_CONN_OTHER_JUDGE", f"http://:{KEY}@127.0.0.1:8000/v1?model=m")
    assert judge_env({"metrics": ["rouge_l", "exact_match"]}) == {}
    assert judge_env({}) == {}  # the default metrics
    scoring = ScoringConfig(metrics=["rouge_l", "llm_judge"], judge={"conn_id": "other_judge"}).model_dump()
    assert list(judge_env(scoring)) == ["AIRFLOW_CONN_OTHER_JUDGE"]


# --- the conf ----------------------------------------------------------------------------------------


def test_the_conf_accepts_llm_judge_with_its_settings(tmp_path):
    conf = tiny_conf(tmp_path)
    conf["scoring"] = {
        "metrics": ["rouge_l", "llm_judge"],
        "primary": "llm_judge",
        "judge": {"conn_id": "team_judge", "model": "gpt-4o-mini", "max_concurrency": 8},
    }
    scoring = parse_experiment(conf).scoring
    assert scoring.judge.conn_id == "team_judge" and scoring.judge.max_concurrency == 8
    assert ScoringConfig().judge == JudgeConfig()  # optional, with defaults
    with pytest.raises(ValidationError, match="conn_id"):
        JudgeConfig(conn_id="my-judge")  # not an environment variable name
    with pytest.raises(ValidationError, match="max_concurrency"):
        JudgeConfig(max_concurrency=0)


# --- the client over HTTP ----------------------------------------------------------------------------


def test_the_model_from_the_conf_wins_over_the_connections(server):
    endpoint = read_connection("tunerflow_judge")
    assert JudgeClient(endpoint, JudgeConfig()).model == "judge-1"
    assert JudgeClient(endpoint, JudgeConfig(model="big-judge")).model == "big-judge"
    keyless = endpoint.model_copy(update={"model": None})
    with pytest.raises(JudgeError, match=r"scoring\.judge\.model: no judge model given"):
        JudgeClient(keyless, JudgeConfig())


def test_rows_are_graded_concurrently_within_the_bound(server):
    server.queue(*[Scripted(delay_s=0.3) for _ in range(6)])
    n = 6
    started = time.monotonic()
    result = judge.judge(["q"] * n, ["Paris"] * n, ["paris"] * n, fast(max_concurrency=3))
    assert result == {"llm_judge": 1.0, "llm_judge_ungraded": 0, "llm_judge_rows": [1.0] * n}
    assert server.max_in_flight == 3
    assert time.monotonic() - started < 6 * 0.3  # not one after the other


def test_a_late_reply_is_retried_and_retry_after_is_respected(server):
    server.queue(Scripted(delay_s=2.0))  # longer than the timeout
    result = judge.judge(["q"], ["Paris"], ["Paris"], fast(timeout_s=0.5, max_retries=1))
    assert result["llm_judge"] == 1.0 and len(server.requests) == 2
    server.queue(Scripted(status=503, retry_after="1"))
    started = time.monotonic()
    assert judge.judge(["q"], ["Paris"], ["Paris"], fast())["llm_judge"] == 1.0
    assert time.monotonic() - started >= 1.0


def test_too_many_ungraded_rows_fail_the_metric_and_say_which(server, caplog):
    server.queue(*[Scripted(status=500) for _ in range(3)])  # row 0: the first try and both retries fail
    config = fast(max_concurrency=1, max_retries=2, max_ungraded_share=0.5)
    with caplog.at_level(logging.WARNING, logger="tunerflow.judge"):
        result = judge.judge(["q", "q"], ["Paris", "Paris"], ["Paris", "Paris"], config)
    assert result == {"llm_judge": 0.5, "llm_judge_ungraded": 1, "llm_judge_rows": [0.0, 1.0]}  # (0 + 1) / 2
    assert "1 of 2 rows got no grade and count 0: row 0: HTTP 500, 3 tries" in caplog.text
    server.queue(Scripted(reply="no idea"), Scripted(reply="no idea"))
    with pytest.raises(
        JudgeError, match=r"graded 0 of 2 rows, more than scoring\.judge\.max_ungraded_share"
    ) as e:
        judge.judge(["q", "q"], ["Paris", "Paris"], ["Paris", "Paris"], config)
    assert "row 0: no grade 1-10 in the reply 'no idea'" in str(e.value)


def test_a_wrong_model_or_path_stops_at_once_and_says_what_to_check(server):
    with pytest.raises(
        JudgeError, match=r"HTTP 404 from .*/v1/chat/completions: the base URL of Airflow connection"
    ) as e:
        judge.judge(["q"] * 20, ["a"] * 20, ["a"] * 20, fast(model="gpt-nope"))
    assert "model 'gpt-nope' must exist there" in str(e.value) and "does not exist" in str(e.value)
    assert len(server.requests) <= JudgeConfig().max_concurrency  # the other rows were never sent


def test_an_unreachable_endpoint_stops_at_once(monkeypatch):
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    monkeypatch.setenv(
        VAR,
        json.dumps(
            {
                "conn_type": "http",
                "host": f"http://127.0.0.1:{port}/v1",
                "password": KEY,
                "extra": {"model": "m"},
            }
        ),
    )
    with pytest.raises(
        JudgeError, match=rf"cannot reach the judge at http://127.0.0.1:{port}/v1/chat/completions"
    ) as e:
        judge.judge(["q"] * 50, ["a"] * 50, ["a"] * 50, fast(max_retries=1))
    assert KEY not in str(e.value)


def test_headers_from_the_connection_are_sent_and_a_keyless_server_gets_no_authorization(monkeypatch):
    with OpenAIServer(api_key=None) as keyless:
        monkeypatch.setenv(VAR, connection_json(keyless, headers={"X-Team": "ml"}))
        assert judge.judge(["q"], ["Paris"], ["Paris"], fast())["llm_judge"] == 1.0
        headers = keyless.requests[0]["headers"]
        assert headers["X-Team"] == "ml" and "Authorization" not in headers
