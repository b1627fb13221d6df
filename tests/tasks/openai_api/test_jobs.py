"""A job's status, error, model, events and checkpoints, from its DAG run (as Airflow's REST API gives
it) and a run store written with the project's own writers (tests/fixtures/console_store.py)."""

from __future__ import annotations

import pytest

from tasks.openai_api import files, jobs
from tasks.openai_api.job_conf import build_conf
from tasks.openai_api.objects import ApiError, page
from tasks.openai_api.progress import checkpoint_list, events
from tasks.openai_api.requests import parse_request
from tasks.openai_api.runs import RunState, TaskState, seconds
from tasks.registry import versions as registry
from tasks.storage import layout, store
from tests.fixtures.console_store import FakeJob, FakeRun, build_run
from tests.tasks.openai_api.test_files import CHAT, jsonl

JOB = "ftjob-0123456789abcdef01234567"


def at(seconds_after: int) -> str:
    return f"2030-12-03T10:{seconds_after // 60:02d}:{seconds_after % 60:02d}+00:00"


@pytest.fixture
def record(store_root):
    training = files.upload(store_root, "train.jsonl", "fine-tune", jsonl(CHAT, CHAT)).id
    request = parse_request({"model": "smollm2-135m-instruct", "training_file": training, "suffix": "t"})
    conf, hyper = build_conf(store_root, request, JOB)
    return jobs.save(store_root, JOB, request, conf, hyper, seed=42)


def finished_run(store_root, record, steps=4):
    build_run(
        store_root,
        FakeRun(
            experiment=record["conf"]["name"], run_id=JOB, jobs=[FakeJob("openai", steps=steps)], base=False
        ),
    )


def tasks(*states):
    return [
        TaskState(task_id=t, state=s, start_date=at(10 * i), end_date=at(10 * i + 5))
        for i, (t, s) in enumerate(states)
    ]


@pytest.mark.parametrize(
    ("run", "status"),
    [
        (RunState(state="queued"), "queued"),
        (
            RunState(
                state="running", tasks=tasks(("validate_conf", "success"), ("prepare_dataset", "running"))
            ),
            "validating_files",
        ),
        (
            RunState(state="running", tasks=tasks(("validate_conf", "success"), ("train", "running"))),
            "running",
        ),
        (RunState(state="success"), "succeeded"),
        (RunState(state="failed"), "failed"),
    ],
)
def test_status_follows_the_run_and_its_tasks(store_root, record, run, status):
    assert jobs.status_of(record, run, None) == status
    assert jobs.status_of(record, run, cancelled=123) == "cancelled"


def test_a_run_airflow_never_shows_is_queued_then_failed(store_root, record):
    assert jobs.status_of(record, RunState(), None, now=record["created_at"] + 5) == "queued"
    job = jobs.job_object(store_root, record, RunState(), now=record["created_at"] + 3600)
    assert job.status == "failed" and job.error.code == "no_run"


def test_a_succeeded_job_names_its_registry_version_tokens_and_results_file(store_root, record):
    finished_run(store_root, record)
    run_uri = layout.run(store_root, record["conf"]["name"], JOB)
    registry.register(store_root, record["conf"]["name"], {"run_uri": run_uri, "job_id": "x"})
    job = jobs.job_object(store_root, record, RunState(state="success", end_date=at(90)))
    assert job.status == "succeeded" and job.error is None
    assert job.fine_tuned_model == f"{record['conf']['name']}-v1"
    assert job.finished_at == seconds(at(90))
    assert job.trained_tokens == 40  # the last checkpoint (step 4) saw 10 x 4 tokens
    hyper = {k: v for k, v in record["hyperparameters"].items() if v is not None}
    assert job.method == {"type": "supervised", "supervised": {"hyperparameters": hyper}}
    assert job.seed == 42 and job.user_provided_suffix == "t" and job.model == "smollm2-135m-instruct"
    [results] = job.result_files
    assert files.get(store_root, results).purpose == "fine-tune-results"
    assert files.content(store_root, results).startswith(b'{"step": 1')
    # Read again: the same results file, recorded once.
    assert jobs.job_object(store_root, record, RunState(state="success")).result_files == [results]


def test_a_run_that_registered_nothing_has_no_fine_tuned_model(store_root, record):
    finished_run(store_root, record)
    assert jobs.job_object(store_root, record, RunState(state="success")).fine_tuned_model is None


def test_a_failed_job_carries_the_failing_steps_message(store_root, record):
    finished_run(store_root, record)
    run_uri = layout.run(store_root, record["conf"]["name"], JOB)
    [planned] = store.read_json(store.join(run_uri, "jobs.json"))
    train = layout.step(layout.job(run_uri, planned["job_id"]), "train")
    store.write_json(store.join(train, "error.json"), {"step": "train", "message": "CUDA out of memory"})
    run = RunState(state="failed", tasks=tasks(("train", "failed")))
    job = jobs.job_object(store_root, record, run)
    assert job.status == "failed"
    assert (job.error.code, job.error.message) == ("train_failed", "train: CUDA out of memory")
    store.remove(store.join(train, "error.json"))
    assert "task train failed" in jobs.job_object(store_root, record, run).error.message


