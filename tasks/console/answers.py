"""Answers side by side: for each eval question (a page of them at a time), the reference, then every
model's answer with its per-row scores, aligned by row id.

Every predictions file is read once (by the caller) and only the page's lines are parsed: the evaluate
step writes the rows in the eval set's order, so a page is the same slice of every file. A file in
another order (or cut short) is indexed by id instead. Predictions written before per-row scores have no
`scores`: their cells show no score.
"""

from __future__ import annotations

import math
from typing import Any, Literal

from pydantic import BaseModel, Field

from tasks.console.reading import lines_of, parse, parse_all, read_json
from tasks.scoring.generation import prompt_and_reference
from tasks.scoring.metrics import questions_of
from tasks.storage import store

PER_PAGE = 20


class Answer(BaseModel):
    """One model's answer to one question."""

    text: str | None = Field(description="The answer; None when this model has no answer for the row.")
    scores: dict[str, float | None] = Field(default_factory=dict, description="The answer's own scores.")


class AnswerColumn(BaseModel):
    """Whose answers a column holds."""

    label: str = Field(description="The job's label, or the champion's.")
    kind: Literal["reference", "job", "champion"] = Field(description="Base model, fine-tune or champion.")
    job_id: str | None = Field(None, description="The job's store key (no job page for the champion).")
    winner: bool = Field(False, description="The run's winner.")


class Question(BaseModel):
    """One eval row and every column's answer to it."""

    id: str = Field(description="The row id (`<file>:<line>`).")
    question: str | None = Field(description="The last user turn; None when the eval set is unreadable.")
    reference: str | None = Field(description="The reference answer.")
    answers: list[Answer] = Field(description="One per column, in the columns' order.")


class AnswersPage(BaseModel):
    """A page of questions with every column's answers."""

    columns: list[AnswerColumn] = Field(description="Whose answers, left to right.")
    questions: list[Question] = Field(description="This page's questions.")
    page: int = Field(description="This page, from 1.")
    pages: int = Field(description="How many pages there are.")
    total: int = Field(description="Questions in all.")
    per_page: int = Field(description="Questions per page.")


def eval_split_uri(job_prefix: str) -> str | None:
    """The eval rows a job was scored on: its spec's eval set (or dataset), at the split its result names."""
    spec = read_json(store.join(job_prefix, "evaluate.json"))
    if not isinstance(spec, dict):
        return None
    dataset = spec.get("eval_set") or spec.get("dataset") or {}
    manifest = read_json(store.join(job_prefix, "evaluate", store.MANIFEST)) or {}
    split = (manifest.get("result") or {}).get("split") or "test"
    return store.join(dataset["uri"], f"{split}.jsonl") if dataset.get("uri") else None


def _aligned(lines: list[bytes], ids: list[str], start: int) -> list[dict[str, Any] | None]:
    """The records of `ids`: the same slice of `lines` when it holds them in order, else by id."""
    records = parse_all(lines[start : start + len(ids)])
    if [r.get("id") for r in records] == ids:
        return records
    by_id = {record.get("id"): record for record in parse_all(lines)}
    return [by_id.get(row_id) for row_id in ids]


def _answer(record: dict[str, Any] | None) -> Answer:
    if record is None:
        return Answer(text=None)
    scores = record.get("scores")
    return Answer(text=record.get("prediction"), scores=scores if isinstance(scores, dict) else {})


def _question(row: dict[str, Any] | None) -> str | None:
    try:
        return questions_of([prompt_and_reference(row)[0]])[0] if row else None
    except (KeyError, IndexError, TypeError):
        return None  # a row in a shape the pages cannot read: the answers still show


def answers_page(
    columns: list[tuple[AnswerColumn, bytes | None]],
    eval_rows: bytes | None,
    page: int = 1,
    per_page: int = PER_PAGE,
) -> AnswersPage:
    """Page `page` (clamped to the pages there are) of every column's answers. `columns` pairs each
    column with its predictions.jsonl's bytes; `eval_rows` is the eval split they answered."""
    files = [lines_of(data) for _, data in columns]
    eval_lines = lines_of(eval_rows)
    total = max(map(len, files), default=0)
    pages = max(1, math.ceil(total / per_page))
    page = min(max(page, 1), pages)
    start = (page - 1) * per_page
    # The eval set's order is the questions' order; without it, the longest predictions file's.
    anchor = eval_lines[:total] if eval_lines else max(files, key=len, default=[])
    ids = [str(parse(line).get("id")) for line in anchor[start : start + per_page]]
    answers = [_aligned(lines, ids, start) for lines in files]
    rows = _aligned(eval_lines, ids, start) if eval_lines else [None] * len(ids)
    questions = [
        Question(
            id=row_id,
            question=_question(rows[i]),
            reference=next((c[i]["reference"] for c in answers if c[i] and c[i].get("reference")), None),
            answers=[_answer(column[i]) for column in answers],
        )
        for i, row_id in enumerate(ids)
    ]
    return AnswersPage(
        columns=[column for column, _ in columns],
        questions=questions,
        page=page,
        pages=pages,
        total=total,
        per_page=per_page,
    )
