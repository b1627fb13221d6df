"""Trainings over several nodes on the kubernetes backend: a Kubeflow Trainer v2 `TrainJob`
(trainer.kubeflow.org/v1alpha1) on the `torch-distributed` runtime, submitted by the train task and
waited on in the triggerer (tasks.backends.trainjob_trigger), so no worker slot is held meanwhile.

Every node runs the very command a pod runs, `python -m tasks.train --job <spec uri>`; the runtime sets
torchrun's PET_* variables and the step relaunches itself under torchrun over the nodes
(tasks.runtime.launch). Rank 0 commits checkpoints and the result to the store as on one node, so the
task reads the committed result when the TrainJob completes, and a retry, which deletes the previous
try's TrainJob of the same name and submits it again, resumes from the newest committed checkpoint.

The manifest carries the pod policy of include/configs/kubernetes.yaml (image, resources per node, the
service account, volumes, node selectors, tolerations, security context) as runtime patches of the
`node` job; credentials only as Secret key references (`train_job.secret_env`). Names and labels derive
from the experiment, run and job, never from the try number.
"""

from __future__ import annotations

import hashlib
import logging
import re
import time
from typing import Any

from tasks.backends.kubernetes_settings import KUEUE_QUEUE_LABEL, KubernetesSettings
from tasks.storage import store

log = logging.getLogger("tunerflow.trainjob")

GROUP, VERSION, PLURAL, KIND = "trainer.kubeflow.org", "v1alpha1", "trainjobs", "TrainJob"
# The runtime's job and container that run the trainer on every node.
NODE = "node"
PATCH_MANAGER = "tunerflow.io/airflow"
# Labels on the pods: the JobSet Kubeflow Trainer creates has the TrainJob's name, and node 0 is
# completion index 0 of the `node` job.
TRAINJOB_LABEL = "jobset.sigs.k8s.io/jobset-name"
NODE0_SELECTOR = "jobset.sigs.k8s.io/replicatedjob-name=node,batch.kubernetes.io/job-completion-index=0"
# A TrainJob name is an RFC 1035 label; JobSet builds pod hostnames from it (`<name>-node-0-0`), so it
# stays well under 63 characters.
NAME_LENGTH = 40
_LABEL_VALUE_CHARS = re.compile(r"[^A-Za-z0-9_.-]+")


class TrainJobError(RuntimeError):
    """The TrainJob could not be submitted or replaced (the message says why)."""


# --- names and labels ----------------------------------------------------------------------------------


def job_parts(spec_uri: str) -> dict[str, str]:
    """experiment, run and job of a train spec `.../experiments/<e>/runs/<r>/jobs/<j>/train.json`."""
    parts = spec_uri.rstrip("/").split("/")
    found = {"experiment": "", "run": "", "job": parts[-2] if len(parts) > 1 else spec_uri}
    for key, marker in (("experiment", "experiments"), ("run", "runs")):
        if marker in parts[:-1]:
            found[key] = parts[parts.index(marker) + 1]
    return found


def train_job_name(spec_uri: str) -> str:
    """`tf-<job>-<hash of the spec uri>`: the same for every try of one job, distinct across runs."""
    job = re.sub(r"[^a-z0-9]+", "-", job_parts(spec_uri)["job"].lower()).strip("-")
    digest = hashlib.sha256(spec_uri.encode()).hexdigest()[:10]
    head = f"tf-{job}"[: NAME_LENGTH - len(digest) - 1].rstrip("-")
    return f"{head}-{digest}"


def label_value(text: str) -> str:
    """Free text as a Kubernetes label value (63 characters, alphanumeric at both ends)."""
    return _LABEL_VALUE_CHARS.sub("-", text)[:63].strip("-_.")


def train_job_labels(spec_uri: str, settings: KubernetesSettings) -> dict[str, str]:
    """What finds and cleans up a run's TrainJobs (`kubectl delete trainjobs -l tunerflow.io/run=<run>`),
    and the Kueue queue that admits them."""
    parts = job_parts(spec_uri)
    labels = {
        "app.kubernetes.io/name": "tunerflow",
        "app.kubernetes.io/component": "train",
        "app.kubernetes.io/managed-by": "tunerflow",
        "tunerflow.io/experiment": label_value(parts["experiment"]),
        "tunerflow.io/run": label_value(parts["run"]),
        "tunerflow.io/job": label_value(parts["job"]),
        **settings.labels,
    }
    if settings.kueue_queue_name:
        labels[KUEUE_QUEUE_LABEL] = settings.kueue_queue_name
    return {key: value for key, value in labels.items() if value}


# --- the manifest -------------------------------------------------------------------------------------


