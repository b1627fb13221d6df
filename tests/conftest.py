from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

# Every task of finetune_experiment, in pipeline order.
DAG_TASKS = (
    "validate_conf",
    "prepare_dataset",
    "plan_jobs",
    "plan_references",
    "train",
    "evaluate",
    "score_base",
    "select_best",
    "export",
    "check_export",
    "plan_champion",
    "score_champion",
    "promote",
    "report",
)

# Airflow reads its home when first imported: point it at a throwaway one before any test imports it.
os.environ.setdefault("AIRFLOW_HOME", tempfile.mkdtemp(prefix="tunerflow-airflow-"))
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
    """A real S3 API over HTTP: moto's server mode on a free loopback port."""
    import socket

    from moto.server import ThreadedMotoServer

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


@pytest.fixture
def aws_env(s3_endpoint, monkeypatch) -> str:
    """The standard AWS environment pointed at the moto server, as a MinIO deployment would set it."""
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_endpoint)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    return s3_endpoint
