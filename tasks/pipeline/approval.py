"""Human approval of a promotion: what the approval task asks (a subject and a Markdown body with the
leaderboard, the champion comparison and a few answers side by side) and the record of the answer.

The answer is kept as `<run>/approval.json` (`ApprovalDecision`). On a rejection or a timeout the provider's
`ApprovalOperator` skips `promote`, so `promotion.json` ("not promoted: rejected by ...") is written here.

Airflow renders the body as Markdown: every piece of data in it (labels, questions, answers) goes through
`md`, which backslash-escapes all ASCII punctuation, so no data becomes HTML, a link or a table break.
Light and without Airflow: the DAG's stand-in operator calls it when the task runs and when it resumes.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from tasks.contracts.evaluate import EvaluateResult, EvaluateSpec
from tasks.contracts.promotion import ApprovalDecision, PromotionDecision
from tasks.contracts.selection import Leaderboard, LeaderboardRow
from tasks.pipeline.report_data import better, fmt, primary_value
from tasks.registry.champion import scoring_prefix
from tasks.scoring.generation import prompt_and_reference
from tasks.scoring.metrics import questions_of
from tasks.storage import layout, store

APPROVE = "Approve"
BOARD_ROWS = 5
ANSWER_ROWS = 3
CELL_CHARS = 160
TIMEOUT = "timeout"
# Every ASCII punctuation character: CommonMark lets each be backslash-escaped into a literal.
_MARKDOWN_SPECIAL = re.compile(r"([!-/:-@\[-`{-~])")


@dataclass(frozen=True)
class AnswerRow:
    """One eval question with the reference, the candidate's answer and the champion's (None: not scored)."""

    question: str | None
    reference: str | None
    candidate: str | None
    champion: str | None = None


def md(text: Any, limit: int | None = None) -> str:
    """`text` as literal Markdown on one line, cut to `limit` characters ('…' marks the cut)."""
    flat = " ".join(str(text).split())
    if limit is not None and len(flat) > limit:
        flat = flat[: limit - 1] + "…"
    return _MARKDOWN_SPECIAL.sub(r"\\\1", flat)


def _cell(text: Any) -> str:
    if text is None:
        return "–"
    # A model that answered nothing is worth seeing as such, not as a missing answer.
    return md(text, CELL_CHARS) if str(text).strip() else "*(empty)*"


def subject(experiment: str, winner: str) -> str:
    return f"Promote {experiment} {winner} to production?"


def _board(board: Leaderboard) -> list[str]:
    primary = md(board.primary)
    lines = [f"| rank | job | {primary} | status |", "|---:|---|---:|---|"]
    ranked = [row for row in board.rows if row.rank is not None]
    others = [row for row in board.rows if row.rank is None]
    for row in (ranked + others)[:BOARD_ROWS]:
        rank = row.rank if row.rank is not None else "–"
        value = fmt(primary_value(row, board.primary))
        lines.append(f"| {rank} | {_cell(row.label)} | {value} | {md(row.status)} |")
    hidden = len(board.rows) - BOARD_ROWS
    if hidden > 0:
        lines.append(f"\n{hidden} more rows in the run's leaderboard.json and report.")
    return lines


def _comparison(gate: PromotionDecision, margin: float) -> list[str]:
    primary = md(gate.primary or "primary")
    lines = [f"- **Candidate** {primary} ({better(gate.primary or '')}): {fmt(gate.candidate_metric)}"]
    if gate.champion_version is None:
        lines.append("- **Champion**: none yet, the candidate would be the first production version")
    else:
        how = "rescored in this run on the same rows" if gate.champion_rescored else "as registered"
        lines.append(
            f"- **Champion** v{gate.champion_version} {primary} ({how}): {fmt(gate.champion_metric)}"
        )
        if gate.candidate_metric is not None and gate.champion_metric is not None:
            lines.append(f"- **Difference**: {fmt(gate.candidate_metric - gate.champion_metric)}")
    lines += [f"- **Margin** required: {fmt(margin)}", f"- **Gate**: {md(gate.reason)}"]
    return lines


def _answers(rows: list[AnswerRow]) -> list[str]:
    if not rows:
        return ["No answers were recorded for the winner."]
    champion = any(row.champion is not None for row in rows)
    head = ["question", "reference", "candidate"] + (["champion"] if champion else [])
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in rows:
        cells = [row.question, row.reference, row.candidate] + ([row.champion] if champion else [])
        lines.append("| " + " | ".join(_cell(cell) for cell in cells) + " |")
    return lines


def approval_body(
    board: Leaderboard, gate: PromotionDecision, margin: float, answers: list[AnswerRow]
) -> str:
    """The approval task's Markdown body. `gate` is the promotion gate's decision as it would be taken
    now (`tasks.pipeline.orchestration.preview_gate`)."""
    winner = board.winner
    intro = f"The winner **{_cell(winner.label)}** is ready to become production." if winner else ""
    blocks = [
        intro,
        "### Leaderboard",
        "\n".join(_board(board)),
        "### Champion comparison",
        "\n".join(_comparison(gate, margin)),
        "### Answers side by side",
        "\n".join(_answers(answers)),
        "**Approve** moves production to the candidate; **Reject** (or no answer in time) leaves it.",
    ]
    # Blank lines between blocks: a table or a list never continues the paragraph before it.
    return "\n\n".join(block for block in blocks if block) + "\n"


def _jsonl(uri: str) -> list[dict[str, Any]]:
    if not store.exists(uri):
        return []
    records = []
    for line in store.backend_for(uri).read_bytes(uri).decode("utf-8", errors="replace").splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue  # a torn line costs one row of the preview, not the question
        if isinstance(record, dict):
            records.append(record)
    return records


def _question(row: dict[str, Any] | None) -> str | None:
    try:
        return questions_of([prompt_and_reference(row)[0]])[0] if row else None
    except (KeyError, IndexError, TypeError):
        return None  # a row in a shape this preview cannot read: the answers still show


def _spec(uri: str) -> EvaluateSpec | None:
    return EvaluateSpec.load(store.read_json(uri), uri) if store.exists(uri) else None


def read_answers(run_uri: str, winner: LeaderboardRow, limit: int = ANSWER_ROWS) -> list[AnswerRow]:
    """The first `limit` eval questions the winner answered, with the reference and the champion's answer
    when the champion was scored in this run: read from the predictions.jsonl its evaluate step committed
    and the eval split it was scored on."""
    spec = _spec(store.join(layout.job(run_uri, winner.job_id), "evaluate.json"))
    if spec is None:
        return []
    candidate = _jsonl(store.join(spec.output, "predictions.jsonl"))[:limit]
    committed = store.committed_result(spec.output)
    split = EvaluateResult.load(committed, spec.output).split if committed else None
    dataset = spec.eval_set or spec.dataset
    ids = {record.get("id") for record in candidate}
    questions = {
        row.get("id"): row
        for row in _jsonl(store.join(dataset.uri, f"{split or 'test'}.jsonl"))
        if row.get("id") in ids
    }
    champion_spec = _spec(store.join(scoring_prefix(run_uri), "evaluate.json"))
    champion = (
        {r.get("id"): r for r in _jsonl(store.join(champion_spec.output, "predictions.jsonl"))}
        if champion_spec
        else {}
    )
    return [
        AnswerRow(
            question=_question(questions.get(record.get("id"))),
            reference=record.get("reference"),
            candidate=record.get("prediction"),
            champion=champion[record["id"]].get("prediction") if record.get("id") in champion else None,
        )
        for record in candidate
    ]


def _when(value: Any) -> str | None:
    if isinstance(value, datetime):
        return value.isoformat(timespec="seconds")
    return None if value is None else str(value)


def decision_of(response: dict[str, Any]) -> ApprovalDecision:
    """The `ApprovalDecision` in the provider's resume event: {"chosen_options", "responded_at",
    "responded_by_user": {"id", "name"} or None, "timedout"}."""
    user = response.get("responded_by_user") or {}
    timed_out = bool(response.get("timedout")) or not user
    chosen = list(response.get("chosen_options") or [])
    return ApprovalDecision(
        approved=chosen == [APPROVE],
        decided_by=TIMEOUT if timed_out else str(user.get("name") or user.get("id")),
        decided_at=_when(response.get("responded_at")),
        chosen_options=chosen,
        timed_out=timed_out,
    )


def hours(value: float) -> str:
    return f"{value:g} h"


def rejection(approval: ApprovalDecision, timeout_hours: float) -> PromotionDecision:
    """`promotion.json` after a rejection or a timeout: production unchanged."""
    if approval.timed_out:
        reason = f"not promoted: no decision within {hours(timeout_hours)}"
    else:
        reason = f"not promoted: rejected by {approval.decided_by} at {approval.decided_at}"
    return PromotionDecision(promoted=False, reason=reason, decided_at=approval.decided_at, approval=approval)


def approval_uri(run_uri: str) -> str:
    return store.join(run_uri, "approval.json")


def record_response(run_uri: str, response: dict[str, Any], timeout_hours: float) -> ApprovalDecision:
    """Write `approval.json` from the provider's resume event; on a rejection or a timeout also
    `promotion.json`, since `promote` is skipped then."""
    approval = decision_of(response)
    store.write_json(approval_uri(run_uri), approval.model_dump(mode="json"))
    if not approval.approved:
        decision = rejection(approval, timeout_hours)
        store.write_json(store.join(run_uri, "promotion.json"), decision.model_dump(mode="json"))
    return approval


def read_approval(run_uri: str) -> ApprovalDecision | None:
    """The run's `approval.json`, or None when nobody was asked (or has answered yet)."""
    uri = approval_uri(run_uri)
    return ApprovalDecision.load(store.read_json(uri), uri) if store.exists(uri) else None
