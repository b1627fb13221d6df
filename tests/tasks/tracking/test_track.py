"""Tracking a run written with the project's own writers into a real MLflow (SQLite, in tmp_path): the
parent run, a nested run per job, per-step metrics, artifacts, the mirrored registry version and its
alias; a retry adds nothing; a server that does not answer fails retryably, naming only its URI."""

from __future__ import annotations

import base64
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import ClassVar

import pytest

from tasks.contracts.planning import RunInfo
from tasks.registry import versions as registry
from tasks.storage import layout, store
from tasks.tracking import runs
from tasks.tracking.connection import TrackingError, target
from tasks.tracking.track import TrackingUnavailable, track
from tests.fixtures.console_store import FakeJob, FakeRun, build_run
from tests.fixtures.network import free_port

AIRFLOW = {"dag_id": "finetune_experiment", "run_id": "manual__2026-01-02T03:04:05+00:00"}


@pytest.fixture(scope="module")
def tracking_uri(tmp_path_factory) -> str:
    """One migrated SQLite tracking store for the module (each test its own experiment)."""
    return f"sqlite:///{tmp_path_factory.mktemp('mlflow') / 'mlflow.db'}"


def _run(root: str, experiment: str) -> RunInfo:
    """A finished run (a winner, a failed job, a base reference), its dataset's card, its report, and
    the registry version its promotion names (v2, production; v1 from an earlier run)."""
    fake = FakeRun(experiment=experiment, jobs=[FakeJob("lr1e-3", 0.8, steps=5), FakeJob("bad", error="OOM")])
    prefix = build_run(root, fake)
    dataset = layout.dataset_version(root, "qa", "v1")
    (store.local_dir(dataset) / "README.md").write_text("# qa\n")
    report = store.local_dir(store.join(prefix, "report"))
    (report / "index.html").write_text("<html>report</html>")
    (report / "loss.png").write_bytes(b"\x89PNG")
    board = store.read_json(store.join(prefix, "leaderboard.json"))
    winner = board["winner"]
    for number in (1, 2):
        entry = registry.register(
            root,
            experiment,
            {
                "run_uri": prefix,
                "job_id": winner["job_id"] if number == 2 else "older",
                "label": winner["label"],
                "base_model": {"name": "tiny", "hub_id": "org/tiny"},
                "dataset": {"name": "qa", "version": "v1"},
                "metrics": winner["metrics"],
                "primary": "rouge_l",
                "adapter_uri": store.join(prefix, "jobs", winner["job_id"], "train", "adapter"),
            },
        )
        current = registry.pointer(root, experiment)
        registry.set_production(root, experiment, entry["version"], current["sequence"] if current else None)
    return RunInfo(run_uri=prefix, store_root=root)


def _client(uri: str):
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def test_a_run_is_recorded_with_its_jobs_artifacts_and_registry_version(
    tracking_uri, store_root, tmp_path, monkeypatch
):
    monkeypatch.chdir(tmp_path)  # a SQLite store keeps artifacts under ./mlruns
    run = _run(store_root, "demo")
    tracked = track(run, target("tunerflow_mlflow", json.dumps({"host": tracking_uri})), AIRFLOW)
    client = _client(tracking_uri)

    parent = client.get_run(tracked.parent_run_id)
    assert parent.info.status == "FINISHED"
    assert parent.data.tags["tunerflow.experiment"] == "demo"
    assert parent.data.tags["airflow.dag_id"] == "finetune_experiment"
    assert parent.data.tags["airflow.run_id"] == AIRFLOW["run_id"]
    assert parent.data.params["scoring.primary"] == "rouge_l"
    assert parent.data.metrics["winner.rouge_l"] == 0.8
    assert {a.path for a in client.list_artifacts(parent.info.run_id)} >= {"leaderboard.json", "report"}
    assert {a.path for a in client.list_artifacts(parent.info.run_id, "report")} == {
        "report/index.html",
        "report/loss.png",
    }
    assert [a.path for a in client.list_artifacts(parent.info.run_id, "datasets/qa")] == [
        "datasets/qa/README.md"
    ]

    by_label = {
        client.get_run(r).data.tags["tunerflow.label"]: client.get_run(r) for r in tracked.job_runs.values()
    }
    assert set(by_label) == {"qa|tiny|lr1e-3", "qa|tiny|bad", "qa|tiny|base"}
    good, bad = by_label["qa|tiny|lr1e-3"], by_label["qa|tiny|bad"]
    for job in by_label.values():
        assert job.data.tags["mlflow.parentRunId"] == parent.info.run_id
    assert good.info.status == "FINISHED" and bad.info.status == "FAILED"
    assert bad.data.tags["tunerflow.error"] == "OOM"
    assert (good.data.params["learning_rate"], good.data.params["lora_r"]) == ("0.001", "8")
    assert (good.data.params["dataset"], good.data.params["base_model"]) == ("qa", "tiny")
    assert good.data.params["method"] == "lora"
    history = client.get_metric_history(good.info.run_id, "loss")
    assert [(m.step, m.value) for m in history] == [(s, 3.0 / s) for s in range(1, 6)]
    assert good.data.metrics["rouge_l"] == 0.8

    versions = client.search_model_versions("name='demo'")
    assert len(versions) == 1 and tracked.model_version == str(versions[0].version)
    tags = versions[0].tags
    assert (tags["tunerflow.version"], tags["tunerflow.dataset_version"], tags["metric.rouge_l"]) == (
        "2",
        "v1",
        "0.8",
    )
    assert tags["tunerflow.run_uri"] == run.run_uri and tags["tunerflow.base_model"] == "tiny"
    assert versions[0].run_id == good.info.run_id
    assert client.get_model_version_by_alias("demo", "production").version == versions[0].version

    # A retry (or a cleared task) finds every run by its tags: nothing is created or logged twice.
    again = track(run, target("tunerflow_mlflow", json.dumps({"host": tracking_uri})), AIRFLOW)
    assert again.model_dump() == tracked.model_dump()
    assert len(client.get_metric_history(good.info.run_id, "loss")) == 5
    assert len(client.search_model_versions("name='demo'")) == 1
    exp = client.get_experiment_by_name("demo").experiment_id
    assert len(client.search_runs([exp])) == 4

    # A rollback to a version MLflow never saw takes the alias away instead of leaving it wrong.
    assert registry.rollback(store_root, "demo") == 1
    track(run, target("tunerflow_mlflow", json.dumps({"host": tracking_uri})), AIRFLOW)
    assert "production" not in client.get_registered_model("demo").aliases


