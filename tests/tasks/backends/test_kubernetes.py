"""The kubernetes backend: the pod each heavy step becomes (build_pod_request_obj), and running it."""

from __future__ import annotations

import json
import subprocess
import sys
from types import SimpleNamespace

import pytest
import yaml

from tasks.backends import kubernetes as pods
from tasks.backends import kubernetes_settings as pod_settings
from tasks.backends import trainjob
from tasks.pipeline.plan import step_argv
from tests.conftest import REPO

SHIPPED = REPO / "include" / "configs" / "kubernetes.yaml"


def _write(tmp_path, data) -> str:
    path = tmp_path / "k8s.yaml"
    path.write_text(yaml.safe_dump(data))
    return str(path)


def _pod(step: str, settings, argv: list[str] | None = None):
    from airflow.providers.cncf.kubernetes.operators.pod import KubernetesPodOperator

    argv = argv or step_argv(step, f"s3://bucket/tf/experiments/e/runs/r/jobs/j1/{step}.json")
    operator = KubernetesPodOperator(task_id=step, arguments=argv, **pods.pod_operator_kwargs(step, settings))
    return operator, operator.build_pod_request_obj(dry_run=True)


# --- operator kwargs and pods --------------------------------------------------------------------


def test_gpu_steps_take_the_pool_one_slot_per_gpu_and_cpu_steps_do_not():
    settings = pod_settings.parse_settings({"resources": {"train": {"gpus": 2}}})
    assert pods.pool_kwargs("train", settings) == {"pool": "tunerflow_gpu", "pool_slots": 2}
    assert pods.pool_kwargs("evaluate", settings)["pool_slots"] == 1
    for step in ("prepare_dataset", "export", "check_export"):
        assert pods.pool_kwargs(step, settings) == {}
    with pytest.raises(ValueError, match="unknown step"):
        pods.pod_operator_kwargs("score_base", settings)
    with pytest.raises(ValueError, match="unknown step"):
        pods.single_step("score_base", "score_base", ["python"], settings)


def test_the_settings_travel_as_json_and_come_back_equal():
    """The task carries the settings as plain JSON (what a mapped task's partial kwargs serialize to);
    the worker rebuilds the same settings from it, aliases (tolerationSeconds) included."""
    settings = pod_settings.parse_settings(
        {
            "gpu_tolerations": [
                {
                    "key": "nvidia.com/gpu",
                    "operator": "Exists",
                    "effect": "NoExecute",
                    "tolerationSeconds": 60,
                }
            ],
            "cache_volume": {"claim_name": "hf-cache", "mount_path": "/cache"},
        }
    )
    task = pods.single_step("train", "train", ["python"], settings)
    assert json.loads(json.dumps(task.pod_settings)) == task.pod_settings
    assert pod_settings.parse_settings(task.pod_settings) == settings
    assert task.pool == "tunerflow_gpu" and task.pool_slots == 1


