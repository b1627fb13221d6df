"""A training over several nodes on the kubernetes backend: the Kubeflow Trainer TrainJob it submits
(rendered and checked), and the wait in the triggerer, against a stubbed Kubernetes API (no cluster)."""

from __future__ import annotations

import asyncio
import json
import re
from types import SimpleNamespace

import pytest
from kubernetes.client.exceptions import ApiException

from tasks.backends import kubernetes as pods
from tasks.backends import kubernetes_settings as pod_settings
from tasks.backends import trainjob, trainjob_task
from tasks.backends.trainjob_trigger import NodeLog, TrainJobTrigger, sortable
from tasks.pipeline.plan import step_argv
from tasks.storage import store

SPEC = (
    "s3://bucket/tf/experiments/tuna/runs/manual__2026-12-03T10-00-00/jobs/tuna--smollm2--lr1e-3/train.json"
)
SETTINGS = {
    "image": "registry.example/tunerflow/trainer:1.2.3",
    "resources": {"train": {"gpus": 8, "cpu_request": "32", "memory_request": "256Gi"}},
    "kueue_queue_name": "gpu-queue",
    "labels": {"team": "llm"},
    "env": {"HF_HUB_OFFLINE": "1"},
    "env_from_secrets": ["tunerflow-store"],
    "image_pull_secrets": ["registry-creds"],
    "store_volume": {"claim_name": "tunerflow-store", "mount_path": "/data/tunerflow"},
    "gpu_node_selector": {"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3"},
    "train_job": {
        "secret_env": [
            {"name": "AWS_SECRET_ACCESS_KEY", "secret": "tunerflow-store", "key": "secret-key"},
            {"name": "HF_TOKEN", "secret": "hf", "key": "token"},
        ]
    },
}


def manifest(nodes: int = 2, per_node: int | None = 4, spec: str = SPEC, **settings) -> dict:
    parsed = pod_settings.parse_settings({**SETTINGS, **settings})
    return trainjob.train_job_manifest(step_argv("train", spec), parsed, nodes, per_node)


def node_pod_spec(rendered: dict) -> dict:
    (patch,) = rendered["spec"]["runtimePatches"]
    (node,) = patch["trainingRuntimeSpec"]["template"]["spec"]["replicatedJobs"]
    assert node["name"] == "node"
    return node["template"]["spec"]["template"]


# --- the manifest ---------------------------------------------------------------------------------------


def test_the_trainjob_runs_the_train_step_on_every_node_of_the_torch_runtime():
    rendered = manifest()
    assert rendered["apiVersion"] == "trainer.kubeflow.org/v1alpha1" and rendered["kind"] == "TrainJob"
    assert rendered["metadata"]["namespace"] == "tunerflow"
    assert rendered["spec"]["runtimeRef"] == {
        "name": "torch-distributed",
        "apiGroup": "trainer.kubeflow.org",
        "kind": "ClusterTrainingRuntime",
    }
    trainer = rendered["spec"]["trainer"]
    assert trainer["image"] == "registry.example/tunerflow/trainer:1.2.3"
    assert trainer["command"] == ["python", "-m", "tasks.train", "--job", SPEC]
    assert (trainer["numNodes"], trainer["numProcPerNode"]) == (2, 4)
    assert trainer["resourcesPerNode"] == {
        "requests": {"cpu": "32", "memory": "256Gi"},
        "limits": {"memory": "64Gi", "nvidia.com/gpu": "4"},
    }
    json.dumps(rendered)  # plain JSON, as the API takes it


def test_processes_per_node_default_to_the_train_steps_gpus():
    trainer = manifest(nodes=3, per_node=None)["spec"]["trainer"]
    assert (trainer["numNodes"], trainer["numProcPerNode"]) == (3, 8)
    assert trainer["resourcesPerNode"]["limits"]["nvidia.com/gpu"] == "8"


