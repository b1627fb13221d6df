"""The DAG with TUNERFLOW_BACKEND=kubernetes: every heavy step is a pod operator (a StepPodOperator that
builds a KubernetesPodOperator when it runs) with the local DAG's task id and dependencies, and every pod
it would submit follows the policy (rendered, no cluster)."""

from __future__ import annotations

import contextlib
import importlib.util
import itertools
import json
import os
import subprocess
import sys

import pytest
import yaml

from tasks.config.search import MAX_ROUNDS
from tasks.pipeline.plan import step_argv
from tasks.storage import layout
from tests.conftest import REPO

DAG_FILE = REPO / "dags" / "finetune_experiment.py"
HEAVY = {
    "prepare_dataset": "prepare_dataset",
    "train": "train",
    "evaluate": "evaluate",
    "score_base": "evaluate",
    "merge": "merge",
    "score_merge": "evaluate",
    **{f"round_{k}.{task}": task for k in range(2, MAX_ROUNDS + 1) for task in ("train", "evaluate")},
    "export": "export",
    "check_export": "check_export",
    "score_champion": "evaluate",
}
LIGHT = (
    "validate_conf",
    "plan_jobs",
    "final_jobs",
    *(f"round_{k}.{task}" for k in range(2, MAX_ROUNDS + 1) for task in ("plan", "final_jobs")),
    "plan_references",
    "plan_merges",
    "select_best",
    "approve_promotion",
    "plan_champion",
    "promote",
    "publish_promotion",
    "report",
    "track_mlflow",
)
GPU_TASKS = {task for task, step in HEAVY.items() if step in ("train", "evaluate")}
TRAIN_GPUS = 2
SETTINGS = {
    "namespace": "ml-jobs",
    "resources": {"train": {"gpus": TRAIN_GPUS}},
    "image": "registry.example.com/tunerflow/trainer:1.2.3",
    "image_pull_secrets": ["regcred"],
    "service_account_name": "tunerflow-trainer",
    "kueue_queue_name": "gpu-queue",
    "env_from_secrets": ["tunerflow-store-credentials"],
    "env": {"AWS_ENDPOINT_URL": "http://minio:9000"},
    "store_volume": {"claim_name": "tunerflow-store", "mount_path": "/data/tunerflow"},
    "cache_volume": {"claim_name": "hf-cache", "mount_path": "/cache"},
}
# What a worker's environment may hold; none of it may reach a pod manifest.
WORKER_SECRETS = {
    "AWS_SECRET_ACCESS_KEY": "worker-secret-key-7f3a",
    "HF_TOKEN": "hf_worker_token_9c2e",
    "AIRFLOW_CONN_AWS_DEFAULT": "aws://AKIAWORKER:worker-conn-secret-5d1b@",
}
_loaded = itertools.count()


