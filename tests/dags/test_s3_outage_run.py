"""A whole experiment (`dag.test`) on an S3 store whose endpoint stops answering for 30 s, twice: while
job `a`'s training uploads a checkpoint, and while its train step commits its output (the PUT of its
manifest.json). Both outages are ridden out by the store's bounded retries: the run succeeds with no task
retried and every committed output verifies. The undisturbed reference is in the same run: job `twin`,
the same hyperparameters under another name, trained after the outages, must score and lose alike."""

from __future__ import annotations

import pytest

from tasks.storage import layout, store
from tests.dags.test_finetune_experiment import dag  # noqa: F401
from tests.fixtures.confs import tiny_conf
from tests.fixtures.leaderboards import assert_same_row

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
        export={"enabled": False},
    )


def _committed(prefix: str) -> list[str]:
    """Every committed output (a prefix holding manifest.json) under an s3:// prefix."""
    import boto3

    bucket, key = prefix.removeprefix("s3://").split("/", 1)
    pages = boto3.client("s3").get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=key + "/")
    keys = [item["Key"] for page in pages for item in page.get("Contents", [])]
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
    s3_stalls,
):
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
    committed = _committed(prefix)
    assert any(p.endswith("--a/checkpoints/checkpoint-4") for p in committed), committed
    assert any(p.endswith("--a/train") for p in committed), committed
    for output in committed:
        assert store.verify(output) == [], output

    board = store.read_json(store.join(prefix, "leaderboard.json"))
    rows = {row["label"].rsplit("|", 1)[-1]: row for row in board["rows"]}
    assert board["failed"] == [] and rows.keys() == {"a", "twin"}, board
    assert_same_row(rows["a"], rows["twin"])
    print(
        f"\noutages: {upload.hit_path} for {upload.ended - upload.started:.0f}s, {commit.hit_path} for "
        f"{commit.ended - commit.started:.0f}s; {len(committed)} committed outputs verified; a and twin: "
        f"train_loss {rows['a']['train']['train_loss']} / {rows['twin']['train']['train_loss']}"
    )
