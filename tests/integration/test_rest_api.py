"""The REST API path end to end: a real `airflow standalone` (LocalExecutor, SQLite), driven over HTTP only.

Auth is the Simple auth manager: one `admin` user (role admin) whose password we write to the passwords
file beforehand, exchanged for a JWT with `POST /auth/token`. The retraining config points
`retrain_champion` at the experiment's registry and at a test data asset, so posting an event on that
asset retrains the champion the first run promoted.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import quote

import httpx
import psutil
import pytest
import yaml

from tasks.registry.promotion_event import PRODUCTION_ASSET_URI
from tasks.storage import layout, store
from tests.conftest import REPO
from tests.fixtures.confs import tiny_conf

pytestmark = pytest.mark.slow

DAG_ID = "finetune_experiment"
RETRAIN_DAG_ID = "retrain_champion"
DATA_ASSET = "tunerflow://datasets/tuna-rest-test"
PASSWORD = "tunerflow-test"
START_TIMEOUT_S = 300
RUN_TIMEOUT_S = 900
# A retrain run lasts as long as the whole finetune run it starts.
RETRAIN_TIMEOUT_S = 1800


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _tail(path: Path, lines: int = 60) -> str:
    """The last lines of a log, without the API server's access log."""
    if not path.exists():
        return f"({path} does not exist)"
    kept = [line for line in path.read_text(errors="replace").splitlines() if "[http.access]" not in line]
    return "\n".join(kept[-lines:])


def _events(task_log: Path, lines: int = 30) -> str:
    """A task log (JSON lines) as `level event`, with the exception of a failure."""
    out = []
    for line in task_log.read_text(errors="replace").splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            out.append(line)
            continue
        out.append(f"{record.get('level', '')} {record.get('event', '')}")
        out += [f"  {e.get('exc_type')}: {e.get('exc_value')}" for e in record.get("error_detail") or []]
    return "\n".join(out[-lines:])


