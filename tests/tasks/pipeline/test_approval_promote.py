"""promotion.require_approval without Airflow: when approve_promotion asks or skips itself, and what
promote does after an approval, a rejection, a timeout or a skipped approval."""

from __future__ import annotations

from datetime import UTC, datetime

from tasks.contracts.promotion import PromotionDecision
from tasks.pipeline.orchestration import (
    approval_request,
    promote_winner,
    record_approval,
    run_problem,
    write_run_report,
)
from tasks.registry import versions as registry
from tasks.registry.production import set_production
from tasks.storage import store
from tests.tasks.pipeline.approval_run import NAME, selection_of, write_run

ANSWERED_AT = datetime(2026, 11, 23, 12, 30, tzinfo=UTC)


def _answer(run, option: str, user: str | None = "alice") -> None:
    by = {"id": "u1", "name": user} if user else None
    event = {
        "chosen_options": [option],
        "params_input": {},
        "responded_at": ANSWERED_AT,
        "responded_by_user": by,
    }
    record_approval(run, {**event, "timedout": user is None})


def _champion(store_root: str, rouge_l: float) -> int:
    """A production version of the experiment's registry, scored on the same dataset as the run's jobs."""
    entry = registry.register(
        store_root, NAME, {"metrics": {"rouge_l": rouge_l}, "dataset": {"name": "tuna"}}
    )
    assert set_production(store_root, NAME, entry["version"], None)
    return entry["version"]


def test_approval_is_asked_with_the_runs_subject_body_and_timeout(store_root):
    run = write_run(store_root)
    request = approval_request(run)
    assert request.skip is None
    assert request.subject == "Promote appr tuna|tiny|b to production?"
    assert request.timeout_hours == 2
    assert "no champion yet" in request.body and "What is your name\\?" in request.body


def test_approval_skips_itself_when_not_required_disabled_or_the_gate_would_not_promote(store_root):
    run = write_run(store_root, require_approval=False)
    assert approval_request(run).skip.startswith("promotion.require_approval is false")
    run = write_run(store_root, enabled=False)
    assert approval_request(run).skip == "promotion.enabled is false"

    run = write_run(store_root)
    _champion(store_root, rouge_l=0.9)
    skip = approval_request(run).skip
    assert skip.startswith("nothing to approve, production would not move: candidate rouge_l 0.7")
    # promote then runs (none_failed_min_one_success) and the gate keeps the champion.
    decision = promote_winner(run, selection_of(run))
    assert not decision.promoted and "champion stays" in decision.reason


def test_a_recorded_answer_is_not_asked_again(store_root, tmp_path):
    run = write_run(store_root)
    _answer(run, "Approve")
    request = approval_request(run)
    assert (request.skip, request.subject) == (None, None)
    assert request.answered == f"approved by alice at {ANSWERED_AT.isoformat()}"
    run = write_run((tmp_path / "other-store").as_uri())
    _answer(run, "Reject", user=None)  # the timeout's default
    assert approval_request(run).answered.startswith("no decision in time: rejected by the timeout at ")


def test_promote_after_an_approval_moves_production_and_records_the_approver(store_root):
    run = write_run(store_root)
    _answer(run, "Approve")
    decision = promote_winner(run, selection_of(run))
    assert decision.promoted and decision.approval.decided_by == "alice"
    pointer = registry.production(store_root, NAME)
    assert pointer["version"] == decision.version and pointer["actor"] == "alice"
    written = PromotionDecision.model_validate(store.read_json(store.join(run.run_uri, "promotion.json")))
    assert written == decision


def test_a_rejection_leaves_production_and_the_run_does_not_fail(store_root):
    run = write_run(store_root)
    champion = _champion(store_root, rouge_l=0.1)
    _answer(run, "Reject", user="bob")
    assert run_problem(run.run_uri) is None
    # promote is skipped after a rejection; run anyway (a task cleared by hand), it keeps the decision.
    decision = promote_winner(run, selection_of(run))
    assert not decision.promoted and decision.reason.startswith("not promoted: rejected by bob at 2026-11-23")
    assert registry.production(store_root, NAME)["version"] == champion
    assert registry.find_versions(store_root, NAME, run_uri=run.run_uri) == []

    summary, text = write_run_report(run)
    assert summary.promotion.approval.decided_by == "bob"
    assert "Approval:        rejected by bob at 2026-11-23T12:30:00+00:00" in text
    html = store.local_file(summary.report_uri).read_text()
    assert "rejected by bob at 2026-11-23T12:30:00+00:00" in html and "Not promoted</strong>" in html


def test_a_timeout_leaves_production_unchanged(store_root):
    run = write_run(store_root)
    _answer(run, "Reject", user=None)
    decision = PromotionDecision.model_validate(store.read_json(store.join(run.run_uri, "promotion.json")))
    assert decision.reason == "not promoted: no decision within 2 h"
    assert registry.production(store_root, NAME) is None
    assert run_problem(run.run_uri) is None


def test_without_an_answer_promote_does_not_move_production_when_approval_is_required(store_root):
    run = write_run(store_root)
    decision = promote_winner(run, selection_of(run))
    assert not decision.promoted and "nobody approved" in decision.reason
    assert registry.production(store_root, NAME) is None


def test_without_approval_required_promote_decides_alone(store_root):
    run = write_run(store_root, require_approval=False)
    decision = promote_winner(run, selection_of(run))
    assert decision.promoted and decision.approval is None
    assert registry.production(store_root, NAME)["actor"] is None
