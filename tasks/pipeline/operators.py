"""Operators a DAG holds in place of a provider's, building the real one only when the task runs.

Importing a provider operator at parse time can cost more than the rest of the DAG file: the standard
provider's `TriggerDagRunOperator` pulls in Airflow's ORM models (`airflow.models.dagrun`, about 0.45 s),
the cncf provider the kubernetes clients. The DAG processor parses every file again and again, so the
DAGs hold these light stand-ins, which carry plain arguments and delegate to the real operator inside
`execute` (`tasks.backends.kubernetes.StepPodOperator` does the same for pods).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from airflow.sdk import BaseOperator
from airflow.sdk.bases.operator import ExecutorSafeguard


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