def test_a_train_pod_with_every_option():
    settings = pod_settings.parse_settings(
        {
            "namespace": "ml-jobs",
            "image": "registry.example.com/tunerflow/trainer@sha256:" + "a" * 64,
            "image_pull_secrets": ["regcred"],
            "service_account_name": "trainer",
            "resources": {"train": {"gpus": 4, "cpu_limit": "32"}},
            "node_selector": {"pool": "ml"},
            "gpu_node_selector": {"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3"},
            "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "ml", "effect": "NoSchedule"}],
            "affinity": {
                "nodeAffinity": {
                    "requiredDuringSchedulingIgnoredDuringExecution": {
                        "nodeSelectorTerms": [
                            {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["a"]}]}
                        ]
                    }
                }
            },
            "priority_class_name": "ml-batch",
            "labels": {"team": "ml-platform"},
            "annotations": {"cluster-autoscaler.kubernetes.io/safe-to-evict": "false"},
            "kueue_queue_name": "gpu-queue",
            "env": {"AWS_ENDPOINT_URL": "http://minio:9000", "HF_HUB_OFFLINE": "1"},
            "env_from_secrets": ["tunerflow-store", "hf-token"],
            "store_volume": {"claim_name": "tunerflow-store", "mount_path": "/data/tunerflow"},
            "cache_volume": {"claim_name": "hf-cache", "mount_path": "/cache", "read_only": True},
            "startup_timeout_seconds": 3600,
            "schedule_timeout_seconds": 7200,
            "active_deadline_seconds": 86400,
        }
    )
    argv = step_argv("train", "file:///data/tunerflow/experiments/e/runs/r/jobs/tuna--tiny--a/train.json")
    operator, pod = _pod("train", settings, argv)
    spec = pod.spec
    base = spec.containers[0]
    assert pod.metadata.namespace == "ml-jobs"
    assert base.image == settings.image and not base.command and base.args == argv
    assert base.resources.limits == {"cpu": "32", "memory": "64Gi", "nvidia.com/gpu": "4"}
    assert spec.node_selector == {"pool": "ml", "nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3"}
    assert [(t.key, t.effect) for t in spec.tolerations] == [
        ("dedicated", "NoSchedule"),
        ("nvidia.com/gpu", "NoSchedule"),
    ]
    terms = (
        spec.affinity.node_affinity.required_during_scheduling_ignored_during_execution.node_selector_terms
    )
    assert terms[0].match_expressions[0].values == ["a"]
    assert spec.priority_class_name == "ml-batch" and spec.service_account_name == "trainer"
    assert [s.name for s in spec.image_pull_secrets] == ["regcred"]
    labels = pod.metadata.labels
    assert labels["kueue.x-k8s.io/queue-name"] == "gpu-queue" and labels["team"] == "ml-platform"
    assert labels["app.kubernetes.io/component"] == "train"
    assert pod.metadata.annotations == {"cluster-autoscaler.kubernetes.io/safe-to-evict": "false"}
    assert {e.name: e.value for e in base.env} == {
        "AWS_ENDPOINT_URL": "http://minio:9000",
        "HF_HUB_OFFLINE": "1",
    }
    assert [(e.secret_ref.name, e.config_map_ref) for e in base.env_from] == [
        ("tunerflow-store", None),
        ("hf-token", None),
    ]
    mounts = {m.name: m for m in base.volume_mounts}
    assert mounts["store"].mount_path == "/data/tunerflow" and mounts["cache"].read_only
    volumes = {v.name: v for v in spec.volumes}
    assert volumes["store"].persistent_volume_claim.claim_name == "tunerflow-store"
    assert volumes["dshm"].empty_dir.medium == "Memory" and mounts["dshm"].mount_path == "/dev/shm"
    assert spec.active_deadline_seconds == 86400
    assert operator.startup_timeout_seconds == 3600 and operator.schedule_timeout_seconds == 7200


def test_cpu_step_pods_have_no_gpu_toleration_or_gpu_node_selector():
    settings = pod_settings.parse_settings({"gpu_node_selector": {"gpu": "h100"}, "shm_size": None})
    for step in ("prepare_dataset", "export", "check_export"):
        _, pod = _pod(step, settings)
        base = pod.spec.containers[0]
        assert "nvidia.com/gpu" not in (base.resources.limits or {})
        assert not pod.spec.tolerations and not pod.spec.node_selector
        assert "dshm" not in {v.name for v in pod.spec.volumes}


def test_the_module_and_its_settings_load_without_the_kubernetes_provider():
    probe = (
        "import json, sys\n"
        "from tasks.backends import kubernetes, kubernetes_settings\n"
        "kubernetes_settings.load_settings()\n"
        "print(json.dumps(sorted(m for m in sys.modules"
        " if m.split('.')[0] in ('kubernetes', 'kubernetes_asyncio')"
        " or m.startswith('airflow.providers.cncf.kubernetes.operators'))))\n"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=REPO, check=True)
    assert json.loads(done.stdout.strip().splitlines()[-1]) == []


def test_pods_run_as_the_non_root_trainer_user_without_privileges():
    _, pod = _pod("train", pod_settings.KubernetesSettings())
    assert pod.spec.security_context.run_as_non_root is True
    assert pod.spec.security_context.run_as_user == 1000 and pod.spec.security_context.fs_group == 1000
    base = pod.spec.containers[0].security_context
    assert base.allow_privilege_escalation is False and base.capabilities.drop == ["ALL"]
    with pytest.raises(pod_settings.SettingsError, match="run_as_user"):
        pod_settings.parse_settings({"run_as_user": 0})


# --- running: the task builds the KubernetesPodOperator and hands it execute and the resumption ---------


class _TI:
    dag_id, task_id, run_id, map_index, try_number = "finetune_experiment", "train", "manual__1", 0, 1
    start_date = None

    def __init__(self):
        self.pushed = {}

    def xcom_push(self, key, value):
        self.pushed[key] = value


def _context():
    ti = _TI()
    return {"ti": ti, "run_id": ti.run_id, "dag": SimpleNamespace(dag_id=ti.dag_id), "task_state_store": None}


