"""The search's rounds in `finetune_experiment`, on the DAG object (no `dags test`): each later round is a
task group planning, training and scoring after the round before ended, on both backends; evaluate maps
over a round's final jobs only; a run without a search plans nothing in them."""

from __future__ import annotations

import importlib.util
import itertools

import pytest
import yaml

from tasks.config.search import MAX_ROUNDS
from tasks.console.runs import RUN_TASKS
from tasks.contracts.planning import RunInfo
from tasks.storage import layout
from tests.conftest import REPO
from tests.tasks.pipeline.search_runs import commit_train, conf, start

DAG_FILE = REPO / "dags" / "finetune_experiment.py"
ROUND_TASKS = ("plan", "train", "final_jobs", "evaluate")
_loaded = itertools.count()


def _load_dag(backend: str, config: str | None = None):
    with pytest.MonkeyPatch.context() as monkeypatch:  # the backend is read at parse time only
        monkeypatch.setenv("TUNERFLOW_BACKEND", backend)
        if config:
            monkeypatch.setenv("TUNERFLOW_K8S_CONFIG", config)
        name = f"finetune_experiment_rounds_{backend}_{next(_loaded)}"
        spec = importlib.util.spec_from_file_location(name, DAG_FILE)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module


@pytest.fixture(scope="module")
def local():
    return _load_dag("local")


@pytest.fixture(scope="module")
def k8s_dag(tmp_path_factory):
    config = tmp_path_factory.mktemp("k8s") / "kubernetes.yaml"
    config.write_text(yaml.safe_dump({"namespace": "ml", "image": "registry.example.com/trainer:1"}))
    return _load_dag("kubernetes", str(config)).dag


def test_every_later_round_plans_trains_and_scores_after_the_round_before(local, k8s_dag):
    dag = local.dag
    assert dag.get_task("evaluate").upstream_task_ids == {"train", "final_jobs"}
    previous = {"train", "evaluate"}
    for k in range(2, MAX_ROUNDS + 1):
        group = f"round_{k}"
        assert {f"{group}.{t}" for t in ROUND_TASKS} <= set(dag.task_ids)
        plan = dag.get_task(f"{group}.plan")
        assert plan.upstream_task_ids == previous and plan.trigger_rule == "all_done"
        assert dag.get_task(f"{group}.train").upstream_task_ids == {f"{group}.plan"}
        assert dag.get_task(f"{group}.evaluate").upstream_task_ids == {
            f"{group}.train",
            f"{group}.final_jobs",
        }
        assert dag.get_task(f"{group}.evaluate").trigger_rule == "all_done"
        previous = {f"{group}.train", f"{group}.evaluate"}
    # The merged candidates come after the last round, and selection after them.
    assert dag.get_task("plan_merges").upstream_task_ids == previous
    assert dag.get_task("select_best").upstream_task_ids == {"merge", "score_merge", "score_base"}
    for task_id in dag.task_ids:
        assert k8s_dag.get_task(task_id).upstream_task_ids == dag.get_task(task_id).upstream_task_ids
    pod = k8s_dag.get_task(f"round_{MAX_ROUNDS}.train")
    assert pod.partial_kwargs["map_index_template"] == "{{ task.arguments[-1].split('/')[-2] }}"


def _run_task(module, monkeypatch, task_id: str, info: RunInfo, round_number: int) -> list[dict]:
    monkeypatch.setattr(module, "_this_run", lambda: info)
    return module.dag.get_task(task_id).python_callable(round_number)


def test_without_a_search_the_later_rounds_skip(local, store_root, monkeypatch):
    from tasks.pipeline.plan import plan_jobs

    info, prepared = start(store_root, conf({}))
    (job,) = plan_jobs(info, prepared)
    commit_train(info, job, 1.0)
    assert _run_task(local, monkeypatch, "final_jobs", info, 1) == [job.model_dump(mode="json")]
    from airflow.sdk.exceptions import AirflowSkipException

    for k in range(2, MAX_ROUNDS + 1):
        with pytest.raises(AirflowSkipException, match="no search in this run's conf"):
            _run_task(local, monkeypatch, f"round_{k}.plan", info, k)


def test_a_halving_round_two_plans_the_survivors(local, store_root, monkeypatch):
    from tasks.pipeline.plan import plan_jobs

    search = {
        "space": {"lora_r": {"type": "int", "choices": [4, 8, 16]}},
        "halving": {"min_steps": 2, "max_steps": 6},
    }
    info, prepared = start(store_root, conf(search))
    jobs = plan_jobs(info, prepared)
    assert _run_task(local, monkeypatch, "final_jobs", info, 1) == []
    for index, job in enumerate(jobs):
        commit_train(info, job, float(index))
    (planned,) = _run_task(local, monkeypatch, "round_2.plan", info, 2)
    assert planned["job_id"] == f"{jobs[0].job_id}--r2"
    assert _run_task(local, monkeypatch, "round_2.final_jobs", info, 2) == [planned]
    assert layout.job(info.run_uri, planned["job_id"]) in planned["train_spec"]


def test_the_run_page_links_every_run_level_step_but_planning_in_graph_order(local):
    order = [t.task_id for t in local.dag.topological_sort() if "." not in t.task_id and not t.is_mapped]
    assert [t for t in order if t in RUN_TASKS] == list(RUN_TASKS)
    assert set(order) - set(RUN_TASKS) == {"plan_jobs", "plan_references", "final_jobs", "plan_champion"}