def _resources_per_node(settings: KubernetesSettings, gpus: int) -> dict[str, Any]:
    wanted = settings.step_resources("train")
    requests = {"cpu": wanted.cpu_request, "memory": wanted.memory_request}
    limits = {"cpu": wanted.cpu_limit, "memory": wanted.memory_limit, settings.gpu_resource_name: str(gpus)}
    return {
        "requests": {key: value for key, value in requests.items() if value is not None},
        "limits": {key: value for key, value in limits.items() if value is not None},
    }


def _env(settings: KubernetesSettings) -> list[dict[str, Any]]:
    plain = [{"name": name, "value": value} for name, value in settings.env.items()]
    secret = [
        {"name": item.name, "valueFrom": {"secretKeyRef": {"name": item.secret, "key": item.key}}}
        for item in settings.train_job.secret_env
    ]
    return plain + secret


def _volumes(settings: KubernetesSettings) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The step pods' volumes (tasks.backends.kubernetes) as manifest JSON: store, cache, /dev/shm."""
    volumes, mounts = [], []
    for name, claim in (("store", settings.store_volume), ("cache", settings.cache_volume)):
        if claim is None:
            continue
        source = {"claimName": claim.claim_name, "readOnly": claim.read_only}
        volumes.append({"name": name, "persistentVolumeClaim": source})
        mount = {"name": name, "mountPath": claim.mount_path, "readOnly": claim.read_only}
        mounts.append({**mount, **({"subPath": claim.sub_path} if claim.sub_path else {})})
    if settings.shm_size:
        volumes.append({"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": settings.shm_size}})
        mounts.append({"name": "dshm", "mountPath": "/dev/shm"})
    return volumes, mounts


def _pod_patch(settings: KubernetesSettings) -> dict[str, Any]:
    """The step pods' policy (tasks.backends.kubernetes.pod_operator_kwargs for a GPU step), as a
    patch of the runtime's `node` pods."""
    volumes, mounts = _volumes(settings)
    tolerations = [*settings.tolerations, *settings.gpu_tolerations]
    patch = {
        "serviceAccountName": settings.service_account_name,
        "volumes": volumes,
        "containers": [
            {
                "name": NODE,
                "volumeMounts": mounts,
                "securityContext": {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}},
            }
        ],
        "imagePullSecrets": [{"name": name} for name in settings.image_pull_secrets],
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": settings.run_as_user,
            "fsGroup": settings.fs_group,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "nodeSelector": {**settings.node_selector, **settings.gpu_node_selector},
        "affinity": settings.affinity,
        "tolerations": [t.model_dump(mode="json", by_alias=True, exclude_none=True) for t in tolerations],
    }
    patch["securityContext"] = {k: v for k, v in patch["securityContext"].items() if v is not None}
    return {key: value for key, value in patch.items() if value}


def train_job_manifest(
    argv: list[str], settings: KubernetesSettings, nodes: int, processes_per_node: int | None
) -> dict[str, Any]:
    """The TrainJob that runs the train step `argv` on `nodes` nodes of `processes_per_node` GPUs each
    (default: the train step's gpus in kubernetes.yaml)."""
    spec_uri = argv[-1]
    per_node = processes_per_node or max(settings.step_resources("train").gpus, 1)
    labels = train_job_labels(spec_uri, settings)
    spec: dict[str, Any] = {
        "runtimeRef": {
            "name": settings.train_job.runtime_name,
            "apiGroup": GROUP,
            "kind": settings.train_job.runtime_kind,
        },
        "trainer": {
            "image": settings.image,
            "command": list(argv),
            "env": _env(settings),
            "numNodes": nodes,
            "numProcPerNode": per_node,
            "resourcesPerNode": _resources_per_node(settings, per_node),
        },
        "runtimePatches": [
            {
                "manager": PATCH_MANAGER,
                "trainingRuntimeSpec": {
                    "template": {
                        "spec": {
                            "replicatedJobs": [
                                {
                                    "name": NODE,
                                    "template": {
                                        "spec": {
                                            "template": {
                                                "metadata": {
                                                    "labels": labels,
                                                    "annotations": dict(settings.annotations),
                                                },
                                                "spec": _pod_patch(settings),
                                            }
                                        }
                                    },
                                }
                            ]
                        }
                    }
                },
            }
        ],
    }
    if settings.kueue_queue_name:
        spec["suspend"] = True  # Kueue admits it (unsuspends) once the queue has the quota
    if settings.active_deadline_seconds:
        spec["activeDeadlineSeconds"] = settings.active_deadline_seconds
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": KIND,
        "metadata": {
            "name": train_job_name(spec_uri),
            "namespace": settings.namespace,
            "labels": labels,
            "annotations": {**settings.annotations, "tunerflow.io/spec": spec_uri},
        },
        "spec": spec,
    }


