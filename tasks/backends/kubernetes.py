"""The kubernetes backend: every heavy step runs as its own pod of the `trainer` image, submitted by
`KubernetesPodOperator` (KPO), deferrable, with GPU resources, and reports its JSON result through XCom.

The pod runs the very command the local backend runs in a subprocess, `python -m tasks.<step> --job
<spec uri>` (see `tasks.pipeline.plan.step_argv`). It is passed whole as the container's `args` and
`command` is left unset (`cmds=None`): the argv comes from XCom at run time with `python` as its
first word, and the trainer image defines no ENTRYPOINT of its own (the CUDA base image's entrypoint
script only prints a banner and `exec "$@"`), so the container runs exactly that argv.

The DAG holds `StepPodOperator`s, not KPOs: importing the cncf provider (the `kubernetes` and
`kubernetes_asyncio` clients, every API model, slugify) costs ~0.6 s, which would be paid on every parse
of the DAG file. `StepPodOperator` carries the validated settings as plain JSON and builds the KPO only
when the task runs, then hands it `execute` and the resumption after deferral (`resume_execution`),
exactly what Airflow does with a fresh task object after a deferral anyway.

Deployment settings live in a YAML file (`TUNERFLOW_K8S_CONFIG`, else `include/configs/kubernetes.yaml`)
validated by `KubernetesSettings`. Airflow Variables are deliberately not read: a Variable read when the
DAG file is parsed goes to the metadata database on every parse.

Before the first run, the Airflow pool that caps concurrent GPU jobs must exist, counting deferred tasks
(a deferrable KPO is deferred for as long as its pod runs):

    airflow pools set tunerflow_gpu 4 "GPU jobs" --include-deferred
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

import yaml
from airflow.sdk import BaseOperator
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, model_validator

if TYPE_CHECKING:
    from collections.abc import Sequence

    from airflow.providers.cncf.kubernetes.operators.pod import KubernetesPodOperator
    from kubernetes.client import models as k8s

CONFIG_ENV = "TUNERFLOW_K8S_CONFIG"
KUEUE_QUEUE_LABEL = "kueue.x-k8s.io/queue-name"
STEPS = ("prepare_dataset", "train", "evaluate", "export", "check_export")

# Readable map indexes for mapped pods. The last argv element is the spec URI:
# `.../datasets/<dataset>.json` for prepare_dataset, `.../jobs/<job_id>/<step>.json` for job steps.
DATASET_LABEL_TEMPLATE = "{{ task.arguments[-1].split('/')[-1][:-5] }}"
JOB_LABEL_TEMPLATE = "{{ task.arguments[-1].split('/')[-2] }}"
MAP_INDEX_TEMPLATES = {"prepare_dataset": DATASET_LABEL_TEMPLATE}

_QUANTITY = re.compile(r"^[0-9]+(\.[0-9]+)?(m|k|Ki|M|Mi|G|Gi|T|Ti|P|Pi|E|Ei)?$")
_DNS_SUBDOMAIN = r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$"
_DNS_LABEL = r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$"
_LABEL_KEY = re.compile(
    r"^([a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$"
)
_LABEL_VALUE = re.compile(r"^([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?$")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_CREDENTIAL_WORDS = (
    "SECRET",
    "TOKEN",
    "PASSWORD",
    "PASSWD",
    "CREDENTIAL",
    "PRIVATE_KEY",
    "API_KEY",
    "ACCESS_KEY",
)


def _quantity(value: Any) -> Any:
    """Accept YAML numbers (`cpu: 4`) as Kubernetes quantities; refuse what Kubernetes would refuse."""
    if isinstance(value, bool):
        raise ValueError("expected a Kubernetes quantity such as '4', '500m' or '16Gi'")
    if isinstance(value, int | float):
        value = str(value)
    if isinstance(value, str) and not _QUANTITY.match(value):
        raise ValueError(f"'{value}' is not a Kubernetes quantity (e.g. '4', '500m', '16Gi')")
    return value


Quantity = Annotated[str, BeforeValidator(_quantity)]
K8sName = Annotated[str, Field(pattern=_DNS_SUBDOMAIN)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class StepResources(_Model):
    """What one pod of a step asks for. Extended resources (GPUs) are set as limits only: Kubernetes sets
    the request equal to the limit."""

    gpus: int = Field(0, ge=0, le=16, description="GPU limit (`gpu_resource_name`, e.g. nvidia.com/gpu)")
    cpu_request: Quantity | None = Field(None, description="CPU request, e.g. '4' or '500m'")
    cpu_limit: Quantity | None = Field(
        None, description="CPU limit; unset by default so data loading is not throttled"
    )
    memory_request: Quantity | None = Field(None, description="memory request, e.g. '32Gi'")
    memory_limit: Quantity | None = Field(
        None, description="memory limit; /dev/shm (memory-backed) counts against it"
    )


STEP_DEFAULTS: dict[str, dict[str, Any]] = {
    "prepare_dataset": {"gpus": 0, "cpu_request": "2", "memory_request": "8Gi", "memory_limit": "8Gi"},
    "train": {"gpus": 1, "cpu_request": "8", "memory_request": "64Gi", "memory_limit": "64Gi"},
    "evaluate": {"gpus": 1, "cpu_request": "4", "memory_request": "32Gi", "memory_limit": "32Gi"},
    "export": {"gpus": 0, "cpu_request": "8", "memory_request": "64Gi", "memory_limit": "64Gi"},
    "check_export": {"gpus": 0, "cpu_request": "8", "memory_request": "32Gi", "memory_limit": "32Gi"},
}


def _step_field(step: str, description: str) -> Any:
    return Field(default_factory=lambda: StepResources(**STEP_DEFAULTS[step]), description=description)


class Resources(_Model):
    """Per-step resources. A step given in the YAML is merged over that step's defaults, so
    `train: {gpus: 2}` keeps train's CPU and memory defaults."""

    prepare_dataset: StepResources = _step_field(
        "prepare_dataset", "tokenizing and splitting a dataset: CPU only"
    )
    train: StepResources = _step_field("train", "one training job (LoRA/QLoRA/full fine-tuning)")
    evaluate: StepResources = _step_field(
        "evaluate",
        "scoring one job, a base model or the champion (`evaluate`, `score_base`, `score_champion`)",
    )
    export: StepResources = _step_field(
        "export", "merging the adapter and exporting ONNX FP32/INT8: CPU only"
    )
    check_export: StepResources = _step_field(
        "check_export", "parity, metric drop, latency and size checks of the exports (ONNX Runtime, CPU)"
    )

    @model_validator(mode="before")
    @classmethod
    def _merge_step_defaults(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        return {
            step: {**STEP_DEFAULTS[step], **value}
            if step in STEP_DEFAULTS and isinstance(value, dict)
            else value
            for step, value in data.items()
        }


class Toleration(_Model):
    """A pod toleration, written as in a Kubernetes manifest."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    key: str | None = Field(None, description="taint key; empty with operator Exists tolerates every taint")
    operator: Literal["Exists", "Equal"] = Field("Equal", description="Exists or Equal")
    value: str | None = Field(None, description="taint value (operator Equal)")
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] | None = Field(
        None, description="taint effect; empty matches every effect"
    )
    toleration_seconds: int | None = Field(
        None, alias="tolerationSeconds", ge=0, description="how long a NoExecute taint is tolerated"
    )


class VolumeClaim(_Model):
    """A PersistentVolumeClaim mounted into every step pod."""

    claim_name: K8sName = Field(description="name of an existing PersistentVolumeClaim in the namespace")
    mount_path: str = Field(pattern=r"^/", description="absolute mount path inside the pod")
    sub_path: str | None = Field(None, description="sub-directory of the volume to mount")
    read_only: bool = Field(False, description="mount read-only")


class KubernetesSettings(_Model):
    """How the kubernetes backend builds the pod of each heavy step."""

    namespace: str = Field("tunerflow", pattern=_DNS_LABEL, description="namespace the step pods run in")
    kubernetes_conn_id: str = Field(
        "kubernetes_default",
        description="Airflow connection to the cluster (in-cluster config if unset there)",
    )
    image: str = Field(
        "ghcr.io/tunerflow/trainer:0.1.0",
        min_length=1,
        description="the trainer image (images/trainer): CUDA + torch + `tasks`; pin a tag or digest",
    )
    image_pull_policy: Literal["Always", "IfNotPresent", "Never"] = Field(
        "IfNotPresent", description="IfNotPresent: a multi-GB image is pulled once per node"
    )
    image_pull_secrets: list[K8sName] = Field(
        default_factory=list, description="names of docker-registry Secrets for a private registry"
    )
    service_account_name: K8sName | None = Field(
        "tunerflow-trainer",
        description="service account of the step pods (e.g. bound to an IAM role for the artifact store)",
    )
    gpu_resource_name: str = Field(
        "nvidia.com/gpu", description="extended resource requested for GPUs (nvidia.com/gpu, amd.com/gpu)"
    )
    resources: Resources = Field(default_factory=Resources, description="requests and limits per step")
    node_selector: dict[str, str] = Field(
        default_factory=dict, description="node selector for every step pod"
    )
    gpu_node_selector: dict[str, str] = Field(
        default_factory=dict,
        description="extra node selector for pods that request GPUs, e.g. "
        "{nvidia.com/gpu.product: NVIDIA-H100-80GB-HBM3}",
    )
    tolerations: list[Toleration] = Field(default_factory=list, description="tolerations for every step pod")
    gpu_tolerations: list[Toleration] = Field(
        default_factory=lambda: [Toleration(key="nvidia.com/gpu", operator="Exists", effect="NoSchedule")],
        description="extra tolerations for pods that request GPUs (default: the nvidia.com/gpu NoSchedule "
        "taint)",
    )
    affinity: dict[str, Any] = Field(
        default_factory=dict,
        description="pod affinity as in a manifest (nodeAffinity, podAffinity, podAntiAffinity)",
    )
    priority_class_name: K8sName | None = Field(None, description="PriorityClass of the step pods")
    labels: dict[str, str] = Field(default_factory=dict, description="extra labels on every step pod")
    annotations: dict[str, str] = Field(
        default_factory=dict, description="extra annotations on every step pod"
    )
    kueue_queue_name: str | None = Field(
        None,
        pattern=_DNS_LABEL,
        description=f"Kueue LocalQueue: sets the `{KUEUE_QUEUE_LABEL}` label (Kueue pod integration); "
        "raise schedule_timeout_seconds to cover the time a pod waits in the queue",
    )
    env: dict[str, str] = Field(
        default_factory=dict,
        description="plain, non-secret environment (e.g. AWS_ENDPOINT_URL, HF_HUB_OFFLINE); "
        "names that look like credentials are refused: use env_from_secrets",
    )
    env_from_secrets: list[K8sName] = Field(
        default_factory=list,
        description="Secrets whose keys become environment variables (envFrom): the only way credentials "
        "(store keys, HF_TOKEN) reach a pod",
    )
    store_volume: VolumeClaim | None = Field(
        None,
        description="shared volume for a file:// artifact store: mount it at the store root's path, the "
        "same path the Airflow workers use (a ReadWriteMany claim)",
    )
    cache_volume: VolumeClaim | None = Field(
        None, description="volume for the model cache, e.g. mount_path /cache (the trainer image's HF_HOME)"
    )
    shm_size: Quantity | None = Field(
        "16Gi",
        description="size of /dev/shm (an emptyDir of medium Memory) for data loader workers and NCCL; "
        "unset for none",
    )
    run_as_user: int = Field(
        1000,
        ge=1,
        description="UID the step containers run as (the trainer image's `tunerflow` user); the pod also "
        "sets runAsNonRoot, drops every capability and forbids privilege escalation",
    )
    fs_group: int | None = Field(
        1000,
        ge=0,
        description="group given to mounted volumes (store, cache, the XCom emptyDir) so the non-root user "
        "can write them; unset to leave ownership to the volume",
    )
    startup_timeout_seconds: int = Field(
        1800, gt=0, description="how long a pod may take to start: pulling a multi-GB image takes minutes"
    )
    schedule_timeout_seconds: int | None = Field(
        None, gt=0, description="how long a pod may wait to be scheduled (default: startup_timeout_seconds)"
    )
    termination_grace_period_seconds: int = Field(
        600, ge=0, description="time between SIGTERM and SIGKILL, so training can write a checkpoint"
    )
    active_deadline_seconds: int | None = Field(
        None, gt=0, description="hard cap on one pod's run time (unset: none)"
    )
    pool: str = Field(
        "tunerflow_gpu",
        min_length=1,
        description="Airflow pool capping concurrent GPU pods; each GPU step takes one slot per GPU. It must "
        'exist and count deferred tasks: `airflow pools set tunerflow_gpu 4 "GPU jobs" --include-deferred`',
    )
    deferrable: bool = Field(True, description="wait for the pod in the triggerer, not in a worker slot")
    reattach_on_restart: bool = Field(
        True,
        description="a retried or restarted task re-attaches to its running pod instead of starting "
        "another (KPO `durable` on Airflow 3.3+)",
    )
    get_logs: bool = Field(True, description="stream the step's log into the Airflow task log")
    on_finish_action: Literal["delete_pod", "delete_succeeded_pod", "delete_active_pod", "keep_pod"] = Field(
        "delete_succeeded_pod", description="what happens to a finished pod: failed pods are kept to inspect"
    )

    @model_validator(mode="after")
    def _check(self) -> KubernetesSettings:
        for field in ("labels", "annotations", "node_selector", "gpu_node_selector"):
            for key in getattr(self, field):
                if not _LABEL_KEY.match(key):
                    raise ValueError(f"{field}: '{key}' is not a valid Kubernetes label key")
        for field in ("labels", "node_selector", "gpu_node_selector"):
            for key, value in getattr(self, field).items():
                if not _LABEL_VALUE.match(value):
                    raise ValueError(f"{field}.{key}: '{value}' is not a valid Kubernetes label value")
        for name in self.env:
            if not _ENV_NAME.match(name):
                raise ValueError(f"env: '{name}' is not a valid environment variable name")
            # an Airflow connection in the environment carries its login and password
            credential = name.upper().startswith("AIRFLOW_CONN_")
            if credential or any(word in name.upper() for word in _CREDENTIAL_WORDS):
                raise ValueError(
                    f"env.{name} looks like a credential: put it in a Secret and list the Secret in "
                    "env_from_secrets"
                )
        unknown = set(self.affinity) - {"nodeAffinity", "podAffinity", "podAntiAffinity"}
        if unknown:
            raise ValueError(f"affinity: unknown keys {sorted(unknown)}")
        return self

    def step_resources(self, step: str) -> StepResources:
        if step not in STEPS:
            raise ValueError(f"unknown step '{step}', expected one of {STEPS}")
        return getattr(self.resources, step)


class SettingsError(ValueError):
    """The kubernetes settings file is missing, not YAML, or has invalid values (named in the message)."""


def default_config_path() -> Path:
    from tasks.config.catalog import config_dir

    return config_dir() / "kubernetes.yaml"


def config_path() -> Path:
    return Path(os.environ.get(CONFIG_ENV) or default_config_path())


def _describe(error: ValidationError) -> str:
    lines = []
    for item in error.errors():
        where = ".".join(str(part) for part in item["loc"]) or "(top level)"
        lines.append(f"  {where}: {item['msg']}")
    return "\n".join(lines)


def parse_settings(data: Any, source: str = "kubernetes settings") -> KubernetesSettings:
    try:
        return KubernetesSettings.model_validate(data or {})
    except ValidationError as error:
        raise SettingsError(f"invalid kubernetes settings in {source}:\n{_describe(error)}") from None


def load_settings(path: str | Path | None = None) -> KubernetesSettings:
    """The validated settings from `path`, else $TUNERFLOW_K8S_CONFIG, else include/configs/kubernetes.yaml
    (under $TUNERFLOW_CONFIG_DIR when set)."""
    path = Path(path) if path else config_path()
    try:
        data = yaml.safe_load(path.read_text())
    except OSError as error:
        raise SettingsError(f"cannot read kubernetes settings {path}: {error}") from None
    except yaml.YAMLError as error:
        raise SettingsError(f"kubernetes settings {path} is not valid YAML: {error}") from None
    if data is not None and not isinstance(data, dict):
        raise SettingsError(f"kubernetes settings {path} must be a mapping, not {type(data).__name__}")
    return parse_settings(data, str(path))


# --- the operator ---------------------------------------------------------------------------------


def _resources(settings: KubernetesSettings, wanted: StepResources) -> k8s.V1ResourceRequirements:
    from kubernetes.client import models as k8s

    requests = {"cpu": wanted.cpu_request, "memory": wanted.memory_request}
    limits = {"cpu": wanted.cpu_limit, "memory": wanted.memory_limit}
    if wanted.gpus:
        limits[settings.gpu_resource_name] = str(wanted.gpus)
    return k8s.V1ResourceRequirements(
        requests={k: v for k, v in requests.items() if v is not None} or None,
        limits={k: v for k, v in limits.items() if v is not None} or None,
    )


def _volumes(settings: KubernetesSettings) -> tuple[list[k8s.V1Volume], list[k8s.V1VolumeMount]]:
    from kubernetes.client import models as k8s

    volumes, mounts = [], []
    for name, claim in (("store", settings.store_volume), ("cache", settings.cache_volume)):
        if claim is None:
            continue
        volumes.append(
            k8s.V1Volume(
                name=name,
                persistent_volume_claim=k8s.V1PersistentVolumeClaimVolumeSource(
                    claim_name=claim.claim_name, read_only=claim.read_only
                ),
            )
        )
        mounts.append(
            k8s.V1VolumeMount(
                name=name, mount_path=claim.mount_path, sub_path=claim.sub_path, read_only=claim.read_only
            )
        )
    if settings.shm_size:
        volumes.append(
            k8s.V1Volume(
                name="dshm",
                empty_dir=k8s.V1EmptyDirVolumeSource(medium="Memory", size_limit=settings.shm_size),
            )
        )
        mounts.append(k8s.V1VolumeMount(name="dshm", mount_path="/dev/shm"))
    return volumes, mounts


def pod_operator_kwargs(step: str, settings: KubernetesSettings) -> dict[str, Any]:
    """`KubernetesPodOperator` kwargs for one heavy step, everything but task_id and arguments.

    `cmds` stays None: `arguments` is the whole command, `python -m tasks.<step> --job <uri>`."""
    from kubernetes.client import models as k8s

    wanted = settings.step_resources(step)
    gpu = wanted.gpus > 0
    volumes, mounts = _volumes(settings)
    labels = {
        "app.kubernetes.io/name": "tunerflow",
        "app.kubernetes.io/component": step.replace("_", "-"),
        **settings.labels,
    }
    if settings.kueue_queue_name:
        labels[KUEUE_QUEUE_LABEL] = settings.kueue_queue_name
    tolerations = [*settings.tolerations, *(settings.gpu_tolerations if gpu else [])]
    return {
        "kubernetes_conn_id": settings.kubernetes_conn_id,
        "namespace": settings.namespace,
        "image": settings.image,
        "image_pull_policy": settings.image_pull_policy,
        "image_pull_secrets": [k8s.V1LocalObjectReference(name=name) for name in settings.image_pull_secrets],
        "service_account_name": settings.service_account_name,
        "cmds": None,
        "name": f"tunerflow-{step.replace('_', '-')}",
        "container_resources": _resources(settings, wanted),
        "node_selector": {**settings.node_selector, **(settings.gpu_node_selector if gpu else {})},
        "tolerations": [
            k8s.V1Toleration(
                key=t.key,
                operator=t.operator,
                value=t.value,
                effect=t.effect,
                toleration_seconds=t.toleration_seconds,
            )
            for t in tolerations
        ],
        "affinity": settings.affinity or None,
        "volumes": volumes,
        "volume_mounts": mounts,
        "env_vars": [k8s.V1EnvVar(name=name, value=value) for name, value in settings.env.items()],
        "env_from": [
            k8s.V1EnvFromSource(secret_ref=k8s.V1SecretEnvSource(name=name))
            for name in settings.env_from_secrets
        ],
        "priority_class_name": settings.priority_class_name,
        "security_context": k8s.V1PodSecurityContext(
            run_as_non_root=True,
            run_as_user=settings.run_as_user,
            fs_group=settings.fs_group,
            seccomp_profile=k8s.V1SeccompProfile(type="RuntimeDefault"),
        ),
        "container_security_context": k8s.V1SecurityContext(
            allow_privilege_escalation=False, capabilities=k8s.V1Capabilities(drop=["ALL"])
        ),
        "labels": labels,
        "annotations": dict(settings.annotations),
        "startup_timeout_seconds": settings.startup_timeout_seconds,
        "schedule_timeout_seconds": settings.schedule_timeout_seconds or settings.startup_timeout_seconds,
        "termination_grace_period": settings.termination_grace_period_seconds,
        "active_deadline_seconds": settings.active_deadline_seconds,
        "deferrable": settings.deferrable,
        # `reattach_on_restart` is deprecated on Airflow 3.3+ in favour of `durable` (same behaviour).
        "durable": settings.reattach_on_restart,
        "get_logs": settings.get_logs,
        "do_xcom_push": True,
        "on_finish_action": settings.on_finish_action,
    }


def pool_kwargs(step: str, settings: KubernetesSettings) -> dict[str, Any]:
    """What the scheduler itself must know about a step's task: GPU steps take the GPU pool, one slot per
    GPU, so the pool's size is the number of GPUs tunerflow may hold at once."""
    gpus = settings.step_resources(step).gpus
    return {"pool": settings.pool, "pool_slots": gpus} if gpus else {}


class StepPodOperator(BaseOperator):
    """One heavy step as a pod: a `KubernetesPodOperator` built from `pod_settings` when the task runs.

    `pod_settings` is the `KubernetesSettings` as JSON, so the mapped task's partial kwargs serialize
    plainly and the KPO (with its kubernetes client objects) is never built while the DAG is parsed."""

    template_fields: Sequence[str] = ("arguments",)
    ui_color = "#e0ecf8"

    def __init__(self, *, step: str, arguments: Any, pod_settings: dict[str, Any], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.step = step
        self.arguments = arguments
        self.pod_settings = pod_settings
        self._pod: KubernetesPodOperator | None = None

    def pod_operator(self) -> KubernetesPodOperator:
        """The KPO that runs this step, with the (rendered) arguments; `build_pod_request_obj()` on it
        gives the pod that would be submitted."""
        from airflow.providers.cncf.kubernetes.operators.pod import KubernetesPodOperator

        return KubernetesPodOperator(
            task_id=self.task_id,
            arguments=self.arguments,
            # read by the KPO to bound its deferral; the rest of the task's policy stays on this task
            execution_timeout=self.execution_timeout,
            **pod_operator_kwargs(self.step, parse_settings(self.pod_settings)),
        )

    def execute(self, context: Any) -> Any:
        from airflow.sdk.bases.operator import ExecutorSafeguard

        self._pod = self.pod_operator()
        # The task runner vouches for the task it runs; hand that to the KPO this task delegates to, or
        # its execute logs that it "cannot be called outside of the Task Runner".
        token = ExecutorSafeguard.tracker.set(self._pod)
        try:
            return self._pod.execute(context)
        finally:
            ExecutorSafeguard.tracker.reset(token)

    def resume_execution(self, next_method: str, next_kwargs: dict[str, Any] | None, context: Any) -> Any:
        # After a deferral the task runner calls this on a freshly parsed task, so the KPO it deferred
        # from is gone either way; a new one resumes from the trigger's event (pod name and namespace).
        self._pod = self.pod_operator()
        return self._pod.resume_execution(next_method, next_kwargs, context)

    def on_kill(self) -> None:
        if self._pod is not None:
            self._pod.on_kill()


def _operator_kwargs(step: str, settings: KubernetesSettings) -> dict[str, Any]:
    return {
        "step": step,
        "pod_settings": settings.model_dump(mode="json", by_alias=True),
        **pool_kwargs(step, settings),
    }


def mapped_step(task_id: str, step: str, argv_list: Any, settings: KubernetesSettings, **task_kwargs: Any):
    """One pod per argv in `argv_list` (an XComArg resolving to a list of argv lists)."""
    kwargs = {
        "map_index_template": MAP_INDEX_TEMPLATES.get(step, JOB_LABEL_TEMPLATE),
        **_operator_kwargs(step, settings),
        **task_kwargs,
    }
    return StepPodOperator.partial(task_id=task_id, **kwargs).expand(arguments=argv_list)


def single_step(task_id: str, step: str, argv: Any, settings: KubernetesSettings, **task_kwargs: Any):
    """One pod whose argv is `argv` (an XComArg resolving to one argv list; resolved when rendered)."""
    return StepPodOperator(task_id=task_id, arguments=argv, **_operator_kwargs(step, settings), **task_kwargs)


# --- what the DAG maps over (XComArg.map) and pre-execute checks --------------------------------------


def dataset_argv(dataset: dict[str, Any]) -> list[str]:
    return dataset["argv"]


def train_argv(job: dict[str, Any]) -> list[str]:
    return job["train_argv"]


def evaluate_argv(job: dict[str, Any]) -> list[str]:
    return job["evaluate_argv"]


def skip_if_training_failed(context: Any) -> None:
    """`pre_execute` of `evaluate`: skip (no pod) when the job's training left no committed output, as the
    local backend does; the leaderboard says why."""
    from airflow.sdk.exceptions import AirflowSkipException

    from tasks.storage import store

    spec_uri = context["task"].arguments[-1]
    train_output = store.read_json(spec_uri).get("train_output")
    if train_output and not store.is_committed(train_output):
        raise AirflowSkipException(f"{spec_uri}: training failed, nothing to score")


def skip_unless_export_enabled(context: Any) -> None:
    """`pre_execute` of `export`: skip (no pod) when the run's validated experiment has export disabled
    (read from experiment.json, as the local backend does: the raw Params may omit nested fields)."""
    from airflow.sdk.exceptions import AirflowSkipException

    from tasks.pipeline.plan import load_experiment, run_info
    from tasks.storage.store import default_root

    run = run_info(context["params"]["name"], context["run_id"], default_root())
    if not load_experiment(run["run_uri"])["export"]["enabled"]:
        raise AirflowSkipException("export.enabled is false")
