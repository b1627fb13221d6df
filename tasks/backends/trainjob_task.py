"""The train task's side of a training over several nodes: submit the TrainJob and defer to its
trigger (tasks.backends.trainjob_trigger), then, when the trigger fires, return the committed result or
fail. `StepPodOperator` (tasks.backends.kubernetes) calls it for a train spec whose `hparams.nodes` is
above 1; a single-node train stays a pod.

A failed TrainJob fails the try retryably (the retry deletes it, submits it again and the step resumes
from the newest committed checkpoint), unless the step itself reported a failure on its inputs in
`error.json`, which a retry would only repeat; the local backend applies the same rule.
"""

from __future__ import annotations

import logging
from typing import Any

from airflow.sdk.exceptions import AirflowException, AirflowFailException

from tasks.backends import trainjob
from tasks.backends.kubernetes_settings import KubernetesSettings
from tasks.backends.local import INTERRUPTED
from tasks.storage import store

log = logging.getLogger("tunerflow.trainjob")

# The operator method the task resumes in once the trigger fires (StepPodOperator.resume_execution).
RESUME_METHOD = "train_job_finished"
DELETE_ON_SUCCESS = ("delete_pod", "delete_succeeded_pod")


def _output(spec_uri: str) -> str:
    return store.read_json(spec_uri)["output"]


def start(operator: Any, settings: KubernetesSettings, argv: list[str]) -> dict[str, Any] | None:
    """For a train spec over several nodes: its committed result if it has one, else submit the
    TrainJob and defer (raises TaskDeferred). None for a single-node spec, which runs as a pod."""
    # The trigger's module imports Airflow's triggers: loaded only for a multi-node train.
    from tasks.backends.trainjob_trigger import TrainJobTrigger

    spec_uri = argv[-1]
    plan = trainjob.multi_node(spec_uri)
    if plan is None:
        return None
    output = _output(spec_uri)
    committed = store.committed_result(output)
    if committed is not None:
        log.info("train: output already committed at %s; no TrainJob submitted", output)
        return committed
    # An error.json of an earlier try would be read as this try's if its TrainJob failed before the
    # step started (the step itself removes it when it starts).
    store.remove(store.join(output, "error.json"))
    manifest = trainjob.train_job_manifest(argv, settings, *plan)
    api = trainjob.connect(settings.kubernetes_conn_id, settings.namespace)
    trainjob.submit(api, manifest, settings.train_job.delete_timeout_seconds)
    name = manifest["metadata"]["name"]
    trigger = TrainJobTrigger(
        name, settings.namespace, settings.kubernetes_conn_id, settings.train_job.poll_interval_seconds
    )
    operator.defer(trigger=trigger, method_name=RESUME_METHOD, timeout=operator.execution_timeout)
    return None  # not reached: defer raises


def finished(settings: KubernetesSettings, argv: list[str], event: dict[str, Any]) -> dict[str, Any]:
    """The step's committed result once the trigger reports the TrainJob Complete; otherwise fail."""
    name, output = event["name"], _output(argv[-1])
    if event["status"] == "complete":
        result = store.committed_result(output)
        if result is None:
            raise AirflowException(
                f"TrainJob {name} completed but {output} holds no committed result; the retry submits it "
                "again and resumes from the newest checkpoint"
            )
        if settings.on_finish_action in DELETE_ON_SUCCESS:
            trainjob.connect(settings.kubernetes_conn_id, settings.namespace).delete(name)
        return result
    error_uri = store.join(output, "error.json")
    error = store.read_json(error_uri) if store.exists(error_uri) else None
    message = f"TrainJob {name} failed ({event.get('message') or 'no reason given'})"
    if error:
        message += f": {error.get('type')}: {error.get('message')}"
    if error and error.get("type") not in INTERRUPTED:
        raise AirflowFailException(message)
    raise AirflowException(f"{message}; a retry resubmits it and resumes from the newest checkpoint")