def multi_node(spec_uri: str) -> tuple[int, int | None] | None:
    """(nodes, processes_per_node) of a train spec asking for several nodes, else None."""
    hparams = store.read_json(spec_uri).get("hparams", {})
    nodes = int(hparams.get("nodes") or 1)
    return (nodes, hparams.get("processes_per_node")) if nodes > 1 else None


# --- the API ------------------------------------------------------------------------------------------


def _status(error: Exception) -> int | None:
    return getattr(error, "status", None)


class TrainJobApi:
    """The few calls made on the cluster, on a CustomObjectsApi and a CoreV1Api (the kubernetes
    client's, or stand-ins in the tests)."""

    def __init__(self, custom: Any, core: Any, namespace: str) -> None:
        self.custom, self.core, self.namespace = custom, core, namespace

    def get(self, name: str) -> dict[str, Any] | None:
        try:
            return self.custom.get_namespaced_custom_object(GROUP, VERSION, self.namespace, PLURAL, name)
        except Exception as error:
            if _status(error) == 404:
                return None
            raise

    def create(self, manifest: dict[str, Any]) -> None:
        self.custom.create_namespaced_custom_object(GROUP, VERSION, self.namespace, PLURAL, manifest)

    def delete(self, name: str) -> bool:
        """Delete the TrainJob and, in the foreground, its JobSet and pods; False when there was none."""
        try:
            self.custom.delete_namespaced_custom_object(
                GROUP, VERSION, self.namespace, PLURAL, name, propagation_policy="Foreground"
            )
        except Exception as error:
            if _status(error) == 404:
                return False
            raise
        return True

    def node0_pod(self, name: str) -> str | None:
        """The newest pod of node 0, or None before it exists."""
        selector = f"{TRAINJOB_LABEL}={name},{NODE0_SELECTOR}"
        pods = self.core.list_namespaced_pod(self.namespace, label_selector=selector).items
        if not pods:
            return None
        newest = max(pods, key=lambda pod: str(pod.metadata.creation_timestamp or ""))
        return newest.metadata.name

    def log(self, pod: str, since_seconds: int | None, tail_lines: int | None) -> str:
        try:
            return self.core.read_namespaced_pod_log(
                pod,
                self.namespace,
                container=NODE,
                timestamps=True,
                since_seconds=since_seconds,
                tail_lines=tail_lines,
            )
        except Exception as error:
            if _status(error) in (400, 404):  # the container is not started yet, or the pod is gone
                return ""
            raise


def connect(conn_id: str, namespace: str) -> TrainJobApi:
    """The API through the Airflow connection the pods use (in-cluster config when it sets none)."""
    from airflow.providers.cncf.kubernetes.hooks.kubernetes import KubernetesHook  # where it runs: 0.6 s

    hook = KubernetesHook(conn_id=conn_id)
    return TrainJobApi(hook.custom_object_client, hook.core_v1_client, namespace)


def submit(api: TrainJobApi, manifest: dict[str, Any], delete_timeout_s: float, poll_s: float = 2.0) -> None:
    """Create the TrainJob, after deleting a previous try's of the same name and waiting until it is
    gone (its pods would otherwise still hold the GPUs and write checkpoints)."""
    name = manifest["metadata"]["name"]
    if api.delete(name):
        log.info("deleted the previous try's TrainJob %s; waiting until it is gone", name)
        deadline = time.monotonic() + delete_timeout_s
        while api.get(name) is not None:
            if time.monotonic() > deadline:
                raise TrainJobError(
                    f"TrainJob {name} of a previous try was not deleted within {delete_timeout_s:.0f}s; "
                    "delete it (kubectl delete trainjob) and clear the task"
                )
            time.sleep(poll_s)
    api.create(manifest)
    spec = manifest["spec"]["trainer"]
    log.info(
        "submitted TrainJob %s: %d node(s) x %d process(es), image %s",
        name,
        spec["numNodes"],
        spec["numProcPerNode"],
        spec["image"],
    )


def conditions(train_job: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The TrainJob's status conditions by type (Created, Suspended, Complete, Failed, ...)."""
    found = (train_job.get("status") or {}).get("conditions") or []
    return {item.get("type", ""): item for item in found}


def outcome(train_job: dict[str, Any] | None) -> tuple[str, str] | None:
    """('complete' | 'failed', message) once the TrainJob has finished, else None."""
    if train_job is None:
        return "failed", "the TrainJob was deleted before it finished"
    found = conditions(train_job)
    for kind, key in (("Failed", "failed"), ("Complete", "complete")):
        condition = found.get(kind)
        if condition and condition.get("status") == "True":
            reason = condition.get("reason") or kind
            return key, f"{reason}: {condition.get('message') or ''}".rstrip(": ")
    return None
