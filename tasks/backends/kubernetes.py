"""The kubernetes backend: every heavy step runs as its own pod of the `trainer` image, submitted by
`KubernetesPodOperator` (KPO), deferrable, with GPU resources, and reports its JSON result through XCom.
Its settings (the pod policy) are `tasks.backends.kubernetes_settings`.

The pod runs the very command the local backend runs in a subprocess, `python -m tasks.<step> --job
<spec uri>` (see `tasks.pipeline.plan.step_argv`). It is passed whole as the container's `args` and
`command` is left unset (`cmds=None`): the argv comes from XCom at run time with `python` as its
first word, and the trainer image defines no ENTRYPOINT of its own (the CUDA base image's entrypoint
script only prints a banner and `exec "$@"`), so the container runs exactly that argv.

A train spec whose `hparams.nodes` is above 1 is not a pod but a Kubeflow Trainer TrainJob running the
same command on every node (tasks.backends.trainjob, waited on by tasks.backends.trainjob_trigger).

The DAG holds `StepPodOperator`s, not KPOs: importing the cncf provider (the `kubernetes` and
`kubernetes_asyncio` clients, every API model, slugify) costs ~0.6 s, which would be paid on every parse
of the DAG file. `StepPodOperator` carries the validated settings as plain JSON and builds the KPO only
when the task runs, then hands it `execute` and the resumption after deferral (`resume_execution`),
exactly what Airflow does with a fresh task object after a deferral anyway.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator

from tasks.backends.kubernetes_settings import (
    KUEUE_QUEUE_LABEL,
    KubernetesSettings,
    StepResources,
    parse_settings,
)
from tasks.pipeline.operators import execute_delegate

if TYPE_CHECKING:
    from collections.abc import Sequence

    from airflow.providers.cncf.kubernetes.operators.pod import KubernetesPodOperator
    from airflow.sdk.definitions.xcom_arg import XComArg
    from kubernetes.client import models as k8s

# Readable map indexes for mapped pods. The last argv element is the spec URI:
# `.../datasets/<dataset>.json` for prepare_dataset, `.../jobs/<job_id>/<step>.json` for job steps.
DATASET_LABEL_TEMPLATE = "{{ task.arguments[-1].split('/')[-1][:-5] }}"
JOB_LABEL_TEMPLATE = "{{ task.arguments[-1].split('/')[-2] }}"
MAP_INDEX_TEMPLATES = {"prepare_dataset": DATASET_LABEL_TEMPLATE}
# The method a train task resumes in after a TrainJob's trigger fired (tasks.backends.trainjob_task).
TRAIN_JOB_RESUME = "train_job_finished"


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


# Steps that ask for another step's pod resources: a comparison generates with one model at a time, as
# evaluate does, so it gets evaluate's GPU, CPU and memory (and its pool slot); a merge holds the base, the
# result and one part's tensors on CPU, as the export's merge does.
RESOURCES_OF = {"compare_models": "evaluate", "merge": "export"}


def step_resources(step: str, settings: KubernetesSettings) -> StepResources:
    return settings.step_resources(RESOURCES_OF.get(step, step))


def pod_operator_kwargs(step: str, settings: KubernetesSettings) -> dict[str, Any]:
    """`KubernetesPodOperator` kwargs for one heavy step, everything but task_id and arguments.

    `cmds` stays None: `arguments` is the whole command, `python -m tasks.<step> --job <uri>`."""
    from kubernetes.client import models as k8s

    wanted = step_resources(step, settings)
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
    gpus = step_resources(step, settings).gpus
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
        if self.step == "train":
            # A training over several nodes is a Kubeflow Trainer TrainJob; its module (and Airflow's
            # triggers) load only when a train task runs.
            from tasks.backends import trainjob_task

            result = trainjob_task.start(self, parse_settings(self.pod_settings), list(self.arguments))
            if result is not None:
                return result
        self._pod = self.pod_operator()
        return self._reported(execute_delegate(self._pod, context))

    def resume_execution(self, next_method: str, next_kwargs: dict[str, Any] | None, context: Any) -> Any:
        if next_method == TRAIN_JOB_RESUME:
            # The TrainJob's trigger fired (see execute).
            from tasks.backends import trainjob_task

            settings = parse_settings(self.pod_settings)
            return trainjob_task.finished(settings, list(self.arguments), (next_kwargs or {})["event"])
        # After a deferral the task runner calls this on a freshly parsed task, so the KPO it deferred
        # from is gone either way; a new one resumes from the trigger's event (pod name and namespace).
        self._pod = self.pod_operator()
        return self._reported(self._pod.resume_execution(next_method, next_kwargs, context))

    def _reported(self, result: Any) -> Any:
        """The pod's result line, once its step's datasets went to OpenLineage (when it is on), as a local
        step's do."""
        if isinstance(result, dict):
            # Loaded once a pod ran: the task's OpenLineage datasets (nothing unless OpenLineage is on).
            from tasks.lineage.emit import report_step

            report_step(self.step, list(self.arguments), result)
        return result

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


class PodSteps:
    """Heavy tasks as pods (see `tasks.backends.heavy.HeavyTasks`, which says which tasks there are). Like
    a local @task, each method returns the task's output (an XComArg) for the next task to take.

    A skip rule becomes the task's `pre_execute` hook, so no pod (and no GPU) is started just to skip."""

    def __init__(self, settings: KubernetesSettings) -> None:
        self.settings = settings

    def mapped(
        self,
        task_id: str,
        step: str,
        entries: XComArg,
        argv: Callable[[dict[str, Any]], list[str]],
        skip: Callable[[Any], None] | None = None,
        **task_kwargs: Any,
    ) -> XComArg:
        """One pod per entry of `entries` (a light task's list), running the argv `argv` picks from it."""
        hooks = {"pre_execute": skip} if skip else {}
        return mapped_step(task_id, step, entries.map(argv), self.settings, **hooks, **task_kwargs).output

    def single(
        self, task_id: str, step: str, argv: XComArg, skip: Callable[[Any], None] | None = None, **task_kwargs
    ) -> XComArg:
        hooks = {"pre_execute": skip} if skip else {}
        return single_step(task_id, step, argv, self.settings, **hooks, **task_kwargs).output
