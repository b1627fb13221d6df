"""The llm_judge metric (plugins/scoring/llm_judge) through tasks.scoring.metrics.score(), against a real
OpenAI-compatible server on localhost that grades 10 when the answer contains the reference, else 2."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tasks.config.scoring import JudgeConfig
from tasks.scoring.judge_connection import JudgeError
from tasks.scoring.metrics import score
from tasks.scoring.plugins import get, lower_is_better
from tests.fixtures.openai_server import OpenAIServer, Scripted, connection_json

REPO = Path(__file__).resolve().parents[3]
KEY = "sk-test-0123456789abcdef"
QUESTIONS = ["What is the capital of France?", "Who wrote Hamlet?", "What is 2 + 2?"]
REFERENCES = ["Paris", "Shakespeare", "4"]
# Rows 1 and 3 contain their reference (grade 10 -> 1.0), row 2 does not (grade 2 -> 1/9).
ANSWERS = ["It is Paris.", "Christopher Marlowe.", "2 + 2 = 4"]
EXPECTED = (1.0 + 1 / 9 + 1.0) / 3  # 0.703704


@pytest.fixture
def server(monkeypatch):
    with OpenAIServer(api_key=KEY, model="judge-1") as running:
        monkeypatch.setenv("AIRFLOW_CONN_TUNERFLOW_JUDGE", connection_json(running))
        yield running


def options(**changes) -> dict[str, dict]:
    return {"llm_judge": JudgeConfig(**{"backoff_s": 0, "timeout_s": 5, **changes}).model_dump()}


def test_the_score_is_the_mean_normalised_grade_and_higher_is_better(server):
    result = score(["llm_judge"], ANSWERS, REFERENCES, questions=QUESTIONS, options=options())
    assert result == {"llm_judge": round(EXPECTED, 6)}
    assert not lower_is_better("llm_judge") and get("llm_judge").script.name == "llm_judge.py"
    # Each row's question, reference and answer went to the judge, at temperature 0, for the model.
    bodies = sorted((r["body"] for r in server.requests), key=lambda b: b["messages"][1]["content"])
    assert len(bodies) == 3
    assert all(b["model"] == "judge-1" and b["temperature"] == 0 for b in bodies)
    assert "<question>\nWhat is 2 + 2?\n</question>" in bodies[0]["messages"][1]["content"]


def test_it_scores_beside_other_metrics_which_get_no_questions(server):
    result = score(["rouge_l", "llm_judge"], ANSWERS, REFERENCES, questions=QUESTIONS, options=options())
    assert result["llm_judge"] == round(EXPECTED, 6) and 0 < result["rouge_l"] < 1


def test_the_key_is_sent_but_never_logged_or_returned(server, caplog, capsys):
    with caplog.at_level(logging.DEBUG):  # every logger, urllib3's included
        result = score(["llm_judge"], ANSWERS, REFERENCES, questions=QUESTIONS, options=options())
    assert {r["headers"]["Authorization"] for r in server.requests} == {f"Bearer {KEY}"}
    captured = capsys.readouterr()
    assert caplog.text and "llm_judge" in caplog.text  # something was logged...
    for text in (caplog.text, captured.out, captured.err, repr(result), repr(options())):
        assert KEY not in text  # ...but not the key


def test_a_refused_key_names_the_connection_and_not_the_key(server, monkeypatch):
    monkeypatch.setenv(
        "AIRFLOW_CONN_TUNERFLOW_JUDGE", connection_json(server).replace(KEY, "sk-wrong-key-000000")
    )
    with pytest.raises(JudgeError) as refused:
        score(["llm_judge"], ANSWERS, REFERENCES, questions=QUESTIONS, options=options())
    message = str(refused.value)
    assert "refused the API key (HTTP 401)" in message
    assert "the password of Airflow connection 'tunerflow_judge' is missing, wrong or expired" in message
    assert "sk-wrong" not in message  # the server echoed the start of the key: not repeated here


def test_a_rate_limited_row_is_retried(server):
    server.queue(Scripted(status=429, retry_after="0"), Scripted(status=429))
    result = score(
        ["llm_judge"], ANSWERS, REFERENCES, questions=QUESTIONS, options=options(max_concurrency=1)
    )
    assert result == {"llm_judge": round(EXPECTED, 6)}
    assert len(server.requests) == 5  # 3 rows, one of them tried three times


def test_an_ungradable_row_counts_zero_within_the_allowed_share_and_fails_beyond(server, caplog):
    server.queue(Scripted(reply="The answer seems fine."))  # the first row graded: no grade in the reply
    with caplog.at_level(logging.WARNING, logger="tunerflow.judge"):
        result = score(
            ["llm_judge"],
            ANSWERS,
            REFERENCES,
            questions=QUESTIONS,
            options=options(max_concurrency=1, max_ungraded_share=0.5),
        )
    # Row 0 counts 0 instead of 1: (0 + 1/9 + 1) / 3.
    assert result == {"llm_judge": round((1 / 9 + 1.0) / 3, 6)}
    assert "1 of 3 rows got no grade and count 0: row 0: no grade 1-10 in the reply" in caplog.text
    server.queue(Scripted(reply="The answer seems fine."))
    with pytest.raises(JudgeError, match=r"graded 2 of 3 rows, more than scoring\.judge\.max_ungraded_share"):
        score(["llm_judge"], ANSWERS, REFERENCES, questions=QUESTIONS, options=options(max_concurrency=1))


def test_without_questions_the_judge_refuses_to_run(server):
    with pytest.raises(ValueError, match="'llm_judge' grades answers against their questions, but none were"):
        score(["llm_judge"], ANSWERS, REFERENCES)
    assert server.requests == []


def test_the_connection_goes_from_airflow_to_the_step_process_through_its_environment(server, tmp_path):
    """What the evaluate task does: resolve the connection with Airflow on the worker, hand it to the step
    subprocess in its environment only, and score there with debug logging on."""
    from tasks.scoring.judge_connection import connection_env

    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW_CONN_")}
    env.update(connection_env("tunerflow_judge"), PYTHONPATH=str(REPO))
    code = textwrap.dedent(
        f"""
        import json, logging
        logging.basicConfig(level=logging.DEBUG)
        from tasks.scoring.metrics import score
        print(json.dumps(score(["llm_judge"], {ANSWERS!r}, {REFERENCES!r}, {QUESTIONS!r}, {options()!r})))
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads(done.stdout.strip().splitlines()[-1]) == {"llm_judge": round(EXPECTED, 6)}
    assert "llm_judge: judge-1 graded 3 rows" in done.stderr
    assert KEY not in done.stdout and KEY not in done.stderr
    assert {r["headers"]["Authorization"] for r in server.requests} == {f"Bearer {KEY}"}