def _load_dag(monkeypatch, backend: str, config: str | None = None):
    """Parse the DAG file as a fresh module, so the DAG other tests import is left alone."""
    monkeypatch.setenv("TUNERFLOW_BACKEND", backend)
    if config:
        monkeypatch.setenv("TUNERFLOW_K8S_CONFIG", config)
    spec = importlib.util.spec_from_file_location(f"finetune_experiment_{backend}_{next(_loaded)}", DAG_FILE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.dag


@pytest.fixture(scope="module")
def k8s_dag(tmp_path_factory):
    config = tmp_path_factory.mktemp("k8s") / "kubernetes.yaml"
    config.write_text(yaml.safe_dump(SETTINGS))
    with pytest.MonkeyPatch.context() as monkeypatch:  # the backend is read at parse time only
        return _load_dag(monkeypatch, "kubernetes", str(config))


@pytest.fixture(scope="module")
def local_dag():
    with pytest.MonkeyPatch.context() as monkeypatch:
        return _load_dag(monkeypatch, "local")


def _argv(task_id: str) -> list[str]:
    """The argv the light tasks would hand this task (tasks.pipeline.plan.step_argv on a real store
    layout)."""
    run = layout.run("file:///data/tunerflow", "demo", "manual__2026-01-01T00:00:00")
    if task_id == "prepare_dataset":
        return step_argv("prepare_dataset", f"{run}/datasets/tuna.json")
    if task_id in ("export", "check_export"):
        return step_argv(task_id, f"{run}/{task_id}.json")
    if task_id == "score_champion":
        return step_argv("evaluate", f"{run}/champion/evaluate.json")
    job_id = "tuna--tiny--base" if task_id == "score_base" else "tuna--tiny--a"
    return step_argv(HEAVY[task_id], f"{layout.job(run, job_id)}/{HEAVY[task_id]}.json")


@contextlib.contextmanager
def _concrete(dag, task_id: str):
    """The task as it runs (a StepPodOperator, one per argv when mapped) with the argv it would get at
    run time, and the KubernetesPodOperator it builds to submit the pod."""
    from tasks.backends.kubernetes import StepPodOperator

    task = dag.get_task(task_id)
    if getattr(task, "partial_kwargs", None) is not None:  # mapped: one operator per argv
        assert task.operator_class is StepPodOperator
        operator = StepPodOperator(task_id=task_id, arguments=_argv(task_id), **task.partial_kwargs)
        yield operator, operator.pod_operator()
        return
    assert isinstance(task, StepPodOperator)
    saved, task.arguments = task.arguments, _argv(task_id)  # what rendering the XComArg gives
    try:
        yield task, task.pod_operator()
    finally:
        task.arguments = saved


def _render(dag, task_id: str):
    with _concrete(dag, task_id) as (task, pod_operator):
        return task, pod_operator, pod_operator.build_pod_request_obj(dry_run=True)


def test_both_backends_have_the_same_tasks_dependencies_and_trigger_rules(k8s_dag, local_dag):
    assert set(k8s_dag.task_ids) == set(local_dag.task_ids) == set(HEAVY) | set(LIGHT)
    for task_id in k8s_dag.task_ids:
        k8s_task, local_task = k8s_dag.get_task(task_id), local_dag.get_task(task_id)
        assert k8s_task.upstream_task_ids == local_task.upstream_task_ids, task_id
        assert k8s_task.trigger_rule == local_task.trigger_rule, task_id
    assert k8s_dag.get_task("evaluate").trigger_rule == "all_done"


def test_heavy_steps_are_pod_operators_mapped_over_the_light_tasks_argv(k8s_dag):
    from airflow.sdk.definitions.xcom_arg import MapXComArg

    from tasks.backends import heavy
    from tasks.backends.kubernetes import StepPodOperator

    mapped_from = {
        "prepare_dataset": ("validate_conf", heavy.dataset_argv),
        "train": ("plan_jobs", heavy.train_argv),
        "evaluate": ("final_jobs", heavy.evaluate_argv),
        "score_base": ("plan_references", heavy.evaluate_argv),
    }
    for task_id, (upstream, function) in mapped_from.items():
        task = k8s_dag.get_task(task_id)
        assert task.operator_class is StepPodOperator
        arguments = task.expand_input.value["arguments"]
        assert isinstance(arguments, MapXComArg)
        assert arguments.arg.operator.task_id == upstream and arguments.callables == [function]
    for task_id in ("export", "check_export"):
        task = k8s_dag.get_task(task_id)
        assert isinstance(task, StepPodOperator)
        assert task.arguments.operator.task_id == "select_best" and task.arguments.key == f"{task_id}_argv"
    champion = k8s_dag.get_task("score_champion")
    assert isinstance(champion, StepPodOperator) and champion.arguments.operator.task_id == "plan_champion"
    for task_id in LIGHT:
        # The approval is Airflow's human-in-the-loop operator (its light stand-in), on the worker.
        light = "ApprovalWhenRun" if task_id == "approve_promotion" else "_PythonDecoratedOperator"
        assert k8s_dag.get_task(task_id).task_type == light, task_id
    # evaluate skips (no pod) when training failed; export when export.enabled is false
    assert k8s_dag.get_task("evaluate").partial_kwargs["pre_execute"] is heavy.skip_if_training_failed
    assert k8s_dag.get_task("export")._pre_execute_hook is heavy.skip_unless_export_enabled


def _strings(value) -> list[str]:
    if isinstance(value, dict):
        return [s for k, v in value.items() for s in (str(k), *_strings(v))]
    if isinstance(value, list):
        return [s for v in value for s in _strings(v)]
    return [str(value)] if value is not None else []


@pytest.mark.parametrize("task_id", sorted(HEAVY))
def test_every_pod_follows_the_policy(k8s_dag, task_id, monkeypatch):
    for name, value in WORKER_SECRETS.items():
        monkeypatch.setenv(name, value)
    task, operator, pod = _render(k8s_dag, task_id)
    spec = pod.spec
    base, *sidecars = spec.containers
    step = HEAVY[task_id]
    # the command both backends run
    assert not base.command and base.args == _argv(task_id)
    assert base.args[:3] == ["python", "-m", f"tasks.{step}"] and base.args[3] == "--job"
    assert base.image == SETTINGS["image"] and pod.metadata.namespace == "ml-jobs"
    # GPUs only where they are needed, as many as configured; the GPU pool caps them, a slot per GPU
    limits = base.resources.limits or {}
    tolerations = [(t.key, t.operator, t.effect) for t in spec.tolerations or []]
    if task_id in GPU_TASKS:
        gpus = TRAIN_GPUS if step == "train" else 1
        assert limits["nvidia.com/gpu"] == str(gpus)
        assert ("nvidia.com/gpu", "Exists", "NoSchedule") in tolerations
        assert task.pool == "tunerflow_gpu" and task.pool_slots == gpus
    else:
        assert not any("gpu" in key for key in limits) and not tolerations
        assert task.pool == "default_pool" and task.pool_slots == 1
    assert base.resources.requests["memory"] and base.resources.requests["cpu"]
    # credentials only through Secrets: no env value, nothing from the worker's environment
    assert {e.name: e.value for e in base.env} == {"AWS_ENDPOINT_URL": "http://minio:9000"}
    assert all(e.value_from is None for c in spec.containers for e in c.env or [])
    assert [(e.secret_ref.name, e.config_map_ref) for e in base.env_from] == [
        ("tunerflow-store-credentials", None)
    ]
    manifest = _strings(pod.to_dict())
    for secret in WORKER_SECRETS.values():
        assert not any(secret in text for text in manifest), f"{secret} leaked into the {task_id} pod"
    # long starts, graceful stops, deferrable, reattached after a worker restart
    assert spec.termination_grace_period_seconds == 600
    assert operator.startup_timeout_seconds == 1800 and operator.schedule_timeout_seconds == 1800
    assert operator.deferrable and operator.durable and operator.get_logs
    assert operator.on_finish_action.value == "delete_succeeded_pod"
    assert spec.restart_policy == "Never"
    # volumes: /dev/shm, the shared store, the model cache, the XCom sidecar returning the step's result
    mounts = {m.name: m.mount_path for m in base.volume_mounts}
    assert mounts == {
        "dshm": "/dev/shm",
        "store": "/data/tunerflow",
        "cache": "/cache",
        "xcom": "/airflow/xcom",
    }
    assert operator.do_xcom_push and [c.name for c in sidecars] == ["airflow-xcom-sidecar"]
    volumes = {v.name: v for v in spec.volumes}
    assert volumes["dshm"].empty_dir.medium == "Memory" and volumes["dshm"].empty_dir.size_limit == "16Gi"
    assert volumes["store"].persistent_volume_claim.claim_name == "tunerflow-store"
    assert volumes["cache"].persistent_volume_claim.claim_name == "hf-cache"
    # non-root, unprivileged
    assert spec.security_context.run_as_non_root and spec.security_context.run_as_user == 1000
    assert spec.security_context.seccomp_profile.type == "RuntimeDefault"
    assert base.security_context.allow_privilege_escalation is False
    assert base.security_context.capabilities.drop == ["ALL"]
    # identity, and the Kueue queue the pod is admitted through
    labels = pod.metadata.labels
    assert labels["kueue.x-k8s.io/queue-name"] == "gpu-queue"
    assert labels["app.kubernetes.io/name"] == "tunerflow"
    assert labels["app.kubernetes.io/component"] == step.replace("_", "-")
    assert spec.service_account_name == "tunerflow-trainer"
    assert [s.name for s in spec.image_pull_secrets] == ["regcred"]


def test_mapped_pods_get_readable_map_indexes(k8s_dag):
    env = k8s_dag.get_template_env()
    expected = {
        "prepare_dataset": "tuna",
        "train": "tuna--tiny--a",
        "evaluate": "tuna--tiny--a",
        "score_base": "tuna--tiny--base",
    }
    for task_id, label in expected.items():
        template = k8s_dag.get_task(task_id).map_index_template
        with _concrete(k8s_dag, task_id) as (task, _):
            assert env.from_string(template).render(task=task) == label, task_id


def test_the_kubernetes_dag_serializes_for_the_scheduler(k8s_dag):
    from airflow.serialization.serialized_objects import DagSerialization

    restored = DagSerialization.from_dict(DagSerialization.to_dict(k8s_dag))
    assert set(restored.task_ids) == set(k8s_dag.task_ids)
    assert restored.get_task("train").partial_kwargs["pool"] == "tunerflow_gpu"
    # a preempted pod's training resumes from its last committed checkpoint on the retry
    assert restored.get_task("train").partial_kwargs["retries"] == 2


def test_parsing_the_kubernetes_dag_does_not_import_the_kubernetes_provider(tmp_path):
    """The provider and the kubernetes clients cost ~0.6 s to import: the DAG processor must not pay it
    on every parse, only the worker that runs a pod."""
    probe = (
        "import importlib.util, json, sys\n"
        f"spec = importlib.util.spec_from_file_location('dag', {str(DAG_FILE)!r})\n"
        "module = importlib.util.module_from_spec(spec)\n"
        "spec.loader.exec_module(module)\n"
        "assert module.dag.get_task('train').partial_kwargs['pool'] == 'tunerflow_gpu'\n"
        "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in "
        "('kubernetes', 'kubernetes_asyncio', 'slugify')"
        " or m.startswith('airflow.providers.cncf.kubernetes.operators'))))\n"
    )
    env = {**os.environ, "TUNERFLOW_BACKEND": "kubernetes"}
    env.pop("TUNERFLOW_K8S_CONFIG", None)
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, cwd=REPO, env=env, check=True
    )
    assert json.loads(done.stdout.strip().splitlines()[-1]) == []


