"""promotion.require_approval on the session's real `airflow standalone` (see
tests/fixtures/airflow_standalone.py): two tiny runs wait in `approve_promotion` (AWAITING_INPUT); one is
approved and one rejected through the REST API as admin, the moment each asks, as a bot would; the approved
one moves production (the pointer records admin as its actor), the rejected one leaves it, and both runs
succeed.

Each run has its own experiment name, so each has its own registry: neither run's champion decides the
other's gate, whichever finishes first.
"""

from __future__ import annotations

import time

import pytest

from tasks.registry import versions as registry
from tasks.storage import layout, store
from tests.fixtures.airflow_standalone import FINISHED, RUN_TIMEOUT_S, tiny_run_conf

pytestmark = pytest.mark.slow

TASK = "approve_promotion"
# Answering at once is the case Airflow 3.3 can get wrong (apache/airflow#72716): it may fail the resumed
# task; the task's retry then ends with the recorded answer, or asks again, and is answered again here.
MAX_QUESTIONS = 3


def _trigger(server, model_dir, name: str) -> str:
    conf = {**tiny_run_conf(model_dir), "name": name}
    conf["promotion"] = {"require_approval": True, "approval_timeout_hours": 1}
    response = server.trigger(conf)
    assert response.status_code == 200, response.text
    return response.json()["dag_run_id"]


def _hitl_path(server, run_id: str) -> str:
    return f"{server.run_path(run_id)}/taskInstances/{TASK}/-1/hitlDetails"


def _wait_for_question(server, run_id: str) -> dict:
    """The approval request, once the task waits for an answer."""
    deadline = time.monotonic() + RUN_TIMEOUT_S
    while time.monotonic() < deadline:
        state = {ti["task_id"]: ti["state"] for ti in server.task_instances(run_id)}.get(TASK)
        if state == "awaiting_input":
            response = server.http.get(_hitl_path(server, run_id))
            response.raise_for_status()
            return response.json()
        assert state not in FINISHED, f"{TASK} ended {state} without asking\n{server.logs(run_id)}"
        time.sleep(3)
    pytest.fail(f"{TASK} of {run_id} never waited for an answer\n{server.logs(run_id)}")


def _answer(server, run_id: str, option: str) -> None:
    response = server.http.patch(
        _hitl_path(server, run_id), json={"chosen_options": [option], "params_input": {}}
    )
    assert response.status_code == 200, response.text
    assert response.json()["responded_by"]["name"] == "admin"


def _answer_until_done(server, answers: dict[str, str]) -> dict[str, int]:
    """Answer each run's open question as soon as it is asked, until every run has ended; how many
    questions each run asked."""
    asked = dict.fromkeys(answers, 0)
    deadline = time.monotonic() + RUN_TIMEOUT_S
    while time.monotonic() < deadline:
        running = [run_id for run_id in answers if server.run(run_id)["state"] in ("queued", "running")]
        if not running:
            return asked
        for run_id in running:
            state = {ti["task_id"]: ti["state"] for ti in server.task_instances(run_id)}.get(TASK)
            if state != "awaiting_input":
                continue
            question = server.http.get(_hitl_path(server, run_id)).json()
            if question.get("response_received"):
                continue
            asked[run_id] += 1
            assert asked[run_id] <= MAX_QUESTIONS, f"{run_id} asked {asked[run_id]} times"
            _answer(server, run_id, answers[run_id])
        time.sleep(1)
    pytest.fail(f"runs still not finished after {RUN_TIMEOUT_S}s: {answers}")


def _read(server, name: str, run_id: str, file: str) -> dict:
    return store.read_json(store.join(layout.run(server.store_root, name, run_id), file))


def test_an_approval_through_rest_promotes_and_a_rejection_does_not(airflow_server, tiny_model_dir):
    approved_id = _trigger(airflow_server, tiny_model_dir, "tiny-approved")
    rejected_id = _trigger(airflow_server, tiny_model_dir, "tiny-rejected")

    question = _wait_for_question(airflow_server, approved_id)
    assert question["options"] == ["Approve", "Reject"] and question["defaults"] == ["Reject"]
    assert question["subject"].startswith("Promote tiny-approved tuna|tiny|")
    assert "### Leaderboard" in question["body"] and "### Answers side by side" in question["body"]
    _answer(airflow_server, approved_id, "Approve")

    asked = _answer_until_done(airflow_server, {approved_id: "Approve", rejected_id: "Reject"})
    assert asked[rejected_id] >= 1, "the rejected run never asked"
    for run_id in (approved_id, rejected_id):
        state = airflow_server.run(run_id)["state"]
        assert state == "success", f"run {run_id} ended {state}\n{airflow_server.logs(run_id)}"

    states = airflow_server.task_states(approved_id)
    assert (states[TASK], states["promote"], states["publish_promotion"]) == (
        ["success"],
        ["success"],
        ["success"],
    )
    pointer = registry.production(airflow_server.store_root, "tiny-approved")
    assert pointer["version"] == 1 and pointer["actor"] == "admin"
    promotion = _read(airflow_server, "tiny-approved", approved_id, "promotion.json")
    assert promotion["promoted"] and promotion["approval"]["decided_by"] == "admin"

    states = airflow_server.task_states(rejected_id)
    assert (states[TASK], states["promote"], states["publish_promotion"]) == (
        ["success"],
        ["skipped"],
        ["skipped"],
    )
    assert registry.production(airflow_server.store_root, "tiny-rejected") is None
    promotion = _read(airflow_server, "tiny-rejected", rejected_id, "promotion.json")
    assert not promotion["promoted"] and promotion["reason"].startswith("not promoted: rejected by admin at ")
    approval = _read(airflow_server, "tiny-rejected", rejected_id, "approval.json")
    assert (approval["approved"], approval["chosen_options"]) == (False, ["Reject"])
    summary = _read(airflow_server, "tiny-rejected", rejected_id, "summary.json")
    assert summary["promotion"]["approval"]["decided_by"] == "admin"