def test_secrets_reach_the_nodes_only_as_secret_references():
    env = manifest()["spec"]["trainer"]["env"]
    assert env == [
        {"name": "HF_HUB_OFFLINE", "value": "1"},
        {
            "name": "AWS_SECRET_ACCESS_KEY",
            "valueFrom": {"secretKeyRef": {"name": "tunerflow-store", "key": "secret-key"}},
        },
        {"name": "HF_TOKEN", "valueFrom": {"secretKeyRef": {"name": "hf", "key": "token"}}},
    ]
    with pytest.raises(pod_settings.SettingsError, match=r"train_job\.secret_env\.0\.name"):
        pod_settings.parse_settings(
            {"train_job": {"secret_env": [{"name": "A B", "secret": "s", "key": "k"}]}}
        )


def test_a_variable_named_twice_is_refused_in_the_settings():
    twice = {"secret_env": [{"name": "HF_TOKEN", "secret": "a", "key": "k"}] * 2}
    with pytest.raises(pod_settings.SettingsError, match="HF_TOKEN named twice"):
        pod_settings.parse_settings({"train_job": twice})
    clash = {
        "env": {"HF_HUB_OFFLINE": "1"},
        "train_job": {"secret_env": [{"name": "HF_HUB_OFFLINE", "secret": "a", "key": "k"}]},
    }
    with pytest.raises(pod_settings.SettingsError, match="HF_HUB_OFFLINE named twice"):
        pod_settings.parse_settings(clash)


def test_kueue_queues_it_suspended_and_labels_find_it_for_cleanup():
    rendered = manifest()
    labels = rendered["metadata"]["labels"]
    assert labels["kueue.x-k8s.io/queue-name"] == "gpu-queue" and rendered["spec"]["suspend"] is True
    assert labels["app.kubernetes.io/managed-by"] == "tunerflow" and labels["team"] == "llm"
    assert labels["tunerflow.io/experiment"] == "tuna"
    assert labels["tunerflow.io/run"] == "manual__2026-12-03T10-00-00"
    assert labels["tunerflow.io/job"] == "tuna--smollm2--lr1e-3"
    assert node_pod_spec(rendered)["metadata"]["labels"] == labels
    assert rendered["metadata"]["annotations"]["tunerflow.io/spec"] == SPEC
    unqueued = manifest(kueue_queue_name=None)
    assert (
        "suspend" not in unqueued["spec"]
        and "kueue.x-k8s.io/queue-name" not in unqueued["metadata"]["labels"]
    )


def test_the_name_is_derived_from_experiment_run_and_job_never_the_try():
    name = manifest()["metadata"]["name"]
    assert re.fullmatch(r"[a-z]([-a-z0-9]*[a-z0-9])?", name) and len(name) <= trainjob.NAME_LENGTH
    assert name.startswith("tf-tuna-smollm2-lr1e-3")
    assert manifest()["metadata"]["name"] == name  # a retry replaces the same TrainJob
    other_run = SPEC.replace("manual__2026-12-03T10-00-00", "manual__2026-12-04T08-00-00")
    assert manifest(spec=other_run)["metadata"]["name"] != name
    long_job = SPEC.replace("tuna--smollm2--lr1e-3", "x" * 200)
    assert len(manifest(spec=long_job)["metadata"]["name"]) <= trainjob.NAME_LENGTH


def test_the_nodes_get_the_step_pods_policy():
    pod = node_pod_spec(manifest())["spec"]
    assert pod["serviceAccountName"] == "tunerflow-trainer"
    assert {
        "name": "store",
        "persistentVolumeClaim": {"claimName": "tunerflow-store", "readOnly": False},
    } in pod["volumes"]
    (container,) = pod["containers"]
    assert container["name"] == "node"
    assert {"name": "dshm", "mountPath": "/dev/shm"} in container["volumeMounts"]
    assert container["securityContext"] == {
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
    }
    assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] == 1000
    assert pod["imagePullSecrets"] == [{"name": "registry-creds"}]
    assert pod["nodeSelector"] == {"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3"}
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in pod["tolerations"]