def test_a_job_run_an_earlier_try_left_half_written_is_replaced(
    tracking_uri, store_root, tmp_path, monkeypatch
):
    monkeypatch.chdir(tmp_path)
    run = _run(store_root, "retried")
    client = _client(tracking_uri)
    exp = runs.experiment_id(client, "retried")
    job_id = store.read_json(store.join(run.run_uri, "leaderboard.json"))["winner"]["job_id"]
    half = client.create_run(exp, tags={runs.TAG_RUN: run.run_uri, runs.TAG_JOB: job_id}).info.run_id
    client.log_metric(half, "loss", 3.0, step=1)

    tracked = track(run, target("m", json.dumps({"host": tracking_uri})), AIRFLOW)
    assert tracked.job_runs[job_id] != half
    assert client.get_run(half).info.lifecycle_stage == "deleted"
    assert len(client.get_metric_history(tracked.job_runs[job_id], "loss")) == 5


def test_a_server_that_does_not_answer_fails_retryably_naming_its_uri_only(store_root, tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    run = _run(store_root, "down")
    uri = f"http://127.0.0.1:{free_port()}"
    value = json.dumps({"conn_type": "http", "host": uri, "login": "alice", "password": "pw-never-shown"})
    with pytest.raises(TrackingUnavailable) as raised:
        track(run, target("tunerflow_mlflow", value), AIRFLOW)
    message = str(raised.value)
    assert f"MLflow tracking server at {uri} (connection 'tunerflow_mlflow') did not answer" in message
    assert "pw-never-shown" not in message and "alice" not in message


class _Refusing(BaseHTTPRequestHandler):
    """A tracking server that refuses every request as unauthenticated, remembering what it was sent."""

    seen: ClassVar[list[str | None]] = []

    def do_GET(self):
        _Refusing.seen.append(self.headers.get("Authorization"))
        body = json.dumps({"error_code": "UNAUTHENTICATED", "message": "bad credentials"}).encode()
        self.send_response(401)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def test_the_connections_credentials_reach_the_server_and_a_refusal_is_not_retried(store_root):
    run = _run(store_root, "refused")
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Refusing)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    uri = f"http://127.0.0.1:{server.server_address[1]}"
    value = json.dumps({"conn_type": "http", "host": uri, "login": "alice", "password": "pw-never-shown"})
    try:
        with pytest.raises(TrackingError) as raised:
            track(run, target("tunerflow_mlflow", value), AIRFLOW)
    finally:
        server.shutdown()
    assert not isinstance(raised.value, TrackingUnavailable)
    assert _Refusing.seen[0] == "Basic " + base64.b64encode(b"alice:pw-never-shown").decode()
    assert f"MLflow tracking server at {uri} refused the request" in str(raised.value)
    assert "pw-never-shown" not in str(raised.value)
