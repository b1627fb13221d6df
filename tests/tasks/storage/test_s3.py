"""The S3 client: credentials and endpoint from the Airflow connection aws_default (JSON or URI form),
else boto3's own chain; one client per credentials, made once, new when they rotate; secrets never in a
message, a log or a repr."""

from __future__ import annotations

import json
import logging
import os
import uuid
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import quote

import pytest

from tasks.storage import connections, s3
from tests.fixtures.connections import without_aws_environment

KEY_ID, SECRET = "AKIATUNERFLOWTEST", "s3cr3t/with+chars"


@pytest.fixture
def conn_only(aws_env, monkeypatch) -> str:
    """Only the connection can lead to the server: no AWS_* endpoint or keys in the environment."""
    without_aws_environment(monkeypatch)
    monkeypatch.delenv(s3.CONN_ID_ENV, raising=False)
    return aws_env


def _round_trip(client) -> None:
    bucket = f"b-{uuid.uuid4().hex[:10]}"
    region = client.meta.region_name
    where = {} if region == "us-east-1" else {"CreateBucketConfiguration": {"LocationConstraint": region}}
    client.create_bucket(Bucket=bucket, **where)
    client.put_object(Bucket=bucket, Key="k", Body=b"payload")
    assert client.get_object(Bucket=bucket, Key="k")["Body"].read() == b"payload"


def test_client_from_the_connection_in_json_form(conn_only, monkeypatch):
    value = {
        "conn_type": "aws",
        "login": KEY_ID,
        "password": SECRET,
        "extra": {"endpoint_url": conn_only, "region_name": "eu-west-1"},
    }
    monkeypatch.setenv("AIRFLOW_CONN_AWS_DEFAULT", json.dumps(value))
    client = s3.client()
    assert client.meta.endpoint_url == conn_only and client.meta.region_name == "eu-west-1"
    assert client._request_signer._credentials.access_key == KEY_ID
    _round_trip(client)


def test_client_from_the_connection_in_uri_form_with_the_endpoint_as_host(conn_only, monkeypatch):
    host = conn_only.removeprefix("http://")
    monkeypatch.setenv(
        "AIRFLOW_CONN_AWS_DEFAULT", f"http://{KEY_ID}:{quote(SECRET, safe='')}@{host}?region_name=us-east-1"
    )
    client = s3.client()
    assert client.meta.endpoint_url == conn_only
    assert client._request_signer._credentials.secret_key == SECRET
    _round_trip(client)
    # The same connection in URI form with the endpoint in extra, as `airflow connections get` prints it.
    monkeypatch.setenv(
        "AIRFLOW_CONN_AWS_DEFAULT",
        f"aws://{KEY_ID}:{quote(SECRET, safe='')}@/?endpoint_url={quote(conn_only, safe='')}",
    )
    assert s3.client().meta.endpoint_url == conn_only


def test_the_connection_id_can_be_changed(conn_only, monkeypatch):
    monkeypatch.setenv(s3.CONN_ID_ENV, "minio")
    monkeypatch.setenv("AIRFLOW_CONN_MINIO", json.dumps({"conn_type": "aws", "host": conn_only}))
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "from-env")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "from-env")
    client = s3.client()
    assert client.meta.endpoint_url == conn_only
    assert client._request_signer._credentials.access_key == "from-env", "no login: boto3's chain"
    _round_trip(client)


def test_without_the_connection_boto3s_chain_is_used(aws_env, monkeypatch):
    monkeypatch.delenv("AIRFLOW_CONN_AWS_DEFAULT", raising=False)
    assert s3.client_kwargs() == {}
    client = s3.client()
    assert client.meta.endpoint_url == aws_env
    _round_trip(client)


def _connection(monkeypatch, endpoint: str, login: str = KEY_ID, password: str = SECRET) -> None:
    value = {"conn_type": "aws", "login": login, "password": password, "extra": {"endpoint_url": endpoint}}
    monkeypatch.setenv("AIRFLOW_CONN_AWS_DEFAULT", json.dumps(value))


@pytest.fixture
def made(monkeypatch) -> list[int]:
    """An empty client cache, and a record of every client made."""
    monkeypatch.setattr(s3, "_CLIENTS", {})
    made: list[int] = []
    real = s3.new_client
    monkeypatch.setattr(s3, "new_client", lambda kwargs=None: made.append(1) or real(kwargs))
    return made