def test_the_shipped_settings_name_the_torch_runtime():
    settings = pod_settings.load_settings()
    assert settings.train_job.runtime_name == "torch-distributed" and settings.train_job.secret_env == []


# --- a stubbed Kubernetes API -------------------------------------------------------------------------


def not_found() -> ApiException:
    return ApiException(status=404, reason="Not Found")


class FakeCluster:
    """CustomObjectsApi and CoreV1Api stand-ins: TrainJobs move through `phases` (one per status read),
    node 0's pod appears once Running and its log grows one line per read."""

    def __init__(self, phases: list[list[dict]] | None = None, gone_after: int = 0):
        self.objects: dict[str, dict] = {}
        self.calls: list[tuple[str, str]] = []
        self.phases = phases or []
        self.reads = 0
        self.gone_after = gone_after  # reads a deleted TrainJob is still seen (foreground deletion)
        self.deleting: dict[str, int] = {}
        self.log_lines = [
            "2026-12-03T10:00:01.5Z launching 4 processes on each of 2 node(s)",
            "2026-12-03T10:00:02.25Z step 1 loss 2.31",
            "2026-12-03T10:00:02.250000001Z step 2 loss 2.02",
            "2026-12-03T10:00:03Z train: committed",
        ]
        self.shown = 0

    # CustomObjectsApi
    def create_namespaced_custom_object(self, group, version, namespace, plural, body):
        name = body["metadata"]["name"]
        if name in self.objects:
            raise ApiException(status=409, reason="AlreadyExists")
        self.calls.append(("create", name))
        self.objects[name] = {**body, "status": {}}
        self.reads = 0

    def get_namespaced_custom_object(self, group, version, namespace, plural, name):
        assert (group, version, plural) == ("trainer.kubeflow.org", "v1alpha1", "trainjobs")
        if name in self.deleting:
            self.deleting[name] -= 1
            if self.deleting[name] < 0:
                del self.deleting[name]
                raise not_found()
            return {"metadata": {"name": name}, "status": {}}
        if name not in self.objects:
            raise not_found()
        if self.phases:
            self.objects[name]["status"] = {"conditions": self.phases[min(self.reads, len(self.phases) - 1)]}
            self.reads += 1
        return self.objects[name]

    def delete_namespaced_custom_object(
        self, group, version, namespace, plural, name, propagation_policy=None
    ):
        if name not in self.objects:
            raise not_found()
        assert propagation_policy == "Foreground"
        self.calls.append(("delete", name))
        del self.objects[name]
        self.deleting[name] = self.gone_after

    # CoreV1Api
    def list_namespaced_pod(self, namespace, label_selector):
        labels = dict(item.split("=") for item in label_selector.split(","))
        assert labels["jobset.sigs.k8s.io/replicatedjob-name"] == "node"
        assert labels["batch.kubernetes.io/job-completion-index"] == "0"
        name = labels["jobset.sigs.k8s.io/jobset-name"]
        running = any(
            c["type"] != "Created" for c in self.objects.get(name, {}).get("status", {}).get("conditions", [])
        )
        started = (self.objects.get(name) and self.reads >= 2) or running
        meta = SimpleNamespace(name=f"{name}-node-0-0-x7k2p", creation_timestamp="2026-12-03T10:00:00Z")
        return SimpleNamespace(items=[SimpleNamespace(metadata=meta)] if started else [])

    def read_namespaced_pod_log(self, name, namespace, container, timestamps, since_seconds, tail_lines):
        assert container == "node" and timestamps is True
        self.shown = min(self.shown + 2, len(self.log_lines))
        return "\n".join(self.log_lines[: self.shown]) + "\n"  # every read repeats the earlier lines


def condition(kind: str, status: str = "True", reason: str = "", message: str = "") -> dict:
    return {"type": kind, "status": status, "reason": reason or kind, "message": message}


