from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tasks.config.search import MAX_ROUNDS
from tests.fixtures.connections import aws_environment_for
from tests.fixtures.s3_stalls import STALLS, EndpointStalls

REPO = Path(__file__).resolve().parents[1]

# The suite's confs read models and datasets from tmp dirs and made-up paths (/models/m1): allow every
# path, as a user's own machine does. tests/tasks/config/test_allowed_paths.py sets its own roots.
os.environ.setdefault("TUNERFLOW_ALLOWED_PATHS", os.sep)

# Fixture modules, registered once here so a session-scoped fixture (the one `airflow standalone`, its
# one finished run) is one instance for every module that uses it.
pytest_plugins = ("tests.fixtures.airflow_standalone", "tests.fixtures.browser", "tests.fixtures.openlineage")

# The tasks of finetune_experiment that every run runs, in pipeline order.
DAG_TASKS = (
    "validate_conf",
    "prepare_dataset",
    "plan_jobs",
    "plan_references",
    "train",
    "final_jobs",
    "evaluate",
    "score_base",
    "plan_merges",
    "select_best",
    "export",
    "check_export",
    "plan_champion",
    "score_champion",
    "promote",
    "report",
)

# What a run without a search or merge plans nothing for: the later search rounds (their planning finds
# nothing to do, their mapped tasks skip) and the merged candidates' tasks.
ROUND_TASKS = tuple(
    f"round_{k}.{task}"
    for k in range(2, MAX_ROUNDS + 1)
    for task in ("plan", "train", "final_jobs", "evaluate")
)
MERGE_TASKS = ("merge", "score_merge")

# Airflow reads its home when first imported: point it at a throwaway one before any test imports it.
# Each pytest-xdist worker gets its own (their SQLite metadata DBs must not be shared), though workers
# inherit the environment of the process that made the first one; a home the caller set is kept.
_WORKER = os.environ.get("PYTEST_XDIST_WORKER", "main")
if "AIRFLOW_HOME" not in os.environ or os.environ.get("TUNERFLOW_TESTS_HOME_OF", _WORKER) != _WORKER:
    os.environ["AIRFLOW_HOME"] = tempfile.mkdtemp(prefix=f"tunerflow-airflow-{_WORKER}-")
    os.environ["TUNERFLOW_TESTS_HOME_OF"] = _WORKER