def test_cancel_is_recorded_once_and_a_finished_job_cannot_be_cancelled(store_root, record):
    jobs.mark_cancelled(store_root, JOB)
    first = jobs.cancelled_at(store_root, JOB)
    jobs.mark_cancelled(store_root, JOB)
    assert jobs.cancelled_at(store_root, JOB) == first
    job = jobs.job_object(store_root, record, RunState(state="failed"))
    assert (job.status, job.finished_at, job.error) == ("cancelled", first, None)
    for status in ("succeeded", "failed", "cancelled"):
        with pytest.raises(ApiError, match="cannot be cancelled"):
            jobs.check_cancellable(status, JOB)
    jobs.check_cancellable("running", JOB)


def test_a_cancel_is_recorded_in_the_run_so_that_validation_stops_it(store_root, record):
    from tasks.pipeline.plan import RunCancelled, validate_conf

    jobs.stop_at_start(store_root, record)
    run_uri = layout.run(store_root, record["conf"]["name"], JOB)
    assert "cancelled_at" in store.read_json(layout.cancel_request(run_uri))
    with pytest.raises(RunCancelled):
        validate_conf(record["conf"], JOB, store_root)


def test_jobs_are_listed_newest_first_and_unknown_ids_are_404(store_root, record):
    later = dict(record, id="ftjob-later", created_at=record["created_at"] + 10)
    store.write_json(store.join(jobs.job_prefix(store_root, "ftjob-later"), "job.json"), later)
    assert jobs.ids(store_root) == ["ftjob-later", JOB]
    for bad in ("ftjob-missing", "../x", "ftjob-" + "a" * 500):
        with pytest.raises(ApiError) as refused:
            jobs.load(store_root, bad)
        assert refused.value.status == 404
    jobs.forget(store_root, "ftjob-later")
    assert jobs.ids(store_root) == [JOB]


def test_events_hold_creation_task_changes_and_every_logged_loss_newest_first(store_root, record):
    finished_run(store_root, record, steps=3)
    run = RunState(state="success", tasks=tasks(("validate_conf", "success"), ("train", "success")))
    found = events(store_root, record, run, now=0)
    by_id = {event.id: event for event in found}
    hexa = JOB.removeprefix("ftjob-")
    assert by_id[f"ftevent-{hexa}-step-2"].data == {
        "step": 2,
        "train_loss": 1.5,
        "learning_rate": pytest.approx(1e-3 * (1 - 2 / 4)),
    }
    assert by_id[f"ftevent-{hexa}-step-2"].type == "metrics"
    assert by_id[f"ftevent-{hexa}-eval-3"].data == {"step": 3, "valid_loss": 0.5}
    assert by_id[f"ftevent-{hexa}-train-success"].message == "train success"
    assert by_id[f"ftevent-{hexa}-created"] == found[-1]
    assert [e.created_at for e in found] == sorted((e.created_at for e in found), reverse=True)
    # A page after an id goes on from it.
    first = page(found, None, 2, lambda e: e.id)
    second = page(found, first["last_id"], 2, lambda e: e.id)
    assert first["has_more"] and [e["id"] for e in second["data"]] == [e.id for e in found[2:4]]


def test_a_failed_task_is_an_error_event_and_a_cancel_is_an_event(store_root, record):
    jobs.mark_cancelled(store_root, JOB)
    found = events(
        store_root, record, RunState(state="failed", tasks=tasks(("validate_conf", "failed"))), now=0
    )
    [failed] = [e for e in found if e.message == "validate_conf failed"]
    assert failed.level == "error"
    assert any(e.message == "Job cancelled" for e in found)


def test_checkpoints_are_the_committed_ones_with_the_losses_at_their_step(store_root, record):
    assert checkpoint_list(store_root, record) == []
    finished_run(store_root, record, steps=4)
    listed = checkpoint_list(store_root, record)
    assert [c.step_number for c in listed] == [4, 2]
    newest = listed[0]
    assert newest.id == f"ftckpt-{JOB.removeprefix('ftjob-')}-4" and newest.fine_tuning_job_id == JOB
    assert (newest.metrics.train_loss, newest.metrics.valid_loss) == (0.75, 0.5)
    assert (listed[1].metrics.train_loss, listed[1].metrics.valid_loss) == (1.5, None)
    assert newest.created_at == seconds("2026-01-02T03:10:00+00:00")
    assert store.is_committed(newest.fine_tuned_model_checkpoint)
