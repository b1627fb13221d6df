"""The heavy tasks declared once for both backends: what they map over, their skip rules, the local tasks."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from tasks.backends import heavy
from tasks.contracts.planning import PlannedJob
from tasks.pipeline.plan import step_argv
from tasks.storage import store
from tests.tasks.pipeline.specs import write_evaluate_spec


def test_the_map_functions_pick_the_argv_each_step_runs():
    job = PlannedJob(
        job_id="tuna--tiny--a",
        label="tuna|tiny|a",
        kind="train",
        train_spec="u/t.json",
        train_argv=step_argv("train", "u/t.json"),
        evaluate_spec="u/e.json",
        evaluate_argv=step_argv("evaluate", "u/e.json"),
    ).model_dump(mode="json")
    assert heavy.train_argv(job)[2] == "tasks.train" and heavy.evaluate_argv(job)[2] == "tasks.evaluate"
    dataset = {"name": "tuna", "spec_uri": "u/d.json", "argv": ["python", "-m", "tasks.prepare_dataset"]}
    assert heavy.dataset_argv(dataset)[-1] == "tasks.prepare_dataset"
    # The readable map index of a local mapped task.
    assert heavy.entry_label("prepare_dataset", dataset) == "tuna"
    assert heavy.entry_label("train", job) == "tuna|tiny|a"


def test_a_map_function_refuses_an_entry_that_is_not_a_planned_job():
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="evaluate_argv"):
        heavy.evaluate_argv({"job_id": "j", "label": "l", "kind": "reference", "evaluate_spec": "u/e.json"})


def test_evaluate_is_skipped_without_a_pod_when_training_left_no_output(tmp_path):
    from airflow.sdk.exceptions import AirflowSkipException

    root = tmp_path.as_uri()
    train_output = store.join(root, "jobs", "j1", "train")
    spec_uri = store.join(root, "jobs", "j1", "evaluate.json")
    write_evaluate_spec(spec_uri, train_output=train_output)
    context = {"task": SimpleNamespace(arguments=step_argv("evaluate", spec_uri))}
    with pytest.raises(AirflowSkipException, match="training failed"):
        heavy.skip_if_training_failed(context)
    store.ensure_dir(train_output)
    store.commit(train_output, {"adapter_uri": "x"})
    heavy.skip_if_training_failed(context)  # committed: the pod runs
    write_evaluate_spec(spec_uri, train_output=None, reference=True)
    heavy.skip_if_training_failed(context)  # base-model scoring has no training


def test_export_is_skipped_when_the_validated_experiment_says_so(store_root):
    from airflow.sdk.exceptions import AirflowSkipException

    from tasks.pipeline.plan import run_info

    run_uri = run_info("exp", "manual__1", store_root).run_uri
    export_argv = step_argv("export", store.join(run_uri, "export.json"))
    pod = SimpleNamespace(arguments=export_argv)
    context = {"params": {"name": "exp"}, "run_id": "manual__1", "task": pod}
    experiment_uri = store.join(run_uri, "experiment.json")
    store.write_json(experiment_uri, {"experiment": {"export": {"enabled": False}}})
    with pytest.raises(AirflowSkipException, match=r"export\.enabled is false"):
        heavy.skip_unless_export_enabled(context)
    store.write_json(experiment_uri, {"experiment": {"export": {"enabled": True}}})
    heavy.skip_unless_export_enabled(context)


def test_a_local_task_applies_the_same_skip_rule_before_starting_a_subprocess(tmp_path, monkeypatch):
    from airflow.sdk.exceptions import AirflowSkipException

    started = []
    monkeypatch.setattr(heavy, "run_step", lambda argv, env: started.append(argv))
    spec_uri = store.join(tmp_path.as_uri(), "jobs", "j1", "evaluate.json")
    train_output = store.join(tmp_path.as_uri(), "jobs", "j1", "train")
    write_evaluate_spec(spec_uri, label="tuna|tiny|a", train_output=train_output)
    with pytest.raises(AirflowSkipException, match=r"tuna\|tiny\|a: training failed"):
        heavy.run_locally("evaluate", step_argv("evaluate", spec_uri), {}, heavy.skip_if_training_failed)
    assert started == []


def test_a_local_step_failing_on_its_inputs_fails_for_good_and_an_interrupted_one_is_retried(
    tmp_path, monkeypatch
):
    from airflow.sdk.exceptions import AirflowFailException

    from tasks.backends.local import StepFailed

    argv = step_argv("prepare_dataset", store.join(tmp_path.as_uri(), "datasets", "tuna.json"))
    for retryable, expected in ((False, AirflowFailException), (True, StepFailed)):

        def fail(argv, env, retryable=retryable):
            raise StepFailed("prepare_dataset failed (exit 1): no rows", retryable=retryable)

        monkeypatch.setattr(heavy, "run_step", fail)
        with pytest.raises(expected, match="no rows"):
            heavy.run_locally("prepare_dataset", argv, {}, None)


def test_a_local_step_that_ran_reports_its_spec_and_result_to_lineage(tmp_path, monkeypatch):
    from tasks.lineage import emit

    reported = []
    result = {"name": "tuna", "uri": "file:///store/datasets/tuna/v1", "kind": "chat"}
    monkeypatch.setattr(heavy, "run_step", lambda argv, env: result)
    monkeypatch.setattr(emit, "report_step", lambda step, argv, result: reported.append((step, argv, result)))
    argv = step_argv("prepare_dataset", store.join(tmp_path.as_uri(), "datasets", "tuna.json"))
    assert heavy.run_locally("prepare_dataset", argv, {}, None) == result
    assert reported == [("prepare_dataset", argv, result)]