class Airflow:
    """A running standalone Airflow and an authenticated client for its REST API."""

    def __init__(self, process: subprocess.Popen, home: Path, base_url: str, store_root: str):
        self.process, self.home, self.base_url, self.store_root = process, home, base_url, store_root
        self.log = home / "standalone.log"
        self.http = httpx.Client(base_url=base_url, timeout=30)

    def logs(self, run_id: str | None = None, dag_id: str = DAG_ID) -> str:
        """The standalone output's tail; for `run_id` also each task's state and the failed tasks' logs."""
        parts = [f"--- airflow standalone ---\n{_tail(self.log)}"]
        if run_id:
            try:
                tis = self.task_instances(run_id, dag_id)
            except httpx.HTTPError as error:
                return "\n".join([*parts, f"(no task instances: {error!r})"])
            parts += [
                "--- task states ---",
                *(f"{ti['task_id']}[{ti['map_index']}]: {ti['state']}" for ti in tis),
            ]
            run_dir = self.home / "logs" / f"dag_id={dag_id}" / f"run_id={run_id}"
            for ti in tis:
                if ti["state"] in ("failed", "running", "up_for_retry"):
                    where = run_dir / f"task_id={ti['task_id']}"
                    where = where / f"map_index={ti['map_index']}" if ti["map_index"] >= 0 else where
                    for task_log in sorted(where.glob("attempt=*.log")):
                        parts.append(f"--- {task_log.relative_to(run_dir)} ---\n{_events(task_log)}")
        return "\n".join(parts)

    def wait_until_ready(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            assert self.process.poll() is None, f"airflow standalone exited\n{self.logs()}"
            try:
                if self.http.get("/api/v2/monitor/health").status_code == 200:
                    token = self.http.post("/auth/token", json={"username": "admin", "password": PASSWORD})
                    token.raise_for_status()
                    self.http.headers["Authorization"] = f"Bearer {token.json()['access_token']}"
                    dags = [self.http.get(f"/api/v2/dags/{d}") for d in (DAG_ID, RETRAIN_DAG_ID)]
                    if all(d.status_code == 200 for d in dags):
                        return
            except httpx.TransportError:
                pass
            time.sleep(2)
        pytest.fail(f"Airflow did not serve {DAG_ID} within {START_TIMEOUT_S}s\n{self.logs()}")

    def trigger(self, conf: dict) -> httpx.Response:
        return self.http.post(f"/api/v2/dags/{DAG_ID}/dagRuns", json={"logical_date": None, "conf": conf})

    def run_count(self) -> int:
        response = self.http.get(f"/api/v2/dags/{DAG_ID}/dagRuns")
        response.raise_for_status()
        return response.json()["total_entries"]

    def run_path(self, run_id: str, dag_id: str = DAG_ID) -> str:
        return f"/api/v2/dags/{dag_id}/dagRuns/{quote(run_id, safe='')}"

    def task_instances(self, run_id: str, dag_id: str = DAG_ID) -> list[dict]:
        response = self.http.get(f"{self.run_path(run_id, dag_id)}/taskInstances")
        response.raise_for_status()
        return response.json()["task_instances"]

    def task_states(self, run_id: str, dag_id: str = DAG_ID) -> dict[str, list[str]]:
        states: dict[str, list[str]] = {}
        for ti in self.task_instances(run_id, dag_id):
            states.setdefault(ti["task_id"], []).append(ti["state"])
        return states

    def wait_for(self, run_id: str, dag_id: str = DAG_ID, timeout_s: int = RUN_TIMEOUT_S) -> str:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            state = self.http.get(self.run_path(run_id, dag_id)).json()["state"]
            if state not in ("queued", "running"):
                return state
            time.sleep(5)
        pytest.fail(
            f"{dag_id} run {run_id} still not finished after {timeout_s}s\n{self.logs(run_id, dag_id)}"
        )

    def xcom(self, run_id: str, task_id: str, dag_id: str = DAG_ID) -> dict:
        path = f"{self.run_path(run_id, dag_id)}/taskInstances/{task_id}/xcomEntries/return_value"
        response = self.http.get(path)
        response.raise_for_status()
        return response.json()["value"]

    def runs(self, dag_id: str) -> list[dict]:
        response = self.http.get(f"/api/v2/dags/{dag_id}/dagRuns")
        response.raise_for_status()
        return response.json()["dag_runs"]

    def asset_id(self, uri: str) -> int:
        response = self.http.get("/api/v2/assets", params={"uri_pattern": uri})
        response.raise_for_status()
        [asset] = [a for a in response.json()["assets"] if a["uri"] == uri]
        return asset["id"]

    def asset_events(self, uri: str) -> list[dict]:
        response = self.http.get("/api/v2/assets/events", params={"asset_id": self.asset_id(uri)})
        response.raise_for_status()
        return response.json()["asset_events"]


def _stop(process: subprocess.Popen) -> None:
    """Stop standalone's process group and every descendant (task runners move to their own groups)."""
    try:
        parent = psutil.Process(process.pid)
        family = [parent, *parent.children(recursive=True)]
    except psutil.NoSuchProcess:
        family = []
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    _, alive = psutil.wait_procs(family, timeout=30)
    for survivor in alive:
        with contextlib.suppress(psutil.NoSuchProcess):
            survivor.kill()
    process.wait()


@pytest.fixture(scope="session")
def airflow_server(tmp_path_factory, request):
    bin_dir = str(Path(sys.executable).parent)
    path = os.pathsep.join([bin_dir, os.environ.get("PATH", "")])
    command = shutil.which("airflow", path=path)
    if command is None:
        pytest.skip("the `airflow` command is not installed")

    home = tmp_path_factory.mktemp("airflow-home")
    (home / "passwords.json").write_text(json.dumps({"admin": PASSWORD}))
    (home / "retraining.yaml").write_text(yaml.safe_dump(RETRAINING))
    store_root = tmp_path_factory.mktemp("store").as_uri()
    base_url = f"http://127.0.0.1:{_free_port()}"
    env = {
        **os.environ,
        "PATH": path,  # standalone starts its components as `airflow <component>`
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
        "AIRFLOW__API__HOST": "127.0.0.1",
        "AIRFLOW__API__PORT": base_url.rsplit(":", 1)[1],
        "AIRFLOW__API__BASE_URL": base_url,
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{base_url}/execution/",
        "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_hex(16),
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "admin:admin",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(home / "passwords.json"),
        "TUNERFLOW_STORE": store_root,
        "TUNERFLOW_RETRAIN_CONFIG": str(home / "retraining.yaml"),
    }
    with (home / "standalone.log").open("wb") as log:
        process = subprocess.Popen(
            [command, "standalone"],
            cwd=home,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    server = Airflow(process, home, base_url, store_root)
    try:
        server.wait_until_ready()
        for dag_id in (DAG_ID, RETRAIN_DAG_ID):
            response = server.http.patch(f"/api/v2/dags/{dag_id}", json={"is_paused": False})
            assert response.status_code == 200, response.text
        yield server
    finally:
        if request.session.testsfailed:
            reporter = request.config.pluginmanager.get_plugin("terminalreporter")
            reporter.write_line(f"\nAirflow home: {home}\n{server.logs()}")
        server.http.close()
        _stop(process)


def _tiny_conf(model_dir: Path) -> dict:
    # merge_adapter: the promoted LoRA champion then has full weights for a retrain to start from.
    hparams = [{**group, "merge_adapter": True} for group in tiny_conf(model_dir)["hparams"]]
    return tiny_conf(model_dir, hparams=hparams, export={"enabled": False})


# retrain_champion's config: the champion of the experiment's registry, retrained on an event on
# DATA_ASSET, with one small job.
RETRAINING = {
    "registry_name": "tiny-exp",
    "schedule": None,
    "assets": [DATA_ASSET],
    "poll_interval_s": 5,
    "experiment": {
        "name": "tiny-retrain",
        "datasets": [{"name": "tuna", "uri": "builtin:tuna_identity", "split": "80,10,10"}],
        "hparams": [{"name": "a", "preset": "lora-fast", "max_steps": 2}],
        "scoring": {"metrics": ["exact_match", "rouge_l"], "primary": "rouge_l", "max_new_tokens": 4},
        "export": {"enabled": False},
    },
}


@pytest.mark.parametrize(
    ("field", "bad", "mentions"),
    [
        ("training", {"type": "sft", "method": "qlora-x"}, ["param training", "qlora-x"]),
        ("datasets", [{"name": "tuna", "uri": "builtin:tuna_identity", "split": "98-2"}], ["split", "98-2"]),
    ],
)
def test_bad_conf_is_refused_with_400_and_creates_no_run(
    airflow_server, tiny_model_dir, field, bad, mentions
):
    before = airflow_server.run_count()
    response = airflow_server.trigger({**_tiny_conf(tiny_model_dir), field: bad})
    assert response.status_code == 400, response.text
    for text in mentions:
        assert text in response.json()["detail"]
    assert airflow_server.run_count() == before


def test_conf_that_only_pydantic_refuses_fails_the_run(airflow_server, tiny_model_dir):
    conf = _tiny_conf(tiny_model_dir)
    conf["datasets"][0]["split"] = "50,10,10"  # the right shape for the schema, but sums to 70
    response = airflow_server.trigger(conf)
    assert response.status_code == 200, response.text
    run_id = response.json()["dag_run_id"]
    state = airflow_server.wait_for(run_id)
    assert airflow_server.task_states(run_id)["validate_conf"] == ["failed"]
    assert state == "failed"


@pytest.fixture(scope="module")
def finished_run(airflow_server, tiny_model_dir) -> dict:
    response = airflow_server.trigger(_tiny_conf(tiny_model_dir))
    assert response.status_code == 200, response.text
    run_id = response.json()["dag_run_id"]
    state = airflow_server.wait_for(run_id)
    assert state == "success", f"run {run_id} ended {state}\n{airflow_server.logs(run_id)}"
    return {"run_id": run_id, "states": airflow_server.task_states(run_id)}


def test_good_conf_runs_to_success_and_the_leaderboard_names_the_winner(airflow_server, finished_run):
    run_id, states = finished_run["run_id"], finished_run["states"]
    assert states["train"] == ["success", "success"]
    assert states["export"] == ["skipped"]  # export.enabled is false

    board = store.read_json(
        store.join(layout.run(airflow_server.store_root, "tiny-exp", run_id), "leaderboard.json")
    )
    labels = {row["label"] for row in board["rows"]}
    assert {"tuna|tiny|a", "tuna|tiny|b"} <= labels
    assert board["failed"] == []

    selection = airflow_server.xcom(run_id, "select_best")
    assert selection["winner"]["label"] == board["winner"]["label"]
    assert selection["winner"]["label"] in {"tuna|tiny|a", "tuna|tiny|b"}


def test_registry_name_defaults_to_the_experiment_name(airflow_server, finished_run):
    promotion = airflow_server.xcom(finished_run["run_id"], "promote")
    assert promotion["registry_uri"].endswith("/registry/tiny-exp")


def test_the_promotion_emitted_the_production_asset_event(airflow_server, finished_run):
    [event] = [
        e
        for e in airflow_server.asset_events(PRODUCTION_ASSET_URI)
        if e["source_run_id"] == finished_run["run_id"]
    ]
    assert finished_run["states"]["publish_promotion"] == ["success"]
    assert event["source_dag_id"] == DAG_ID and event["source_task_id"] == "publish_promotion"
    assert (event["extra"]["registry"], event["extra"]["version"]) == ("tiny-exp", 1)
    assert event["extra"]["adapter_uri"] and event["extra"]["registry_uri"].endswith("/registry/tiny-exp")


def test_an_asset_event_retrains_the_champion(airflow_server, finished_run, tmp_path_factory):
    # New rows land upstream; the pipeline announces them on the data asset, saying where they are.
    new_rows = tmp_path_factory.mktemp("upstream") / "tuna-2026-11-23.jsonl"
    shutil.copy(REPO / "include" / "data" / "tuna_identity.jsonl", new_rows)
    before = {run["dag_run_id"] for run in airflow_server.runs(RETRAIN_DAG_ID)}
    response = airflow_server.http.post(
        "/api/v2/assets/events",
        json={"asset_id": airflow_server.asset_id(DATA_ASSET), "extra": {"dataset_uri": str(new_rows)}},
    )
    assert response.status_code == 200, response.text
    assert response.json()["extra"] == {"dataset_uri": str(new_rows), "from_rest_api": True}

    deadline = time.monotonic() + START_TIMEOUT_S
    while not (started := [r for r in airflow_server.runs(RETRAIN_DAG_ID) if r["dag_run_id"] not in before]):
        assert time.monotonic() < deadline, (
            f"no {RETRAIN_DAG_ID} run after the asset event\n{airflow_server.logs()}"
        )
        time.sleep(3)
    [run] = started
    assert run["run_type"] == "asset_triggered"
    run_id = run["dag_run_id"]
    state = airflow_server.wait_for(run_id, RETRAIN_DAG_ID, RETRAIN_TIMEOUT_S)
    assert state == "success", (
        f"{RETRAIN_DAG_ID} run {run_id} ended {state}\n{airflow_server.logs(run_id, RETRAIN_DAG_ID)}"
    )
    assert airflow_server.task_states(run_id, RETRAIN_DAG_ID) == {
        "build_conf": ["success"],
        "train_challenger": ["success"],
        "outcome": ["success"],
    }

    # The finetune run it started: from the champion's weights, on the rows the event named.
    finetune_run_id = f"retrain__{run_id}"
    assert airflow_server.wait_for(finetune_run_id) == "success"
    conf = airflow_server.xcom(run_id, "build_conf", RETRAIN_DAG_ID)
    assert conf["models"][0]["name"] == "tiny-exp-v1"
    assert conf["models"][0]["uri"].endswith("/train/merged")
    assert conf["datasets"][0]["uri"] == str(new_rows)
    experiment = store.read_json(
        store.join(layout.run(airflow_server.store_root, "tiny-retrain", finetune_run_id), "experiment.json")
    )["experiment"]
    assert experiment["models"] == conf["models"] and experiment["promotion"]["registry_name"] == "tiny-exp"

    # Its leaderboard through REST, and the champion gate's verdict as the retrain's outcome.
    selection = airflow_server.xcom(finetune_run_id, "select_best")
    assert selection["winner"]["label"] == "tuna|tiny-exp-v1|a"
    states = airflow_server.task_states(finetune_run_id)
    assert states["score_champion"] == ["success"]  # the champion was rescored on the new rows
    outcome = airflow_server.xcom(run_id, "outcome", RETRAIN_DAG_ID)
    promotion = airflow_server.xcom(finetune_run_id, "promote")
    assert outcome["finetune_run_id"] == finetune_run_id
    assert (outcome["promoted"], outcome["reason"]) == (promotion["promoted"], promotion["reason"])
    assert promotion["champion_version"] == 1 and promotion["like_for_like"] is True
    # A production event only if the retrained model replaced the champion.
    assert states["publish_promotion"] == (["success"] if promotion["promoted"] else ["skipped"])
    emitted = [
        e for e in airflow_server.asset_events(PRODUCTION_ASSET_URI) if e["source_run_id"] == finetune_run_id
    ]
    assert len(emitted) == int(promotion["promoted"])