def test_the_shipped_settings_give_a_working_dag(monkeypatch):
    monkeypatch.delenv("TUNERFLOW_K8S_CONFIG", raising=False)
    dag = _load_dag(monkeypatch, "kubernetes")
    _, _, pod = _render(dag, "train")
    assert pod.spec.containers[0].image == "ghcr.io/tunerflow/trainer:0.1.0"
    assert "kueue.x-k8s.io/queue-name" not in pod.metadata.labels
    assert not pod.spec.containers[0].env_from


def test_bad_settings_fail_the_parse_naming_the_field(monkeypatch, tmp_path):
    from tasks.backends.kubernetes_settings import SettingsError

    config = tmp_path / "kubernetes.yaml"
    config.write_text("resources:\n  train:\n    gpus: many\n")
    with pytest.raises(SettingsError, match=r"resources\.train\.gpus"):
        _load_dag(monkeypatch, "kubernetes", str(config))


def _fake_pod(calls: list):
    """Stands in for KubernetesPodOperator.execute: records the pod's argv and does what the step would
    (commit a result under the spec's output), without a cluster."""
    from tasks.storage import store

    def execute(self, context):
        argv = list(self.arguments)
        step = argv[2].removeprefix("tasks.")
        spec = store.read_json(argv[-1])
        calls.append((self.task_id, context["ti"].map_index, argv))
        if step == "prepare_dataset":
            # The shape of a real prepare result (tasks.data.preparation).
            return {
                "name": spec["dataset"]["name"],
                "version": "fake",
                "uri": f"{spec['store_root']}/datasets/fake",
                "kind": "chat",
                "counts": {"train": 8, "validation": 1, "test": 1},
            }
        result = {
            "train": {
                "adapter_uri": store.join(spec["output"], "adapter"),
                "model_uri": None,
                "eval_loss": 1.0,
            },
            "evaluate": {"metrics": {"exact_match": 0.5, "rouge_l": 0.5 if "--a" in argv[-1] else 0.4}},
        }.get(step, {})
        store.ensure_dir(spec["output"])
        store.commit(spec["output"], result)
        return result

    return execute


