"""Settings of the kubernetes backend: the pydantic model of `include/configs/kubernetes.yaml` (or
`$TUNERFLOW_K8S_CONFIG`), its loading and its validation. `tasks.backends.kubernetes` turns them into pods.

Deployment settings live in a YAML file validated by `KubernetesSettings` when the DAG is parsed, so a bad
value is an import error naming the field. Airflow Variables are deliberately not read: a Variable read
when the DAG file is parsed goes to the metadata database on every parse.

Light: yaml and pydantic only; the DAG processor loads it on every parse of a kubernetes-backend DAG.

Before the first run, the Airflow pool that caps concurrent GPU jobs must exist, counting deferred tasks
(a deferrable KPO is deferred for as long as its pod runs):

    airflow pools set tunerflow_gpu 4 "GPU jobs" --include-deferred
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, model_validator

from tasks.config.catalog import config_dir

CONFIG_ENV = "TUNERFLOW_K8S_CONFIG"
KUEUE_QUEUE_LABEL = "kueue.x-k8s.io/queue-name"
STEPS = ("prepare_dataset", "train", "evaluate", "export", "check_export")

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


class SecretEnv(_Model):
    """One environment variable of a TrainJob's nodes read from a key of a Secret (secretKeyRef): a
    TrainJob's trainer takes `env` entries only, so env_from_secrets cannot reach its nodes."""

    name: str = Field(pattern=_ENV_NAME.pattern, description="environment variable, e.g. HF_TOKEN")
    secret: K8sName = Field(description="name of a Secret in the namespace")
    key: str = Field(pattern=r"^[-._a-zA-Z0-9]+$", description="the key of that Secret holding the value")


class TrainJobSettings(_Model):
    """How a training over several nodes (`hparams.nodes` above 1) becomes a Kubeflow Trainer TrainJob."""

    runtime_name: K8sName = Field(
        "torch-distributed", description="the training runtime the TrainJob names (runtimeRef)"
    )
    runtime_kind: Literal["ClusterTrainingRuntime", "TrainingRuntime"] = Field(
        "ClusterTrainingRuntime", description="ClusterTrainingRuntime, or a TrainingRuntime in the namespace"
    )
    secret_env: list[SecretEnv] = Field(
        default_factory=list,
        description="credentials of the nodes (store keys, HF_TOKEN) as Secret key references: the only way "
        "a secret reaches a TrainJob",
    )
    poll_interval_seconds: int = Field(
        30, gt=0, description="how often the triggerer reads the TrainJob's status and node 0's new log lines"
    )
    delete_timeout_seconds: int = Field(
        300, gt=0, description="how long a retry waits for the previous try's TrainJob to be deleted"
    )


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
    train_job: TrainJobSettings = Field(
        default_factory=TrainJobSettings,
        description="trainings over several nodes (hparams.nodes > 1): Kubeflow Trainer TrainJobs",
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
        secret_names = [item.name for item in self.train_job.secret_env]
        clashing = sorted(
            {n for n in secret_names if secret_names.count(n) > 1} | (set(secret_names) & set(self.env))
        )
        if clashing:
            raise ValueError(
                f"train_job.secret_env: {', '.join(clashing)} named twice (or also in env); "
                "name each variable once"
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
