"""docker-compose.yaml: Compose itself accepts it with .env.example as the env file (`config` needs no
Docker engine), and the rendered stack has what the deployment relies on."""

from __future__ import annotations

import json
import re
import shutil
import subprocess

import pytest
import yaml

from tests.conftest import REPO

COMPOSE = REPO / "docker-compose.yaml"
ENV_EXAMPLE = REPO / ".env.example"
AIRFLOW_SERVICES = ("airflow-init", "api-server", "scheduler", "dag-processor", "triggerer")
SERVICES = {"postgres", "minio", "minio-init", *AIRFLOW_SERVICES}
LONG_RUNNING = ("postgres", "minio", "api-server", "scheduler", "dag-processor", "triggerer")
_SECRET_NAME = re.compile(r"PASSWORD|SECRET|TOKEN|FERNET|_KEY$|^AIRFLOW_CONN_", re.I)


def _compose_command() -> list[str] | None:
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    if shutil.which("docker"):
        probe = subprocess.run(["docker", "compose", "version"], capture_output=True, text=True)
        if probe.returncode == 0:
            return ["docker", "compose"]
    return None


def _env_example() -> dict[str, str]:
    values = {}
    for line in ENV_EXAMPLE.read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            name, _, value = line.partition("=")
            values[name.strip()] = value.strip().strip("'")
    return values


@pytest.fixture(scope="module")
def rendered(tmp_path_factory) -> dict:
    """`<compose> config` on a copy of the compose file with .env.example as .env, parsed."""
    command = _compose_command()
    if command is None:
        pytest.skip(
            "neither docker-compose nor `docker compose` is installed "
            "(scripts/test.sh installs Debian's docker-compose where it can)"
        )
    work = tmp_path_factory.mktemp("compose")
    shutil.copy(COMPOSE, work / "docker-compose.yaml")
    shutil.copy(ENV_EXAMPLE, work / ".env")  # what `cp .env.example .env` gives
    done = subprocess.run(
        [*command, "-f", "docker-compose.yaml", "--env-file", ".env", "config"],
        capture_output=True,
        text=True,
        cwd=work,
    )
    assert done.returncode == 0, done.stderr
    return yaml.safe_load(done.stdout)


def _environment(service: dict) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.partition("=")[::2] for item in env)
    return {name: str(value) for name, value in env.items()}


def test_compose_accepts_the_file_and_has_every_service(rendered):
    assert set(rendered["services"]) == SERVICES


def test_no_secret_is_written_in_the_compose_file():
    """Every secret-looking variable in the compose file is `${...}` from the env file, and no value
    of .env.example appears in it."""
    source = yaml.safe_load(COMPOSE.read_text())
    text = COMPOSE.read_text()
    for name, service in source["services"].items():
        for key, value in _environment(service).items():
            if _SECRET_NAME.search(key) and not key.endswith("_FILE"):  # a path to a secret is not one
                assert re.fullmatch(r"\$\{[A-Z0-9_]+(:\?[^}]*)?\}", value), f"{name}: {key} is written inline"
    for key, value in _env_example().items():
        if _SECRET_NAME.search(key) and value:
            assert value not in text, f"the value of {key} is written in docker-compose.yaml"


def test_airflow_services_get_their_secrets_from_the_env_file(rendered):
    source = yaml.safe_load(COMPOSE.read_text())
    example = _env_example()
    for name in AIRFLOW_SERVICES:
        assert source["services"][name]["env_file"] == ".env", name
        env = _environment(rendered["services"][name])
        # env_file values reach the container, and ${...} is filled from the same file
        assert env["AIRFLOW__API_AUTH__JWT_SECRET"] == example["AIRFLOW__API_AUTH__JWT_SECRET"]
        assert f":{example['POSTGRES_PASSWORD']}@postgres/" in env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"]
        assert env["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"] == "http://api-server:8080/execution/"
    commands = {name: rendered["services"][name]["command"] for name in AIRFLOW_SERVICES}
    assert commands["airflow-init"] == ["db", "migrate"]
    assert commands["api-server"][-1].endswith("exec airflow api-server")
    assert "AIRFLOW_ADMIN_PASSWORD" in commands["api-server"][-1]  # the login comes from .env
    for name in ("scheduler", "dag-processor", "triggerer"):
        assert commands[name] == [name]


def test_the_store_points_at_minio_and_its_bucket_is_created(rendered, monkeypatch):
    from tasks.storage import s3

    env = _environment(rendered["services"]["scheduler"])
    bucket, prefix = s3.split(env["TUNERFLOW_STORE"])
    assert bucket == "tunerflow" and prefix
    # the store's S3 client, built from the connection the containers get
    monkeypatch.delenv(s3.CONN_ID_ENV, raising=False)
    kwargs = s3.client_kwargs(env)
    assert kwargs["endpoint_url"] == "http://minio:9000" and kwargs["region_name"] == "us-east-1"
    assert kwargs["aws_access_key_id"] == env["MINIO_ROOT_USER"]
    assert kwargs["aws_secret_access_key"] == env["MINIO_ROOT_PASSWORD"]
    assert json.loads(env["AIRFLOW_CONN_AWS_DEFAULT"])["conn_type"] == "aws"
    # minio-init waits for a healthy MinIO, then makes TUNERFLOW_STORE's bucket; Airflow waits for it
    init = rendered["services"]["minio-init"]
    assert init["depends_on"]["minio"]["condition"] == "service_healthy"
    # `config` prints `$$` (Compose's escape for a literal `$`) as it was written
    script = " ".join(init["entrypoint"] + init["command"]).replace("$$", "$")
    assert "mc mb --ignore-existing" in script and "TUNERFLOW_STORE" in script
    shell = subprocess.run(
        ["sh", "-c", script.split("&& mc alias")[0].split("-c ", 1)[1] + ' && echo "$bucket"'],
        capture_output=True,
        text=True,
        env={"TUNERFLOW_STORE": env["TUNERFLOW_STORE"]},
        check=True,
    )
    assert shell.stdout.strip() == bucket
    for name in ("api-server", "scheduler", "dag-processor", "triggerer"):
        depends = rendered["services"][name]["depends_on"]
        assert depends["minio-init"]["condition"] == "service_completed_successfully"
        assert depends["airflow-init"]["condition"] == "service_completed_successfully"


def test_images_are_pinned_and_long_running_services_have_healthchecks(rendered):
    for name, service in rendered["services"].items():
        image = service["image"]
        tag = image.rsplit(":", 1)[1] if ":" in image.rsplit("/", 1)[-1] else None
        assert tag and tag != "latest", f"{name}: image {image} is not pinned"
    for name in LONG_RUNNING:
        assert rendered["services"][name]["healthcheck"]["test"], name
    for name in AIRFLOW_SERVICES:
        assert rendered["services"][name]["build"]["dockerfile"] == "images/airflow/Dockerfile"
    assert rendered["services"]["api-server"]["ports"]
