"""The OpenAI-compatible fine-tuning API end to end: the real `openai` client against the session's real
`airflow standalone` (tests/fixtures/airflow_standalone.py), with an admin JWT as its API key.

One job on the tiny model trains a few steps with a validation file: uploaded, created, its events
listed while it runs, retrieved until `succeeded`, its checkpoints listed. A second job is cancelled at
once and stays `cancelled` (its DAG run failed in Airflow). A bad request is OpenAI's 400 and starts no
run; no token, or a forged one, is OpenAI's 401.
"""

from __future__ import annotations

import io
import json
import time

import openai
import pytest

from tests.fixtures.airflow_standalone import DAG_ID, RUN_TIMEOUT_S

pytestmark = pytest.mark.slow

FINAL = {"succeeded", "failed", "cancelled"}
# A few steps on the tiny model: 16 rows, 8 a step, 1 epoch = 2 steps, a checkpoint after each.
OPTIONS = {
    "preset": "lora-fast",
    "hparams": {"save_steps": 1, "logging_steps": 1, "micro_batch_size": 8},
    "conf": {
        "scoring": {"metrics": ["exact_match", "rouge_l"], "primary": "rouge_l", "max_new_tokens": 4},
        "export": {"enabled": False},
    },
}


def _chat(question: str, answer: str) -> dict:
    return {"messages": [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]}


def _jsonl(rows: list[dict]) -> io.BytesIO:
    return io.BytesIO("".join(json.dumps(row) + "\n" for row in rows).encode())


@pytest.fixture(scope="module")
def client(airflow_server):
    return openai.OpenAI(
        base_url=f"{airflow_server.base_url}/tunerflow/v1",
        api_key=airflow_server.token("admin"),
        max_retries=0,
    )


@pytest.fixture(scope="module")
def files(client):
    train = [_chat(f"What is {i} plus {i}?", f"{2 * i}.") for i in range(16)]
    valid = [_chat(f"Name the number after {i}.", f"{i + 1}.") for i in range(100, 104)]
    return (
        client.files.create(file=("train.jsonl", _jsonl(train)), purpose="fine-tune"),
        client.files.create(file=("valid.jsonl", _jsonl(valid)), purpose="fine-tune"),
    )


def test_a_job_trains_to_succeeded_with_events_and_checkpoints(airflow_server, client, files, tiny_model_dir):
    train, valid = files
    assert client.files.retrieve(train.id).filename == "train.jsonl"
    job = client.fine_tuning.jobs.create(
        model=str(tiny_model_dir),
        training_file=train.id,
        validation_file=valid.id,
        method={"type": "supervised", "supervised": {"hyperparameters": {"n_epochs": 1, "batch_size": 8}}},
        suffix="itest",
        seed=5,
        extra_body={"tunerflow": OPTIONS},
    )
    assert job.status in ("queued", "validating_files") and job.id.startswith("ftjob-")
    assert airflow_server.run(job.id)["conf"]["name"] == "ft-tiny-itest"

    seen_while_running: list[str] = []
    deadline = time.monotonic() + RUN_TIMEOUT_S
    while (job := client.fine_tuning.jobs.retrieve(job.id)).status not in FINAL:
        assert time.monotonic() < deadline, airflow_server.logs(job.id)
        seen_while_running += [e.message for e in client.fine_tuning.jobs.list_events(job.id, limit=100)]
        time.sleep(8)
    assert job.status == "succeeded", f"{job.error}\n{airflow_server.logs(job.id)}"
    assert "Created fine-tuning job" in seen_while_running

    assert job.fine_tuned_model == "ft-tiny-itest-v1"  # the registry version the run registered
    assert job.finished_at >= job.created_at and job.trained_tokens
    assert (job.hyperparameters.n_epochs, job.hyperparameters.batch_size, job.seed) == (1, 8, 5)
    [results] = job.result_files
    assert b'"loss"' in client.files.content(results).content

    events = list(client.fine_tuning.jobs.list_events(job.id, limit=100))
    steps = [e.data["step"] for e in events if e.type == "metrics" and "train_loss" in e.data]
    assert sorted(steps) == [1, 2]
    assert {"train[0] started", "train[0] success", "promote success"} <= {e.message for e in events}
    checkpoints = list(client.fine_tuning.jobs.checkpoints.list(job.id))
    assert [c.step_number for c in checkpoints] == [2, 1]
    assert checkpoints[0].metrics.train_loss is not None and checkpoints[0].fine_tuning_job_id == job.id
    assert job.id in [j.id for j in client.fine_tuning.jobs.list(limit=100)]


def test_a_cancelled_job_stays_cancelled(airflow_server, client, files, tiny_model_dir):
    job = client.fine_tuning.jobs.create(
        model=str(tiny_model_dir), training_file=files[0].id, extra_body={"tunerflow": OPTIONS}
    )
    assert client.fine_tuning.jobs.cancel(job.id).status == "cancelled"
    assert airflow_server.wait_for(job.id) == "failed"
    assert client.fine_tuning.jobs.retrieve(job.id).status == "cancelled"
    with pytest.raises(openai.BadRequestError, match="already cancelled"):
        client.fine_tuning.jobs.cancel(job.id)


def test_a_bad_request_is_a_400_and_starts_no_run(airflow_server, client, files, tiny_model_dir):
    before = airflow_server.run_count()
    with pytest.raises(openai.BadRequestError) as refused:
        client.fine_tuning.jobs.create(
            model=str(tiny_model_dir), training_file=files[0].id, hyperparameters={"n_epochs": 0}
        )
    assert refused.value.status_code == 400
    assert refused.value.body["type"] == "invalid_request_error"
    assert refused.value.body["param"] == "hyperparameters.n_epochs"
    assert airflow_server.run_count() == before
    assert airflow_server.runs(DAG_ID)  # the count above is of real runs


@pytest.mark.parametrize(
    "credentials",
    [
        # The client insists on some credential; an empty header is a request with no token.
        {"api_key": "unused", "default_headers": {"Authorization": ""}},
        {"api_key": "not-a-jwt"},
    ],
    ids=["no-token", "forged-token"],
)
def test_no_token_or_a_bad_one_is_a_401(airflow_server, credentials):
    anonymous = openai.OpenAI(
        base_url=f"{airflow_server.base_url}/tunerflow/v1", max_retries=0, **credentials
    )
    with pytest.raises(openai.AuthenticationError) as refused:
        anonymous.fine_tuning.jobs.list()
    assert refused.value.status_code == 401
    assert refused.value.body["type"] == "authentication_error"