CREATED = [condition("Created", reason="JobSetCreated")]
RUNNING = [*CREATED, condition("Suspended", "False", "Resumed")]


@pytest.fixture
def cluster(monkeypatch):
    fake = FakeCluster()
    monkeypatch.setattr(
        trainjob, "connect", lambda conn_id, namespace: trainjob.TrainJobApi(fake, fake, namespace)
    )
    return fake


def run_trigger(name: str) -> dict:
    async def first_event():
        async for event in TrainJobTrigger(name, "tunerflow", "kubernetes_default", 0).run():
            return event.payload
        raise AssertionError("the trigger stopped without an event")

    return asyncio.run(first_event())


def submitted(cluster: FakeCluster, phases: list[list[dict]]) -> str:
    body = manifest()
    trainjob.submit(trainjob.TrainJobApi(cluster, cluster, "tunerflow"), body, delete_timeout_s=5, poll_s=0)
    cluster.phases = phases
    return body["metadata"]["name"]


def test_created_running_complete_succeeds_with_node_0s_log_in_the_task_log(cluster, capsys):
    """The trigger logs through Airflow's logging (structlog, which the triggerer writes into the task's
    log); here it prints to stdout."""
    name = submitted(cluster, [CREATED, RUNNING, RUNNING, RUNNING, [*RUNNING, condition("Complete")]])
    event = run_trigger(name)
    assert event == {"status": "complete", "name": name, "message": "Complete"}
    printed = capsys.readouterr().out
    logged = [
        line.split(" node 0] ", 1)[1].split(" [tasks.")[0]
        for line in printed.splitlines()
        if "node 0]" in line
    ]
    assert logged == [line.split(" ", 1)[1] for line in cluster.log_lines]  # every line once, in order
    assert "Suspended=False" in printed


def test_a_failed_trainjob_fires_failed_with_its_reason(cluster):
    name = submitted(
        cluster,
        [CREATED, [*CREATED, condition("Failed", reason="BackoffLimitExceeded", message="node 1")]],
    )
    assert run_trigger(name) == {
        "status": "failed",
        "name": name,
        "message": "BackoffLimitExceeded: node 1",
    }


def test_a_trainjob_deleted_under_the_trigger_fires_failed(cluster):
    assert run_trigger("tf-gone-0123456789")["status"] == "failed"


def test_the_trigger_serializes_to_its_class_and_arguments():
    path, kwargs = TrainJobTrigger("tf-x-1", "tunerflow", "k8s", 30).serialize()
    assert path == "tasks.backends.trainjob_trigger.TrainJobTrigger"
    assert TrainJobTrigger(**kwargs).serialize() == (path, kwargs)


def test_killing_the_deferred_task_deletes_its_trainjob(cluster):
    name = submitted(cluster, [CREATED])
    asyncio.run(TrainJobTrigger(name, "tunerflow", "kubernetes_default", 0).on_kill())
    assert cluster.calls[-1] == ("delete", name)


def test_kubelet_timestamps_compare_in_time_order():
    assert sortable("2026-12-03T10:00:02.25Z") < sortable("2026-12-03T10:00:02.250000001Z")
    assert sortable("2026-12-03T10:00:02Z") < sortable("2026-12-03T10:00:02.1Z")
    assert NodeLog().new_lines(trainjob.TrainJobApi(FakeCluster(), FakeCluster(), "ns"), "none") == []


# --- the train task: submit (a retry replaces the old TrainJob), defer, then the result --------------------


@pytest.fixture
def spec_uri(tmp_path) -> str:
    spec = tmp_path / "experiments" / "tuna" / "runs" / "r1" / "jobs" / "j1" / "train.json"
    output = spec.parent / "train"
    store.write_json(
        spec.as_uri(), {"output": output.as_uri(), "hparams": {"nodes": 2, "processes_per_node": 4}}
    )
    return spec.as_uri()


def train_task(spec: str):
    return pods.single_step("train", "train", step_argv("train", spec), pod_settings.parse_settings(SETTINGS))


