"""The approval task's question (Markdown with every piece of data escaped) and the record of the answer."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import pytest

from tasks.contracts.evaluate import EvaluateSpec
from tasks.contracts.promotion import ApprovalDecision, PromotionDecision
from tasks.contracts.selection import Leaderboard
from tasks.pipeline.approval import (
    AnswerRow,
    approval_body,
    decision_of,
    md,
    read_answers,
    read_approval,
    record_response,
)
from tasks.registry.champion import scoring_prefix
from tasks.storage import store
from tests.tasks.pipeline.approval_run import QUESTIONS, write_run

SCRIPT = "<script>alert(1)</script>"
# A Markdown or HTML special character not preceded by a backslash: data that could become markup.
UNESCAPED = re.compile(r"(?<!\\)[<>\[\]|*_`]")
ANSWERED_AT = datetime(2026, 11, 23, 12, 30, tzinfo=UTC)


def test_md_escapes_every_special_character_and_keeps_one_line():
    text = f"{SCRIPT} [click](javascript:x) | *b* _i_ `c`\nnext line"
    escaped = md(text)
    assert "\n" not in escaped
    assert not UNESCAPED.search(escaped), escaped
    assert escaped.startswith(r"\<script\>alert\(1\)\<\/script\>")
    assert md("x" * 50, limit=10) == "x" * 9 + "…"


def _board() -> Leaderboard:
    rows = [
        {"rank": 1, "label": f"tuna|tiny|{SCRIPT}", "metrics": {"rouge_l": 0.7}},
        {"rank": 2, "label": "tuna|tiny|a", "metrics": {"rouge_l": 0.4}},
    ]
    rows += [{"rank": 3 + i, "label": f"tuna|tiny|x{i}", "metrics": {"rouge_l": 0.1}} for i in range(5)]
    rows = [
        {
            "job_id": f"j{i}",
            "kind": "train",
            "status": "succeeded",
            "train": None,
            "scored_on": "tuna",
            "metrics_jsonl": None,
            **r,
        }
        for i, r in enumerate(rows)
    ]
    return Leaderboard(primary="rouge_l", rows=rows, winner=rows[0])


def test_body_holds_the_leaderboard_the_champion_comparison_and_answers_escaped():
    gate = PromotionDecision(
        promoted=True,
        reason="candidate rouge_l 0.7 beats champion v3 (0.5)",
        primary="rouge_l",
        candidate_metric=0.7,
        champion_metric=0.5,
        champion_version=3,
        champion_rescored=True,
    )
    answers = [
        AnswerRow(question=f"q {SCRIPT}", reference="r | 1", candidate="**loud**", champion="old"),
        AnswerRow(question="q2", reference="r2", candidate=" ", champion=None),
    ]
    body = approval_body(_board(), gate, 0.01, answers)

    lines = body.splitlines()
    board_rows = [line for line in lines if line.startswith("| ") and "tuna" in line]
    assert len(board_rows) == 5  # the top rows only
    assert "2 more rows" in body
    assert "| 1 | tuna\\|tiny\\|\\<script\\>alert\\(1\\)\\<\\/script\\> | 0.7 | succeeded |" in lines
    assert "- **Champion** v3 rouge\\_l (rescored in this run on the same rows): 0.5" in lines
    assert "- **Difference**: 0.2" in lines and "- **Margin** required: 0.01" in lines
    assert "| question | reference | candidate | champion |" in lines
    assert "| q \\<script\\>alert\\(1\\)\\<\\/script\\> | r \\| 1 | \\*\\*loud\\*\\* | old |" in lines
    assert "| q2 | r2 | *(empty)* | – |" in lines  # an empty answer is not a missing one
    # Outside the fixed Markdown of the page, nothing is markup.
    for line in board_rows:
        cells = line.strip("| ").split(" | ")
        assert not any(UNESCAPED.search(cell) for cell in cells), line


def test_body_without_a_champion_or_answers_says_so():
    gate = PromotionDecision(promoted=True, reason="no champion yet", primary="rouge_l", candidate_metric=0.7)
    body = approval_body(_board(), gate, 0.0, [])
    assert "- **Champion**: none yet" in body
    assert "No answers were recorded" in body
    assert "champion |" not in body


def test_answers_are_read_from_the_committed_predictions_and_the_eval_split(store_root):
    run = write_run(store_root)
    board = Leaderboard.model_validate(store.read_json(store.join(run.run_uri, "leaderboard.json")))
    rows = read_answers(run.run_uri, board.winner)
    assert [row.question for row in rows] == QUESTIONS[:3]
    assert rows[0].reference == "ref 0" and rows[0].candidate.startswith("answer 0 of tuna|tiny|b")
    assert all(row.champion is None for row in rows)

    # The champion scored in this run answers beside the candidate.
    winner_spec = store.read_json(store.join(run.run_uri, "jobs", board.winner.job_id, "evaluate.json"))
    output = store.join(scoring_prefix(run.run_uri), "v1")
    spec = EvaluateSpec.model_validate(
        {**winner_spec, "output": output, "job_id": "champion", "reference": True}
    )
    store.write_json(store.join(scoring_prefix(run.run_uri), "evaluate.json"), spec.model_dump(mode="json"))
    store.local_file(store.join(output, "predictions.jsonl")).write_text(
        '{"id": "tuna:1", "prediction": "champion says hi", "reference": "ref 1"}\n'
    )
    rows = read_answers(run.run_uri, board.winner)
    assert [row.champion for row in rows] == [None, "champion says hi", None]


@pytest.mark.parametrize(
    ("response", "expected"),
    [
        (
            {"chosen_options": ["Approve"], "responded_by_user": {"id": "7", "name": "alice"}},
            ApprovalDecision(approved=True, decided_by="alice", chosen_options=["Approve"]),
        ),
        (
            {"chosen_options": ["Reject"], "responded_by_user": {"id": "7", "name": None}},
            ApprovalDecision(approved=False, decided_by="7", chosen_options=["Reject"]),
        ),
        (
            {"chosen_options": ["Reject"], "responded_by_user": None, "timedout": True},
            ApprovalDecision(approved=False, decided_by="timeout", chosen_options=["Reject"], timed_out=True),
        ),
    ],
)
def test_the_provider_event_becomes_a_decision(response, expected):
    decision = decision_of({**response, "params_input": {}, "responded_at": ANSWERED_AT})
    assert decision == expected.model_copy(update={"decided_at": "2026-11-23T12:30:00+00:00"})


def _promotion(run_uri: str) -> PromotionDecision:
    return PromotionDecision.model_validate(store.read_json(store.join(run_uri, "promotion.json")))


def test_a_rejection_is_recorded_with_who_and_when_and_production_is_left(store_root):
    run_uri = store.join(store_root, "run")
    event = {"chosen_options": ["Reject"], "responded_by_user": {"id": "bob", "name": "bob"}}
    record_response(run_uri, {**event, "responded_at": ANSWERED_AT}, timeout_hours=24)
    assert read_approval(run_uri).decided_by == "bob"
    promotion = _promotion(run_uri)
    assert not promotion.promoted
    assert promotion.reason == "not promoted: rejected by bob at 2026-11-23T12:30:00+00:00"
    assert promotion.approval == read_approval(run_uri)


def test_a_timeout_is_recorded_as_no_decision_within_the_hours(store_root):
    run_uri = store.join(store_root, "run")
    event = {"chosen_options": ["Reject"], "responded_by_user": None, "timedout": True}
    record_response(run_uri, {**event, "responded_at": ANSWERED_AT}, timeout_hours=24.0)
    assert _promotion(run_uri).reason == "not promoted: no decision within 24 h"
    assert read_approval(run_uri).timed_out


def test_an_approval_is_recorded_and_leaves_promotion_to_promote(store_root):
    run_uri = store.join(store_root, "run")
    event = {"chosen_options": ["Approve"], "responded_by_user": {"id": "1", "name": "alice"}}
    approval = record_response(run_uri, {**event, "responded_at": "2026-11-23T12:30:00+00:00"}, 24)
    assert approval.approved and approval.decided_at == "2026-11-23T12:30:00+00:00"
    assert read_approval(run_uri) == approval
    assert not store.exists(store.join(run_uri, "promotion.json"))