def test_one_client_per_credentials_is_made_once_and_shared_by_threads(conn_only, made, monkeypatch):
    _connection(monkeypatch, conn_only)
    with ThreadPoolExecutor(8) as pool:
        clients = list(pool.map(lambda _: s3.client(), range(16)))
    assert made == [1] and all(client is clients[0] for client in clients)
    _round_trip(clients[0])
    pid = os.getpid()
    monkeypatch.setattr(os, "getpid", lambda: pid + 1)
    assert s3.client() is not clients[0] and made == [1, 1], "a forked process makes its own"


def test_a_rotated_connection_gets_a_new_client(conn_only, made, monkeypatch):
    _connection(monkeypatch, conn_only)
    first = s3.client()
    _connection(monkeypatch, conn_only, login="AKIAROTATED", password="r0tated/secret")
    second = s3.client()
    assert second is not first and len(made) == 2
    assert second._request_signer._credentials.access_key == "AKIAROTATED"
    _round_trip(second)
    _connection(monkeypatch, conn_only)
    assert s3.client() is first and len(made) == 2, "the first credentials' client is still cached"


def test_rotated_aws_variables_get_a_new_client(aws_env, made, monkeypatch):
    monkeypatch.delenv("AIRFLOW_CONN_AWS_DEFAULT", raising=False)
    first = s3.client()
    assert s3.client() is first
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "rotated")
    second = s3.client()
    assert second is not first and second._request_signer._credentials.secret_key == "rotated"
    _round_trip(second)


def test_the_cache_is_bounded(conn_only, made, monkeypatch):
    for i in range(s3.MAX_CLIENTS + 2):
        _connection(monkeypatch, conn_only, login=f"AKIA{i}")
        s3.client()
    assert len(s3._CLIENTS) == s3.MAX_CLIENTS and len(made) == s3.MAX_CLIENTS + 2


def test_no_secret_in_the_cache_a_repr_or_the_log(conn_only, made, monkeypatch, caplog):
    caplog.set_level(logging.DEBUG)
    _connection(monkeypatch, conn_only)
    client = s3.client()
    _round_trip(client)
    assert s3.client() is client
    shown = repr(s3._CLIENTS) + repr(client) + caplog.text
    assert SECRET not in shown and quote(SECRET, safe="") not in shown


def test_no_secret_appears_in_error_messages(monkeypatch):
    monkeypatch.setenv("AIRFLOW_CONN_AWS_DEFAULT", json.dumps({"conn_type": "aws", "password": SECRET}))
    with pytest.raises(connections.ConnectionInvalid, match="set both login") as refused:
        s3.client()
    assert SECRET not in str(refused.value) and "aws_default" in str(refused.value)
    monkeypatch.setenv("AIRFLOW_CONN_AWS_DEFAULT", f'{{"conn_type": "aws", "password": "{SECRET}", }}')
    with pytest.raises(connections.ConnectionInvalid, match="not valid JSON") as refused:
        s3.client()
    assert SECRET not in str(refused.value)
    monkeypatch.setenv("AIRFLOW_CONN_AWS_DEFAULT", f"{KEY_ID}:{SECRET}@host")
    with pytest.raises(connections.ConnectionInvalid, match="neither JSON nor a URI") as refused:
        s3.client()
    assert SECRET not in str(refused.value)


def test_store_env_passes_the_connection_only_for_an_s3_store(monkeypatch):
    value = {
        "conn_type": "aws",
        "login": KEY_ID,
        "password": SECRET,
        "extra": {"endpoint_url": "http://m:9000"},
    }
    monkeypatch.setenv("AIRFLOW_CONN_AWS_DEFAULT", json.dumps(value))
    monkeypatch.delenv(s3.CONN_ID_ENV, raising=False)
    env = s3.store_env("s3://bucket/tunerflow")
    assert list(env) == ["AIRFLOW_CONN_AWS_DEFAULT"]
    assert s3.client_kwargs(env) == {
        "aws_access_key_id": KEY_ID,
        "aws_secret_access_key": SECRET,
        "endpoint_url": "http://m:9000",
    }
    assert s3.store_env("file:///tmp/store") == {}
    monkeypatch.delenv("AIRFLOW_CONN_AWS_DEFAULT")
    assert s3.store_env("s3://bucket/tunerflow") == {}, "a missing connection: boto3's chain may have keys"