def test_a_retry_deletes_the_previous_trainjob_resubmits_it_and_defers_to_the_trigger(cluster, spec_uri):
    from airflow.sdk.exceptions import TaskDeferred

    cluster.gone_after = 2  # foreground deletion: still there for two more reads
    task = train_task(spec_uri)
    with pytest.raises(TaskDeferred) as first:
        task.execute({})
    name = first.value.trigger.name
    assert cluster.calls == [("create", name)]
    assert first.value.method_name == pods.TRAIN_JOB_RESUME
    store.write_json(
        store.join(json.loads(store.local_path(spec_uri).read_text())["output"], "error.json"), {}
    )
    with pytest.raises(TaskDeferred) as retry:
        task.execute({})
    assert cluster.calls == [("create", name), ("delete", name), ("create", name)]
    trigger = retry.value.trigger
    assert isinstance(trigger, TrainJobTrigger) and (trigger.name, trigger.namespace) == (
        name,
        "tunerflow",
    )
    created = cluster.objects[name]
    assert (
        created["spec"]["trainer"]["numNodes"] == 2 and created["spec"]["trainer"]["command"][-1] == spec_uri
    )
    output = store.read_json(spec_uri)["output"]
    assert not store.exists(store.join(output, "error.json")), "an earlier try's error.json was left"


def test_when_the_trigger_reports_complete_the_task_returns_the_committed_result(cluster, spec_uri):
    task = train_task(spec_uri)
    output = store.read_json(spec_uri)["output"]
    store.local_dir(output)
    store.commit(output, {"job_id": "j1", "steps": 8})
    cluster.objects["tf-j1"] = {}
    event = {"status": "complete", "name": "tf-j1", "message": "Complete"}
    assert task.resume_execution(pods.TRAIN_JOB_RESUME, {"event": event}, {}) == {
        "job_id": "j1",
        "steps": 8,
    }
    assert cluster.calls == [("delete", "tf-j1")]  # delete_succeeded_pod: a finished TrainJob goes too
    # a committed output is not trained again: no TrainJob is submitted
    assert task.execute({}) == {"job_id": "j1", "steps": 8}
    assert ("create", "tf-j1") not in cluster.calls


def test_a_failed_trainjob_fails_the_try_retryably_unless_the_step_refused_its_inputs(cluster, spec_uri):
    from airflow.sdk.exceptions import AirflowException, AirflowFailException

    task = train_task(spec_uri)
    event = {
        "status": "failed",
        "name": "tf-j1",
        "message": "BackoffLimitExceeded: node 1 was evicted",
    }
    with pytest.raises(AirflowException, match="a retry resubmits it") as retryable:
        task.resume_execution(pods.TRAIN_JOB_RESUME, {"event": event}, {})
    assert not isinstance(retryable.value, AirflowFailException)
    output = store.read_json(spec_uri)["output"]
    store.write_json(store.join(output, "error.json"), {"type": "Preempted", "message": "checkpoint-20"})
    with pytest.raises(AirflowException) as preempted:
        task.resume_execution(pods.TRAIN_JOB_RESUME, {"event": event}, {})
    assert not isinstance(preempted.value, AirflowFailException) and "checkpoint-20" in str(preempted.value)
    store.write_json(store.join(output, "error.json"), {"type": "StepError", "message": "bad spec"})
    with pytest.raises(AirflowFailException, match="StepError: bad spec"):
        task.resume_execution(pods.TRAIN_JOB_RESUME, {"event": event}, {})


def test_a_single_node_train_spec_stays_a_pod(tmp_path, cluster):
    spec = tmp_path / "train.json"
    store.write_json(spec.as_uri(), {"output": (tmp_path / "out").as_uri(), "hparams": {"nodes": 1}})
    assert (
        trainjob_task.start(object(), pod_settings.KubernetesSettings(), step_argv("train", spec.as_uri()))
        is None
    )
    assert cluster.calls == []
