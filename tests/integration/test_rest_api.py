"""The REST API path end to end: a real `airflow standalone` (LocalExecutor, SQLite), driven over HTTP only.

Auth is the Simple auth manager: one `admin` user (role admin) whose password we write to the passwords
file beforehand, exchanged for a JWT with `POST /auth/token`.
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

from tasks import layout, store
from tests.conftest import REPO
from tests.fixtures.confs import tiny_conf

pytestmark = pytest.mark.slow

DAG_ID = "finetune_experiment"
PASSWORD = "tunerflow-test"
START_TIMEOUT_S = 300
RUN_TIMEOUT_S = 900


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

    def logs(self, run_id: str | None = None) -> str:
        """The standalone output's tail; for `run_id` also each task's state and the failed tasks' logs."""
        parts = [f"--- airflow standalone ---\n{_tail(self.log)}"]
        if run_id:
            try:
                tis = self.task_instances(run_id)
            except httpx.HTTPError as error:
                return "\n".join([*parts, f"(no task instances: {error!r})"])
            parts += [
                "--- task states ---",
                *(f"{ti['task_id']}[{ti['map_index']}]: {ti['state']}" for ti in tis),
            ]
            run_dir = self.home / "logs" / f"dag_id={DAG_ID}" / f"run_id={run_id}"
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
                    if self.http.get(f"/api/v2/dags/{DAG_ID}").status_code == 200:
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

    def run_path(self, run_id: str) -> str:
        return f"/api/v2/dags/{DAG_ID}/dagRuns/{quote(run_id, safe='')}"

    def task_instances(self, run_id: str) -> list[dict]:
        response = self.http.get(f"{self.run_path(run_id)}/taskInstances")
        response.raise_for_status()
        return response.json()["task_instances"]

    def task_states(self, run_id: str) -> dict[str, list[str]]:
        states: dict[str, list[str]] = {}
        for ti in self.task_instances(run_id):
            states.setdefault(ti["task_id"], []).append(ti["state"])
        return states

    def wait_for(self, run_id: str) -> str:
        deadline = time.monotonic() + RUN_TIMEOUT_S
        while time.monotonic() < deadline:
            state = self.http.get(self.run_path(run_id)).json()["state"]
            if state not in ("queued", "running"):
                return state
            time.sleep(5)
        pytest.fail(f"run {run_id} still not finished after {RUN_TIMEOUT_S}s\n{self.logs(run_id)}")

    def xcom(self, run_id: str, task_id: str) -> dict:
        response = self.http.get(f"{self.run_path(run_id)}/taskInstances/{task_id}/xcomEntries/return_value")
        response.raise_for_status()
        return response.json()["value"]


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
        response = server.http.patch(f"/api/v2/dags/{DAG_ID}", json={"is_paused": False})
        assert response.status_code == 200, response.text
        yield server
    finally:
        if request.session.testsfailed:
            reporter = request.config.pluginmanager.get_plugin("terminalreporter")
            reporter.write_line(f"\nAirflow home: {home}\n{server.logs()}")
        server.http.close()
        _stop(process)


def _tiny_conf(model_dir: Path) -> dict:
    return tiny_conf(model_dir, export={"enabled": False})


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