def test_every_heavy_step_of_the_dag_gets_the_store_connection_in_its_environment(monkeypatch):
    """tasks.backends.heavy.run_locally (the body of every local heavy task of the DAG) adds the store's
    connection to the step's environment, beside a step's own (the judge's, for the steps that score)."""
    from types import SimpleNamespace

    from tasks.backends import heavy
    from tasks.scoring import judge

    seen = []
    monkeypatch.setattr(heavy, "run_step", lambda argv, env=None: seen.append(env) or {})
    monkeypatch.setattr(heavy, "run_of", lambda context: SimpleNamespace(run_uri="s3://bucket/run"))
    record = {"experiment": {"scoring": {}, "training": {"type": "sft"}}, "hparams": [{"name": "a"}]}
    monkeypatch.setattr(heavy, "load_run_record", lambda run_uri: record)
    monkeypatch.setattr(judge, "judge_env", lambda scoring: {"AIRFLOW_CONN_TUNERFLOW_JUDGE": "{}"})
    value = json.dumps({"conn_type": "aws", "login": KEY_ID, "password": SECRET})
    monkeypatch.setenv("AIRFLOW_CONN_AWS_DEFAULT", value)
    monkeypatch.delenv(s3.CONN_ID_ENV, raising=False)
    monkeypatch.setattr(heavy, "default_root", lambda: "s3://bucket/tunerflow")
    heavy.run_locally("train", ["python", "-m", "tasks.train"], {}, None)
    heavy.run_locally("evaluate", ["python", "-m", "tasks.evaluate"], {}, None)
    assert [sorted(env) for env in seen] == [
        ["AIRFLOW_CONN_AWS_DEFAULT"],
        ["AIRFLOW_CONN_AWS_DEFAULT", "AIRFLOW_CONN_TUNERFLOW_JUDGE"],
    ]
    assert json.loads(seen[0]["AIRFLOW_CONN_AWS_DEFAULT"])["password"] == SECRET
    monkeypatch.setattr(heavy, "default_root", lambda: "file:///tmp/store")
    heavy.run_locally("train", ["python", "-m", "tasks.train"], {}, None)
    assert seen[-1] == {}


def test_inside_an_airflow_task_the_connection_comes_from_airflow(conn_only, monkeypatch):
    """Light tasks use the store in the Airflow task process, where a connection kept in the metadata
    database is not in the environment: the client asks Airflow for it there, and only there."""
    import sys

    value = json.dumps(
        {"conn_type": "aws", "login": KEY_ID, "password": SECRET, "extra": {"endpoint_url": conn_only}}
    )
    monkeypatch.delenv("AIRFLOW_CONN_AWS_DEFAULT", raising=False)
    asked = []
    monkeypatch.setattr(connections, "airflow_connection", lambda name: asked.append(name) or value)
    monkeypatch.delitem(sys.modules, "airflow.sdk.execution_time.task_runner", raising=False)
    assert s3.client_kwargs() == {} and asked == [], "outside Airflow's task runner nothing is asked"
    monkeypatch.setitem(sys.modules, "airflow.sdk.execution_time.task_runner", object())
    assert s3.client_kwargs()["endpoint_url"] == conn_only and asked == ["aws_default"]
    _round_trip(s3.client())
    monkeypatch.setattr(connections, "airflow_connection", lambda name: None)
    assert s3.client_kwargs() == {}, "no such connection: boto3's chain applies"


def test_only_an_endpoint_that_did_not_answer_is_unavailable():
    from botocore.exceptions import ClientError, EndpointConnectionError, NoCredentialsError, ReadTimeoutError

    def answered(code: str, status: int) -> ClientError:
        response = {"Error": {"Code": code}, "ResponseMetadata": {"HTTPStatusCode": status}}
        return ClientError(response, "PutObject")

    assert s3.is_unavailable(EndpointConnectionError(endpoint_url="http://127.0.0.1:9"))
    assert s3.is_unavailable(ReadTimeoutError(endpoint_url="http://127.0.0.1:9"))
    assert s3.is_unavailable(answered("ServiceUnavailable", 503))
    assert s3.is_unavailable(answered("SlowDown", 503))
    assert not s3.is_unavailable(answered("AccessDenied", 403))
    assert not s3.is_unavailable(answered("NoSuchBucket", 404))
    assert not s3.is_unavailable(NoCredentialsError())