@pytest.mark.slow
def test_a_run_with_pods_stubbed_resolves_argv_labels_and_skips_at_run_time(
    k8s_dag, airflow_db, store_root, monkeypatch
):
    """dag.test with every pod replaced by a stub (~20 s: a real scheduler loop): the argv lists resolve
    through XComArg.map and select_best's XCom at run time, map indexes render from the pod argv, a
    disabled export is skipped without a pod, and the run selects, promotes and reports."""
    from airflow.providers.cncf.kubernetes.operators.pod import KubernetesPodOperator

    calls: list = []
    monkeypatch.setattr(KubernetesPodOperator, "execute", _fake_pod(calls))
    conf = {
        "name": "k8s-exp",
        "datasets": [{"name": "tuna", "uri": "builtin:tuna_identity", "split": "80,10,10"}],
        "models": [{"name": "smollm2-135m-instruct"}],
        "hparams": [{"name": "a", "preset": "lora-fast"}, {"name": "b", "preset": "lora-fast"}],
        "export": {"enabled": False},
        "promotion": {"enabled": False},
    }
    run = k8s_dag.test(run_conf=conf)
    tis = {(ti.task_id, ti.map_index): ti for ti in run.get_task_instances()}
    states = {key: str(ti.state) for key, ti in tis.items()}
    labels = {key: ti.rendered_map_index for key, ti in tis.items() if key[1] >= 0}
    job = "tuna--smollm2-135m-instruct"
    assert labels == {
        ("prepare_dataset", 0): "tuna",
        ("train", 0): f"{job}--a",
        ("train", 1): f"{job}--b",
        ("evaluate", 0): f"{job}--a",
        ("evaluate", 1): f"{job}--b",
        ("score_base", 0): f"{job}--base",
    }
    assert states[("export", -1)] == "skipped" and states[("check_export", -1)] == "skipped"
    # promotion is off: no champion to score, no pod for it
    assert states[("plan_champion", -1)] == "skipped" and states[("score_champion", -1)] == "skipped"
    assert states[("publish_promotion", -1)] == "skipped"  # nothing promoted, no Asset event
    # no search: the later rounds skip whole; no merge section; promotion off: no approval to ask for
    skipped = {task_id for (task_id, _), state in states.items() if state == "skipped"}
    rounds = {task_id for task_id, _ in states if task_id.startswith("round_")}
    assert skipped - rounds == {
        "export",
        "check_export",
        "plan_champion",
        "score_champion",
        "publish_promotion",
        "merge",
        "score_merge",
        "approve_promotion",
        "track_mlflow",  # no MLflow connection
    }, " ".join(sorted(skipped - rounds))
    assert all(state in ("success", "skipped") for state in states.values()), states
    # a pod per mapped task instance and none for the skipped export, each running the local command
    started = sorted((task_id, index) for task_id, index, _ in calls)
    assert started == [
        ("evaluate", 0),
        ("evaluate", 1),
        ("prepare_dataset", 0),
        ("score_base", 0),
        ("train", 0),
        ("train", 1),
    ]
    for task_id, _, argv in calls:
        assert argv[:4] == ["python", "-m", f"tasks.{HEAVY[task_id]}", "--job"] and argv[4].endswith(".json")
    selection = tis[("select_best", -1)].xcom_pull(task_ids="select_best")
    assert selection["winner"]["label"] == "tuna|smollm2-135m-instruct|a"
    assert selection["export_argv"][2] == "tasks.export"
