"""The stand-in for the standard provider's ApprovalOperator: it asks with the request computed when the
task runs (the timeout from the conf), records the answer first, and lets the provider skip the
downstream task on Reject. The provider's calls into the running task's supervisor are replaced."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import pytest
from airflow.providers.standard.operators import hitl
from airflow.sdk import DAG
from airflow.sdk.bases.operator import BaseOperator
from airflow.sdk.exceptions import AirflowSkipException, DownstreamTasksSkipped, TaskAwaitingInput

from tasks.contracts.promotion import ApprovalRequest
from tasks.pipeline.operators import ApprovalWhenRun

ANSWERED_AT = datetime(2026, 11, 23, 12, 30, tzinfo=UTC)


class Downstream(BaseOperator):
    def execute(self, context):
        return None


@pytest.fixture
def graph():
    responses = []
    request = ApprovalRequest(subject="Promote?", body="**body**", timeout_hours=1.5)
    with DAG("approval_test", schedule=None) as dag:
        approval = ApprovalWhenRun(
            task_id="approve_promotion",
            request=lambda context: context["request"],
            on_response=lambda context, event: responses.append(event),
        )
        approval >> Downstream(task_id="promote")
    ti = SimpleNamespace(id="ti-1", map_index=-1, try_number=1, xcom_push=lambda **kwargs: None)
    context = {"task": dag.get_task("approve_promotion"), "ti": ti, "task_instance": ti, "request": request}
    return approval, context, responses


def test_it_asks_with_the_request_made_when_it_runs(graph, monkeypatch):
    approval, context, _ = graph
    asked = {}
    monkeypatch.setattr(hitl, "upsert_hitl_detail", lambda **detail: asked.update(detail))
    with pytest.raises(TaskAwaitingInput) as awaiting:
        approval.execute(context)
    assert awaiting.value.method_name == "execute_complete"
    assert awaiting.value.timeout == timedelta(hours=1.5)
    assert (asked["subject"], asked["body"]) == ("Promote?", "**body**")
    assert asked["options"] == ["Approve", "Reject"] and asked["defaults"] == ["Reject"]


def test_it_skips_itself_when_the_request_says_why(graph):
    approval, context, _ = graph
    with pytest.raises(AirflowSkipException, match=r"promotion\.require_approval is false"):
        approval.execute({**context, "request": ApprovalRequest(skip="promotion.require_approval is false")})


def test_it_ends_with_the_answer_an_earlier_try_recorded_without_asking_again(graph, monkeypatch):
    approval, context, responses = graph
    monkeypatch.setattr(hitl, "upsert_hitl_detail", lambda **detail: pytest.fail(f"asked again: {detail}"))
    answered = ApprovalRequest(answered="approved by alice at 2026-11-23T12:30:00+00:00")
    assert approval.execute({**context, "request": answered}) is None
    assert responses == []  # nothing recorded twice


def test_a_retry_without_a_recorded_answer_asks_again_and_says_why(graph, monkeypatch):
    approval, context, _ = graph
    asked = {}
    monkeypatch.setattr(hitl, "upsert_hitl_detail", lambda **detail: asked.update(detail))
    context["ti"].try_number = 2
    with pytest.raises(TaskAwaitingInput):
        approval.execute(context)
    assert asked["body"].startswith("*Asked again (try 2): the earlier try ended before it recorded")
    assert asked["body"].endswith("\n\n**body**")


def _event(option: str) -> dict:
    user = {"id": "1", "name": "alice"}
    return {
        "chosen_options": [option],
        "params_input": {},
        "responded_at": ANSWERED_AT,
        "responded_by_user": user,
    }


def test_an_approval_is_recorded_and_returned(graph):
    approval, context, responses = graph
    result = approval.execute_complete(context, _event("Approve"))
    assert result["chosen_options"] == ["Approve"] and result["responded_by_user"]["name"] == "alice"
    assert responses == [_event("Approve")]


def test_a_rejection_is_recorded_then_promote_is_skipped(graph):
    approval, context, responses = graph
    with pytest.raises(DownstreamTasksSkipped) as skipped:
        approval.execute_complete(context, _event("Reject"))
    assert skipped.value.tasks == ["promote"]
    assert responses == [_event("Reject")]