if "PYTEST_XDIST_WORKER" in os.environ:
    # The local backend's machine slot is a lock file machine-wide: without a directory of its own, a
    # worker's steps would queue behind the other workers' (its Airflow tasks waiting idle). The cores
    # are shared out instead, so that two workers' trainings do not oversubscribe them.
    os.environ["TUNERFLOW_LOCK_DIR"] = tempfile.mkdtemp(prefix=f"tunerflow-locks-{_WORKER}-")
    _workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    os.environ.setdefault("OMP_NUM_THREADS", str(max((os.cpu_count() or 1) // _workers, 1)))
os.environ.setdefault("AIRFLOW__CORE__DAGS_FOLDER", str(REPO / "dags"))
os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")


@pytest.fixture(scope="session")
def airflow_db() -> str:
    """A migrated SQLite metadata DB for dag.test()."""
    home = os.environ["AIRFLOW_HOME"]
    if not (Path(home) / "airflow.db").exists():
        subprocess.run([sys.executable, "-m", "airflow", "db", "migrate"], check=True, capture_output=True)
    return home


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    from tests.fixtures.tiny_model import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("models") / "tiny")


@pytest.fixture
def store_root(tmp_path, monkeypatch) -> str:
    root = (tmp_path / "store").as_uri()
    monkeypatch.setenv("TUNERFLOW_STORE", root)
    return root


@pytest.fixture(scope="session")
def s3_endpoint() -> str:
    """A real S3 API over HTTP: moto's server on a free loopback port, handling one request at a time.

    Not `ThreadedMotoServer` as it comes: moto checks a conditional write's If-Match / If-None-Match and
    then stores the object in two separate Python steps, and its threaded server runs requests side by
    side, so two conditional writes can both pass the check before either stores (with a delay put
    between the two steps, 8 of 8 racing `IfMatch` writes "won"). Real S3 decides a conditional write
    atomically, and the registry's tests race exactly that. So moto runs every request under one lock:
    connections are still served by their own threads (a client that leaves a response half-read
    blocks nobody), but moto's check and write cannot interleave with another request's.
    """
    import threading

    from moto.moto_server.werkzeug_app import (
        DomainDispatcherApplication,
        MotoRequestHandler,
        create_backend_app,
    )
    from werkzeug.serving import make_server

    app = DomainDispatcherApplication(create_backend_app)
    one_at_a_time = threading.Lock()

    def serialized(environ, start_response):
        # Flask runs the whole request handler inside this call; only the finished body streams out after.
        with one_at_a_time:
            STALLS.check(environ)  # a planned outage holds every request (tests/fixtures/s3_stalls.py)
            return app(environ, start_response)

    server = make_server("127.0.0.1", 0, serialized, threaded=True, request_handler=MotoRequestHandler)
    thread = threading.Thread(target=server.serve_forever, name="moto-s3", daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    thread.join()


@pytest.fixture
def s3_stalls(s3_endpoint) -> Iterator[EndpointStalls]:
    """Plan outages of the session's moto server; none is left planned after the test."""
    yield STALLS
    STALLS.clear()


@pytest.fixture
def aws_env(s3_endpoint, monkeypatch) -> str:
    """The standard AWS environment pointed at the moto server (see `aws_environment_for`)."""
    aws_environment_for(monkeypatch, s3_endpoint)
    return s3_endpoint


@pytest.fixture
def s3_store_root(aws_env, tmp_path, monkeypatch) -> str:
    """A fresh bucket on the moto server as the store root (TUNERFLOW_STORE), with a private local
    mirror cache (TUNERFLOW_CACHE_DIR), credentials from the AWS_* environment."""
    import uuid

    import boto3

    monkeypatch.delenv("AIRFLOW_CONN_AWS_DEFAULT", raising=False)
    monkeypatch.delenv("TUNERFLOW_S3_CONN_ID", raising=False)
    monkeypatch.setenv("TUNERFLOW_CACHE_DIR", str(tmp_path / "cache"))
    bucket = f"store-{uuid.uuid4().hex[:12]}"
    boto3.session.Session().client("s3").create_bucket(Bucket=bucket)
    root = f"s3://{bucket}/tunerflow"
    monkeypatch.setenv("TUNERFLOW_STORE", root)
    return root


# The modules on the session's one `airflow standalone` (tests/fixtures/airflow_standalone.py).
ON_AIRFLOW_SERVER = "tests/integration/"


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config, log):
    """Under `pytest -n N` (PYTEST_WORKERS in scripts/test.sh): a module per unit of work, as `--dist
    loadfile` does, except that every module on `airflow standalone` is one unit, so that one worker
    starts one server for all of them while the others take the rest (each server is a scheduler, an
    api-server, a DAG processor and a triggerer: two of them beside training runs starved two cores)."""
    from xdist.scheduler import LoadFileScheduling

    class OneAirflowServer(LoadFileScheduling):
        def _split_scope(self, nodeid: str) -> str:
            if nodeid.startswith(ON_AIRFLOW_SERVER):
                return ON_AIRFLOW_SERVER
            return super()._split_scope(nodeid)

    return OneAirflowServer(config, log)


def pytest_collection_modifyitems(config, items):
    """The order `pytest -n N` (scripts/test.sh, `--no-loadscope-reorder`) hands out units of work: a test
    module stays on one worker, so its module fixtures (a whole dag.test run) are built once. The long
    ones go first (the modules on the session's `airflow standalone`, then those with slow tests), so no
    worker is left alone with one at the end."""

    def module(item) -> str:
        return item.nodeid.split("::")[0]

    on_airflow = {module(item) for item in items if "airflow_server" in item.fixturenames}
    slow = {module(item) for item in items if item.get_closest_marker("slow")}

    def rank(item) -> int:
        name = module(item)
        return 0 if name in on_airflow else 1 if name in slow else 2

    items.sort(key=rank)  # stable: the order inside a module is kept
