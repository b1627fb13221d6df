"""A whole experiment (`dag.test`) on an S3 store whose endpoint stops answering for 30 s, twice: while
job `a`'s training uploads a checkpoint, and while its train step commits its output (the PUT of its
manifest.json). Both outages are ridden out by the store's bounded retries: the run succeeds with no task
retried and every committed output verifies. The undisturbed reference is in the same run: job `twin`,
the same hyperparameters under another name, trained after the outages, must score and lose alike.

The store is reachable only through the Airflow connection `aws_default` in the metadata DB (no AWS_*
endpoint or keys in the environment): the light tasks must ask Airflow for it and every heavy step,
export and check_export included, must receive it from the DAG; its key reaches no XCom and no object."""

from __future__ import annotations

import json

import pytest

from tasks.registry import versions as registry
from tasks.storage import layout, store
from tests.dags.test_finetune_experiment import dag  # noqa: F401
from tests.fixtures.confs import tiny_conf
from tests.fixtures.connections import connection_in_db, without_aws_environment
from tests.fixtures.leaderboards import assert_same_row
from tests.fixtures.s3_objects import keys_under, s3_client

OUTAGE_S = 30


def _conf(model_dir) -> dict:
    # Checkpoints at steps 2, 4 and 6, each committed to S3 by the training subprocess.
    group = {"preset": "lora-fast", "max_steps": 6, "save_steps": 2}
    return tiny_conf(
        model_dir,
        name="s3-outage",
        hparams=[{"name": "a", **group}, {"name": "twin", **group}],
        scoring={
            "metrics": ["exact_match", "rouge_l"],
            "primary": "rouge_l",
            "max_new_tokens": 4,
            "compare_base": False,
        },
        promotion={"registry_name": "tiny-s3"},
    )


@pytest.fixture
def s3_only_through_the_connection(s3_store_root, s3_endpoint, airflow_db, monkeypatch):
    """The store on the moto server, reachable only through the Airflow connection `aws_default` kept in
    the metadata DB: no AWS_* endpoint or keys in the environment, so the light tasks must ask Airflow
    for it and every heavy step must receive it from the DAG."""
    without_aws_environment(monkeypatch)
    secret = "moto-secret-for-the-dag-test"
    extra = {"endpoint_url": s3_endpoint, "region_name": "us-east-1"}
    with connection_in_db("aws_default", "aws", extra, login="AKIADAGTEST", password=secret):
        yield secret


def _committed(bucket: str, keys: list[str]) -> list[str]:
    """Every committed output (a prefix holding manifest.json) among the keys."""
    return [
        f"s3://{bucket}/{k.removesuffix('/' + store.MANIFEST)}"
        for k in keys
        if k.endswith("/" + store.MANIFEST)
    ]


@pytest.mark.slow
def test_a_run_rides_out_two_30s_outages_of_its_s3_endpoint(
    dag,  # noqa: F811  (the fixture imported above)
    tiny_model_dir,
    s3_store_root,
    s3_only_through_the_connection,
    s3_endpoint,
    s3_stalls,
    monkeypatch,
):
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    checkpoint = r"/jobs/[^/]+--a/checkpoints/checkpoint-4/adapter_model\.safetensors$"
    upload = s3_stalls.add("PUT", checkpoint, OUTAGE_S)
    commit = s3_stalls.add("PUT", r"/jobs/[^/]+--a/train/manifest\.json$", OUTAGE_S)
    run = dag.test(run_conf=_conf(tiny_model_dir))
    instances = run.get_task_instances()
    states = {ti.task_id: str(ti.state) for ti in instances}
    assert str(run.state) == "success", states
    for stall in (upload, commit):
        assert stall.started is not None, f"no request matched {stall.path.pattern}"
        assert stall.ended - stall.started >= OUTAGE_S
    # Ridden out inside the step: no task needed a second try.
    assert {ti.task_id: ti.try_number for ti in instances if ti.try_number > 1} == {}

    # Nothing partial: every output the run committed is whole.
    prefix = layout.run(s3_store_root, "s3-outage", run.run_id)
    client = s3_client(s3_endpoint)
    bucket, keys = keys_under(client, prefix + "/")
    committed = _committed(bucket, keys)
    assert any(p.endswith("--a/checkpoints/checkpoint-4") for p in committed), committed
    assert any(p.endswith("--a/train") for p in committed), committed
    assert {"export", "check_export"} <= {p.rsplit("/", 1)[1] for p in committed}, committed
    assert any(key.endswith("/train/adapter/adapter_model.safetensors") for key in keys)
    # Read back with the same connection, as the worker would.
    secret = s3_only_through_the_connection
    conn = {"conn_type": "aws", "login": "AKIADAGTEST", "password": secret}
    conn["extra"] = {"endpoint_url": s3_endpoint}
    monkeypatch.setenv("AIRFLOW_CONN_AWS_DEFAULT", json.dumps(conn))
    for output in committed:
        assert store.verify(output) == [], output
    assert store.committed_result(store.join(prefix, "check_export"))["passed"] is True
    assert registry.production(s3_store_root, "tiny-s3")["version"] == 1

    # The key never leaves the connection: not in XCom, not in any object the run wrote.
    with create_session() as session:
        values = [str(x.value) for x in session.query(XComModel).filter(XComModel.run_id == run.run_id)]
    assert values and not any(secret in value for value in values)
    small = [key for key in keys if key.endswith((".json", ".jsonl"))]
    assert small and not any(
        secret.encode() in client.get_object(Bucket=bucket, Key=key)["Body"].read() for key in small
    )

    board = store.read_json(store.join(prefix, "leaderboard.json"))
    rows = {row["label"].rsplit("|", 1)[-1]: row for row in board["rows"]}
    assert board["failed"] == [] and rows.keys() == {"a", "twin"}, board
    assert_same_row(rows["a"], rows["twin"])
    print(
        f"\noutages: {upload.hit_path} for {upload.ended - upload.started:.0f}s, {commit.hit_path} for "
        f"{commit.ended - commit.started:.0f}s; {len(committed)} committed outputs verified; a and twin: "
        f"train_loss {rows['a']['train']['train_loss']} / {rows['twin']['train']['train_loss']}"
    )
