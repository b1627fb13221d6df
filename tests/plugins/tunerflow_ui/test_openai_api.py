"""The OpenAI-compatible API in-process, driven by the real `openai` client over FastAPI's TestClient:
files, jobs triggered through a fake Airflow REST API (which records each request), OpenAI's error shape
for 400, 401 and 404, and no run triggered for a bad request. The same flow against a real
`airflow standalone` is tests/integration/test_openai_api.py."""

from __future__ import annotations

import io
import json

import httpx
import openai
import pytest
from fastapi.testclient import TestClient

from plugins.tunerflow_ui.app import create_app
from plugins.tunerflow_ui.routes import openai_api as openai_routes
from plugins.tunerflow_ui.routes.compare import AirflowApi, airflow_api
from tasks.openai_api import jobs
from tests.tasks.openai_api.test_files import CHAT, DPO, jsonl

MODEL = "smollm2-135m-instruct"


class FakeAirflow:
    """finetune_experiment's runs as Airflow's REST API serves them; records every request."""

    def __init__(self, trigger_status: int = 200):
        self.requests: list[httpx.Request] = []
        self.trigger_status = trigger_status
        self.runs: dict[str, dict] = {}
        # Runs the "scheduler" starts again right after they are marked failed (the race a cancel
        # must survive: Airflow's scheduler setting a queued run running from a stale read).
        self.restarted_once: set[str] = set()

    def handle(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        base = "/api/v2/dags/finetune_experiment/dagRuns"
        path = request.url.path
        if request.method == "POST" and path == base:
            if self.trigger_status != 200:
                return httpx.Response(self.trigger_status, json={"detail": "Forbidden by Airflow"})
            body = json.loads(request.content)
            self.runs[body["dag_run_id"]] = {
                "dag_run_id": body["dag_run_id"],
                "state": "queued",
                "conf": body["conf"],
            }
            return httpx.Response(200, json=self.runs[body["dag_run_id"]])
        run_id = path.removeprefix(base + "/").split("/")[0]
        if run_id not in self.runs:
            return httpx.Response(404, json={"detail": "no such run"})
        if path.endswith("/taskInstances"):
            return httpx.Response(200, json={"task_instances": []})
        if request.method == "PATCH":
            self.runs[run_id]["state"] = json.loads(request.content)["state"]
            answer = httpx.Response(200, json=dict(self.runs[run_id]))
            if run_id in self.restarted_once:
                self.restarted_once.discard(run_id)
                self.runs[run_id]["state"] = "running"
            return answer
        return httpx.Response(200, json=self.runs[run_id])

    def triggers(self) -> list[httpx.Request]:
        return [r for r in self.requests if r.method == "POST"]


@pytest.fixture
def fake_airflow(monkeypatch):
    monkeypatch.setattr(openai_routes, "CANCEL_CHECKS_S", (0.0, 0.0))
    return FakeAirflow()


@pytest.fixture
def client(ui_client, store_root, fake_airflow):
    made = ui_client(store_root)
    api = AirflowApi("http://airflow.test", transport=httpx.MockTransport(fake_airflow.handle))
    made.app.dependency_overrides[airflow_api] = lambda: api
    return openai.OpenAI(
        base_url="http://testserver/tunerflow/v1", api_key="t0ken", http_client=made, max_retries=0
    )


def upload(client, *rows):
    return client.files.create(file=("train.jsonl", io.BytesIO(jsonl(*rows))), purpose="fine-tune")


def test_files_upload_list_retrieve_and_content(client):
    uploaded = upload(client, CHAT, CHAT)
    assert (
        uploaded.id.startswith("file-")
        and uploaded.purpose == "fine-tune"
        and uploaded.filename == "train.jsonl"
    )
    assert [f.id for f in client.files.list()] == [uploaded.id]
    assert client.files.retrieve(uploaded.id).bytes == uploaded.bytes
    assert client.files.content(uploaded.id).content == jsonl(CHAT, CHAT)


def test_a_bad_file_is_a_400_naming_the_line(client):
    with pytest.raises(openai.BadRequestError) as refused:
        upload(client, CHAT, {"messages": "hello"})
    assert refused.value.status_code == 400
    assert refused.value.body["param"] == "file" and "line 2" in refused.value.body["message"]


def test_a_job_is_triggered_as_one_finetune_run_with_the_job_id_as_run_id(client, fake_airflow, store_root):
    training = upload(client, CHAT, CHAT).id
    job = client.fine_tuning.jobs.create(
        model=MODEL, training_file=training, hyperparameters={"n_epochs": 2}, suffix="tuna", seed=3
    )
    assert job.id.startswith("ftjob-") and job.status == "queued" and job.training_file == training
    assert (job.hyperparameters.n_epochs, job.seed, job.user_provided_suffix) == (2, 3, "tuna")
    [trigger] = fake_airflow.triggers()
    assert trigger.headers["authorization"] == "Bearer t0ken-of-ada"  # the caller's own token
    body = json.loads(trigger.content)
    assert body["dag_run_id"] == job.id and body["conf"]["hparams"][0]["epochs"] == 2
    assert client.fine_tuning.jobs.retrieve(job.id).status == "queued"
    assert [j.id for j in client.fine_tuning.jobs.list()] == [job.id]
    events = client.fine_tuning.jobs.list_events(job.id)
    assert [e.message for e in events] == ["Created fine-tuning job"]
    assert list(client.fine_tuning.jobs.checkpoints.list(job.id)) == []

    cancelled = client.fine_tuning.jobs.cancel(job.id)
    assert cancelled.status == "cancelled"
    assert fake_airflow.runs[job.id]["state"] == "failed"  # marked failed through the REST API
    assert client.fine_tuning.jobs.retrieve(job.id).status == "cancelled"
    with pytest.raises(openai.BadRequestError, match="already cancelled"):
        client.fine_tuning.jobs.cancel(job.id)


def test_a_cancel_marks_the_run_failed_again_when_the_scheduler_restarted_it(client, fake_airflow):
    job = client.fine_tuning.jobs.create(model=MODEL, training_file=upload(client, CHAT).id)
    fake_airflow.restarted_once.add(job.id)
    assert client.fine_tuning.jobs.cancel(job.id).status == "cancelled"
    patches = [r for r in fake_airflow.requests if r.method == "PATCH"]
    assert len(patches) == 2 and fake_airflow.runs[job.id]["state"] == "failed"


def test_jobs_page_with_after_and_limit(client):
    training = upload(client, CHAT).id
    made = [client.fine_tuning.jobs.create(model=MODEL, training_file=training).id for _ in range(3)]
    first = client.fine_tuning.jobs.list(limit=2)
    assert first.has_more and len(first.data) == 2
    rest = client.fine_tuning.jobs.list(limit=2, after=first.data[-1].id)
    assert not rest.has_more
    assert sorted(j.id for j in [*first.data, *rest.data]) == sorted(made)


@pytest.mark.parametrize(
    ("change", "param"),
    [
        ({"model": "gpt-4o-mini"}, "model"),
        ({"training_file": "file-nope"}, "training_file"),
        ({"hyperparameters": {"n_epochs": 0}}, "hyperparameters.n_epochs"),
        ({"method": {"type": "dpo"}}, "training_file"),
        (
            {"extra_body": {"tunerflow": {"conf": {"scoring": {"primary": "nope"}}}}},
            "tunerflow.conf.scoring.primary",
        ),
    ],
)
def test_a_bad_job_is_a_400_in_openais_shape_and_triggers_nothing(
    client, fake_airflow, store_root, change, param
):
    training = upload(client, CHAT).id
    with pytest.raises(openai.BadRequestError) as refused:
        client.fine_tuning.jobs.create(**{"model": MODEL, "training_file": training, **change})
    error = refused.value
    assert error.status_code == 400
    assert set(error.response.json()["error"]) == {"message", "type", "param", "code"}
    assert error.body["type"] == "invalid_request_error" and error.body["param"] == param
    assert param.split(".")[-1] in error.body["message"]
    assert fake_airflow.triggers() == [] and jobs.ids(store_root) == []


def test_a_run_airflow_refuses_leaves_no_job(ui_client, store_root):
    refusing = FakeAirflow(trigger_status=403)
    made = ui_client(store_root)
    made.app.dependency_overrides[airflow_api] = lambda: AirflowApi(
        "http://airflow.test", transport=httpx.MockTransport(refusing.handle)
    )
    client = openai.OpenAI(
        base_url="http://testserver/tunerflow/v1", api_key="t", http_client=made, max_retries=0
    )
    training = upload(client, DPO).id
    with pytest.raises(openai.PermissionDeniedError, match="Forbidden by Airflow"):
        client.fine_tuning.jobs.create(model=MODEL, training_file=training, method={"type": "dpo"})
    assert jobs.ids(store_root) == []


def test_unknown_ids_are_404_in_openais_shape(client):
    with pytest.raises(openai.NotFoundError) as missing:
        client.fine_tuning.jobs.retrieve("ftjob-nope")
    assert missing.value.body["code"] == "not_found"
    with pytest.raises(openai.NotFoundError):
        client.files.retrieve("file-nope")


@pytest.mark.parametrize(
    ("method", "path"),
    [("GET", "/v1/files"), ("POST", "/v1/fine_tuning/jobs"), ("GET", "/v1/fine_tuning/jobs/ftjob-x/events")],
)
def test_no_token_is_a_401_in_openais_shape(store_root, method, path):
    app = create_app()  # the real auth dependency: no token never reaches Airflow
    with TestClient(app) as anonymous:
        response = anonymous.request(method, path)
    assert response.status_code == 401
    error = response.json()["error"]
    assert error["type"] == "authentication_error" and "Not authenticated" in error["message"]
    assert set(error) == {"message", "type", "param", "code"}


def test_a_viewer_without_edit_rights_cannot_upload(ui_client, store_root):
    made = ui_client(store_root, can_edit=False)
    client = openai.OpenAI(
        base_url="http://testserver/tunerflow/v1", api_key="t", http_client=made, max_retries=0
    )
    with pytest.raises(openai.PermissionDeniedError):
        upload(client, CHAT)
