"""Operators a DAG holds in place of a provider's, building the real one only when the task runs.

Importing a provider operator at parse time can cost more than the rest of the DAG file: the standard
provider's `TriggerDagRunOperator` pulls in Airflow's ORM models (`airflow.models.dagrun`, about 0.45 s),
the cncf provider the kubernetes clients. The DAG processor parses every file again and again, so the
DAGs hold these light stand-ins, which carry plain arguments and delegate to the real operator inside
`execute` (`tasks.backends.kubernetes.StepPodOperator` does the same for pods).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import timedelta
from typing import Any

from airflow.sdk import BaseOperator
from airflow.sdk.bases.operator import ExecutorSafeguard
from airflow.sdk.exceptions import AirflowSkipException


def execute_delegate(operator: Any, context: Any) -> Any:
    """Run `operator.execute(context)` from inside this task's own execute.

    The task runner vouches only for the task it runs; hand that to the delegate, or its execute logs
    that it "cannot be called outside of the Task Runner"."""
    token = ExecutorSafeguard.tracker.set(operator)
    try:
        return operator.execute(context)
    finally:
        ExecutorSafeguard.tracker.reset(token)


class TriggerDagRunWhenRun(BaseOperator):
    """`TriggerDagRunOperator` with the same arguments, built when the task runs.

    In Airflow 3 the real operator raises an exception that the task runner turns into the trigger
    (and, with `wait_for_completion`, polls the run's state), so delegating keeps its behaviour: the
    `trigger_run_id` XCom, failing on a paused or failed run, skipping or failing on an existing run."""

    template_fields: Sequence[str] = ("trigger_run_id", "conf")
    ui_color = "#ffefeb"

    def __init__(
        self,
        *,
        trigger_dag_id: str,
        trigger_run_id: str | None = None,
        conf: Any = None,
        wait_for_completion: bool = False,
        poke_interval: int = 60,
        fail_when_dag_is_paused: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.trigger_dag_id = trigger_dag_id
        self.trigger_run_id = trigger_run_id
        self.conf = conf
        self.wait_for_completion = wait_for_completion
        self.poke_interval = poke_interval
        self.fail_when_dag_is_paused = fail_when_dag_is_paused

    def execute(self, context: Any) -> Any:
        # The provider's module imports Airflow's ORM models: built here, never at parse time.
        from airflow.providers.standard.operators.trigger_dagrun import TriggerDagRunOperator

        trigger = TriggerDagRunOperator(
            task_id=self.task_id,
            trigger_dag_id=self.trigger_dag_id,
            trigger_run_id=self.trigger_run_id,
            conf=self.conf,
            wait_for_completion=self.wait_for_completion,
            poke_interval=self.poke_interval,
            fail_when_dag_is_paused=self.fail_when_dag_is_paused,
        )
        return execute_delegate(trigger, context)


class ApprovalWhenRun(BaseOperator):
    """The standard provider's `ApprovalOperator` (Approve / Reject), built when the task runs from what
    `request(context)` says then: an object with `skip` (a reason: the task skips itself), `subject`,
    `body` (Markdown) and `timeout_hours`. The conf is read at run time, so the timeout can come from it.

    On Airflow 3.3 the delegate parks the task in AWAITING_INPUT; the answer through the UI or the REST API
    (or the scheduler applying the default, Reject, at the timeout) resumes it in this task's
    `execute_complete`, which hands the event to `on_response(context, event)` first and then to the
    provider: on Reject it skips the direct downstream tasks and returns no XCom.

    `request` may instead say the run's decision was already recorded (`answered`): the task then ends
    without asking. Airflow 3.3 can fail a task resumed within seconds of parking, when the scheduler
    drains the parked workload's exit after the resume and takes it for an external kill
    (apache/airflow#72716); give the task retries and the retry ends with the recorded answer, or asks
    again saying why when the failed try had not recorded one."""

    ui_color = "#fff3c4"

    def __init__(
        self,
        *,
        request: Callable[[Any], Any],
        on_response: Callable[[Any, dict[str, Any]], Any],
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.request = request
        self.on_response = on_response

    def _approval(self, subject: str, body: str | None = None, timeout: timedelta | None = None) -> Any:
        # The provider's module is imported here, never at parse time (see the module docstring).
        from airflow.providers.standard.operators.hitl import ApprovalOperator

        approval = ApprovalOperator(
            task_id=self.task_id,
            subject=subject,
            body=body,
            defaults=ApprovalOperator.REJECT,
            response_timeout=timeout,
        )
        # On Reject the provider skips the direct downstream of the context's task (this one), but only
        # when it sees downstream tasks of its own.
        approval.downstream_task_ids.update(self.downstream_task_ids)
        return approval

    def execute(self, context: Any) -> Any:
        request = self.request(context)
        if request.skip:
            raise AirflowSkipException(request.skip)
        if request.answered:
            # An earlier try recorded the answer before it ended: the run's decision stands.
            self.log.info("Already decided for this run: %s", request.answered)
            return None
        body = request.body
        try_number = context["ti"].try_number
        if try_number > 1:
            again = f"*Asked again (try {try_number}): the earlier try ended before it recorded an answer.*"
            body = f"{again}\n\n{body}"
        timeout = timedelta(hours=request.timeout_hours)
        return execute_delegate(self._approval(request.subject, body, timeout), context)

    def execute_complete(self, context: Any, event: dict[str, Any]) -> Any:
        # An error event (no answer and no default) has no decision to record: the provider raises on it.
        if "error" not in event:
            self.on_response(context, event)
        return self._approval(subject=self.task_id).execute_complete(context, event)