def test_a_step_submits_its_pod_and_defers_to_the_trigger_with_the_policy(monkeypatch):
    """execute -> the KPO creates the pod (stubbed: no cluster) and defers: the trigger the triggerer
    would run watches that pod with the configured startup timeout and grace period."""
    from airflow.providers.cncf.kubernetes.hooks.kubernetes import KubernetesHook
    from airflow.providers.cncf.kubernetes.operators import pod as pod_module
    from airflow.providers.cncf.kubernetes.operators.pod import KubernetesPodOperator
    from airflow.providers.cncf.kubernetes.triggers.pod import KubernetesPodTrigger
    from airflow.providers.common.compat.sdk import AirflowNotFoundException
    from airflow.sdk.exceptions import TaskDeferred

    created = []

    def create(self, pod_request_obj, context):
        created.append(pod_request_obj)
        return pod_request_obj

    def no_connection(cls, conn_id):  # the lookup reads the metadata DB; here the connection is unset
        raise AirflowNotFoundException(conn_id)

    monkeypatch.setattr(KubernetesPodOperator, "get_or_create_pod", create)
    monkeypatch.setattr(pod_module.BaseHook, "get_connection", classmethod(no_connection))
    monkeypatch.setattr(KubernetesHook, "is_in_cluster", False)  # asking needs a kubeconfig
    monkeypatch.setattr(trainjob, "multi_node", lambda spec_uri: None)  # a one-node spec: a pod
    settings = pod_settings.parse_settings(
        {"startup_timeout_seconds": 2400, "termination_grace_period_seconds": 900}
    )
    argv = step_argv("train", "s3://bucket/tf/experiments/e/runs/r/jobs/j1/train.json")
    task = pods.single_step("train", "train", argv, settings)
    context = _context()
    with pytest.raises(TaskDeferred) as deferred:
        task.execute(context)
    assert deferred.value.method_name == "trigger_reentry"
    trigger = deferred.value.trigger
    assert isinstance(trigger, KubernetesPodTrigger)
    assert trigger.pod_name == created[0].metadata.name and trigger.pod_namespace == "tunerflow"
    assert trigger.startup_timeout == 2400 and trigger.termination_grace_period == 900
    assert created[0].spec.containers[0].args == argv
    assert context["ti"].pushed["pod_name"] == created[0].metadata.name


def test_resuming_after_the_trigger_fires_reaches_the_pod_operator(monkeypatch):
    """The task runner resumes a deferred task on a freshly parsed task object; the pod operator it
    builds gets the trigger's event and returns the step's XCom result."""
    from airflow.providers.cncf.kubernetes.operators.pod import KubernetesPodOperator
    from airflow.sdk.exceptions import TaskDeferralError

    seen = []

    def reentry(self, context, event):
        seen.append((self.task_id, self.namespace, self.termination_grace_period, event))
        return {"metrics": {"rouge_l": 0.8}}

    monkeypatch.setattr(KubernetesPodOperator, "trigger_reentry", reentry)
    task = pods.single_step("evaluate", "evaluate", ["python"], pod_settings.KubernetesSettings())
    event = {"status": "success", "name": "tunerflow-evaluate-x", "namespace": "tunerflow"}
    result = task.resume_execution("trigger_reentry", {"event": event}, _context())
    assert result == {"metrics": {"rouge_l": 0.8}}
    assert seen == [("evaluate", "tunerflow", 600, event)]
    with pytest.raises(TaskDeferralError, match="boom"):
        task.resume_execution("__fail__", {"error": "boom"}, _context())


def test_a_pods_result_goes_to_lineage_as_a_local_steps_does(monkeypatch):
    from airflow.providers.cncf.kubernetes.operators.pod import KubernetesPodOperator

    from tasks.lineage import emit

    reported = []
    monkeypatch.setattr(emit, "report_step", lambda step, argv, result: reported.append((step, argv, result)))
    monkeypatch.setattr(
        KubernetesPodOperator, "trigger_reentry", lambda self, context, event: {"metrics": {}}
    )
    argv = step_argv("evaluate", "s3://bucket/tf/experiments/e/runs/r/jobs/j1/evaluate.json")
    task = pods.single_step("evaluate", "evaluate", argv, pod_settings.KubernetesSettings())
    event = {"status": "success", "name": "tunerflow-evaluate-x", "namespace": "tunerflow"}
    assert task.resume_execution("trigger_reentry", {"event": event}, _context()) == {"metrics": {}}
    assert reported == [("evaluate", argv, {"metrics": {}})]


def test_killing_the_task_kills_its_pod(monkeypatch):
    from airflow.providers.cncf.kubernetes.operators.pod import KubernetesPodOperator

    killed = []
    monkeypatch.setattr(KubernetesPodOperator, "execute", lambda self, context: None)
    monkeypatch.setattr(KubernetesPodOperator, "on_kill", lambda self: killed.append(self.task_id))
    task = pods.single_step("export", "export", ["python"], pod_settings.KubernetesSettings())
    task.on_kill()  # nothing started yet: nothing to kill
    task.execute(_context())
    task.on_kill()
    assert killed == ["export"]
